"""The conformed model (schema `model`): dimensions and facts keyed by person_key and
family_key, built by the SQL files beside this module from the staged history and the
identity tables. See docs/warehouse.md for the tables, their grains and conventions.

`build_model(con)` is a pure function of the build database: no Dagster, no pandas. It runs
the files in dependency order inside one transaction, so a failure leaves the previous
model as it was, and returns each model table's row count.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from assets.transaction import transaction
from sources.sql_runner import run_sql

HERE = Path(__file__).resolve().parent

# Dependency order: code lists and working tables, then dimensions (dim_person before
# anything that reads it), then facts.
SQL_FILES: tuple[str, ...] = (
    "data_as_of.sql",
    "ref_codes.sql",
    "prepare.sql",
    "dim_date.sql",
    "dim_school.sql",
    "ethnicity_version.sql",
    "dim_person.sql",
    "dim_family.sql",
    "dim_team.sql",
    "dim_worker.sql",
    "dim_district.sql",
    "fact_mash_contact.sql",
    "facts_early_help.sql",
    "facts_social_care.sql",
    "facts_education.sql",
    "facts_health.sql",
)

# The tables of schema `model`. Each one's grain (the columns unique together)
# is declared once, in the "Grain:" line of its SQL header: a column, or "(a, b)".
SPECIFIED_TABLES: tuple[str, ...] = (
    "dim_date", "dim_person", "dim_family", "dim_worker", "dim_team", "dim_district", "dim_school",
    "fact_mash_contact", "fact_eh_referral", "fact_eh_episode", "fact_csc_referral", "fact_assessment",
    "fact_cin_plan", "fact_cp_plan", "fact_cla_episode", "fact_s47_enquiry", "fact_attendance",
    "fact_exclusion", "fact_health_contact", "fact_camhs_referral",
)


def grain_columns(grain: str) -> tuple[str, ...]:
    """The columns a header's grain names: "(system, team) ..." or "referral_id (the
    source's REFERRAL_ID)"."""
    text = grain.strip()
    if text.startswith("("):
        return tuple(c.strip() for c in text[1:text.index(")")].split(","))
    match = re.match(r"([A-Za-z_]\w*)\s*(?:$|[.;,(—-])", text)  # a name, then punctuation: not prose
    if not match:
        raise ValueError(f"a grain must start with a column or '(columns)': {grain!r}")
    return (match.group(1),)


def _declared_grains() -> dict[str, tuple[str, ...]]:
    from assets.dictionary import repository_sources  # the one reader of SQL headers

    tables = repository_sources().tables
    missing = [t for t in SPECIFIED_TABLES if not (tables.get(("model", t)) or {}).get("grain")]
    if missing:
        raise ValueError(f"no 'Grain:' line in the SQL header of model.{', model.'.join(missing)}")
    return {t: grain_columns(tables[("model", t)]["grain"]) for t in SPECIFIED_TABLES}


TABLE_GRAIN: dict[str, tuple[str, ...]] = _declared_grains()

# Code lists the model loads as data (model.ref_*), beside the specified tables.
REFERENCE_TABLES: tuple[str, ...] = ("ref_ethnicity", "ref_referral_source")

_TEMP_TABLES = ("_as_of", "_record_person", "_postcode", "_family_span", "_current_family",
                "_eh_family", "_eh_referral")


def run_model_sql(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """One model SQL file, with the folder of its code-list CSVs filled in."""
    run_sql(con, HERE / name, warehouse_dir=HERE.as_posix())


def build_model(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Build every table of schema `model` on `con` and return {table: row count}."""
    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS model")
        for name in SQL_FILES:
            run_model_sql(con, name)
        con.execute("DROP MACRO IF EXISTS family_on")  # reads the working tables dropped next
        for temp in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS temp.main.{temp}")
    tables = (*REFERENCE_TABLES, *TABLE_GRAIN)
    return {t: con.execute(f"SELECT count(*) FROM model.{t}").fetchall()[0][0] for t in tables}
