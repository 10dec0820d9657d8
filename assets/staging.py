"""One staging asset per source system, partitioned by the drop's extract date.

Each asset takes its system's drops for the partitions of the run into
``staging.<system>__<table>`` and ``history.<system>__<table>`` of the build database,
with quarantine and the ``audit.drop_file`` reconciliation. A run over a range of
partitions stages them together (single-run backfill), which is how ``earlyhelp build``
and backfills from an empty instance take a system's whole history at once.
"""

import warnings
from pathlib import Path

import dagster as dg

from assets import inputs
from assets.resources import Warehouse
from quality.expectations import validate_latest_drop
from sources.drops import SYSTEMS
from sources.ingest import ingest

DESCRIPTIONS = {
    "education": "Capita ONE termly census and monthly EHE/CME returns",
    "health": "0-19 nursing and CAMHS FHIR R4 export, flattened",
    "social_care": "Mosaic daily SSD-shaped snapshots",
    "early_help": "Legacy early help (MAST) weekly snapshots",
    "mash": "MASH front door daily delta feed",
    "reference": "Postcodes with deprivation, and schools",
}


def drop_partitions(system: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{system}_drops")


SOURCES = Path(__file__).resolve().parents[1] / "sources"  # staging's code version: readers and contracts
DROP_COUNTS = ("files", "rows_delivered", "rows_staged", "rows_quarantined", "values_flagged")


def drop_figures(con, system: str, drops: list[str]) -> dict[str, dict]:
    """{drop: its status and counts} for each of ``drops``: what staging holds of it (the
    latest attempt's files when nothing of it is loaded, as for a rejected or held drop)."""
    counts = ("count(file_name) AS files, sum(delivered_rows) AS delivered, sum(staged_rows) AS staged, "
              "sum(quarantined_rows) AS quarantined, sum(flagged_values) AS flagged")
    rows = con.execute(f"""
        WITH latest AS (SELECT * FROM audit.drop WHERE system = $system AND status <> 'staging'
                        QUALIFY row_number() OVER (PARTITION BY extract_date ORDER BY recorded_at DESC) = 1),
             loaded AS (SELECT extract_date, {counts} FROM audit.drop_file_loaded WHERE system = $system GROUP BY 1),
             tried AS (SELECT f.extract_date, {counts} FROM audit.drop_file f JOIN latest USING (run_id, system, extract_date)
                       GROUP BY 1)
        SELECT latest.extract_date::VARCHAR, latest.status,
               coalesce(loaded.files, tried.files, 0), coalesce(loaded.delivered, tried.delivered, 0),
               coalesce(loaded.staged, tried.staged, 0), coalesce(loaded.quarantined, tried.quarantined, 0),
               coalesce(loaded.flagged, tried.flagged, 0)
        FROM latest LEFT JOIN loaded USING (extract_date) LEFT JOIN tried USING (extract_date)
        WHERE latest.extract_date::VARCHAR IN (SELECT unnest($drops::VARCHAR[]))
        ORDER BY 1""", {"system": system, "drops": list(drops)}).fetchall()
    return {r[0]: {"status": r[1], **dict(zip(DROP_COUNTS, r[2:]))} for r in rows}


def staging_asset(system: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=system, key_prefix=["staging"], group_name="staging", kinds={"duckdb", "parquet"},
        partitions_def=drop_partitions(system), backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"{DESCRIPTIONS[system]}: staged, checked against the contract, with history.",
        code_version=inputs.folder_version(SOURCES),
    )
    def _stage(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            # what this run reads, taken before it reads it (a drop landing meanwhile is new next time)
            fingerprint, drops = inputs.landing_fingerprint(warehouse.landing_path, system,
                                                            inputs.accepted_deletions(con, system))
            [summary] = ingest(con, warehouse.landing_path, warehouse.staged_dir, systems=(system,),
                               run_id=context.run.run_id, partitions={system: context.partition_keys})
            per_drop = drop_figures(con, system, context.partition_keys)
            covered = set(drops) <= set(context.partition_keys)
            if covered and not summary.rejected and not summary.held:
                # staging now holds exactly what the landing holds: a build with the same
                # fingerprint has nothing to stage (assets/inputs.py)
                inputs.record(con, f"staging/{system}", fingerprint, context.run.run_id)
        # Each drop's own figures, on its own partition: a ranged run's materialization
        # carries the run's totals, so every partition also gets an observation of its drop.
        for drop, figures in per_drop.items():
            context.log_event(dg.AssetObservation(asset_key=context.asset_key, partition=drop, metadata=figures))
        for date, problems in summary.rejected.items():
            for problem in problems:
                context.log.error(f"drop rejected, warehouse keeps its last good state: {problem}")
        metadata = {
            "drops_staged": len(summary.staged), "drops_unchanged": len(summary.unchanged),
            "drops_rejected": len(summary.rejected), "drops_held": len(summary.held),
            "landing_ignored": len(summary.ignored), "rows_delivered": summary.rows_delivered,
            "rows_staged": summary.rows_staged, "rows_quarantined": summary.rows_quarantined,
            "values_flagged": summary.values_flagged,
            "inputs_fingerprint": fingerprint if covered else "(not every drop in this run)",
            "drops": dg.MetadataValue.table(
                [dg.TableRecord({"drop": d, **f}) for d, f in per_drop.items()],
                schema=dg.TableSchema(columns=[dg.TableColumn("drop", "string"), dg.TableColumn("status", "string"),
                                               *(dg.TableColumn(c, "int") for c in DROP_COUNTS)])),
        }
        for name in summary.ignored:
            context.log.warning(f"landing: {name}")
        for date, reasons in summary.held.items():
            for reason in reasons:
                context.log.error(f"drop held, not staged: {reason}")
        if summary.rejected or summary.held:
            problems = [p for ps in summary.rejected.values() for p in ps]
            held = [r for rs in summary.held.values() for r in rs]
            raise dg.Failure(
                description="; ".join(
                    ([f"{len(summary.rejected)} {system} drop(s) rejected: " + "; ".join(problems)] if problems else [])
                    + ([f"{len(summary.held)} {system} drop(s) held by the mass-deletion guard: " + "; ".join(held)
                        + f" (if real: earlyhelp accept-deletions --home HOME --system {system} --date DATE)"]
                       if held else [])),
                metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return _stage


def contract_expectations_check(asset: dg.AssetsDefinition, system: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="contract_expectations",
                    description=f"Great Expectations suites generated from the {system} contract, run on the "
                                "newest staged drop of each table (results in audit.gx_validation).")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            results = validate_latest_drop(con, warehouse.landing_path, system, context.run.run_id,
                                           reports_dir=warehouse.reports_dir)
        failed = [r for r in results if not r["success"]]
        return dg.AssetCheckResult(
            passed=not failed, severity=dg.AssetCheckSeverity.WARN,
            metadata={"expectations": len(results), "failed": len(failed),
                      "failures": dg.MetadataValue.json([
                          {k: r[k] for k in ("table_name", "expectation", "column_name", "unexpected_count")}
                          for r in failed[:20]])})

    return _check


with warnings.catch_warnings():  # single-run backfills are a beta feature we rely on knowingly
    warnings.simplefilter("ignore", dg.BetaWarning)
    staging_assets = [staging_asset(system) for system in SYSTEMS]
staging_checks = [contract_expectations_check(a, s) for a, s in zip(staging_assets, SYSTEMS)]
