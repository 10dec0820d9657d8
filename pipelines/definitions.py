"""The one Definitions object that `dagster dev` (run from the repo root) loads."""

import dagster as dg

from assets.checks import identity_quality, staging_quality
from assets.features.assets import features_assets, features_checks
from assets.identity.assets import identity_assets
from assets.staging import staging_assets, staging_checks
from assets.synthetic import synthetic_city
from assets.warehouse_assets import warehouse_assets, warehouse_checks
from pipelines.jobs import staging_jobs, warehouse_job
from assets.resources import Warehouse
from pipelines.sensors import cadence_schedules, new_drop_sensor, warehouse_after_staging

synthetic_city_job = dg.define_asset_job("synthetic_city_job", selection=[synthetic_city])

defs = dg.Definitions(
    assets=[synthetic_city, *staging_assets, *identity_assets, *warehouse_assets, *features_assets],
    asset_checks=[*staging_checks, *staging_quality, *identity_quality, *warehouse_checks, *features_checks],
    jobs=[synthetic_city_job, *staging_jobs, warehouse_job],
    sensors=[new_drop_sensor, warehouse_after_staging],
    schedules=cadence_schedules,
    resources={"warehouse": Warehouse(home=dg.EnvVar("EARLYHELP_HOME"), landing=dg.EnvVar("EARLYHELP_LANDING"))},
    # One DuckDB writer at a time: steps run in the launching process, one after another.
    executor=dg.in_process_executor,
)
