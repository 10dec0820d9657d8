"""Families and households from shared addresses and recorded relationships.

``build_families(con, run_id)`` reads ``identity.person_record`` and the history tables
below, and creates or refreshes, in the same DuckDB database:

- ``identity.household`` (household_key, person_key, address_basis, uprn, postcode,
  valid_from, valid_to, evidence, household_people, is_crowded);
- ``identity.family_member`` (family_key, person_key, role, valid_from, valid_to, evidence);
- ``identity.family`` (family_key, first_seen_run, last_seen_run, members, children,
  adults, current_members, valid_from, valid_to, evidence, is_flagged, flag_reason);
- the persistent ``identity.family_registry``, ``identity.family_registry_member`` and
  ``identity.household_registry`` (never dropped), and ``entity = 'family'`` rows of
  ``identity.link_event``.

The rules live in the SQL files (``sql/families_*.sql``), each with a header saying what
its tables mean. This module only binds the sources, runs the files in order and finds
connected components by label propagation (a loop of SQL statements).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).parent / "sql"
STEPS = ("families_residence.sql", "families_evidence.sql", "families_coresidence.sql",
         "families_keys.sql", "families_members.sql")
HOUSEHOLD_CAP = 12  # people in one occupancy spell above which co-residence is not used
FAMILY_CAP = 20     # members above which a family is implausible (see families_keys.sql)

# Temporary view name -> (source table, {column: type}): the only columns read. A source
# table not yet staged reads as empty, so families build from whatever systems have landed.
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "fam_src_person_record": ("identity.person_record", {
        "person_key": "VARCHAR", "system": "VARCHAR", "table_name": "VARCHAR", "record_id": "VARCHAR"}),
    "fam_src_eh_family_members": ("history.early_help__family_members", {
        "FAMILY_ID": "VARCHAR", "PERSON_ID": "VARCHAR", "ROLE": "VARCHAR", "DOB": "DATE",
        "FROM_DATE": "DATE", "TO_DATE": "DATE"}),
    "fam_src_eh_families": ("history.early_help__families", {
        "FAMILY_ID": "VARCHAR", "ADDRESS_1": "VARCHAR", "ADDRESS_2": "VARCHAR", "POSTCODE": "VARCHAR",
        "UPRN": "VARCHAR"}),
    "fam_src_sc_family": ("history.social_care__ssd_family", {
        "fami_family_id": "VARCHAR", "fami_person_id": "VARCHAR"}),
    "fam_src_sc_relationship": ("history.social_care__ssd_person_relationship", {
        "rel_person_id": "VARCHAR", "rel_related_person_id": "VARCHAR", "rel_type": "VARCHAR",
        "rel_start_date": "DATE", "rel_end_date": "DATE"}),
    "fam_src_sc_address": ("history.social_care__ssd_address", {
        "addr_table_id": "VARCHAR", "addr_person_id": "VARCHAR", "addr_address_start_date": "DATE",
        "addr_address_end_date": "DATE", "addr_address_postcode": "VARCHAR", "addr_address_json": "JSON"}),
    "fam_src_sc_person": ("history.social_care__ssd_person", {
        "pers_person_id": "VARCHAR", "pers_dob": "DATE", "pers_is_mother": "BOOLEAN"}),
    "fam_src_hl_related_persons": ("history.health__related_persons", {
        "related_person_id": "VARCHAR", "patient_id": "VARCHAR", "relationship": "VARCHAR",
        "line1": "VARCHAR", "postcode": "VARCHAR"}),
    "fam_src_hl_patient_addresses": ("history.health__patient_addresses", {
        "patient_id": "VARCHAR", "address_index": "BIGINT", "line1": "VARCHAR", "line2": "VARCHAR",
        "postcode": "VARCHAR", "period_start": "DATE", "period_end": "DATE"}),
    "fam_src_hl_patients": ("history.health__patients", {"patient_id": "VARCHAR", "birth_date": "DATE"}),
    "fam_src_ed_pupils": ("history.education__pupils", {
        "ONEPupilID": "VARCHAR", "AddressLine1": "VARCHAR", "AddressLine2": "VARCHAR",
        "Postcode": "VARCHAR", "UPRN": "VARCHAR"}),
}
HISTORY_COLUMNS = {"valid_from": "DATE", "valid_to": "DATE"}


def build_families(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    """Build households and families for this run; return counts of what was built."""
    if not _exists(con, "identity.person_record"):
        raise ValueError("identity.person_record is missing: link persons before building families")
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    _bind_sources(con)
    con.execute("CREATE OR REPLACE TEMP TABLE fam_run AS SELECT CAST(? AS VARCHAR) AS run_id, "
                "CAST(? AS TIMESTAMPTZ) AS recorded_at", [run_id, datetime.now(timezone.utc)])
    events_before = _count(con, "SELECT count(*) FROM identity.link_event WHERE entity = 'family'") \
        if _exists(con, "identity.link_event") else 0
    _run(con, "families_residence.sql")
    _run(con, "families_evidence.sql")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_nodes AS SELECT DISTINCT person_key FROM fam_src_person_record "
                "WHERE person_key IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_groups1 AS SELECT DISTINCT person_key, group_id "
                "FROM fam_evidence WHERE links")
    _components(con, "fam_groups1", "fam_comp1")
    _run(con, "families_coresidence.sql")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_groups2 AS SELECT person_key, 'c1:' || comp AS group_id "
                "FROM fam_comp1 UNION SELECT person_key, group_id FROM fam_co_group")
    _components(con, "fam_groups2", "fam_comp2")
    _run(con, "families_keys.sql")
    _run(con, "families_members.sql")
    events = con.execute("SELECT event_type, count(*) FROM identity.link_event WHERE entity = 'family' "
                         "AND run_id = ? GROUP BY event_type", [run_id]).fetchall()
    counts = {
        "households": _count(con, "SELECT count(DISTINCT household_key) FROM identity.household"),
        "household_rows": _count(con, "SELECT count(*) FROM identity.household"),
        "families": _count(con, "SELECT count(*) FROM identity.family"),
        "families_with_2_or_more": _count(con, "SELECT count(*) FROM identity.family WHERE members >= 2"),
        "family_member_rows": _count(con, "SELECT count(*) FROM identity.family_member"),
        "flagged_families": _count(con, "SELECT count(*) FROM identity.family WHERE is_flagged"),
        "largest_family": _count(con, "SELECT coalesce(max(members), 0) FROM identity.family"),
        "events": _count(con, "SELECT count(*) FROM identity.link_event WHERE entity = 'family'") - events_before,
    }
    counts.update({f"events_{kind}": n for kind, n in events})
    return counts


def _bind_sources(con) -> None:
    for view, (table, columns) in SOURCES.items():
        cols = dict(columns) if table.startswith("identity.") else {**columns, **HISTORY_COLUMNS}
        if _exists(con, table):
            select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols.items())
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} FROM {table}")
        else:
            select = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in cols.items())
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} WHERE false")


def _components(con, groups: str, out: str) -> None:
    """Connected components of fam_nodes joined through shared groups: out(person_key, comp),
    comp being the smallest person_key of the component (temporary; never published).

    Label propagation on integer ids: people are numbered in person_key order (so the
    smallest id is the smallest person_key) and groups by dense rank; each round gives every
    group the smallest label of its people and every person the smallest label of its
    groups. Only people in some group take part; the others are components of their own.
    Labels never grow, so a round that leaves their sum unchanged changed nothing."""
    con.execute("CREATE OR REPLACE TEMP TABLE fam_cc_node AS "
                "SELECT person_key, CAST(row_number() OVER (ORDER BY person_key) AS INTEGER) AS id FROM fam_nodes")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fam_cc_edge AS
        SELECT DISTINCT n.id, CAST(dense_rank() OVER (ORDER BY m.group_id) AS INTEGER) AS g
        FROM {groups} m JOIN fam_cc_node n USING (person_key) WHERE m.group_id IS NOT NULL""")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_cc_label AS SELECT DISTINCT id, id AS comp FROM fam_cc_edge")
    total = _count(con, "SELECT coalesce(sum(CAST(comp AS BIGINT)), 0) FROM fam_cc_label")
    while True:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE fam_cc_next AS
            WITH g AS (SELECT e.g, min(l.comp) AS comp FROM fam_cc_edge e JOIN fam_cc_label l USING (id) GROUP BY e.g)
            SELECT e.id, min(g.comp) AS comp FROM fam_cc_edge e JOIN g USING (g) GROUP BY e.id""")
        con.execute("DROP TABLE fam_cc_label")
        con.execute("ALTER TABLE fam_cc_next RENAME TO fam_cc_label")
        now = _count(con, "SELECT coalesce(sum(CAST(comp AS BIGINT)), 0) FROM fam_cc_label")
        if now == total:
            break
        total = now
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT n.person_key, coalesce(c.person_key, n.person_key) AS comp
        FROM fam_cc_node n LEFT JOIN fam_cc_label l USING (id) LEFT JOIN fam_cc_node c ON c.id = l.comp""")


def _run(con, name: str) -> None:
    sql = (SQL_DIR / name).read_text()
    sql = sql.replace("${household_cap}", str(HOUSEHOLD_CAP)).replace("${family_cap}", str(FAMILY_CAP))
    con.execute(sql)


def _exists(con, qualified: str) -> bool:
    schema, table = qualified.split(".")
    return bool(_count(con, "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                       [schema, table]))


def _count(con, sql: str, params=None) -> int:
    return con.execute(sql, params or []).fetchall()[0][0]
