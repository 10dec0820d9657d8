"""Dagster definitions for the warehouse: thin wrappers over build_model, build_marts
and publish. Each layer's blocking check stops everything downstream of it, and publish
also refuses while any blocking check's latest result is a failure."""

from pathlib import Path

import dagster as dg

from assets.checks import BUILD_TAG, report
from assets.dictionary import build_dictionary
from assets.marts.marts import CALENDAR, MARTS, build_marts
from assets.marts.marts import SQL as MART_HERE
from assets import inputs
from assets.publish import publish
from assets.sql_lineage import tables_made
from assets.table_assets import key_of, materialized, table_specs
from assets.warehouse.model import HERE as MODEL_HERE
from assets.warehouse.model import REFERENCE_TABLES, TABLE_GRAIN, build_model
from assets.warehouse.model import SQL_FILES as MODEL_FILES
from assets.resources import Warehouse
from quality import checks
from quality.audit import Outcome, blocking_failures, finish_run, thresholds

# Each layer's tables, in the order their SQL makes them, and what each reads
# (in the order the SQL makes them: Dagster takes a step's outputs in dependency order)
MODEL_SQL = tables_made([MODEL_HERE / f for f in MODEL_FILES])
MODEL_TABLES = [t for t in MODEL_SQL if t.split(".")[1] in (*REFERENCE_TABLES, *TABLE_GRAIN)]
MART_SQL = tables_made([MART_HERE / CALENDAR, *(MART_HERE / f"{m}.sql" for m in MARTS)])
MART_TABLES = [t for t in MART_SQL if t.split(".")[1] in MARTS]
CODE = Path(__file__).resolve().parent  # each layer's code version: its folder's files
MART_PREVIEW_ROWS = 5  # marts are aggregates (counts by month, district, team): safe to preview
MODEL_CARD = dg.AssetKey(["features", "model_card"])


@dg.multi_asset(name="model", specs=table_specs(MODEL_SQL, "model", MODEL_TABLES, code=CODE / "warehouse"), can_subset=False)
def model(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Conformed dimensions and facts (schema model), built together in one transaction."""
    with warehouse.connect() as con:  # closed before the results go out
        inputs.mark_changing(con, context.run.run_id)
        build_model(con)
        results = list(materialized(con, MODEL_TABLES))
    yield from results


@dg.multi_asset(name="marts", specs=table_specs(MART_SQL, "marts", MART_TABLES, code=CODE / "marts"), can_subset=False)
def marts(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Caseload measures for analysts (schema marts), built together in one transaction."""
    with warehouse.connect() as con:
        inputs.mark_changing(con, context.run.run_id)
        build_marts(con)
        results = list(materialized(con, MART_TABLES, preview_rows=MART_PREVIEW_ROWS))
    yield from results


def _about(outcome: Outcome, belongs) -> Outcome:
    """The part of a layer-wide outcome about one table: the sample entries ``belongs`` picks."""
    sample = [entry for entry in outcome.sample if belongs(entry)]
    return Outcome(passed=not sample, observed={"problems": len(sample)}, expected=outcome.expected,
                   failing_rows=len(sample), sample=sample)


MODEL_RULE = thresholds()["model"]


@dg.multi_asset_check(specs=[dg.AssetCheckSpec(
    "integrity", asset=key_of(f"model.{t}"), blocking=MODEL_RULE["severity"] == "blocking",
    description=f"model.{t} is unique at its grain ({', '.join(grain)}); its person_key and family_key, "
                "if it has them, exist in dim_person and dim_family.") for t, grain in TABLE_GRAIN.items()])
def model_integrity(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
    with warehouse.connect() as con:
        outcome = checks.model_integrity(con)
        results = [report(context, con, key_of(f"model.{t}").to_user_string(), "integrity", MODEL_RULE["severity"],
                          _about(outcome, lambda e: e.get("table") in (t, f"model.{t}")), asset_key=key_of(f"model.{t}"))
                   for t in TABLE_GRAIN]
    yield from results


MART_RULE = thresholds()["marts"]
MARTS_TOTALLED = sorted({m for sql, _ in checks.MART_TOTALS.values() for m in MART_TABLES if m in sql})


@dg.multi_asset_check(specs=[dg.AssetCheckSpec(
    "totals_agree", asset=key_of(m), blocking=MART_RULE["severity"] == "blocking",
    description=f"Each headline total read from {m} equals the same total counted from the model.")
    for m in MARTS_TOTALLED])
def mart_consistency(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
    with warehouse.connect() as con:
        outcome = checks.mart_consistency(con)
        results = [report(context, con, key_of(m).to_user_string(), "totals_agree", MART_RULE["severity"],
                          _about(outcome, lambda e: m in checks.MART_TOTALS[e["total"]][0]), asset_key=key_of(m))
                   for m in MARTS_TOTALLED]
    yield from results


@dg.asset(key=["warehouse", "publish"], deps=[*marts.keys, MODEL_CARD], group_name="warehouse", kinds={"duckdb"},
          code_version=inputs.folder_version(CODE / "publish.py", CODE / "publish_rules.yaml"),
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
        # Publishing is the run's last step and everything before it succeeded: the run's
        # row is finished now, so the published audit.run does not show it running.
        record = context.run.tags.get(BUILD_TAG) or context.run.run_id
        finish_run(con, record, "success")
    try:
        result = publish(warehouse.build_db, warehouse.layout.warehouse_dir)  # reads the build file: no writer open
    except Exception as error:
        with warehouse.connect() as con:
            finish_run(con, record, "failed", f"publish failed: {type(error).__name__}", only_running=False)
        raise
    with warehouse.connect() as con:
        # the serving pair now reflects these inputs: a build that finds them unchanged skips
        # the warehouse job (assets/inputs.py)
        fingerprint = inputs.warehouse_fingerprint(warehouse.layout.root, inputs.recorded_staging(inputs.recorded(con)))
        inputs.record(con, "warehouse", fingerprint, record)
    context.log.info(f"published; data dictionary at {dictionary}")
    return dg.MaterializeResult(metadata={
        # the names analysts open (links through `current`), and the generation they name now
        "identifiable": str(warehouse.layout.identifiable_db),
        "analytics": str(warehouse.layout.analytics_db),
        "generation": result["generation"],
        "inputs_fingerprint": fingerprint,
        "data_dictionary": str(dictionary),
        "unclassified_columns_dropped": len(result["analytics"]["unclassified"]),
        "free_text_values_withheld": sum(c["withheld"] for c in result["analytics"]["free_text"].values()),
    })


def expectations_checks(context, warehouse: Warehouse, check: str, suites: tuple[str, ...]):
    """Run the Great Expectations suites of the ``suites`` tables and report them as one
    warning check per asset whose tables they validate."""
    from quality.expectations import validate_warehouse_tables

    schemas = tuple(dict.fromkeys(t.split(".")[0] for t in suites))
    with warehouse.connect() as con:
        results = validate_warehouse_tables(con, context.run.run_id, warehouse.reports_dir, schemas=schemas)
        reported = []
        for key in dict.fromkeys(map(key_of, suites)):
            mine = [r for r in results if key_of(r["suite"]) == key]
            failed = [r for r in mine if not r["success"]]
            reported.append(report(context, con, key.to_user_string(), check, "warning", Outcome(
                passed=bool(mine) and not failed, observed={"expectations": len(mine), "failed": len(failed)},
                expected="every expectation met (a table not built yet is not validated: fails)",
                failing_rows=sum(r["unexpected_count"] or 0 for r in failed),
                sample=[{k: r[k] for k in ("suite", "expectation", "column_name", "unexpected_count")}
                        for r in failed]), asset_key=key))
    yield from reported


WAREHOUSE_SUITES = ("identity.person", "identity.person_record", "model.dim_person", "model.fact_mash_contact")


@dg.multi_asset_check(specs=[dg.AssetCheckSpec(
    "warehouse_expectations", asset=key,
    description=f"Great Expectations suites (quality/suites/warehouse/) for "
                f"{', '.join(t for t in WAREHOUSE_SUITES if key_of(t) == key)}, on pandas batches; results in "
                "audit.gx_validation and Data Docs.") for key in dict.fromkeys(map(key_of, WAREHOUSE_SUITES))])
def warehouse_expectations(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
    yield from expectations_checks(context, warehouse, "warehouse_expectations", WAREHOUSE_SUITES)


warehouse_assets = [model, marts, publish_serving_files]
warehouse_checks = [model_integrity, mart_consistency, warehouse_expectations]
