"""Point-in-time risk features: schema `features`, built from the staged history, the
identity tables and the conformed model by the SQL files in ``sql/``.

`build_features` is a plain function (no Dagster). Every value in ``features.child_month``
uses only what the warehouse knew at its month-end; ``sql/known.sql`` states the rule.
Labels (``features.child_month_label``) are kept apart because they look forward.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb

from assets.transaction import transaction
from assets.warehouse.model import run_model_sql
from sources.sql_runner import run_sql

SQL = Path(__file__).parent / "sql"
# Feature SQL in the order it runs; each file's header gives its tables' meaning and grain.
SQL_FILES = ("known.sql", "events.sql", "child_values.sql", "family_month.sql", "child_month.sql",
             "labels.sql")
KNOWLEDGE_RULES = ("backload_as_claimed", "strict")
# Twelve-month look-backs need a year of history before the first month-end.
LOOKBACK_MONTHS = 12
TABLES = ("child_month", "child_month_label", "child_population", "family_month", "feature_definition", "window")


def month_end(day: date) -> date:
    nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def last_month_end_on_or_before(day: date) -> date:
    end = month_end(day)
    return end if end == day else date(day.year, day.month, 1) - timedelta(days=1)


def data_window(con: duckdb.DuckDBPyConnection) -> tuple[date, date, date]:
    """(first month-end, last month-end, the data's last day) for this warehouse.

    The data's last day is the newest extract date any system delivered, so a rebuild of
    the same drops gives the same window whatever today's date is. The window starts once
    LOOKBACK_MONTHS of the systems' own records lie behind it.
    """
    run_model_sql(con, "data_as_of.sql")
    data_as_of, earliest = con.execute("""
        SELECT data_as_of(),
               least((SELECT min(received_at)::DATE FROM history.mash__contacts),
                     (SELECT min(cine_referral_date)::DATE FROM history.social_care__ssd_cin_episodes))
    """).fetchall()[0]
    if earliest:
        months = earliest.month - 1 + LOOKBACK_MONTHS
        first = month_end(date(earliest.year + months // 12, months % 12 + 1, 1))
    else:
        first = data_as_of
    last = last_month_end_on_or_before(data_as_of)
    return min(first, last), last, data_as_of


def build_features(con: duckdb.DuckDBPyConnection, knowledge_rule: str = "backload_as_claimed",
                   first_as_of: date | None = None, last_as_of: date | None = None) -> dict[str, int]:
    """Rebuild schema `features` in one transaction; return {table: row count}."""
    if knowledge_rule not in KNOWLEDGE_RULES:
        raise ValueError(f"knowledge_rule must be one of {KNOWLEDGE_RULES}, not {knowledge_rule!r}")
    auto_first, auto_last, data_as_of = data_window(con)
    first, last = first_as_of or auto_first, last_as_of or auto_last
    params = {"first_as_of": first.isoformat(), "last_as_of": last.isoformat(),
              "data_as_of": data_as_of.isoformat(),
              "backload_as_claimed": "true" if knowledge_rule == "backload_as_claimed" else "false"}
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS features")
        # the one definition of ethnicity versions, shared with model.dim_person
        run_model_sql(con, "ethnicity_version.sql")
        for name in SQL_FILES:
            run_sql(con, SQL / name, **params)
        con.execute("""
            CREATE OR REPLACE TABLE features.window AS
            SELECT ?::DATE AS first_as_of, ?::DATE AS last_as_of, ?::DATE AS data_as_of,
                   ? AS knowledge_rule, (SELECT list(system || ' ' || go_live ORDER BY system)
                                         FROM _feat_go_live) AS go_live
        """, [first, last, data_as_of, knowledge_rule])
        _store_definitions(con)
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND "
                                    "table_name LIKE '\\_feat\\_%' ESCAPE '\\'").fetchall():
            con.execute(f"DROP TABLE temp.main.{table}")
    return {t: con.execute(f"SELECT count(*) FROM features.{t}").fetchall()[0][0] for t in TABLES}


def _store_definitions(con: duckdb.DuckDBPyConnection) -> None:
    """features.feature_definition: every child_month column with the definition its SQL
    header gives, for the model card and analysts. Grain: feature."""
    from assets.dictionary import Sources, parse_sql_file

    sources = Sources()
    for name in SQL_FILES:
        parse_sql_file(SQL / name, sources)
    rows = [(column, description, "assets/features/sql")
            for (schema, table, column), (description, _source) in sources.columns.items()
            if (schema, table) == ("features", "child_month")]
    con.execute("CREATE OR REPLACE TABLE features.feature_definition "
                "(feature VARCHAR, definition VARCHAR, source VARCHAR)")
    if rows:
        con.executemany("INSERT INTO features.feature_definition VALUES (?, ?, ?)", rows)
