"""Counts that reconcile with the manifest: every line a system sent is a row delivered,
staged or quarantined, and the file's delivered rows are the rows its manifest states.

A line that cannot be read (an NDJSON resource cut off mid-object, a CSV line whose
quote is never closed, a line with undecodable bytes or a stray carriage return) is one
quarantined row, named by system, drop, file, line and rule; the good rows around it
are still staged, each with its own line. The ``reconciliation`` check compares every
staged file with its manifest, so an auditor's sum is the pipeline's sum.

Damaged files are "sent by the system": the manifest is re-signed for the new bytes and
keeps the rows the system says it exported (``Landing.resign_manifest``).
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pytest

import sources.staging as staging
from quality import checks
from sources.contracts import load_contract
from sources.drops import read_manifest, verify


# ------------------------------------------------------------------ helpers
def reconciles_with_manifest(landing, warehouse, system: str, day: str) -> None:
    """Every file of the drop: delivered = manifest rows = staged + quarantined, in
    audit.drop_file and in audit.drop_file_loaded."""
    for f in landing.manifest(system, day)["files"]:
        row = warehouse.drop_file(system, day, f["name"])
        counts = (row["manifest_rows"], row["delivered_rows"], row["staged_rows"] + row["quarantined_rows"])
        assert counts == (f["rows"], f["rows"], f["rows"]), (f["name"], row)
    loaded = warehouse.all("SELECT file_name, manifest_rows, delivered_rows FROM audit.drop_file_loaded "
                           "WHERE system = ? AND extract_date = ? ORDER BY 1", [system, day])
    assert loaded == sorted((f["name"], f["rows"], f["rows"]) for f in landing.manifest(system, day)["files"])


def hard_issues(warehouse, system: str, day: str, file: str) -> list[tuple]:
    return sorted((i["line_no"], i["rule"], i["table_name"]) for i in warehouse.issues(system, day, file)
                  if i["severity"] == "hard")


def staged_lines(warehouse, table: str, day: str) -> set[int]:
    return {n for (n,) in warehouse.all(f"SELECT _line FROM staging.{table} WHERE extract_date = ?", [day])}


def ndjson_line_numbers(lines: list[bytes]) -> set[int]:
    return {n for n, line in enumerate(lines, start=1) if line.strip()}


# ================================================================== NDJSON
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_ndjson_line_cut_off_mid_object_is_one_quarantined_row(landing, warehouse, where):
    """The measured case: a Patient resource cut off mid-object. Line 1 of an NDJSON
    file is a resource, not a header, so it is counted like any other line."""
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    lines = landing.lines("health", day, "Patient.ndjson")
    line_no = {"first": 1, "middle": len(lines) // 2, "last": len(lines)}[where]
    lines[line_no - 1] = lines[line_no - 1][: len(lines[line_no - 1]) // 2]  # cut off mid-object
    landing.write_lines("health", day, "Patient.ndjson", lines)
    manifest_rows = landing.manifest_rows("health", day, "Patient.ndjson")
    landing.resign_manifest("health", day)

    summary = warehouse.ingest(landing, "health")["health"]

    assert summary.staged == [day] and not summary.rejected
    assert hard_issues(warehouse, "health", day, "Patient.ndjson") == [(line_no, "unreadable_line", "patients")]
    [issue] = [i for i in warehouse.issues("health", day, "Patient.ndjson") if i["rule"] == "unreadable_line"]
    assert (issue["system"], str(issue["extract_date"]), issue["message"]) == ("health", day, "not valid JSON")
    row = warehouse.drop_file("health", day, "Patient.ndjson")
    assert (row["delivered_rows"], row["staged_rows"], row["quarantined_rows"]) == (manifest_rows, manifest_rows - 1, 1)
    assert staged_lines(warehouse, "health__patients", day) == ndjson_line_numbers(lines) - {line_no}
    reconciles_with_manifest(landing, warehouse, "health", day)
    assert checks.reconciliation(warehouse.con, "health").passed
    assert summary.rows_delivered == sum(f["rows"] for f in landing.manifest("health", day)["files"])


@pytest.mark.parametrize(("field", "value", "severity"), [
    ("birthDate", "31/02/2020", "hard"),  # not a date: the row is quarantined
    ("gender", "robot", "soft"),          # an unknown code in an optional column: flagged, staged
])
def test_rules_broken_on_the_first_ndjson_line_are_counted(landing, warehouse, make_warehouse, field, value, severity):
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    baseline = make_warehouse("baseline")
    baseline.ingest(landing, "health")
    before = baseline.drop_file("health", day, "Patient.ndjson")
    lines = landing.lines("health", day, "Patient.ndjson")
    resource = json.loads(lines[0])
    resource[field] = value
    lines[0] = json.dumps(resource, separators=(",", ":")).encode()
    landing.write_lines("health", day, "Patient.ndjson", lines)
    landing.resign_manifest("health", day)

    warehouse.ingest(landing, "health")

    row = warehouse.drop_file("health", day, "Patient.ndjson")
    on_line_1 = [(i["rule"], i["severity"]) for i in warehouse.issues("health", day, "Patient.ndjson")
                 if i["line_no"] == 1 and i["table_name"] == "patients"]
    if severity == "hard":
        assert on_line_1 == [("unparseable_date", "hard")]
        assert (row["staged_rows"], row["quarantined_rows"]) == (before["staged_rows"] - 1, before["quarantined_rows"] + 1)
        assert 1 not in staged_lines(warehouse, "health__patients", day)
    else:
        assert on_line_1 == [("unknown_code", "soft")]
        assert row["flagged_values"] == before["flagged_values"] + 1
        assert row["staged_rows"] == before["staged_rows"]
    reconciles_with_manifest(landing, warehouse, "health", day)
    assert checks.reconciliation(warehouse.con, "health").passed


def test_ndjson_line_of_only_spaces_and_tabs_is_blank_not_a_row(landing, warehouse):
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    lines = landing.lines("health", day, "Encounter.ndjson")
    lines.insert(5, b" \t ")  # line 6: blank, as a blank line is
    landing.write_lines("health", day, "Encounter.ndjson", lines)
    landing.rewrite_manifest("health", day)  # the system counted its resources

    summary = warehouse.ingest(landing, "health")["health"]

    assert summary.staged == [day], summary.rejected
    assert hard_issues(warehouse, "health", day, "Encounter.ndjson") == []
    assert staged_lines(warehouse, "health__encounters", day) == ndjson_line_numbers(lines) - {6}
    reconciles_with_manifest(landing, warehouse, "health", day)


# ================================================================== CSV
def _cut_inside_a_quoted_value(line: bytes) -> bytes:
    """The line cut off inside its third value, leaving that value's quote open."""
    start = [i for i, ch in enumerate(line) if ch == ord('"')][4]  # the quote opening the third value
    return line[: start + 3]


@pytest.mark.parametrize(("system", "file", "where"), [
    ("social_care", "ssd_person.csv", "middle"),      # UTF-8 with BOM, CRLF
    ("early_help", "FAMILY_MEMBERS.csv", "middle"),   # Windows-1252
    ("mash", "contacts.csv", "last"),                  # the last value's closing quote lost
])
def test_csv_line_with_an_unterminated_quote_is_one_quarantined_row(landing, warehouse, system, file, where):
    """Read as CSV, a quote never closed swallows the lines after it into one value up
    to the next quote (or the end of the file). The line that opened it is unreadable;
    the lines after it are read as their own records."""
    day = landing.city_dates(system)[0]
    landing.copy(system, day)
    lines = landing.lines(system, day, file)
    if where == "middle":
        line_no = len(lines) // 2
        lines[line_no - 1] = _cut_inside_a_quoted_value(lines[line_no - 1])
    else:
        line_no = len(lines)
        assert lines[-1].endswith(b'"')
        lines[-1] = lines[-1][:-1]
    landing.write_lines(system, day, file, lines)
    manifest_rows = landing.manifest_rows(system, day, file)
    assert manifest_rows == len(lines) - 1  # one record per line, as the system wrote them
    landing.resign_manifest(system, day)
    assert verify(read_manifest(system, date.fromisoformat(day), landing.folder(system, day)),
                  load_contract(system).encoding).ok  # checking the drop alone counts rows as ingestion does

    summary = warehouse.ingest(landing, system)[system]

    assert summary.staged == [day] and not summary.rejected, summary.rejected
    table = load_contract(system).table_for_file(file).name
    assert hard_issues(warehouse, system, day, file) == [(line_no, "unreadable_line", table)]
    [issue] = [i for i in warehouse.issues(system, day, file) if i["rule"] == "unreadable_line"]
    assert "never closed" in issue["message"] and issue["raw_value"]
    assert staged_lines(warehouse, f"{system}__{table.lower()}", day) == set(range(2, len(lines) + 1)) - {line_no}
    row = warehouse.drop_file(system, day, file)
    assert (row["delivered_rows"], row["staged_rows"], row["quarantined_rows"]) == (manifest_rows, manifest_rows - 1, 1)
    reconciles_with_manifest(landing, warehouse, system, day)
    assert checks.reconciliation(warehouse.con, system).passed


def test_lone_carriage_return_in_a_csv_line_is_one_quarantined_row(landing, warehouse):
    """A \\r outside quotes is not a line end in a CRLF or LF file: the line holding it is
    one unreadable row, not two."""
    day = landing.city_dates("mash")[0]
    landing.copy("mash", day)
    lines = landing.lines("mash", day, "contacts.csv")
    lines[29] = lines[29].replace(b'",', b'"\r,', 1)  # line 30
    landing.write_lines("mash", day, "contacts.csv", lines)
    landing.resign_manifest("mash", day)

    summary = warehouse.ingest(landing, "mash")["mash"]

    assert summary.staged == [day], summary.rejected
    assert hard_issues(warehouse, "mash", day, "contacts.csv") == [(30, "unreadable_line", "contacts")]
    assert staged_lines(warehouse, "mash__contacts", day) == set(range(2, len(lines) + 1)) - {30}
    reconciles_with_manifest(landing, warehouse, "mash", day)


def test_undecodable_header_quarantines_the_file_whole_and_counts_every_row(landing, warehouse):
    """A header that cannot be decoded no longer crashes the read: its broken column name
    fails the contract, so every row of the file is quarantined and counted."""
    day = landing.city_dates("education")[0]
    landing.copy("education", day)
    lines = landing.lines("education", day, "pupils.csv")
    assert b'"Surname"' in lines[0]
    lines[0] = lines[0].replace(b'"Surname"', b'"Sur\xffname"')
    landing.write_lines("education", day, "pupils.csv", lines)
    landing.resign_manifest("education", day)
    rows = landing.manifest_rows("education", day, "pupils.csv")

    summary = warehouse.ingest(landing, "education")["education"]

    assert summary.staged == [day] and not summary.rejected
    issues = warehouse.issues("education", day, "pupils.csv")
    assert [(i["line_no"], i["rule"]) for i in issues if i["line_no"] == 1 and i["severity"] == "hard"] == [
        (1, "missing_column"), (1, "wrong_encoding")]
    assert sorted(i["line_no"] for i in issues if i["rule"] == "file_rejected") == list(range(2, rows + 2))
    row = warehouse.drop_file("education", day, "pupils.csv")
    assert (row["status"], row["delivered_rows"], row["staged_rows"], row["quarantined_rows"]) == (
        "quarantined", rows, 0, rows)
    reconciles_with_manifest(landing, warehouse, "education", day)


@pytest.mark.parametrize("system", ["education", "social_care", "early_help", "mash", "reference"])
def test_reading_record_by_record_gives_the_rows_arrow_gives(landing, system):
    """The record-by-record reading (taken for a file with a multi-line value, a blank
    line or a stray quote) gives the same rows, values and lines as Arrow's, so a file
    does not change its staged values by holding one bad line."""
    day = landing.city_dates(system)[0]
    encoding = load_contract(system).encoding
    for path in sorted((landing.city / system / day).glob("*.csv")):
        fast = staging.read_csv_text(path, encoding)
        text, bad = staging._as_utf8(path.read_bytes(), encoding)
        header, rows, lines, unreadable = staging._read_by_record(text.decode("utf-8"), [])
        assert (bad, unreadable, fast.issues.num_rows) == ([], [], 0), path.name
        assert header == fast.header, path.name
        assert rows.append_column("_line", staging.pa.array(lines, staging.pa.int64())).equals(fast.rows), path.name


# ================================================================== the reconciliation check
def test_reconciliation_fails_when_staged_rows_disagree_with_the_manifest(landing, warehouse, make_warehouse):
    """A real disagreement: the manifest states one row more than the drop staged (same
    files, so the same delivery), and the warehouse is rebuilt from staged Parquet after
    the raw files were archived. The check names system, drop, file and both counts."""
    day = landing.city_dates("mash")[0]
    landing.copy("mash", day)
    warehouse.ingest(landing, "mash")
    assert checks.reconciliation(warehouse.con, "mash").passed
    rows = landing.manifest_rows("mash", day, "contacts.csv")
    landing.resign_manifest("mash", day, rows={"contacts.csv": rows + 1})  # sha256 unchanged: same fingerprint
    for path in landing.folder("mash", day).iterdir():
        if path.name != "_manifest.json":
            path.unlink()  # archived away

    rebuilt = make_warehouse("rebuilt")
    rebuilt.staged_dir = warehouse.staged_dir
    summary = rebuilt.ingest(landing, "mash")["mash"]

    assert summary.restored == [day]
    outcome = checks.reconciliation(rebuilt.con, "mash")
    assert not outcome.passed and outcome.failing_rows == 1
    assert outcome.observed["differ_from_manifest"] == 1
    [failing] = outcome.sample
    assert {k: failing[k] for k in ("system", "extract_date", "file", "manifest_rows", "delivered")} == {
        "system": "mash", "extract_date": day, "file": "contacts.csv", "manifest_rows": rows + 1, "delivered": rows}


def test_an_older_warehouse_gains_manifest_rows_in_place(landing, warehouse):
    """A HOME whose audit.drop_file predates manifest_rows: the next ingest adds the
    column, keeps every row and column it had, and fills the loaded files' manifest
    rows from their (unchanged) manifests, so the check can pass."""
    first, second = landing.city_dates("mash")[:2]
    landing.copy("mash", first, second)
    warehouse.ingest(landing, "mash", run_id="before")
    warehouse.con.execute("ALTER TABLE audit.drop_file DROP COLUMN manifest_rows")  # the table as it was
    old_columns = [r[0] for r in warehouse.all("DESCRIBE audit.drop_file")]
    old_rows = warehouse.all("SELECT * FROM audit.drop_file ORDER BY ALL")

    summary = warehouse.ingest(landing, "mash", run_id="after")["mash"]

    assert sorted(summary.unchanged) == [first, second] and summary.staged == []
    assert [r[0] for r in warehouse.all("DESCRIBE audit.drop_file")] == old_columns + ["manifest_rows"]
    assert warehouse.all(f"SELECT {', '.join(old_columns)} FROM audit.drop_file ORDER BY ALL") == old_rows
    for day in (first, second):
        reconciles_with_manifest(landing, warehouse, "mash", day)
    assert checks.reconciliation(warehouse.con, "mash").passed


# ================================================================== restore from staged Parquet
def _health_drop_with_line_one_cut(landing) -> str:
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    lines = landing.lines("health", day, "Patient.ndjson")
    lines[0] = lines[0][:100]
    landing.write_lines("health", day, "Patient.ndjson", lines)
    landing.resign_manifest("health", day)
    return day


FILE_COUNTS = ("SELECT file_name, manifest_rows, delivered_rows, staged_rows, quarantined_rows, flagged_values, status "
               "FROM audit.drop_file_loaded ORDER BY ALL")


def test_restore_from_staged_parquet_keeps_counts_that_reconcile(landing, warehouse, make_warehouse):
    day = _health_drop_with_line_one_cut(landing)
    warehouse.ingest(landing, "health")
    counts = warehouse.all(FILE_COUNTS)
    issues = warehouse.all("SELECT * FROM quarantine.issue ORDER BY ALL")
    reconciles_with_manifest(landing, warehouse, "health", day)
    for path in landing.folder("health", day).iterdir():
        if path.name != "_manifest.json":
            path.unlink()

    rebuilt = make_warehouse("rebuilt")
    rebuilt.staged_dir = warehouse.staged_dir
    summary = rebuilt.ingest(landing, "health")["health"]

    assert summary.restored == [day]
    assert rebuilt.all(FILE_COUNTS) == counts
    assert rebuilt.all("SELECT * FROM quarantine.issue ORDER BY ALL") == issues
    reconciles_with_manifest(landing, rebuilt, "health", day)
    assert checks.reconciliation(rebuilt.con, "health").passed


def test_a_staged_record_that_miscounted_is_read_again_from_the_raw_files(landing, warehouse, make_warehouse):
    """A _loads record written by a build that left an unreadable line out of its
    counts is not restored while the raw files are there: the drop is read again."""
    day = _health_drop_with_line_one_cut(landing)
    warehouse.ingest(landing, "health")
    counts = warehouse.all(FILE_COUNTS)
    record_path = warehouse.staged_dir / "health" / "_loads" / f"{day}.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    for f in record["files"]:
        if f["file_name"] == "Patient.ndjson":  # as the build before the fix recorded it
            f["delivered"] -= 1
            f["quarantined"] -= 1
    record_path.write_text(json.dumps(record), encoding="utf-8")

    rebuilt = make_warehouse("rebuilt")
    shutil.copytree(warehouse.staged_dir, rebuilt.staged_dir)
    summary = rebuilt.ingest(landing, "health")["health"]

    assert summary.staged == [day] and summary.restored == []
    assert rebuilt.all(FILE_COUNTS) == counts
    assert checks.reconciliation(rebuilt.con, "health").passed
