"""GX results land in a Data Docs site under HOME/reports and in audit.gx_validation,
for source-table suites and for the key warehouse tables."""

import duckdb
import pandas as pd
import pytest

from quality.contract_suites import validate
from quality.data_docs import build_site, site_index
from quality.expectations import validate_warehouse_tables, warehouse_batch, warehouse_suites
from sources.ingest import prepare


def _postcodes(**changes):
    frame = pd.DataFrame({"postcode": ["ZX1 0AA", "ZX1 0AB"], "lsoa": ["E01000001", "E01000002"]})
    for column, value in changes.items():
        frame.loc[1, column] = value
    return frame


def _warehouse(con, person_rows, record_rows):
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    con.execute("CREATE TABLE identity.person (person_key VARCHAR, forename VARCHAR, sex VARCHAR)")
    con.execute("CREATE TABLE identity.person_record (person_key VARCHAR, system VARCHAR, table_name VARCHAR, "
                "record_id VARCHAR, match_probability DOUBLE, link_rule VARCHAR)")
    con.executemany("INSERT INTO identity.person VALUES (?, ?, ?)", person_rows)
    con.executemany("INSERT INTO identity.person_record VALUES (?, ?, ?, ?, ?, ?)", record_rows)


GOOD_PERSONS = [("P1", "Amy", "F"), ("P2", "Ben", "M"), ("P3", "Cal", None)]
GOOD_RECORDS = [("P1", "health", "patients", "1", 0.98, "nhs_number"),
                ("P1", "education", "pupils", "9", None, "only record"),
                ("P2", "mash", "contacts", "C7", 0.0, "splink"),
                ("P3", "early_help", "FAMILY_MEMBERS", "4", 1.0, "reviewer")]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """One reports folder shared by the two tests below, which run in order."""
    return tmp_path_factory.mktemp("home") / "reports"


def test_validation_lands_in_the_data_docs_site(reports):
    columns = [r for r in validate("reference", "postcodes", _postcodes(), reports, run_name="run-1")
               if r["expectation"] == "expect_table_columns_to_match_ordered_list"]
    index = site_index(reports)
    assert index == reports / "gx" / "index.html" and index.exists()
    page = index.read_text(encoding="utf-8")
    assert "reference.postcodes" in page and "run-1" in page
    assert list((reports / "gx" / "expectations" / "reference").glob("postcodes.html"))
    assert len(list((reports / "gx" / "validations" / "reference" / "postcodes").rglob("*.html"))) == 1
    assert columns  # the suite's rows come back as before


def test_results_persist_across_runs_and_prune(reports):
    # A second run in a fresh process would use a new context: results are on disk.
    from quality import data_docs

    data_docs._CONTEXTS.clear()
    rows = validate("reference", "postcodes", _postcodes(postcode=None), reports, run_name="run-2")
    assert not all(r["success"] for r in rows)
    pages = list((reports / "gx" / "validations" / "reference" / "postcodes").rglob("*.html"))
    assert len(pages) == 2 and "run-2" in site_index(reports).read_text(encoding="utf-8")
    assert "Failed" in next(p for p in pages if "run-2" in str(p)).read_text(encoding="utf-8")

    build_site(reports, keep=1)  # only the newest result per suite stays, in store and site
    pages = list((reports / "gx" / "validations" / "reference" / "postcodes").rglob("*.html"))
    assert [p.parts[-3] for p in pages] == ["run-2"]
    assert "run-1" not in site_index(reports).read_text(encoding="utf-8")


def test_warehouse_tables_record_passing_and_failing_expectations(tmp_path):
    con = duckdb.connect(str(tmp_path / "build.duckdb"))
    prepare(con)
    _warehouse(con, GOOD_PERSONS + [("P2", "Ben", "X"), (None, "Nobody", "F")],
               GOOD_RECORDS + [("P9", "hospital", "ward", "1", 1.5, None)])
    results = validate_warehouse_tables(con, "run-w", tmp_path / "reports")

    assert {r["suite"] for r in results} == {"identity.person", "identity.person_record"}  # no model tables yet
    stored = con.execute("""SELECT system, table_name, expectation, column_name, success, unexpected_count,
                                   partial_unexpected, extract_date
                            FROM audit.gx_validation WHERE run_id = 'run-w'""").fetchall()
    assert len(stored) == len(results) == 7
    outcome = {(s, t, e, c): (ok, n, sample) for s, t, e, c, ok, n, sample, d in stored}
    assert all(row[-1] is None for row in stored)
    failed = {k for k, v in outcome.items() if not v[0]}
    assert failed == {
        ("identity", "person", "expect_column_values_to_not_be_null", "person_key"),
        ("identity", "person", "expect_column_values_to_be_unique", "person_key"),
        ("identity", "person", "expect_column_values_to_be_in_set", "sex"),
        ("identity", "person_record", "expect_column_values_to_be_in_set", "system"),
        ("identity", "person_record", "expect_column_values_to_not_be_null", "link_rule"),
        ("identity", "person_record", "expect_column_values_to_be_between", "match_probability"),
    }
    assert outcome[("identity", "person_record", "expect_column_values_to_not_be_null", "person_key")][0]
    assert outcome[("identity", "person", "expect_column_values_to_be_in_set", "sex")][1] == 1
    assert "hospital" in outcome[("identity", "person_record", "expect_column_values_to_be_in_set", "system")][2]

    page = site_index(tmp_path / "reports").read_text(encoding="utf-8")
    assert "identity.person_record" in page and "identity.person" in page
    con.close()


def test_clean_warehouse_tables_pass_and_model_suites_run_once_built(tmp_path):
    con = duckdb.connect()
    prepare(con)
    _warehouse(con, GOOD_PERSONS, GOOD_RECORDS)
    con.execute("CREATE SCHEMA model")
    con.execute("CREATE TABLE model.dim_person AS SELECT person_key FROM identity.person")
    con.execute("""CREATE TABLE model.fact_mash_contact AS SELECT * FROM (VALUES
        ('C1', 1, 'R', 'CSC_ASSESSMENT'), ('C1', 2, NULL, NULL), ('C2', 1, 'G', 'IAG'))
        t(contact_id, child_seq, rag, decision)""")
    results = validate_warehouse_tables(con, "run-c", schemas=("identity", "model"))  # no reports: audit only
    assert {r["suite"] for r in results} == {d["name"] for d in warehouse_suites()
                                             if d["name"].split(".")[0] in ("identity", "model")}
    assert all(r["success"] for r in results), [r for r in results if not r["success"]]
    assert con.execute("SELECT count(*), bool_and(success) FROM audit.gx_validation").fetchone() == (len(results), True)


def test_the_features_suite_finds_a_repeated_child_month_and_an_impossible_age():
    con = duckdb.connect()
    prepare(con)
    con.execute("CREATE SCHEMA features")
    con.execute("""CREATE TABLE features.child_month AS SELECT * FROM (VALUES
        ('P1', DATE '2025-01-31', 9, 0.95), ('P1', DATE '2025-01-31', 9, 0.95), ('P2', DATE '2025-01-31', 19, 1.2))
        t(person_key, as_of, age_years, attendance_rate_2_terms)""")
    results = validate_warehouse_tables(con, "run-f", schemas=("features",))
    failed = {(r["expectation"], r["column_name"]) for r in results if not r["success"]}
    assert {("expect_compound_columns_to_be_unique", "person_key,as_of"),
            ("expect_column_values_to_be_between", "age_years"),
            ("expect_column_values_to_be_between", "attendance_rate_2_terms")} <= failed


def test_no_warehouse_tables_is_skipped(tmp_path):
    con = duckdb.connect()
    prepare(con)
    assert validate_warehouse_tables(con, "run-e", tmp_path / "reports") == []
    assert con.execute("SELECT count(*) FROM audit.gx_validation").fetchone() == (0,)


def test_large_tables_are_sampled_by_key_the_same_way_each_time():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA identity")
    con.execute("CREATE TABLE identity.person AS SELECT 'P' || (i // 2) AS person_key, 'M' AS sex, 'x' AS forename "
                "FROM range(1000) t(i)")  # every key twice
    document = next(d for d in warehouse_suites() if d["name"] == "identity.person")
    first, again = warehouse_batch(con, document, sample_rows=100), warehouse_batch(con, document, sample_rows=100)
    assert list(first.columns) == ["person_key", "sex"] and len(first) == 100
    assert first.equals(again)
    assert first["person_key"].value_counts().eq(2).all()  # duplicates stay together
