"""Great Expectations contexts and the Data Docs site under HOME/reports.

Without a reports folder a validation runs in an in-memory context and leaves nothing
behind. With one (``HOME/reports``) the context keeps its stores on disk:

- ``reports/gx_store/expectations/``: the suites as GX last ran them (the JSON in
  ``quality/suites`` stays the source);
- ``reports/gx_store/validations/``: every validation result, kept across the several
  Dagster runs of a build and across builds (the newest ``KEEP_PER_SUITE`` per suite);
- ``reports/gx/``: the Data Docs site, entry page ``reports/gx/index.html``, with one
  page per suite and per validation result and an index of them all, newest first.

Values read from the batch (unexpected values, observed column names, error messages)
are supplier text, and GX renders them into its pages as raw markup. The validation
results store here (``_escaping_store_class``) therefore HTML-escapes every
string of each expectation's ``result`` and ``exception_info`` as it writes a result,
and as it reads one an older release wrote unescaped (the first build after an upgrade
rewrites those and renders every page again), so no page shows them as markup.
The result a validation returns is untouched: ``audit.gx_validation`` keeps the raw
samples (``quality/expectations.py``).

``build_site`` prunes old results, renders the pages not yet rendered and rewrites the
index. Callers validating several tables run them with ``build_docs=False`` and build
once at the end, so the site is current whichever run validated last. A lock file
serialises GX work on one reports folder between processes (``dagster dev`` may run
several systems at once).

GX is imported only inside functions: it costs seconds and ~140 MB to import.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import shutil
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from assets.home import DATA_DOCS_SITE, DATA_DOCS_STORE

from .filelock import exclusive_lock

KEEP_PER_SUITE = 30  # validation results kept per suite (about one per build)
SITE_NAME = "earlyhelp"
ESCAPED_MARK = "earlyhelp_batch_values_escaped"  # in a stored result's meta: escape it only once
# In the site folder: every page there was rendered from escaped results. Sites built
# before escaping lack it and are rendered again, all pages, at the next build.
SITE_ESCAPED_MARKER = ".batch-values-escaped"

_CONTEXTS: dict[str | None, object] = {}


def site_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / DATA_DOCS_SITE


def site_index(reports_dir: Path) -> Path:
    return site_dir(reports_dir) / "index.html"


def store_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / DATA_DOCS_STORE


def _config(reports_dir: Path | None):
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    config.data_docs_sites = {}
    if reports_dir is not None:
        store = store_dir(reports_dir)
        for name, folder in (("expectations_store", "expectations"), ("validation_results_store", "validations")):
            config.stores[name]["store_backend"] = {
                "class_name": "TupleFilesystemStoreBackend", "base_directory": str(store / folder)}
        # GX swaps in its default for a results store whose class_name is not exactly
        # "ValidationResultsStore"; the module name picks the escaping one here instead.
        config.stores["validation_results_store"].update(module_name=__name__, class_name="ValidationResultsStore")
        config.data_docs_sites = {SITE_NAME: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(site_dir(reports_dir))},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }}
    return config


def escape_batch_values(document: dict) -> dict:
    """A suite validation result as JSON, with every string its expectations read from
    the batch HTML-escaped (unexpected values and their counts, observed values, details,
    error messages) and marked so; a result already marked is returned as it is."""
    meta = document.setdefault("meta", {})
    if meta.get(ESCAPED_MARK):
        return document
    for result in document.get("results", []):
        for part in ("result", "exception_info"):
            result[part] = _escaped(result.get(part))
    meta[ESCAPED_MARK] = True
    return document


def _escaped(value):
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):  # keys too: a value count may be keyed by the value
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value


@functools.cache
def _escaping_store_class():
    from great_expectations.data_context.store import ValidationResultsStore

    class EscapingValidationResultsStore(ValidationResultsStore):
        """Writes results with their batch values escaped, and escapes older unescaped
        ones as it reads them (the site builder renders pages from what it reads)."""

        def serialize(self, value):
            return self._expectationSuiteValidationResultSchema.dumps(
                escape_batch_values(value.to_json_dict()), indent=2, sort_keys=True)

        def deserialize(self, value):
            return super().deserialize(escape_batch_values(json.loads(value) if isinstance(value, (str, bytes))
                                                           else value))

    return EscapingValidationResultsStore


def __getattr__(name: str):
    # GX loads a store class by module and class name; it is made on first use so that
    # importing this module does not import GX.
    if name == "ValidationResultsStore":
        return _escaping_store_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_context(reports_dir: Path | None = None):
    """An ephemeral GX context: stores in memory, or, given a reports folder, suites and
    validation results on disk under ``gx_store/`` and a Data Docs site at ``gx/``.
    One context per folder per process."""
    key = None if reports_dir is None else str(Path(reports_dir).resolve())
    if key not in _CONTEXTS:
        import great_expectations as gx

        if key is not None:
            store_dir(Path(key)).mkdir(parents=True, exist_ok=True)
        context = gx.get_context(project_config=_config(None if key is None else Path(key)), mode="ephemeral")
        context.variables.progress_bars = {"globally": False}
        _CONTEXTS[key] = context
    return _CONTEXTS[key]


@contextlib.contextmanager
def _locked(reports_dir: Path | None):
    if reports_dir is None:
        yield
        return
    with exclusive_lock(store_dir(reports_dir) / ".lock"):
        yield


def _batch_definition(context, source: str, asset: str):
    try:
        data_source = context.data_sources.get(source)
    except (KeyError, ValueError):
        data_source = context.data_sources.add_pandas(source)
    try:
        data_asset = data_source.get_asset(asset)
    except LookupError:
        data_asset = data_source.add_dataframe_asset(asset)
    try:
        return data_asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        return data_asset.add_batch_definition_whole_dataframe("whole")


def run_validation(suite, frame: pd.DataFrame, *, source: str, asset: str, reports_dir: Path | None = None,
                   run_name: str | None = None, build_docs: bool = True):
    """Validate a pandas batch with a GX ExpectationSuite and return the GX result.

    The batch is named ``<source>-<asset>`` in Data Docs (for example ``mash-contacts``)
    and the result is filed under ``run_name`` (the Dagster run). Given a reports folder
    the result is stored there, and with ``build_docs`` the site is rebuilt at once."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = get_context(reports_dir)
    if reports_dir is None:  # nothing to keep: validate the batch without storing the result
        batch = _batch_definition(context, source, asset).get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format="SUMMARY")
    with _locked(reports_dir):
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(
            name=f"{source}-{asset}:{suite.name}", data=_batch_definition(context, source, asset), suite=suite))
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY",
                                run_id=RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc)))
        if build_docs:
            _build(context, KEEP_PER_SUITE)
    return result


def build_site(reports_dir: Path, keep: int = KEEP_PER_SUITE) -> Path:
    """Prune the stored validation results to the newest ``keep`` per suite, render the
    pages not yet rendered and rewrite the index. Returns ``gx/index.html``."""
    context = get_context(reports_dir)
    with _locked(reports_dir):
        _build(context, keep)
    return site_index(reports_dir)


def _build(context, keep: int) -> None:
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    results = context.validation_results_store
    by_suite = defaultdict(list)
    for key in results.list_keys():
        by_suite[key.expectation_suite_identifier.name].append(key)
    kept = []
    for keys in by_suite.values():
        keys.sort(key=lambda k: k.run_id.run_time, reverse=True)
        for old in keys[keep:]:
            results.remove_key(old)
        kept += keys[:keep]
    # A result's page never changes once rendered: render only results without one, and
    # every suite (its rules may have changed). Rewriting the index drops the pages of
    # pruned results.
    site = site_dir_of(context)
    pages = site / "validations"
    marker = site / SITE_ESCAPED_MARKER
    if not marker.exists():  # an older release stored and rendered raw values: escape and render all again
        for key in kept:
            results.set(key, results.get(key))  # escaped as it is read, stored escaped and marked
        shutil.rmtree(pages, ignore_errors=True)
    rendered = {p.relative_to(pages).with_suffix("").parts for p in pages.rglob("*.html")} if pages.exists() else set()
    identifiers = [k for k in kept if tuple(k.to_tuple()) not in rendered]
    identifiers += [ExpectationSuiteIdentifier(name) for name in context.suites.all_names()] \
        if hasattr(context.suites, "all_names") else [ExpectationSuiteIdentifier(s.name) for s in context.suites.all()]
    if identifiers:  # an empty list would mean "render everything"
        context.build_data_docs(site_names=[SITE_NAME], resource_identifiers=identifiers)
    site.mkdir(parents=True, exist_ok=True)
    marker.touch()


def site_dir_of(context) -> Path:
    return Path(context.variables.data_docs_sites[SITE_NAME]["store_backend"]["base_directory"])
