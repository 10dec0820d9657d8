"""The simulated city as one object: people, homes, needs and the services' event log.

Every system module reads what it needs from a ``World`` and writes its own flawed view
of it; nothing here knows about file formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import CityConfig
from .needs import Needs, simulate_needs
from .population import Population, build_population


@dataclass
class World:
    config: CityConfig
    population: Population
    needs: Needs
    services: dict[str, pd.DataFrame] = field(default_factory=dict)  # filled by services.py

    @property
    def persons(self) -> pd.DataFrame:
        return self.population.persons

    @property
    def households(self) -> pd.DataFrame:
        return self.population.households

    @property
    def addresses(self) -> pd.DataFrame:
        return self.population.geography.addresses

    @property
    def schools(self) -> pd.DataFrame:
        return self.population.geography.schools

    @property
    def postcodes(self) -> pd.DataFrame:
        return self.population.geography.postcodes

    def children(self) -> pd.DataFrame:
        return self.persons[self.persons["role"] == "child"]

    def address_at(self, household_keys, dates) -> pd.DataFrame:
        """The address each household lived at on each date (one row per input pair)."""
        res = self.population.residences
        query = pd.DataFrame({
            "household_key": np.asarray(household_keys, dtype=object),
            "when": np.asarray(dates, dtype="datetime64[ns]"),
            "_row": np.arange(len(household_keys)),
        }).astype({"household_key": "str"}).sort_values("when", kind="stable")
        periods = res.sort_values("valid_from", kind="stable").astype(
            {"valid_from": "datetime64[ns]", "household_key": "str"})
        joined = pd.merge_asof(query, periods, left_on="when", right_on="valid_from", by="household_key",
                               direction="backward")
        # Before the first recorded move-in, the first known address stands.
        first = periods.drop_duplicates("household_key").set_index("household_key")["address_id"]
        joined["address_id"] = joined["address_id"].fillna(joined["household_key"].map(first))
        joined = joined.sort_values("_row")
        addr = self.addresses.set_index("address_id")
        out = addr.loc[joined["address_id"].astype(np.int64).to_numpy()].reset_index()
        return out


def build_world(config: CityConfig) -> World:
    population = build_population(config)
    first = population.residences.drop_duplicates("household_key").set_index("household_key")["address_id"]
    imd = population.geography.addresses.set_index("address_id")["imd_decile"]
    deciles = imd.loc[first.loc[population.households["household_key"]].to_numpy()].to_numpy()
    return World(config, population, simulate_needs(config, population.households, deciles))
