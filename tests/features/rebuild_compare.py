"""Compare two real builds of one city, one on every drop and one on the drops up to a cut:
what the features say at each month-end up to the cut must be the same in both.

Person and family keys are issued by each build, so rows are matched through the source
records behind them. A person is *comparable* when the records the cut build put in it are
exactly the records the full build put in one person, less those delivered after the cut.
Where later records join two earlier persons, or a later record moves one, identity
legitimately differs: those persons are counted, not compared.

Families are identity too, one level up: a family is named by its members as known by the
cut (identity.family_member rows with evidence delivered by then). Where later evidence
re-decides which family a person belongs to (a person who lived with two families goes to
the one they lived with longest), the child's family has other members in the two builds;
those child-months are counted as *family differs* and only their family columns are left
out.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

# Columns that name the row rather than describe the child
KEYS = {"person_key", "family_key", "as_of"}
# Columns read from the child's family
FAMILY_COLUMNS = {"family_size", "family_sf_needs", "sibling_cp_or_cla"}


def _persons(con, alias: str, cut: date) -> None:
    """_{alias}_person: each person's records delivered by the cut, as a sorted list."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _{alias}_person AS
        SELECT r.person_key, list(r.record_key ORDER BY r.record_key) AS records
        FROM {alias}.identity.person_record r
        JOIN {alias}.identity.source_person s USING (system, table_name, record_id)
        WHERE s.first_delivered <= ?
        GROUP BY ALL""", [cut])


def _families(con, alias: str, cut: date) -> None:
    """_{alias}_family: each family, named by the members it had as known by the cut
    (identity.family_member rows with an evidence period delivered by then)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _{alias}_family AS
        SELECT m.family_key, list_sort(list(DISTINCT coalesce(s.person, '?' || m.person_key))) AS members,
               bool_and(s.person IS NOT NULL) AS comparable
        FROM {alias}.identity.family_member m LEFT JOIN _same_person s ON s.{alias}_key = m.person_key
        WHERE len(list_filter(m.periods, lambda p: p.known_from <= $cut)) > 0
        GROUP BY ALL""", {"cut": cut})


def _columns(con, table: str) -> list[str]:
    return [name for (name,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = 'c' AND schema_name = 'features' "
        "AND table_name = ? ORDER BY column_index", [table]).fetchall() if name not in KEYS]


def compare(full: Path, cut_build: Path, cut: date) -> dict:
    """Differences between the two builds' features at every month-end up to ``cut``: per
    child_month column, the compared rows whose values differ (with examples); the same
    for family_month; and the counts of what could not be compared, and why."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{full}' AS f (READ_ONLY)")
    con.execute(f"ATTACH '{cut_build}' AS c (READ_ONLY)")
    _persons(con, "f", cut)
    _persons(con, "c", cut)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _same_person AS
        SELECT f.person_key AS f_key, c.person_key AS c_key, c.records[1] AS person
        FROM _f_person f JOIN _c_person c USING (records)""")
    _families(con, "f", cut)
    _families(con, "c", cut)
    persons, same = con.execute(
        "SELECT (SELECT count(*) FROM _c_person), (SELECT count(*) FROM _same_person)").fetchall()[0]
    month_ends = [d for (d,) in con.execute(
        "SELECT DISTINCT as_of FROM c.features.child_month WHERE as_of <= ? ORDER BY 1", [cut]).fetchall()]
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _rows AS
        SELECT coalesce(fr.as_of, cr.as_of) AS as_of, coalesce(fs.person, cs.person) AS person,
               fr.person_key IS NOT NULL AS in_full, cr.person_key IS NOT NULL AS in_cut,
               (fs.person IS NULL OR cs.person IS NULL) AS identity_differs,
               coalesce(ff.members, [fs.person]) IS DISTINCT FROM coalesce(cf.members, [cs.person])
                   AS family_differs,
               fr AS f_row, cr AS c_row
        FROM (SELECT * FROM f.features.child_month WHERE as_of <= $cut) fr
        LEFT JOIN _same_person fs ON fs.f_key = fr.person_key
        LEFT JOIN _f_family ff ON ff.family_key = fr.family_key
        FULL JOIN ((SELECT * FROM c.features.child_month WHERE as_of <= $cut) cr
                   LEFT JOIN _same_person cs ON cs.c_key = cr.person_key
                   LEFT JOIN _c_family cf ON cf.family_key = cr.family_key)
          ON fs.person = cs.person AND fr.as_of = cr.as_of""", {"cut": cut})
    compared = "NOT identity_differs AND in_full AND in_cut"
    differing = {}
    for column in _columns(con, "child_month"):
        where = f'{compared} AND f_row."{column}" IS DISTINCT FROM c_row."{column}"'
        if column in FAMILY_COLUMNS:
            where += " AND NOT family_differs"
        (count,) = con.execute(f"SELECT count(*) FROM _rows WHERE {where}").fetchall()[0]
        if count:
            example = con.execute(f'SELECT as_of, person, f_row."{column}", c_row."{column}" FROM _rows '
                                  f"WHERE {where} ORDER BY 1, 2 LIMIT 3").fetchall()
            differing[column] = {"rows": count, "examples": example}
    # labels look forward and are read from the newest records, so only their rows are
    # compared: every compared child-month has its label row in both builds
    (unlabelled,) = con.execute(f"""
        SELECT count(*) FROM _rows r
        WHERE {compared} AND (
            NOT EXISTS (SELECT 1 FROM f.features.child_month_label l
                        WHERE l.person_key = r.f_row.person_key AND l.as_of = r.as_of)
         OR NOT EXISTS (SELECT 1 FROM c.features.child_month_label l
                        WHERE l.person_key = r.c_row.person_key AND l.as_of = r.as_of))""").fetchall()[0]
    rows, only_full, only_cut, identity_rows, family_rows = con.execute(f"""
        SELECT count(*) FILTER (WHERE {compared}),
               count(*) FILTER (WHERE NOT identity_differs AND in_full AND NOT in_cut),
               count(*) FILTER (WHERE NOT identity_differs AND in_cut AND NOT in_full),
               count(*) FILTER (WHERE identity_differs),
               count(*) FILTER (WHERE {compared} AND family_differs) FROM _rows""").fetchall()[0]
    return {"cut": cut, "month_ends": len(month_ends), "persons_in_cut_build": persons,
            "persons_identity_differs": persons - same, "rows_compared": rows,
            "rows_only_in_full": only_full, "rows_only_in_cut": only_cut,
            "rows_identity_differs": identity_rows, "rows_family_differs": family_rows,
            "rows_without_a_label": unlabelled, "columns_differing": differing,
            "families": _compare_families(con, cut)}


def _compare_families(con, cut: date) -> dict:
    """features.family_month, each family matched by its members as known by the cut (all
    comparable); a family whose members differ between the builds is in one build only."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _family_rows AS
        SELECT fm.family_key IS NOT NULL AS in_full, cm.family_key IS NOT NULL AS in_cut, fm AS f_row, cm AS c_row
        FROM (SELECT * FROM _f_family WHERE comparable) fk
        JOIN (SELECT * FROM f.features.family_month WHERE as_of <= $cut) fm USING (family_key)
        FULL JOIN ((SELECT * FROM _c_family WHERE comparable) ck
                   JOIN (SELECT * FROM c.features.family_month WHERE as_of <= $cut) cm USING (family_key))
          ON fk.members = ck.members AND fm.as_of = cm.as_of""", {"cut": cut})
    differing = {}
    for column in _columns(con, "family_month"):
        (count,) = con.execute(f'SELECT count(*) FROM _family_rows WHERE in_full AND in_cut '
                               f'AND f_row."{column}" IS DISTINCT FROM c_row."{column}"').fetchall()[0]
        if count:
            differing[column] = count
    compared, only_one = con.execute("SELECT count(*) FILTER (WHERE in_full AND in_cut), "
                                     "count(*) FILTER (WHERE NOT (in_full AND in_cut)) "
                                     "FROM _family_rows").fetchall()[0]
    return {"rows_compared": compared, "rows_in_one_build_only": only_one, "columns_differing": differing}
