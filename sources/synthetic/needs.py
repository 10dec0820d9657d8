"""Latent family needs that change month by month and drive every service event.

Six needs follow a two-state Markov chain per household: onset is likelier in deprived
areas and in households with a high latent vulnerability, and some needs raise others
(domestic abuse and parental mental health travel together). Events in every system are
drawn from these states, so risk features computed from the extracts carry real signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import CityConfig

NEEDS = ("domestic_abuse", "mental_health", "substance_misuse", "poverty", "housing", "child_behaviour")
# monthly onset at average vulnerability, monthly resolution, initial prevalence
RATES = {
    "domestic_abuse": (0.0045, 0.06, 0.05),
    "mental_health": (0.0060, 0.05, 0.09),
    "substance_misuse": (0.0025, 0.04, 0.04),
    "poverty": (0.0080, 0.03, 0.18),
    "housing": (0.0040, 0.08, 0.05),
    "child_behaviour": (0.0050, 0.05, 0.08),
}
# how much each need raises the onset of the others (log scale)
SPILLOVER = {("domestic_abuse", "mental_health"): 0.8, ("substance_misuse", "domestic_abuse"): 0.7,
             ("poverty", "housing"): 0.9, ("domestic_abuse", "child_behaviour"): 0.6,
             ("mental_health", "child_behaviour"): 0.4, ("substance_misuse", "poverty"): 0.5}


@dataclass
class Needs:
    months: np.ndarray  # first day of each simulated month, datetime64[D]
    household_keys: np.ndarray
    active: dict[str, np.ndarray]  # need -> bool array (households x months)

    def month_index(self, dates) -> np.ndarray:
        d = np.asarray(dates, dtype="datetime64[D]")
        return np.clip(np.searchsorted(self.months, d, side="right") - 1, 0, len(self.months) - 1)

    def row_index(self, household_keys) -> np.ndarray:
        return np.searchsorted(self.household_keys, np.asarray(household_keys))

    def at(self, household_keys, dates) -> pd.DataFrame:
        """The needs of each (household, date) pair, one bool column per need."""
        rows, cols = self.row_index(household_keys), self.month_index(dates)
        return pd.DataFrame({need: self.active[need][rows, cols] for need in NEEDS})

    def count_at(self, household_keys, dates) -> np.ndarray:
        return self.at(household_keys, dates).sum(axis=1).to_numpy()


def simulate_needs(config: CityConfig, households: pd.DataFrame, imd_decile: np.ndarray) -> Needs:
    rng = config.rng("needs")
    order = np.argsort(households["household_key"].to_numpy())
    keys = households["household_key"].to_numpy()[order]
    vuln = households["vulnerability"].to_numpy()[order]
    deprivation = (5.5 - np.asarray(imd_decile, dtype=float)[order]) / 4.5  # +1 most deprived
    months = np.arange(
        np.datetime64(config.start, "M"), np.datetime64(config.end, "M") + 1
    ).astype("datetime64[D]")
    n_h, n_m = len(keys), len(months)
    risk = 0.9 * vuln + 0.6 * deprivation
    state = {}
    for need, (onset, _, prevalence) in RATES.items():
        p0 = np.clip(prevalence * np.exp(risk - 0.4), 0, 0.9)
        state[need] = np.zeros((n_h, n_m), dtype=bool)
        state[need][:, 0] = rng.random(n_h) < p0
    for m in range(1, n_m):
        for need, (onset, resolve, _) in RATES.items():
            lift = sum(w * state[src][:, m - 1] for (src, dst), w in SPILLOVER.items() if dst == need)
            p_on = np.clip(onset * np.exp(risk + lift), 0, 0.5)
            prev = state[need][:, m - 1]
            draw = rng.random(n_h)
            state[need][:, m] = np.where(prev, draw > resolve, draw < p_on)
    return Needs(months, keys, state)
