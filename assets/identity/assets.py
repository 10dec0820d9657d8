"""Dagster definitions for identity: thin wrappers around engine.run_identity.

One asset, `identity/persons`, downstream of every staging asset: it links all staged
person records, keeps person and family keys stable, and refreshes the review queue.
Its blocking check (assets/checks.py: identity_quality) stops publishing when a person
holds two NHS numbers or two UPNs, or identity quality falls below its thresholds.
"""

import dagster as dg

from pipelines.resources import Warehouse
from sources.drops import SYSTEMS

from .engine import run_identity

PERSON_SYSTEMS = [s for s in SYSTEMS if s != "reference"]


@dg.asset(
    key=["identity", "persons"], group_name="identity", kinds={"duckdb", "splink"},
    deps=[dg.AssetKey(["staging", system]) for system in PERSON_SYSTEMS],
    description="One person per real child or adult across the five systems (identity.person, "
                "person_record, link, link_event), families (identity.family, family_member) and "
                "the clerical review queue (identity.review_queue, HOME/review/queue.csv).",
)
def identity_persons(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        result = run_identity(con, context.run.run_id, warehouse.review_dir, durable_dir=warehouse.identity_dir,
                              reports_dir=warehouse.reports_dir)
    context.log.info(f"identity: {result['records']:,} records -> {result['persons']:,} persons, "
                     f"{result['families']:,} families, {result['review_queue']:,} pairs to review; model "
                     f"{result['model']}" + (" (fitted to this deployment's records in this run)"
                                             if result["model_fitted"] else ""))
    return dg.MaterializeResult(metadata={
        "records": result["records"], "persons": result["persons"], "families": result["families"],
        "review_queue": result["review_queue"],
        "decisions_imported": result["decisions_imported"]["decisions"],
        "seconds": round(result["seconds"]["total"], 1),
        "model": result["model"], "model_fitted_this_run": result["model_fitted"],
    })


identity_assets = [identity_persons]
