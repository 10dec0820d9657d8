"""The Great Expectations suites are the contracts' rules, and they catch bad deliveries."""

import json

import pandas as pd

from quality.contract_suites import SUITES_DIR, validate, write_suites


def test_stored_suites_are_generated_from_the_current_contracts(tmp_path):
    fresh = {p.name: p.read_text() for p in write_suites(tmp_path)}
    stored = {p.name: p.read_text() for p in SUITES_DIR.glob("*.json")}
    assert stored == fresh, "run `python -m quality.contract_suites` after changing a contract"


def test_suite_fails_the_expectations_a_bad_file_breaks(small_city):
    landing = small_city[0] / "landing"
    first = sorted((landing / "mash").iterdir())[0]
    frame = pd.read_csv(first / "contacts.csv", dtype=str, keep_default_na=False).replace("", None)
    good = validate("mash", "contacts", frame)
    assert all(r["success"] for r in good)

    frame.loc[0, "channel"] = "CARRIER_PIGEON"
    frame.loc[1, "received_at"] = "2025-10-26 01:30"  # no offset: not an instant
    frame.loc[2, "contact_id"] = None
    failed = {(r["expectation"], r["column_name"]): r for r in validate("mash", "contacts", frame) if not r["success"]}
    assert failed[("expect_column_values_to_be_in_set", "channel")]["unexpected_count"] == 1
    assert failed[("expect_column_values_to_match_regex", "received_at")]["unexpected_count"] == 1
    assert failed[("expect_column_values_to_not_be_null", "contact_id")]["unexpected_count"] == 1
    assert "CARRIER_PIGEON" in json.loads(failed[("expect_column_values_to_be_in_set", "channel")]["partial_unexpected"])
