"""Dagster definitions for identity: thin wrappers around engine.run_identity.

One asset, `identity/persons`, downstream of every staging asset: it links all staged
person records, keeps person and family keys stable, and refreshes the review queue.
Its blocking check stops publishing when a person holds two NHS numbers or two UPNs.
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
        result = run_identity(con, context.run_id, warehouse.review_dir, durable_dir=warehouse.identity_dir)
    context.log.info(f"identity: {result['records']:,} records -> {result['persons']:,} persons, "
                     f"{result['families']:,} families, {result['review_queue']:,} pairs to review")
    return dg.MaterializeResult(metadata={
        "records": result["records"], "persons": result["persons"], "families": result["families"],
        "review_queue": result["review_queue"],
        "decisions_imported": result["decisions_imported"]["decisions"],
        "seconds": round(result["seconds"]["total"], 1),
    })


@dg.asset_check(asset=identity_persons, name="one_identifier_per_person", blocking=True,
                description="No person holds two different NHS numbers or two different UPNs "
                            "(a former UPN of the same pupil is allowed).")
def one_identifier_per_person(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        nhs, upn = con.sql("""
            WITH per_person AS (
                SELECT p.person_key, count(DISTINCT s.nhs_number) AS nhs,
                       count(DISTINCT s.upn) FILTER (WHERE s.upn NOT IN (
                           SELECT former_upn FROM identity.standardised_record x
                           WHERE x.former_upn IS NOT NULL)) AS upn
                FROM identity.person_record p JOIN identity.standardised_record s USING (record_key)
                GROUP BY 1
            )
            SELECT count(*) FILTER (WHERE nhs > 1), count(*) FILTER (WHERE upn > 1) FROM per_person
        """).fetchall()[0]
    return dg.AssetCheckResult(passed=nhs == 0 and upn == 0,
                               metadata={"persons_with_two_nhs_numbers": nhs, "persons_with_two_upns": upn})


identity_assets = [identity_persons]
identity_checks = [one_identifier_per_person]
