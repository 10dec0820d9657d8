"""Compare the tables of two builds of one city, as the fault-injection tests need:
after a crash and a finishing run, every table must hold what an uninterrupted build's
holds. Person and family keys are issued deterministically from the records, so tables
are compared row for row (as multisets), without matching keys."""

from __future__ import annotations

from pathlib import Path

import duckdb

SCHEMAS = ("staging", "history", "quarantine", "identity", "model", "marts", "features")
# Columns that record when or by which run something happened, not what the data says
RUN_COLUMNS = {"run_id", "recorded_at", "built_at", "run_at", "saved_at", "updated_at", "fitted_at", "event_id",
               "first_seen_run", "ended_run", "first_run", "last_run", "queued_run", "pair_id"}
# Scores of the person model: the EM fit sums in parallel, so two fits of the same
# records agree to about 1e-12, not bit for bit. Which records make a person is compared.
SCORE_COLUMNS = {"match_probability", "match_weight", "explanation", "model_json", "model_sha256", "prior"}
IGNORED = RUN_COLUMNS | SCORE_COLUMNS


def differing_tables(first: Path, second: Path, schemas=SCHEMAS) -> dict[str, tuple[int, int]]:
    """{schema.table: (rows only in first, rows only in second)} for every table that
    differs, or is in one build only (then (-1, -1))."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{first}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{second}' AS b (READ_ONLY)")
        listed = "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name IN ?"
        in_a = {t for (t,) in con.execute(listed, ["a", list(schemas)]).fetchall()}
        in_b = {t for (t,) in con.execute(listed, ["b", list(schemas)]).fetchall()}
        out = {t: (-1, -1) for t in in_a ^ in_b}
        for table in sorted(in_a & in_b):
            schema, name = table.split(".")
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' AND schema_name = ? "
                "AND table_name = ? ORDER BY column_index", [schema, name]).fetchall() if c not in IGNORED]
            listed_columns = ", ".join(f'"{c}"' for c in columns)
            a_only, b_only = con.execute(f"""
                SELECT (SELECT count(*) FROM (SELECT {listed_columns} FROM a.{table} EXCEPT ALL
                                              SELECT {listed_columns} FROM b.{table})),
                       (SELECT count(*) FROM (SELECT {listed_columns} FROM b.{table} EXCEPT ALL
                                              SELECT {listed_columns} FROM a.{table}))""").fetchall()[0]
            if a_only or b_only:
                out[table] = (a_only, b_only)
        return out
    finally:
        con.close()
