"""Supplier text never becomes markup in a page the project writes.

Each test puts script-bearing values where a source file or the database could put them
(a name, a code, a column header, a check sample, a comment, a file name) and reads the
pages written to disk: the values must show as text, escaped, and never as live tags.
The Great Expectations tests also check that the samples stay, raw, in the audit tables.
"""

import html
import json
import re
from pathlib import Path

import duckdb
import pandas as pd

from assets.dictionary import build_dictionary
from assets.features.evaluate import load_config, train_and_evaluate
from assets.features.model_card import write_model_card
from assets.identity.model import MODEL_PATH, TRAINING_KEY
from assets.identity import training_report
from quality import data_docs
from quality.audit import Outcome, record_check, summarise_quarantine
from quality.contract_suites import validate
from quality.data_docs import build_site, site_dir, store_dir
from quality.expectations import validate_warehouse_tables
from quality.report import write_quality_report
from sources.ingest import prepare
from tests.features.test_evaluate import lenient, write_city

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'  # closes a quoted attribute, then a tag runs script


def assert_inert(text: str, where) -> None:
    assert "<script>alert(1)" not in text, where
    assert "<img src=x" not in text, where


def assert_shown_escaped(text: str, *values: str) -> None:
    """The value is on the page as text (so the inert check above is not vacuous)."""
    for value in values:
        assert html.escape(value) in text, value


def gx_files(reports: Path) -> list[Path]:
    files = [p for folder in (site_dir(reports), store_dir(reports)) for p in folder.rglob("*")
             if p.suffix in (".html", ".json")]
    assert any(p.suffix == ".html" and "validations" in p.parts for p in files)
    return files


def _people(con, sex: str, system: str) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    con.execute("CREATE TABLE identity.person (person_key VARCHAR, forename VARCHAR, sex VARCHAR)")
    con.execute("CREATE TABLE identity.person_record (person_key VARCHAR, system VARCHAR, table_name VARCHAR, "
                "record_id VARCHAR, match_probability DOUBLE, link_rule VARCHAR)")
    con.executemany("INSERT INTO identity.person VALUES (?, ?, ?)", [("P1", "Amy", "F"), ("P2", "Ben", sex)])
    con.executemany("INSERT INTO identity.person_record VALUES (?, ?, ?, ?, ?, ?)",
                    [("P1", "health", "patients", "1", 1.0, "nhs_number"), ("P2", system, "x", "2", 1.0, "splink")])


def test_unexpected_values_are_escaped_in_data_docs_and_kept_raw_in_the_audit_table(tmp_path):
    con = duckdb.connect(str(tmp_path / "build.duckdb"))
    prepare(con)
    _people(con, sex=SCRIPT, system=BREAKOUT)
    reports = tmp_path / "reports"
    validate_warehouse_tables(con, "run-x", reports)

    pages = gx_files(reports)
    for page in pages:
        assert_inert(page.read_text(encoding="utf-8"), page)
    result_pages = "".join(p.read_text(encoding="utf-8") for p in pages
                           if p.suffix == ".html" and "validations" in p.parts)
    assert_shown_escaped(result_pages, SCRIPT, BREAKOUT)  # reviewers still see what was wrong

    audit = {column: (count, json.loads(sample)) for column, count, sample in con.execute("""
        SELECT column_name, unexpected_count, partial_unexpected FROM audit.gx_validation
        WHERE run_id = 'run-x' AND expectation = 'expect_column_values_to_be_in_set'""").fetchall()}
    assert audit["sex"] == (1, [SCRIPT]) and audit["system"] == (1, [BREAKOUT])
    con.close()


def test_a_supplied_column_header_is_escaped_where_data_docs_show_the_observed_columns(tmp_path):
    frame = pd.DataFrame({"postcode": ["ZX1 0AA"], "lsoa": ["E01000001"], SCRIPT: [BREAKOUT]})
    rows = validate("reference", "postcodes", frame, tmp_path / "reports", run_name="run-h")

    columns = next(r for r in rows if r["expectation"] == "expect_table_columns_to_match_ordered_list")
    assert not columns["success"]
    for page in gx_files(tmp_path / "reports"):
        assert_inert(page.read_text(encoding="utf-8"), page)


def _unescaped(value):
    if isinstance(value, str):
        return html.unescape(value)
    if isinstance(value, dict):
        return {_unescaped(k): _unescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    return value


def test_results_and_pages_written_before_escaping_are_escaped_at_the_next_build(tmp_path):
    reports = tmp_path / "reports"
    validate("reference", "postcodes", pd.DataFrame({"postcode": ["ZX1 0AA"], "lsoa": ["E01000001"], SCRIPT: [1]}),
             reports, run_name="run-old")
    # Make the store and site look as an older release left them: values raw, pages raw.
    for stored in (store_dir(reports) / "validations").rglob("*.json"):
        document = _unescaped(json.loads(stored.read_text(encoding="utf-8")))
        document["meta"].pop(data_docs.ESCAPED_MARK, None)
        stored.write_text(json.dumps(document), encoding="utf-8")
    for page in (site_dir(reports) / "validations").rglob("*.html"):
        page.write_text(f"<html><body><div>{SCRIPT}</div></body></html>", encoding="utf-8")
    (site_dir(reports) / data_docs.SITE_ESCAPED_MARKER).unlink(missing_ok=True)
    data_docs._CONTEXTS.clear()  # a new process after the upgrade

    build_site(reports)
    build_site(reports)  # and a second build, now marked, does not escape them twice
    for page in gx_files(reports):
        assert_inert(page.read_text(encoding="utf-8"), page)
    [page] = (site_dir(reports) / "validations").rglob("*.html")
    text = page.read_text(encoding="utf-8")
    assert_shown_escaped(text, SCRIPT)
    assert "&amp;lt;" not in text


def test_the_quality_report_escapes_check_values_and_quarantine_rules(tmp_path):
    con = duckdb.connect(str(tmp_path / "build.duckdb"))
    prepare(con)
    record_check(con, "run-1", SCRIPT, BREAKOUT, "blocking",
                 Outcome(False, {"forename": SCRIPT}, BREAKOUT, 2, [SCRIPT, {"surname": BREAKOUT}]), build_id=SCRIPT)
    con.execute("INSERT INTO quarantine.issue VALUES (?, DATE '2025-01-31', ?, 't', 1, 'c', ?, 'hard', ?, ?)",
                [SCRIPT, BREAKOUT, SCRIPT, SCRIPT, BREAKOUT])
    summarise_quarantine(con, SCRIPT)

    page = write_quality_report(con, tmp_path / "reports").read_text(encoding="utf-8")
    assert_inert(page, "quality report")
    assert_shown_escaped(page, SCRIPT, BREAKOUT)
    con.close()


def test_the_data_dictionary_escapes_names_comments_and_descriptions(tmp_path):
    con = duckdb.connect(str(tmp_path / "build.duckdb"))
    con.execute("CREATE SCHEMA identity")
    con.execute(f'CREATE TABLE identity.person (person_key VARCHAR, "{SCRIPT}" VARCHAR)')
    con.execute(f"COMMENT ON TABLE identity.person IS '{SCRIPT}'")
    con.execute(f"COMMENT ON COLUMN identity.person.person_key IS '{BREAKOUT}'")
    descriptions = tmp_path / "descriptions.yaml"
    descriptions.write_text(json.dumps({"tables": {"identity.person": {"grain": BREAKOUT}}}), encoding="utf-8")
    (tmp_path / "sql").mkdir()

    page = build_dictionary(con, tmp_path / "reports", schemas=("identity",), sql_root=tmp_path / "sql",
                            descriptions=descriptions).read_text(encoding="utf-8")
    assert_inert(page, "data dictionary")
    assert_shown_escaped(page, SCRIPT, BREAKOUT)
    con.close()


def test_the_model_card_escapes_labels_groups_and_reasons(tmp_path):
    con = write_city(tmp_path / "warehouse.duckdb")
    train_and_evaluate(con, lenient(load_config()))
    con.execute("UPDATE features.model_run SET run_id = ?, clears_bar = false, bar_failures = ?", [SCRIPT, BREAKOUT])
    con.execute("UPDATE features.model_coefficient SET label = ? WHERE feature <> '(intercept)'", [SCRIPT])
    con.execute("UPDATE features.model_subgroup SET group_value = ? WHERE subgroup <> 'all'", [BREAKOUT])
    con.execute("UPDATE features.model_flag SET reason_1_feature = ? WHERE period = 'current'", [SCRIPT])

    page = write_model_card(con, tmp_path / "model_card.html").read_text(encoding="utf-8")
    assert_inert(page, "model card")
    assert_shown_escaped(page, SCRIPT, BREAKOUT)
    con.close()


def test_the_training_report_escapes_every_value_of_the_saved_model(tmp_path):
    model = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    model["probability_two_random_records_match"] = SCRIPT  # a hand-edited or corrupted model file
    model["comparisons"][0]["comparison_levels"][1]["label_for_charts"] = BREAKOUT
    model[TRAINING_KEY] = {"fitted": True, "fitted_at": SCRIPT, "records": 2, "prior": BREAKOUT,
                           "records_by_system": {SCRIPT: 2}, "em_sessions": [{"block": BREAKOUT, "pairs": 1}],
                           "settings": {SCRIPT: BREAKOUT}}
    path = tmp_path / "person_model_crafted.json"
    path.write_text(json.dumps(model), encoding="utf-8")

    page = training_report.render(path, MODEL_PATH, specs={})
    assert_inert(page, "training report")
    assert_shown_escaped(page, SCRIPT, BREAKOUT)


def test_the_training_report_index_links_only_to_files_beside_it(tmp_path):
    reports = tmp_path / "identity"
    reports.mkdir()
    (reports / "person_model_2025.html").write_text("x", encoding="utf-8")
    (reports / "javascript:alert(1).html").write_text("x", encoding="utf-8")

    index = training_report.write_index(reports).read_text(encoding="utf-8")
    hrefs = re.findall(r"href=['\"]([^'\"]*)['\"]", index)
    assert len(hrefs) == 2 and all(h.startswith("./") for h in hrefs), hrefs
    assert_inert(index, "training report index")
