"""Dagster definitions for identity: thin wrappers around engine.run_identity.

One step, downstream of every staging asset, with three outputs: `identity/persons`
(all staged person records linked, person keys kept stable), `identity/families` (families
and households from them) and `identity/review_queue` (the pairs left for clerical
review). The blocking check on persons (assets/checks.py: identity_quality) stops
publishing when a person holds two NHS numbers or two UPNs.
"""

from pathlib import Path

import dagster as dg

from assets import inputs
from assets.table_assets import IDENTITY_FAMILIES, IDENTITY_PERSONS, IDENTITY_REVIEW_QUEUE, materialized
from assets.resources import Warehouse
from sources.drops import SYSTEMS

from .engine import run_identity

CODE_VERSION = inputs.folder_version(Path(__file__).resolve().parent)  # the identity engine's files
PERSON_SYSTEMS = [s for s in SYSTEMS if s != "reference"]


@dg.multi_asset(name="identity", can_subset=False, specs=[
    dg.AssetSpec(IDENTITY_PERSONS, group_name="identity", kinds={"duckdb", "splink"}, code_version=CODE_VERSION,
                 deps=[dg.AssetKey(["staging", system]) for system in PERSON_SYSTEMS],
                 description="One person per real child or adult across the five systems: identity.person, "
                             "person_record (each source record's person and why), link, link_event.",
                 metadata={"table": "identity.person"}),
    dg.AssetSpec(IDENTITY_FAMILIES, group_name="identity", kinds={"duckdb"}, deps=[IDENTITY_PERSONS],
                 code_version=CODE_VERSION,
                 description="Families (identity.family, family_member: who belonged when, and why) and "
                             "households from shared addresses (identity.household).",
                 metadata={"table": "identity.family"}),
    dg.AssetSpec(IDENTITY_REVIEW_QUEUE, group_name="identity", kinds={"duckdb"}, deps=[IDENTITY_PERSONS],
                 code_version=CODE_VERSION,
                 description="Pairs of records left for clerical review (identity.review_queue), also written "
                             "to HOME/review/queue.csv.",
                 metadata={"table": "identity.review_queue"}),
])
def identity_persons(context: dg.AssetExecutionContext, warehouse: Warehouse):
    with warehouse.connect() as con:
        inputs.mark_changing(con, context.run.run_id)
        result = run_identity(con, context.run.run_id, warehouse.review_dir, durable_dir=warehouse.identity_dir,
                              reports_dir=warehouse.reports_dir)
        context.log.info(f"identity: {result['records']:,} records -> {result['persons']:,} persons, "
                         f"{result['families']:,} families, {result['review_queue']:,} pairs to review; model "
                         f"{result['model']}" + (" (fitted to this deployment's records in this run)"
                                                 if result["model_fitted"] else ""))
        persons, families, queue = materialized(con, ["identity.person", "identity.family", "identity.review_queue"])
    yield dg.MaterializeResult(asset_key=IDENTITY_PERSONS, metadata={
        **persons.metadata, "records": result["records"],
        "decisions_imported": result["decisions_imported"]["decisions"],
        "seconds": round(result["seconds"]["total"], 1),
        "model": result["model"], "model_fitted_this_run": result["model_fitted"]})
    yield families
    yield dg.MaterializeResult(asset_key=IDENTITY_REVIEW_QUEUE, metadata={
        **queue.metadata, "queue_csv": dg.MetadataValue.path(result["review_queue_csv"])})


identity_assets = [identity_persons]
