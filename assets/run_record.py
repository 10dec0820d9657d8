"""A run's row in audit.run, its quarantine summary and the quality report: the same for
`earlyhelp build` and for a run from the Dagster UI, a sensor or a schedule.

Whoever holds the HOME lock outermost owns the record: the CLI for a build (one row for
all the Dagster runs it launches, named by the ``earlyhelp/build_id`` tag), the
``warehouse`` resource for a run launched any other way (one row per Dagster run).
"""

from __future__ import annotations

from assets.checks import BUILD_TAG
from quality.audit import finish_run, start_run, summarise_quarantine
from quality.report import write_quality_report


def record_id(run) -> str:
    """The audit.run row a Dagster run belongs to: its build's, else its own."""
    return run.tags.get(BUILD_TAG) or run.run_id


def begin(warehouse, run_id: str, command: str) -> None:
    with warehouse.connect() as con:
        start_run(con, run_id, command)


def end(warehouse, run_id: str, ok: bool, detail: str | None = None) -> None:
    """Close the row (if publishing has not already), summarise quarantine, write the report."""
    with warehouse.connect() as con:
        summarise_quarantine(con, run_id)
        finish_run(con, run_id, "success" if ok else "failed", detail)
        write_quality_report(con, warehouse.reports_dir)
