"""Headline marts against the same figures computed from the generator's own world.

    python benchmarks/marts_vs_truth.py --home data/home            # default city, seed 1

Rebuilds the simulated world of the city's configuration (no files are written), takes
the MASH and early help events as the generator made them, and compares them with the
published analytics.duckdb. Differences come from what the pipeline cannot know (events
after the last drop, identity errors) and from defects the generator injected; the
tolerance column states how far apart the two may be for the figure to count as agreeing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assets.home import Home  # noqa: E402
from sources.synthetic.config import CityConfig  # noqa: E402
from sources.synthetic.services import simulate_services  # noqa: E402
from sources.synthetic.world import build_world  # noqa: E402


def generator_figures(config: CityConfig) -> dict[str, float]:
    world = build_world(config)
    services = simulate_services(world)
    contacts = services["contacts"]
    hours = (contacts["decided_at"] - contacts["received_at"]).dt.total_seconds() / 3600
    red = contacts["rag"] == "R"
    episodes = services["eh_episodes"]
    wait = (episodes["allocated_date"] - episodes["start_date"]).dt.days.dropna()
    return {
        "MASH contacts": len(contacts),
        "share decided within 24 h": float((hours <= 24).mean()),
        "share of red decided within 4 h": float((hours[red] <= 4).mean()),
        "share decided CSC_ASSESSMENT": float((contacts["decision"] == "CSC_ASSESSMENT").mean()),
        "share decided IAG": float((contacts["decision"] == "IAG").mean()),
        "early help episodes allocated": int(len(wait)),
        "median wait for a key worker (days)": float(wait.median()),
        "p90 wait for a key worker (days)": float(wait.quantile(0.9)),
    }


def mart_figures(analytics: Path) -> dict[str, float]:
    with duckdb.connect(str(analytics), read_only=True) as con:
        mash = con.sql("""
            SELECT sum(contacts), sum(decided_within_24h) / sum(contacts),
                   sum(red_decided_within_4h) / sum(red_contacts),
                   sum(share_csc_assessment * decided) / sum(decided), sum(share_iag * decided) / sum(decided)
            FROM marts.mash_timeliness_monthly""").fetchall()[0]
        waits = con.sql("""
            SELECT count(*), quantile_cont(wait_days, 0.5), quantile_cont(wait_days, 0.9)
            FROM model.fact_eh_episode WHERE wait_days IS NOT NULL""").fetchall()[0]
    return dict(zip(["MASH contacts", "share decided within 24 h", "share of red decided within 4 h",
                     "share decided CSC_ASSESSMENT", "share decided IAG", "early help episodes allocated",
                     "median wait for a key worker (days)", "p90 wait for a key worker (days)"], [*mash, *waits]))


TOLERANCE = {  # relative for counts and days, absolute (points) for shares
    "MASH contacts": ("relative", 0.02),
    "share decided within 24 h": ("absolute", 0.01),
    "share of red decided within 4 h": ("absolute", 0.02),
    "share decided CSC_ASSESSMENT": ("absolute", 0.01),
    "share decided IAG": ("absolute", 0.01),
    "early help episodes allocated": ("relative", 0.02),
    "median wait for a key worker (days)": ("relative", 0.10),
    "p90 wait for a key worker (days)": ("relative", 0.10),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path("data/home"))
    parser.add_argument("--children", type=int, default=CityConfig().children)
    parser.add_argument("--seed", type=int, default=CityConfig().seed)
    args = parser.parse_args()
    truth = generator_figures(CityConfig(children=args.children, seed=args.seed))
    marts = mart_figures(Home(args.home).analytics_db)
    print(f"{'figure':<38} {'generator':>12} {'marts':>12} {'tolerance':>12}  agrees")
    failures = 0
    for name, expected in truth.items():
        got = float(marts[name] or 0)
        kind, limit = TOLERANCE[name]
        gap = abs(got - expected) / abs(expected) if kind == "relative" else abs(got - expected)
        ok = gap <= limit
        failures += not ok
        shown = f"{limit:.0%} rel." if kind == "relative" else f"{limit * 100:.0f} points"
        print(f"{name:<38} {expected:>12,.3f} {got:>12,.3f} {shown:>12}  {'yes' if ok else 'NO'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
