"""The whole build on data shaped unlike the default city: it still builds and publishes.

- the small city with its newest day held back (the window then ends before the day that
  delivered health's month-end snapshot: children known only from a record with no
  address or event are still children of features.child_population);
- a small city made with `--defects high` (more typos, nicknames, swapped names, missing
  identifiers and stale addresses): identity is fitted to it, its precision holds and
  every blocking check passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from assets.identity.evaluate import evaluate_identity
from pipelines.build import build
from sources.synthetic.city import generate_city
from tests.conftest import SMALL_CITY


def newest_day_held_back(landing: Path, out: Path) -> str:
    newest = max(p.name for p in landing.glob("*/*") if (p / "_manifest.json").exists())
    for drop in landing.glob("*/*"):
        if (drop / "_manifest.json").exists() and drop.name != newest:
            shutil.copytree(drop, out / drop.parent.name / drop.name)
    return newest


def published(home: Path) -> None:
    for name in ("identifiable.duckdb", "analytics.duckdb"):
        with duckdb.connect(str(home / "warehouse" / name), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM features.child_month").fetchall()[0][0] > 0
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        failed = con.sql("SELECT asset, check_name, sample FROM audit.check_result "
                         "WHERE severity = 'blocking' AND NOT passed").fetchall()
    assert failed == []


def test_the_small_city_with_its_newest_day_held_back_builds_and_publishes(small_city, tmp_path):
    landing = tmp_path / "landing"
    held = newest_day_held_back(small_city[0] / "landing", landing)
    result = build(landing, tmp_path / "home")
    assert result.ok, (held, result.runs)
    published(tmp_path / "home")
    with duckdb.connect(str(tmp_path / "home" / "warehouse" / "build.duckdb"), read_only=True) as con:
        # the window now ends before the held-back day, and covers every child it should
        (last,) = con.sql("SELECT last_as_of FROM features.window").fetchall()[0]
        assert last.isoformat() < held
        assert con.sql("SELECT count(*) FROM features.child_population").fetchall()[0][0] > 0


@pytest.fixture(scope="module")
def high_city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("high_city")
    generate_city(SMALL_CITY.with_(defects="high"), out)
    return out


def test_a_city_with_harsher_defects_builds_publishes_and_keeps_identity_precise(high_city, tmp_path):
    home = tmp_path / "home"
    result = build(high_city / "landing", home, high_city / "truth")
    assert result.ok, result.runs
    published(home)
    [model] = (home / "identity" / "model").glob("person_model_v001_*.json")
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        scores = evaluate_identity(con, high_city / "truth")
    assert scores["pairwise"]["precision"] >= 0.999
    assert scores["pairwise"]["recall"] >= 0.97
    assert scores["twin_merges"] == 0
    assert model.exists()
