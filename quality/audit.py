"""The audit schema: append-only records of every run and every check result.

Checks call `record_check`; the build registers runs with `start_run` / `finish_run`.
Nothing here deletes or updates a check result: the review workstream reads the history.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from sources.sql_runner import run_sql, table_exists

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")
AUDIT_SQL = Path(__file__).with_name("audit.sql")  # every audit table, declared once



def thresholds() -> dict:
    return yaml.safe_load(THRESHOLDS.read_text())


@dataclass
class Outcome:
    """What one check found: passed or not, against what, and which rows failed."""
    passed: bool
    observed: object
    expected: object
    failing_rows: int = 0
    sample: list = field(default_factory=list)


def ensure_audit(con: duckdb.DuckDBPyConnection) -> None:
    run_sql(con, AUDIT_SQL)


def record_check(con: duckdb.DuckDBPyConnection, run_id: str, asset: str, check_name: str,
                 severity: str, outcome: Outcome, partition: str | None = None,
                 build_id: str | None = None) -> None:
    """build_id groups the several Dagster runs of one `earlyhelp build` (else the run)."""
    ensure_audit(con)
    con.execute("INSERT INTO audit.check_result VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)", [
        run_id, partition, asset, check_name, severity, bool(outcome.passed),
        json.dumps(outcome.observed, default=str), json.dumps(outcome.expected, default=str),
        int(outcome.failing_rows), json.dumps(outcome.sample[:10], default=str), build_id or run_id])


def summarise_quarantine(con: duckdb.DuckDBPyConnection, build_id: str) -> None:
    """What quarantine holds at the end of a build, by system and rule (append-only)."""
    ensure_audit(con)
    if not table_exists(con, "quarantine.issue"):  # nothing was ever staged in this HOME
        return
    con.execute("""
        INSERT INTO audit.quarantine_summary
        SELECT ?, system, rule, count(*), count(DISTINCT (extract_date, file_name)), now()
        FROM quarantine.issue GROUP BY ALL
    """, [build_id])


def blocking_failures(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(asset, check) of every blocking check whose latest result is a failure: publish
    refuses to run while this is not empty."""
    ensure_audit(con)
    return con.sql("""
        SELECT asset, check_name FROM audit.check_result
        QUALIFY row_number() OVER (PARTITION BY asset, check_name ORDER BY checked_at DESC) = 1
            AND severity = 'blocking' AND NOT passed
        ORDER BY ALL
    """).fetchall()


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, command: str) -> None:
    ensure_audit(con)
    con.execute("INSERT INTO audit.run VALUES (?, ?, now(), NULL, 'running', NULL)", [run_id, command])


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, detail: str | None = None,
               only_running: bool = True) -> None:
    """Give a running row its end. The one other update audit.run allows
    (``only_running=False``): a run its publish step marked finished, whose publish then
    failed, is marked failed."""
    ensure_audit(con)
    which = "run_id = ? AND status = 'running'" if only_running else "run_id = ?"
    con.execute(f"UPDATE audit.run SET finished_at = now(), status = ?, detail = ? WHERE {which}",
                [status, detail, run_id])


def fail_dead_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mark failed every audit.run row still 'running'. Call only while holding the HOME
    build lock afresh (quality/home_lock.py): then no build is running, so any such row
    belongs to a process that died before it could finish it. Returns their run ids."""
    ensure_audit(con)
    dead = [r[0] for r in con.execute("SELECT run_id FROM audit.run WHERE status = 'running'").fetchall()]
    con.execute("UPDATE audit.run SET finished_at = now(), status = 'failed', "
                "detail = 'the process died before the run finished (found by the next build)' "
                "WHERE status = 'running'")
    return dead
