"""Staging across kill -9, the mass-deletion guard, and landing entries that are not drops.

A real child process ingests with ``EARLYHELP_KILL_AT`` naming a fault point
(quality/faults.py) and SIGKILLs itself there. The next run, in this process, must leave
staging, history, quarantine, audit.drop_file_loaded and the staged Parquet exactly as
one uninterrupted run leaves them.
"""

from __future__ import annotations

import shutil
import signal

import duckdb
import pytest

from pipelines.cli import main
from quality.faults import KILL_ENV
from tests.ingestion.conftest import Warehouse

SYSTEM = "social_care"
LOADED_COUNTS = ("SELECT extract_date::VARCHAR, file_name, delivered_rows, staged_rows, quarantined_rows, "
                 "flagged_values, status FROM audit.drop_file_loaded ORDER BY ALL")


def contents(warehouse: Warehouse) -> dict:
    """What a run leaves behind that later steps read: every staged, history and
    quarantine table, and what audit says is loaded."""
    return {"staging": warehouse.table_contents("staging"), "history": warehouse.table_contents("history"),
            "quarantine": warehouse.table_contents("quarantine"), "loaded": warehouse.all(LOADED_COUNTS)}


def restored_from_parquet(folder, source: Warehouse, landing) -> tuple[dict, list[str]]:
    """A fresh database restored from ``source``'s staged Parquet: (its contents, the
    drops it restored rather than re-read)."""
    fresh = Warehouse(folder, "fresh")
    fresh.staged_dir = source.staged_dir
    try:
        summary = fresh.ingest(landing, SYSTEM)[SYSTEM]
        return contents(fresh), summary.restored
    finally:
        fresh.close()


def killed(warehouse: Warehouse, landing, point: str, monkeypatch) -> None:
    monkeypatch.setenv(KILL_ENV, point)
    try:
        result = warehouse.ingest_in_subprocess((landing, SYSTEM, "killed"))
    finally:
        monkeypatch.delenv(KILL_ENV)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


@pytest.mark.parametrize("point", ["staging.begin", "staging.table@3", "staging.parquet", "staging.audit", "history"])
def test_a_run_killed_while_staging_is_finished_by_the_next(landing, make_warehouse, tmp_path, monkeypatch, point):
    days = landing.city_dates(SYSTEM)[:3]
    landing.copy(SYSTEM, *days)
    reference = make_warehouse("reference")
    reference.ingest(landing, SYSTEM)
    expected = contents(reference)

    warehouse = make_warehouse("build")
    killed(warehouse, landing, point, monkeypatch)
    summary = warehouse.ingest(landing, SYSTEM, run_id="next")[SYSTEM]

    assert contents(warehouse) == expected
    if point != "history":  # the dead run staged nothing for good: the next stages every drop
        assert sorted(summary.staged) == days
    restored, from_parquet = restored_from_parquet(tmp_path / "fresh", warehouse, landing)
    assert restored == expected and sorted(from_parquet) == days


@pytest.mark.parametrize("point", ["staging.table@2", "staging.parquet", "staging.audit"])
def test_a_killed_correction_then_the_original_again_restores_the_original(landing, make_warehouse, tmp_path,
                                                                          monkeypatch, point):
    """The case from issue 15: a corrected re-delivery killed mid-way, then the original
    delivered again. Before, it was judged unchanged and ssd_family stayed empty."""
    day = landing.city_dates(SYSTEM)[0]
    folder = landing.copy(SYSTEM, day)[0]
    original = {p.name: p.read_bytes() for p in folder.iterdir()}
    warehouse = make_warehouse("build")
    warehouse.ingest(landing, SYSTEM)
    expected = contents(warehouse)
    assert warehouse.staged_count("social_care__ssd_family", day) > 0

    for file in ("ssd_family.csv", "ssd_address.csv"):  # the correction: every row but the first ten gone
        landing.write_lines(SYSTEM, day, file, landing.lines(SYSTEM, day, file)[:11])
    landing.rewrite_manifest(SYSTEM, day)
    killed(warehouse, landing, point, monkeypatch)
    for name, data in original.items():  # the original again, manifest and all
        (folder / name).write_bytes(data)
    summary = warehouse.ingest(landing, SYSTEM, run_id="again")[SYSTEM]

    assert summary.staged == [day] and summary.unchanged == []
    assert contents(warehouse) == expected
    restored, from_parquet = restored_from_parquet(tmp_path / "fresh", warehouse, landing)
    assert restored == expected and from_parquet == [day]


def test_parquet_that_disagrees_with_its_load_record_is_read_again_from_the_raw_files(landing, make_warehouse,
                                                                                     tmp_path):
    days = landing.city_dates(SYSTEM)[:2]
    landing.copy(SYSTEM, *days)
    warehouse = make_warehouse("build")
    warehouse.ingest(landing, SYSTEM)
    expected = contents(warehouse)
    # one table's Parquet for the first drop cut short, as a kill or a full disk would leave it
    [parquet] = (warehouse.staged_dir / SYSTEM / "ssd_address" / f"extract_date={days[0]}").glob("*.parquet")
    warehouse.con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}', hive_partitioning = false) LIMIT 3) TO '{parquet}.cut' (FORMAT parquet)")
    parquet.unlink()
    (parquet.parent / f"{parquet.name}.cut").rename(parquet)

    restored, from_parquet = restored_from_parquet(tmp_path / "fresh", warehouse, landing)

    assert from_parquet == [days[1]]  # the damaged drop was re-read, not restored
    assert restored == expected


# ---------------------------------------------------------------- mass deletions
def test_a_header_only_snapshot_is_held_until_an_operator_accepts_it(landing, tmp_path, capsys):
    first, second = landing.city_dates(SYSTEM)[:2]
    landing.copy(SYSTEM, first, second)
    landing.write_lines(SYSTEM, second, "ssd_person.csv", landing.lines(SYSTEM, second, "ssd_person.csv")[:1])
    landing.rewrite_manifest(SYSTEM, second)
    home = tmp_path / "home"
    warehouse = Warehouse(home / "warehouse", "build")

    summary = warehouse.ingest(landing, SYSTEM)[SYSTEM]

    assert summary.staged == [first] and list(summary.held) == [second]
    [reason] = summary.held[second]
    persons = warehouse.staged_count("social_care__ssd_person", first)
    assert reason == (f"social_care/{second}/ssd_person.csv: would delete {persons:,} of the {persons:,} current "
                      "ssd_person records (100%; the guard allows 50%)")
    status, recorded = warehouse.drop_status(SYSTEM, second)
    assert status == "held" and "earlyhelp accept-deletions" in recorded
    assert warehouse.one("SELECT count(*) FROM history.social_care__ssd_person WHERE is_deleted") == 0
    assert warehouse.staged_count("social_care__ssd_person", second) == 0

    warehouse.close()  # the CLI opens the build database itself
    assert main(["accept-deletions", "--home", str(home), "--system", SYSTEM, "--date", second]) == 0
    assert "is staged at the next build" in capsys.readouterr().out
    warehouse = Warehouse(home / "warehouse", "build")
    summary = warehouse.ingest(landing, SYSTEM, run_id="accepted")[SYSTEM]

    assert summary.staged == [second] and summary.held == {}
    assert warehouse.one("SELECT count(*) FROM history.social_care__ssd_person WHERE is_deleted") == persons
    warehouse.close()


def test_a_snapshot_within_the_guard_is_staged(landing, make_warehouse):
    """Real churn between two drops passes; and a drop just past the limit is held."""
    first, second = landing.city_dates(SYSTEM)[:2]
    landing.copy(SYSTEM, first, second)
    lines = landing.lines(SYSTEM, second, "ssd_person.csv")
    keep = len(lines) - 1 - int((len(lines) - 1) * 0.4)  # 40% of the records gone: under the 50% allowed
    landing.write_lines(SYSTEM, second, "ssd_person.csv", lines[:1 + keep])
    landing.rewrite_manifest(SYSTEM, second)
    warehouse = make_warehouse("build")
    assert warehouse.ingest(landing, SYSTEM)[SYSTEM].held == {}

    landing.write_lines(SYSTEM, second, "ssd_person.csv", lines[:1 + int((len(lines) - 1) * 0.45)])
    landing.rewrite_manifest(SYSTEM, second)
    assert list(warehouse.ingest(landing, SYSTEM, run_id="again")[SYSTEM].held) == [second]


def test_a_held_drop_fails_the_staging_asset(landing, tmp_path):
    import dagster as dg

    from assets.staging import drop_partitions
    from pipelines.build import QUIET
    from pipelines.definitions import defs
    from pipelines.jobs import staging_job_name
    from assets.resources import Warehouse as Resource

    first, second = landing.city_dates(SYSTEM)[:2]
    landing.copy(SYSTEM, first, second)
    landing.write_lines(SYSTEM, second, "ssd_person.csv", landing.lines(SYSTEM, second, "ssd_person.csv")[:1])
    landing.rewrite_manifest(SYSTEM, second)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(drop_partitions(SYSTEM).name, [first, second])
    job = defs.resolve_job_def(staging_job_name(SYSTEM))  # as the UI launches it
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET,
        resources={"warehouse": Resource(home=str(tmp_path / "home"), landing=str(landing.root))},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": second})
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "held by the mass-deletion guard" in failure.event_specific_data.error.message
    with duckdb.connect(str(tmp_path / "home" / "warehouse" / "build.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status, detail FROM audit.run").fetchall() == [("failed", failure.step_key)]


# ---------------------------------------------------------------- not drops
def test_folders_that_are_not_dates_are_reported_not_skipped_silently(landing, warehouse):
    day = landing.city_dates(SYSTEM)[0]
    landing.copy(SYSTEM, day)
    for name in ("latest", "2025-02-30", "20251130"):  # each a whole, valid drop under a name that is no date
        shutil.copytree(landing.folder(SYSTEM, day), landing.root / SYSTEM / name)
    (landing.root / SYSTEM / "notes.txt").write_text("not a drop")

    summary = warehouse.ingest(landing, SYSTEM)[SYSTEM]

    assert summary.staged == [day]
    assert sorted(summary.ignored) == sorted([
        f"{SYSTEM}/'20251130': folder name is not a YYYY-MM-DD date: ignored, nothing in it is read",
        f"{SYSTEM}/'2025-02-30': folder name is not a YYYY-MM-DD date: ignored, nothing in it is read",
        f"{SYSTEM}/'latest': folder name is not a YYYY-MM-DD date: ignored, nothing in it is read",
        f"{SYSTEM}/'notes.txt': not a drop folder (a file or a link): ignored"])
    assert warehouse.all("SELECT name FROM audit.landing_ignored ORDER BY 1") == [
        ("'2025-02-30'",), ("'20251130'",), ("'latest'",), ("'notes.txt'",)]


def test_a_landing_without_some_systems_ingests_the_rest(landing, warehouse):
    """Every system is visited; one with no drop at all has no history to rebuild."""
    day = landing.city_dates("mash")[0]
    landing.copy("mash", day)
    from sources.drops import SYSTEMS

    summaries = warehouse.ingest(landing, *SYSTEMS)
    assert summaries["mash"].staged == [day]
    assert all(not s.staged and not s.rejected for name, s in summaries.items() if name != "mash")
