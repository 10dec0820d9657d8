"""`earlyhelp build`: run the whole pipeline in process on every drop in a landing folder.

HOME receives the Dagster instance (``HOME/dagster``), the build database, staged
Parquet and reports. The build launches the jobs of pipelines/jobs.py, the same the UI
and sensors launch: each system's ``stage_<system>`` once over all its drops (a
single-run backfill), then ``warehouse``; the runs appear in the Dagster UI like any other.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from assets.checks import BUILD_TAG
from assets.home import Home
from assets.staging import drop_partitions
from quality.home_lock import holding_home
from pipelines.jobs import staging_job_name, warehouse_job
from assets.resources import Warehouse, recover_dead_runs
from assets import inputs, run_record
from sources.drops import SYSTEMS, find_drops, ignored_in_landing
from sources.sql_runner import table_exists

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


@dataclass
class BuildResult:
    home: Path
    runs: dict[str, bool]  # system (or "identity") -> run succeeded
    summary: list[tuple]
    identity: dict | None = None  # what the identity run found, and its evaluation
    model: dict | None = None  # the baseline risk model's run (features.model_run)
    recovered: dict | None = None  # runs of earlier processes found dead and marked failed
    ignored: list[str] = field(default_factory=list)  # landing entries that are not drops (audit.landing_ignored)
    landing: Path | None = None
    up_to_date: dict[str, str] = field(default_factory=dict)  # job skipped -> why (its inputs are unchanged)

    @property
    def ok(self) -> bool:
        return all(self.runs.values())


def dagster_instance(home: Path) -> dg.DagsterInstance:
    """The build's own Dagster instance, configured by the repo's dagster.yaml."""
    dagster_home = Home(home).dagster_dir
    dagster_home.mkdir(parents=True, exist_ok=True)
    if REPO_DAGSTER_YAML.exists() and not (dagster_home / "dagster.yaml").exists():
        shutil.copyfile(REPO_DAGSTER_YAML, dagster_home / "dagster.yaml")  # made under the umask
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dg.DagsterInstance.get()


def build(landing: Path, home: Path, truth: Path | None = None, *, wait: bool = False, on_wait=None) -> BuildResult:
    """Stage every drop, then link identity. With a truth folder (synthetic cities only),
    score identity against it and keep the figures in audit.identity_evaluation. Every
    build is a row of audit.run, and ends with the quality report under HOME/reports.

    One build at a time per HOME: if another holds it, raise HomeBusy, or with ``wait``
    call ``on_wait(holder)`` and wait for it. Runs that died before are marked failed."""
    landing, home = Path(landing).resolve(), Path(home).resolve()
    if not landing.is_dir():
        raise FileNotFoundError(f"no landing folder at {landing}")
    if not find_drops(landing):
        raise FileNotFoundError(f"no drops in {landing}: a drop is a folder <system>/YYYY-MM-DD holding its "
                                "_manifest.json; nothing was done")
    # HOME holds identifiable data (the databases, staged Parquet, the review queue): every
    # file and folder the build creates there is its owner's only
    previous_umask = os.umask(0o077)
    try:
        home.mkdir(parents=True, exist_ok=True)
        with holding_home(home, "earlyhelp build", wait=wait, on_wait=on_wait):
            return _build(landing, home, truth)
    finally:
        os.umask(previous_umask)


def _build(landing: Path, home: Path, truth: Path | None) -> BuildResult:
    warehouse = Warehouse(home=str(home), landing=str(landing))
    instance = dagster_instance(home)
    build_id = uuid.uuid4().hex
    tags = {"earlyhelp/command": "build", BUILD_TAG: build_id}
    recovered = recover_dead_runs(warehouse, instance)
    todo = inputs.plan(home, landing)  # what changed since each job's last successful run
    run_record.begin(warehouse, build_id, "build")
    runs, identity, model, up_to_date = {}, None, None, {}
    found = {system: find_drops(landing, (system,)) for system in SYSTEMS}
    try:
        for system, drops in found.items():
            if not drops:
                continue
            if system not in todo.stale_systems:
                up_to_date[staging_job_name(system)] = _unchanged_since(todo.since.get(f"staging/{system}"))
                continue
            runs[system] = _stage(instance, warehouse, system, drops, tags)
        if all(runs.values()) and (todo.warehouse_stale or runs):
            # one run from identity to publish: a failing blocking check stops what follows it
            result = _job(warehouse_job.name).execute_in_process(
                instance=instance, resources={"warehouse": warehouse}, raise_on_error=False, run_config=QUIET,
                tags=tags)
            done = {key.to_user_string() for key in _materialized(result)}
            runs["identity"] = "identity/persons" in done
            runs["warehouse"] = result.success
            if runs["identity"]:
                identity = _identity_summary(warehouse, result.run_id, truth)
            if "features/model_card" in done:
                model = _model_summary(warehouse)
        elif all(runs.values()):
            up_to_date[warehouse_job.name] = (_unchanged_since(todo.since.get("warehouse"))
                                              + "; the serving files are untouched")
            identity, model = _last_figures(warehouse, truth, todo.since["warehouse"][1])
    finally:
        ok = all(runs.values())
        detail = ", ".join(s for s, r in runs.items() if not r) or (
            "nothing new: every job's inputs as at its last successful run" if not runs else None)
        run_record.end(warehouse, build_id, ok, detail)
    ignored = [f"{system}/{name}: {why}" for system in SYSTEMS for name, why in ignored_in_landing(landing, system)]
    return BuildResult(home, runs, _summary(warehouse.build_db), identity, model, recovered, ignored, landing,
                       up_to_date)


def _stage(instance, warehouse: Warehouse, system: str, drops, tags: dict) -> bool:
    """One staging run over all of the system's drops (a single-run backfill)."""
    name = drop_partitions(system).name
    known = set(instance.get_dynamic_partitions(name))
    instance.add_dynamic_partitions(name, [d.partition for d in drops if d.partition not in known])
    keys = instance.get_dynamic_partitions(name)
    result = _job(staging_job_name(system)).execute_in_process(
        instance=instance, resources={"warehouse": warehouse}, raise_on_error=False, run_config=QUIET,
        tags={**tags, "dagster/asset_partition_range_start": keys[0],
              "dagster/asset_partition_range_end": keys[-1]})
    return result.success


def _unchanged_since(run: tuple) -> str:
    """run: the (run id, time) inputs.plan gives for an up-to-date job."""
    run_id, at = run
    return f"up to date: inputs unchanged since run {run_id[:8]} ({at:%Y-%m-%d %H:%M:%S %Z})"


def _last_figures(warehouse: Warehouse, truth: Path | None, since) -> tuple[dict, dict | None]:
    """Identity's and the risk model's figures as the last warehouse run left them (and
    the evaluation stored after it, when a truth is given): read, not recomputed."""
    from assets.identity.evaluate import stored_evaluation

    with duckdb.connect(str(warehouse.build_db), read_only=True) as con:
        identity = _identity_counts(con)
        if truth is not None:
            evaluation = stored_evaluation(con, since)
            if evaluation is not None:
                identity["evaluation"] = evaluation
        model = _model_run(con) if table_exists(con, "features.model_run") else None
    return identity, model


def _job(name: str) -> dg.JobDefinition:
    """A job of the Definitions `dagster dev` loads: the build runs exactly what the UI runs."""
    from pipelines.definitions import defs

    return defs.resolve_job_def(name)


def _model_run(con) -> dict:
    cursor = con.execute("SELECT * FROM features.model_run")
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchall()[0]))


def _model_summary(warehouse: Warehouse) -> dict:
    with warehouse.connect() as con:
        return _model_run(con)


def _materialized(result) -> list[dg.AssetKey]:
    return [event.asset_key for event in result.get_asset_materialization_events()]


def _identity_counts(con) -> dict:
    return dict(zip(("records", "persons", "families", "review_queue"), con.sql("""
        SELECT (SELECT count(*) FROM identity.person_record), (SELECT count(*) FROM identity.person),
               (SELECT count(*) FROM identity.family), (SELECT count(*) FROM identity.review_queue)
    """).fetchall()[0]))


def _identity_summary(warehouse: Warehouse, run_id: str, truth: Path | None) -> dict:
    from assets.identity.evaluate import evaluate_identity, store_evaluation

    with warehouse.connect() as con:
        figures = _identity_counts(con)
        if truth is not None:
            evaluation = evaluate_identity(con, Path(truth))
            store_evaluation(con, evaluation, run_id)
            figures["evaluation"] = evaluation
    return figures


def _summary(build_db: Path) -> list[tuple]:
    """Per system: the drops and rows that staging holds now, and what was turned away."""
    if not build_db.exists():
        return []
    with duckdb.connect(str(build_db), read_only=True) as con:
        return con.sql("""
            WITH drops AS (
                SELECT system,
                       count(*) FILTER (WHERE status IN ('staged', 'unchanged')) AS staged,
                       count(*) FILTER (WHERE status = 'rejected') AS rejected,
                       count(*) FILTER (WHERE status = 'held') AS held
                FROM (SELECT * FROM audit.drop WHERE status NOT IN ('interrupted', 'staging') QUALIFY row_number() OVER (
                          PARTITION BY system, extract_date ORDER BY recorded_at DESC) = 1)
                GROUP BY system
            ), files AS (
                SELECT system, sum(delivered_rows) AS delivered, sum(staged_rows) AS staged_rows,
                       sum(quarantined_rows) AS quarantined, sum(flagged_values) AS flagged
                FROM audit.drop_file_loaded GROUP BY system
            )
            SELECT system, staged, rejected, held, coalesce(delivered, 0), coalesce(staged_rows, 0),
                   coalesce(quarantined, 0), coalesce(flagged, 0)
            FROM drops LEFT JOIN files USING (system) ORDER BY system
        """).fetchall()


def print_summary(result: BuildResult) -> None:
    if result.recovered and (result.recovered["audit"] or result.recovered["dagster"]):
        print(f"found dead and marked failed: {len(result.recovered['audit'])} build(s) in audit.run, "
              f"{len(result.recovered['dagster'])} Dagster run(s)")
    print(f"{'system':<12} {'drops':>6} {'rejected':>9} {'held':>5} {'rows in':>11} {'staged':>11} {'quarantined':>12} "
          f"{'flagged':>8}  run")
    for system, staged, rejected, held, delivered, rows, quarantined, flagged in result.summary:
        status = {True: "ok", False: "FAILED", None: "-"}[result.runs.get(system)]
        if staging_job_name(system) in result.up_to_date:
            status = "up to date"
        print(f"{system:<12} {staged:>6} {rejected:>9} {held:>5} {delivered:>11,} {rows:>11,} {quarantined:>12,} "
              f"{flagged:>8,}  {status}")
    for name in result.ignored:
        print(f"landing, not a drop (ignored, in audit.landing_ignored): {name}")
    for job, why in result.up_to_date.items():
        print(f"{job}: {why}")
    if result.identity:
        i = result.identity
        print(f"identity: {i['records']:,} records -> {i['persons']:,} persons, {i['families']:,} families; "
              f"{i['review_queue']:,} pairs for review in {Home(result.home).review_queue}")
        if "evaluation" in i:
            e = i["evaluation"]
            print(f"identity against the truth: precision {e['pairwise']['precision']:.5f}, "
                  f"recall {e['pairwise']['recall']:.5f}, twin merges {e['twin_merges']}"
                  + (f" (as evaluated {e['evaluated_at']:%Y-%m-%d %H:%M:%S})" if "evaluated_at" in e else ""))
    elif "identity" in result.runs:
        print("identity: FAILED")
    if result.model:
        m = result.model
        verdict = "clears" if m["clears_bar"] else "does NOT clear"
        measured = f"AUC {m['auc']:.3f}, " if m.get("auc") is not None else ""
        print(f"risk model:     {measured}{verdict} the minimum bar set before evaluation"
              + (f" ({m['bar_failures']})" if m["bar_failures"] else ""))
        print(f"model card:     {Home(result.home).model_card}")
    published = result.runs.get("warehouse")
    home = Home(result.home)
    state = ("(published)" if published else "(up to date: untouched)" if warehouse_job.name in result.up_to_date
             else "(NOT published: left as they were)")
    print(f"serving files:  {home.identifiable_db} and {home.analytics_db.name} {state}")
    print(f"quality report: {home.quality_report}")
    print(f"dictionary:     {home.data_dictionary}")
    print(f"build database: {home.build_db}")
    print(f"staged Parquet: {home.staged_dir}")
    print(f"Dagster:        EARLYHELP_HOME={home.root} EARLYHELP_LANDING={result.landing} "
          f"DAGSTER_HOME={home.dagster_dir} dagster dev")
