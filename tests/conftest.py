"""Shared fixtures: one small synthetic city written to disk for the whole session."""

from __future__ import annotations

from datetime import date

from pathlib import Path

import duckdb
import pytest

from assets.identity.engine import run_identity
from sources.ingest import ingest
from sources.synthetic.city import generate_city
from sources.synthetic.config import CityConfig

# Two years of life; drops from mid-October so the window crosses the clock change
# on 26 October 2025 and holds a termly census and two month ends.
SMALL_CITY = CityConfig(children=2000, seed=1, start=date(2024, 1, 1), end=date(2025, 11, 30),
                        go_live=date(2025, 10, 13))


@pytest.fixture(scope="session")
def small_city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city")
    summary = generate_city(SMALL_CITY, out)
    return out, summary


def stage_and_link(city: Path, folder: Path, *then) -> Path:
    """A build database in ``folder`` with every drop of ``city`` staged and identity linked
    once (run-1); each of ``then`` (e.g. build_model) is then called on it in turn."""
    database = folder / "build.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        summaries = ingest(con, city / "landing", folder / "staged")
        assert all(s.staged for s in summaries), summaries
        run_identity(con, "run-1", folder / "review")
        for step in then:
            step(con)
    return database
