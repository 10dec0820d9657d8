"""Bounded reading: one record too long to read costs one row, not the drop.

A line (CSV or NDJSON), or the lines of one quoted CSV value, longer than
``staging.MAX_RECORD_BYTES`` (1 MiB) is one quarantined row with rule
``record_too_long``, named by file and line, its raw value a short prefix. A quote
opened by mistake that runs on past the limit is the line it opened on, unreadable. The
rest of the file is read and staged, and delivered = staged + quarantined = the rows the
manifest states. (Before, Arrow raised "straddling object" and every drop of the system
failed, naming no file or line.)

Damaged files are "sent by the system": the manifest is re-signed for the new bytes and
keeps the rows the system says it exported (``Landing.resign_manifest``).
"""

from __future__ import annotations

import csv
import json
import tracemalloc
from datetime import date

import pytest

import sources.staging as staging
from quality import checks
from sources.contracts import load_contract
from sources.drops import read_manifest, verify

from .conftest import csv_line
from .test_manifest_counts import hard_issues, ndjson_line_numbers, reconciles_with_manifest, staged_lines

MASH_FILE = "contacts.csv"
FREE_TEXT = "referrer_org"  # a text column no rule checks: only its length can keep a row out
NOTE = "Referral notes pasted in full from the referrer's email. "


def notes(size: int) -> str:
    """Free text of exactly ``size`` characters, with no quote, comma or line break."""
    return (NOTE * (size // len(NOTE) + 1))[:size]


def mash_lines(landing) -> tuple[str, list[bytes]]:
    """The first MASH drop (the initial full extract) copied, and its file's lines."""
    day = landing.city_dates("mash")[0]
    landing.copy("mash", day)
    return day, landing.lines("mash", day, MASH_FILE)


def with_value(lines: list[bytes], line_no: int, value: str) -> bytes:
    """Line ``line_no`` with its free-text value set, written as the system writes records."""
    header = next(csv.reader([lines[0].decode()]))
    record = next(csv.reader([lines[line_no - 1].decode()]))
    record[header.index(FREE_TEXT)] = value
    return csv_line(record).encode()


def send(landing, system: str, day: str, file: str, lines: list[bytes]) -> int:
    """Write the damaged file as the system's export and re-sign the manifest; the rows
    the manifest states."""
    landing.write_lines(system, day, file, lines)
    landing.resign_manifest(system, day)
    return landing.manifest_rows(system, day, file)


def assert_one_row_kept_out(landing, warehouse, summary, system: str, day: str, file: str, line_no: int,
                            rule: str, rows: int) -> dict:
    """The drop staged; the one line is the only hard issue of its file; the counts
    reconcile with the manifest. Returns the issue."""
    assert summary.staged == [day] and not summary.rejected, summary.rejected
    table = load_contract(system).table_for_file(file).name
    assert hard_issues(warehouse, system, day, file) == [(line_no, rule, table)]
    [issue] = [i for i in warehouse.issues(system, day, file) if i["rule"] == rule]
    assert (issue["system"], str(issue["extract_date"]), issue["file_name"]) == (system, day, file)
    assert 0 < len(issue["raw_value"]) <= staging.SHOWN_CHARS  # a prefix, never the megabytes
    row = warehouse.drop_file(system, day, file)
    assert (row["delivered_rows"], row["staged_rows"], row["quarantined_rows"]) == (rows, rows - 1, 1)
    reconciles_with_manifest(landing, warehouse, system, day)
    assert checks.reconciliation(warehouse.con, system).passed
    return issue


def verifies_alone(landing, system: str, day: str) -> bool:
    """Checking the drop on its own (drops.verify counts rows as ingestion does) agrees."""
    drop = read_manifest(system, date.fromisoformat(day), landing.folder(system, day))
    return verify(drop, load_contract(system).encoding).ok


# ================================================================== CSV
@pytest.mark.parametrize(("size", "where"), [
    (3_000_000, "middle"),   # a several-MB line among good ones
    (50_000_000, "middle"),  # a 50 MB quoted value on one line
    (3_000_000, "last"),     # the last line, with nothing after it to read
])
def test_csv_line_over_the_limit_is_one_quarantined_row(landing, warehouse, size, where):
    day, lines = mash_lines(landing)
    line_no = {"middle": 30, "last": len(lines)}[where]
    lines[line_no - 1] = with_value(lines, line_no, notes(size))
    rows = send(landing, "mash", day, MASH_FILE, lines)
    assert rows == len(lines) - 1  # one record per line, as the system wrote them
    assert verifies_alone(landing, "mash", day)

    summary = warehouse.ingest(landing, "mash")["mash"]

    issue = assert_one_row_kept_out(landing, warehouse, summary, "mash", day, MASH_FILE, line_no,
                                    "record_too_long", rows)
    assert f"a line of {len(lines[line_no - 1]):,} bytes" in issue["message"]
    assert "1,048,576-byte limit" in issue["message"]  # the default: 1 MiB
    assert issue["raw_value"] == lines[line_no - 1].decode()[:staging.SHOWN_CHARS]
    assert staged_lines(warehouse, "mash__contacts", day) == set(range(2, len(lines) + 1)) - {line_no}


def test_quoted_value_over_many_lines_past_the_limit_is_one_quarantined_row(landing, warehouse):
    """A closed quoted value holding line breaks, 3 MB in all: the system wrote one
    record, so it is one row, on the line it starts; the lines after it keep their
    physical numbers."""
    day, lines = mash_lines(landing)
    value = "\n".join(notes(80) for _ in range(37_500))  # 3 MB over 37,500 lines, none over the limit
    long = with_value(lines, 30, value).split(b"\n")
    lines[29:30] = long
    rows = send(landing, "mash", day, MASH_FILE, lines)
    assert rows == len(lines) - len(long)  # the record over many lines is one row
    assert verifies_alone(landing, "mash", day)

    summary = warehouse.ingest(landing, "mash")["mash"]

    issue = assert_one_row_kept_out(landing, warehouse, summary, "mash", day, MASH_FILE, 30, "record_too_long", rows)
    assert f"on lines 30 to {30 + len(long) - 1}" in issue["message"]
    after = set(range(30 + len(long), len(lines) + 1))
    assert staged_lines(warehouse, "mash__contacts", day) == set(range(2, 30)) | after


def test_unterminated_quote_running_past_the_limit_costs_its_line_only(landing, warehouse):
    """An export quoting only where a value needs it, with long free text: a stray quote
    on line 30 is closed by nothing for over 2 MiB, until the quoted values of the last
    lines. The reading stops at the limit; the line that opened the quote is unreadable
    and every line after it is read."""
    day, lines = mash_lines(landing)
    header = next(csv.reader([lines[0].decode()]))
    org = header.index(FREE_TEXT)
    records = [next(csv.reader([line.decode()])) for line in lines[1:]]
    for record in records:
        record[org] = notes(4_000)
        record[:] = [value.replace(",", "") for value in record]  # "Flat 3, 52 Orchard Street" would need quotes
    records[28][org] = '"' + records[28][org]  # line 30: a quote opens the value and is never closed
    plain, quoted = records[:-20], records[-20:]
    lines = [lines[0]] + [",".join(r).encode() for r in plain] + [csv_line(r).encode() for r in quoted]
    assert sum(len(line) for line in lines[30:-20]) > 2 * (1 << 20) and b'"' not in b"".join(lines[30:-20])
    rows = send(landing, "mash", day, MASH_FILE, lines)
    assert rows == len(lines) - 1
    assert verifies_alone(landing, "mash", day)

    summary = warehouse.ingest(landing, "mash")["mash"]

    issue = assert_one_row_kept_out(landing, warehouse, summary, "mash", day, MASH_FILE, 30, "unreadable_line", rows)
    assert "never closed" in issue["message"]
    assert staged_lines(warehouse, "mash__contacts", day) == set(range(2, len(lines) + 1)) - {30}


def test_the_limit_is_configurable_a_line_at_it_stages_one_byte_over_does_not(landing, warehouse, monkeypatch):
    monkeypatch.setattr(staging, "MAX_RECORD_BYTES", 64 * 1024)
    day, lines = mash_lines(landing)
    for line_no, extra in ((30, 0), (31, 1)):
        lines[line_no - 1] = with_value(lines, line_no, "")
        lines[line_no - 1] = with_value(lines, line_no, notes(64 * 1024 - len(lines[line_no - 1]) - 2 + extra))
    assert [len(line) for line in lines[29:31]] == [64 * 1024, 64 * 1024 + 1]
    rows = send(landing, "mash", day, MASH_FILE, lines)

    summary = warehouse.ingest(landing, "mash")["mash"]

    issue = assert_one_row_kept_out(landing, warehouse, summary, "mash", day, MASH_FILE, 31, "record_too_long", rows)
    assert "a line of 65,537 bytes, longer than the 65,536-byte limit" in issue["message"]
    assert warehouse.one("SELECT length(referrer_org) FROM staging.mash__contacts WHERE _line = 30") > 60_000


# ================================================================== NDJSON
@pytest.mark.parametrize("size", [3_000_000, 50_000_000])
def test_ndjson_line_over_the_limit_is_one_quarantined_row(landing, warehouse, size):
    """A Patient resource with a several-MB narrative: valid JSON, but no line of a bulk
    export should be that long, and it is not parsed."""
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    lines = landing.lines("health", day, "Patient.ndjson")
    line_no = len(lines) // 2
    resource = json.loads(lines[line_no - 1])
    resource["text"] = {"status": "generated", "div": notes(size)}
    lines[line_no - 1] = json.dumps(resource, separators=(",", ":")).encode()
    rows = send(landing, "health", day, "Patient.ndjson", lines)

    summary = warehouse.ingest(landing, "health")["health"]

    issue = assert_one_row_kept_out(landing, warehouse, summary, "health", day, "Patient.ndjson", line_no,
                                    "record_too_long", rows)
    assert f"a line of {len(lines[line_no - 1]):,} bytes, longer than the 1,048,576-byte limit" in issue["message"]
    assert issue["raw_value"] == lines[line_no - 1].decode()[:staging.SHOWN_CHARS]
    assert staged_lines(warehouse, "health__patients", day) == ndjson_line_numbers(lines) - {line_no}


# ================================================================== memory
def test_reading_a_file_with_a_50_mb_line_holds_few_copies_of_it(tmp_path):
    """The file is read whole, as every file is; the long line is cut out, never
    decoded, parsed or split into lines (each a copy or more of it)."""
    path = tmp_path / "contacts.csv"
    path.write_bytes(b'"a","b"\n"1","x"\n"2","' + notes(50_000_000).encode() + b'"\n"3","y"\n')
    size = path.stat().st_size
    tracemalloc.start()
    try:
        raw = staging.read_csv_text(path, "utf-8")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raw.rows["_line"].to_pylist() == [2, 4] and raw.issues["rule"].to_pylist() == ["record_too_long"]
    assert peak < 2.5 * size, f"peak {peak / size:.1f} times the file"
