"""The warehouse resource: the HOME a run builds (its layout: assets/home.py) and the
landing folder it reads drops from. The bottom of the Dagster side: assets and
pipelines import it; it imports only assets/home.py, quality/ and, while a run
starts and ends, assets/run_record.py."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from assets.home import Home
from quality.audit import fail_dead_runs
from quality.home_lock import dead_runs, holding_home, marked_alive

DEFAULT_HOME = "data/home"
DEFAULT_LANDING = "data/city/landing"


class Warehouse(dg.ConfigurableResource):
    """A build's HOME folder and the landing folder it reads drops from. In the
    Definitions `dagster dev` loads, both come from EARLYHELP_HOME and EARLYHELP_LANDING
    (``dg.EnvVar``, read when a run starts, not at import)."""

    home: str = DEFAULT_HOME
    landing: str = DEFAULT_LANDING

    @property
    def layout(self) -> Home:
        """Every path under HOME."""
        return Home(Path(self.home))

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def landing_path(self) -> Path:
        return Path(self.landing)

    @property
    def build_db(self) -> Path:
        return self.layout.build_db

    @property
    def staged_dir(self) -> Path:
        return self.layout.staged_dir

    @property
    def reports_dir(self) -> Path:
        return self.layout.reports_dir

    @property
    def identity_dir(self) -> Path:
        return self.layout.identity_dir

    @property
    def review_dir(self) -> Path:
        return self.layout.review_dir

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        """A run holds HOME's build lock for its whole life (waiting, with a message, while
        another build has it) and is marked alive; the first holder after a crash marks
        the dead runs failed. Everything it creates under HOME is its owner's only (umask
        077), as under `earlyhelp build`: HOME holds identifiable data. A run not launched
        by `earlyhelp build` gets what a build gets: its row in audit.run, the quarantine
        summary and the quality report (assets/run_record.py). Sensors and schedules
        evaluate without a run: no lock."""
        run = context.run
        if run is None:
            yield self
            return
        previous_umask = os.umask(0o077)
        try:
            home = self.home_path
            home.mkdir(parents=True, exist_ok=True)
            with marked_alive(home, run.run_id), holding_home(
                    home, f"Dagster run {run.run_id}", wait=True,
                    on_wait=lambda who: context.log.warning(f"waiting for {who} to finish with {home}")) as holding:
                if not holding.outermost:  # inside `earlyhelp build`, which keeps the run record
                    yield self
                    return
                from assets import run_record

                recover_dead_runs(self, context.instance, current_run_id=run.run_id)
                run_record.begin(self, run.run_id, f"dagster run: {run.job_name}")
                yield self
                failed = sorted({e.step_key for e in context.instance.all_logs(
                    run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)})
                run_record.end(self, run.run_id, not failed, ", ".join(failed) or None)
        finally:
            os.umask(previous_umask)

    @contextmanager
    def connect(self):
        """The single writer connection to the build database."""
        self.build_db.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.build_db))
        con.execute("SET TimeZone = 'UTC'")  # instants subtract as elapsed time, across clock changes
        try:
            yield con
        finally:
            con.close()


IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def recover_dead_runs(warehouse: Warehouse, instance: dg.DagsterInstance, current_run_id: str | None = None) -> dict:
    """Mark failed what died in this HOME: audit.run rows left 'running' and Dagster runs
    in progress whose process is gone. Call only when the HOME lock was just taken."""
    in_progress = [r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=list(IN_PROGRESS)))
                   if r.run_id != current_run_id]
    dagster_dead = dead_runs(warehouse.home_path, in_progress)
    for run_id in dagster_dead:
        instance.report_run_failed(instance.get_run_by_id(run_id),
                                   message="the run's process died (found by the next run on this HOME)")
    audit_dead = []
    if warehouse.build_db.exists():
        with warehouse.connect() as con:
            audit_dead = fail_dead_runs(con)
    return {"dagster": dagster_dead, "audit": audit_dead}
