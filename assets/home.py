"""The layout of a HOME: every path the pipeline keeps there, named once.

Plain (no Dagster): the `warehouse` resource, the CLI, the build summary, publishing
and the evaluation all ask a ``Home`` for a path instead of joining folder names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Names inside HOME's folders, as the code that writes them names them (it imports these)
QUALITY_PAGE = Path("quality") / "index.html"  # under reports/
DICTIONARY_PAGE = "data_dictionary.html"  # under reports/
MODEL_CARD_PAGE = "model_card.html"  # under reports/
DATA_DOCS_SITE, DATA_DOCS_STORE = "gx", "gx_store"  # under reports/
IDENTITY_REPORTS = "identity"  # under reports/: person models' training reports
MODELS = "model"  # under identity/: person models fitted here
REVIEW_QUEUE, REVIEW_DECISIONS = "queue.csv", "decisions"  # under review/
IDENTIFIABLE, ANALYTICS = "identifiable.duckdb", "analytics.duckdb"  # the serving pair, under warehouse/


@dataclass(frozen=True)
class Home:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # the databases
    @property
    def warehouse_dir(self) -> Path:
        return self.root / "warehouse"

    @property
    def build_db(self) -> Path:
        """The pipeline's own database (one writer; analysts read the serving files)."""
        return self.warehouse_dir / "build.duckdb"

    @property
    def identifiable_db(self) -> Path:
        """Serving file, restricted (a link through ``current``: assets/publish.py)."""
        return self.warehouse_dir / IDENTIFIABLE

    @property
    def analytics_db(self) -> Path:
        """Serving file, pseudonymised (a link through ``current``)."""
        return self.warehouse_dir / ANALYTICS

    @property
    def pseudonym_key(self) -> Path:
        return self.root / "secrets" / "pseudonym.key"

    # what survives a rebuild of the database
    @property
    def staged_dir(self) -> Path:
        """Typed Parquet per system, table and drop, with load records and issues."""
        return self.root / "staged"

    @property
    def identity_dir(self) -> Path:
        """Person and family key registries, link events and review labels as Parquet."""
        return self.root / "identity"

    @property
    def model_dir(self) -> Path:
        """The person models fitted to this deployment's records."""
        return self.identity_dir / MODELS

    @property
    def review_dir(self) -> Path:
        """Clerical review: queue.csv out, reviewers' decisions/*.csv in."""
        return self.root / "review"

    @property
    def review_queue(self) -> Path:
        return self.review_dir / REVIEW_QUEUE

    @property
    def review_decisions_dir(self) -> Path:
        """Reviewers' decisions/*.csv, imported once each at the next build."""
        return self.review_dir / REVIEW_DECISIONS

    # what people read
    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def quality_report(self) -> Path:
        return self.reports_dir / QUALITY_PAGE

    @property
    def data_dictionary(self) -> Path:
        return self.reports_dir / DICTIONARY_PAGE

    @property
    def model_card(self) -> Path:
        return self.reports_dir / MODEL_CARD_PAGE

    @property
    def identity_reports_dir(self) -> Path:
        """Training reports of the person models."""
        return self.reports_dir / IDENTITY_REPORTS

    # orchestration
    @property
    def dagster_dir(self) -> Path:
        """The Dagster instance (DAGSTER_HOME)."""
        return self.root / "dagster"

    @property
    def build_lock(self) -> Path:
        return self.root / ".build.lock"

    @property
    def alive_dir(self) -> Path:
        """One locked file per Dagster run while it lives."""
        return self.root / "locks" / "runs"
