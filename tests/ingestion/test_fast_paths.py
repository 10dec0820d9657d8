"""The faster paths of staging give what the plain ones gave.

- FHIR lines are split by Arrow when a file is valid UTF-8 ended by \\n only, else as
  ``str.splitlines()`` splits them; both number lines the same way.
- Each distinct row of a table is checked once and joined back to its lines by a hash
  of its values; if two distinct rows shared a hash, the rows are joined by value.
- History groups each distinct row with the drops it appears in and splits only the
  rows that recur after a gap.
"""

from __future__ import annotations

import json

import pytest

import sources.staging as staging
from sources.health import read_lines


@pytest.mark.parametrize("data", [
    b"", b"\n", b"a", b"a\n", b"a\n\nb", b"\n\n\n", b"a\r\nb\n", b"a\rb", b"v\x0bw\x0cx\x1cy\x1dz\x1e",
    "x\u0085y\nz".encode(), "caf\u00e9\u2028q\n".encode(), "\u00e9\n\u2029".encode(), "\u00c5\u00e8\u00e9\n\u20ac\n\n".encode(),
    b"bad\xff\nline", b"\xe2\x80", "{\"n\": \"Zo\u00eb\"}\n{\"n\": 1}".encode(),
])
def test_fhir_lines_are_those_splitlines_gives(data):
    assert read_lines(data).to_pylist() == data.decode("utf-8", errors="replace").splitlines()


def _ndjson_lines(landing, day, file):
    return landing.lines("health", day, file)


@pytest.mark.parametrize("fallback", [False, True], ids=["arrow-split", "splitlines"])
def test_unreadable_and_wrong_type_fhir_lines_are_quarantined_with_their_line(landing, warehouse, fallback):
    day = landing.city_dates("health")[0]
    landing.copy("health", day)
    lines = _ndjson_lines(landing, day, "Encounter.ndjson")
    patient = _ndjson_lines(landing, day, "Patient.ndjson")[0]
    lines[2] = b'{"resourceType": "Encounter", "id": broken'  # line 3: not JSON
    lines[4] = patient  # line 5: a Patient in the Encounter file
    lines.insert(6, b"")  # line 7: blank, neither a row nor an issue
    if fallback:  # a line separator inside a value sends the file the literal way
        lines[9] = lines[9].replace(b'"status":"', '"status":"\u0085'.encode(), 1)
    landing.write_lines("health", day, "Encounter.ndjson", lines)
    landing.rewrite_manifest("health", day)
    if fallback:  # U+0085 ends a line for str.splitlines(): the manifest counts one line more
        manifest = landing.manifest("health", day)
        for f in manifest["files"]:
            if f["name"] == "Encounter.ndjson":
                f["rows"] += 1
        (landing.folder("health", day) / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    summary = warehouse.ingest(landing, "health")["health"]

    assert summary.staged == [day], summary.rejected
    hard = sorted((i["line_no"], i["rule"], i["message"]) for i in warehouse.issues("health", day, "Encounter.ndjson")
                  if i["severity"] == "hard")
    expected = [(3, "unreadable_line", "not valid JSON"), (5, "wrong_resource_type", "not a Encounter resource")]
    if fallback:  # line 10 broke in two at U+0085: neither half is a JSON object
        expected += [(10, "unreadable_line", "not valid JSON"), (11, "unreadable_line", "not valid JSON")]
    assert hard == expected
    raw = {i["line_no"]: i["raw_value"] for i in warehouse.issues("health", day, "Encounter.ndjson")}
    assert raw[3] == '{"resourceType": "Encounter", "id": broken'
    assert raw[5] == patient.decode()[:500]
    staged = {n for (n,) in warehouse.all("SELECT _line FROM staging.health__encounters WHERE extract_date = ?", [day])}
    assert not staged & {3, 5, 7}
    assert max(staged) == len(lines) + (1 if fallback else 0)
    row = warehouse.drop_file("health", day, "Encounter.ndjson")
    assert row["delivered_rows"] == row["staged_rows"] + row["quarantined_rows"]


def test_repeated_key_names_the_line_it_first_appeared_on(landing, warehouse):
    days = landing.city_dates("early_help")[:2]
    landing.copy("early_help", *days)
    _, rows = landing.records("early_help", days[1], "WORKERS.csv")
    landing.set_value("early_help", days[1], "WORKERS.csv", 4, "WORKER_ID", rows[1][0])  # line 3's key again
    landing.rewrite_manifest("early_help", days[1])

    warehouse.ingest(landing, "early_help")

    [issue] = [i for i in warehouse.issues("early_help") if i["rule"] == "duplicate_key"]
    assert (str(issue["extract_date"]), issue["line_no"], issue["raw_value"]) == (days[1], 4, rows[1][0])
    assert issue["message"] == "key (WORKER_ID) already on line 3"
    assert 4 not in {n for (n,) in warehouse.all("SELECT _line FROM staging.early_help__workers WHERE extract_date = ?",
                                                 [days[1]])}


def test_rows_sharing_a_hash_are_joined_by_value(landing, warehouse, make_warehouse, monkeypatch):
    """Force the path taken when two distinct rows share a hash: same tables."""
    days = landing.city_dates("early_help")[:3]
    landing.copy("early_help", *days)
    landing.set_value("early_help", days[1], "REFERRALS.csv", 4, "REFERRAL_DATE", "yesterday")
    landing.rewrite_manifest("early_help", days[1])
    warehouse.ingest(landing, "early_help")

    monkeypatch.setattr(staging, "_hashes_unique", lambda con: False)
    by_value = make_warehouse("by_value")
    by_value.ingest(landing, "early_help")

    for schema in ("staging", "history", "quarantine"):
        assert by_value.table_contents(schema) == warehouse.table_contents(schema), schema


def test_history_splits_a_record_that_changes_back_or_comes_back(landing, warehouse):
    """Values A, B, A over three drops are three versions; a record missing from one drop
    is deleted there and a new version when it returns."""
    days = landing.city_dates("social_care")[:4]
    assert len(days) == 4
    landing.copy("social_care", *days)
    header, rows = landing.records("social_care", days[0], "ssd_person.csv")
    h = {name: i for i, name in enumerate(header)}
    changing, leaving = rows[5][h["pers_person_id"]], rows[6][h["pers_person_id"]]
    for day, forename in ((days[1], "Changed"), (days[3], "Again")):
        header, rows = landing.records("social_care", day, "ssd_person.csv")
        rows = [r[:h["pers_forename"]] + [forename] + r[h["pers_forename"] + 1:] if r[0] == changing else r for r in rows]
        landing.write_records("social_care", day, "ssd_person.csv", header, rows)
        landing.rewrite_manifest("social_care", day)
    header, rows = landing.records("social_care", days[2], "ssd_person.csv")
    landing.write_records("social_care", days[2], "ssd_person.csv", header, [r for r in rows if r[0] != leaving])
    landing.rewrite_manifest("social_care", days[2])

    warehouse.ingest(landing, "social_care")

    def versions(person):
        return [(str(f), None if t is None else str(t), cur, deleted) for f, t, cur, deleted in warehouse.all(
            "SELECT valid_from, valid_to, is_current, is_deleted FROM history.social_care__ssd_person "
            "WHERE pers_person_id = ? ORDER BY valid_from", [person])]

    assert versions(changing) == [(days[0], days[1], False, False), (days[1], days[2], False, False),
                                  (days[2], days[3], False, False), (days[3], None, True, False)]
    forenames = [f for (f,) in warehouse.all("SELECT pers_forename FROM history.social_care__ssd_person "
                                             "WHERE pers_person_id = ? ORDER BY valid_from", [changing])]
    assert forenames[1] == "Changed" and forenames[3] == "Again" and forenames[0] == forenames[2]
    assert versions(leaving) == [(days[0], days[2], False, True), (days[3], None, True, False)]
