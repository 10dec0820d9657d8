"""The blocking model integrity gate (quality.checks.model_integrity) on the small city's
real model: it passes as built, judges every table the model declares a grain for
(assets/warehouse/model.py TABLE_GRAIN), and fails naming the table when any one of them
holds a row twice or is missing.

The city is staged, linked and modelled once into a DuckDB file; each test changes it
inside a transaction it rolls back, so the tests see the same model.
"""

from __future__ import annotations

import duckdb
import pytest

from assets.warehouse.model import TABLE_GRAIN, build_model
from quality import checks
from tests.conftest import stage_and_link


@pytest.fixture(scope="module")
def con(small_city, tmp_path_factory):
    database = stage_and_link(small_city[0], tmp_path_factory.mktemp("gates"), build_model)
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        yield con


@pytest.fixture
def changed(con):
    """The connection inside a transaction undone after the test."""
    con.begin()
    yield con
    con.rollback()


def test_the_built_model_passes_and_every_declared_table_is_judged(con):
    outcome = checks.model_integrity(con)
    assert outcome.passed, outcome.sample
    assert outcome.observed["tables_checked"] == len(TABLE_GRAIN) == 20


@pytest.mark.parametrize("table", sorted(TABLE_GRAIN))
def test_a_repeated_row_in_any_model_table_fails_naming_it(changed, table):
    (inserted,) = changed.execute(f"INSERT INTO model.{table} SELECT * FROM model.{table} LIMIT 1").fetchone()
    assert inserted == 1, f"model.{table} is empty in the small city"

    outcome = checks.model_integrity(changed)

    assert not outcome.passed
    assert [(p["table"], p["problem"]) for p in outcome.sample] == [
        (f"model.{table}", f"1 repeated key(s) at grain {list(TABLE_GRAIN[table])}")]


@pytest.mark.parametrize("table", ["fact_cp_plan", "dim_team"])
def test_a_missing_model_table_fails_naming_it(changed, table):
    changed.execute(f"DROP TABLE model.{table}")
    outcome = checks.model_integrity(changed)
    assert not outcome.passed
    assert {"table": f"model.{table}", "problem": "missing"} in outcome.sample
