"""The conformed model (assets/warehouse/) on the session's small city: the tables and
columns analysts rely on, unique keys at each grain, every fact's person
and family found in the dimensions, MASH timeliness on instants across the October clock
change, and one harmonised ethnicity per person.

The city is staged and linked once per module, and the model built once on that database;
a test that changes source rows works on its own copy.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from assets.warehouse.model import REFERENCE_TABLES, TABLE_GRAIN, build_model
from sources.synthetic.early_help import ETHNICITY_TEXT
from tests.conftest import stage_and_link

# The columns analysts rely on in each model table (the data dictionary lists them all).
SPEC_COLUMNS: dict[str, set[str]] = {
    "dim_date": {"date", "week_start", "month_start", "month_end", "year", "financial_year"},
    "dim_person": {"person_key", "family_key", "birth_month", "birth_year", "sex", "ethnicity_group",
                   "ethnicity_code", "district", "lsoa", "imd_decile", "is_child", "systems", "system_count"},
    "dim_family": {"family_key", "district", "imd_decile", "members", "children"},
    "dim_worker": {"worker_key", "system", "worker_id", "role", "team", "district", "fte", "is_agency",
                   "start_date", "end_date"},
    "dim_team": {"system", "team", "district"},
    "dim_district": {"district", "children", "imd_decile_median"},
    "dim_school": {"urn", "name", "phase", "district", "postcode"},
    "fact_mash_contact": {"contact_id", "child_seq", "person_key", "family_key", "district", "received_at",
                          "rated_at", "decided_at", "rag", "decision", "referrer_source_code", "source_group",
                          "hours_to_decision", "decided_within_24h", "red_decided_within_4h"},
    "fact_eh_referral": {"referral_id", "family_id", "family_key", "person_key", "referral_date", "source_code",
                         "source_group", "route", "mash_contact_id", "accepted"},
    "fact_eh_episode": {"episode_id", "family_id", "family_key", "person_key", "referral_id", "start_date",
                        "allocated_date", "wait_days", "key_worker_id", "team", "district", "end_date",
                        "end_reason", "step_up_referral_id"},
    "fact_csc_referral": {"referral_id", "person_key", "family_key", "referral_date", "source_code",
                          "source_group", "primary_need", "nfa", "close_date", "close_reason", "team",
                          "worker_id", "mash_contact_id"},
    "fact_assessment": {"assessment_id", "person_key", "family_key", "referral_id", "start_date", "auth_date",
                        "child_seen", "outcome_nfa", "factors"},
    "fact_cin_plan": {"cin_plan_id", "person_key", "family_key", "referral_id", "start_date", "end_date"},
    "fact_cp_plan": {"cp_plan_id", "person_key", "family_key", "referral_id", "start_date", "end_date",
                     "initial_category", "latest_category"},
    "fact_cla_episode": {"cla_episode_id", "person_key", "family_key", "start_date", "end_date",
                         "start_reason", "end_reason", "legal_status"},
    "fact_s47_enquiry": {"enquiry_id", "person_key", "family_key", "referral_id", "start_date", "end_date",
                         "outcome"},
    "fact_attendance": {"person_key", "family_key", "urn", "term", "sessions_possible", "sessions_authorised",
                        "sessions_unauthorised", "absence_rate"},
    "fact_exclusion": {"exclusion_id", "person_key", "family_key", "urn", "category", "start_date", "sessions"},
    "fact_health_contact": {"encounter_id", "person_key", "family_key", "review_type", "contact_at", "status",
                            "attendance"},
    "fact_camhs_referral": {"request_id", "person_key", "family_key", "received_date", "source_code",
                            "priority", "status", "rejection_date", "discharge_date"},
}
FACTS = [t for t in SPEC_COLUMNS if t.startswith("fact_")]
# Facts whose every source row names its person (an early help referral may not).
PERSON_REQUIRED = [t for t in FACTS if t not in ("fact_eh_referral", "fact_eh_episode")]

# CODES.md code lists
CBDS = ["WBRI", "WIRI", "WIRT", "WOTH", "WROM", "MWBC", "MWBA", "MWAS", "MOTH", "AIND", "APKN", "ABAN",
        "AOTH", "BCRB", "BAFR", "BOTH", "CHNE", "OOTH", "REFU", "NOBT"]
NHS_ETHNIC = list("ABCDEFGHJKLMNPRSZ")
CIN_SOURCES = ["1A", "1B", "1C", "1D", "2A", "2B", "3A", "3B", "3C", "3D", "3E", "3F", "4", "5A", "5B", "5C",
               "5D", "6", "7", "8", "9", "10"]
CAMHS_SOURCES = ["A1", "A2", "B1", "B2", "C1", "C2", "C3", "E1", "E2", "E3", "E4", "E5", "E6", "F1", "F2", "F3",
                 "G4", "H1", "P1"]
SOURCE_GROUPS = {"family_or_self", "school_or_education", "health", "housing", "local_authority",
                 "police_or_legal", "other", "unknown"}
ETHNICITY_GROUPS = {"White", "Mixed", "Asian", "Black", "Chinese", "Other", "Not known"}


@pytest.fixture(scope="module")
def built(small_city, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The small city staged, linked (run-1) and modelled once; the model's row counts."""
    counts = {}
    database = stage_and_link(small_city[0], tmp_path_factory.mktemp("model_build"),
                              lambda con: counts.update(build_model(con)))
    return database, counts


@pytest.fixture(scope="module")
def db(built):
    with duckdb.connect(str(built[0]), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        yield con


def one(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchone()[0]


def test_every_spec_table_exists_with_its_columns_and_rows(db, built):
    counts = built[1]
    assert set(counts) == set(SPEC_COLUMNS) | set(REFERENCE_TABLES)
    for table, columns in SPEC_COLUMNS.items():
        have = {c for (c,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'model' AND table_name = ?",
            [table]).fetchall()}
        assert columns <= have, f"model.{table} lacks {sorted(columns - have)}"
        assert counts[table] == one(db, f"SELECT count(*) FROM model.{table}")
    # the small city holds at least one row of every table but the rare CLA episode
    assert all(n > 0 for t, n in counts.items() if t != "fact_cla_episode"), counts
    assert db.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = 'model' "
                      "AND table_name = 'fact_mash_contact' AND column_name IN ('received_at', 'decided_at')"
                      ).fetchall() == [("TIMESTAMP WITH TIME ZONE",)] * 2
    assert one(db, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'model' "
                   "AND table_name = 'fact_assessment' AND column_name = 'factors'") == "VARCHAR[]"


@pytest.mark.parametrize("table", list(TABLE_GRAIN))
def test_keys_are_unique_and_present_at_the_stated_grain(db, table):
    key = ", ".join(TABLE_GRAIN[table])
    assert one(db, f"SELECT count(*) FROM (SELECT {key} FROM model.{table} GROUP BY ALL HAVING count(*) > 1)") == 0
    nulls = " OR ".join(f"{k} IS NULL" for k in TABLE_GRAIN[table])
    assert one(db, f"SELECT count(*) FROM model.{table} WHERE {nulls}") == 0


def test_worker_key_is_unique_and_names_the_system(db):
    assert one(db, "SELECT count(*) - count(DISTINCT worker_key) FROM model.dim_worker") == 0
    assert one(db, "SELECT count(*) FROM model.dim_worker WHERE worker_key <> system || ':' || worker_id") == 0
    assert {s for (s,) in db.execute("SELECT DISTINCT system FROM model.dim_worker").fetchall()} == {
        "early_help", "social_care"}


@pytest.mark.parametrize("table", FACTS)
def test_every_fact_finds_its_person_and_family(db, table):
    orphans = one(db, f"SELECT count(*) FROM model.{table} f ANTI JOIN model.dim_person p USING (person_key) "
                      "WHERE f.person_key IS NOT NULL")
    assert orphans == 0
    orphan_families = one(db, f"SELECT count(*) FROM model.{table} f ANTI JOIN model.dim_family d "
                              "USING (family_key) WHERE f.family_key IS NOT NULL")
    assert orphan_families == 0
    # every person identity knows belongs to a family, so a fact with a person has a family
    assert one(db, f"SELECT count(*) FROM model.{table} WHERE person_key IS NOT NULL AND family_key IS NULL") == 0
    if table in PERSON_REQUIRED:
        assert one(db, f"SELECT count(*) FROM model.{table} WHERE person_key IS NULL") == 0


def test_facts_find_their_schools_workers_and_districts(db):
    for table in ("fact_attendance", "fact_exclusion"):
        assert one(db, f"SELECT count(*) FROM model.{table} ANTI JOIN model.dim_school USING (urn)") == 0
    assert one(db, "SELECT count(*) FROM model.fact_eh_episode e WHERE key_worker_id IS NOT NULL AND NOT EXISTS "
                   "(SELECT 1 FROM model.dim_worker w WHERE w.system = 'early_help' "
                   "AND w.worker_id = e.key_worker_id)") == 0
    assert one(db, "SELECT count(*) FROM model.fact_csc_referral r WHERE worker_id IS NOT NULL AND NOT EXISTS "
                   "(SELECT 1 FROM model.dim_worker w WHERE w.system = 'social_care' "
                   "AND w.worker_id = r.worker_id)") == 0
    for table in ("fact_mash_contact", "fact_eh_episode", "dim_person", "dim_family", "dim_school"):
        assert one(db, f"SELECT count(*) FROM model.{table} WHERE district IS NOT NULL "
                       "AND district NOT IN (SELECT district FROM model.dim_district)") == 0


def test_mash_contacts_one_row_per_child_per_contact_latest_version(db):
    assert one(db, "SELECT count(*) FROM model.fact_mash_contact") == one(
        db, "SELECT count(DISTINCT (contact_id, child_seq)) FROM history.mash__contacts")
    # the row is the newest version: its updated_at is the latest the feed sent
    assert one(db, """
        SELECT count(*) FROM model.fact_mash_contact f
        JOIN (SELECT contact_id, child_seq, max(updated_at) AS latest FROM history.mash__contacts GROUP BY ALL) h
          USING (contact_id, child_seq)
        WHERE f.updated_at IS DISTINCT FROM h.latest""") == 0


def test_mash_timeliness_flags_agree_with_hours(db):
    rows = db.execute("""
        SELECT count(*) FILTER (WHERE decided_at IS NOT NULL),
               count(*) FILTER (WHERE (decided_at IS NULL) <> (decided_within_24h IS NULL)),
               count(*) FILTER (WHERE decided_within_24h IS DISTINCT FROM (hours_to_decision <= 24)),
               count(*) FILTER (WHERE hours_to_decision IS DISTINCT FROM
                                      (epoch(decided_at) - epoch(received_at)) / 3600),
               count(*) FILTER (WHERE red_decided_within_4h IS NOT NULL AND (rag <> 'R' OR decided_at IS NULL)),
               count(*) FILTER (WHERE rag = 'R' AND decided_at IS NOT NULL
                                AND red_decided_within_4h IS DISTINCT FROM (hours_to_decision <= 4)),
               count(*) FILTER (WHERE source_group NOT IN (SELECT unnest(?::VARCHAR[])))
        FROM model.fact_mash_contact""", [sorted(SOURCE_GROUPS)]).fetchone()
    decided, *disagreements = rows
    assert decided > 0
    assert disagreements == [0, 0, 0, 0, 0, 0]


def test_hours_to_decision_across_the_october_clock_change_are_elapsed_hours(db, built, tmp_path):
    # From data: contacts received before and decided after a clock change (01:00 UTC): the
    # hours are the elapsed ones, an hour more (October) or less (March) than the wall clock.
    changes = {"2024-03-31": +1, "2024-10-27": -1, "2025-03-30": +1, "2025-10-26": -1}
    for day, wall_clock_shift in changes.items():
        crossing = db.execute(f"""
            SELECT hours_to_decision, epoch(decided_at - received_at) / 3600,
                   epoch(timezone('Europe/London', decided_at) - timezone('Europe/London', received_at)) / 3600
            FROM model.fact_mash_contact
            WHERE received_at < TIMESTAMPTZ '{day} 01:00:00+00' AND decided_at > TIMESTAMPTZ '{day} 01:00:00+00'
              AND decided_at - received_at < INTERVAL 150 DAY""").fetchall()
        for hours, elapsed, wall_clock in crossing:
            assert hours == pytest.approx(elapsed)
            assert wall_clock == pytest.approx(elapsed + wall_clock_shift)
    # By hand: received 23:30 BST on Saturday 25 Oct, decided 23:00 GMT on Sunday 26 Oct:
    # 23.5 hours on the wall clock, 24.5 hours elapsed, so not within 24 hours.
    copy = tmp_path / "clock.duckdb"
    shutil.copyfile(built[0], copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("""
            INSERT INTO history.mash__contacts BY NAME
            SELECT 'MCCLOCK' AS contact_id, 1 AS child_seq,
                   TIMESTAMPTZ '2025-10-25 23:30:00+01:00' AS received_at,
                   TIMESTAMPTZ '2025-10-26 00:10:00+01:00' AS rated_at, 'R' AS rag, 'CSC_ASSESSMENT' AS decision,
                   TIMESTAMPTZ '2025-10-26 23:00:00+00:00' AS decision_at,
                   TIMESTAMPTZ '2025-10-26 23:00:00+00:00' AS updated_at, '6' AS referrer_source_code,
                   DATE '2025-10-27' AS extract_date, TIMESTAMPTZ '2025-10-26 23:00:00+00:00' AS valid_from,
                   true AS is_current""")
        build_model(con)
        hours, within_24h, red_4h, received_date, group = con.execute(
            "SELECT hours_to_decision, decided_within_24h, red_decided_within_4h, received_date, source_group "
            "FROM model.fact_mash_contact WHERE contact_id = 'MCCLOCK'").fetchone()
    assert hours == pytest.approx(24.5)
    assert within_24h is False and red_4h is False
    assert str(received_date) == "2025-10-25"  # the London day it arrived
    assert group == "police_or_legal"


def test_ethnicity_mapping_covers_every_code_and_source_value(db):
    mapped = set(db.execute("SELECT scheme, value FROM model.ref_ethnicity").fetchall())
    assert {("cbds", c) for c in CBDS} <= mapped
    assert {("nhs", c) for c in NHS_ETHNIC} <= mapped
    assert {("text", t.lower()) for t in ETHNICITY_TEXT.values()} <= mapped
    # each CBDS code keeps itself; groups are the spec's
    assert one(db, "SELECT count(*) FROM model.ref_ethnicity WHERE scheme = 'cbds' AND value <> ethnicity_code") == 0
    groups = {g for (g,) in db.execute("SELECT DISTINCT ethnicity_group FROM model.ref_ethnicity").fetchall()}
    assert groups == ETHNICITY_GROUPS
    assert one(db, "SELECT count(*) FROM model.ref_ethnicity WHERE ethnicity_code NOT IN (SELECT unnest(?))",
               [CBDS]) == 0
    # every value a source actually wrote is mapped
    unmapped = db.execute("""
        SELECT DISTINCT v FROM (
            SELECT Ethnicity AS v FROM history.education__pupils
            UNION ALL SELECT pers_ethnicity FROM history.social_care__ssd_person)
        WHERE v IS NOT NULL AND v NOT IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'cbds')
        UNION ALL
        SELECT DISTINCT ethnic_category FROM history.health__patients
        WHERE ethnic_category IS NOT NULL
          AND ethnic_category NOT IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'nhs')
        UNION ALL
        SELECT DISTINCT ETHNICITY FROM history.early_help__family_members
        WHERE ETHNICITY IS NOT NULL
          AND upper(trim(ETHNICITY)) NOT IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'cbds')
          AND lower(trim(ETHNICITY)) NOT IN (SELECT value FROM model.ref_ethnicity WHERE scheme = 'text')
        """).fetchall()
    assert unmapped == []


def test_referral_source_groups_cover_every_code(db):
    have = set(db.execute("SELECT scheme, code FROM model.ref_referral_source").fetchall())
    assert {("cin", c) for c in CIN_SOURCES} | {("camhs", c) for c in CAMHS_SOURCES} <= have
    assert {g for (g,) in db.execute("SELECT DISTINCT source_group FROM model.ref_referral_source").fetchall()
            } == SOURCE_GROUPS
    for table in ("fact_mash_contact", "fact_eh_referral", "fact_csc_referral", "fact_camhs_referral"):
        assert one(db, f"SELECT count(*) FROM model.{table} WHERE source_group NOT IN (SELECT unnest(?))",
                   [sorted(SOURCE_GROUPS)]) == 0
        assert one(db, f"SELECT count(*) FROM model.{table} WHERE source_code IS NOT NULL "
                       "AND source_group = 'unknown' AND source_code <> '10'"
                   if table != "fact_mash_contact" else
                   "SELECT count(*) FROM model.fact_mash_contact WHERE referrer_source_code IS NOT NULL "
                   "AND source_group = 'unknown' AND referrer_source_code <> '10'") == 0


def test_person_dimension_values_and_most_trusted_ethnicity(db):
    assert one(db, "SELECT count(*) FROM model.dim_person") == one(db, "SELECT count(*) FROM identity.person")
    assert {s for (s,) in db.execute("SELECT DISTINCT sex FROM model.dim_person").fetchall()} <= {"M", "F", "U"}
    groups = {g for (g,) in db.execute("SELECT DISTINCT ethnicity_group FROM model.dim_person").fetchall()}
    assert groups <= ETHNICITY_GROUPS and "White" in groups
    assert one(db, "SELECT count(*) FROM model.dim_person WHERE birth_month <> date_trunc('month', birth_month) "
                   "OR birth_year <> year(birth_month)") == 0
    assert one(db, "SELECT count(*) FROM model.dim_person WHERE is_child") > 1000
    # a person education records with a known code gets education's code, whatever health says
    disagreements = db.execute("""
        WITH edu AS (
            SELECT r.person_key, any_value(p.Ethnicity) AS code
            FROM history.education__pupils p
            JOIN identity.person_record r ON r.system = 'education' AND r.table_name = 'pupils'
             AND r.record_id = p.ONEPupilID
            WHERE p.is_current AND p.Ethnicity NOT IN ('REFU', 'NOBT')
            GROUP BY r.person_key HAVING count(DISTINCT p.Ethnicity) = 1
        )
        SELECT count(*) FILTER (WHERE d.ethnicity_code <> edu.code OR d.ethnicity_source <> 'education'),
               count(*)
        FROM edu JOIN model.dim_person d USING (person_key)""").fetchone()
    assert disagreements[0] == 0 and disagreements[1] > 500
    # a person only health knows, with a known category, takes its CBDS equivalent
    assert one(db, """
        SELECT count(*) FROM model.dim_person d
        WHERE d.systems = ['health'] AND d.ethnicity_source = 'health' AND d.ethnicity_group <> 'Not known'
          AND d.ethnicity_code IS NULL""") == 0
    # children per district add up to the children with a district
    assert one(db, "SELECT sum(children) FROM model.dim_district") == one(
        db, "SELECT count(*) FROM model.dim_person WHERE is_child AND district IS NOT NULL")


def test_family_key_is_the_family_at_the_event_date(db):
    # where identity dates a membership, an episode's family is the one the child was in on its start date
    wrong = one(db, """
        SELECT count(*) FROM model.fact_eh_episode e
        JOIN identity.family_member m ON m.person_key = e.person_key
         AND e.start_date >= coalesce(m.valid_from, '-infinity'::DATE)
         AND e.start_date < coalesce(m.valid_to, 'infinity'::DATE)
        WHERE e.family_key <> m.family_key
          AND (SELECT count(*) FROM identity.family_member x WHERE x.person_key = e.person_key) = 1""")
    assert wrong == 0
    # a person's dim_person family is their current one
    assert one(db, """
        SELECT count(*) FROM model.dim_person p JOIN identity.family_member m
          ON m.person_key = p.person_key AND m.valid_to IS NULL
        WHERE p.family_key <> m.family_key""") == 0


def test_early_help_waits_and_calendar(db):
    assert one(db, "SELECT count(*) FROM model.fact_eh_episode WHERE (allocated_date IS NULL) <> (wait_days IS NULL) "
                   "OR wait_days <> allocated_date - start_date") == 0
    first, last, days, not_monday = db.execute(
        "SELECT min(date), max(date), count(*), count(*) FILTER (WHERE isodow(week_start) <> 1) "
        "FROM model.dim_date").fetchone()
    assert (str(first), str(last), days, not_monday) == ("2015-01-01", "2030-12-31", 5844, 0)
    assert db.execute("SELECT financial_year, month_end FROM model.dim_date WHERE date IN "
                      "('2025-03-31', '2025-04-01') ORDER BY date").fetchall() == [
        ("2024-25", date(2025, 3, 31)), ("2025-26", date(2025, 4, 30))]
    assert one(db, "SELECT count(*) FROM model.fact_attendance WHERE absence_rate < 0 OR absence_rate > 1") == 0


def test_a_failed_build_leaves_the_previous_model(built, tmp_path):
    copy = tmp_path / "failing.duckdb"
    shutil.copyfile(built[0], copy)
    with duckdb.connect(str(copy)) as con:
        before = con.execute("SELECT count(*) FROM model.fact_mash_contact").fetchone()[0]
        con.execute("DROP TABLE history.health__service_requests")  # the last file needs it
        with pytest.raises(RuntimeError, match="facts_health.sql"):
            build_model(con)
        assert con.execute("SELECT count(*) FROM model.fact_mash_contact").fetchone()[0] == before
        assert con.execute("SELECT count(*) FROM model.fact_camhs_referral").fetchone()[0] > 0


def test_each_model_table_grain_is_read_from_its_sql_header():
    """The grain is declared once, in the SQL header; the integrity gate reads it from there."""
    from assets.warehouse.model import SPECIFIED_TABLES, grain_columns

    assert grain_columns("(system, team). One row per team") == ("system", "team")
    assert grain_columns("referral_id (the source's REFERRAL_ID).") == ("referral_id",)
    with pytest.raises(ValueError):
        grain_columns("one row per day")  # prose, no column: refused, not guessed
    assert set(TABLE_GRAIN) == set(SPECIFIED_TABLES)
    assert TABLE_GRAIN["fact_attendance"] == ("pupil_id", "urn", "term")
