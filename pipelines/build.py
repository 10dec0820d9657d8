"""`earlyhelp build`: run the whole pipeline in process on every drop in a landing folder.

HOME receives the Dagster instance (``HOME/dagster``), the build database, staged
Parquet and reports. Each system's staging asset runs once over all its drops (a
single-run backfill), so the runs appear in the Dagster UI like any other.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from assets.staging import drop_partitions
from pipelines.resources import Warehouse
from assets.staging import staging_checks
from pipelines.sensors import ASSET_OF

CHECK_OF = {next(iter(check.check_keys)).asset_key.path[-1]: check for check in staging_checks}
from sources.drops import SYSTEMS, find_drops

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


@dataclass
class BuildResult:
    home: Path
    runs: dict[str, bool]  # system -> run succeeded
    summary: list[tuple]

    @property
    def ok(self) -> bool:
        return all(self.runs.values())


def dagster_instance(home: Path) -> dg.DagsterInstance:
    """The build's own Dagster instance, configured by the repo's dagster.yaml."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    if REPO_DAGSTER_YAML.exists() and not (dagster_home / "dagster.yaml").exists():
        shutil.copy(REPO_DAGSTER_YAML, dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dg.DagsterInstance.get()


def build(landing: Path, home: Path) -> BuildResult:
    landing, home = Path(landing).resolve(), Path(home).resolve()
    if not landing.is_dir():
        raise FileNotFoundError(f"no landing folder at {landing}")
    warehouse = Warehouse(home=str(home), landing=str(landing))
    instance = dagster_instance(home)
    runs = {}
    for system in SYSTEMS:
        drops = find_drops(landing, (system,))
        if not drops:
            continue
        name = drop_partitions(system).name
        known = set(instance.get_dynamic_partitions(name))
        instance.add_dynamic_partitions(name, [d.partition for d in drops if d.partition not in known])
        keys = instance.get_dynamic_partitions(name)
        result = dg.materialize(
            [ASSET_OF[system], CHECK_OF[system]], instance=instance, resources={"warehouse": warehouse}, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1],
                  "earlyhelp/command": "build"})
        runs[system] = result.success
    return BuildResult(home, runs, _summary(warehouse.build_db))


def _summary(build_db: Path) -> list[tuple]:
    """Per system: the drops and rows that staging holds now, and what was turned away."""
    if not build_db.exists():
        return []
    with duckdb.connect(str(build_db), read_only=True) as con:
        return con.sql("""
            WITH drops AS (
                SELECT system,
                       count(*) FILTER (WHERE status = 'staged') AS staged,
                       count(*) FILTER (WHERE status = 'rejected') AS rejected
                FROM (SELECT * FROM audit.drop QUALIFY row_number() OVER (
                          PARTITION BY system, extract_date ORDER BY recorded_at DESC) = 1)
                GROUP BY system
            ), files AS (
                SELECT system, sum(delivered_rows) AS delivered, sum(staged_rows) AS staged_rows,
                       sum(quarantined_rows) AS quarantined, sum(flagged_values) AS flagged
                FROM audit.drop_file_loaded GROUP BY system
            )
            SELECT system, staged, rejected, coalesce(delivered, 0), coalesce(staged_rows, 0),
                   coalesce(quarantined, 0), coalesce(flagged, 0)
            FROM drops LEFT JOIN files USING (system) ORDER BY system
        """).fetchall()


def print_summary(result: BuildResult) -> None:
    print(f"{'system':<12} {'drops':>6} {'rejected':>9} {'rows in':>11} {'staged':>11} {'quarantined':>12} {'flagged':>8}  run")
    for system, staged, rejected, delivered, rows, quarantined, flagged in result.summary:
        status = {True: "ok", False: "FAILED", None: "-"}[result.runs.get(system)]
        print(f"{system:<12} {staged:>6} {rejected:>9} {delivered:>11,} {rows:>11,} {quarantined:>12,} {flagged:>8,}  {status}")
    print(f"build database: {result.home / 'warehouse' / 'build.duckdb'}")
    print(f"staged Parquet: {result.home / 'staged'}")
    print(f"Dagster:        DAGSTER_HOME={result.home / 'dagster'} dagster dev")
