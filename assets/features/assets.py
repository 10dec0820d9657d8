"""Dagster definitions for the features layer: thin wrappers over build_features,
train_and_evaluate and write_model_card."""

from pathlib import Path

import dagster as dg

from assets import inputs
from assets.checks import report
from assets.features.evaluate import train_and_evaluate
from assets.features.features import SQL, SQL_FILES, TABLES, build_features
from assets.features.model_card import write_model_card
from assets.sql_lineage import tables_made
from assets.table_assets import key_of, materialized, table_specs
from assets.warehouse_assets import expectations_checks
from assets.resources import Warehouse
from quality import checks
from quality.audit import thresholds

# Made in Python (assets/features/features.py), not by a SQL file: what each reads
MADE_IN_PYTHON = {"features.window": {"history.mash__contacts", "history.social_care__ssd_cin_episodes"},
                  "features.feature_definition": set()}
FEATURE_SQL = tables_made([SQL / f for f in SQL_FILES])
# in dependency order (the Python-made tables read no feature table)
FEATURE_TABLES = [*MADE_IN_PYTHON, *(t for t in FEATURE_SQL if t.split(".")[1] in TABLES)]
CHILD_MONTH = key_of("features.child_month")
LABELS = key_of("features.child_month_label")


@dg.multi_asset(name="features", specs=table_specs(FEATURE_SQL, "features", FEATURE_TABLES, MADE_IN_PYTHON,
                                                      code=Path(__file__).resolve().parent), can_subset=False)
def child_month(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Point-in-time risk features per child per month-end, the families' Supporting Families
    needs and the escalation labels kept apart, built together; see assets/features/sql/."""
    with warehouse.connect() as con:
        inputs.mark_changing(con, context.run.run_id)
        build_features(con)
        first, last, rule = con.execute(
            "SELECT first_as_of, last_as_of, knowledge_rule FROM features.window").fetchall()[0]
        results = list(materialized(con, FEATURE_TABLES))
    context.log.info(f"features from {first} to {last}, knowledge rule {rule}")
    yield from results


@dg.asset(key=["features", "model_card"], deps=[CHILD_MONTH, LABELS], group_name="features", kinds={"duckdb"},
          code_version=inputs.folder_version(Path(__file__).resolve().parent),
          description="Baseline escalation model (logistic regression, assets/features/model.yaml) trained on "
                      "earlier month-ends and tested on later ones; features.model_* tables and "
                      "HOME/reports/model_card.html, which says whether it clears the bar set before evaluation.")
def model_card(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        inputs.mark_changing(con, context.run.run_id)
        run = train_and_evaluate(con)
        card = write_model_card(con, warehouse.layout.model_card)
    verdict = "clears" if run["clears_bar"] else "does not clear"
    context.log.info(f"baseline model {verdict} the minimum bar; model card at {card}")
    return dg.MaterializeResult(metadata={
        "model_card": dg.MetadataValue.path(str(card)), "clears_bar": bool(run["clears_bar"]),
        "bar_failures": run["bar_failures"] or "", "auc": run.get("auc"), "test_rows": run["test_rows"]})


@dg.asset_check(asset=CHILD_MONTH, name="integrity", blocking=thresholds()["features"]["severity"] == "blocking",
                description="features.child_month is unique per child and month-end, covers every child known "
                            "to any system by each month-end, and has one label row per row.")
def features_integrity(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        return report(context, con, "features/child_month", "integrity", thresholds()["features"]["severity"],
                      checks.features_integrity(con))


@dg.multi_asset_check(specs=[dg.AssetCheckSpec(
    "feature_expectations", asset=CHILD_MONTH,
    description="Great Expectations suite for features.child_month (quality/suites/warehouse/): key, ranges "
                "(ages, rates, deciles, counts) and code sets.")])
def feature_expectations(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
    yield from expectations_checks(context, warehouse, "feature_expectations", ("features.child_month",))


features_assets = [child_month, model_card]
features_checks = [features_integrity, feature_expectations]
