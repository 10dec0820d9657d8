"""Run the GX suites on pandas batches and record every result in ``audit.gx_validation``.

- ``validate_latest_drop``: the contract suites (``quality/suites/<system>.<table>.json``)
  on the delivered text of a system's newest staged drop;
- ``validate_warehouse_tables``: the hand-written suites of key warehouse tables
  (``quality/suites/warehouse/<schema>.<table>.json``) on the tables themselves, sampled
  deterministically when large; tables not built yet are skipped.

Given ``reports_dir`` (HOME/reports), each batch's results are also kept in the GX stores
there and the Data Docs site at ``reports_dir/gx/index.html`` is rebuilt once at the end
(see quality/data_docs.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from sources.contracts import load_contract
from sources.drops import find_drops
from sources.ingest import READERS, prepare

from .contract_suites import SUITES_DIR, suite_from_document, validate

WAREHOUSE_SUITES_DIR = SUITES_DIR / "warehouse"
SAMPLE_ROWS = 200_000  # larger tables are validated on this many rows, chosen by key hash


def _record(con: duckdb.DuckDBPyConnection, run_id: str, system: str, extract_date, table_name: str,
            rows: list[dict], now: datetime) -> None:
    for row in rows:
        row.update(system=system, extract_date=extract_date, table_name=table_name)
        con.execute("INSERT INTO audit.gx_validation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, system, extract_date, table_name, row["suite"], row["expectation"], row["column_name"],
            row["success"], row["element_count"], row["unexpected_count"], row["partial_unexpected"], now])


def _build_site(reports_dir: Path | None) -> None:
    if reports_dir is not None:
        from .data_docs import build_site

        build_site(reports_dir)


def validate_latest_drop(con: duckdb.DuckDBPyConnection, landing, system: str, run_id: str,
                         reports_dir: Path | None = None) -> list[dict]:
    """Run every table's suite on the text of the system's newest staged drop, record
    the results in ``audit.gx_validation`` and return them. With ``reports_dir`` the
    results also go to the Data Docs site there."""
    prepare(con)
    loaded = con.execute("SELECT max(extract_date)::VARCHAR FROM audit.drop_loaded WHERE system = ?", [system]).fetchall()
    newest = loaded[0][0]
    drop = next((d for d in find_drops(landing, (system,)) if d.partition == newest), None)
    if drop is None:
        return []
    tables = READERS[system](con, drop)
    results = []
    now = datetime.now(timezone.utc)
    for table in load_contract(system).tables:
        raw = tables.get(table.name)
        if raw is None:
            continue
        frame = raw.rows.drop_columns(["_line"]).to_pandas()
        rows = validate(system, table.name, frame, reports_dir=reports_dir,
                        run_name=f"{run_id}_{drop.partition}", build_docs=False)
        _record(con, run_id, system, drop.partition, table.name, rows, now)
        results += rows
    _build_site(reports_dir)
    return results


def warehouse_suites(folder: Path = WAREHOUSE_SUITES_DIR) -> list[dict]:
    """The stored warehouse suite documents, one per table, ordered by name."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def warehouse_batch(con: duckdb.DuckDBPyConnection, document: dict, sample_rows: int = SAMPLE_ROWS):
    """The table of a warehouse suite as a pandas frame of the columns its expectations
    name (all columns if they name none), or None when the table does not exist. A
    table over ``sample_rows`` rows gives the rows first by hash of its key (the suite's
    ``meta.key``): the same rows each time, and rows sharing a key stay together, so a
    duplicate key in the sample shows as one."""
    schema, table = document["name"].split(".", 1)
    existing = _columns(con, schema, table)
    if not existing:
        return None
    named = []
    for spec in document["expectations"]:
        kwargs = spec["kwargs"]
        for column in ([kwargs["column"]] if "column" in kwargs else []) + list(kwargs.get("column_list", [])):
            if column not in named:
                named.append(column)
    # A named column the table lacks stays out of the frame: its expectation then fails.
    columns = [c for c in named if c in existing] or existing
    relation = f"{_quote(schema)}.{_quote(table)}"
    select = f"SELECT {', '.join(map(_quote, columns))} FROM {relation}"
    (rows,) = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
    if rows > sample_rows:
        key = [c for c in document["meta"].get("key", []) if c in existing] or columns
        order = ", ".join(map(_quote, key))
        select += f" ORDER BY hash({order}), {order} LIMIT {int(sample_rows)}"
    return con.execute(select).df()


def validate_warehouse_tables(con: duckdb.DuckDBPyConnection, run_id: str, reports_dir: Path | None = None,
                              sample_rows: int = SAMPLE_ROWS, schemas: tuple[str, ...] | None = None) -> list[dict]:
    """Run each warehouse suite (of ``schemas``, or all) on its table (skipping tables not
    built yet), record the results in ``audit.gx_validation`` (system = schema, no extract
    date) and return them. With ``reports_dir`` the results also go to the Data Docs site."""
    prepare(con)
    results = []
    now = datetime.now(timezone.utc)
    for document in warehouse_suites():
        if schemas is not None and document["name"].split(".", 1)[0] not in schemas:
            continue
        frame = warehouse_batch(con, document, sample_rows)
        if frame is None:
            continue
        schema, table = document["name"].split(".", 1)
        rows = validate(schema, table, frame, reports_dir=reports_dir, run_name=run_id, build_docs=False,
                        suite=suite_from_document(document))
        _record(con, run_id, schema, None, table, rows, now)
        results += rows
    _build_site(reports_dir)
    return results
