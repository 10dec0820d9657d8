"""Baseline evaluation of the point-in-time features (issue 7): a transparent model trained
on earlier month-ends and tested on later ones, judged against a bar written beforehand.

Reads ``features.child_month`` and ``features.child_month_label``; configured by
``model.yaml`` next to this file; writes, each run replacing the last:

- ``features.model_run``: one row, the windows, rates, threshold, headline metrics and
  whether the model clears the bar (``clears_bar``, ``bar_failures`` in plain words)
- ``features.model_bar``: one row per line of the bar, observed against required
- ``features.model_coefficient``: one row per model feature, plus ``(intercept)``;
  odds ratios are per standard deviation for numeric features, per presence otherwise
- ``features.model_calibration``: deciles of predicted risk, train and test months
- ``features.model_subgroup``: test-month rates per group of each subgroup variable, with a
  ``('all', 'all')`` row whose counts the groups of every variable sum to
- ``features.model_flag``: flagged child-months of the test period (``period = 'test'``,
  with their outcome) and of the latest month (``period = 'current'``, no outcome yet),
  each with the three features that raised the score most, wide:
  ``reason_n_feature``, ``reason_n_contribution`` (log-odds), ``reason_n_text``

A feature's contribution for a child is coefficient x encoded (standardised) value, so the
intercept plus all contributions is the child's logit. Numeric contributions are relative to
the average training child: a below-average count of something the model weighs against
escalation raises the score a little. Scores are advisory: a prompt for a person to look,
never a decision.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CONFIG = Path(__file__).with_name("model.yaml")
TOP_REASONS = 3


def load_config(path=None) -> dict:
    return yaml.safe_load(Path(path or CONFIG).read_text(encoding="utf-8"))


def config_sha256(config: dict) -> str:
    """Of the configuration as loaded, so a reformatted but equal file has the same hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Metrics on numpy arrays: y is 0/1, score a predicted probability.

def _ratio(numerator, denominator):
    """None rather than NaN when undefined, so tables and the card show a blank."""
    return float(numerator) / denominator if denominator else None


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of the ranks they span."""
    _, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2)[inverse]


def roc_auc(y, score):
    """The probability that a random positive scores above a random negative (ties count
    half): the Mann-Whitney U statistic from average ranks. None with only one class."""
    y = np.asarray(y, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    rank_sum = average_ranks(score)[y].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def confusion(y, flagged) -> dict:
    y, flagged = np.asarray(y, dtype=bool), np.asarray(flagged, dtype=bool)
    return {"n": int(y.size), "flagged": int(flagged.sum()), "positives": int(y.sum()),
            "true_positives": int((y & flagged).sum()), "false_positives": int((~y & flagged).sum()),
            "false_negatives": int((y & ~flagged).sum()), "true_negatives": int((~y & ~flagged).sum())}


def rates(counts: dict) -> dict:
    """Flag rate, false-positive and false-negative rates and precision from confusion counts."""
    negatives = counts["n"] - counts["positives"]
    return {"flag_rate": _ratio(counts["flagged"], counts["n"]),
            "false_positive_rate": _ratio(counts["false_positives"], negatives),
            "false_negative_rate": _ratio(counts["false_negatives"], counts["positives"]),
            "precision": _ratio(counts["true_positives"], counts["flagged"]),
            "recall": _ratio(counts["true_positives"], counts["positives"])}


def precision_recall_at_threshold(y, score, threshold) -> dict:
    """Flag every score at or above the threshold; the counts and rates that follow."""
    counts = confusion(y, np.asarray(score) >= threshold)
    return counts | rates(counts)


def threshold_for_share(score, share: float) -> float:
    """The score of the ceil(share x n)-th highest: flagging at or above it flags that share
    (a little more if scores tie at the threshold)."""
    ordered = np.sort(np.asarray(score))[::-1]
    return float(ordered[max(1, math.ceil(share * ordered.size)) - 1])


def calibration_table(y, score, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of predicted risk, lowest first: count, mean predicted risk, observed
    rate. Equal counts rather than equal widths, because most scores sit near zero."""
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    order = np.argsort(score, kind="stable")
    bin_of = np.empty(score.size, dtype=int)
    bin_of[order] = np.arange(score.size) * bins // max(score.size, 1)
    frame = pd.DataFrame({"bin": bin_of + 1, "y": y, "score": score})
    return (frame.groupby("bin").agg(n=("y", "size"), mean_predicted=("score", "mean"), observed_rate=("y", "mean"),
                                     min_score=("score", "min"), max_score=("score", "max"))
            .reset_index())


def expected_calibration_error(table: pd.DataFrame):
    """Count-weighted mean of |mean predicted - observed| over the calibration bins."""
    n = table["n"].sum()
    return float((table["n"] * (table["mean_predicted"] - table["observed_rate"]).abs()).sum() / n) if n else None


def subgroup_rates(df: pd.DataFrame, group_col: str, y_col: str = "y", flag_col: str = "flagged") -> pd.DataFrame:
    """Per group of ``group_col`` (NULL as 'unknown'): n, flagged, positives, the confusion
    counts and the rates. Every count column sums over the groups to the whole frame's."""
    groups = df[group_col].astype("object").where(df[group_col].notna(), "unknown").astype(str)
    rows = [{"group_value": value} | counts | rates(counts)
            for value, part in df.groupby(groups, sort=True)
            for counts in [confusion(part[y_col], part[flag_col])]]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Reading and encoding.

def _select_list(config: dict) -> str:
    """Raw feature values, booleans and categories already as 0/1 (NULL as false or reference)."""
    parts = []
    for feature in config["features"]:
        column, encode = feature["column"], feature["encode"]
        if encode == "numeric":
            parts.append(f"c.{column}::DOUBLE AS {column}")
        elif encode == "boolean":
            parts.append(f"coalesce(c.{column}, false)::DOUBLE AS {column}")
        elif encode == "category":
            parts += [f"coalesce(c.{column} = '{level}', false)::DOUBLE AS \"{column}={level}\""
                      for level in feature["levels"]]
        else:
            raise ValueError(f"model.yaml: feature {column} has unknown encode {encode!r}")
    return ", ".join(parts)


def subgroup_column(column: str) -> str:
    return f"subgroup_{column}"


def read_child_months(con, config: dict) -> pd.DataFrame:
    """The population's child-months: labelled ones whose horizon has matured, and every one
    of the latest month (the current prompts). ``y`` is NULL where not matured."""
    # Subgroups under their own names: a subgroup may also be a feature (imd_decile).
    subgroups = ", ".join(f"CAST(c.{column} AS VARCHAR) AS {subgroup_column(column)}"
                          for column in config["subgroups"])
    population, label, matured = config["population"], config["label"], config["label_matured"]
    return con.sql(f"""
        SELECT c.person_key, c.as_of::DATE AS as_of, {subgroups},
               CASE WHEN l.{matured} THEN coalesce(l.{label}, false)::INTEGER END AS y,
               {_select_list(config)}
        FROM features.child_month c
        LEFT JOIN features.child_month_label l USING (person_key, as_of)
        WHERE coalesce(c.{population}, false)
          AND (l.{matured} OR c.as_of = (SELECT max(as_of) FROM features.child_month))
    """).df()


def split_months(months, split: dict) -> tuple[list, list]:
    """Train and test month-ends from the matured months, in time order (see model.yaml)."""
    months = sorted(months)

    def window(spec):
        return [m for m in months if _as_date(spec["from"]) <= m <= _as_date(spec["to"])]

    if split["train"] != "auto" or split["test"] != "auto":
        return window(split["train"]), window(split["test"])
    usable = len(months) - split["gap_months"]
    if usable < 2:
        return months[:max(usable, 0)], []
    n_train = min(max(1, round(usable * split["train_share"])), usable - 1)
    return months[:n_train], months[n_train + split["gap_months"]:]


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class Encoder:
    """Standardises numeric features with training means and standard deviations."""

    def __init__(self, config: dict, train: pd.DataFrame):
        self.features = config["features"]
        self.columns, self.mean, self.std = [], {}, {}
        for feature in self.features:
            column = feature["column"]
            if feature["encode"] == "category":
                self.columns += [f"{column}={level}" for level in feature["levels"]]
                continue
            self.columns.append(column)
            if feature.get("missing_indicator"):
                self.columns.append(f"{column}_missing")
            if feature["encode"] == "numeric":
                values = self._imputed(feature, train[column])
                self.mean[column] = float(values.mean())
                # A constant (or single-row) feature would divide by zero; its weight stays ~0.
                std = float(values.std())
                self.std[column] = std if math.isfinite(std) and std > 0 else 1.0

    def _imputed(self, feature: dict, values: pd.Series) -> pd.Series:
        if not feature.get("missing_indicator"):
            return values.fillna(0.0)
        # The training mean, so the standardised value is 0 and the indicator alone carries
        # the effect of not knowing (imputing 0 would give the same model, less readably).
        fill = self.mean.get(feature["column"], values.mean())
        return values.fillna(0.0 if pd.isna(fill) else fill)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        encoded = {}
        for feature in self.features:
            column = feature["column"]
            if feature.get("missing_indicator"):
                encoded[f"{column}_missing"] = df[column].isna().astype(float)
            if feature["encode"] == "numeric":
                encoded[column] = (self._imputed(feature, df[column]) - self.mean[column]) / self.std[column]
            elif feature["encode"] == "boolean":
                encoded[column] = df[column]
            else:
                encoded |= {c: df[c] for c in self.columns if c.startswith(f"{column}=")}
        return pd.DataFrame(encoded, index=df.index)[self.columns].to_numpy(dtype=float)

    def source(self, model_column: str) -> dict:
        """The config entry a model column came from."""
        base = model_column.split("=")[0].removesuffix("_missing")
        return next(f for f in self.features if f["column"] == base)


# ---------------------------------------------------------------------------------------
# Reasons for each flagged child.

def reason_text(encoder: Encoder, model_column: str, raw_row: pd.Series) -> str:
    feature = encoder.source(model_column)
    column = feature["column"]
    if model_column.endswith("_missing") or (feature["encode"] == "numeric" and pd.isna(raw_row[column])):
        return feature.get("missing_text", f"{feature['label']} not known")
    if feature["encode"] == "category":
        return feature["text"][model_column.split("=", 1)[1]]
    return feature["text"].format(value=raw_row[column])


def top_reasons(encoder: Encoder, contributions: np.ndarray, raw: pd.DataFrame) -> pd.DataFrame:
    """Per row, the TOP_REASONS features that raised the score most (positive contributions
    only: a reason to look, not a reason not to), as reason_n_feature / _contribution / _text."""
    rows = []
    for row_contributions, (_, raw_row) in zip(contributions, raw.iterrows()):
        row = {}
        for n, j in enumerate(np.argsort(-row_contributions, kind="stable")[:TOP_REASONS], start=1):
            if row_contributions[j] <= 0:
                break
            column, value = encoder.columns[j], float(row_contributions[j])
            row |= {f"reason_{n}_feature": column, f"reason_{n}_contribution": value,
                    f"reason_{n}_text": f"{reason_text(encoder, column, raw_row)} ({value:+.2f})"}
        rows.append(row)
    return pd.DataFrame(rows, index=raw.index, columns=[f"reason_{n}_{part}" for n in range(1, TOP_REASONS + 1)
                                                         for part in ("feature", "contribution", "text")])


# ---------------------------------------------------------------------------------------
# The bar.

def bar_checks(config: dict, metrics: dict) -> list[dict]:
    """One row per line of the bar. A metric that could not be measured fails its line."""
    bar = config["bar"]
    base_rate = metrics.get("test_base_rate")
    lines = [
        ("AUC on the test months", metrics.get("auc"), ">=", bar["min_auc"]),
        ("precision at the threshold / test base rate", metrics.get("precision_lift"), ">=", bar["min_precision_lift"]),
        ("recall at the threshold", metrics.get("recall"), ">=", bar["min_recall"]),
        ("expected calibration error / test base rate",
         metrics["ece"] / base_rate if metrics.get("ece") is not None and base_rate else None,
         "<=", bar["max_ece_to_base_rate"]),
        (f"largest false-negative-rate gap within a subgroup variable ({metrics.get('max_fnr_gap_subgroup') or 'none'})",
         metrics.get("max_fnr_gap"), "<=", bar["max_fnr_gap"]),
    ]
    return [{"criterion": name, "observed": observed, "comparison": op, "required": required,
             "passed": observed is not None and (observed >= required if op == ">=" else observed <= required)}
            for name, observed, op, required in lines]


def _failures(checks: list[dict]) -> str:
    return "; ".join(f"{c['criterion']} " + ("could not be measured" if c["observed"] is None else
                                            f"is {c['observed']:.3f}, needs {c['comparison']} {c['required']:g}")
                     for c in checks if not c["passed"])


def fnr_gap(subgroups: pd.DataFrame, min_positives: int) -> tuple[float | None, str | None]:
    """The largest max-minus-min false-negative rate within one subgroup variable, over the
    groups with enough positives for the rate to mean something."""
    eligible = subgroups[(subgroups["subgroup"] != "all") & (subgroups["positives"] >= min_positives)]
    gaps = eligible.groupby("subgroup")["false_negative_rate"].agg(lambda r: r.max() - r.min())
    gaps = gaps[eligible.groupby("subgroup").size() >= 2]
    return (float(gaps.max()), str(gaps.idxmax())) if len(gaps) else (None, None)


# ---------------------------------------------------------------------------------------
# Train, evaluate, write.

def train_and_evaluate(con, config: dict | None = None) -> dict:
    """Fit on the train months, threshold on train, evaluate on the test months, score the
    latest month; write the features.model_* tables. Returns the model_run row as a dict.
    Never raises for a population without escalations: the run says why it cannot clear."""
    config = config or load_config()
    data = read_child_months(con, config)
    latest = data["as_of"].max() if len(data) else None
    matured = data[data["y"].notna()]
    train_months, test_months = split_months({m.date() for m in matured["as_of"]}, config["split"])
    train = matured[matured["as_of"].dt.date.isin(train_months)]
    test = matured[matured["as_of"].dt.date.isin(test_months)]
    run = {"run_id": str(uuid.uuid4()), "run_at": datetime.now(timezone.utc).replace(tzinfo=None),
           "config_sha256": config_sha256(config), "label": config["label"], "horizon_months": config["horizon_months"],
           "train_from": min(train_months, default=None), "train_to": max(train_months, default=None),
           "test_from": min(test_months, default=None), "test_to": max(test_months, default=None),
           "latest_as_of": latest.date() if latest is not None else None,
           "train_rows": len(train), "test_rows": len(test),
           "train_children": train["person_key"].nunique(), "test_children": test["person_key"].nunique(),
           "train_base_rate": _ratio(train["y"].sum(), len(train)), "test_base_rate": _ratio(test["y"].sum(), len(test)),
           "flag_share": config["operating_point"]["flag_share"]}
    tables = {}
    reason = _not_trainable(train, test)
    if reason is None:
        run, tables = _fit_and_score(config, run, data, train, test, latest)
        checks = bar_checks(config, run)
    else:
        checks = [c | {"passed": False} for c in bar_checks(config, {})]
    run["clears_bar"] = reason is None and all(c["passed"] for c in checks)
    run["bar_failures"] = "; ".join(filter(None, [reason, _failures(checks)])) or None
    _write(con, tables | {"model_run": pd.DataFrame([run]), "model_bar": pd.DataFrame(checks)})
    return run


def _not_trainable(train: pd.DataFrame, test: pd.DataFrame) -> str | None:
    if train.empty or test.empty:
        return ("too few month-ends whose horizon has matured to train on earlier months and test on later ones; "
                "no model was fitted")
    if train["as_of"].max() >= test["as_of"].min():
        return "the training months do not all come before the test months; no model was fitted"
    if train["y"].nunique() < 2:
        return "the training months hold no escalation (or nothing else); no model was fitted"
    return None


def _fit_and_score(config, run, data, train, test, latest):
    from sklearn.linear_model import LogisticRegression  # slow to import: only when fitting

    encoder = Encoder(config, train)
    model = LogisticRegression(C=config["model"]["C"], max_iter=config["model"]["max_iter"])
    model.fit(encoder.transform(train), train["y"].astype(int))
    coef, intercept = model.coef_[0], float(model.intercept_[0])

    def score(frame):
        x = encoder.transform(frame)
        return x * coef, 1 / (1 + np.exp(-(intercept + (x * coef).sum(axis=1))))

    _, train_score = score(train)
    test_contrib, test_score = score(test)
    threshold = threshold_for_share(train_score, config["operating_point"]["flag_share"])
    y_test = test["y"].to_numpy(dtype=int)
    at_threshold = precision_recall_at_threshold(y_test, test_score, threshold)
    calibration = pd.concat([calibration_table(train["y"], train_score).assign(period="train"),
                             calibration_table(y_test, test_score).assign(period="test")])
    test_frame = test.assign(y=y_test, flagged=test_score >= threshold)
    subgroups = pd.concat([subgroup_rates(test_frame.assign(all="all"), "all").assign(subgroup="all")]
                          + [subgroup_rates(test_frame, subgroup_column(g)).assign(subgroup=g)
                             for g in config["subgroups"]])
    gap, gap_subgroup = fnr_gap(subgroups, config["bar"]["min_group_positives"])
    run |= {"threshold": threshold, "auc": roc_auc(y_test, test_score), "precision": at_threshold["precision"],
            "recall": at_threshold["recall"], "flag_rate": at_threshold["flag_rate"],
            "precision_lift": _ratio(at_threshold["precision"] or 0, run["test_base_rate"]),
            "ece": expected_calibration_error(calibration[calibration["period"] == "test"]),
            "max_fnr_gap": gap, "max_fnr_gap_subgroup": gap_subgroup, "model_c": config["model"]["C"]}

    current = data[data["as_of"] == latest]
    current_contrib, current_score = score(current)
    flags = pd.concat([_flags(encoder, test, test_contrib, test_score, threshold, "test"),
                       _flags(encoder, current, current_contrib, current_score, threshold, "current")])
    return run, {"model_coefficient": _coefficients(encoder, coef, intercept), "model_calibration": calibration,
                 "model_subgroup": subgroups, "model_flag": flags}


def _coefficients(encoder: Encoder, coef: np.ndarray, intercept: float) -> pd.DataFrame:
    rows = [{"feature": "(intercept)", "source_column": None, "label": "intercept (log-odds at average values)",
             "coefficient": intercept, "odds_ratio": math.exp(intercept)}]
    for column, c in zip(encoder.columns, coef):
        feature = encoder.source(column)
        numeric = feature["encode"] == "numeric" and not column.endswith("_missing")
        label = (f"{feature['label']} not known" if column.endswith("_missing") else
                 f"{feature['label']}: {feature['text'][column.split('=', 1)[1]]}" if "=" in column else feature["label"])
        rows.append({"feature": column, "source_column": feature["column"], "label": label, "coefficient": float(c),
                     "odds_ratio": math.exp(c), "scale": "per standard deviation" if numeric else "present vs absent",
                     "mean": encoder.mean.get(column) if numeric else None,
                     "std": encoder.std.get(column) if numeric else None})
    return pd.DataFrame(rows)


def _flags(encoder, frame, contributions, scores, threshold, period) -> pd.DataFrame:
    ranked = frame.assign(score=scores)
    ranked["rank_in_month"] = ranked.groupby("as_of")["score"].rank(method="min", ascending=False).astype(int)
    flagged = scores >= threshold
    out = ranked.loc[flagged, ["person_key", "as_of", "score", "rank_in_month"]]
    out["as_of"] = out["as_of"].dt.date
    out["period"] = period
    out["escalated"] = frame.loc[flagged, "y"].astype(bool) if period == "test" else None
    return pd.concat([out, top_reasons(encoder, contributions[flagged], frame[flagged])], axis=1)


# Column types are fixed here rather than inferred from pandas, so an empty run (no model)
# still leaves every table with its columns for the card and for analysts.
SCHEMA = {
    "model_run": """run_id VARCHAR, run_at TIMESTAMP, config_sha256 VARCHAR, label VARCHAR, horizon_months INTEGER,
        train_from DATE, train_to DATE, test_from DATE, test_to DATE, latest_as_of DATE,
        train_rows BIGINT, test_rows BIGINT, train_children BIGINT, test_children BIGINT,
        train_base_rate DOUBLE, test_base_rate DOUBLE, flag_share DOUBLE, threshold DOUBLE, auc DOUBLE,
        precision DOUBLE, recall DOUBLE, flag_rate DOUBLE, precision_lift DOUBLE, ece DOUBLE,
        max_fnr_gap DOUBLE, max_fnr_gap_subgroup VARCHAR, model_c DOUBLE, clears_bar BOOLEAN, bar_failures VARCHAR""",
    "model_bar": "criterion VARCHAR, observed DOUBLE, comparison VARCHAR, required DOUBLE, passed BOOLEAN",
    "model_coefficient": """feature VARCHAR, source_column VARCHAR, label VARCHAR, coefficient DOUBLE,
        odds_ratio DOUBLE, scale VARCHAR, mean DOUBLE, std DOUBLE""",
    "model_calibration": """period VARCHAR, bin INTEGER, n BIGINT, mean_predicted DOUBLE, observed_rate DOUBLE,
        min_score DOUBLE, max_score DOUBLE""",
    "model_subgroup": """subgroup VARCHAR, group_value VARCHAR, n BIGINT, flagged BIGINT, positives BIGINT,
        true_positives BIGINT, false_positives BIGINT, false_negatives BIGINT, true_negatives BIGINT,
        flag_rate DOUBLE, false_positive_rate DOUBLE, false_negative_rate DOUBLE, precision DOUBLE, recall DOUBLE""",
    "model_flag": "period VARCHAR, person_key VARCHAR, as_of DATE, score DOUBLE, rank_in_month INTEGER, escalated BOOLEAN, "
                  + ", ".join(f"reason_{n}_feature VARCHAR, reason_{n}_contribution DOUBLE, reason_{n}_text VARCHAR"
                              for n in range(1, TOP_REASONS + 1)),
}


def _write(con, frames: dict[str, pd.DataFrame]) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS features")
    for table, columns in SCHEMA.items():
        con.execute(f"CREATE OR REPLACE TABLE features.{table} ({columns})")
        frame = frames.get(table)
        if frame is not None and len(frame):
            con.register("_model_frame", frame.reset_index(drop=True))
            try:
                con.execute(f"INSERT INTO features.{table} BY NAME SELECT * FROM _model_frame")
            finally:
                con.unregister("_model_frame")
