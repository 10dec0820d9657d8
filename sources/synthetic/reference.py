"""Reference data (postcodes with deprivation, schools), delivered at go-live."""

from __future__ import annotations

from pathlib import Path

from .output import Drop


def write_reference(world, landing: Path) -> None:
    drop = Drop(landing, "reference", world.config.go_live, "snapshot")
    drop.csv("postcodes.csv", world.postcodes[["postcode", "district", "lsoa", "imd_decile"]])
    drop.csv("schools.csv", world.schools[["urn", "laestab", "name", "phase", "district", "postcode"]])
    drop.finish()
