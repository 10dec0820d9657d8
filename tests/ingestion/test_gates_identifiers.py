"""The blocking identifier_validity gate judges every column a contract marks as an NHS
number or a UPN, not only the columns someone remembered to list: a drop whose
enrolments.csv (or pupils.csv FormerUPN) carries too many UPNs failing their check
letter fails the gate, naming the table and column.

Each test copies one education census drop of the session city, breaks the check
letter of one value in ten in one column, has the system "send" it (manifest rewritten)
and stages it into a real DuckDB file.
"""

from __future__ import annotations

from quality import checks
from quality.audit import thresholds
from sources.identifiers import UPN_ALPHABET, is_valid_upn

CENSUS = "2025-10-16"  # a full education census drop: every file, about 2,000 pupils


def broken(upn: str) -> str:
    """The same UPN under the next check letter: well formed, failing its check."""
    wrong = UPN_ALPHABET[(UPN_ALPHABET.index(upn[0]) + 1) % len(UPN_ALPHABET)] + upn[1:]
    assert not is_valid_upn(wrong)
    return wrong


def identifier_gate(warehouse):
    rule = thresholds()["identifiers"]
    return checks.invalid_identifiers(warehouse.con, "education", rule["max_invalid_share"], rule["min_values"])


def test_the_unbroken_census_drop_passes(landing, warehouse):
    landing.copy("education", CENSUS)
    warehouse.ingest(landing, "education")
    outcome = identifier_gate(warehouse)
    assert outcome.passed, outcome.sample
    # the UPN columns of pupils, enrolments, fsm, sen, attendance, exclusions and ehe;
    # FormerUPN and cme.UPN hold fewer than min_values (20) values in the small city
    assert outcome.observed["column_drops_judged"] == 7


def test_too_many_invalid_upns_in_enrolments_fail_the_drop_naming_table_and_column(landing, warehouse):
    landing.copy("education", CENSUS)
    header, rows = landing.records("education", CENSUS, "enrolments.csv")
    at = header.index("UPN")
    holding = [r for r in rows if is_valid_upn(r[at])]
    assert len(holding) >= 1000
    for row in holding[::10]:  # one in ten: twice the 5% threshold over the city's ~1.5%
        row[at] = broken(row[at])
    landing.write_records("education", CENSUS, "enrolments.csv", header, rows)
    landing.rewrite_manifest("education", CENSUS)

    warehouse.ingest(landing, "education")
    outcome = identifier_gate(warehouse)

    assert not outcome.passed
    assert [(s["table"], s["column"], s["extract_date"]) for s in outcome.sample] == [
        ("education__enrolments", "UPN", CENSUS)]
    assert outcome.observed["worst_invalid_share"] > thresholds()["identifiers"]["max_invalid_share"]


def test_invalid_former_upns_fail_the_drop(landing, warehouse):
    """The small city gives about 15 pupils a former UPN, under the 20 values a drop needs
    to be judged; 30 more pupils are given their own UPN under a wrong check letter."""
    landing.copy("education", CENSUS)
    header, rows = landing.records("education", CENSUS, "pupils.csv")
    upn, former = header.index("UPN"), header.index("FormerUPN")
    without = [r for r in rows if is_valid_upn(r[upn]) and not r[former]]
    for row in without[:30]:
        row[former] = broken(row[upn])
    landing.write_records("education", CENSUS, "pupils.csv", header, rows)
    landing.rewrite_manifest("education", CENSUS)

    warehouse.ingest(landing, "education")
    outcome = identifier_gate(warehouse)

    assert not outcome.passed
    assert [(s["table"], s["column"], s["invalid"]) for s in outcome.sample] == [
        ("education__pupils", "FormerUPN", 30)]
