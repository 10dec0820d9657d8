"""The leakage guard: features for a month-end must not change when everything after that
month-end is changed or removed.

The small city is staged, linked, modelled and featured once. For a month-end D, a copy of
the build database is rewritten so that nothing after D is as it was: every version
delivered after D (or after go-live, for a D before go-live) is removed, every record that
claims to begin after D is removed, every end date after D is moved, and every value that
only becomes known after D (a rating, a decision, assessment factors, recorded needs, SEN
provision not yet delivered) is changed. Features rebuilt for D on the copy must equal, row
for row, the features the full build made for D.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from assets.features.features import build_features
from assets.warehouse.model import build_model
from tests.conftest import stage_and_link


@pytest.fixture(scope="module")
def built(small_city, tmp_path_factory) -> Path:
    return stage_and_link(small_city[0], tmp_path_factory.mktemp("features_build"), build_model, build_features)


def features_at(con, as_of: date) -> list[tuple]:
    return con.execute("SELECT * FROM features.child_month WHERE as_of = ? ORDER BY person_key",
                       [as_of]).fetchall()


def census_after(term: str) -> date:
    """The school census that delivers a term's attendance (CONTRACT: a term in arrears)."""
    year, name = int(term[:4]), term[5:]
    month, year = {"SPR": (5, year), "SUM": (10, year), "AUT": (1, year + 1)}[name]
    first = date(year, month, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 14)


# For each history table: the date a record claims to begin (removed when after D), the
# dates that may fall later (blanked when after D), and values only known at a later date.
BEGINS = {
    "mash__contacts": "received_at",
    "social_care__ssd_cin_episodes": "cine_referral_date",
    "social_care__ssd_cin_assessments": "cina_assessment_start_date",
    "social_care__ssd_cin_plans": "cinp_cin_plan_start_date",
    "social_care__ssd_cp_plans": "cppl_cp_plan_start_date",
    "social_care__ssd_cla_episodes": "clae_cla_episode_start_date",
    "social_care__ssd_s47_enquiry": "s47e_s47_start_date",
    "early_help__episodes": "START_DATE",
    "early_help__assessments": "START_DATE",
    "early_help__referrals": "REFERRAL_DATE",
    "early_help__family_members": "FROM_DATE",
    "education__exclusions": "StartDate",
    "education__ehe": "StartDate",
    "education__cme": "IdentifiedDate",
    "education__fsm": "FSMStartDate",
    "health__encounters": "start_date",
    "health__service_requests": "authored_on",
}
LATER = {
    "mash__contacts": ["rated_at", "decision_at", "updated_at"],
    "social_care__ssd_cin_episodes": ["cine_close_date"],
    "social_care__ssd_cin_assessments": ["cina_assessment_auth_date"],
    "social_care__ssd_cin_plans": ["cinp_cin_plan_end_date"],
    "social_care__ssd_cp_plans": ["cppl_cp_plan_end_date"],
    "social_care__ssd_cla_episodes": ["clae_cla_episode_ceased"],
    "early_help__episodes": ["END_DATE", "ALLOCATED_DATE"],
    "early_help__assessments": ["COMPLETED_DATE"],
    "early_help__family_members": ["TO_DATE"],
    "education__ehe": ["EndDate"],
    "education__cme": ["ResolvedDate"],
    "education__fsm": ["FSMEndDate"],
    "health__service_requests": ["rejection_date", "discharge_date"],
}
# value column, the date it becomes known, and what it is changed to
REVEALED = [
    ("mash__contacts", "rag", "rated_at", "CASE rag WHEN 'R' THEN 'G' ELSE 'R' END"),
    ("mash__contacts", "decision", "decision_at", "'CSC_ASSESSMENT'"),
    ("social_care__ssd_cin_assessments", "cina_assessment_factors", "cina_assessment_auth_date",
     "'[\"3A\", \"4B\", \"1B\", \"24A\"]'"),
    ("social_care__ssd_cin_episodes", "cine_close_reason", "cine_close_date", "'RC8'"),
    ("early_help__assessments", "NEEDS", "COMPLETED_DATE", "'EDU;HEA;SAFE;DA;FIN'"),
    ("early_help__episodes", "END_REASON", "END_DATE", "'STEP_UP'"),
]


def rewrite_after(con, d: date) -> None:
    """Change or remove everything the warehouse holds about the time after ``d``."""
    go_live = {s: v for s, v in con.execute("""
        SELECT 'education', min(valid_from) FROM history.education__pupils
        UNION ALL SELECT 'health', min(valid_from) FROM history.health__patients
        UNION ALL SELECT 'social_care', min(valid_from) FROM history.social_care__ssd_person
        UNION ALL SELECT 'early_help', min(valid_from) FROM history.early_help__family_members
        UNION ALL SELECT 'mash', min(extract_date) FROM history.mash__contacts""").fetchall()}
    tables = [t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'history'").fetchall()]
    for table in tables:
        system = table.split("__")[0]
        if system not in go_live:
            continue
        cutoff = max(d, go_live[system])
        # deliveries after D (after go-live when D is earlier: that extract is the past's record)
        if table == "mash__contacts":
            con.execute(f"DELETE FROM history.{table} WHERE extract_date > ?", [cutoff])
        else:
            con.execute(f"DELETE FROM history.{table} WHERE valid_from > ?", [cutoff])
            con.execute(f"UPDATE history.{table} SET valid_to = NULL, is_current = true WHERE valid_to > ?",
                        [cutoff])
    for table, value, known, changed in REVEALED:
        con.execute(f"UPDATE history.{table} SET {value} = {changed} WHERE CAST({known} AS DATE) > ?", [d])
    for table, begins in BEGINS.items():
        con.execute(f"DELETE FROM history.{table} WHERE CAST({begins} AS DATE) > ?", [d])
    for table, columns in LATER.items():
        for column in columns:
            con.execute(f"UPDATE history.{table} SET {column} = NULL WHERE CAST({column} AS DATE) > ?", [d])
    # attendance a census after D would deliver, and SEN provision before its delivery
    for (term,) in con.execute("SELECT DISTINCT Term FROM history.education__attendance").fetchall():
        if census_after(term) > d:
            con.execute("DELETE FROM history.education__attendance WHERE Term = ?", [term])
    con.execute("UPDATE history.education__sen SET SENProvision = 'E' WHERE valid_from > ?", [d])
    # where people lived and with whom, after D
    for table in ("identity.household", "identity.family_member"):
        con.execute(f"DELETE FROM {table} WHERE valid_from > ?", [d])
        con.execute(f"UPDATE {table} SET valid_to = NULL WHERE valid_to > ?", [d])


@pytest.mark.parametrize("as_of", [date(2025, 6, 30), date(2025, 10, 31)],
                         ids=["before go-live (backload)", "after go-live (deliveries)"])
def test_features_at_a_month_end_ignore_everything_after_it(built, tmp_path, as_of):
    with duckdb.connect(str(built), read_only=True) as con:
        before = features_at(con, as_of)
    assert len(before) > 1000
    copy = tmp_path / "rewritten.duckdb"
    shutil.copy(built, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("SET TimeZone = 'UTC'")
        changed = con.execute("SELECT count(*) FROM history.mash__contacts").fetchall()[0][0]
        rewrite_after(con, as_of)
        assert con.execute("SELECT count(*) FROM history.mash__contacts").fetchall()[0][0] < changed
        build_features(con, first_as_of=as_of, last_as_of=as_of)
        after = features_at(con, as_of)
    assert len(after) == len(before)
    differing = [(b, a) for b, a in zip(before, after) if b != a]
    assert not differing, f"{len(differing)} rows changed, e.g. {differing[:2]}"


def test_the_rewrite_changes_later_months(built, tmp_path):
    """The guard can fail: the same rewrite does change a later month's features."""
    as_of, later = date(2025, 6, 30), date(2025, 10, 31)
    with duckdb.connect(str(built), read_only=True) as con:
        before = features_at(con, later)
    copy = tmp_path / "rewritten.duckdb"
    shutil.copy(built, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("SET TimeZone = 'UTC'")
        rewrite_after(con, as_of)
        build_features(con, first_as_of=later, last_as_of=later)
        after = features_at(con, later)
    assert before != after
