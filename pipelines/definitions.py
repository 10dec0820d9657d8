"""The one Definitions object that `dagster dev` (run from the repo root) loads."""

from __future__ import annotations

import dagster as dg

from assets.synthetic import synthetic_city

synthetic_city_job = dg.define_asset_job("synthetic_city_job", selection=[synthetic_city])

defs = dg.Definitions(
    assets=[synthetic_city],
    jobs=[synthetic_city_job],
    # One DuckDB writer at a time: steps run in the launching process, one after another.
    executor=dg.in_process_executor,
)
