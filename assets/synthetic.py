"""The synthetic city as a Dagster asset, so it can be (re)generated from the UI."""

from pathlib import Path

import dagster as dg

from sources.synthetic.city import generate_city
from sources.synthetic.config import CityConfig


class CityRunConfig(dg.Config):
    children: int = 2_000
    seed: int = 1
    out: str = "data/city"


@dg.asset(group_name="synthetic", kinds={"python"},
          description="A synthetic city's landing folder and hidden truth (CONTRACT.md formats).")
def synthetic_city(context: dg.AssetExecutionContext, config: CityRunConfig) -> dg.MaterializeResult:
    summary = generate_city(CityConfig(children=config.children, seed=config.seed), Path(config.out))
    context.log.info(f"wrote {sum(summary.rows.values()):,} rows in {sum(summary.drops.values())} drops")
    return dg.MaterializeResult(metadata={
        "landing": dg.MetadataValue.path(str(Path(config.out) / "landing")),
        "persons": summary.persons,
        "source_records": summary.records,
        **{f"rows_{system}": rows for system, rows in summary.rows.items()},
        "seconds": sum(summary.seconds.values()),
    })
