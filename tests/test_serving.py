"""The whole build on the small city, as analysts and auditors meet it: both serving
files published; a reader holding analytics.duckdb open does not block the next build;
a drop that fails a blocking check leaves the serving files byte-identical."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.build import build
from tests.quality.test_audit import _spoil_nhs_numbers

READER = """
import sys, time, duckdb
from pathlib import Path
con = duckdb.connect(sys.argv[1], read_only=True)
before = con.sql("SELECT count(*) FROM marts.mash_timeliness_monthly").fetchall()[0][0]
print("open", flush=True)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.1)
after = con.sql("SELECT count(*) FROM marts.mash_timeliness_monthly").fetchall()[0][0]
print(before, after, flush=True)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def home(small_city, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serving")
    landing = root / "landing"
    shutil.copytree(small_city[0] / "landing", landing)
    result = build(landing, root / "home")
    assert result.ok, result.runs
    return landing, root / "home"


def test_a_build_publishes_both_serving_files_and_the_reports(home):
    _, folder = home
    for name in ("identifiable.duckdb", "analytics.duckdb"):
        with duckdb.connect(str(folder / "warehouse" / name), read_only=True) as con:
            assert con.sql("SELECT count(*) FROM marts.mash_timeliness_monthly").fetchall()[0][0] > 0
    with duckdb.connect(str(folder / "warehouse" / "analytics.duckdb"), read_only=True) as con:
        schemas = {s for (s,) in con.sql("SELECT DISTINCT table_schema FROM information_schema.tables").fetchall()}
        assert "identity" not in schemas
    assert (folder / "reports" / "quality" / "index.html").exists()
    assert (folder / "reports" / "data_dictionary.html").exists()
    with duckdb.connect(str(folder / "warehouse" / "analytics.duckdb"), read_only=True) as con:
        # the build's row was finished before it was published
        assert con.sql("SELECT command, status, finished_at IS NOT NULL FROM audit.run").fetchall() == [
            ("build", "success", True)]


def test_every_table_is_materialized_with_its_row_count_and_schema(home, monkeypatch):
    """What the UI shows per table: Dagster's standard row count and column schema, equal
    to what the published file holds."""
    import dagster as dg

    from assets.warehouse.model import TABLE_GRAIN

    _, folder = home
    monkeypatch.setenv("DAGSTER_HOME", str(folder / "dagster"))
    instance = dg.DagsterInstance.from_config(str(folder / "dagster"))
    try:
        with duckdb.connect(str(folder / "warehouse" / "identifiable.duckdb"), read_only=True) as con:
            for table in [f"model.{t}" for t in TABLE_GRAIN] + ["marts.closures_monthly", "features.child_month",
                                                                 "identity.review_queue"]:
                key = dg.AssetKey(table.split(".")) if not table.startswith("identity") else \
                    dg.AssetKey(["identity", "review_queue"])
                metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
                rows = con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
                columns = [c for (c,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
                    "ORDER BY column_index", table.split(".")).fetchall()]
                assert metadata["dagster/row_count"].value == rows, table
                assert [c.name for c in metadata["dagster/column_schema"].schema.columns] == columns, table
    finally:
        instance.dispose()


def test_everything_a_build_writes_under_home_is_its_owners_only(home):
    """Databases, staged Parquet, the review queue, reports and the Dagster instance hold
    identifiable data or keys: no file or folder under HOME is open to group or others."""
    _, folder = home
    open_to_others = [str(p.relative_to(folder)) for p in [folder, *folder.rglob("*")]
                      if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert not open_to_others, open_to_others[:10]
    assert (folder / "review" / "queue.csv").exists() and any((folder / "staged").rglob("*.parquet"))


def test_a_build_publishes_the_features_and_writes_the_model_card(home):
    """The small city has no month-end whose twelve months have passed, so no model can be
    tested: the card must say so rather than report a model."""
    _, folder = home
    with duckdb.connect(str(folder / "warehouse" / "identifiable.duckdb"), read_only=True) as con:
        keys = set(con.sql("SELECT person_key FROM features.child_month").fetchall())
        months = con.sql("SELECT count(DISTINCT as_of) FROM features.child_month").fetchall()[0][0]
        clears, failures = con.sql("SELECT clears_bar, bar_failures FROM features.model_run").fetchall()[0]
    assert len(keys) > 1000 and months >= 10
    assert clears is False and "too few month-ends" in failures
    with duckdb.connect(str(folder / "warehouse" / "analytics.duckdb"), read_only=True) as con:
        hashed = set(con.sql("SELECT person_key FROM features.child_month").fetchall())
        assert len(hashed) == len(keys) and not hashed & keys
    card = (folder / "reports" / "model_card.html").read_text()
    assert "does NOT clear" in card


def test_a_reader_holding_analytics_open_does_not_block_the_next_build(home, tmp_path):
    landing, folder = home
    go = tmp_path / "go"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(folder / "warehouse" / "analytics.duckdb"), str(go)],
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    try:
        result = build(landing, folder)
        assert result.ok, result.runs
    finally:
        go.touch()
    before, after = reader.stdout.readline().split()
    assert reader.wait(timeout=60) == 0 and before == after  # the reader kept its consistent view


def test_a_drop_failing_a_blocking_check_leaves_the_serving_files_byte_identical(home, small_city):
    landing, folder = home
    serving = [folder / "warehouse" / n for n in ("identifiable.duckdb", "analytics.duckdb")]
    before = [sha256(p) for p in serving]
    newest = sorted((landing / "mash").iterdir())[-1]
    spoiled = landing / "mash" / "2099-01-01"
    shutil.copytree(sorted((small_city[0] / "landing" / "mash").iterdir())[0], spoiled)
    _spoil_nhs_numbers(spoiled)
    manifest = json.loads((spoiled / "_manifest.json").read_text())
    manifest["extract_date"] = "2099-01-01"
    (spoiled / "_manifest.json").write_text(json.dumps(manifest))
    assert newest.name < spoiled.name
    result = build(landing, folder)
    assert not result.ok and result.runs["mash"] is False
    assert [sha256(p) for p in serving] == before
    assert not list((folder / "warehouse").glob(".*.partial"))
    with duckdb.connect(str(folder / "warehouse" / "build.duckdb"), read_only=True) as con:
        assert con.sql("SELECT passed FROM audit.check_result WHERE asset = 'staging/mash' "
                       "AND check_name = 'identifier_validity' ORDER BY checked_at DESC LIMIT 1").fetchall() == [(False,)]
