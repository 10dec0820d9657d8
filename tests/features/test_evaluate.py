"""The baseline model's evaluation (assets/features/evaluate.py) and model card.

Metric tests use toy examples whose answers are worked out by hand in the comments. The
end-to-end tests write a small synthetic features.child_month and child_month_label into a
temporary DuckDB file, with escalation drawn from a known logistic relationship, and run
the whole evaluation and card on it.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from assets.features.evaluate import (Encoder, calibration_table, expected_calibration_error, load_config,
                                      precision_recall_at_threshold, roc_auc, split_months, subgroup_rates,
                                      threshold_for_share, train_and_evaluate)
from assets.features.model_card import write_model_card


# --- metrics on toy examples ---------------------------------------------------------------

def test_auc_counts_ties_as_half():
    # Positives score 0.5 and 0.9, negatives 0.2 and 0.5. Of the 4 positive-negative pairs
    # three are won outright and one (0.5 vs 0.5) is tied: (3 + 0.5) / 4.
    assert roc_auc([0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9]) == 0.875
    assert roc_auc([0, 0, 1, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert roc_auc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0
    assert roc_auc([0, 0], [0.1, 0.2]) is None


def test_auc_matches_sklearn_with_many_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    score = rng.integers(0, 6, 500) / 5  # six distinct values: ties everywhere
    y = rng.random(500) < score * 0.6
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_precision_recall_at_threshold():
    y = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    score = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.1, 0.05, 0.0]
    # At 0.6 the first four are flagged (at or above): two escalated, two did not; the
    # fifth child escalated unflagged; five were neither.
    r = precision_recall_at_threshold(y, score, 0.6)
    assert (r["flagged"], r["true_positives"], r["false_positives"], r["false_negatives"], r["true_negatives"]) == \
        (4, 2, 2, 1, 5)
    assert r["precision"] == 0.5 and r["recall"] == pytest.approx(2 / 3) and r["flag_rate"] == 0.4
    assert r["false_positive_rate"] == pytest.approx(2 / 7) and r["false_negative_rate"] == pytest.approx(1 / 3)
    # Nobody flagged: precision is undefined, not zero.
    assert precision_recall_at_threshold(y, score, 0.95)["precision"] is None


def test_threshold_flags_the_share():
    score = np.arange(10) / 10  # 0.0 .. 0.9
    assert threshold_for_share(score, 0.2) == 0.8  # the 2nd highest: 0.9 and 0.8 flagged
    assert threshold_for_share(score, 0.05) == 0.9  # ceil(0.5) = 1 child, never none
    assert threshold_for_share(score, 0.25) == 0.7  # ceil(2.5) = 3 children


def test_calibration_table_and_ece():
    # Two equal bins: {0.1, 0.2} with outcomes {0, 1}, {0.6, 0.8} with {1, 1}.
    table = calibration_table([1, 0, 1, 1], [0.2, 0.1, 0.6, 0.8], bins=2)
    assert table["n"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.7])
    assert table["observed_rate"].tolist() == [0.5, 1.0]
    # Each bin holds half the rows: 0.5 x |0.15 - 0.5| + 0.5 x |0.7 - 1.0| = 0.175 + 0.15.
    assert expected_calibration_error(table) == pytest.approx(0.325)
    perfect = calibration_table([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], bins=1)
    assert expected_calibration_error(perfect) == 0


def test_subgroup_rates_by_hand_and_sum_to_totals():
    df = pd.DataFrame({"sex": ["F", "F", "F", "M", "M", None, None],
                       "y": [1, 0, 0, 1, 1, 0, 1],
                       "flagged": [True, True, False, False, True, False, False]})
    rates = subgroup_rates(df, "sex").set_index("group_value")
    # F: 3 children, 2 flagged (1 escalated, 1 not), 1 not flagged who did not escalate.
    assert rates.loc["F", ["n", "flagged", "positives", "true_positives", "false_positives",
                           "false_negatives", "true_negatives"]].tolist() == [3, 2, 1, 1, 1, 0, 1]
    assert rates.loc["F", "false_positive_rate"] == 0.5 and rates.loc["F", "false_negative_rate"] == 0
    # M: both escalated, one flagged. FPR undefined (nobody did not escalate).
    assert rates.loc["M", "false_negative_rate"] == 0.5 and pd.isna(rates.loc["M", "false_positive_rate"])
    # Unknown sex: one missed escalation, nobody flagged.
    assert pd.isna(rates.loc["unknown", "precision"]) and rates.loc["unknown", "false_negative_rate"] == 1
    whole = precision_recall_at_threshold(df["y"], df["flagged"].astype(float), 0.5)
    for column in ["n", "flagged", "positives", "true_positives", "false_positives", "false_negatives",
                   "true_negatives"]:
        assert rates[column].sum() == whole[column]


def test_split_months_auto_and_explicit():
    months = [date(2024, m, 28) for m in range(1, 7)]
    split = {"train": "auto", "test": "auto", "train_share": 0.67, "gap_months": 1}
    # 6 months, 1 left out: 5 usable, round(5 x 0.67) = 3 to train, the 5th and 6th to test.
    assert split_months(months, split) == (months[:3], months[4:])
    assert split_months(months[:2], split) == (months[:1], [])  # too few: nothing to test on
    explicit = {"train": {"from": "2024-01-01", "to": "2024-02-28"}, "test": {"from": date(2024, 5, 1),
                                                                            "to": date(2024, 6, 30)}}
    assert split_months(months, explicit) == (months[:2], months[4:])


# --- end to end on a synthetic city ----------------------------------------------------------

MONTHS = pd.date_range("2024-01-31", periods=24, freq="ME").date  # the last 12 unmatured at 12 months


def synthetic_child_months(children: int = 300, seed: int = 3, escalating: bool = True) -> tuple:
    """Every child at every month-end with features drawn independently; escalation within 12
    months follows logit = -4 + 2 x MASH contacts + 1.5 x domestic abuse."""
    rng = np.random.default_rng(seed)
    n = children * len(MONTHS)
    person = np.repeat([f"P{i:04d}" for i in range(children)], len(MONTHS))
    as_of = np.tile(MONTHS, children)
    age = rng.integers(0, 18, n)
    mash = rng.poisson(0.8, n)
    abuse = rng.random(n) < 0.2
    imd = rng.integers(1, 11, n).astype(float)
    imd[rng.random(n) < 0.05] = np.nan
    attendance = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0.6, 1.0, n))
    flags = {c: rng.random(n) < 0.05 for c in
             ["persistent_absence", "severe_absence", "permanently_excluded", "home_educated", "missing_education",
              "free_school_meals", "open_to_early_help", "re_referral_12m", "factor_parental_mental_health",
              "factor_substance_misuse", "factor_exploitation", "sibling_cp_or_cla"]}
    counts = {c: rng.poisson(0.3, n) for c in
              ["suspensions_12m", "mash_red_12m", "prior_eh_episodes", "prior_cin_plans", "prior_cp_plans",
               "prior_cla_episodes", "csc_referrals_12m", "missed_health_reviews_12m", "camhs_referrals_12m",
               "moves_12m", "family_sf_needs"]}
    child_month = pd.DataFrame({
        "person_key": person, "family_key": np.char.replace(person, "P", "F"), "as_of": as_of,
        "age_years": age, "age_band": pd.cut(age, [-1, 4, 10, 15, 17], labels=["0-4", "5-10", "11-15", "16-17"]).astype(str),
        "sex": rng.choice(["M", "F", "U"], n, p=[0.49, 0.49, 0.02]),
        "ethnicity_group": rng.choice(["White", "Asian", "Black", "Mixed", "Other"], n),
        "district": rng.choice(["NORTH", "SOUTH", "EAST"], n), "imd_decile": imd,
        "attendance_rate_2_terms": attendance, "sen_provision": rng.choice(["N", "K", "E", None], n),
        "mash_contacts_12m": mash, "factor_domestic_abuse": abuse, "family_size": rng.integers(1, 6, n),
        "open_to_social_care": False, "in_model_population": rng.random(n) < 0.97} | flags | counts)
    logit = -4.0 + 2.0 * mash + 1.5 * abuse
    escalated = (rng.random(n) < 1 / (1 + np.exp(-logit))) & escalating
    matured = np.array([m <= MONTHS[-1] - pd.DateOffset(months=12) for m in pd.to_datetime(as_of)])
    label = pd.DataFrame({"person_key": person, "as_of": as_of,
                          "escalated_6m": escalated, "escalated_12m": np.where(matured, escalated, None),
                          "horizon_6m_complete": matured, "horizon_12m_complete": matured,
                          "first_escalation": np.where(escalated, "assessment", None), "first_escalation_date": None})
    return child_month, label


def write_city(path, escalating: bool = True) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    child_month, label = synthetic_child_months(escalating=escalating)
    con.execute("CREATE SCHEMA features")
    for name, frame in [("child_month", child_month), ("child_month_label", label)]:
        con.register("frame", frame)
        con.execute(f"CREATE TABLE features.{name} AS SELECT * FROM frame")
        con.unregister("frame")
    return con


def lenient(config: dict) -> dict:
    """The shipped config with a bar this synthetic city can meet (small groups included)."""
    config = copy.deepcopy(config)
    config["bar"] |= {"min_auc": 0.6, "min_precision_lift": 1.5, "min_recall": 0.1, "max_ece_to_base_rate": 1.0,
                      "max_fnr_gap": 1.0, "min_group_positives": 1}
    return config


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The city evaluated with the shipped features and a lenient bar; the card written."""
    home = tmp_path_factory.mktemp("home")
    con = write_city(home / "warehouse.duckdb")
    run = train_and_evaluate(con, lenient(load_config()))
    card = write_model_card(con, home / "reports")
    yield con, run, card
    con.close()


def test_tables_exist_and_the_model_finds_the_signal(evaluated):
    con, run, _ = evaluated
    tables = {t for (t,) in con.sql("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = 'features'").fetchall()}
    assert {"model_run", "model_bar", "model_coefficient", "model_calibration", "model_subgroup",
            "model_flag"} <= tables
    # 24 months, the first 12 matured; auto: 11 usable, round(11 x 0.67) = 7 train, 1 gap, 4 test.
    assert (run["train_from"], run["train_to"], run["test_from"], run["test_to"]) == \
        (MONTHS[0], MONTHS[6], MONTHS[8], MONTHS[11])
    assert run["latest_as_of"] == MONTHS[-1]
    assert run["auc"] > 0.8
    assert run["clears_bar"] is True and run["bar_failures"] is None
    # The true weights come back: per contact (the stored weight is per standard deviation)
    # and per presence of domestic abuse.
    per_unit = dict(con.sql("SELECT feature, coefficient / coalesce(std, 1) FROM features.model_coefficient").fetchall())
    assert per_unit["mash_contacts_12m"] == pytest.approx(2.0, abs=0.4)
    assert per_unit["factor_domestic_abuse"] == pytest.approx(1.5, abs=0.4)


def test_subgroup_counts_sum_to_all(evaluated):
    con, run, _ = evaluated
    mismatches = con.sql("""
        WITH g AS (SELECT subgroup, sum(n) n, sum(flagged) f, sum(positives) p, sum(false_negatives) fn
                   FROM features.model_subgroup WHERE subgroup <> 'all' GROUP BY subgroup)
        SELECT g.subgroup FROM g, features.model_subgroup a
        WHERE a.subgroup = 'all' AND (g.n, g.f, g.p, g.fn) <> (a.n, a.flagged, a.positives, a.false_negatives)
    """).fetchall()
    assert mismatches == []
    assert con.sql("SELECT count(DISTINCT subgroup) FROM features.model_subgroup").fetchall()[0][0] == 6
    assert con.sql("SELECT n FROM features.model_subgroup WHERE subgroup = 'all'").fetchall()[0][0] == run["test_rows"]


def test_flag_contributions_add_up_to_the_logit(evaluated):
    """Rebuild each flagged child's logit from the stored coefficients, means and sds and the
    raw child_month row: it equals the logit of the stored score, and the stored reasons are
    that child's largest terms."""
    con, run, _ = evaluated
    config = load_config()
    coefficients = con.sql("SELECT * FROM features.model_coefficient").df().set_index("feature")
    flags = con.sql("""
        SELECT f.*, c.* EXCLUDE (person_key, as_of) FROM features.model_flag f
        JOIN features.child_month c USING (person_key, as_of)""").df()
    assert set(flags["period"]) == {"test", "current"}
    assert (flags.loc[flags["period"] == "current", "as_of"].dt.date == MONTHS[-1]).all()
    assert flags.loc[flags["period"] == "test", "escalated"].notna().all()
    for _, child in flags.iterrows():
        terms = {}
        for feature in config["features"]:
            column, value = feature["column"], child[feature["column"]]
            if feature["encode"] == "category":
                terms |= {f"{column}={lv}": float(value == lv) for lv in feature["levels"]}
                continue
            if feature.get("missing_indicator"):
                terms[f"{column}_missing"] = float(pd.isna(value))
                value = coefficients.loc[column, "mean"] if pd.isna(value) else value
            if feature["encode"] == "numeric":
                value = (value - coefficients.loc[column, "mean"]) / coefficients.loc[column, "std"]
            terms[column] = float(value)
        contributions = {f: coefficients.loc[f, "coefficient"] * x for f, x in terms.items()}
        logit = coefficients.loc["(intercept)", "coefficient"] + sum(contributions.values())
        assert logit == pytest.approx(math.log(child["score"] / (1 - child["score"])), abs=1e-9)
        assert child["reason_1_contribution"] == pytest.approx(max(contributions.values()))
        assert contributions[child["reason_1_feature"]] == pytest.approx(child["reason_1_contribution"])
        assert child["reason_1_text"].endswith(f"({child['reason_1_contribution']:+.2f})")


def test_readable_reasons(evaluated):
    con, _, _ = evaluated
    texts = [t for (t,) in con.sql("SELECT reason_1_text FROM features.model_flag "
                                   "WHERE reason_1_feature = 'mash_contacts_12m' LIMIT 3").fetchall()]
    assert texts and all(re.match(r"MASH contacts in 12 months: \d+ \(\+", t) for t in texts)


def test_card_shows_verdict_window_and_subgroups(evaluated):
    con, run, card = evaluated
    assert card.name == "model_card.html" and card.parent.name == "reports"
    page = card.read_text(encoding="utf-8")
    assert "The model clears the minimum bar set before evaluation" in page
    assert "Errors by subgroup (test months)" in page and "ethnicity_group" in page and "NORTH" in page
    assert "Intended use" in page and "Never a decision" in page and "Limitations" in page
    assert "features.window was not found" in page
    assert "<script" not in page and "http" not in page


def test_card_renders_feature_window_and_definitions(evaluated, tmp_path):
    con, _, _ = evaluated
    con.execute("""
        CREATE TABLE features.window AS SELECT DATE '2024-01-31' AS first_as_of, DATE '2025-06-30' AS last_as_of,
            DATE '2025-06-30' AS data_as_of, 'Only records loaded by <month-end>.' AS knowledge_rule;
        CREATE TABLE features.feature_definition AS
            SELECT 'mash_contacts_12m' AS feature, 'MASH contacts received in the 12 months' AS definition,
                   'model.fact_mash_contact' AS source""")
    try:
        page = write_model_card(con, tmp_path / "card.html").read_text(encoding="utf-8")
    finally:
        con.execute("DROP TABLE features.window; DROP TABLE features.feature_definition")
    assert "Only records loaded by &lt;month-end&gt;." in page  # escaped
    assert "MASH contacts received in the 12 months" in page and "model.fact_mash_contact" in page


def test_an_impossible_bar_is_not_cleared(tmp_path):
    con = write_city(tmp_path / "warehouse.duckdb")
    config = lenient(load_config())
    config["bar"]["min_auc"] = 1.01
    run = train_and_evaluate(con, config)
    assert run["clears_bar"] is False and run["bar_failures"].startswith("AUC on the test months is 0.")
    assert con.sql("SELECT clears_bar FROM features.model_run").fetchall() == [(False,)]
    assert con.sql("SELECT count(*) FILTER (WHERE NOT passed) FROM features.model_bar").fetchall() == [(1,)]
    page = write_model_card(con, tmp_path / "reports" / "model_card.html").read_text(encoding="utf-8")
    assert "The model does NOT clear the minimum bar set before evaluation: AUC on the test months" in page


def test_test_months_without_escalations_cannot_clear(tmp_path):
    con = write_city(tmp_path / "warehouse.duckdb")
    con.execute("UPDATE features.child_month_label SET escalated_12m = false WHERE as_of > ?", [MONTHS[7]])
    run = train_and_evaluate(con, lenient(load_config()))
    assert run["auc"] is None and run["recall"] is None and run["clears_bar"] is False
    assert "AUC on the test months could not be measured" in run["bar_failures"]
    assert con.sql("SELECT count(*) FROM features.model_flag WHERE period = 'current'").fetchall()[0][0] > 0


def test_a_city_without_escalations_says_why_and_does_not_crash(tmp_path):
    con = write_city(tmp_path / "warehouse.duckdb", escalating=False)
    run = train_and_evaluate(con, load_config())
    assert run["clears_bar"] is False and "training months hold no escalation" in run["bar_failures"]
    assert con.sql("SELECT count(*) FROM features.model_flag").fetchall() == [(0,)]
    page = write_model_card(con, tmp_path / "model_card.html").read_text(encoding="utf-8")
    assert "does NOT clear" in page and "no model was fitted" in page


def test_encoder_standardises_on_training_only():
    config = {"features": [{"column": "x", "encode": "numeric", "missing_indicator": True, "label": "x", "text": ""}]}
    encoder = Encoder(config, pd.DataFrame({"x": [1.0, 3.0, None]}))
    # Training mean 2 (the missing value takes it), sd 1: 1 -> -1, 3 -> 1, missing -> 0 and flagged.
    assert encoder.columns == ["x", "x_missing"]
    assert encoder.transform(pd.DataFrame({"x": [1.0, 3.0, None, 5.0]})).tolist() == \
        [[-1, 0], [1, 0], [0, 1], [3, 0]]
