"""Families and households (assets/identity/families.py) on a small hand-written city.

Each test writes only the source tables it needs, with only the columns the family SQL
reads, into a temporary DuckDB file, with a stand-in identity.person_record.
"""

from __future__ import annotations

import shutil

import duckdb
import pytest

from assets.identity.families import HISTORY_COLUMNS, SOURCES, build_families

SNAPSHOT = "2025-01-05"  # the first extract date of every snapshot row unless given
TABLES = {view.removeprefix("fam_src_"): spec for view, spec in SOURCES.items()}


def make_db(path, records: list[tuple[str, str, str, str]], **tables: list[dict]):
    """records: (person_key, system, table_name, record_id); tables: short name -> rows."""
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    con.execute("CREATE SCHEMA IF NOT EXISTS history")
    con.execute("CREATE TABLE identity.person_record (person_key VARCHAR, system VARCHAR, table_name VARCHAR, "
                "record_id VARCHAR, match_probability DOUBLE, link_rule VARCHAR, explanation VARCHAR)")
    con.executemany("INSERT INTO identity.person_record VALUES (?, ?, ?, ?, 1.0, 'test', 'test')", records)
    for short, rows in tables.items():
        write(con, short, rows)
    return con


def write(con, short: str, rows: list[dict], replace: bool = True) -> None:
    table, columns = TABLES[short]
    columns = {**columns, **HISTORY_COLUMNS}
    if replace or not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema || '.' "
                                  "|| table_name = ?", [table]).fetchall()[0][0]:
        con.execute(f"CREATE OR REPLACE TABLE {table} ("
                    + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
    names = list(columns)
    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in names)})",
                    [[{"valid_from": SNAPSHOT, **r}.get(c) for c in names] for r in rows])


def families(con) -> dict[str, str]:
    return dict(con.execute("SELECT DISTINCT person_key, family_key FROM identity.family_member").fetchall())


def member(con, person_key: str) -> list[tuple]:
    return con.execute("SELECT family_key, role, valid_from, valid_to, evidence FROM identity.family_member "
                       "WHERE person_key = ? ORDER BY valid_from", [person_key]).fetchall()


def addr(uprn: str, house: str = "12", street: str = "Mill Street") -> str:
    return f'{{"FLAT": "", "HOUSE": "{house}", "STREET": "{street}", "TOWN": "Kingsmere", "UPRN": "{uprn}"}}'


# A mother and two children: early help holds the mother and one child as family 10001,
# Mosaic holds the mother and the other child with a MOTHER relationship.
MOTHER_RECORDS = [
    ("P_MUM", "early_help", "FAMILY_MEMBERS", "200001"), ("P_KID1", "early_help", "FAMILY_MEMBERS", "200002"),
    ("P_MUM", "social_care", "ssd_person", "1000001"), ("P_KID2", "social_care", "ssd_person", "1000002"),
]
MOTHER_TABLES = {
    "eh_family_members": [
        {"FAMILY_ID": "10001", "PERSON_ID": "200001", "ROLE": "PARENT", "FROM_DATE": "2024-02-01"},
        {"FAMILY_ID": "10001", "PERSON_ID": "200002", "ROLE": "CHILD", "FROM_DATE": "2024-02-01"},
    ],
    "sc_relationship": [
        {"rel_person_id": "1000002", "rel_related_person_id": "1000001", "rel_type": "MOTHER",
         "rel_start_date": "2024-05-01"},
    ],
}


def test_early_help_membership_and_mosaic_relationship_make_one_family(tmp_path):
    con = make_db(tmp_path / "w.duckdb", MOTHER_RECORDS, **MOTHER_TABLES)
    counts = build_families(con, "run-1")
    fam = families(con)
    assert fam["P_MUM"] == fam["P_KID1"] == fam["P_KID2"]
    assert counts["families"] == 1
    assert member(con, "P_MUM")[0][1] == "adult" and member(con, "P_KID2")[0][1] == "child"
    assert "early_help FAMILY_MEMBERS (CHILD)" in member(con, "P_KID1")[0][4]
    assert member(con, "P_KID2")[0][2:4] == (__import__("datetime").date(2024, 5, 1), None)
    assert "social_care MOTHER" in member(con, "P_KID2")[0][4]
    family = con.execute("SELECT members, children, adults, first_seen_run, is_flagged "
                         "FROM identity.family").fetchall()
    assert family == [(3, 2, 1, "run-1", False)]


def test_related_person_mother_link_joins_a_baby_to_its_mother(tmp_path):
    con = make_db(tmp_path / "w.duckdb",
                  [("P_BABY", "health", "Patient", "pat-1"), ("P_MUM", "health", "RelatedPerson", "rp-1"),
                   ("P_OTHER", "health", "Patient", "pat-2")],
                  hl_patients=[{"patient_id": "pat-1", "birth_date": "2024-11-02"},
                               {"patient_id": "pat-2", "birth_date": "2023-01-01"}],
                  hl_related_persons=[{"related_person_id": "rp-1", "patient_id": "pat-1", "relationship": "MTH"}])
    build_families(con, "run-1")
    fam = families(con)
    assert fam["P_BABY"] == fam["P_MUM"] != fam["P_OTHER"]
    import datetime as dt
    key, role, start, end, evidence = member(con, "P_BABY")[0]
    assert (role, start, end, evidence) == ("child", dt.date(2024, 11, 2), None, "health RelatedPerson MTH")
    assert member(con, "P_MUM")[0][1] == "adult"
    # A person with no evidence is a family of one.
    assert member(con, "P_OTHER")[0][4] == "no relationship or co-residence found"


def test_a_child_who_leaves_an_early_help_family_gets_valid_to(tmp_path):
    con = make_db(tmp_path / "w.duckdb",
                  [("P_MUM", "early_help", "FAMILY_MEMBERS", "1"), ("P_STAY", "early_help", "FAMILY_MEMBERS", "2"),
                   ("P_LEFT", "early_help", "FAMILY_MEMBERS", "3")],
                  eh_family_members=[
                      {"FAMILY_ID": "F1", "PERSON_ID": "1", "ROLE": "PARENT", "FROM_DATE": "2024-01-01"},
                      {"FAMILY_ID": "F1", "PERSON_ID": "2", "ROLE": "CHILD", "FROM_DATE": "2024-01-01"},
                      # still open in the first snapshot, closed in the second
                      {"FAMILY_ID": "F1", "PERSON_ID": "3", "ROLE": "CHILD", "FROM_DATE": "2024-01-01",
                       "valid_to": "2025-01-12"},
                      {"FAMILY_ID": "F1", "PERSON_ID": "3", "ROLE": "CHILD", "FROM_DATE": "2024-01-01",
                       "TO_DATE": "2024-12-20", "valid_from": "2025-01-12"},
                  ])
    build_families(con, "run-1")
    import datetime as dt
    assert [m[2:4] for m in member(con, "P_LEFT")] == [(dt.date(2024, 1, 1), dt.date(2024, 12, 20))]
    assert member(con, "P_STAY")[0][3] is None
    assert families(con)["P_LEFT"] == families(con)["P_STAY"]
    assert con.execute("SELECT members, current_members FROM identity.family").fetchall() == [(3, 2)]


def test_two_households_at_one_uprn_at_different_times_are_not_one_family(tmp_path):
    # Family A lived at UPRN 100090000001 in 2020-2021, family B from 2022 on. Each is a
    # mother and child (Mosaic MOTHER). A's child's school record still shows the old
    # address in 2023 (a stale snapshot), overlapping family B. Family C, at the same
    # UPRN in 2018-2019, has no recorded relationship: co-residence alone joins them.
    records = [(f"P_{x}", "social_care", "ssd_person", x) for x in ("A_MUM", "A_KID", "B_MUM", "B_KID", "C_1", "C_2")]
    records.append(("P_A_KID", "education", "pupils", "pupil-1"))
    period = {"A": ("2020-01-01", "2022-01-01"), "B": ("2022-03-01", None), "C": ("2018-01-01", "2019-12-31")}
    con = make_db(
        tmp_path / "w.duckdb", records,
        sc_address=[{"addr_table_id": f"a-{p}", "addr_person_id": p, "addr_address_start_date": period[p[0]][0],
                     "addr_address_end_date": period[p[0]][1], "addr_address_postcode": "zx1 0aa",
                     "addr_address_json": addr("100090000001")}
                    for p in ("A_MUM", "A_KID", "B_MUM", "B_KID", "C_1", "C_2")],
        sc_relationship=[{"rel_person_id": "A_KID", "rel_related_person_id": "A_MUM", "rel_type": "MOTHER"},
                         {"rel_person_id": "B_KID", "rel_related_person_id": "B_MUM", "rel_type": "MOTHER"}],
        ed_pupils=[{"ONEPupilID": "pupil-1", "AddressLine1": "12 Mill St", "Postcode": "ZX1 0AA",
                    "UPRN": "100090000001", "valid_from": "2023-01-19"}],
    )
    build_families(con, "run-1")
    fam = families(con)
    assert fam["P_A_MUM"] == fam["P_A_KID"]
    assert fam["P_B_MUM"] == fam["P_B_KID"]
    assert fam["P_C_1"] == fam["P_C_2"]
    assert len({fam["P_A_MUM"], fam["P_B_MUM"], fam["P_C_1"]}) == 3
    # The households table separates the occupancy spells at the address.
    spells = con.execute("SELECT household_key, list(person_key ORDER BY person_key) FROM identity.household "
                         "GROUP BY household_key ORDER BY min(valid_from)").fetchall()
    # C, then A, then B, with A's child in B's spell too through the stale school address;
    # that stale address did not make A and B one family.
    assert [s[1] for s in spells] == [["P_C_1", "P_C_2"], ["P_A_KID", "P_A_MUM"], ["P_A_KID", "P_B_KID", "P_B_MUM"]]


def test_family_key_is_kept_across_runs_and_when_a_member_joins(tmp_path):
    con = make_db(tmp_path / "w.duckdb", MOTHER_RECORDS, **MOTHER_TABLES)
    build_families(con, "run-1")
    key = families(con)["P_MUM"]
    counts = build_families(con, "run-2")  # nothing changed
    assert families(con)["P_MUM"] == key and counts["events"] == 0
    # A new baby joins the early help family.
    con.execute("INSERT INTO identity.person_record VALUES ('P_NEW', 'early_help', 'FAMILY_MEMBERS', '200003', 1, 't', 't')")
    write(con, "eh_family_members", [{"FAMILY_ID": "10001", "PERSON_ID": "200003", "ROLE": "CHILD",
                                     "FROM_DATE": "2025-01-10", "valid_from": "2025-01-12"}], replace=False)
    counts = build_families(con, "run-3")
    fam = families(con)
    assert fam["P_NEW"] == fam["P_MUM"] == key
    assert counts["events"] == 0
    assert con.execute("SELECT first_seen_run, members FROM identity.family").fetchall() == [("run-1", 4)]
    assert con.execute("SELECT status, first_seen_run, ended_run FROM identity.family_registry").fetchall() == [
        ("active", "run-1", None)]
    # A rebuild (published tables dropped, registry kept) gives the same key.
    con.execute("DROP TABLE identity.family; DROP TABLE identity.family_member; DROP TABLE identity.household")
    build_families(con, "run-4")
    assert families(con)["P_NEW"] == key


def test_a_merge_of_two_families_records_a_link_event(tmp_path):
    records = [("P_MUM", "early_help", "FAMILY_MEMBERS", "1"), ("P_KID", "early_help", "FAMILY_MEMBERS", "2"),
               ("P_MUM", "social_care", "ssd_person", "s1"), ("P_SIB1", "social_care", "ssd_person", "s2"),
               ("P_SIB2", "social_care", "ssd_person", "s3")]
    con = make_db(tmp_path / "w.duckdb", records,
                  eh_family_members=[{"FAMILY_ID": "F1", "PERSON_ID": "1", "ROLE": "PARENT", "FROM_DATE": "2024-01-01"},
                                     {"FAMILY_ID": "F1", "PERSON_ID": "2", "ROLE": "CHILD", "FROM_DATE": "2024-01-01"}],
                  sc_relationship=[{"rel_person_id": "s2", "rel_related_person_id": "s3", "rel_type": "SIBLING"}])
    build_families(con, "run-1")
    before = families(con)
    assert before["P_MUM"] != before["P_SIB1"] == before["P_SIB2"]
    assert con.execute("SELECT count(*) FROM identity.link_event WHERE event_type = 'new'").fetchall() == [(2,)]
    # Mosaic records the siblings' mother: the two families become one.
    write(con, "sc_relationship", [{"rel_person_id": "s2", "rel_related_person_id": "s1", "rel_type": "MOTHER",
                                    "valid_from": "2025-01-12"}], replace=False)
    counts = build_families(con, "run-2")
    after = families(con)
    assert len(set(after.values())) == 1
    survivor = after["P_MUM"]
    absorbed = ({before["P_MUM"], before["P_SIB1"]} - {survivor}).pop()
    assert survivor == min(before["P_MUM"], before["P_SIB1"])  # the older key survives a tie
    events = con.execute("SELECT run_id, entity, event_type, key, other_key FROM identity.link_event "
                         "WHERE run_id = 'run-2'").fetchall()
    assert events == [("run-2", "family", "merge", survivor, absorbed)]
    assert counts["events_merge"] == 1
    assert con.execute("SELECT status, merged_into FROM identity.family_registry WHERE family_key = ?",
                       [absorbed]).fetchall() == [("merged", survivor)]


def test_a_split_is_recorded_and_a_new_key_issued(tmp_path):
    con = make_db(tmp_path / "w.duckdb", [(f"P{i}", "social_care", "ssd_person", f"s{i}") for i in range(1, 5)],
                  sc_family=[{"fami_family_id": "40001", "fami_person_id": f"s{i}"} for i in range(1, 5)])
    build_families(con, "run-1")
    key = families(con)["P1"]
    # Mosaic re-records the family as two: P1-P3 stay, P4 moves to a family of its own.
    write(con, "sc_family", [{"fami_family_id": "40001", "fami_person_id": f"s{i}"} for i in range(1, 4)]
          + [{"fami_family_id": "40002", "fami_person_id": "s4"}])
    build_families(con, "run-2")
    fam = families(con)
    assert fam["P1"] == fam["P3"] == key != fam["P4"]
    events = con.execute("SELECT event_type, key, other_key FROM identity.link_event WHERE run_id = 'run-2' "
                         "ORDER BY event_type").fetchall()
    assert events == [("new", fam["P4"], None), ("split", key, fam["P4"])]


def test_missing_source_tables_read_as_empty_and_person_record_is_required(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="person_record"):
        build_families(con, "run-1")
    con.close()
    con = make_db(tmp_path / "w2.duckdb", [("P1", "mash", "contacts", "MC1:1")])
    counts = build_families(con, "run-1")
    assert counts["families"] == 1 and counts["households"] == 0


def _published(con) -> dict[str, set]:
    """Every output a full rebuild writes, minus the columns that differ by wall clock or uuid."""
    queries = {t: f"SELECT * FROM identity.{t}" for t in ("household", "family_member", "family",
                                                           "family_registry_member", "household_registry")}
    queries["family_registry"] = "SELECT * EXCLUDE (updated_at) FROM identity.family_registry"
    queries["link_event"] = "SELECT * EXCLUDE (event_id, recorded_at) FROM identity.link_event"
    return {t: sorted(con.execute(q).fetchall(), key=repr) for t, q in queries.items()}


def test_incremental_run_equals_a_full_rebuild_and_an_unchanged_run_is_fast_path(tmp_path):
    # run 1: the mother's family plus an unrelated household that must be left alone
    records = MOTHER_RECORDS + [("P_OTHER", "social_care", "ssd_person", "1000009"),
                                ("P_OTHER2", "social_care", "ssd_person", "1000008")]
    tables = {**MOTHER_TABLES, "sc_address": [
        {"addr_table_id": "a1", "addr_person_id": "1000001", "addr_address_start_date": "2024-01-01",
         "addr_address_postcode": "KM1 1AA", "addr_address_json": addr("100000001")},
        {"addr_table_id": "a9", "addr_person_id": "1000009", "addr_address_start_date": "2023-01-01",
         "addr_address_postcode": "KM9 9ZZ", "addr_address_json": addr("100000009", "3", "Oak Road")},
        {"addr_table_id": "a8", "addr_person_id": "1000008", "addr_address_start_date": "2023-01-01",
         "addr_address_postcode": "KM9 9ZZ", "addr_address_json": addr("100000009", "3", "Oak Road")}]}
    con = make_db(tmp_path / "w.duckdb", records, **tables)
    assert build_families(con, "run-1")["mode"] == "full"
    other_key = families(con)["P_OTHER"]
    # run 2 (no change): nothing recomputed, no event, not a row of a registry rewritten
    registries = {t: f"SELECT * FROM identity.{t} ORDER BY ALL" for t in ("household_registry", "family_registry",
                                                                         "family_registry_member")}
    before = {t: con.execute(q).fetchall() for t, q in registries.items()}
    counts = build_families(con, "run-2")
    assert counts["mode"] == "unchanged" and counts["events"] == 0
    assert {t: con.execute(q).fetchall() for t, q in registries.items()} == before
    # a new child joins early help family 10001; the mother moves house
    con.execute("INSERT INTO identity.person_record VALUES ('P_KID3', 'early_help', 'FAMILY_MEMBERS', '200003', "
                "1.0, 'test', 'test')")
    write(con, "eh_family_members", [{"FAMILY_ID": "10001", "PERSON_ID": "200003", "ROLE": "CHILD",
                                      "FROM_DATE": "2025-01-10", "valid_from": "2025-01-12"}], replace=False)
    con.execute("UPDATE history.social_care__ssd_address SET addr_address_end_date = DATE '2025-01-01' "
                "WHERE addr_table_id = 'a1'")
    write(con, "sc_address", [{"addr_table_id": "a2", "addr_person_id": "1000001",
                               "addr_address_start_date": "2025-01-01", "addr_address_postcode": "KM2 2BB",
                               "addr_address_json": addr("100000002", "7", "New Street"),
                               "valid_from": "2025-01-12"}], replace=False)
    con.close()

    shutil.copy(tmp_path / "w.duckdb", tmp_path / "full.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    counts = build_families(con, "run-3")
    assert counts["mode"] == "incremental"
    full = duckdb.connect(str(tmp_path / "full.duckdb"))
    assert build_families(full, "run-3", incremental=False)["mode"] == "full"
    assert _published(con) == _published(full)
    fam = families(con)
    assert fam["P_KID3"] == fam["P_MUM"] and fam["P_OTHER"] == other_key
    assert con.execute("SELECT count(*) FROM identity.household WHERE uprn = '100000002'").fetchall()[0][0] == 1


def test_keys_that_are_no_longer_seen_record_the_run_that_ended_them(tmp_path):
    # P_OTHER lives alone at 3 Oak Road; then their only record is no longer delivered
    records = MOTHER_RECORDS + [("P_OTHER", "social_care", "ssd_person", "1000009")]
    tables = {**MOTHER_TABLES, "sc_address": [
        {"addr_table_id": "a9", "addr_person_id": "1000009", "addr_address_start_date": "2023-01-01",
         "addr_address_postcode": "KM9 9ZZ", "addr_address_json": addr("100000009", "3", "Oak Road")}]}
    con = make_db(tmp_path / "w.duckdb", records, **tables)
    build_families(con, "run-1")
    other = families(con)["P_OTHER"]
    household = con.execute("SELECT household_key FROM identity.household WHERE person_key = 'P_OTHER'").fetchall()
    con.execute("DELETE FROM identity.person_record WHERE person_key = 'P_OTHER'")
    con.close()
    shutil.copy(tmp_path / "w.duckdb", tmp_path / "full.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert build_families(con, "run-2")["mode"] == "incremental"
    assert con.execute("SELECT status, first_seen_run, ended_run FROM identity.family_registry "
                       "WHERE family_key = ?", [other]).fetchall() == [("retired", "run-1", "run-2")]
    assert con.execute("SELECT family_key, ended_run FROM identity.family_registry_member "
                       "WHERE person_key = 'P_OTHER'").fetchall() == [(other, "run-2")]
    assert con.execute("SELECT first_seen_run, ended_run FROM identity.household_registry "
                       "WHERE household_key = ?", household[0]).fetchall() == [("run-1", "run-2")]
    # the mother's family and every other key are still current
    assert con.execute("SELECT count(*) FROM identity.family_registry WHERE ended_run IS NULL").fetchall() == [(1,)]
    full = duckdb.connect(str(tmp_path / "full.duckdb"))
    build_families(full, "run-2", incremental=False)
    assert _published(con) == _published(full)


def test_registries_saved_with_last_seen_run_are_upgraded_in_place(tmp_path):
    con = make_db(tmp_path / "w.duckdb", MOTHER_RECORDS, **MOTHER_TABLES)
    build_families(con, "run-1")
    key = families(con)["P_MUM"]
    # the layout before ended_run: every row stamped with the last run that saw it
    for table in ("household_registry", "family_registry", "family_registry_member"):
        con.execute(f"ALTER TABLE identity.{table} RENAME COLUMN ended_run TO last_seen_run")
        con.execute(f"UPDATE identity.{table} SET last_seen_run = 'run-1'")
    con.execute("INSERT INTO identity.family_registry VALUES ('F99999999', 'retired', NULL, 'run-0', 'run-0', now())")
    build_families(con, "run-2")
    assert families(con)["P_MUM"] == key
    assert con.execute("SELECT family_key, ended_run FROM identity.family_registry ORDER BY 1").fetchall() == [
        (key, None), ("F99999999", "after run-0")]
    assert con.execute("SELECT DISTINCT ended_run FROM identity.family_registry_member").fetchall() == [(None,)]


def test_an_address_end_date_alone_is_a_change_an_incremental_run_sees(tmp_path):
    # The same number of residence rows before and after: only a value differs.
    records = MOTHER_RECORDS + [("P_OTHER", "social_care", "ssd_person", "1000009")]
    tables = {**MOTHER_TABLES, "sc_address": [
        {"addr_table_id": "a1", "addr_person_id": "1000001", "addr_address_start_date": "2024-01-01",
         "addr_address_postcode": "KM1 1AA", "addr_address_json": addr("100000001")},
        {"addr_table_id": "a9", "addr_person_id": "1000009", "addr_address_start_date": "2023-01-01",
         "addr_address_postcode": "KM9 9ZZ", "addr_address_json": addr("100000009", "3", "Oak Road")}]}
    con = make_db(tmp_path / "w.duckdb", records, **tables)
    build_families(con, "run-1")
    con.execute("UPDATE history.social_care__ssd_address SET addr_address_end_date = DATE '2025-03-01' "
                "WHERE addr_table_id = 'a1'")
    con.close()
    shutil.copy(tmp_path / "w.duckdb", tmp_path / "full.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert build_families(con, "run-2")["mode"] == "incremental"
    assert con.execute("SELECT valid_to FROM identity.household WHERE uprn = '100000001'").fetchall() == [
        (__import__("datetime").date(2025, 3, 1),)]
    full = duckdb.connect(str(tmp_path / "full.duckdb"))
    build_families(full, "run-2", incremental=False)
    assert _published(con) == _published(full)
