"""The audit schema: append-only records of every run and every check result.

Checks call `record_check`; the build registers runs with `start_run` / `finish_run`.
Nothing here deletes or updates a check result: the review workstream reads the history.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")

DDL = """
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS audit.run (
    run_id VARCHAR, command VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    status VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS audit.check_result (
    run_id VARCHAR, partition VARCHAR, asset VARCHAR, check_name VARCHAR, severity VARCHAR,
    passed BOOLEAN, observed VARCHAR, expected VARCHAR, failing_rows BIGINT, sample VARCHAR,
    checked_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS audit.table_profile (
    run_id VARCHAR, table_name VARCHAR, column_name VARCHAR, metric VARCHAR, code VARCHAR,
    value DOUBLE, profiled_at TIMESTAMPTZ);
"""


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
    con.execute(DDL)


def record_check(con: duckdb.DuckDBPyConnection, run_id: str, asset: str, check_name: str,
                 severity: str, outcome: Outcome, partition: str | None = None) -> None:
    ensure_audit(con)
    con.execute("INSERT INTO audit.check_result VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())", [
        run_id, partition, asset, check_name, severity, bool(outcome.passed),
        json.dumps(outcome.observed, default=str), json.dumps(outcome.expected, default=str),
        int(outcome.failing_rows), json.dumps(outcome.sample[:10], default=str)])


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, command: str) -> None:
    ensure_audit(con)
    con.execute("INSERT INTO audit.run VALUES (?, ?, now(), NULL, 'running', NULL)", [run_id, command])


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, detail: str | None = None) -> None:
    ensure_audit(con)
    # the one update audit.run allows: a running row gets its end
    con.execute("UPDATE audit.run SET finished_at = now(), status = ?, detail = ? "
                "WHERE run_id = ? AND status = 'running'", [status, detail, run_id])
