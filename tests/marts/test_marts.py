"""Caseload marts (assets/marts/) on a small hand-written model.

The fixture writes, into a temporary DuckDB file, only the model.* columns the marts read
(schema `model`), 1 to 19 rows per table, written out below.
Every expected figure in the tests was worked out by hand from those rows; the comments
say how.

The data runs from 2024-09-10 (social care referral R1, the earliest event) to 2025-11-20
(early help referral 2005, the latest), so the marts' months are September 2024 to November
2025 (15 months); November 2025 is partial (measured as at 2025-11-20) and October 2025 is
the latest complete month. Weeks run from Monday 2024-09-09 to Monday 2025-11-17.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from assets.marts.marts import MARTS, analyst_queries, build_marts

D = date.fromisoformat

MODEL = """
CREATE SCHEMA model;
CREATE TABLE model.dim_person (person_key VARCHAR, district VARCHAR, is_child BOOLEAN,
    systems VARCHAR[], system_count INTEGER);
INSERT INTO model.dim_person VALUES
    ('P03', 'NORTH', true,  ['education', 'health', 'social_care', 'mash'], 4),
    ('P04', 'NORTH', true,  ['education', 'social_care', 'early_help'], 3),
    ('P05', 'SOUTH', true,  ['social_care', 'early_help'], 2),
    ('P06', 'SOUTH', true,  ['mash', 'health', 'social_care', 'early_help', 'education'], 5),
    ('P09', 'SOUTH', true,  ['early_help'], 1),
    ('P30', 'NORTH', false, ['health', 'social_care', 'early_help', 'mash'], 4),   -- an adult
    ('P31', NULL,    true,  ['mash', 'health', 'education'], 3);                   -- no district
    -- P07 (looked after, social care referrals R7 and R8) has no dim_person row: district unknown

CREATE TABLE model.dim_family (family_key VARCHAR, district VARCHAR, children INTEGER);
INSERT INTO model.dim_family VALUES
    ('F01', 'NORTH', 1), ('F02', 'NORTH', 2), ('F03', 'NORTH', 1), ('F04', 'NORTH', 3),
    ('F05', 'NORTH', 1), ('F06', 'NORTH', 1), ('F08', 'NORTH', 2), ('F09', 'SOUTH', 2),
    ('F10', 'SOUTH', 1), ('F11', 'SOUTH', 1), ('F12', 'SOUTH', 1), ('F13', 'SOUTH', 1),
    ('F14', 'SOUTH', 1), ('F15', 'SOUTH', 1), ('F17', 'SOUTH', 1),
    ('F18', 'NORTH', 0),   -- counts as 1 child: the referred child
    ('F19', 'SOUTH', 1), ('F21', 'NORTH', 2);
    -- F07 has no dim_family row: counts as 1 child

CREATE TABLE model.dim_worker (worker_key VARCHAR, system VARCHAR, worker_id VARCHAR, team VARCHAR,
    district VARCHAR, fte DOUBLE);
INSERT INTO model.dim_worker VALUES
    ('early_help:K1', 'early_help', 'K1', 'EH North', 'NORTH', 0.5),
    ('early_help:K2', 'early_help', 'K2', 'EH South', 'SOUTH', 0.5),
    ('social_care:K1', 'social_care', 'K1', 'CSC North', 'NORTH', 1.0);  -- same id, other system

CREATE TABLE model.dim_district (district VARCHAR, children BIGINT);
INSERT INTO model.dim_district VALUES ('NORTH', 4000), ('SOUTH', 2500);

CREATE TABLE model.fact_mash_contact (contact_id VARCHAR, child_seq INTEGER, person_key VARCHAR,
    district VARCHAR, received_at TIMESTAMPTZ, decided_at TIMESTAMPTZ, rag VARCHAR, decision VARCHAR,
    source_group VARCHAR);
INSERT INTO model.fact_mash_contact VALUES
    -- 24.25 h across the end of BST (23.25 h on the wall clock): NOT within 24 h
    ('C1', 1, 'P03', 'NORTH', '2025-10-25 23:30:00+01:00', '2025-10-26 22:45:00+00:00', 'A', 'CSC_ASSESSMENT', 'police_or_legal'),
    -- two siblings in one red contact, decided in 3.5 h: both within 4 h
    ('C2', 1, 'P05', 'SOUTH', '2025-10-06 09:00:00+01:00', '2025-10-06 12:30:00+01:00', 'R', 'CSC_ASSESSMENT', 'health'),
    ('C2', 2, 'P09', 'SOUTH', '2025-10-06 09:00:00+01:00', '2025-10-06 12:30:00+01:00', 'R', 'CSC_ASSESSMENT', 'health'),
    -- red, decided in 5 h: within 24 h, not within 4 h
    ('C3', 1, 'P04', 'NORTH', '2025-10-14 10:00:00+01:00', '2025-10-14 15:00:00+01:00', 'R', 'TARGETED_EH', 'school_or_education'),
    -- 31 October 23:30 GMT: October; 9.5 h
    ('C4', 1, 'P31', 'NORTH', '2025-10-31 23:30:00+00:00', '2025-11-01 09:00:00+00:00', 'G', 'IAG', 'family_or_self'),
    -- 30 September 23:30 UTC is 1 October 00:30 in London: October; 7.5 h
    ('C5', 1, 'P06', 'SOUTH', '2025-09-30 23:30:00+00:00', '2025-10-01 08:00:00+01:00', 'G', 'IAG', 'health'),
    -- rated, never decided; no district on the contact: the child's (SOUTH)
    ('C6', 1, 'P06', NULL,    '2025-10-20 10:00:00+01:00', NULL, 'A', NULL, 'police_or_legal'),
    ('C7', 1, 'P03', 'NORTH', '2025-11-10 10:00:00+00:00', '2025-11-10 11:00:00+00:00', 'R', 'CSC_ASSESSMENT', 'health'),
    ('C8', 1, 'P04', 'NORTH', '2025-09-15 10:00:00+01:00', '2025-09-16 09:00:00+01:00', 'A', 'OTHER_SERVICE', 'housing');

CREATE TABLE model.fact_eh_referral (referral_id VARCHAR, family_id VARCHAR, family_key VARCHAR,
    person_key VARCHAR, referral_date DATE, source_group VARCHAR, route VARCHAR, accepted BOOLEAN);
INSERT INTO model.fact_eh_referral VALUES
    ('2001', '102', 'F02', NULL,  '2024-10-01', 'school_or_education', 'DIRECT', true),
    ('2002', '102', 'F02', NULL,  '2025-07-30', 'health', 'DIRECT', true),           -- 10 months after 2001
    ('2003', '119', 'F19', 'P06', '2025-10-31', 'local_authority', 'STEP_DOWN', true),
    ('2004', '108', 'F08', NULL,  '2025-06-20', 'health', 'MASH', true),
    ('2005', '120', NULL,  NULL,  '2025-11-20', NULL, 'DIRECT', false),               -- the last event
    ('2006', '109', 'F09', 'P09', '2025-09-25', 'school_or_education', 'DIRECT', true),
    ('2007', '916', 'F09', 'P09', '2025-10-05', 'school_or_education', 'DIRECT', true),  -- F09 re-registered
    ('2008', '121', 'F21', NULL,  '2024-09-20', 'health', 'DIRECT', true),
    ('2009', '121', 'F21', NULL,  '2025-10-22', 'health', 'DIRECT', true);           -- 13 months after 2008

CREATE TABLE model.fact_eh_episode (episode_id VARCHAR, family_id VARCHAR, family_key VARCHAR,
    person_key VARCHAR, start_date DATE, allocated_date DATE, key_worker_id VARCHAR, team VARCHAR,
    district VARCHAR, end_date DATE, end_reason VARCHAR, step_up_referral_id VARCHAR);
INSERT INTO model.fact_eh_episode VALUES
    ('E1',  '101', 'F01', NULL,  '2025-08-01', NULL,         NULL, 'EH North', 'NORTH', NULL, NULL, NULL),  -- 91 days at 31 Oct
    ('E2',  '102', 'F02', NULL,  '2025-08-02', '2025-11-05', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- 90 days at 31 Oct
    ('E3',  '103', 'F03', NULL,  '2025-09-21', '2025-10-01', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- wait 10
    ('E4',  '104', 'F04', NULL,  '2025-09-11', '2025-10-01', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- wait 20
    ('E5',  '105', 'F05', NULL,  '2025-09-01', '2025-10-01', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- wait 30
    ('E6',  '106', 'F06', NULL,  '2025-08-22', '2025-10-01', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- wait 40
    ('E7',  '107', 'F07', NULL,  '2025-11-01', '2025-11-17', 'K1', 'EH North', 'NORTH', NULL, NULL, NULL),  -- wait 16
    ('E8',  '108', 'F08', NULL,  '2025-07-01', '2025-07-15', 'K1', 'EH North', 'NORTH', '2025-11-16', 'OUTCOMES_MET', NULL),
    ('E9',  '109', 'F09', 'P09', '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E10', '110', 'F10', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E11', '111', 'F11', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E12', '112', 'F12', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E13', '113', 'F13', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E14', '114', 'F14', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E15', '115', 'F15', NULL,  '2025-10-01', '2025-10-15', 'K2', 'EH South', 'SOUTH', '2025-11-17', 'STEP_UP', 'R5'),
    ('E16', '916', 'F09', 'P09', '2025-10-10', '2025-10-20', 'K2', 'EH South', 'SOUTH', NULL, NULL, NULL),  -- F09 again
    ('E17', '117', 'F17', NULL,  '2025-10-25', NULL,         NULL, 'EH South', 'SOUTH', NULL, NULL, NULL),
    ('E18', '118', 'F18', NULL,  '2025-09-01', NULL,         NULL, 'EH North', 'NORTH', '2025-10-15', 'CONSENT_WITHDRAWN', NULL),
    ('E19', '122', 'F22', 'P22', '2025-06-01', NULL,         NULL, 'EH North', 'NORTH', '2025-06-30', 'STEP_UP', 'R99');

CREATE TABLE model.fact_csc_referral (referral_id VARCHAR, person_key VARCHAR, referral_date DATE,
    source_group VARCHAR, close_date DATE, close_reason VARCHAR);
INSERT INTO model.fact_csc_referral VALUES
    ('R1', 'P03', '2024-09-10', 'police_or_legal', '2024-12-01', 'RC8'),       -- the first event
    ('R2', 'P03', '2025-10-10', 'police_or_legal', NULL, NULL),                -- 13 months after R1
    ('R3', 'P04', '2025-01-20', 'school_or_education', '2025-03-31', 'RC7'),
    ('R4', 'P04', '2025-10-20', 'police_or_legal', NULL, NULL),                -- 9 months after R3
    ('R5', 'P05', '2025-10-27', 'local_authority', NULL, NULL),                -- step-up from E15
    ('R6', 'P06', '2025-09-15', 'health', '2025-10-30', 'RC9'),
    ('R7', 'P07', '2024-11-05', 'police_or_legal', NULL, NULL),
    ('R8', 'P07', '2025-11-05', 'police_or_legal', NULL, NULL);                -- exactly 12 months after R7

CREATE TABLE model.fact_cin_plan (cin_plan_id VARCHAR, person_key VARCHAR, start_date DATE, end_date DATE);
INSERT INTO model.fact_cin_plan VALUES
    ('CIN1', 'P04', '2025-02-01', '2025-03-31'),
    ('CIN2', 'P05', '2025-11-01', NULL),
    ('CIN3', 'P06', '2025-09-20', '2025-10-30');
CREATE TABLE model.fact_cp_plan (cp_plan_id VARCHAR, person_key VARCHAR, start_date DATE, end_date DATE);
INSERT INTO model.fact_cp_plan VALUES ('CP1', 'P03', '2025-10-20', NULL);
CREATE TABLE model.fact_cla_episode (cla_episode_id VARCHAR, person_key VARCHAR, start_date DATE, end_date DATE);
INSERT INTO model.fact_cla_episode VALUES
    ('CLA1', 'P07', '2024-12-01', NULL),
    ('CLA2', 'P08', '2025-10-31', '2025-11-10'),
    ('CLA3', 'P07', '2025-06-01', NULL);   -- P07 again: counted once
"""

MONTHS = 15  # September 2024 .. November 2025


def make_model(path, timezone: str = "UTC") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute(f"SET TimeZone = '{timezone}'")
    con.execute(MODEL)
    return con


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    con = make_model(tmp_path_factory.mktemp("marts") / "build.duckdb")
    counts = build_marts(con)
    yield con, counts
    con.close()


@pytest.fixture
def con(built):
    return built[0]


def rows(con, sql: str, *params) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def one(con, sql: str, *params) -> dict:
    found = rows(con, sql, *params)
    assert len(found) == 1, found
    return found[0]


def test_every_mart_is_built_with_its_row_count(built):
    con, counts = built
    assert counts == {
        "key_worker_caseload_weekly": 25,   # K1 19 weeks (14 Jul .. 17 Nov), K2 6 weeks (13 Oct .. 17 Nov)
        "eh_waits_by_district_month": MONTHS * 2,   # NORTH, SOUTH
        "mash_timeliness_monthly": MONTHS,
        "referral_sources_monthly": 22,  # mash 6, early_help 9, social_care 7
        "children_open_by_service": MONTHS * 4,
        "closures_monthly": 7,
        "step_flows_monthly": MONTHS * 2,
        "re_referrals_monthly": MONTHS * 2,
        "demand_by_district": MONTHS * 3,   # NORTH, SOUTH, UNKNOWN
    }
    assert set(counts) == set(MARTS)
    # the calendar is temporary
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '\\_mart\\_%' ESCAPE '\\'"
                           ).fetchall()[0][0]


def test_month_range_comes_from_the_data(con):
    months = con.execute("SELECT min(month_start), max(month_start), count(*) FROM marts.mash_timeliness_monthly"
                         ).fetchall()[0]
    assert months == (D("2024-09-01"), D("2025-11-01"), MONTHS)


# --- key worker caseload ------------------------------------------------------------------

CASELOAD = ("SELECT team, district, fte, families, children, families_per_fte, within_standard, above_standard "
            "FROM marts.key_worker_caseload_weekly WHERE week_start = ? AND key_worker_id = ?")


def test_caseload_latest_week_half_time_workers(con):
    # Week of Monday 17 November. K1: E2 (allocated 5 Nov), E3-E6, E7 (allocated on the
    # Monday); E8 ended on Sunday 16 Nov, so not held. Families F02 (2 children), F03 (1),
    # F04 (3), F05 (1), F06 (1), F07 (no dim_family row: 1) -> 6 families, 9 children;
    # 6 / 0.5 FTE = 12: within the standard. The fte is the early help K1's, not social care's.
    assert one(con, CASELOAD, D("2025-11-17"), "K1") == {
        "team": "EH North", "district": "NORTH", "fte": 0.5, "families": 6, "children": 9,
        "families_per_fte": 12.0, "within_standard": True, "above_standard": False}
    # K2: E9-E14, E15 (ends on the Monday: still held that week), E16 (F09 again) -> families
    # F09 (2 children) and F10-F15 (1 each) = 7 families, 8 children; 7 / 0.5 = 14: above.
    assert one(con, CASELOAD, D("2025-11-17"), "K2") == {
        "team": "EH South", "district": "SOUTH", "fte": 0.5, "families": 7, "children": 8,
        "families_per_fte": 14.0, "within_standard": False, "above_standard": True}


def test_caseload_earlier_weeks(con):
    # Week of 10 Nov: E8 (ends 16 Nov), E2, E3-E6; E7 not yet (17 Nov): F08 2 + F02 2 + 1 + 3 + 1 + 1.
    assert one(con, CASELOAD, D("2025-11-10"), "K1")["families"] == 6
    assert one(con, CASELOAD, D("2025-11-10"), "K1")["children"] == 10
    # Week of 27 Oct: E8, E3-E6 -> 5 families / 0.5 = 10: the bottom of the standard.
    assert one(con, CASELOAD, D("2025-10-27"), "K1") == {
        "team": "EH North", "district": "NORTH", "fte": 0.5, "families": 5, "children": 8,
        "families_per_fte": 10.0, "within_standard": True, "above_standard": False}
    # Week of 14 Jul: E8 allocated Tuesday 15 Jul -> 1 family: 2 per FTE, neither flag.
    assert one(con, CASELOAD, D("2025-07-14"), "K1") == {
        "team": "EH North", "district": "NORTH", "fte": 0.5, "families": 1, "children": 2,
        "families_per_fte": 2.0, "within_standard": False, "above_standard": False}
    # Week of 13 Oct: K2's E9-E15 allocated Wednesday 15 Oct; E16 only on 20 Oct.
    assert one(con, CASELOAD, D("2025-10-13"), "K2")["families"] == 7
    weeks = con.execute("SELECT key_worker_id, min(week_start), max(week_start), count(*) "
                        "FROM marts.key_worker_caseload_weekly GROUP BY ALL ORDER BY 1").fetchall()
    assert weeks == [("K1", D("2025-07-14"), D("2025-11-17"), 19), ("K2", D("2025-10-13"), D("2025-11-17"), 6)]


# --- early help waits ---------------------------------------------------------------------

WAITS = ("SELECT allocated, median_wait_days, p90_wait_days, waiting_at_month_end, waiting_over_90_days, as_at "
         "FROM marts.eh_waits_by_district_month WHERE month_start = ? AND district = ?")


def waits(con, month: str, district: str) -> tuple:
    return tuple(one(con, WAITS, D(month), district).values())


def test_waits_exactly_90_days_is_not_over_90(con):
    # 31 Oct: E1 (started 1 Aug) has waited 91 days, E2 (2 Aug) exactly 90; E18 ended 15 Oct.
    # Allocated in October: E3-E6, waits 10, 20, 30, 40 -> median 25, p90 30 + 0.7 * 10 = 37.
    assert waits(con, "2025-10-01", "NORTH") == (4, 25.0, 37.0, 2, 1, D("2025-10-31"))


def test_waits_other_months(con):
    # November is measured at the last day of data, 20 Nov: E1 still waiting (111 days); E2
    # allocated 5 Nov after 95 days and E7 on 17 Nov after 16: median 55.5, p90 16 + 0.9 * 79.
    assert waits(con, "2025-11-01", "NORTH") == (2, 55.5, pytest.approx(87.1), 1, 1, D("2025-11-20"))
    # 30 Sep: E1 (60 days), E2 (59), E3 (9), E4 (19), E5 (29), E6 (39), E18 (29; ends 15 Oct).
    assert waits(con, "2025-09-01", "NORTH") == (0, None, None, 7, 0, D("2025-09-30"))
    # 31 Aug: E1, E2, E6. July: E8 allocated after 14 days. June: E19 ends on 30 Jun unallocated.
    assert waits(con, "2025-08-01", "NORTH") == (0, None, None, 3, 0, D("2025-08-31"))
    assert waits(con, "2025-07-01", "NORTH") == (1, 14.0, 14.0, 0, 0, D("2025-07-31"))
    assert waits(con, "2025-06-01", "NORTH") == (0, None, None, 0, 0, D("2025-06-30"))
    # SOUTH October: E9-E15 waited 14 days, E16 10 -> median 14, p90 14; E17 waiting (6 days).
    assert waits(con, "2025-10-01", "SOUTH") == (8, 14.0, 14.0, 1, 0, D("2025-10-31"))
    assert waits(con, "2025-11-01", "SOUTH") == (0, None, None, 1, 0, D("2025-11-20"))
    assert waits(con, "2025-09-01", "SOUTH") == (0, None, None, 0, 0, D("2025-09-30"))
    totals = con.execute("SELECT sum(allocated), sum(waiting_at_month_end) FROM marts.eh_waits_by_district_month"
                         ).fetchall()[0]
    assert totals == (15, 7 + 3 + 2 + 1 + 1 + 1)  # NORTH Sep/Aug/Oct/Nov, SOUTH Oct/Nov


# --- MASH timeliness ----------------------------------------------------------------------

def test_mash_timeliness_on_instants_and_london_months(con):
    # October (London months): C1, C2 x2, C3, C4 (23:30 GMT on 31 Oct), C5 (00:30 BST on
    # 1 Oct), C6 -> 7 contacts, 6 decided. Within 24 h: C2 x2 (3.5 h), C3 (5 h), C4 (9.5 h),
    # C5 (7.5 h); not C1 (24.25 h between instants) nor C6 (undecided) -> 5 of 7.
    # Red: C2 x2 (3.5 h) within 4 h, C3 (5 h) not -> 2 of 3. Decisions (of 6 decided):
    # CSC_ASSESSMENT C1, C2 x2 = 3; TARGETED_EH C3 = 1; IAG C4, C5 = 2.
    assert one(con, "SELECT * FROM marts.mash_timeliness_monthly WHERE month_start = ?", D("2025-10-01")) == {
        "month_start": D("2025-10-01"), "contacts": 7, "decided": 6, "decided_within_24h": 5,
        "share_within_24h": pytest.approx(5 / 7), "red_contacts": 3, "red_decided_within_4h": 2,
        "share_red_within_4h": pytest.approx(2 / 3), "share_csc_assessment": pytest.approx(0.5),
        "share_targeted_eh": pytest.approx(1 / 6), "share_other_service": 0.0,
        "share_iag": pytest.approx(1 / 3), "month_complete": True}


def test_mash_timeliness_other_months(con):
    # September: only C8 (23 h, OTHER_SERVICE); C5 belongs to October in London.
    sep = one(con, "SELECT * FROM marts.mash_timeliness_monthly WHERE month_start = ?", D("2025-09-01"))
    assert (sep["contacts"], sep["decided"], sep["decided_within_24h"], sep["share_within_24h"]) == (1, 1, 1, 1.0)
    assert (sep["red_contacts"], sep["share_red_within_4h"], sep["share_other_service"]) == (0, None, 1.0)
    # November (partial): C7, red, decided in 1 hour.
    nov = one(con, "SELECT * FROM marts.mash_timeliness_monthly WHERE month_start = ?", D("2025-11-01"))
    assert (nov["contacts"], nov["decided_within_24h"], nov["red_contacts"], nov["red_decided_within_4h"],
            nov["share_csc_assessment"], nov["month_complete"]) == (1, 1, 1, 1, 1.0, False)
    empty = one(con, "SELECT * FROM marts.mash_timeliness_monthly WHERE month_start = ?", D("2025-01-01"))
    assert (empty["contacts"], empty["share_within_24h"], empty["share_iag"]) == (0, None, None)


def test_marts_do_not_depend_on_the_session_time_zone(built, tmp_path):
    other = make_model(tmp_path / "new_york.duckdb", timezone="America/New_York")
    build_marts(other)
    for mart in MARTS:
        query = f"SELECT * FROM marts.{mart} ORDER BY ALL"
        assert other.execute(query).fetchall() == built[0].execute(query).fetchall(), mart
    other.close()


# --- referral sources ---------------------------------------------------------------------

def test_referral_sources(con):
    october = con.execute("SELECT service, source_group, referrals, share FROM marts.referral_sources_monthly "
                          "WHERE month_start = DATE '2025-10-01' ORDER BY service, source_group").fetchall()
    assert october == [
        ("early_help", "health", 1, pytest.approx(1 / 3)),              # 2009
        ("early_help", "local_authority", 1, pytest.approx(1 / 3)),     # 2003
        ("early_help", "school_or_education", 1, pytest.approx(1 / 3)),  # 2007
        ("mash", "family_or_self", 1, pytest.approx(1 / 7)),            # C4
        ("mash", "health", 3, pytest.approx(3 / 7)),                    # C2 x2, C5
        ("mash", "police_or_legal", 2, pytest.approx(2 / 7)),           # C1, C6
        ("mash", "school_or_education", 1, pytest.approx(1 / 7)),       # C3
        ("social_care", "local_authority", 1, pytest.approx(1 / 3)),    # R5
        ("social_care", "police_or_legal", 2, pytest.approx(2 / 3)),    # R2, R4
    ]
    assert one(con, "SELECT source_group, referrals, share FROM marts.referral_sources_monthly "
                    "WHERE month_start = DATE '2025-11-01' AND service = 'early_help'") == {
        "source_group": "unknown", "referrals": 1, "share": 1.0}   # 2005 has no source
    # every service-month's shares add up to 1
    assert con.execute("SELECT count(*) FROM (SELECT sum(share) s FROM marts.referral_sources_monthly "
                       "GROUP BY month_start, service) WHERE abs(s - 1) > 1e-9").fetchall()[0][0] == 0


# --- children open ------------------------------------------------------------------------

def open_children(con, month_end: str) -> dict[str, int]:
    return dict(con.execute("SELECT service, children FROM marts.children_open_by_service WHERE month_end = ?",
                            [D(month_end)]).fetchall())


def test_children_open_by_service_at_month_end(con):
    # 31 Oct. Early help families open: F01 1, F02 2, F03 1, F04 3, F05 1, F06 1, F08 2,
    # F09 2 (E9 and E16), F10-F15 6, F17 1 = 20 children. CIN: P06 ended 30 Oct, P05 starts
    # 1 Nov -> 0. CP: P03. CLA: P07 (two open episodes, once) and P08 (starts 31 Oct) -> 2.
    assert open_children(con, "2025-10-31") == {"early_help": 20, "cin": 0, "cp": 1, "cla": 2}
    # November, as at 20 Nov: E8 and E15 have ended; E7 (F07, no dim_family row: 1) started.
    # 1 + 2 + 1 + 3 + 1 + 1 + 1 + 2 + 5 + 1 = 18. CIN P05, CP P03, CLA P07 (P08 left 10 Nov).
    assert open_children(con, "2025-11-30") == {"early_help": 18, "cin": 1, "cp": 1, "cla": 1}
    # 30 Sep: F01 1, F02 2, F03 1, F04 3, F05 1, F06 1, F08 2, F18 (0 children -> 1) = 12.
    assert open_children(con, "2025-09-30") == {"early_help": 12, "cin": 1, "cp": 0, "cla": 1}
    # 30 Jun: E19 ended that day; 31 Mar: CIN1 ended that day; 28 Feb: CIN1 open.
    assert open_children(con, "2025-06-30") == {"early_help": 0, "cin": 0, "cp": 0, "cla": 1}
    assert open_children(con, "2025-03-31") == {"early_help": 0, "cin": 0, "cp": 0, "cla": 1}
    assert open_children(con, "2025-02-28") == {"early_help": 0, "cin": 1, "cp": 0, "cla": 1}
    assert open_children(con, "2024-11-30") == {"early_help": 0, "cin": 0, "cp": 0, "cla": 0}
    assert con.execute("SELECT DISTINCT as_at FROM marts.children_open_by_service WHERE month_end = "
                       "DATE '2025-11-30'").fetchall() == [(D("2025-11-20"),)]


# --- closures, step flows, re-referrals ---------------------------------------------------

def test_closures_by_month_and_reason(con):
    assert con.execute("SELECT * FROM marts.closures_monthly ORDER BY ALL").fetchall() == [
        (D("2024-12-01"), "social_care", "RC8", 1),                # R1
        (D("2025-03-01"), "social_care", "RC7", 1),                # R3
        (D("2025-06-01"), "early_help", "STEP_UP", 1),             # E19
        (D("2025-10-01"), "early_help", "CONSENT_WITHDRAWN", 1),   # E18, closed while waiting
        (D("2025-10-01"), "social_care", "RC9", 1),                # R6, referred to early help
        (D("2025-11-01"), "early_help", "OUTCOMES_MET", 1),        # E8
        (D("2025-11-01"), "early_help", "STEP_UP", 1),             # E15
    ]


def test_step_up_and_step_down_flows(con):
    flows = con.execute("SELECT month_start, flow, families, children FROM marts.step_flows_monthly "
                        "WHERE families > 0 OR children > 0 ORDER BY ALL").fetchall()
    assert flows == [
        (D("2025-06-01"), "step_up", 1, 1),     # E19: R99 is not a known referral -> the episode's child P22
        (D("2025-10-01"), "step_down", 1, 1),   # early help referral 2003 (route STEP_DOWN), child P06
        (D("2025-11-01"), "step_up", 1, 1),     # E15 -> social care referral R5, child P05
    ]
    assert con.execute("SELECT count(*), count(DISTINCT flow) FROM marts.step_flows_monthly").fetchall()[0] == (30, 2)


def test_re_referrals_within_12_months(con):
    found = con.execute("SELECT month_start, service, referrals, re_referrals_within_12_months, share "
                        "FROM marts.re_referrals_monthly WHERE referrals > 0 ORDER BY ALL").fetchall()
    assert found == [
        (D("2024-09-01"), "early_help", 1, 0, 0.0),     # 2008
        (D("2024-09-01"), "social_care", 1, 0, 0.0),    # R1
        (D("2024-10-01"), "early_help", 1, 0, 0.0),     # 2001
        (D("2024-11-01"), "social_care", 1, 0, 0.0),    # R7
        (D("2025-01-01"), "social_care", 1, 0, 0.0),    # R3
        (D("2025-06-01"), "early_help", 1, 0, 0.0),     # 2004
        (D("2025-07-01"), "early_help", 1, 1, 1.0),     # 2002: F02 10 months after 2001
        (D("2025-09-01"), "early_help", 1, 0, 0.0),     # 2006
        (D("2025-09-01"), "social_care", 1, 0, 0.0),    # R6
        # 2007: F09 (re-registered as family 916) 10 days after 2006 -> yes;
        # 2009: F21 13 months after 2008 -> no; 2003: F19's first -> no
        (D("2025-10-01"), "early_help", 3, 1, pytest.approx(1 / 3)),
        # R4: P04 9 months after R3 -> yes; R2: P03 13 months after R1 -> no; R5: P05's first
        (D("2025-10-01"), "social_care", 3, 1, pytest.approx(1 / 3)),
        (D("2025-11-01"), "early_help", 1, 0, 0.0),     # 2005
        (D("2025-11-01"), "social_care", 1, 1, 1.0),    # R8: P07 exactly 12 months after R7 -> yes
    ]
    assert one(con, "SELECT referrals, share FROM marts.re_referrals_monthly WHERE month_start = "
                    "DATE '2025-02-01' AND service = 'social_care'") == {"referrals": 0, "share": None}


# --- demand by district -------------------------------------------------------------------

DEMAND = ("SELECT children, mash_contacts, eh_referrals, csc_referrals, mash_contacts_per_10k, "
          "eh_referrals_per_10k, csc_referrals_per_10k FROM marts.demand_by_district "
          "WHERE month_start = ? AND district = ?")


def demand(con, month: str, district: str) -> tuple:
    return tuple(one(con, DEMAND, D(month), district).values())


def test_demand_per_10k_children_by_district(con):
    # October. MASH: NORTH C1, C3, C4; SOUTH C2 x2, C5, C6 (the child's district).
    # Early help: NORTH 2009 (family F21's district); SOUTH 2003, 2007 (the child's).
    # Social care: NORTH R2, R4 (P03, P04); SOUTH R5 (P05). Per 10,000 of 4,000 / 2,500 children.
    assert demand(con, "2025-10-01", "NORTH") == (4000, 3, 1, 2, 7.5, 2.5, 5.0)
    assert demand(con, "2025-10-01", "SOUTH") == (2500, 4, 2, 1, 16.0, 8.0, 4.0)
    assert demand(con, "2025-10-01", "UNKNOWN") == (None, 0, 0, 0, None, None, None)
    # November: C7 (NORTH); 2005 and R8 have no known district.
    assert demand(con, "2025-11-01", "NORTH") == (4000, 1, 0, 0, 2.5, 0.0, 0.0)
    assert demand(con, "2025-11-01", "UNKNOWN") == (None, 0, 1, 1, None, None, None)
    totals = con.execute("SELECT sum(mash_contacts), sum(eh_referrals), sum(csc_referrals) "
                         "FROM marts.demand_by_district").fetchall()[0]
    assert totals == (9, 9, 8)   # every contact and referral in exactly one district-month


# --- analyst queries ----------------------------------------------------------------------

EXPECTED_QUERIES = {
    "waits_by_district_latest_month": [
        (D("2025-11-01"), "NORTH", 2, 55.5, pytest.approx(87.1), 1, 1, D("2025-11-20")),
        (D("2025-11-01"), "SOUTH", 0, None, None, 1, 0, D("2025-11-20")),
    ],
    # October, the latest complete month: 5 of 7 within 24 h, 2 of 3 red within 4 h
    "mash_24h_compliance_last_month": [(D("2025-10-01"), 7, 6, 5, 71.4, 3, 2, 66.7)],
    "key_workers_above_12_families_latest_week": [(D("2025-11-17"), "K2", "EH South", "SOUTH", 0.5, 7, 8, 14.0)],
    "children_known_to_three_or_more_systems": [
        ("NORTH", 2, 1, 0),     # P03 (4 systems), P04 (3); P30 is an adult
        ("SOUTH", 1, 1, 1),     # P06 (all five)
        ("UNKNOWN", 1, 0, 0),   # P31 (3)
    ],
    "children_known_to_three_or_more_systems_list": [
        ("P06", "SOUTH", 5, ["early_help", "education", "health", "mash", "social_care"]),
        ("P03", "NORTH", 4, ["education", "health", "mash", "social_care"]),
        ("P04", "NORTH", 3, ["early_help", "education", "social_care"]),
        ("P31", None, 3, ["education", "health", "mash"]),
    ],
}


def test_analyst_queries_are_named_and_explained():
    queries = analyst_queries()
    assert list(queries) == list(EXPECTED_QUERIES)
    for name, sql in queries.items():
        assert name.isidentifier() and name == name.lower()
        assert sql.startswith("--"), f"{name}: no comment saying what question it answers"


@pytest.mark.parametrize("name", list(EXPECTED_QUERIES))
def test_analyst_query_rows(con, name):
    assert con.execute(analyst_queries()[name]).fetchall() == EXPECTED_QUERIES[name]


def test_a_failed_build_leaves_the_previous_marts(tmp_path):
    con = make_model(tmp_path / "build.duckdb")
    before = build_marts(con)
    # New data for the first marts, and an input of the last one (demand_by_district) broken:
    con.execute("DELETE FROM model.fact_mash_contact")
    con.execute("ALTER TABLE model.dim_district RENAME COLUMN children TO pupils")
    with pytest.raises(duckdb.Error):
        build_marts(con)
    assert {mart: con.execute(f"SELECT count(*) FROM marts.{mart}").fetchall()[0][0] for mart in MARTS} == before
    assert con.execute("SELECT sum(contacts) FROM marts.mash_timeliness_monthly").fetchall() == [(9,)]
    con.close()


SPEC_COLUMNS = {  # the columns analysts rely on in each mart, in order; extra columns may follow
    "key_worker_caseload_weekly": ["week_start", "key_worker_id", "team", "district", "fte", "families", "children",
                                   "families_per_fte", "within_standard", "above_standard"],
    "eh_waits_by_district_month": ["month_start", "district", "allocated", "median_wait_days", "p90_wait_days",
                                   "waiting_at_month_end", "waiting_over_90_days"],
    "mash_timeliness_monthly": ["month_start", "contacts", "decided", "decided_within_24h", "share_within_24h",
                                "red_contacts", "red_decided_within_4h", "share_red_within_4h",
                                "share_csc_assessment", "share_targeted_eh", "share_other_service", "share_iag"],
    "referral_sources_monthly": ["month_start", "service", "source_group", "referrals", "share"],
    "children_open_by_service": ["month_end", "service", "children"],
    "closures_monthly": ["month_start", "service", "reason", "closures"],
    "step_flows_monthly": ["month_start", "flow", "families", "children"],
    "re_referrals_monthly": ["month_start", "service", "referrals", "re_referrals_within_12_months", "share"],
    "demand_by_district": ["month_start", "district", "children", "mash_contacts", "eh_referrals", "csc_referrals",
                           "mash_contacts_per_10k", "eh_referrals_per_10k", "csc_referrals_per_10k"],
}


@pytest.mark.parametrize("mart", MARTS)
def test_columns_are_the_spec_columns(con, mart):
    columns = [r[0] for r in con.execute(f"DESCRIBE marts.{mart}").fetchall()]
    assert columns[:len(SPEC_COLUMNS[mart])] == SPEC_COLUMNS[mart]
