"""A model fitted to each deployment's own records (assets/identity/model.py, fitting.py).

On the session's small city: the first full link of a HOME fits the model and saves it,
versioned, with what it saw; later runs reuse it; `train-identity` refits into HOME and
the next run links in full with it; the training report works with no network; and the
fit learns from the data (its prior lands near the city's true one, which only the test
reads). A table too small to fit keeps the prior's parameters and says so.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from assets.identity.engine import link_file, run_identity
from assets.identity.fitting import MODEL_NAME, saved_models
from assets.identity.model import MODEL_PATH, TRAINING_KEY, load_model
from pipelines.cli import main
from sources.ingest import ingest


@pytest.fixture(scope="module")
def home(small_city, tmp_path_factory) -> Path:
    """A HOME whose build has staged every drop and linked identity once (run-1)."""
    home = tmp_path_factory.mktemp("fitted_home")
    database = home / "warehouse" / "build.duckdb"
    database.parent.mkdir()
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        ingest(con, small_city[0] / "landing", home / "staged")
        result = run_identity(con, "run-1", home / "review", durable_dir=home / "identity",
                              reports_dir=home / "reports")
    assert result["model_fitted"] and result["mode"] == "full"
    return home


def test_the_first_link_of_a_home_fits_a_model_and_saves_it_with_what_it_saw(home):
    [saved] = saved_models(home / "identity" / "model")
    assert MODEL_NAME.fullmatch(saved.name) and saved.name.startswith("person_model_v001_")
    record = json.loads(saved.read_text())[TRAINING_KEY]
    with duckdb.connect(str(home / "warehouse" / "build.duckdb"), read_only=True) as con:
        by_system = dict(con.sql("SELECT system, count(*) FROM identity.standardised_record GROUP BY 1").fetchall())
        assert con.sql("SELECT count(*) FROM identity.person_model").fetchall()[0][0] == 1
    assert record["fitted"] and record["records"] == sum(by_system.values())
    assert record["records_by_system"] == by_system
    assert record["settings"]["u_max_pairs"] > 0 and record["prior"] == MODEL_PATH.name
    assert {s["block"] for s in record["em_sessions"]} >= {"l.nhs_number = r.nhs_number", "l.upn = r.upn"}
    # something was learnt: the fitted weights are not the prior's
    prior, fitted = load_model(MODEL_PATH), load_model(saved)
    m = lambda model: [lv.get("m_probability") for c in model["comparisons"] for lv in c["comparison_levels"]]  # noqa: E731
    assert m(prior) != m(fitted)


def test_the_fitted_prior_is_near_the_true_share_of_matching_pairs(home, small_city):
    """No truth goes into the fit; the truth here only checks the estimate."""
    truth = small_city[0] / "truth" / "records.csv"
    with truth.open(newline="") as f:
        people: dict[str, int] = {}
        for row in csv.DictReader(f):
            people[row["person_key"]] = people.get(row["person_key"], 0) + 1
    records = sum(people.values())
    true_prior = sum(n * (n - 1) // 2 for n in people.values()) / (records * (records - 1) / 2)
    [saved] = saved_models(home / "identity" / "model")
    fitted = load_model(saved)["probability_two_random_records_match"]
    assert true_prior / 2 < fitted < true_prior * 2


def test_the_training_report_shows_splinks_charts_with_no_network(home):
    [saved] = saved_models(home / "identity" / "model")
    page = (home / "reports" / "identity" / f"{saved.stem}.html").read_text()
    for chart in ("chart-match_weights", "chart-m_u", "chart-histogram", "chart-unlinkables"):
        assert f"id='{chart}'" in page
    assert "vegaEmbed" in page and "vega-lite" in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)  # nothing fetched from a CDN
    assert "<script>" in page and saved.stem in (home / "reports" / "identity" / "index.html").read_text()


def test_a_later_run_reuses_the_model_and_train_identity_refits_into_home(home, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    with duckdb.connect(str(copy / "warehouse" / "build.duckdb")) as con:
        again = run_identity(con, "run-2", copy / "review", durable_dir=copy / "identity")
    assert not again["model_fitted"] and again["mode"] == "incremental"
    assert len(saved_models(copy / "identity" / "model")) == 1
    repository_model = MODEL_PATH.read_bytes()
    assert main(["train-identity", "--home", str(copy)]) == 0
    assert MODEL_PATH.read_bytes() == repository_model  # the shipped prior is never overwritten unasked
    first, second = saved_models(copy / "identity" / "model")
    assert second.name.startswith("person_model_v002_")
    assert (copy / "reports" / "identity" / f"{second.stem}.html").exists()
    with duckdb.connect(str(copy / "warehouse" / "build.duckdb")) as con:
        refitted = run_identity(con, "run-3", copy / "review", durable_dir=copy / "identity")
    assert refitted["mode"] == "full" and refitted["model"] == str(second)


def test_a_table_too_small_to_fit_keeps_the_priors_parameters_and_says_so(tmp_path):
    from tests.identity.test_link_cli import write_csv

    out = tmp_path / "persons.csv"
    model_out = tmp_path / "model.json"
    result = link_file(write_csv(tmp_path / "people.csv"), out, model_out=model_out)
    assert "too few to fit" in result["model"]
    record = json.loads(model_out.read_text())[TRAINING_KEY]
    assert not record["fitted"] and record["records"] == 13
    prior = load_model(MODEL_PATH)
    assert [c["comparison_levels"] for c in load_model(model_out)["comparisons"]] == \
        [c["comparison_levels"] for c in prior["comparisons"]]
