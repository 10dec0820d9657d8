"""features.child_month on a small hand-written warehouse, against values worked out by hand.

One family: Amy (P1, born 2015-05-10), her brother Ben (P2, born 2012-01-01) and their
mother (P3). Every system went live on 2025-06-01 with a full extract; social care and
the MASH delivered again afterwards. The rows below are the only data in the database.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from assets.features.features import build_features

GO_LIVE, LATER = date(2025, 6, 1), date(2025, 7, 1)

# table -> (columns with types, rows); valid_from/valid_to/is_deleted are added to history
# tables: rows are delivered at go-live unless they give their own.
HISTORY = {
    # Sam's school records him as mixed White and Black Caribbean, then from 1 July as
    # White British (a correction delivered then: the first version is held until it)
    "education__pupils": ("ONEPupilID VARCHAR, Ethnicity VARCHAR", [("E1", "MWBC"), ("E1", "WBRI", LATER)]),
    "health__patients": ("patient_id VARCHAR, ethnic_category VARCHAR", [("H1", "D")]),
    "social_care__ssd_person": ("pers_person_id VARCHAR, pers_ethnicity VARCHAR", [("S1", "MWBC"), ("S2", "MWBC")]),
    "early_help__family_members": (
        "FAMILY_ID VARCHAR, PERSON_ID VARCHAR, ROLE VARCHAR, FROM_DATE DATE, TO_DATE DATE, ETHNICITY VARCHAR",
        [("F9", "EH1", "CHILD", date(2024, 9, 1), None, "MWBC")]),
    "early_help__episodes": ("EPISODE_ID VARCHAR, FAMILY_ID VARCHAR, START_DATE DATE, END_DATE DATE",
                             [("EP1", "F9", date(2024, 10, 1), date(2025, 2, 28))]),
    "early_help__assessments": ("ASSESSMENT_ID VARCHAR, FAMILY_ID VARCHAR, COMPLETED_DATE DATE, NEEDS VARCHAR",
                                [("EA1", "F9", date(2024, 11, 1), "REL;FIN")]),
    "social_care__ssd_cin_episodes": (
        "cine_referral_id VARCHAR, cine_person_id VARCHAR, cine_referral_date TIMESTAMP, cine_close_date TIMESTAMP",
        [("R1", "S1", "2024-06-01 10:00:00", "2024-08-01 12:00:00"),
         ("R2", "S1", "2025-04-10 09:30:00", None)]),
    "social_care__ssd_cin_assessments": (
        "cina_assessment_id VARCHAR, cina_person_id VARCHAR, cina_assessment_start_date DATE, "
        "cina_assessment_auth_date DATE, cina_assessment_factors JSON",
        [("A1", "S1", date(2025, 4, 12), date(2025, 6, 20), '["24A"]')]),
    "social_care__ssd_cin_plans": ("cinp_cin_plan_id VARCHAR, cinp_person_id VARCHAR, "
                                   "cinp_cin_plan_start_date DATE, cinp_cin_plan_end_date DATE", []),
    # typed in late: starts 2025-05-20, first delivered 2025-07-01
    "social_care__ssd_cp_plans": ("cppl_cp_plan_id VARCHAR, cppl_person_id VARCHAR, cppl_cp_plan_start_date DATE, "
                                  "cppl_cp_plan_end_date DATE",
                                  [("CP1", "S1", date(2025, 5, 20), None, LATER)]),
    "social_care__ssd_cla_episodes": ("clae_cla_episode_id VARCHAR, clae_person_id VARCHAR, "
                                      "clae_cla_episode_start_date DATE, clae_cla_episode_ceased DATE",
                                      [("L1", "S2", date(2025, 1, 10), None)]),
    "education__exclusions": ("ExclusionID VARCHAR, ONEPupilID VARCHAR, Category VARCHAR, StartDate DATE",
                              [("X1", "E1", "SUSP", date(2025, 2, 1)), ("X2", "E1", "LUNCH", date(2025, 3, 1))]),
    "education__ehe": ("EHEID VARCHAR, ONEPupilID VARCHAR, StartDate DATE, EndDate DATE", []),
    "education__cme": ("CMEID VARCHAR, ONEPupilID VARCHAR, IdentifiedDate DATE, ResolvedDate DATE", []),
    "education__fsm": ("ONEPupilID VARCHAR, FSMStartDate DATE, FSMEndDate DATE",
                       [("E1", date(2024, 9, 1), date(2025, 4, 15))]),
    "education__attendance": ("ONEPupilID VARCHAR, Term VARCHAR, SessionsPossible INTEGER, "
                              "SessionsAuthorised INTEGER, SessionsUnauthorised INTEGER",
                              [("E1", "2024-SUM", 100, 0, 0), ("E1", "2024-AUT", 100, 3, 2),
                               ("E1", "2025-SPR", 100, 10, 15)]),
    "education__sen": ("ONEPupilID VARCHAR, SENProvision VARCHAR", [("E1", "K")]),
    "health__encounters": ("encounter_id VARCHAR, patient_id VARCHAR, status VARCHAR, start_date DATE, "
                           "attendance_status VARCHAR",
                           [("EN1", "H1", "cancelled", date(2025, 2, 1), "3"),
                            ("EN2", "H1", "finished", date(2025, 3, 1), "5")]),
    "health__service_requests": ("service_request_id VARCHAR, patient_id VARCHAR, authored_on DATE", []),
    "reference__postcodes": ("postcode VARCHAR, district VARCHAR, imd_decile INTEGER",
                             [("AB1 1AA", "NORTH", 2), ("AB2 2BB", "SOUTH", 7)]),
}
MASH = [  # contact_id, child_seq, received_at, rag, rated_at, concerns, extract_date
    ("C1", "1", "2024-05-01 09:00:00+00", "R", "2024-05-01 11:00:00+00", "16A", GO_LIVE),
    ("C2", "1", "2025-03-15 09:00:00+00", "G", "2025-03-15 12:00:00+00", "3B;4B", GO_LIVE),
    ("C3", "1", "2025-06-20 09:00:00+00", None, None, None, date(2025, 6, 21)),
]
RECORDS = [("education", "pupils", "E1", "P1"), ("health", "Patient", "H1", "P1"),
           ("social_care", "ssd_person", "S1", "P1"), ("social_care", "ssd_person", "S2", "P2"),
           ("early_help", "FAMILY_MEMBERS", "EH1", "P1"), ("mash", "contacts", "C1:1", "P1"),
           ("mash", "contacts", "C2:1", "P1"), ("mash", "contacts", "C3:1", "P1"),
           ("health", "Patient", "H4", "P4"), ("health", "RelatedPerson", "R3", "P3")]
# Cal (P4) is known only from a health record first delivered on 15 May 2025: no address,
# no event, no school. He is still a child the warehouse knows, from that delivery on.
FIRST_DELIVERED = {"C3:1": date(2025, 6, 21), "H4": date(2025, 5, 15)}


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path_factory.mktemp("features") / "hand.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    for schema in ("history", "identity", "model"):
        con.execute(f"CREATE SCHEMA {schema}")
    for table, (columns, rows) in HISTORY.items():
        con.execute(f"CREATE TABLE history.{table} ({columns}, valid_from DATE, valid_to DATE, is_deleted BOOLEAN)")
        width = len(columns.split(", "))
        for row in rows:
            delivered = row[width] if len(row) > width else GO_LIVE
            con.execute(f"INSERT INTO history.{table} VALUES ({', '.join('?' * (width + 3))})",
                        [*row[:width], delivered, None, False])
    con.execute("UPDATE history.education__pupils SET valid_to = ? WHERE valid_from = ?", [LATER, GO_LIVE])
    con.execute("""CREATE TABLE history.mash__contacts (contact_id VARCHAR, child_seq VARCHAR,
        received_at TIMESTAMPTZ, rag VARCHAR, rated_at TIMESTAMPTZ, concerns VARCHAR, extract_date DATE,
        valid_from TIMESTAMPTZ)""")
    con.executemany("INSERT INTO history.mash__contacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row, row[2]) for row in MASH])
    con.execute("CREATE TABLE identity.person_record (system VARCHAR, table_name VARCHAR, record_id VARCHAR, "
                "person_key VARCHAR)")
    con.executemany("INSERT INTO identity.person_record VALUES (?, ?, ?, ?)", RECORDS)
    con.execute("CREATE TABLE identity.source_person (system VARCHAR, table_name VARCHAR, record_id VARCHAR, "
                "first_delivered DATE)")
    con.executemany("INSERT INTO identity.source_person VALUES (?, ?, ?, ?)",
                    [(s, t, r, FIRST_DELIVERED.get(r, GO_LIVE)) for s, t, r, _ in RECORDS])
    con.execute("""CREATE TABLE identity.person AS SELECT * FROM (VALUES
        ('P1', DATE '2015-05-10', 'F'), ('P2', DATE '2012-01-01', 'M'), ('P3', DATE '1985-03-03', 'F'),
        ('P4', DATE '2020-02-02', 'M'))
        t(person_key, dob, sex)""")

    con.execute("""CREATE TABLE identity.household AS SELECT * FROM (VALUES
        ('P1', 'H-a', 'AB1 1AA', DATE '2015-05-10', DATE '2025-04-30'),
        ('P1', 'H-b', 'AB2 2BB', DATE '2025-05-01', NULL::DATE),
        ('P2', 'H-a', 'AB1 1AA', DATE '2012-01-01', NULL::DATE),
        ('P3', 'H-a', 'AB1 1AA', DATE '2010-01-01', NULL::DATE))
        t(person_key, household_key, postcode, valid_from, valid_to)""")
    # each household row made of one residence, delivered at go-live, its end known then
    con.execute("ALTER TABLE identity.household ADD COLUMN residences "
                "STRUCT(valid_from DATE, valid_to DATE, known_from DATE, end_known_from DATE)[]")
    con.execute("UPDATE identity.household SET residences = [{'valid_from': valid_from, 'valid_to': valid_to, "
                "'known_from': ?, 'end_known_from': CASE WHEN valid_to IS NOT NULL THEN ? END}]", [GO_LIVE, GO_LIVE])
    # Ben's move to AB2 2BB on 1 June was first delivered on 1 July
    con.execute("INSERT INTO identity.household VALUES ('P2', 'H-c', 'AB2 2BB', DATE '2025-06-01', NULL, "
                "[{'valid_from': DATE '2025-06-01', 'valid_to': NULL, 'known_from': ?, 'end_known_from': NULL}])",
                [LATER])
    con.execute("""CREATE TABLE identity.family_member AS SELECT * FROM (VALUES
        ('FAM1', 'P1', DATE '2015-05-10', NULL::DATE), ('FAM1', 'P2', DATE '2012-01-01', NULL::DATE),
        ('FAM1', 'P3', DATE '2012-01-01', NULL::DATE)) t(family_key, person_key, valid_from, valid_to)""")
    con.execute("ALTER TABLE identity.family_member ADD COLUMN periods STRUCT(valid_from DATE, valid_to DATE, known_from DATE)[]")
    con.execute("UPDATE identity.family_member SET periods = [{'valid_from': valid_from, 'valid_to': valid_to, "
                "'known_from': ?}]", [GO_LIVE])
    con.execute("""CREATE TABLE model.ref_ethnicity AS SELECT * FROM (VALUES
        ('cbds', 'MWBC', 'MWBC', 'Mixed', true), ('cbds', 'WBRI', 'WBRI', 'White', true),
        ('nhs', 'D', 'MWBC', 'Mixed', true)) t(scheme, value, ethnicity_code, ethnicity_group, is_known)""")
    con.execute("CREATE TABLE model.fact_assessment AS SELECT 'P1' AS person_key, DATE '2025-04-12' AS start_date")
    con.execute("CREATE TABLE model.fact_cp_plan AS SELECT 'P1' AS person_key, DATE '2025-05-20' AS start_date")
    con.execute("CREATE TABLE model.fact_cla_episode AS SELECT 'P2' AS person_key, DATE '2025-01-10' AS start_date")
    build_features(con, first_as_of=date(2025, 3, 31), last_as_of=date(2025, 7, 31))
    yield con
    con.close()


def row(con, person: str, as_of: date) -> dict:
    cursor = con.execute("SELECT * FROM features.child_month WHERE person_key = ? AND as_of = ?", [person, as_of])
    names = [d[0] for d in cursor.description]
    [values] = cursor.fetchall()
    return dict(zip(names, values))


def test_only_children_get_rows_and_every_month_is_there(features):
    got = features.execute("SELECT person_key, count(*) FROM features.child_month GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("P1", 5), ("P2", 5), ("P4", 3)]  # the mother is an adult; Cal from May


def test_a_child_known_only_from_a_record_with_no_address_has_a_row_from_its_delivery(features):
    """One population, one definition: features.child_population says who is covered and
    since when, and a child with no address still has rows, with no district."""
    assert features.execute("SELECT known_since FROM features.child_population WHERE person_key = 'P4'"
                            ).fetchall() == [(date(2025, 5, 15),)]
    cal = row(features, "P4", date(2025, 5, 31))
    assert (cal["age_years"], cal["district"], cal["imd_decile"], cal["resident_at_as_of"]) == (5, None, None, False)
    assert cal["family_size"] == 1 and cal["mash_contacts_12m"] in (0, None)
    assert not features.execute("SELECT 1 FROM features.child_month WHERE person_key = 'P4' "
                                "AND as_of = DATE '2025-04-30'").fetchall()
    from quality.checks import features_integrity

    assert features_integrity(features).passed


def test_amy_at_the_end_of_march(features):
    amy = row(features, "P1", date(2025, 3, 31))
    assert amy["age_years"] == 9 and amy["age_band"] == "5-10"
    assert (amy["district"], amy["imd_decile"]) == ("NORTH", 2)
    # 2024-SUM and 2024-AUT had arrived (censuses of October and January): 5 of 200 missed
    assert amy["attendance_rate_2_terms"] == pytest.approx(0.975)
    assert not amy["persistent_absence"]
    assert amy["suspensions_12m"] == 1  # the lunchtime exclusion is not a suspension
    assert amy["sen_provision"] is None  # SEN carries no date: unknown before its delivery in June
    assert amy["free_school_meals"]
    assert (amy["mash_contacts_12m"], amy["mash_red_12m"]) == (2, 1)
    assert amy["factor_domestic_abuse"] and amy["factor_parental_mental_health"]
    assert not amy["factor_exploitation"]  # the 24A assessment was authorised in June
    assert (amy["prior_eh_episodes"], amy["open_to_early_help"]) == (1, False)
    assert (amy["csc_referrals_12m"], amy["re_referral_12m"], amy["open_to_social_care"]) == (1, False, False)
    assert amy["missed_health_reviews_12m"] == 1
    assert amy["sibling_cp_or_cla"]  # Ben has been looked after since January
    assert (amy["family_key"], amy["family_size"], amy["moves_12m"]) == ("FAM1", 3, 0)
    # EDU (suspension), HEA (parental mental health), REL and FIN (recorded by early help, and
    # free school meals), SAFE (Ben looked after), DA (domestic abuse factor)
    assert amy["family_sf_needs"] == 6
    assert amy["in_model_population"]


def test_amy_later(features):
    april = row(features, "P1", date(2025, 4, 30))
    assert april["re_referral_12m"] and april["open_to_social_care"] and not april["in_model_population"]
    assert not april["free_school_meals"]  # ended 15 April
    may = row(features, "P1", date(2025, 5, 31))
    assert may["age_years"] == 10
    assert (may["district"], may["imd_decile"], may["moves_12m"]) == ("SOUTH", 7, 1)
    # 2025-SPR arrived with the May census: 30 of 200 sessions missed over SPR and AUT
    assert may["attendance_rate_2_terms"] == pytest.approx(0.85) and may["persistent_absence"]
    assert (may["mash_contacts_12m"], may["mash_red_12m"]) == (1, 0)  # C1 is over a year old
    # the CP plan began on 20 May but was first delivered on 1 July: it counts from then
    assert may["prior_cp_plans"] == 0
    june = row(features, "P1", date(2025, 6, 30))
    assert june["prior_cp_plans"] == 0 and june["sen_provision"] == "K"
    assert june["mash_contacts_12m"] == 2 and june["factor_exploitation"]
    assert row(features, "P1", date(2025, 7, 31))["prior_cp_plans"] == 1


def test_ben(features):
    ben = row(features, "P2", date(2025, 3, 31))
    assert (ben["age_years"], ben["prior_cla_episodes"], ben["open_to_social_care"]) == (13, 1, True)
    assert not ben["sibling_cp_or_cla"]  # his own episode is not a sibling's
    assert not ben["in_model_population"]


def test_labels_look_forward_and_say_whether_the_horizon_has_passed(features):
    labels = dict(((p, d), (e6, e12, kind, c6)) for p, d, e6, e12, kind, c6 in features.execute(
        "SELECT person_key, as_of, escalated_6m, escalated_12m, first_escalation, horizon_6m_complete "
        "FROM features.child_month_label").fetchall())
    assert labels[("P1", date(2025, 3, 31))] == (True, True, "assessment", False)
    assert labels[("P1", date(2025, 4, 30))] == (True, True, "cp_plan", False)
    assert labels[("P1", date(2025, 5, 31))] == (False, False, None, False)
    assert labels[("P2", date(2025, 3, 31))] == (False, False, None, False)  # CLA began before


def test_the_integrity_check_names_a_child_of_the_population_left_without_a_row(features):
    """The check reads the same population, so it passes on a whole build; take one
    child's last row away and it fails, naming that child and month-end."""
    from quality.checks import features_integrity

    features.execute("BEGIN")
    try:
        features.execute("DELETE FROM features.child_month WHERE person_key = 'P4' AND as_of = DATE '2025-07-31'")
        features.execute("DELETE FROM features.child_month_label WHERE person_key = 'P4' AND as_of = DATE '2025-07-31'")
        outcome = features_integrity(features)
    finally:
        features.execute("ROLLBACK")
    assert not outcome.passed
    [problem] = outcome.sample
    assert problem["problem"].startswith("1 children of features.child_population")
    assert problem["sample"] == [{"person_key": "P4", "as_of": "2025-07-31"}]


def test_ethnicity_is_what_was_held_at_the_month_end(features):
    """A correction delivered on 1 July changes July, not the months before it."""
    assert row(features, "P1", date(2025, 6, 30))["ethnicity_group"] == "Mixed"
    assert row(features, "P1", date(2025, 7, 31))["ethnicity_group"] == "White"
    assert row(features, "P4", date(2025, 5, 31))["ethnicity_group"] == "Not known"


def test_a_move_counts_from_the_drop_that_delivered_it(features):
    """Ben moved on 1 June; the warehouse heard on 1 July: June still has him at home."""
    june, july = row(features, "P2", date(2025, 6, 30)), row(features, "P2", date(2025, 7, 31))
    assert (june["district"], june["moves_12m"]) == ("NORTH", 0)
    assert (july["district"], july["moves_12m"]) == ("SOUTH", 1)
