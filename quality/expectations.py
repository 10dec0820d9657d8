"""Validate the newest loaded drop of a system with its contract's GX suites."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from sources.contracts import load_contract
from sources.drops import find_drops
from sources.ingest import READERS, prepare

from .contract_suites import validate


def validate_latest_drop(con: duckdb.DuckDBPyConnection, landing, system: str, run_id: str) -> list[dict]:
    """Run every table's suite on the text of the system's newest staged drop, record
    the results in ``audit.gx_validation`` and return them."""
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
        for row in validate(system, table.name, frame):
            row.update(system=system, extract_date=drop.partition, table_name=table.name)
            results.append(row)
            con.execute("INSERT INTO audit.gx_validation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                run_id, system, drop.partition, table.name, row["suite"], row["expectation"], row["column_name"],
                row["success"], row["element_count"], row["unexpected_count"], row["partial_unexpected"], now])
    return results
