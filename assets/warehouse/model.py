"""The conformed model (schema `model`): dimensions and facts keyed by person_key and
family_key, built by the SQL files beside this module from the staged history and the
identity tables. See docs/warehouse.md for the tables, their grains and conventions.

`build_model(con)` is a pure function of the build database: no Dagster, no pandas. It runs
the files in dependency order inside one transaction, so a failure leaves the previous
model as it was, and returns each model table's row count.
"""

from __future__ import annotations

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

# The tables docs/warehouse.md specifies, each with its grain (the columns unique together).
TABLE_GRAIN: dict[str, tuple[str, ...]] = {
    "dim_date": ("date",),
    "dim_person": ("person_key",),
    "dim_family": ("family_key",),
    "dim_worker": ("system", "worker_id"),
    "dim_team": ("system", "team"),
    "dim_district": ("district",),
    "dim_school": ("urn",),
    "fact_mash_contact": ("contact_id", "child_seq"),
    "fact_eh_referral": ("referral_id",),
    "fact_eh_episode": ("episode_id",),
    "fact_csc_referral": ("referral_id",),
    "fact_assessment": ("assessment_id",),
    "fact_cin_plan": ("cin_plan_id",),
    "fact_cp_plan": ("cp_plan_id",),
    "fact_cla_episode": ("cla_episode_id",),
    "fact_s47_enquiry": ("enquiry_id",),
    "fact_attendance": ("pupil_id", "urn", "term"),
    "fact_exclusion": ("exclusion_id",),
    "fact_health_contact": ("encounter_id",),
    "fact_camhs_referral": ("request_id",),
}

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
