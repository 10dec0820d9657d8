"""Compare two real builds of one city, one on every drop and one on the drops up to a cut:
what the features say at each month-end up to the cut must be the same in both.

Person and family keys are issued by each build, so rows are matched through the source
records behind them. A person is *comparable* when the records the cut build put in it are
exactly the records the full build put in one person, less those delivered after the cut.
Where later records join two earlier persons, or a later record moves one, identity
legitimately differs: those persons are counted and named, not compared.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

# Columns that name the row rather than describe the child
KEYS = {"person_key", "family_key", "as_of"}


def _persons(con, alias: str, cut: date) -> None:
    """_{alias}_person: each person's records delivered by the cut, as a sorted list."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _{alias}_person AS
        SELECT r.person_key, list(r.record_key ORDER BY r.record_key) AS records
        FROM {alias}.identity.person_record r
        JOIN {alias}.identity.source_person s USING (system, table_name, record_id)
        WHERE s.first_delivered <= ?
        GROUP BY ALL""", [cut])


def compare(full: Path, cut_build: Path, cut: date) -> dict:
    """Differences between the two builds' features.child_month at every month-end up to
    ``cut``: per column, the compared rows whose values differ (with examples)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{full}' AS f (READ_ONLY)")
    con.execute(f"ATTACH '{cut_build}' AS c (READ_ONLY)")
    _persons(con, "f", cut)
    _persons(con, "c", cut)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _same_person AS
        SELECT f.person_key AS f_key, c.person_key AS c_key, c.records[1] AS person
        FROM _f_person f JOIN _c_person c USING (records)""")
    persons, same = con.execute(
        "SELECT (SELECT count(*) FROM _c_person), (SELECT count(*) FROM _same_person)").fetchall()[0]
    columns = [name for (name,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = 'c' AND schema_name = 'features' "
        "AND table_name = 'child_month' ORDER BY column_index").fetchall() if name not in KEYS]
    month_ends = [d for (d,) in con.execute(
        "SELECT DISTINCT as_of FROM c.features.child_month WHERE as_of <= ? ORDER BY 1", [cut]).fetchall()]
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _rows AS
        SELECT coalesce(fr.as_of, cr.as_of) AS as_of, coalesce(fs.person, cs.person) AS person,
               fr.person_key IS NOT NULL AS in_full, cr.person_key IS NOT NULL AS in_cut,
               (fs.person IS NULL OR cs.person IS NULL) AS identity_differs, fr AS f_row, cr AS c_row
        FROM (SELECT * FROM f.features.child_month WHERE as_of <= $cut) fr
        LEFT JOIN _same_person fs ON fs.f_key = fr.person_key
        FULL JOIN ((SELECT * FROM c.features.child_month WHERE as_of <= $cut) cr
                   LEFT JOIN _same_person cs ON cs.c_key = cr.person_key)
          ON fs.person = cs.person AND fr.as_of = cr.as_of""", {"cut": cut})
    compared = "NOT identity_differs AND in_full AND in_cut"
    differing = {}
    for column in columns:
        (count,) = con.execute(f'SELECT count(*) FROM _rows WHERE {compared} '
                               f'AND f_row."{column}" IS DISTINCT FROM c_row."{column}"').fetchall()[0]
        if count:
            example = con.execute(f'SELECT as_of, person, f_row."{column}", c_row."{column}" FROM _rows '
                                  f'WHERE {compared} AND f_row."{column}" IS DISTINCT FROM c_row."{column}" '
                                  'ORDER BY 1, 2 LIMIT 3').fetchall()
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
    rows, only_full, only_cut, identity_rows = con.execute(f"""
        SELECT count(*) FILTER (WHERE {compared}),
               count(*) FILTER (WHERE NOT identity_differs AND in_full AND NOT in_cut),
               count(*) FILTER (WHERE NOT identity_differs AND in_cut AND NOT in_full),
               count(*) FILTER (WHERE identity_differs) FROM _rows""").fetchall()[0]
    return {"cut": cut, "month_ends": len(month_ends), "persons_in_cut_build": persons,
            "persons_identity_differs": persons - same, "rows_compared": rows,
            "rows_only_in_full": only_full, "rows_only_in_cut": only_cut,
            "rows_identity_differs": identity_rows, "rows_without_a_label": unlabelled,
            "columns_differing": differing}
