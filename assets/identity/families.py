"""Families and households from shared addresses and recorded relationships.

``build_families(con, run_id)`` reads ``identity.person_record`` and the history tables
below, and creates or refreshes, in the same DuckDB database:

- ``identity.household`` (household_key, person_key, address_basis, uprn, postcode,
  valid_from, valid_to, residences, evidence, household_people, is_crowded);
- ``identity.family_member`` (family_key, person_key, role, valid_from, valid_to, evidence, periods);
- ``identity.family`` (family_key, first_seen_run, members, children,
  adults, current_members, valid_from, valid_to, evidence, is_flagged, flag_reason);
- the persistent ``identity.family_registry``, ``identity.family_registry_member`` and
  ``identity.household_registry`` (never dropped), and ``entity = 'family'`` rows of
  ``identity.link_event``.

The rules live in the SQL files (``sql/families_*.sql``), each with a header saying what
its tables mean. This module only binds the sources, runs the files in order and finds
connected components by label propagation (a loop of SQL statements).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from sources.sql_runner import run_sql, table_exists

from .link import SCRATCH, scratch

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


def build_families(con: duckdb.DuckDBPyConnection, run_id: str, incremental: bool = True) -> dict:
    """Build households and families for this run; return counts of what was built.

    With incremental (the default) and the state the last run left (identity.fam_state_*,
    written by the same SQL), only the families and households that the changed evidence
    can reach are recomputed (see _incremental); the result is the same as a full rebuild.
    counts["mode"] says which path ran: 'full', 'incremental' or 'unchanged'."""
    if not table_exists(con, "identity.person_record"):
        raise ValueError("identity.person_record is missing: link persons before building families")
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    _upgrade_registries(con)
    _bind_sources(con)
    con.execute("CREATE OR REPLACE TEMP TABLE fam_run AS SELECT CAST(? AS VARCHAR) AS run_id, "
                "CAST(? AS TIMESTAMPTZ) AS recorded_at", [run_id, datetime.now(timezone.utc)])
    events_before = _count(con, "SELECT count(*) FROM identity.link_event WHERE entity = 'family'") \
        if table_exists(con, "identity.link_event") else 0
    state_ok = incremental and _state_valid(con)
    if table_exists(con, "identity.fam_state_meta"):
        con.execute("DELETE FROM identity.fam_state_meta")  # a run that fails half way leaves no state
    _run(con, "families_residence.sql")
    _run(con, "families_evidence.sql")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_nodes AS SELECT DISTINCT person_key FROM fam_src_person_record "
                "WHERE person_key IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_groups1 AS SELECT DISTINCT person_key, group_id "
                "FROM fam_evidence WHERE links")
    mode = _incremental(con) if state_ok else _full(con)
    _save_state(con, mode)
    events = con.execute("SELECT event_type, count(*) FROM identity.link_event WHERE entity = 'family' "
                         "AND run_id = ? GROUP BY event_type", [run_id]).fetchall()
    counts = {
        "mode": mode,
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


def _full(con) -> str:
    """Every household and family from scratch (the residences and evidence already built)."""
    _run(con, "families_households.sql", residence="fam_residence", household_out="identity.household",
         address_scope="true")
    _components(con, "fam_groups1", "fam_comp1")
    _run(con, "families_coresidence.sql")
    _run(con, "families_cogroups.sql", cores="fam_cores")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_groups2 AS SELECT person_key, 'c1:' || comp AS group_id "
                "FROM fam_comp1 UNION SELECT person_key, group_id FROM fam_co_group")
    _components(con, "fam_groups2", "fam_comp2")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_key_kept (family_key VARCHAR)")
    _run(con, "families_keys.sql")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_fk_all AS "
                "SELECT f.person_key, k.family_key FROM fam_final f JOIN fam_key k USING (comp)")
    _run(con, "families_members.sql", cores="fam_cores", family_member_out="identity.family_member",
         family_out="identity.family")
    return "full"


def _changed(con) -> None:
    """fam_chg_person: people whose residences, evidence (or that of anyone in the same
    evidence group), role or presence differ from the last run; fam_chg_address: every
    address at which any of them lived, then or now."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE fam_chg_group AS "
                f"SELECT group_id FROM {_differing(con, 'fam_evidence', 'identity.fam_state_evidence', 'group_id')}")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fam_chg_person AS
        SELECT person_key FROM {_differing(con, 'fam_residence', 'identity.fam_state_residence', 'person_key')}
        UNION SELECT person_key FROM fam_evidence WHERE group_id IN (SELECT group_id FROM fam_chg_group)
        UNION SELECT person_key FROM identity.fam_state_evidence WHERE group_id IN (SELECT group_id FROM fam_chg_group)
        UNION SELECT person_key FROM {_differing(con, 'fam_role', 'identity.fam_state_role', 'person_key')}
        UNION SELECT person_key FROM (SELECT person_key FROM fam_nodes EXCEPT SELECT person_key FROM identity.fam_state_final)
        UNION SELECT person_key FROM (SELECT person_key FROM identity.fam_state_final EXCEPT SELECT person_key FROM fam_nodes)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE fam_chg_address AS
        SELECT address_key FROM fam_residence WHERE person_key IN (SELECT person_key FROM fam_chg_person)
        UNION SELECT address_key FROM identity.fam_state_residence
        WHERE person_key IN (SELECT person_key FROM fam_chg_person)""")


def _differing(con, new: str, old: str, key: str | None = None) -> str:
    """A subquery: the rows that new and old do not hold equally often (new EXCEPT ALL
    old, and old EXCEPT ALL new). One signed count per distinct row: in DuckDB this is
    many times faster than the two EXCEPT ALLs. With key, only that column of those rows,
    counted by a hash of each whole row, which is cheaper than grouping wide rows (as in
    standardise, a change hidden by a collision of 64-bit hashes is not a practical risk)."""
    if key:
        return (f'(SELECT DISTINCT "{key}" FROM (SELECT "{key}", hash(n) AS fam_h, 1 AS fam_n FROM {new} n '
                f'UNION ALL SELECT "{key}", hash(o), -1 FROM {old} o) GROUP BY "{key}", fam_h HAVING sum(fam_n) <> 0)')
    columns = ", ".join(f'"{c}"' for c in con.sql(f"SELECT * FROM {new} LIMIT 0").columns)
    return (f"(SELECT {columns} FROM (SELECT {columns}, 1 AS fam_n FROM {new} "
            f"UNION ALL SELECT {columns}, -1 FROM {old}) GROUP BY {columns} HAVING sum(fam_n) <> 0)")


def _write_differences(con, table: str, new: str, scope: str = "true", diff: str | None = None) -> None:
    """Make the rows of table within scope those of new within scope, deleting and
    inserting only the rows that differ (diff, if given, is a table of them). A day changes
    few rows, and every row written goes through the log and the next checkpoint."""
    if diff is None:
        diff = "fam_write_diff"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {diff} AS SELECT * FROM "
                    f"{_differing(con, f'(SELECT * FROM {new} WHERE {scope})', f'(SELECT * FROM {table} WHERE {scope})')}")
    columns = con.sql(f"SELECT * FROM {diff} LIMIT 0").columns

    def same_as_diff(alias: str) -> str:
        match = " AND ".join(f'd."{c}" IS NOT DISTINCT FROM {alias}."{c}"' for c in columns)
        return f"EXISTS (SELECT 1 FROM {diff} d WHERE {match})"
    con.execute(f"DELETE FROM {table} t WHERE {same_as_diff('t')}")
    con.execute(f"INSERT INTO {table} SELECT * FROM {new} n WHERE ({scope}) AND {same_as_diff('n')}")


def _closure(con, table: str, steps: list[str]) -> None:
    """Grow the one-column table of person keys by the given SELECTs (each may read
    {table}) until nothing is added."""
    n = _count(con, f"SELECT count(*) FROM {table}")
    while True:
        con.execute(f"CREATE OR REPLACE TEMP TABLE fam_grow AS SELECT person_key FROM {table} UNION "
                    + " UNION ".join(s.format(t=table) for s in steps))
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE fam_grow RENAME TO {table}")
        now = _count(con, f"SELECT count(*) FROM {table}")
        if now == n:
            return
        n = now


# the people whose co-residence memberships an incremental run rebuilds
IN_CO_SCOPE = "person_key IN (SELECT person_key FROM fam_co_scope)"


def _incremental(con) -> str:
    """Recompute only what the changes reach, keeping every other row and key as it is.

    Households: every address at which a changed person lived (then or now) is rebuilt
    whole; the rest are left (an address whose residences did not change rebuilds to the
    same spells and keys). Families: fam_x, the changed people closed over their old and
    new relationship components, is re-componented (its relationship components are whole
    components both before and after); fam_y adds the people whose co-residence
    memberships changed and is closed over old families and new memberships, so it is a
    union of old families and of new ones: its families are rebuilt and re-keyed, the
    votes for their old keys all coming from inside it. Every other family keeps its key,
    rows, members and registry rows untouched, as a full rebuild would leave them."""
    _changed(con)
    if not _count(con, "SELECT count(*) FROM fam_chg_person"):
        return "unchanged"
    _rebuild_households(con)
    _recomponent_relationships(con)
    _regroup_coresidents(con)
    _family_scope(con)
    _rekey_and_write_families(con)
    return "incremental"


def _rebuild_households(con) -> None:
    """Households of every address a changed person lived at, rebuilt whole; people whose
    co-residence pairs changed join fam_chg_person."""
    con.execute("CREATE OR REPLACE TEMP VIEW fam_residence_scope AS SELECT * FROM fam_residence "
                "WHERE address_key IN (SELECT address_key FROM fam_chg_address)")
    _run(con, "families_households.sql", residence="fam_residence_scope",
         household_out=f"{scratch(con)}.fam_household_new",
         address_scope="address_key IN (SELECT address_key FROM fam_chg_address)")
    _write_differences(con, "identity.household", f"{SCRATCH}.fam_household_new",
                       scope="household_key IN (SELECT household_key FROM identity.household_registry "
                             "WHERE address_key IN (SELECT address_key FROM fam_chg_address))")
    # co-residence pairs at the rebuilt addresses; people whose pairs changed are changed too
    _run(con, "families_coresidence.sql")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_cores_old AS SELECT * FROM identity.fam_state_cores "
                "WHERE address_key IN (SELECT address_key FROM fam_chg_address)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE fam_cores_diff AS "
                f"SELECT * FROM {_differing(con, 'fam_cores', 'fam_cores_old')}")
    con.execute("INSERT INTO fam_chg_person SELECT p FROM fam_cores_diff EXCEPT SELECT person_key FROM fam_chg_person")
    _write_differences(con, "identity.fam_state_cores", "fam_cores", diff="fam_cores_diff")


def _recomponent_relationships(con) -> None:
    """fam_x, the changed people closed over their old and new relationship components,
    re-componented; fam_comp1 is every person's relationship component."""
    con.execute("CREATE OR REPLACE TEMP TABLE fam_x AS SELECT person_key FROM fam_chg_person")
    _closure(con, "fam_x", [
        "SELECT s.person_key FROM identity.fam_state_comp1 s WHERE s.comp IN "
        "(SELECT comp FROM identity.fam_state_comp1 WHERE person_key IN (SELECT person_key FROM {t}))",
        "SELECT g.person_key FROM fam_groups1 g WHERE g.group_id IN "
        "(SELECT group_id FROM fam_groups1 WHERE person_key IN (SELECT person_key FROM {t}))"])
    con.execute("CREATE OR REPLACE TEMP TABLE fam_scope_nodes AS SELECT person_key FROM fam_nodes "
                "WHERE person_key IN (SELECT person_key FROM fam_x)")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_scope_groups AS SELECT * FROM fam_groups1 "
                "WHERE person_key IN (SELECT person_key FROM fam_x)")
    _components(con, "fam_scope_groups", "fam_comp1_x", nodes="fam_scope_nodes")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE fam_comp1 AS
        SELECT * FROM identity.fam_state_comp1 WHERE person_key NOT IN (SELECT person_key FROM fam_x)
        UNION ALL SELECT * FROM fam_comp1_x""")


def _regroup_coresidents(con) -> None:
    """fam_groups2: every person's membership, the last run's for people out of reach of
    the change, rebuilt for fam_co_scope."""
    # Co-residence memberships (step 3b) belong only to people alone in their relationship
    # component, and depend on their pairs and their partners' components and attachments.
    # So they can change only for fam_x (changed components, every person of a changed
    # pair) and for lone people living with those, two steps out (a partner's attachment
    # depends on the partner's partners). For everyone else the last run's fam_groups2
    # rows stand; the step reads only the pairs of the people in scope and their partners.
    con.execute("CREATE OR REPLACE TEMP TABLE fam_lone AS SELECT person_key FROM fam_comp1 "
                "WHERE comp IN (SELECT comp FROM fam_comp1 GROUP BY comp HAVING count(*) = 1)")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_co_scope AS SELECT person_key FROM fam_x")
    for _ in range(2):
        con.execute("INSERT INTO fam_co_scope SELECT c.p FROM identity.fam_state_cores c "
                    "WHERE c.q IN (SELECT person_key FROM fam_co_scope) AND c.p IN (SELECT person_key FROM fam_lone) "
                    "EXCEPT SELECT person_key FROM fam_co_scope")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_co_cores AS SELECT * FROM identity.fam_state_cores WHERE p IN "
                "(SELECT person_key FROM fam_co_scope UNION "
                " SELECT p FROM identity.fam_state_cores WHERE q IN (SELECT person_key FROM fam_co_scope))")
    _run(con, "families_cogroups.sql", cores="fam_co_cores")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fam_groups2 AS
        SELECT * FROM identity.fam_state_groups2 WHERE NOT {IN_CO_SCOPE}
        UNION ALL (SELECT person_key, 'c1:' || comp AS group_id FROM fam_comp1 WHERE {IN_CO_SCOPE}
                   UNION SELECT person_key, group_id FROM fam_co_group WHERE {IN_CO_SCOPE})""")


def _family_scope(con) -> None:
    """fam_y: fam_x, the changed people and those whose memberships changed, closed over
    old families and new memberships; fam_comp2 its new families."""
    changed_groups = _differing(con, f"(SELECT * FROM fam_groups2 WHERE {IN_CO_SCOPE})",
                                f"(SELECT * FROM identity.fam_state_groups2 WHERE {IN_CO_SCOPE})", "person_key")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fam_y AS
        SELECT person_key FROM fam_x UNION SELECT person_key FROM fam_chg_person
        UNION SELECT person_key FROM {changed_groups}""")
    _closure(con, "fam_y", [
        "SELECT s.person_key FROM identity.fam_state_final s WHERE s.family_key IN "
        "(SELECT family_key FROM identity.fam_state_final WHERE person_key IN (SELECT person_key FROM {t}))",
        "SELECT g.person_key FROM fam_groups2 g WHERE g.group_id IN "
        "(SELECT group_id FROM fam_groups2 WHERE person_key IN (SELECT person_key FROM {t}))"])
    con.execute("CREATE OR REPLACE TEMP TABLE fam_scope_nodes AS SELECT person_key FROM fam_nodes "
                "WHERE person_key IN (SELECT person_key FROM fam_y)")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_scope_groups AS SELECT * FROM fam_groups2 "
                "WHERE person_key IN (SELECT person_key FROM fam_y)")
    _components(con, "fam_scope_groups", "fam_comp2", nodes="fam_scope_nodes")


def _rekey_and_write_families(con) -> None:
    """New families in fam_y inherit old keys by vote; their members and rows replace the
    old ones, and every family outside fam_y keeps its key and rows."""
    con.execute("CREATE OR REPLACE TEMP TABLE fam_key_kept AS SELECT DISTINCT family_key FROM "
                "identity.fam_state_final WHERE person_key NOT IN (SELECT person_key FROM fam_y)")
    con.execute("CREATE OR REPLACE TEMP TABLE fam_old_keys AS SELECT DISTINCT family_key FROM "
                "identity.fam_state_final WHERE person_key IN (SELECT person_key FROM fam_y)")
    _run(con, "families_keys.sql")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE fam_fk_all AS
        SELECT f.person_key, k.family_key FROM fam_final f JOIN fam_key k USING (comp)
        UNION ALL
        SELECT person_key, family_key FROM identity.fam_state_final WHERE person_key NOT IN (SELECT person_key FROM fam_y)""")
    _run(con, "families_members.sql", cores="identity.fam_state_cores",
         family_member_out=f"{SCRATCH}.fam_member_new", family_out=f"{SCRATCH}.fam_family_new")
    con.execute("DELETE FROM identity.family_member WHERE person_key IN (SELECT person_key FROM fam_y)")
    con.execute(f"INSERT INTO identity.family_member SELECT * FROM {SCRATCH}.fam_member_new")
    con.execute("DELETE FROM identity.family WHERE family_key IN (SELECT family_key FROM fam_old_keys)")
    con.execute(f"INSERT INTO identity.family SELECT * FROM {SCRATCH}.fam_family_new")


REGISTRIES = ("household_registry", "family_registry", "family_registry_member")


def _upgrade_registries(con) -> None:
    """Registries saved before ended_run replaced last_seen_run (then rewritten on every
    row in every run) are converted in place. A row the newest run did not see had ended,
    in a run not recorded then: its ended_run reads 'after' the last run that saw it."""
    for table in REGISTRIES:
        if not _count(con, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'identity' "
                           "AND table_name = ? AND column_name = 'last_seen_run'", [table]):
            continue
        # the newest run: the one the saved state names, else the run that saw most keys
        newest = f"(SELECT mode(last_seen_run) FROM identity.{table})"
        if table_exists(con, "identity.fam_state_meta"):
            newest = f"coalesce((SELECT any_value(run_id) FROM identity.fam_state_meta), {newest})"
        con.execute(f"UPDATE identity.{table} SET last_seen_run = CASE WHEN last_seen_run <> {newest} "
                    f"THEN 'after ' || last_seen_run END")
        con.execute(f"ALTER TABLE identity.{table} RENAME COLUMN last_seen_run TO ended_run")


STATE = ("fam_state_residence", "fam_state_evidence", "fam_state_role", "fam_state_cores", "fam_state_comp1",
         "fam_state_groups2", "fam_state_final", "fam_state_meta")


def _version() -> str:
    text = "".join((SQL_DIR / n).read_text() for n in sorted(p.name for p in SQL_DIR.glob("families_*.sql")))
    return hashlib.sha256(f"{text}|{HOUSEHOLD_CAP}|{FAMILY_CAP}|{Path(__file__).read_text()}".encode()).hexdigest()


def _state_valid(con) -> bool:
    """The state of the last run is there, complete and written by this code."""
    needed = [f"identity.{t}" for t in STATE] + ["identity.household", "identity.family",
                                                  "identity.family_member", "identity.household_registry",
                                                  "identity.family_registry", "identity.family_registry_member"]
    if not set(needed) <= _tables(con):
        return False
    return bool(_count(con, "SELECT count(*) FROM identity.fam_state_meta WHERE version = ?", [_version()]))


def _save_state(con, mode: str) -> None:
    """Keep what the next run compares against (the pairs were already updated in place).
    After an incremental run only the rows of what it recomputed are replaced: rewriting
    whole tables would cost more than the day's change."""
    if mode == "full":
        for state, temp in (("fam_state_residence", "fam_residence"), ("fam_state_evidence", "fam_evidence"),
                            ("fam_state_role", "fam_role"), ("fam_state_comp1", "fam_comp1"),
                            ("fam_state_groups2", "fam_groups2"), ("fam_state_final", "fam_fk_all"),
                            ("fam_state_cores", "fam_cores")):
            con.execute(f"CREATE OR REPLACE TABLE identity.{state} AS SELECT * FROM {temp}")
    elif mode == "incremental":  # every row that differs is within the scope given
        # a changed person's residences are many rows, most of them as they were
        _write_differences(con, "identity.fam_state_residence", "fam_residence",
                           scope="person_key IN (SELECT person_key FROM fam_chg_person)")
        for state, temp, scope in (
                ("fam_state_evidence", "fam_evidence", "group_id IN (SELECT group_id FROM fam_chg_group)"),
                ("fam_state_role", "fam_role", "person_key IN (SELECT person_key FROM fam_chg_person)"),
                ("fam_state_comp1", "fam_comp1", "person_key IN (SELECT person_key FROM fam_x)"),
                ("fam_state_groups2", "fam_groups2", "person_key IN (SELECT person_key FROM fam_y)"),
                ("fam_state_final", "fam_fk_all", "person_key IN (SELECT person_key FROM fam_y)")):
            con.execute(f"DELETE FROM identity.{state} WHERE {scope}")
            con.execute(f"INSERT INTO identity.{state} SELECT * FROM {temp} WHERE {scope}")
    con.execute("CREATE OR REPLACE TABLE identity.fam_state_meta AS SELECT CAST(? AS VARCHAR) AS version, "
                "(SELECT run_id FROM fam_run) AS run_id", [_version()])


def _bind_sources(con) -> None:
    present = _tables(con)
    for view, (table, columns) in SOURCES.items():
        cols = dict(columns) if table.startswith("identity.") else {**columns, **HISTORY_COLUMNS}
        if table in present:
            select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols.items())
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} FROM {table}")
        else:
            select = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in cols.items())
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} WHERE false")


def _components(con, groups: str, out: str, nodes: str = "fam_nodes") -> None:
    """Connected components of fam_nodes joined through shared groups: out(person_key, comp),
    comp being the smallest person_key of the component (temporary; never published).

    Label propagation on integer ids: people are numbered in person_key order (so the
    smallest id is the smallest person_key) and groups by dense rank; each round gives every
    group the smallest label of its people and every person the smallest label of its
    groups. Only people in some group take part; the others are components of their own.
    Labels never grow, so a round that leaves their sum unchanged changed nothing."""
    con.execute("CREATE OR REPLACE TEMP TABLE fam_cc_node AS "
                f"SELECT person_key, CAST(row_number() OVER (ORDER BY person_key) AS INTEGER) AS id FROM {nodes}")
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


def _run(con, name: str, **params: str) -> None:
    """A families SQL file, with the household and family size caps every one may use."""
    run_sql(con, SQL_DIR / name, **{"household_cap": HOUSEHOLD_CAP, "family_cap": FAMILY_CAP, **params})


def _tables(con) -> set[str]:
    """Every table and view as schema.name, read at once (each catalog query costs a few ms)."""
    return {f"{schema}.{name}" for schema, name in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
        "SELECT schema_name, view_name FROM duckdb_views()").fetchall()}


def _count(con, sql: str, params=None) -> int:
    return con.execute(sql, params or []).fetchall()[0][0]
