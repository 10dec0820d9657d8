"""Stage one delivered table: parse, type and check it against its contract.

Parsing is Arrow's (every value read as text, with the physical line number kept);
typing and the row rules are SQL generated from the contract and run in DuckDB. Each
row ends in exactly one place:

- staged, typed, when it breaks no hard rule; a value that breaks a soft rule (an NHS
  number failing modulus 11, a UPN failing its check letter, a placeholder postcode,
  an unknown code in an optional column) is moved to ``<column>_flagged`` and counted;
- quarantined, with system, drop, file, line, column, rule and raw value, when it
  breaks a hard rule (unparseable value, missing required value, unknown code in a
  required column) or cannot be read at all.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .contracts import Column, Contract, Table

SQL_DIR = Path(__file__).parent / "sql"
ISSUE_SCHEMA = pa.schema([
    ("line_no", pa.int64()), ("column_name", pa.string()), ("rule", pa.string()),
    ("severity", pa.string()), ("raw_value", pa.string()), ("message", pa.string()),
])
# The longest record read, in bytes, its line end not counted: a line (CSV or NDJSON), or
# the lines of one quoted CSV value. A longer one is one quarantined row
# (``record_too_long``) and the rest of the file is read. Arrow cannot parse a record
# longer than its block ("straddling object"), and a 50 MB value is no child's record.
# Read when a file is read, so a test can lower it.
MAX_RECORD_BYTES = 1 << 20
# Of a line that cannot be read, this many characters are kept as the issue's raw_value.
SHOWN_CHARS = 500
SQL_TYPE = {"text": "VARCHAR", "integer": "BIGINT", "decimal": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP",
            "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN", "flag": "BOOLEAN", "json": "JSON"}


@dataclass
class RawTable:
    """A file read as text: one string column per header field plus ``_line``."""

    rows: pa.Table
    issues: pa.Table  # file-level and unreadable-line issues (ISSUE_SCHEMA)
    header: list[str]
    header_lines: int = 1  # lines before the first data line: a CSV header; none in NDJSON

    @property
    def delivered(self) -> int:
        """Data rows as delivered: the records read plus the data lines that could not be
        read (each one row, quarantined). The manifest's ``rows`` is checked against this
        and ``audit.drop_file.delivered_rows`` records it, so the two cannot disagree."""
        lines = self.issues["line_no"].to_pylist()
        return self.rows.num_rows + len({n for n in lines if n is not None and n > self.header_lines})


@dataclass
class StagedTable:
    """One table staged for one or more drops: its rows went into the staging table;
    every issue carries ``_drop``."""

    issues: pa.Table  # every issue, hard and soft (ISSUE_SCHEMA + _drop)
    counts: dict[str, dict[str, int]]  # drop -> delivered, staged, quarantined, flagged, file_rejected


@cache
def macros_sql() -> str:
    return (SQL_DIR / "macros.sql").read_text(encoding="utf-8")


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET enable_progress_bar = false")  # pipelines log; they do not draw on terminals
    con.execute(macros_sql())


# ------------------------------------------------------------------ reading
def read_csv_text(path: Path, encoding: str) -> RawTable:
    """Read a CSV as text. Undecodable and malformed lines become issues, not errors."""
    return read_csv_bytes(Path(path).read_bytes(), encoding)


def read_csv_bytes(data: bytes, encoding: str) -> RawTable:
    """A CSV file's bytes as text rows, each with the physical line it started on.

    Every data line ends up in exactly one place: in a record of ``rows``, or in
    ``issues`` as a line that could not be read (longer than ``MAX_RECORD_BYTES``, not
    decodable, wrong number of fields, a quote never closed). So ``RawTable.delivered``
    counts the rows the system sent.

    Arrow parses the usual file (one record per line, quotes balanced, lines ended by
    \\n or \\r\\n). Any other file (a quoted value or a blank line spanning lines, an
    odd quote, a lone \\r) is read record by record, which finds the line a stray quote
    opened on and carries on reading from the next one instead of merging the lines."""
    data, bad = _as_utf8(data, encoding)
    data, too_long = _cut_long_lines(data, [b["line_no"] for b in bad if b["line_no"] > 1])
    bad = sorted(bad + too_long, key=lambda i: i["line_no"])
    removed = [b["line_no"] for b in bad if b["line_no"] > 1]  # the header line is kept, whatever it holds
    if not data.strip():
        return RawTable(pa.table({"_line": pa.array([], pa.int64())}), _issues(bad), [])
    header_line = data.split(b"\n", 1)[0]
    header = next(csv.reader([header_line.decode("utf-8").rstrip("\r")]), [])
    # Every line left fits one block; a quoted value over many lines may not, and sends the
    # file to the record-by-record reading, as any value over many lines does.
    block_size = max(pacsv.ReadOptions().block_size, MAX_RECORD_BYTES + 2, len(header_line) + 1)
    try:
        table, unreadable = _parse(data, header, use_threads=True, block_size=block_size)
        if any(u["line_no"] is None for u in unreadable):  # Arrow numbers bad rows only when single-threaded
            table, unreadable = _parse(data, header, use_threads=False, block_size=block_size)
        by_line = _one_record_per_line(data, table, unreadable, removed)
    except pa.ArrowInvalid:  # "straddling object": a record over many lines, longer than a block
        by_line = False
    if by_line:
        lines = _line_map(data.count(b"\n") + (not data.endswith(b"\n")), removed)
        skipped = np.asarray([u["line_no"] for u in unreadable], np.int64)
        data_lines = np.arange(2, len(lines) + 1)  # Arrow's record number is the line number here
        data_lines = data_lines[~np.isin(data_lines, skipped)] if len(skipped) else data_lines
        for u in unreadable:
            u["line_no"] = int(lines[u["line_no"] - 1])
        line_numbers = lines[data_lines - 1]
    else:
        header, table, line_numbers, unreadable = _read_by_record(data.decode("utf-8"), removed)
    table = table.append_column("_line", pa.array(line_numbers, pa.int64()))
    return RawTable(table, _issues(sorted(bad + unreadable, key=lambda i: i["line_no"])), header)


def _parse(data: bytes, header: list[str], use_threads: bool, block_size: int):
    unreadable: list[dict] = []

    def on_invalid(row) -> str:
        unreadable.append({"line_no": row.number, "column_name": None, "rule": "unreadable_line",  # a record number
                           "severity": "hard", "raw_value": row.text[:SHOWN_CHARS],
                           "message": f"{row.actual_columns} fields where the header has {row.expected_columns}"})
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(use_threads=use_threads, block_size=block_size),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                             strings_can_be_null=True, quoted_strings_can_be_null=True),
    )
    return table, unreadable


def _one_record_per_line(data: bytes, table: pa.Table, unreadable: list[dict], removed: list[int]) -> bool:
    """Whether Arrow's parse can be numbered line for line: every line after the header
    is one record (parsed or unreadable), no quote is left open and no line ends in a
    lone \\r (which Arrow, but not the line count, takes for a line end). A stray quote
    makes Arrow read on to the next quote, merging lines: that shows as fewer records
    than lines, or as an odd number of quotes."""
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    return (lines - 1 == table.num_rows + len(unreadable)
            and data.count(b'"') % 2 == 0 and data.count(b"\r") == data.count(b"\r\n"))


def _cut_long_lines(data: bytes, removed: list[int]) -> tuple[bytes, list[dict]]:
    """The UTF-8 text less its data lines longer than ``MAX_RECORD_BYTES``, and those lines
    as issues, with their physical line numbers (the file less the ``removed`` lines is
    read) and only the start of their text.

    They are cut before Arrow or the csv module reads the text, so that Arrow never meets
    a line longer than its block and a 50 MB line is neither parsed nor copied (the rest
    of the file is copied once). Bytes are counted in UTF-8, as Arrow reads them. The
    header is kept, whatever its length."""
    limit = MAX_RECORD_BYTES
    if len(data) <= limit:  # no line can be too long: the usual file is not scanned
        return data, []
    octets = np.frombuffer(data, np.uint8)
    ends = np.append(np.flatnonzero(octets == ord("\n")), len(data))  # where each line's \n is (or would be)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    lengths -= (lengths > 0) & (octets[np.maximum(ends - 1, 0)] == ord("\r"))  # a \r\n line end is not counted
    long = np.flatnonzero(lengths > limit)
    long = long[long > 0]  # index 0 is the header
    if not len(long):
        return data, []
    physical = _line_map(len(ends), removed)
    view, kept, issues, at = memoryview(data), [], [], 0
    for i in long.tolist():
        kept.append(view[at:starts[i]])
        at = int(ends[i]) + 1
        issues.append({"line_no": int(physical[i]), "column_name": None, "rule": "record_too_long", "severity": "hard",
                       "raw_value": _shown(view[starts[i]:min(ends[i], starts[i] + 4 * SHOWN_CHARS)]),
                       "message": too_long_message(f"a line of {int(lengths[i]):,} bytes")})
    kept.append(view[at:])
    return b"".join(kept), issues


def _shown(start: memoryview) -> str:
    """The first SHOWN_CHARS characters of UTF-8 bytes (a character is at most 4 bytes)."""
    return bytes(start).decode("utf-8", errors="replace")[:SHOWN_CHARS].rstrip("\r\n")


def too_long_message(what: str) -> str:
    return f"{what}, longer than the {MAX_RECORD_BYTES:,}-byte limit for one record (not read)"


def _line_map(lines: int, removed: list[int]) -> np.ndarray:
    """The physical line number of each of the ``lines`` lines of the text read (the file
    less the ``removed`` lines, undecodable or too long): element i - 1 is the
    physical line of line i."""
    total = lines + len(removed)
    keep = np.ones(total + 1, dtype=bool)
    keep[0] = False
    keep[np.asarray(removed, dtype=np.int64)] = False
    return np.flatnonzero(keep).astype(np.int64)


# Arrow reads these values as null when strings can be null: the record-by-record reading
# does the same, so that a file gives the same rows whichever way it is read.
_NULL_VALUES = frozenset(pacsv.ConvertOptions().null_values)


def _read_by_record(text: str, removed: list[int]) -> tuple[list[str], pa.Table, np.ndarray, list[dict]]:
    """Read a CSV record by record with the csv module: (header, rows as text, the
    physical line each row started on, unreadable lines as issues).

    A record may span lines only inside a quoted value. A record spanning lines that
    does not have the header's number of fields (or that reaches the end of the file
    inside quotes) is taken for a quote opened by mistake on its first line: that line
    is unreadable, and reading starts again on the next line, so one stray quote costs
    one row, not the rest of the file.

    A record stops being read when it grows past ``MAX_RECORD_BYTES``. If its quotes close
    further on, in a record of the header's number of fields, it is one row too long
    (``record_too_long``, on its first line) and reading goes on after it; otherwise its
    quote was opened by mistake, as above."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    physical = _line_map(len(lines), removed)  # physical[i]: the physical line of lines[i]
    # The csv module refuses a value over its own limit (128 KiB by default, for the whole
    # process): raised to ours, so that one limit holds whichever way a file is read.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))
    feed = _Lines(lines, MAX_RECORD_BYTES)
    reader = csv.reader(feed)  # the reader takes lines only as a record needs them, from feed.at
    header: list[str] | None = None
    records, starts, unreadable = [], [], []

    def cannot_read(first: int, message: str, rule: str = "unreadable_line") -> None:
        unreadable.append({"line_no": int(physical[first]), "column_name": None, "rule": rule,
                           "severity": "hard", "raw_value": lines[first][:SHOWN_CHARS].rstrip("\r\n"), "message": message})

    while True:
        first = feed.start_record()
        try:
            record = next(reader)
        except StopIteration:
            break
        except _RecordTooLong:
            last = _quotes_close(lines, first)
            size = _record_bytes(lines[first:last + 1]) if last is not None else 0
            if header is not None and size > MAX_RECORD_BYTES and _fields(lines[first:last + 1]) == len(header):
                cannot_read(first, too_long_message(f"a record of {size:,} bytes on lines {physical[first]}"
                                                    f" to {physical[last]}"), rule="record_too_long")
                feed.at = last + 1
            else:
                cannot_read(first, "a quote opened on this line is never closed (unterminated quoted value)")
                feed.at = first + 1
            continue
        except csv.Error as error:  # the reader stopped inside this record: read on from the next line
            cannot_read(first, "a line break (\\r) inside an unquoted value" if "new-line character" in str(error)
                        else f"not a CSV record: {error}")
            feed.at = first + 1
            continue
        if not record:  # a blank line: neither a row nor an issue
            continue
        if header is None:
            header = record
            continue
        spans = feed.at - first > 1
        open_at_end = feed.at == len(lines) and _ends_inside_quotes("".join(lines[first:feed.at]))
        if open_at_end or (spans and len(record) != len(header)):
            cannot_read(first, "a quote opened on this line is never closed (unterminated quoted value)")
            feed.at = first + 1  # read on from the next line, as its own record
        elif len(record) != len(header):
            cannot_read(first, f"{len(record)} fields where the header has {len(header)}")
        else:
            records.append(record)
            starts.append(int(physical[first]))
    header = header or []
    columns = list(zip(*records)) if records else [() for _ in header]
    table = pa.Table.from_arrays([pa.array([None if v in _NULL_VALUES else v for v in values], pa.string())
                                  for values in columns], names=header)
    return header, table, np.asarray(starts, dtype=np.int64), unreadable


class _RecordTooLong(Exception):
    """A record read on past the limit: raised through csv.reader, which then starts afresh."""


class _Lines:
    """The lines of a file for csv.reader, from index ``at`` on; setting ``at`` between
    records makes the reader go back (or on) to that line. A record that takes lines
    past ``limit`` bytes in all raises _RecordTooLong instead of being read further."""

    def __init__(self, lines: list[str], limit: int):
        self.lines, self.at, self.limit = lines, 0, limit
        self.record_bytes = 0

    def start_record(self) -> int:
        self.record_bytes = 0
        return self.at

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.at >= len(self.lines):
            raise StopIteration
        line = self.lines[self.at]
        self.record_bytes += _octets(line)
        if self.record_bytes > self.limit + 2:  # + its line end, which the limit does not count
            raise _RecordTooLong
        self.at += 1
        return line


def _octets(text: str) -> int:
    """Bytes of ``text`` in UTF-8; isascii() is a flag lookup, so the usual line costs nothing."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _quotes_close(lines: list[str], first: int) -> int | None:
    """The index of the line a record opened on ``lines[first]`` ends on, counting quotes
    ("" inside a value counts twice, so keeps the count even); None if it never ends."""
    odd = False
    for i in range(first, len(lines)):
        odd ^= lines[i].count('"') % 2 == 1
        if not odd:
            return i
    return None


def _record_bytes(lines: list[str]) -> int:
    """Bytes of the record these lines make, its last line end not counted."""
    return sum(_octets(line) for line in lines) - (len(lines[-1]) - len(lines[-1].rstrip("\r\n")))


def _fields(lines: list[str]) -> int:
    """Fields of the record these lines make: commas outside quotes, plus one."""
    outside = "".join(lines).split('"')[::2]
    return 1 + sum(part.count(",") for part in outside)


def _ends_inside_quotes(record: str) -> bool:
    """Whether a record ends inside a quoted value, by the csv module's (non-strict)
    rules: a quote opens a value only at its start, and "" inside one is a quote."""
    state = "start"  # start of a field | in an unquoted field | quoted | a quote seen inside quotes
    for ch in record:
        if state == "quoted":
            state = "quote" if ch == '"' else "quoted"
        elif state == "quote" and ch == '"':
            state = "quoted"
        elif ch in ",\r\n":
            state = "start"
        elif ch == '"' and state == "start":
            state = "quoted"
        else:
            state = "field"
    return state == "quoted"


def _as_utf8(data: bytes, encoding: str) -> tuple[bytes, list[dict]]:
    """The file as UTF-8 bytes for Arrow, and the lines that cannot be decoded."""
    if encoding == "utf-8-sig" and data.startswith(codecs.BOM_UTF8):
        data, encoding = data[len(codecs.BOM_UTF8):], "utf-8"
    elif encoding == "utf-8-sig":
        encoding = "utf-8"
    if encoding == "utf-8" and _is_utf8(data):
        return data, []
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text, bad = _decode_by_line(data, encoding)
        return text.encode("utf-8"), bad
    return (data if encoding == "utf-8" else text.encode("utf-8")), []


def _is_utf8(data: bytes) -> bool:
    """Whether the bytes are valid UTF-8, checked by Arrow in place: bytes.decode() would
    build a string three times the file's size only to throw it away. Arrow accepts and
    refuses exactly what Python's decoder does (surrogates, overlong forms, past U+10FFFF)."""
    whole = pa.LargeBinaryArray.from_buffers(  # the bytes as one value, without a copy
        pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int64)), pa.py_buffer(data)])
    try:
        whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def read_csv_drop(contract: Contract, drop) -> dict[str, RawTable]:
    """Every table of a CSV drop that is present in it, read as text."""
    return {t.name: read_csv_text(drop.folder / t.file, contract.encoding)
            for t in contract.tables if (drop.folder / t.file).exists()}


def _decode_by_line(data: bytes, encoding: str) -> tuple[str, list[dict]]:
    """Decode line by line (lines end at \\n, as they are numbered everywhere), reporting
    the lines that cannot be read in this encoding. An undecodable data line is left
    out; the header is kept with the undecodable bytes replaced, so that its columns
    still name the fields (a broken name then fails the contract, it does not shift the
    file up a line)."""
    good, bad = [], []
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    for number, raw in enumerate(lines, start=1):
        try:
            good.append(raw.decode(encoding))
        except UnicodeDecodeError as error:
            bad.append({"line_no": number, "column_name": None, "rule": "wrong_encoding", "severity": "hard",
                        "raw_value": raw.decode(encoding, errors="replace")[:SHOWN_CHARS],
                        "message": f"not valid {encoding}: {error.reason} at byte {error.start}"})
            if number == 1:
                good.append(raw.decode(encoding, errors="replace"))
    return "".join(good), bad


def _issues(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ISSUE_SCHEMA)


# ------------------------------------------------------------------ checking and typing
def stage_table(con: duckdb.DuckDBPyConnection, contract: Contract, table: Table,
                files: dict[str, RawTable], into: str) -> StagedTable:
    """Type and check one table's files from several drops (``{drop: RawTable}``) in
    one pass: rows that break no hard rule are inserted into the table ``into`` (by
    name, with ``extract_date`` for ``_drop``); every issue is returned."""
    issues, usable = [], []
    rejected_files: set[str] = set()
    for drop, raw in files.items():
        missing = [c for c in table.column_names if c not in raw.header]
        file_issues = [raw.issues]
        for name in [h for h in raw.header if h not in table.column_names]:
            file_issues.append(_issues([{"line_no": 1, "column_name": name, "rule": "unexpected_column",
                                         "severity": "soft", "raw_value": None,
                                         "message": f"column {name!r} is not in the contract and is not staged"}]))
        if missing:  # without a contract column no row can be trusted: the file is quarantined whole
            rejected_files.add(drop)
            file_issues.append(_issues([{"line_no": 1, "column_name": name, "rule": "missing_column", "severity": "hard",
                                         "raw_value": None, "message": f"header lacks contract column {name!r}"}
                                        for name in missing]))
            n = raw.rows.num_rows
            file_issues.append(pa.table({
                "line_no": raw.rows["_line"], "column_name": pa.nulls(n, pa.string()),
                "rule": pa.array(["file_rejected"] * n, pa.string()), "severity": pa.array(["hard"] * n, pa.string()),
                "raw_value": pa.nulls(n, pa.string()),
                "message": pa.array([f"file lacks column(s) {', '.join(missing)}"] * n, pa.string())}))
        else:
            usable.append(raw.rows.select(table.column_names + ["_line"]).append_column(
                "_drop", pa.array([drop] * raw.rows.num_rows, pa.string())))
        for part in file_issues:
            issues.append(part.cast(ISSUE_SCHEMA).append_column("_drop", pa.array([drop] * part.num_rows, pa.string())))

    staged_n: dict[str, int] = {}
    if usable:
        con.register("_raw", pa.concat_tables(usable))
        try:
            row_issues, staged_n = _check_and_insert(con, contract, table, into)
        finally:
            con.unregister("_raw")
            for temp in ("_distinct", "_checked", "_rows", "_duplicates", "_flagged"):
                con.execute(f"DROP TABLE IF EXISTS {temp}")
        issues.append(row_issues.cast(ISSUE_SCHEMA.append(pa.field("_drop", pa.string()))))
    all_issues = pa.concat_tables(issues) if issues else _issues([]).append_column("_drop", pa.array([], pa.string()))
    return StagedTable(all_issues, _counts(con, files, staged_n, all_issues, rejected_files))


def _check_and_insert(con: duckdb.DuckDBPyConnection, contract: Contract, table: Table,
                      into: str) -> tuple[pa.Table, dict[str, int]]:
    """Check the rows of ``_raw`` and insert the good ones, typed, into ``into``.

    Snapshots repeat most rows from one drop to the next, and every rule but the
    repeated key looks only at a row's values. So, for several drops, each distinct row
    is parsed and checked once (``_checked``, with a hash ``_h`` of its values), and the
    delivered rows (``_rows``: drop, line and hash) are joined back to it; one drop's
    rows are checked as they are. The repeated key is checked on the delivered rows
    themselves (``_duplicates``)."""
    rules = _rules(contract, table)
    row_rules = [r for r in rules if r.name != "duplicate_key"]
    values = ", ".join(_q(c) for c in table.column_names)
    if con.sql("SELECT count(DISTINCT _drop) FROM _raw").fetchall()[0][0] <= 1:
        # one drop repeats hardly any row: each delivered row is checked, with its drop and line
        con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS {_checked_sql(contract, table, row_rules, '_raw')}")
        rows = "SELECT * FROM _checked"
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _distinct AS SELECT DISTINCT {values} FROM _raw")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS {_checked_sql(contract, table, row_rules, '_distinct')}")
        if _hashes_unique(con):  # each row joins its values' check by their hash
            con.execute(f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT _drop, _line, hash({values}) AS _h FROM _raw")
        else:  # two distinct rows share a 64-bit hash (practically never): number them, join by values
            con.execute("CREATE OR REPLACE TEMP TABLE _checked AS SELECT * REPLACE (row_number() OVER () AS _h) FROM _checked")
            same = " AND ".join(f"r.{_q(c)} IS NOT DISTINCT FROM c.{_q(c)}" for c in table.column_names)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT r._drop, r._line, c._h FROM _raw r JOIN _checked c ON {same}")
        rows = "SELECT * FROM _rows JOIN _checked USING (_h)"
    duplicate = next((r for r in rules if r.name == "duplicate_key"), None)
    if duplicate is not None:  # a snapshot holds each key once: a later line with the same key is quarantined
        key = ", ".join(_q(k) for k in table.key)
        same_key = " AND ".join(f"r.{_q(k)} IS NOT DISTINCT FROM d.{_q(k)}" for k in table.key)
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _duplicates AS
            SELECT _line AS line_no, NULL AS column_name, 'duplicate_key' AS rule, 'hard' AS severity,
                   {duplicate.shown} AS raw_value, {duplicate.message.replace(_FIRST_LINE, '_first')} AS message, _drop
            FROM (SELECT r.*, min(r._line) OVER (PARTITION BY r._drop, {", ".join("r." + _q(k) for k in table.key)}) AS _first
                  FROM _raw r SEMI JOIN (SELECT _drop, {key} FROM _raw GROUP BY ALL HAVING count(*) > 1) d
                  ON r._drop = d._drop AND {same_key})
            WHERE _line > _first""")
    flagged = " OR ".join(r.flag for r in row_rules) or "false"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _flagged AS SELECT * FROM ({rows}) WHERE {flagged}")
    row_issues = con.sql(_issues_sql(row_rules, "_flagged", "_duplicates" if duplicate is not None else None)
                         ).to_arrow_table()
    hard = " OR ".join(r.flag for r in row_rules if r.severity == "hard") or "false"
    not_duplicate = ("" if duplicate is None else
                     " AND NOT EXISTS (SELECT 1 FROM _duplicates d WHERE d._drop = _j._drop AND d.line_no = _j._line)")
    inserted = con.execute(
        f"INSERT INTO {into} BY NAME SELECT {_typed_columns(table, row_rules)}, "
        f"CAST(_j._drop AS DATE) AS extract_date, _j._line AS _line "
        f"FROM ({rows}) AS _j WHERE NOT ({hard}){not_duplicate}"
    ).fetchall()[0][0]
    # every delivered row not inserted broke a hard rule on its line
    delivered = dict(con.sql("SELECT _drop, count(*) FROM _raw GROUP BY 1").fetchall())
    con.register("_row_issues", row_issues)
    try:
        kept_out = dict(con.sql("SELECT _drop, count(DISTINCT line_no) FROM _row_issues WHERE severity = 'hard' "
                                "GROUP BY 1").fetchall())
    finally:
        con.unregister("_row_issues")
    staged_n = {drop: n - kept_out.get(drop, 0) for drop, n in delivered.items()}
    assert sum(staged_n.values()) == inserted, (table.name, staged_n, inserted)
    return row_issues, staged_n


def _hashes_unique(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether no two rows of ``_checked`` (distinct values) share a hash."""
    return con.sql("SELECT count(DISTINCT _h) = count(*) FROM _checked").fetchall()[0][0]


def _counts(con: duckdb.DuckDBPyConnection, files: dict[str, RawTable], staged_n: dict[str, int], issues: pa.Table,
            rejected_files: set[str]) -> dict[str, dict[str, int]]:
    """delivered, staged, quarantined, flagged and file_rejected per drop. An issue on a
    header line (a CSV's line 1) is about the file, not a row; an NDJSON file has no
    header, so its line 1 is a row like any other."""
    con.register("_all_issues", issues)
    con.register("_first_row", pa.table({"_drop": pa.array(list(files), pa.string()),
                                         "_first": pa.array([raw.header_lines + 1 for raw in files.values()], pa.int64())}))
    try:
        hard = dict(con.sql("SELECT _drop, count(DISTINCT line_no) FROM _all_issues JOIN _first_row USING (_drop) "
                            "WHERE severity = 'hard' AND line_no >= _first OR rule = 'file_rejected' "
                            "GROUP BY 1").fetchall())
        soft = dict(con.sql("SELECT _drop, count(*) FROM _all_issues JOIN _first_row USING (_drop) "
                            "WHERE severity = 'soft' AND line_no >= _first GROUP BY 1").fetchall())
    finally:
        con.unregister("_all_issues")
        con.unregister("_first_row")
    out = {}
    for drop, raw in files.items():
        out[drop] = {"delivered": raw.delivered, "staged": int(staged_n.get(drop, 0)),
                     "quarantined": int(hard.get(drop, 0)), "flagged": int(soft.get(drop, 0)),
                     "file_rejected": int(drop in rejected_files)}
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# How each contract type is read from text; a value that cannot be read becomes NULL.
PARSE = {
    "text": "{raw}",
    "integer": "TRY_CAST({raw} AS BIGINT)",
    "decimal": "TRY_CAST({raw} AS DOUBLE)",
    "date": "CAST(TRY_STRPTIME({raw}, {date_format}) AS DATE)",
    "datetime": "TRY_STRPTIME({raw}, {datetime_format})",
    # ISO 8601 with its offset: an instant, whatever the clocks did
    "timestamp": "CASE WHEN regexp_full_match({raw}, {iso_instant}) THEN TRY_CAST({raw} AS TIMESTAMPTZ) END",
    "boolean": "CASE lower({raw}) WHEN 'true' THEN true WHEN 'false' THEN false END",
    "flag": "CASE {raw} WHEN 'Y' THEN true WHEN 'N' THEN false END",
    "json": "CASE WHEN json_valid({raw}) THEN CAST({raw} AS JSON) END",
}
ISO_INSTANT = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(\.\d+)?([+-]\d{2}:\d{2}|Z)"


def parse_expr(contract: Contract, column: Column, raw: str) -> str:
    """SQL turning the text ``raw`` into the column's type; NULL when it cannot."""
    return PARSE[column.type].format(raw=raw, date_format=_literal(contract.date_format),
                                     datetime_format=_literal(contract.datetime_format),
                                     iso_instant=_literal(ISO_INSTANT))


def _code_violation(column: Column, raw: str) -> str | None:
    """SQL true when a non-blank value holds a code outside the column's list."""
    if not column.codes:
        return None
    allowed = "[" + ", ".join(_literal(c) for c in column.codes) + "]"
    if column.type == "json":
        items = f"CAST(json_extract_string({raw}, '$[*]') AS VARCHAR[])"
    elif column.separator:
        items = f"string_split({raw}, {_literal(column.separator)})"
    else:
        return f"NOT list_contains({allowed}, {raw})"
    return f"NOT list_bool_and(list_transform({items}, lambda c: list_contains({allowed}, trim(c))))"


def _soft_rules(column: Column) -> list[tuple[str, str]]:
    """(rule, SQL true when broken, given {raw} is not null) for rules that flag a value
    but keep the row."""
    raw = "{raw}"
    rules = []
    normalised = _q("_n_" + column.name)  # computed once per distinct value in _checked_sql
    if column.identifier == "nhs_number":
        rules.append(("nhs_number_check", f"NOT nhs_digits_are_valid({normalised})"))
    elif column.identifier == "upn":
        rules.append(("upn_check_letter", f"NOT upn_letters_are_valid({normalised})"))
    elif column.identifier == "postcode":
        rules.append(("postcode_placeholder", f"folded_postcode_is_placeholder({normalised})"))
        rules.append(("postcode_format", f"NOT folded_postcode_is_placeholder({normalised}) "
                                         f"AND NOT folded_postcode_is_wellformed({normalised})"))
    if column.codes and not column.required:
        rules.append(("unknown_code", _code_violation(column, raw)))
    return rules


def _hard_rules(column: Column) -> list[tuple[str, str]]:
    """(rule, SQL true when broken) for rules that keep the row out of staging; a value
    that does not parse is NULL in its typed column ``_t_<name>``."""
    rules = []
    if column.type != "text":
        rules.append((f"unparseable_{column.type}", f"{_q('_t_' + column.name)} IS NULL"))
    if column.codes and column.required:
        rules.append(("unknown_code", _code_violation(column, "{raw}")))
    return rules


@dataclass(frozen=True)
class Rule:
    flag: str  # the boolean column of _checked that is true where the rule is broken
    column: str | None
    name: str
    severity: str
    condition: str  # SQL over the raw (and parsed _t_) columns
    message: str  # SQL expression
    shown: str  # SQL expression for the raw value recorded


_FIRST_LINE = "<first line of the key in its drop>"


def _rules(contract: Contract, table: Table) -> list[Rule]:
    """Every rule of the table's contract, as SQL."""
    rules = []
    for column in table.columns:
        raw = _q(column.name)
        found = []
        if column.required:
            found.append(("missing_required", "hard", f"{raw} IS NULL", f"required value missing in {column.name}"))
        for severity, checks in (("hard", _hard_rules(column)), ("soft", _soft_rules(column))):
            for name, broken in checks:
                found.append((name, severity, f"{raw} IS NOT NULL AND ({broken.replace('{raw}', raw)})",
                              _message(column, name)))
        for name, severity, condition, message in found:
            rules.append(Rule(f"_r{len(rules)}", column.name, name, severity, condition, _literal(message), raw))
    if contract.mode == "snapshot":  # a snapshot holds each key once; a delta may resend it
        first = _FIRST_LINE
        rules.append(Rule(f"_r{len(rules)}", None, "duplicate_key", "hard", f"_line > {first}",
                          f"'key ({', '.join(table.key)}) already on line ' || {first}",
                          " || '|' || ".join(f"coalesce({_q(k)}, '')" for k in table.key)))
    return rules


NORMALISE = {"nhs_number": "nhs_digits({})", "upn": "upper(trim({}))", "postcode": "postcode_folded({})"}


def _checked_sql(contract: Contract, table: Table, rules: list[Rule], source: str) -> str:
    """The rows of ``source`` with each column parsed once (``_t_<name>``), one boolean
    per rule, true where the row breaks it, and ``_h``, a hash of the raw values.

    An identifier's checks are the costly ones, and one pupil's UPN is on many rows of a
    table: they are evaluated once per distinct value and joined to the rows."""
    identifiers = [c for c in table.columns if c.identifier in NORMALISE]
    values = ", ".join(_q(c) for c in table.column_names)
    parsed = "".join(f", {parse_expr(contract, c, _q(c.name))} AS {_q('_t_' + c.name)}"
                     for c in table.columns if c.type != "text")
    flags = "".join(f", coalesce({r.condition}, false) AS {r.flag}" for r in rules
                    if r.column not in {c.name for c in identifiers})
    joins, looked_up = "", ""
    for i, column in enumerate(identifiers):
        raw = _q(column.name)
        typed = f", {parse_expr(contract, column, raw)} AS {_q('_t_' + column.name)}" if column.type != "text" else ""
        # Macros expand inline: an identifier normalised inside one would be normalised again
        # at every use (13 times for a UPN), so it is normalised once here.
        normalised = f"{NORMALISE[column.identifier].format(raw)} AS {_q('_n_' + column.name)}"
        own = [r for r in rules if r.column == column.name]
        checks = "".join(f", coalesce({r.condition}, false) AS {r.flag}" for r in own)
        joins += (f" LEFT JOIN (SELECT {raw}{checks} FROM (SELECT {raw}{typed}, {normalised} "
                  f"FROM (SELECT DISTINCT {raw} FROM {source}))) AS _id{i} ON _v.{raw} IS NOT DISTINCT FROM _id{i}.{raw}")
        looked_up += "".join(f", _id{i}.{r.flag}" for r in own)
    return (f"SELECT _v.*{looked_up} FROM (SELECT *{flags} FROM (SELECT *{parsed}, hash({values}) AS _h FROM {source})) "
            f"AS _v{joins}")


def _issues_sql(rules: list[Rule], source: str, duplicates: str | None) -> str:
    parts = [f"SELECT _line AS line_no, {_literal(r.column) if r.column else 'NULL'} AS column_name, "
             f"{_literal(r.name)} AS rule, {_literal(r.severity)} AS severity, {r.shown} AS raw_value, "
             f"{r.message} AS message, _drop FROM {source} WHERE {r.flag}" for r in rules]
    if duplicates:
        parts.append(f"SELECT * FROM {duplicates}")
    if not parts:
        return ("SELECT NULL::BIGINT AS line_no, NULL AS column_name, NULL AS rule, NULL AS severity, "
                "NULL AS raw_value, NULL AS message, NULL AS _drop LIMIT 0")
    return " UNION ALL ".join(parts) + " ORDER BY _drop, line_no, column_name"


def _typed_columns(table: Table, rules: list[Rule]) -> str:
    """Each column typed, with values that broke a soft rule moved aside to <column>_flagged."""
    selects = []
    for column in table.columns:
        raw = _q(column.name)
        typed = _q("_t_" + column.name) if column.type != "text" else raw
        soft = [r.flag for r in rules if r.column == column.name and r.severity == "soft"]
        if _soft_rules(column):
            flagged = " OR ".join(soft)
            selects.append(f"CASE WHEN {flagged} THEN NULL ELSE {typed} END AS {raw}")
            selects.append(f"CASE WHEN {flagged} THEN {raw} END AS {_q(column.name + '_flagged')}")
        else:
            selects.append(f"{typed} AS {raw}")
    return ", ".join(selects)


def _message(column: Column, rule: str) -> str:
    what = {
        "unparseable_date": "not a date in the contract's format", "unparseable_datetime": "not a date-time in the contract's format",
        "unparseable_timestamp": "not an ISO 8601 timestamp with an offset", "unparseable_integer": "not a whole number",
        "unparseable_decimal": "not a number", "unparseable_boolean": "not true/false", "unparseable_flag": "not Y/N",
        "unparseable_json": "not valid JSON", "unknown_code": f"code not in the {column.codes_name or 'contract'} list",
        "nhs_number_check": "NHS number fails the modulus 11 check", "upn_check_letter": "UPN fails its check letter",
        "postcode_placeholder": "placeholder postcode", "postcode_format": "not a UK postcode",
    }[rule]
    return f"{column.name}: {what}"
