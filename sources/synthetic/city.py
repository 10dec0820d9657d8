"""Generate a whole synthetic city: the five systems' drops, reference data and truth.

    <out>/landing/<system>/<date>/...   what the systems deliver (CONTRACT.md)
    <out>/truth/persons.csv             who really exists
    <out>/truth/records.csv             which real person each source record describes
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config import CityConfig
from .services import simulate_services
from .world import build_world


@dataclass
class CitySummary:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    persons: int = 0
    records: int = 0


def generate_city(config: CityConfig, out: Path) -> CitySummary:
    # imported here so that a missing system module names itself in the error
    from .early_help import write_early_help
    from .education import write_education
    from .health import write_health
    from .mash import write_mash
    from .reference import write_reference
    from .social_care import write_social_care

    out = Path(out)
    landing, truth_dir = out / "landing", out / "truth"
    for folder in (landing, truth_dir):  # a city is written whole, never mixed with an older one
        if folder.exists():
            shutil.rmtree(folder)
    summary = CitySummary(out)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[name] = round(now - clock, 2)
        clock = now

    world = build_world(config)
    lap("population")
    world.services = simulate_services(world)
    lap("services")
    records = []
    for system, writer in (("education", write_education), ("health", write_health),
                           ("social_care", write_social_care), ("early_help", write_early_help),
                           ("mash", write_mash)):
        records.append(writer(world, landing))
        lap(system)
    write_reference(world, landing)
    records = pd.concat(records, ignore_index=True).drop_duplicates(["system", "table", "record_id"])
    _write_truth(world, records, truth_dir)
    lap("truth")
    summary.persons, summary.records = len(world.persons), len(records)
    for manifest in sorted(landing.glob("*/*/_manifest.json")):
        system = manifest.parent.parent.name
        summary.drops[system] = summary.drops.get(system, 0) + 1
        summary.rows[system] = summary.rows.get(system, 0) + sum(
            f["rows"] for f in pd.read_json(manifest, typ="series")["files"])
    return summary


def _write_truth(world, records: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    persons = world.persons.sort_values("person_key")
    truth = pd.DataFrame({
        "person_key": persons["person_key"], "household_key": persons["household_key"],
        "birth_date": persons["birth_date"].dt.strftime("%Y-%m-%d"), "sex": persons["sex"],
        "is_twin": persons["is_twin"].map({True: "true", False: "false"}),
    })
    truth.to_csv(folder / "persons.csv", index=False, lineterminator="\n")
    records.sort_values(["system", "table", "record_id"], kind="stable")[
        ["system", "table", "record_id", "person_key"]].to_csv(folder / "records.csv", index=False, lineterminator="\n")
