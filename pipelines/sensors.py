"""Start a staging run when a drop's manifest appears, and on each system's cadence;
start the warehouse run when a staging run has succeeded.

Run keys are ``<system>:<date>:<fingerprint>``: the same delivery never runs twice, and a
corrected re-delivery (new content for a date) runs again and replaces the earlier one.
"""

import dagster as dg

from assets.staging import drop_partitions
from pipelines.jobs import STAGING_JOB, staging_jobs, warehouse_job
from assets.resources import Warehouse
from sources.drops import SYSTEMS, find_drops
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
                job_name=STAGING_JOB[system].name, tags={"earlyhelp/system": system}))
    return runs


@dg.sensor(name="new_drop_sensor", minimum_interval_seconds=60, jobs=staging_jobs,
           default_status=dg.DefaultSensorStatus.STOPPED,
           description="Stages each drop when its _manifest.json appears in the landing folder.")
def new_drop_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse):
    return requests_for_new_drops(context.instance, warehouse)


def cadence_schedule(system: str) -> dg.ScheduleDefinition:
    @dg.schedule(name=f"{system}_cadence", cron_schedule=CADENCE[system], job=STAGING_JOB[system],
                 execution_timezone="Europe/London", default_status=dg.DefaultScheduleStatus.STOPPED,
                 description=f"Fallback for the sensor: stages any {system} drop not yet staged.")
    def _schedule(context: dg.ScheduleEvaluationContext, warehouse: Warehouse):
        return requests_for_new_drops(context.instance, warehouse, (system,))

    return _schedule


cadence_schedules = [cadence_schedule(system) for system in SYSTEMS]


@dg.run_status_sensor(name="warehouse_after_staging", run_status=dg.DagsterRunStatus.SUCCESS,
                      monitored_jobs=staging_jobs, request_job=warehouse_job,
                      default_status=dg.DefaultSensorStatus.STOPPED,
                      description="Runs the warehouse job (identity to publish) after each staging run succeeds; "
                                  "runs queue one at a time (dagster.yaml) and hold the HOME lock.")
def warehouse_after_staging(context: dg.RunStatusSensorContext):
    return dg.RunRequest(run_key=f"after:{context.dagster_run.run_id}",
                         tags={"earlyhelp/after_run": context.dagster_run.run_id})
