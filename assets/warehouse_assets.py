"""Dagster definitions for the warehouse: thin wrappers over build_model, build_marts
and publish. Each layer's blocking check stops everything downstream of it, and publish
also refuses while any blocking check's latest result is a failure."""

import dagster as dg

from assets.checks import report
from assets.dictionary import build_dictionary
from assets.marts.marts import build_marts
from assets.publish import publish
from assets.warehouse.model import build_model
from pipelines.resources import Warehouse
from quality import checks
from quality.audit import blocking_failures, thresholds

IDENTITY = dg.AssetKey(["identity", "persons"])
MODEL_CARD = dg.AssetKey(["features", "model_card"])


@dg.asset(key=["warehouse", "model"], deps=[IDENTITY], group_name="warehouse", kinds={"duckdb"},
          description="Conformed dimensions and facts (schema model), every fact keyed by person_key "
                      "and family_key; see docs/warehouse.md.")
def model(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        counts = build_model(con)
    return dg.MaterializeResult(metadata={f"rows_{t.split('.')[-1]}": n for t, n in counts.items()})


@dg.asset(key=["warehouse", "marts"], deps=[model], group_name="warehouse", kinds={"duckdb"},
          description="Caseload measures for analysts (schema marts): key worker caseloads, waits, MASH "
                      "timeliness, referral sources, children open, closures, step flows, re-referrals, demand.")
def marts(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        counts = build_marts(con)
    return dg.MaterializeResult(metadata={f"rows_{t.split('.')[-1]}": n for t, n in counts.items()})


@dg.asset_check(asset=model, name="integrity", blocking=thresholds()["model"]["severity"] == "blocking",
                description="Every model table is unique at its grain; every fact's person_key and family_key "
                            "exist in dim_person and dim_family.")
def model_integrity(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        return report(context, con, "warehouse/model", "integrity", thresholds()["model"]["severity"],
                      checks.model_integrity(con))


@dg.asset_check(asset=marts, name="totals_agree", blocking=thresholds()["marts"]["severity"] == "blocking",
                description="Headline totals agree whether read from a mart or counted from the model.")
def mart_consistency(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        return report(context, con, "warehouse/marts", "totals_agree", thresholds()["marts"]["severity"],
                      checks.mart_consistency(con))


@dg.asset(key=["warehouse", "publish"], deps=[marts, MODEL_CARD], group_name="warehouse", kinds={"duckdb"},
          description="Swaps in HOME/warehouse/identifiable.duckdb (restricted) and analytics.duckdb "
                      "(pseudonymised) as a pair: both written to a new generation folder, then the one "
                      "link HOME/warehouse/current swapped. After the data dictionary; refuses while any "
                      "blocking check's latest result is a failure, leaving both files as they were.")
def publish_serving_files(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        failures = blocking_failures(con)
        if failures:
            raise dg.Failure(description="not published: blocking check(s) failing: "
                                         + ", ".join(f"{a} {c}" for a, c in failures)
                                         + "; the serving files are as they were")
        dictionary = build_dictionary(con, warehouse.reports_dir)
    result = publish(warehouse.build_db, warehouse.build_db.parent)  # reads the build file: no writer open
    context.log.info(f"published; data dictionary at {dictionary}")
    return dg.MaterializeResult(metadata={
        # the names analysts open (links through `current`), and the generation they name now
        "identifiable": str(warehouse.build_db.parent / "identifiable.duckdb"),
        "analytics": str(warehouse.build_db.parent / "analytics.duckdb"),
        "generation": result["generation"],
        "data_dictionary": str(dictionary),
        "unclassified_columns_dropped": len(result["analytics"]["unclassified"]),
        "free_text_values_withheld": sum(c["withheld"] for c in result["analytics"]["free_text"].values()),
    })


def expectations_check(context, warehouse: Warehouse, asset: str, check: str,
                       schemas: tuple[str, ...]) -> dg.AssetCheckResult:
    """Run the Great Expectations suites of ``schemas`` and report them as one warning check."""
    from quality.audit import Outcome
    from quality.expectations import validate_warehouse_tables

    with warehouse.connect() as con:
        results = validate_warehouse_tables(con, context.run.run_id, warehouse.reports_dir, schemas=schemas)
        failed = [r for r in results if not r["success"]]
        return report(context, con, asset, check, "warning", Outcome(
            passed=not failed, observed={"expectations": len(results), "failed": len(failed)},
            expected="every expectation met", failing_rows=sum(r["unexpected_count"] or 0 for r in failed),
            sample=[{k: r[k] for k in ("suite", "expectation", "column_name", "unexpected_count")} for r in failed]))


@dg.asset_check(asset=model, name="warehouse_expectations",
                description="Great Expectations suites for key identity and model tables (quality/suites/"
                            "warehouse/), on pandas batches; results in audit.gx_validation and Data Docs.")
def warehouse_expectations(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    return expectations_check(context, warehouse, "warehouse/model", "warehouse_expectations", ("identity", "model"))


warehouse_assets = [model, marts, publish_serving_files]
warehouse_checks = [model_integrity, mart_consistency, warehouse_expectations]
