"""The Dagster definitions load, name the assets the UI shows, and really run."""

import json

import dagster as dg

from assets.synthetic import synthetic_city
from pipelines.definitions import defs


def test_definitions_load_with_the_expected_asset_keys():
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"synthetic_city"}
    assert repo.get_job("synthetic_city_job")


def test_synthetic_city_asset_writes_a_city(tmp_path):
    result = dg.materialize(
        [synthetic_city],
        run_config={"ops": {"synthetic_city": {"config": {"children": 120, "seed": 3, "out": str(tmp_path)}}}},
    )
    assert result.success
    manifests = list((tmp_path / "landing").glob("*/*/_manifest.json"))
    assert {json.loads(m.read_text())["system"] for m in manifests} == {
        "education", "health", "social_care", "early_help", "mash", "reference"}
    metadata = result.asset_materializations_for_node("synthetic_city")[0].metadata
    assert metadata["persons"].value > 120
