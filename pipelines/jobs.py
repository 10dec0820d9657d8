"""The jobs a HOME is built with, the same whoever launches them: `earlyhelp build`, the
sensors and schedules, or a data engineer in the Dagster UI.

- ``stage_<system>``: one system's staging asset and its checks, over its drops (a
  dynamic partition each; the build runs all of a system's drops as one ranged run).
- ``warehouse``: identity, the model, the marts, the features and the model card, and
  publishing, with every check on them: a failing blocking check stops what follows it.
"""

import dagster as dg

from assets.features.assets import features_assets
from assets.identity.assets import identity_assets
from assets.staging import drop_partitions, staging_assets
from assets.warehouse_assets import warehouse_assets
from sources.drops import SYSTEMS

ASSET_OF = {asset.key.path[-1]: asset for asset in staging_assets}


def staging_job_name(system: str) -> str:
    return f"stage_{system}"


STAGING_JOB = {system: dg.define_asset_job(
    staging_job_name(system), selection=dg.AssetSelection.assets(ASSET_OF[system]),
    partitions_def=drop_partitions(system),
    description=f"Stage {system} drops (one partition per drop) and run the staging checks.") for system in SYSTEMS}
staging_jobs = list(STAGING_JOB.values())

warehouse_job = dg.define_asset_job(
    "warehouse", selection=dg.AssetSelection.assets(*identity_assets, *warehouse_assets, *features_assets),
    description="Link identity, build the model, marts and features, train the baseline model and publish "
                "the serving files, with every check on them.")
