"""Caseload marts: schema `marts`, built from schema `model` by the SQL files beside this module.

`build_marts` is a plain function (no Dagster): the asset and the tests call it on a DuckDB
connection that holds the model tables. Each `<mart>.sql` file's header gives the table's
meaning, grain and the definition of every measure (the data dictionary lists the columns).
`_calendar.sql` first lays out the months and weeks the data covers, so the marts depend on
the data only, never on today's date.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from assets.transaction import transaction

SQL = Path(__file__).parent
CALENDAR = "_calendar.sql"
CALENDAR_TABLES = ("_mart_range", "_mart_month", "_mart_week")
MARTS = (
    "key_worker_caseload_weekly",
    "eh_waits_by_district_month",
    "mash_timeliness_monthly",
    "referral_sources_monthly",
    "children_open_by_service",
    "closures_monthly",
    "step_flows_monthly",
    "re_referrals_monthly",
    "demand_by_district",
)
ANALYST_QUERIES = SQL / "analyst_queries.sql"


def build_marts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rebuild every mart in one transaction (a failure leaves the previous marts in place).

    Returns the row count of each mart, by table name.
    """
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute((SQL / CALENDAR).read_text())
        for mart in MARTS:
            con.execute((SQL / f"{mart}.sql").read_text())
        for table in CALENDAR_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return {mart: con.execute(f"SELECT count(*) FROM marts.{mart}").fetchall()[0][0] for mart in MARTS}


def analyst_queries(path: Path = ANALYST_QUERIES) -> dict[str, str]:
    """The example queries by name: each starts at a `-- name: <snake_case>` line."""
    queries: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        if line.startswith("-- name:"):
            name = line.removeprefix("-- name:").strip()
            queries[name] = ""
        elif name is not None:
            queries[name] += line + "\n"
    return {name: sql.strip() for name, sql in queries.items()}
