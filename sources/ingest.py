"""Take drops into the build warehouse: verify, stage, quarantine, record, keep history.

For each system, drops are handled oldest first:

1. a drop whose files disagree with its manifest is rejected whole (every file recorded
   with the reason) and the warehouse keeps what it had for that date;
2. a drop identical to the one already staged for its date (same fingerprint) is a no-op;
   a drop with different content for a staged date is a correction and replaces it;
3. accepted drops are staged together, table by table, in one SQL pass per table;
4. staged rows go to ``staging.<system>__<table>`` and to zstd Parquet under
   ``HOME/staged``; issues to ``quarantine.issue``; one row per file to
   ``audit.drop_file`` (delivered = staged + quarantined for every accepted file, and
   delivered = the manifest's rows, beside it in ``manifest_rows``);
5. history tables are rebuilt from the staged snapshots (or versions, for the MASH).

A snapshot that would delete more than a configured share of a table's current records
is held, not staged (``quality/thresholds.yaml`` mass_deletion), until an operator
accepts that delivery (``earlyhelp accept-deletions``).

Crash safety without a transaction (see ``ingest``): staging a set of drops begins by
recording each as 'staging' and removing its load record, and ends with its audit rows
and a new load record, written last. A run killed in between leaves the dates marked
interrupted; the next run stages them again whole (or clears them, if the drop is no
longer in the landing folder), and rebuilds any history table a dead run left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from . import early_help, education, health, mash, reference, social_care
from quality.audit import ensure_audit
from quality.faults import fault_point

from .contracts import Contract, Table, load_contract
from .drops import SYSTEMS, Drop, check_rows, find_drops, ignored_in_landing, verify
from .sql_runner import run_sql
from .staging import SQL_TYPE, StagedTable, install_macros, parse_expr, stage_table

READERS = {m.SYSTEM: m.read_drop for m in (education, health, social_care, early_help, mash, reference)}
WAREHOUSE_SQL = Path(__file__).parent / "sql" / "warehouse.sql"
DROP_FILE_COLUMNS = ("run_id, system, extract_date, file_name, delivered_rows, staged_rows, quarantined_rows, "
                     "flagged_values, status, reason, fingerprint, recorded_at, manifest_rows")


@dataclass
class SystemSummary:
    system: str
    drops_found: int = 0
    staged: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # staged from Parquet of an earlier build
    unchanged: list[str] = field(default_factory=list)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    held: dict[str, list[str]] = field(default_factory=dict)  # would delete too much: awaiting acceptance
    ignored: list[str] = field(default_factory=list)  # names in the landing folder that are not drops
    rows_delivered: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    values_flagged: int = 0


def table_name(system: str, table: Table | str) -> str:
    name = table if isinstance(table, str) else table.name
    return f"{system}__{name.lower()}"


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Schemas, audit and quarantine tables, and the SQL macros, if not there yet."""
    # TIMESTAMPTZ arithmetic follows the session's zone: in UTC a difference is elapsed
    # time, whatever the clocks in London did (25 hours across October is not '1 day').
    con.execute("SET TimeZone = 'UTC'")
    install_macros(con)
    ensure_audit(con)  # quality/audit.sql: the audit tables the views below read
    run_sql(con, WAREHOUSE_SQL)


def ingest(con: duckdb.DuckDBPyConnection, landing: Path, staged_dir: Path, systems=SYSTEMS,
           run_id: str | None = None, partitions: dict[str, list[str]] | None = None,
           deletion_guard: dict | None = None) -> list[SystemSummary]:
    """Ingest every complete drop under ``landing`` (or only ``partitions[system]``, plus
    any date a dead run left half-staged). ``deletion_guard``: max_share_deleted and
    min_current_records (default: quality/thresholds.yaml mass_deletion)."""
    prepare(con)
    run_id = run_id or uuid.uuid4().hex
    if deletion_guard is None:
        from quality.audit import thresholds

        deletion_guard = thresholds()["mass_deletion"]
    summaries = []
    for system in systems:
        drops = find_drops(landing, (system,))
        if partitions is not None and system in partitions:
            wanted = set(partitions[system]) | _interrupted(con, system)
            drops = [d for d in drops if d.partition in wanted]
        # No explicit transaction: with one, re-staging a date intermittently corrupted
        # DuckDB 2.0's storage (about 1 run in 10; never in autocommit). Staging is
        # idempotent instead: a drop counts as loaded only once its audit rows are
        # written, last, so a run that dies midway is redone whole by the next.
        summary = ingest_system(con, system, drops, staged_dir, run_id, deletion_guard)
        summary.ignored = _record_ignored(con, run_id, landing, system)
        summaries.append(summary)
    return summaries


def _interrupted(con, system: str) -> set[str]:
    return {d for (d,) in con.execute("SELECT extract_date::VARCHAR FROM audit.drop_interrupted WHERE system = ?",
                                      [system]).fetchall()}


def _record_ignored(con, run_id: str, landing: Path, system: str) -> list[str]:
    """Audit what sits in the system's landing folder that is not a drop: never silent."""
    found = ignored_in_landing(landing, system)
    for name, reason in found:
        con.execute("INSERT INTO audit.landing_ignored VALUES (?, ?, ?, ?, ?)", [run_id, system, name, reason, _now()])
    return [f"{system}/{name}: {reason}" for name, reason in found]


def ingest_system(con: duckdb.DuckDBPyConnection, system: str, drops: list[Drop], staged_dir: Path,
                  run_id: str, deletion_guard: dict | None = None) -> SystemSummary:
    contract = load_contract(system)
    summary = SystemSummary(system, drops_found=len(drops))
    _clear_abandoned(con, contract, {d.partition for d in drops}, staged_dir, run_id)
    known = dict(con.execute("SELECT extract_date::VARCHAR, fingerprint FROM audit.drop_loaded WHERE system = ?",
                             [system]).fetchall())
    unfilled = {d for (d,) in con.execute("SELECT DISTINCT extract_date::VARCHAR FROM audit.drop_file_loaded "
                                          "WHERE system = ? AND manifest_rows IS NULL", [system]).fetchall()}
    accepted: list[Drop] = []
    raw_by_drop: dict[str, dict] = {}
    restorable = _restorable_drops(con, contract, [d for d in drops if known.get(d.partition) != d.fingerprint],
                                   staged_dir)
    # Drops are verified and read two at a time, ahead of the loop that records them in
    # order: reading is files, Arrow and (for FHIR) a cursor's temp tables, never the
    # warehouse's tables.
    reader = ThreadPoolExecutor(max_workers=2)
    cursors = {d.partition: con.cursor() for d in drops if not restorable.get(d.partition)}
    ahead = {d.partition: reader.submit(_verify_and_read, cursors[d.partition], contract, d, known)
             for d in drops if d.partition in cursors}
    try:
        for drop in drops:
            if restorable.get(drop.partition):
                _restore(con, contract, drop, staged_dir, run_id, summary)  # staged before: no re-parse
                continue
            raw = ahead[drop.partition].result()
            if raw is not None:
                raw_by_drop[drop.partition] = raw
                for file_name, rows in _rows_read(contract, raw).items():
                    check_rows(drop, file_name, rows)
            _record_read(con, run_id, drop, known, summary, raw_by_drop, accepted, unfilled)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        for cursor in cursors.values():
            cursor.close()
    if accepted and contract.mode == "snapshot" and deletion_guard:
        accepted = _hold_mass_deletions(con, contract, accepted, raw_by_drop, run_id, summary, deletion_guard)
    if accepted:
        _stage(con, contract, accepted, raw_by_drop, staged_dir, run_id, summary, known)
    loaded = _loaded_set(con, system)
    # nothing ever loaded and nothing built from it: no history to (re)build
    if summary.staged or loaded != (_history_built_from(con, system) or ""):
        fault_point("history")
        _rebuild_history(con, contract)
        con.execute("INSERT INTO audit.history_built VALUES (?, ?, ?)", [system, loaded, _now()])
    return summary


def _loaded_set(con, system: str) -> str:
    """One checksum of which delivery staging holds for every date of the system."""
    return con.execute("SELECT coalesce(md5(string_agg(extract_date::VARCHAR || ':' || fingerprint, ';' "
                       "ORDER BY extract_date)), '') FROM audit.drop_loaded WHERE system = ?", [system]).fetchall()[0][0]


def _history_built_from(con, system: str) -> str | None:
    rows = con.execute("SELECT loaded FROM audit.history_built WHERE system = ? ORDER BY built_at DESC LIMIT 1",
                       [system]).fetchall()
    return rows[0][0] if rows else None


def _clear_abandoned(con, contract: Contract, delivered: set[str], staged_dir: Path, run_id: str) -> None:
    """Dates a dead run left half-staged whose drop is not in this run: remove what it
    left (staged rows, issues, Parquet) so that staging holds nothing unaccounted for."""
    system = contract.system
    for date in sorted(_interrupted(con, system) - delivered):
        for table in contract.tables:
            _clear_rows(con, system, table, [date])
            shutil.rmtree(Path(staged_dir) / system / table.name.lower() / f"extract_date={date}", ignore_errors=True)
        shutil.rmtree(Path(staged_dir) / system / "_issues" / f"extract_date={date}", ignore_errors=True)
        con.execute("INSERT INTO audit.drop VALUES (?, ?, ?, NULL, NULL, 'interrupted', ?, ?)",
                    [run_id, system, date, "a run died while staging this drop and it is no longer in the landing "
                     "folder: what it left was removed; it is staged when delivered again", _now()])


def _hold_mass_deletions(con, contract: Contract, accepted: list[Drop], raw_by_drop: dict, run_id: str,
                         summary: SystemSummary, guard: dict) -> list[Drop]:
    """Hold (do not stage) each snapshot that would delete more than ``max_share_deleted``
    of the current records of a table holding at least ``min_current_records``: records
    of the drop before it (of those carrying the table's file) whose key is not in it.
    Keys are compared typed, as staging types them. A delivery an operator accepted
    (audit.deletion_acceptance, same fingerprint) is staged."""
    system = contract.system
    acceptances = {(d, f) for d, f in con.execute(
        "SELECT extract_date::VARCHAR, fingerprint FROM audit.deletion_acceptance WHERE system = ?", [system]).fetchall()}
    kept, previous_raw = [], {}  # table -> the raw rows of the last kept drop of this batch that carried it
    for drop in accepted:
        tables = raw_by_drop.get(drop.partition, {})
        reasons = []
        for table in contract.tables:
            raw = tables.get(table.name)
            if raw is None or not table.key or any(k not in raw.header for k in table.key):
                continue
            deleted, records = _deleted_share(con, contract, table, drop, raw, previous_raw.get(table.name))
            if records >= guard["min_current_records"] and deleted > guard["max_share_deleted"] * records:
                reasons.append(f"{system}/{drop.partition}/{table.file}: would delete {deleted:,} of the "
                               f"{records:,} current {table.name} records ({deleted / records:.0%}; the guard allows "
                               f"{guard['max_share_deleted']:.0%})")
        if reasons and (drop.partition, drop.fingerprint) not in acceptances:
            summary.held[drop.partition] = reasons
            raw_by_drop.pop(drop.partition, None)
            reason = ("; ".join(reasons) + f". Held, not staged. If the deletions are real, accept this delivery: "
                      f"earlyhelp accept-deletions --home HOME --system {system} --date {drop.partition}")
            for f in drop.files:
                _insert_drop_file(con, [run_id, system, drop.partition, f.name, f.rows, 0, 0, 0, "held", reason,
                                        drop.fingerprint, _now(), f.rows])
            _record_drop(con, run_id, drop, "held", reason)
            continue
        kept.append(drop)
        for table in contract.tables:
            if table.name in tables:
                previous_raw[table.name] = tables[table.name]
    return kept


def _key_select(contract: Contract, table: Table, source: str) -> str:
    columns = {c.name: c for c in table.columns}
    return ", ".join(f"{parse_expr(contract, columns[k], _q_ident(k))} AS {_q_ident(k)}" for k in table.key) \
        + f" FROM {source}"


def _previous_staged_date(con, system: str, table: Table, drop: Drop) -> str | None:
    """The latest date before ``drop`` whose staged drop carried the table's file."""
    return con.execute("SELECT max(extract_date)::VARCHAR FROM audit.drop_file_loaded WHERE system = ? "
                       "AND file_name = ? AND status = 'staged' AND extract_date < ?",
                       [system, table.file, drop.partition]).fetchall()[0][0]


def _deleted_share(con, contract: Contract, table: Table, drop: Drop, raw, previous_raw) -> tuple[int, int]:
    """(records of the drop before ``drop`` whose key the new rows lack, those records):
    the drop before is ``previous_raw`` (earlier in this batch) or the staged one."""
    keys = [_q_ident(k) for k in table.key]
    if previous_raw is not None:
        current = f"SELECT DISTINCT {_key_select(contract, table, '_previous_raw')}"
    else:
        date = _previous_staged_date(con, contract.system, table, drop)
        if date is None:
            return 0, 0
        current = (f"SELECT DISTINCT {', '.join(keys)} FROM staging.{table_name(contract.system, table)} "
                   f"WHERE extract_date = DATE {_literal(date)}")
    same = " AND ".join(f"i.{k} IS NOT DISTINCT FROM c.{k}" for k in keys)
    con.register("_new_raw", raw.rows)
    if previous_raw is not None:
        con.register("_previous_raw", previous_raw.rows)
    try:
        return con.execute(f"""
            WITH current AS ({current}), incoming AS (SELECT DISTINCT {_key_select(contract, table, '_new_raw')})
            SELECT (SELECT count(*) FROM current c ANTI JOIN incoming i ON {same}), (SELECT count(*) FROM current)
        """).fetchall()[0]
    finally:
        con.unregister("_new_raw")
        if previous_raw is not None:
            con.unregister("_previous_raw")


def _q_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _verify_and_read(cursor, contract: Contract, drop: Drop, known: dict[str, str]) -> dict | None:
    """Check a drop against its manifest and, if it is new and sound, read its tables."""
    verify(drop, contract.encoding, count_rows=False,
           counted_by_caller=frozenset(t.file for t in contract.tables))
    if drop.ok and known.get(drop.partition) != drop.fingerprint:
        return READERS[contract.system](cursor, drop)
    return None


def _record_read(con, run_id: str, drop: Drop, known: dict[str, str], summary: SystemSummary,
                 raw_by_drop: dict, accepted: list[Drop], unfilled: set[str]) -> None:
    """Record a verified drop as rejected or unchanged, or accept it for staging.
    ``unfilled``: staged drops whose audit rows predate manifest_rows."""
    if not drop.ok:
        raw_by_drop.pop(drop.partition, None)
        summary.rejected[drop.partition] = drop.problems
        _record_rejection(con, run_id, drop)
    elif known.get(drop.partition) == drop.fingerprint:
        summary.unchanged.append(drop.partition)
        if drop.partition in unfilled:
            _fill_manifest_rows(con, drop)
        _record_drop(con, run_id, drop, "unchanged", "identical re-delivery: nothing to do")
    else:
        accepted.append(drop)


def _rows_read(contract: Contract, tables: dict) -> dict[str, int]:
    """Data rows per file as read (records parsed plus lines that could not be read),
    from the file's first table: the same count audit.drop_file records as delivered."""
    out = {}
    for table in contract.tables:
        raw = tables.get(table.name)
        if raw is not None and table.file not in out:
            out[table.file] = raw.delivered
    return out


def _fill_manifest_rows(con, drop: Drop) -> None:
    """Give the loaded files of a drop staged before audit.drop_file had manifest_rows
    the rows its manifest states, so that the reconciliation check can compare them.
    The drop is the same delivery (same fingerprint); only the empty column is filled,
    no count that was recorded changes."""
    for f in drop.files:
        con.execute("UPDATE audit.drop_file SET manifest_rows = ? WHERE manifest_rows IS NULL AND system = ? "
                    "AND extract_date = ? AND file_name = ? AND fingerprint = ? AND run_id IN "
                    "(SELECT run_id FROM audit.drop_loaded WHERE system = ? AND extract_date = ?)",
                    [f.rows, drop.system, drop.partition, f.name, drop.fingerprint, drop.system, drop.partition])


def _stage(con, contract: Contract, drops: list[Drop], raw_by_drop: dict, staged_dir: Path, run_id: str,
           summary: SystemSummary, known: dict[str, str]) -> None:
    system = contract.system
    dates = [d.partition for d in drops]
    # From here until the drops' audit rows are written, their dates are not loaded
    # (audit.drop_loaded), and no load record vouches for their Parquet: a run killed
    # anywhere in between leaves them to be staged again whole by the next.
    for drop in drops:
        _record_drop(con, run_id, drop, "staging", "corrected re-delivery" if drop.partition in known else "")
        _load_record(staged_dir, drop).unlink(missing_ok=True)
    fault_point("staging.begin")
    files: dict[tuple[str, str], dict] = {}  # (drop, file) -> counts
    # A table's Parquet is written from its staged rows on a second connection while the
    # next table is staged; every write has finished before any audit row is.
    writer = ThreadPoolExecutor(max_workers=1)
    writes: list[tuple[Future, duckdb.DuckDBPyConnection]] = []
    try:
        for table in contract.tables:
            present = {drop: tables[table.name] for drop, tables in raw_by_drop.items() if table.name in tables}
            _clear_rows(con, system, table, dates)
            if not present:
                continue
            staged = stage_table(con, contract, table, present, into=f"staging.{table_name(system, table)}")
            _insert_issues(con, system, table, staged)
            fault_point("staging.table")
            cursor = con.cursor()
            writes.append((writer.submit(_write_parquet, cursor, staged_dir, system, table, list(staged.counts)), cursor))
            primary = contract.tables[[t.file for t in contract.tables].index(table.file)] is table
            for drop, counts in staged.counts.items():
                if primary:  # a file's rows reconcile through its first (one row per line) table
                    files[(drop, table.file)] = dict(counts)
                else:  # values flagged in a file's other tables (e.g. FHIR identifiers) count for the file
                    files[(drop, table.file)]["flagged"] += counts["flagged"]
        for write, _ in writes:
            write.result()  # a failed write fails the run before the drops count as loaded
        fault_point("staging.parquet")
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        for _, cursor in writes:
            cursor.close()
    for drop in drops:
        for f in drop.files:
            counts = files.get((drop.partition, f.name))
            if counts is None:  # a file no contract table reads: keep it visible, never drop it silently
                counts = {"delivered": f.rows, "staged": 0, "quarantined": f.rows, "flagged": 0}
                _file_issue(con, run_id, drop, f.name, "unknown_file", f"{f.name} is not in the {system} contract")
                status, reason = "quarantined", "file not in the contract"
            elif counts.get("file_rejected"):  # quarantined whole: it neither confirms nor deletes records
                status, reason = "quarantined", "file lacks contract column(s); every row quarantined"
            else:
                status = "staged"
                reason = ("corrected re-delivery replaces the earlier one" if drop.partition in known else "")
            summary.rows_delivered += counts["delivered"]
            summary.rows_staged += counts["staged"]
            summary.rows_quarantined += counts["quarantined"]
            summary.values_flagged += counts["flagged"]
            _insert_drop_file(con, [run_id, system, drop.partition, f.name, counts["delivered"], counts["staged"],
                                    counts["quarantined"], counts["flagged"], status, reason, drop.fingerprint, _now(),
                                    f.rows])
        fault_point("staging.audit")
        _record_drop(con, run_id, drop, "staged", "corrected re-delivery" if drop.partition in known else "")
        summary.staged.append(drop.partition)
    _save_loads(con, contract, drops, staged_dir)


def _load_record(staged_dir: Path, drop: Drop) -> Path:
    return Path(staged_dir) / drop.system / "_loads" / f"{drop.partition}.json"


def _save_loads(con, contract: Contract, drops: list[Drop], staged_dir: Path) -> None:
    """For each staged drop, its fingerprint, file counts and rows per table beside the
    Parquet, and its issues as Parquet: what a rebuild needs to restore it without
    re-parsing, and to check the Parquet against before it does. The record is written
    last, and whole (a temporary file renamed into place)."""
    system = contract.system
    for drop in drops:
        files = con.execute("SELECT file_name, delivered_rows, staged_rows, quarantined_rows, flagged_values, status, "
                            "reason, manifest_rows FROM audit.drop_file "
                            "WHERE system = ? AND extract_date = ? AND fingerprint = ? "
                            "QUALIFY row_number() OVER (PARTITION BY file_name ORDER BY recorded_at DESC) = 1",
                            [system, drop.partition, drop.fingerprint]).fetchall()
        folder = Path(staged_dir) / system / "_issues" / f"extract_date={drop.partition}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        con.execute(f"COPY (SELECT * EXCLUDE (extract_date) FROM quarantine.issue WHERE system = ? AND extract_date = ?) "
                    f"TO '{folder / 'data.parquet'}' (FORMAT parquet, COMPRESSION zstd)", [system, drop.partition])
        tables = {table.name: con.execute(f"SELECT count(*) FROM staging.{table_name(system, table)} "
                                          "WHERE extract_date = ?", [drop.partition]).fetchall()[0][0]
                  for table in contract.tables}
        issues = con.execute("SELECT count(*) FROM quarantine.issue WHERE system = ? AND extract_date = ?",
                             [system, drop.partition]).fetchall()[0][0]
        record = _load_record(staged_dir, drop)
        record.parent.mkdir(parents=True, exist_ok=True)
        temporary = record.with_name(f".{record.name}.partial")
        temporary.write_text(json.dumps({"fingerprint": drop.fingerprint, "mode": drop.mode, "files": [
            dict(zip(("file_name", "delivered", "staged", "quarantined", "flagged", "status", "reason",
                      "manifest_rows"), f))
            for f in files], "tables": tables, "issues": issues}, indent=1), encoding="utf-8")
        os.replace(temporary, record)


def _restorable_drops(con, contract: Contract, drops: list[Drop], staged_dir: Path) -> dict[str, bool]:
    """Which drops can be restored from an earlier build's Parquet instead of re-parsed:
    the same delivery, whose load record reconciles with its manifest, and whose Parquet
    holds exactly the rows (per table) and issues the record says. A record that does
    not reconcile (written by a build that miscounted unreadable lines) is read again
    from the raw files while they are there; Parquet that disagrees with its record
    (cut short by a kill, edited, lost) is never restored."""
    records = {}
    for drop in drops:
        path = _load_record(staged_dir, drop)
        if path.exists():
            record = json.loads(path.read_text(encoding="utf-8"))
            if record["fingerprint"] == drop.fingerprint:
                records[drop.partition] = (drop, record)
    if not records:
        return {}
    root = Path(staged_dir) / contract.system
    found = {name: _parquet_rows(con, root / name.lower()) for name in
             [t.name for t in contract.tables] + ["_issues"]}
    out = {}
    for partition, (drop, record) in records.items():
        delivered = {f["file_name"]: f["delivered"] for f in record["files"]}
        reconciles = all(delivered.get(f.name) == f.rows for f in drop.files)
        if not (reconciles or not all((drop.folder / f.name).exists() for f in drop.files)):
            continue
        expected = record.get("tables")
        out[partition] = expected is not None and all(
            found[name].get(partition, 0) == rows for name, rows in expected.items()) and \
            found["_issues"].get(partition, 0) == record.get("issues")
    return out


def _parquet_rows(con, folder: Path) -> dict[str, int]:
    """Rows per extract_date=… partition of a staged Parquet folder, from the files' footers."""
    if not folder.is_dir() or not any(folder.glob("extract_date=*/*.parquet")):
        return {}
    return dict(con.execute(
        f"SELECT regexp_extract(file_name, 'extract_date=([0-9-]+)', 1), sum(num_rows)::BIGINT "
        f"FROM parquet_file_metadata({_literal(str(folder) + '/extract_date=*/*.parquet')}) GROUP BY 1").fetchall())


def _restore(con, contract: Contract, drop: Drop, staged_dir: Path, run_id: str, summary: SystemSummary) -> None:
    """Load a drop staged by an earlier build from its Parquet: same rows, issues and
    counts, without reading the raw files again."""
    system, root = contract.system, Path(staged_dir) / contract.system
    record = json.loads(_load_record(staged_dir, drop).read_text(encoding="utf-8"))
    _record_drop(con, run_id, drop, "staging", "restoring from staged Parquet")  # not loaded until done
    for table in contract.tables:
        name = table_name(system, table)
        con.execute(f"CREATE TABLE IF NOT EXISTS staging.{name} ({_staging_columns(table)})")
        con.execute(f"DELETE FROM staging.{name} WHERE extract_date = ?", [drop.partition])
        folder = root / table.name.lower() / f"extract_date={drop.partition}"
        if folder.exists():
            con.execute(f"INSERT INTO staging.{name} BY NAME SELECT *, CAST(? AS DATE) AS extract_date "
                        f"FROM read_parquet('{folder}/*.parquet', hive_partitioning = false)", [drop.partition])
    con.execute("DELETE FROM quarantine.issue WHERE system = ? AND extract_date = ?", [system, drop.partition])
    issues = root / "_issues" / f"extract_date={drop.partition}"
    con.execute(f"INSERT INTO quarantine.issue BY NAME SELECT *, CAST(? AS DATE) AS extract_date "
                f"FROM read_parquet('{issues}/*.parquet', hive_partitioning = false)", [drop.partition])
    manifest_rows = {f.name: f.rows for f in drop.files}  # what this delivery's manifest states now
    for f in record["files"]:
        _insert_drop_file(con, [
            run_id, system, drop.partition, f["file_name"], f["delivered"], f["staged"], f["quarantined"],
            f["flagged"], f["status"], (f["reason"] + "; " if f["reason"] else "") + "restored from staged Parquet",
            drop.fingerprint, _now(), manifest_rows.get(f["file_name"], f.get("manifest_rows"))])
        summary.rows_delivered += f["delivered"]
        summary.rows_staged += f["staged"]
        summary.rows_quarantined += f["quarantined"]
        summary.values_flagged += f["flagged"]
    _record_drop(con, run_id, drop, "staged", "restored from staged Parquet")
    summary.staged.append(drop.partition)
    summary.restored.append(drop.partition)


def _clear_rows(con, system: str, table: Table, dates: list[str]) -> None:
    """Remove the staged rows and issues of these drops for one table."""
    name = table_name(system, table)
    con.execute(f"CREATE TABLE IF NOT EXISTS staging.{name} ({_staging_columns(table)})")
    con.execute(f"DELETE FROM staging.{name} WHERE extract_date IN (SELECT unnest(?::DATE[]))", [dates])
    con.execute("DELETE FROM quarantine.issue WHERE system = ? AND table_name = ? AND extract_date IN "
                "(SELECT unnest(?::DATE[]))", [system, table.name, dates])


def _insert_issues(con, system: str, table: Table, staged: StagedTable) -> None:
    con.register("_issues", staged.issues)
    try:
        con.execute(f"""INSERT INTO quarantine.issue BY NAME
            SELECT {_literal(system)} AS system, CAST(_drop AS DATE) AS extract_date, {_literal(table.file)} AS file_name,
                   {_literal(table.name)} AS table_name, line_no, column_name, rule, severity, raw_value, message
            FROM _issues""")
    finally:
        con.unregister("_issues")


def _staging_columns(table: Table) -> str:
    cols = []
    for c in table.columns:
        cols.append(f'"{c.name}" {SQL_TYPE[c.type]}')
        if c.identifier or (c.codes and not c.required):
            cols.append(f'"{c.name}_flagged" VARCHAR')
    return ", ".join(cols + ["extract_date DATE NOT NULL", "_line BIGINT"])


def _write_parquet(con, staged_dir: Path, system: str, table: Table, drops: list[str]) -> None:
    """Typed zstd Parquet per system, table and drop (hive-style extract_date=…
    folders), so that a rebuild need not re-parse raw files."""
    root = Path(staged_dir) / system / table.name.lower()
    for drop in drops:  # a corrected re-delivery replaces its folder whole
        shutil.rmtree(root / f"extract_date={drop}", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    # JSON values are written as text, the type they had in Arrow (a restore casts them back)
    as_text = ", ".join(f'CAST("{c.name}" AS VARCHAR) AS "{c.name}"' for c in table.columns if c.type == "json")
    columns = f"* REPLACE ({as_text})" if as_text else "*"
    con.execute(f"COPY (SELECT {columns} FROM staging.{table_name(system, table)} WHERE extract_date IN (SELECT unnest(?::DATE[]))) "
                f"TO '{root}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARTITION_BY (extract_date), "
                "OVERWRITE_OR_IGNORE true)", [drops])


def _rebuild_history(con, contract: Contract) -> None:
    """History from every staged drop of the system: valid_from / valid_to per key."""
    system = contract.system
    if contract.mode == "delta":
        for table in contract.tables:
            con.execute(mash.history_sql(table.name.lower()))
        return
    for table in contract.tables:
        try:
            _snapshot_history(con, system, table)
        finally:
            for temp in ("_drops", "_runs", "_split"):
                con.execute(f"DROP TABLE IF EXISTS {temp}")


def _snapshot_history(con, system: str, table: Table) -> None:
    """A version of a record is a run of consecutive drops (of those that carried its
    file) holding the same values; it is valid from its first drop until the next drop,
    which holds other values for the key (a new version) or none (the record was deleted).

    Each distinct row is grouped once with the drops it appears in; a row whose drops are
    consecutive (nearly all) is one version, and only the rows that recur after a gap are
    split into runs by a window."""
    name = table_name(system, table)
    key = ", ".join(f'"{k}"' for k in table.key)
    values = [f'"{c.name}"' for c in table.columns]
    listed = ", ".join(values)
    # Drops that carried this table's file: a monthly education drop has no pupils.csv,
    # so it neither confirms nor deletes a pupil.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _drops AS
        SELECT extract_date, row_number() OVER (ORDER BY extract_date) AS drop_no
        FROM (SELECT DISTINCT extract_date FROM audit.drop_file_loaded
              WHERE system = {_literal(system)} AND file_name = {_literal(table.file)} AND status = 'staged')""")
    rows = f"SELECT {listed}, drop_no FROM staging.{name} JOIN _drops USING (extract_date)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _runs AS
        SELECT {listed}, min(drop_no) AS first_no, max(drop_no) AS last_no, count(*) AS drops
        FROM ({rows}) GROUP BY ALL""")
    runs = "SELECT * EXCLUDE (drops) FROM _runs"
    if con.sql("SELECT count(*) FROM _runs WHERE drops < last_no - first_no + 1").fetchall()[0][0]:
        same = " AND ".join(f"r.{v} IS NOT DISTINCT FROM g.{v}" for v in values)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _split AS
            SELECT {listed}, run, min(drop_no) AS first_no, max(drop_no) AS last_no
            FROM (SELECT *, drop_no - row_number() OVER (PARTITION BY {listed} ORDER BY drop_no) AS run
                  FROM ({rows}) r SEMI JOIN (SELECT {listed} FROM _runs WHERE drops < last_no - first_no + 1) g ON {same})
            GROUP BY ALL""")
        runs = f"SELECT * EXCLUDE (drops) FROM _runs WHERE drops = last_no - first_no + 1 UNION ALL SELECT {listed}, first_no, last_no FROM _split"
    # A version closed by the next drop was deleted unless a version of its key starts there.
    same_key = " AND ".join(f'successor."{k}" IS NOT DISTINCT FROM spans."{k}"' for k in table.key)
    con.execute(f"""
        CREATE OR REPLACE TABLE history.{name} AS
        SELECT {", ".join(f"spans.{v}" for v in [f'"{k}"' for k in table.key])}, {"".join(f"spans.{v}, " for v in values if v.strip('"') not in table.key)}first.extract_date AS valid_from,
               next_drop.extract_date AS valid_to,
               next_drop.extract_date IS NULL AS is_current,
               next_drop.extract_date IS NOT NULL AND successor.first_no IS NULL AS is_deleted
        FROM ({runs}) spans
        JOIN _drops AS first ON first.drop_no = spans.first_no
        LEFT JOIN _drops AS next_drop ON next_drop.drop_no = spans.last_no + 1
        LEFT JOIN (SELECT DISTINCT {key}, first_no FROM ({runs}) WHERE first_no > 1) AS successor
            ON {same_key} AND successor.first_no = spans.last_no + 1""")


def _record_rejection(con, run_id: str, drop: Drop) -> None:
    reason = "; ".join(drop.problems)
    for f in drop.files:
        _insert_drop_file(con, [run_id, drop.system, drop.partition, f.name, f.rows, 0, 0, 0, "rejected", reason,
                                drop.fingerprint, _now(), f.rows])
    _record_drop(con, run_id, drop, "rejected", reason)


def _insert_drop_file(con, values: list) -> None:
    """One audit.drop_file row, by column name: an upgraded warehouse has manifest_rows
    last, where ALTER TABLE put it."""
    con.execute(f"INSERT INTO audit.drop_file ({DROP_FILE_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values)


def _record_drop(con, run_id: str, drop: Drop, status: str, reason: str) -> None:
    con.execute("INSERT INTO audit.drop VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, drop.system, drop.partition, drop.mode, drop.fingerprint, status, reason, _now()])


def _file_issue(con, run_id: str, drop: Drop, file_name: str, rule: str, message: str) -> None:
    con.execute("INSERT INTO quarantine.issue (system, extract_date, file_name, table_name, line_no, column_name, rule, "
                "severity, raw_value, message) VALUES (?, ?, ?, NULL, NULL, NULL, ?, 'hard', NULL, ?)",
                [drop.system, drop.partition, file_name, rule, message])


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _now() -> datetime:
    return datetime.now(timezone.utc)
