"""The review workstream's audit trail: every check result kept, drift detected, the
report naming every check, and a blocking failure stopping the build."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import duckdb

from pipelines.build import build
from quality import checks
from quality.audit import Outcome, blocking_failures, record_check, thresholds
from quality.report import write_quality_report

DRIFT = thresholds()["drift"]


def test_drift_fires_when_a_table_halves_and_not_when_it_is_unchanged(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE t AS SELECT i AS id, CASE WHEN i % 2 = 0 THEN 'A' ELSE 'B' END AS code "
                "FROM range(1000) r(i)")
    checks.profile_table(con, "run-1", "t", ["code"])
    assert checks.drift(con, "run-1", "t", DRIFT).passed  # nothing to compare with yet
    checks.profile_table(con, "run-2", "t", ["code"])
    assert checks.drift(con, "run-2", "t", DRIFT).passed
    con.execute("DELETE FROM t WHERE id >= 500")
    checks.profile_table(con, "run-3", "t", ["code"])
    outcome = checks.drift(con, "run-3", "t", DRIFT)
    assert not outcome.passed
    assert {"metric": "row_count", "column": None, "code": None, "before": 1000.0, "now": 500.0} in outcome.sample


def test_drift_fires_when_a_code_distribution_moves(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE t AS SELECT i AS id, 'A' AS code FROM range(100) r(i)")
    checks.profile_table(con, "run-1", "t", ["code"])
    con.execute("UPDATE t SET code = 'B' WHERE id < 40")
    checks.profile_table(con, "run-2", "t", ["code"])
    moved = checks.drift(con, "run-2", "t", DRIFT)
    assert not moved.passed and {m["code"] for m in moved.sample} == {"A", "B"}


def test_passing_and_failing_checks_are_both_kept_and_reported(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    record_check(con, "run-1", "staging/mash", "reconciliation", "blocking",
                 Outcome(True, {"files": 3}, "balanced"), build_id="b1")
    record_check(con, "run-1", "staging/mash", "identifier_validity", "blocking",
                 Outcome(False, {"worst_invalid_share": 0.9}, {"max_invalid_share": 0.05}, 40, [{"x": 1}]),
                 build_id="b1")
    record_check(con, "run-1", "staging/mash", "freshness", "warning", Outcome(False, 9, 2), build_id="b1")
    rows = con.sql("SELECT check_name, passed, failing_rows, build_id FROM audit.check_result ORDER BY 1").fetchall()
    assert rows == [("freshness", False, 0, "b1"), ("identifier_validity", False, 40, "b1"),
                    ("reconciliation", True, 0, "b1")]
    assert blocking_failures(con) == [("staging/mash", "identifier_validity")]
    page = write_quality_report(con, tmp_path / "reports").read_text()
    for name in ("reconciliation", "identifier_validity", "freshness"):
        assert name in page
    assert "1 blocking check(s) failed" in page
    # a later passing result clears the block; the failure stays in the history
    record_check(con, "run-2", "staging/mash", "identifier_validity", "blocking", Outcome(True, 0.01, 0.05), build_id="b2")
    assert blocking_failures(con) == []
    assert con.sql("SELECT count(*) FROM audit.check_result").fetchall()[0][0] == 4


def _spoil_nhs_numbers(drop: Path) -> int:
    """Give every MASH contact in the drop an NHS number failing modulus 11, as a
    sending system with a broken export would, and re-sign the manifest."""
    path = drop / "contacts.csv"
    header, *rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    column = header.index("child_nhs_number")
    for row in rows:
        row[column] = "9990000019"
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    manifest = json.loads((drop / "_manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == "contacts.csv":
            f["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (drop / "_manifest.json").write_text(json.dumps(manifest))
    return len(rows)


def test_a_drop_full_of_invalid_nhs_numbers_fails_a_blocking_check_and_stops_the_build(small_city, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(small_city[0] / "landing", landing)
    first_mash_drop = sorted((landing / "mash").iterdir())[0]
    assert _spoil_nhs_numbers(first_mash_drop) > 20
    result = build(landing, tmp_path / "home")
    assert result.runs["mash"] is False and not result.ok
    assert "identity" not in result.runs  # nothing downstream ran
    with duckdb.connect(str(tmp_path / "home" / "warehouse" / "build.duckdb"), read_only=True) as con:
        failed = con.sql("SELECT asset, check_name, severity FROM audit.check_result WHERE NOT passed").fetchall()
        assert ("staging/mash", "identifier_validity", "blocking") in failed
        assert con.sql("SELECT status FROM audit.run").fetchall() == [("failed",)]
    page = (tmp_path / "home" / "reports" / "quality" / "index.html").read_text()
    assert "blocking check(s) failed" in page and "identifier_validity" in page


def test_identity_checks_catch_two_nhs_numbers_in_one_person_and_a_link_the_twin_guard_should_refuse(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("""
        CREATE SCHEMA identity;
        CREATE TABLE identity.standardised_record AS SELECT * FROM (VALUES
            ('h/1', 'health', 'jayden', ['jayden'], 'okafor', 'ZX6 4EF', DATE '2018-06-14', '9991000011', NULL, NULL),
            ('h/2', 'health', 'ruby',   ['ruby'],   'okafor', 'ZX6 4EF', DATE '2018-06-14', NULL, NULL, NULL),
            ('e/3', 'education', 'ruby', ['ruby'],  'okafor', 'ZX6 4EF', DATE '2018-06-14', '9991000038', NULL, NULL))
          t(record_key, system, forename, forename_group, surname, postcode, dob, nhs_number, upn, former_upn);
        -- the records show twins born that day: the guard should have refused jayden ~ ruby
        CREATE TABLE identity.twin_birth AS SELECT DATE '2018-06-14' AS dob, 'surname' AS key_kind,
            'okafor' AS key_value, []::VARCHAR[] AS shared_forenames;
        CREATE TABLE identity.twin_share AS SELECT 0 AS pairs, 0 AS shown_twins, 0.0 AS share;
        CREATE TABLE identity.link_state AS SELECT 0.99 AS threshold;
        CREATE TABLE identity.person_record AS SELECT * FROM (VALUES
            ('P1', 'h/1'), ('P1', 'h/2'), ('P1', 'e/3')) t(person_key, record_key);
        CREATE TABLE identity.person AS SELECT 'P1' AS person_key, 2 AS system_count;
        CREATE TABLE identity.review_queue (pair_id VARCHAR);
        CREATE TABLE identity.link AS SELECT * FROM (VALUES
            ('h/1', 'h/2', 'accepted', 'probabilistic'), ('h/2', 'e/3', 'accepted', 'probabilistic'))
          t(record_l, record_r, status, link_rule);
    """)
    limits = thresholds()["identity"]
    constraints = checks.identity_constraints(con, limits["constraints"])
    assert not constraints.passed and constraints.observed["persons_with_two_nhs_numbers"] == 1
    assert constraints.sample == [{"problem": "1 persons hold two NHS numbers", "person_keys": ["P1"]}]
    coverage = checks.identity_coverage(con, limits["coverage"])
    assert not coverage.passed and coverage.observed["twin_guard_violations"] == 1  # jayden ~ ruby only
