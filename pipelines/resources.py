"""The warehouse resource: where a build keeps its database, staged Parquet and reports."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

DEFAULT_HOME = "data/home"
DEFAULT_LANDING = "data/city/landing"


class Warehouse(dg.ConfigurableResource):
    """A build's HOME folder and the landing folder it reads drops from.

    HOME holds ``warehouse/build.duckdb`` (the pipeline's own database; analysts get
    published copies), ``staged/`` (typed Parquet per system and drop) and ``reports/``.
    """

    home: str = os.environ.get("EARLYHELP_HOME", DEFAULT_HOME)
    landing: str = os.environ.get("EARLYHELP_LANDING", DEFAULT_LANDING)

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def landing_path(self) -> Path:
        return Path(self.landing)

    @property
    def build_db(self) -> Path:
        return self.home_path / "warehouse" / "build.duckdb"

    @property
    def staged_dir(self) -> Path:
        return self.home_path / "staged"

    @property
    def reports_dir(self) -> Path:
        return self.home_path / "reports"

    @property
    def identity_dir(self) -> Path:
        """Person and family key registries, link events and review labels as Parquet:
        what must survive a rebuild of the database."""
        return self.home_path / "identity"

    @property
    def review_dir(self) -> Path:
        """Clerical review: queue.csv out, reviewers' decisions/*.csv in."""
        return self.home_path / "review"

    @contextmanager
    def connect(self):
        """The single writer connection to the build database."""
        self.build_db.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.build_db))
        con.execute("SET TimeZone = 'UTC'")  # instants subtract as elapsed time, across clock changes
        try:
            yield con
        finally:
            con.close()
