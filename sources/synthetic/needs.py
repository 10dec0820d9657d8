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
# monthly onset at average vulnerability (documentary: the steady state is set by
# prevalence and resolution), monthly resolution, prevalence
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


BURN_IN_MONTHS = 36


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
    # Normalised so that the city's prevalence stays near its starting level: the
    # period should show seasonal and local variation, not a drift.
    relative = np.exp(risk) / np.exp(risk).mean()
    state = {}
    for need, (onset, _, prevalence) in RATES.items():
        state[need] = np.zeros((n_h, n_m), dtype=bool)
        state[need][:, 0] = rng.random(n_h) < np.clip(prevalence * relative, 0, 0.9)
    # Run the chain for years before the period (burn-in) so the period opens in its
    # steady state rather than drifting away from the starting prevalence.
    current = {need: state[need][:, 0] for need in NEEDS}
    for m in range(-BURN_IN_MONTHS + 1, n_m):
        nxt = {}
        for need, (onset, resolve, prevalence) in RATES.items():
            lift = sum(w * current[src] for (src, dst), w in SPILLOVER.items() if dst == need)
            steady_onset = prevalence * resolve / (1 - prevalence) * 0.8  # spillover adds the rest
            p_on = np.clip(steady_onset * relative * np.exp(lift), 0, 0.5)
            draw = rng.random(n_h)
            nxt[need] = np.where(current[need], draw > resolve, draw < p_on)
        current = nxt
        if m >= 0:
            for need in NEEDS:
                state[need][:, m] = current[need]
    return Needs(months, keys, state)
