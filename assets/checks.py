"""Dagster asset checks: thin wrappers over quality.checks that record every result in
audit.check_result (append-only) and report it to the UI. Blocking checks stop
downstream assets, and publish refuses to run while a blocking check's latest result
is a failure (quality.audit.blocking_failures)."""

import dagster as dg

from assets.resources import Warehouse
from quality import checks
from quality.audit import Outcome, record_check, thresholds
from sources.drops import SYSTEMS

BUILD_TAG = "earlyhelp/build_id"
SEVERITY = {"blocking": dg.AssetCheckSeverity.ERROR, "warning": dg.AssetCheckSeverity.WARN}


def report(context, warehouse_con, asset: str, name: str, severity: str, outcome: Outcome,
           asset_key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """Record one check result in audit.check_result and return it for the UI; a
    multi-asset check names the ``asset_key`` each of its results is about."""
    record_check(warehouse_con, context.run.run_id, asset, name, severity, outcome,
                 build_id=context.run.tags.get(BUILD_TAG))
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=name if asset_key else None,
        passed=bool(outcome.passed), severity=SEVERITY[severity],
        metadata={"observed": dg.MetadataValue.json(outcome.observed),
                  "expected": dg.MetadataValue.json(outcome.expected),
                  "failing_rows": outcome.failing_rows,
                  "sample": dg.MetadataValue.json(outcome.sample[:10])})


def staging_quality_checks(system: str) -> list[dg.AssetChecksDefinition]:
    asset = dg.AssetKey(["staging", system])
    limits = thresholds()

    @dg.asset_check(asset=asset, name="reconciliation", blocking=limits["reconciliation"]["severity"] == "blocking",
                    description="Every staged file reconciles with its manifest: delivered rows = the "
                                "manifest's rows = staged + quarantined.")
    def _reconciliation(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return report(context, con, asset.to_user_string(), "reconciliation",
                          limits["reconciliation"]["severity"], checks.reconciliation(con, system))

    @dg.asset_check(asset=asset, name="identifier_validity", blocking=limits["identifiers"]["severity"] == "blocking",
                    description="In every staged drop, each NHS number and UPN column the system's contract "
                                "marks has under "
                                f"{limits['identifiers']['max_invalid_share']:.0%} of its values failing their check "
                                f"(a column with fewer than {limits['identifiers']['min_values']} values in a drop "
                                "is not judged).")
    def _identifiers(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        rule = limits["identifiers"]
        with warehouse.connect() as con:
            return report(context, con, asset.to_user_string(), "identifier_validity", rule["severity"],
                          checks.invalid_identifiers(con, system, rule["max_invalid_share"], rule["min_values"]))

    @dg.asset_check(asset=asset, name="freshness",
                    description=f"The newest {system} drop is at most "
                                f"{limits['freshness']['max_days_behind'][system]} days behind the newest delivery.")
    def _freshness(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        rule = limits["freshness"]
        with warehouse.connect() as con:
            return report(context, con, asset.to_user_string(), "freshness", rule["severity"],
                          checks.freshness(con, system, rule["max_days_behind"][system]))

    @dg.asset_check(asset=asset, name="drift",
                    description="Current rows of each history table against the previous run: row count, "
                                "null shares and code shares within quality/thresholds.yaml (drift).")
    def _drift(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        rule = limits["drift"]
        with warehouse.connect() as con:
            return report(context, con, asset.to_user_string(), "drift", rule["severity"],
                          checks.staging_drift(con, context.run.run_id, system, rule))

    return [_reconciliation, _identifiers, _freshness, _drift]


IDENTITY = dg.AssetKey(["identity", "persons"])


@dg.asset_check(asset=IDENTITY, name="identity_constraints",
                blocking=thresholds()["identity"]["constraints"]["severity"] == "blocking",
                description="No person holds two NHS numbers or two UPNs; the review queue stays "
                            "within its share of records (quality/thresholds.yaml).")
def identity_constraints(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    rule = thresholds()["identity"]["constraints"]
    with warehouse.connect() as con:
        return report(context, con, IDENTITY.to_user_string(), "identity_constraints", rule["severity"],
                      checks.identity_constraints(con, rule))


@dg.asset_check(asset=IDENTITY, name="identity_coverage",
                description="Match rate per system and NHS number coverage at or above their minimums.")
def identity_coverage(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    rule = thresholds()["identity"]["coverage"]
    with warehouse.connect() as con:
        return report(context, con, IDENTITY.to_user_string(), "identity_coverage", rule["severity"],
                      checks.identity_coverage(con, rule))


identity_quality = [identity_constraints, identity_coverage]
staging_quality = [check for system in SYSTEMS for check in staging_quality_checks(system)]
