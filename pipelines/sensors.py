"""Start a staging run when a drop's manifest appears, and on each system's cadence.

Run keys are ``<system>:<date>:<fingerprint>``: the same delivery never runs twice, and a
corrected re-delivery (new content for a date) runs again and replaces the earlier one.
"""

import dagster as dg

from assets.staging import drop_partitions, staging_assets
from pipelines.resources import Warehouse
from sources.drops import SYSTEMS, find_drops

ASSET_OF = {asset.key.path[-1]: asset for asset in staging_assets}
# Each system's cadence (CONTRACT.md), an hour after its nightly 23:05 extract, as a
# fallback for a missed sensor tick. Education and health drops are checked daily because
# their dates (census Thursdays, month ends) do not fit one cron line.
CADENCE = {"mash": "30 0 * * *", "social_care": "30 0 * * *", "early_help": "30 0 * * 1",
           "health": "30 0 * * *", "education": "30 0 * * *", "reference": "30 0 * * *"}


def requests_for_new_drops(instance: dg.DagsterInstance, warehouse: Warehouse, systems=SYSTEMS):
    """Register every complete drop as a partition and request a run for it."""
    runs = []
    for system in systems:
        drops = find_drops(warehouse.landing_path, (system,))
        name = drop_partitions(system).name
        known = set(instance.get_dynamic_partitions(name))
        new = [d.partition for d in drops if d.partition not in known]
        if new:
            instance.add_dynamic_partitions(name, new)
        for drop in drops:
            runs.append(dg.RunRequest(
                run_key=f"{system}:{drop.partition}:{drop.fingerprint}", partition_key=drop.partition,
                asset_selection=[ASSET_OF[system].key], tags={"earlyhelp/system": system}))
    return runs


@dg.sensor(name="new_drop_sensor", minimum_interval_seconds=60, asset_selection=staging_assets,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Stages each drop when its _manifest.json appears in the landing folder.")
def new_drop_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse):
    return requests_for_new_drops(context.instance, warehouse)


def cadence_schedule(system: str) -> dg.ScheduleDefinition:
    @dg.schedule(name=f"{system}_cadence", cron_schedule=CADENCE[system], target=ASSET_OF[system],
                 execution_timezone="Europe/London", default_status=dg.DefaultScheduleStatus.STOPPED,
                 description=f"Fallback for the sensor: stages any {system} drop not yet staged.")
    def _schedule(context: dg.ScheduleEvaluationContext, warehouse: Warehouse):
        return requests_for_new_drops(context.instance, warehouse, (system,))

    return _schedule


cadence_schedules = [cadence_schedule(system) for system in SYSTEMS]
