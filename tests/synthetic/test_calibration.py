"""The default rates hold at 20,000 children, within stated tolerances.

Targets are the council review's (config.Calibration), scaled from 120,000 children.
"""

from __future__ import annotations

import numpy as np
import pytest

from sources.synthetic.config import CityConfig
from sources.synthetic.services import simulate_services
from sources.synthetic.world import build_world

CITY = CityConfig(children=20_000, seed=1)


@pytest.fixture(scope="module")
def world():
    w = build_world(CITY)
    w.services = simulate_services(w)
    return w


def test_mash_contacts_per_month_within_5_percent(world):
    contacts = world.services["contacts"]
    per_month = len(contacts) / 36
    target = 1864 * CITY.scale
    assert abs(per_month - target) / target < 0.05, per_month


def test_decision_split_within_2_points(world):
    split = world.services["contacts"]["decision"].value_counts(normalize=True)
    for decision, share in CITY.calibration.decision_share.items():
        assert abs(split[decision] - share) < 0.02, (decision, split[decision])


def test_decisions_mostly_within_24_hours_and_red_within_4(world):
    c = world.services["contacts"]
    hours = (c["decided_at"] - c["received_at"]).dt.total_seconds() / 3600
    assert 0.85 < (hours <= 24).mean() < 0.99
    assert 0.85 < (hours[c["rag"] == "R"] <= 4).mean() < 0.99


def test_early_help_referral_sources_within_2_points(world):
    src = world.services["eh_referrals"]["source_code"]
    health = src.isin(["3A", "3B", "3C", "3D", "3E", "3F"]).mean()
    schools = src.isin(["2A", "2B"]).mean()
    assert abs(health - 0.32) < 0.02 and abs(schools - 0.25) < 0.02 and abs((src == "1C").mean() - 0.02) < 0.01


def test_some_families_wait_more_than_three_months_for_a_key_worker(world):
    ep = world.services["eh_episodes"]
    wait = (ep["allocated_date"] - ep["start_date"]).dt.days
    assert (wait > 90).sum() >= 1
    assert wait.median() < 60


def test_twins_are_about_one_and_a_half_percent_of_births(world):
    p = world.persons
    born = p[(p["role"] == "child") & (p["birth_date"] >= np.datetime64(CITY.start))]
    maternities = born.drop_duplicates(["mother_key", "birth_date"])
    twin_share = maternities["is_twin"].mean()
    assert 0.005 < twin_share < 0.03, twin_share


def test_needs_carry_signal_into_decisions(world):
    c = world.services["contacts"]
    needs = world.needs.count_at(c["household_key"].to_numpy(), c["received_at"].dt.tz_localize(None).to_numpy())
    to_csc = c["decision"].to_numpy() == "CSC_ASSESSMENT"
    assert to_csc[needs >= 2].mean() > 2 * to_csc[needs == 0].mean()
