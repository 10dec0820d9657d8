"""A drop is confined to its own folder: a supplier's manifest or links cannot make
ingestion read, hash or quote a file anywhere else, and no declared row count is trusted.

Each test builds a hostile drop from a real MASH drop of the session city, ingests it
into a real DuckDB file and checks that it is rejected with a reason naming the entry,
that the neighbouring drops still stage, and that nothing of the outside file reached
the audit or quarantine tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from .test_bad_input import mash_drops

SECRET_LINE = "outside-the-drop,never-to-be-read"


@pytest.fixture
def outside(tmp_path):
    """A file outside every drop, as /etc/passwd would be."""
    path = tmp_path / "outside.csv"
    path.write_text(SECRET_LINE + "\n" + SECRET_LINE + "\n", encoding="utf-8")
    return path


def _manifest(landing, day: str) -> tuple[dict, object]:
    path = landing.folder("mash", day) / "_manifest.json"
    return json.loads(path.read_text(encoding="utf-8")), path


def _nothing_of(warehouse, outside) -> None:
    """No trace of the outside file: not its lines, not its hash."""
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    texts = [str(r) for r in warehouse.all("SELECT * FROM quarantine.issue")]
    texts += [str(r) for r in warehouse.all("SELECT * FROM audit.drop")]
    texts += [str(r) for r in warehouse.all("SELECT * FROM audit.drop_file")]
    assert not any(SECRET_LINE in t or digest[:12] in t for t in texts)


@pytest.mark.parametrize("entry", ["../../outside.csv", "{outside}", "sub/contacts.csv", ".."],
                         ids=["climbs out", "absolute path", "a sub-folder", "the parent itself"])
def test_a_manifest_entry_that_is_not_a_plain_file_name_rejects_the_drop_unread(landing, warehouse, outside, entry):
    first, later = mash_drops(landing, later=1)
    landing.copy("mash", first, *later)
    entry = entry.format(outside=outside)
    manifest, path = _manifest(landing, first)
    manifest["files"].append({"name": entry, "rows": 2, "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()})
    path.write_text(json.dumps(manifest), encoding="utf-8")

    summary = warehouse.ingest(landing, "mash")["mash"]

    assert list(summary.rejected) == [first] and summary.staged == later
    status, reason = warehouse.drop_status("mash", first)
    assert status == "rejected" and "is not a plain file name inside the drop folder" in reason
    assert repr(entry)[:40] in reason
    _nothing_of(warehouse, outside)


def test_a_listed_file_that_is_a_symbolic_link_rejects_the_drop_unfollowed(landing, warehouse, outside):
    first, later = mash_drops(landing, later=1)
    landing.copy("mash", first, *later)
    contacts = landing.path("mash", first, "contacts.csv")
    contacts.unlink()
    os.symlink(outside, contacts)  # the manifest still lists contacts.csv

    summary = warehouse.ingest(landing, "mash")["mash"]

    assert list(summary.rejected) == [first] and summary.staged == later
    _, reason = warehouse.drop_status("mash", first)
    assert f"mash/{first}/'contacts.csv': is a symbolic link (refused, not followed)" in reason
    assert "sha256" not in reason
    _nothing_of(warehouse, outside)


def test_a_drop_folder_that_is_a_symbolic_link_is_refused(landing, warehouse, tmp_path):
    first, later = mash_drops(landing, later=1)
    landing.copy("mash", *later)
    elsewhere = tmp_path / "elsewhere" / first
    elsewhere.parent.mkdir()
    shutil.copytree(landing.city / "mash" / first, elsewhere)
    os.symlink(elsewhere, landing.folder("mash", first))

    summary = warehouse.ingest(landing, "mash")["mash"]

    assert list(summary.rejected) == [first] and summary.staged == later
    _, reason = warehouse.drop_status("mash", first)
    assert reason == f"mash/{first}: the drop folder is a symbolic link (refused, not followed)"
    assert warehouse.staged_count("mash__contacts", first) == 0


def test_a_file_outside_the_contract_is_counted_not_taken_at_its_word(landing, warehouse):
    """An extra file the contract does not read stays visible (quarantined whole), but the
    rows it declares are checked: a manifest claiming 10^15 rows rejects the drop."""
    first, later = mash_drops(landing, later=1)
    landing.copy("mash", first, *later)
    extra = landing.path("mash", first, "notes.csv")
    extra.write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    manifest, path = _manifest(landing, first)
    manifest["files"].append({"name": "notes.csv", "rows": 10**15, "sha256": hashlib.sha256(extra.read_bytes()).hexdigest()})
    path.write_text(json.dumps(manifest), encoding="utf-8")

    summary = warehouse.ingest(landing, "mash")["mash"]

    assert list(summary.rejected) == [first]
    _, reason = warehouse.drop_status("mash", first)
    assert f"mash/{first}/notes.csv: 2 data rows, the manifest says {10**15}" in reason

    # declared truthfully, it stages its drop and is audited at its real size
    manifest["files"][-1]["rows"] = 2
    path.write_text(json.dumps(manifest), encoding="utf-8")
    warehouse.ingest(landing, "mash")
    (delivered, quarantined, status), = warehouse.all(
        "SELECT delivered_rows, quarantined_rows, status FROM audit.drop_file WHERE extract_date = ? "
        "AND file_name = 'notes.csv' ORDER BY recorded_at DESC LIMIT 1", [first])
    assert (delivered, quarantined, status) == (2, 2, "quarantined")
