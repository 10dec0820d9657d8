"""Dagster definitions for the features layer: thin wrappers over build_features,
train_and_evaluate and write_model_card."""

import dagster as dg

from assets.checks import report
from assets.features.evaluate import train_and_evaluate
from assets.features.features import build_features
from assets.features.model_card import write_model_card
from assets.warehouse_assets import expectations_check
from pipelines.resources import Warehouse
from quality import checks
from quality.audit import thresholds

MODEL = dg.AssetKey(["warehouse", "model"])


@dg.asset(key=["features", "child_month"], deps=[MODEL], group_name="features", kinds={"duckdb"},
          description="Point-in-time risk features per child per month-end (features.child_month), the "
                      "families' Supporting Families needs (features.family_month) and escalation labels "
                      "kept apart (features.child_month_label); see assets/features/sql/.")
def child_month(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        counts = build_features(con)
        first, last, rule = con.execute(
            "SELECT first_as_of, last_as_of, knowledge_rule FROM features.window").fetchall()[0]
    return dg.MaterializeResult(metadata={**{f"rows_{t}": n for t, n in counts.items()},
                                          "window": f"{first} to {last}", "knowledge_rule": rule})


@dg.asset(key=["features", "model_card"], deps=[child_month], group_name="features", kinds={"duckdb"},
          description="Baseline escalation model (logistic regression, assets/features/model.yaml) trained on "
                      "earlier month-ends and tested on later ones; features.model_* tables and "
                      "HOME/reports/model_card.html, which says whether it clears the bar set before evaluation.")
def model_card(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        run = train_and_evaluate(con)
        card = write_model_card(con, warehouse.reports_dir)
    verdict = "clears" if run["clears_bar"] else "does not clear"
    context.log.info(f"baseline model {verdict} the minimum bar; model card at {card}")
    return dg.MaterializeResult(metadata={
        "model_card": dg.MetadataValue.path(str(card)), "clears_bar": bool(run["clears_bar"]),
        "bar_failures": run["bar_failures"] or "", "auc": run.get("auc"), "test_rows": run["test_rows"]})


@dg.asset_check(asset=child_month, name="integrity", blocking=thresholds()["features"]["severity"] == "blocking",
                description="features.child_month is unique per child and month-end, covers every child known "
                            "to any system by each month-end, and has one label row per row.")
def features_integrity(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        return report(context, con, "features/child_month", "integrity", thresholds()["features"]["severity"],
                      checks.features_integrity(con))


@dg.asset_check(asset=child_month, name="feature_expectations",
                description="Great Expectations suite for features.child_month (quality/suites/warehouse/): "
                            "key, ranges (ages, rates, deciles, counts) and code sets.")
def feature_expectations(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    return expectations_check(context, warehouse, "features/child_month", "feature_expectations", ("features",))


features_assets = [child_month, model_card]
features_checks = [features_integrity, feature_expectations]
