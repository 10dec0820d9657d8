"""Great Expectations suites generated from the extract contracts, and their validation.

The contracts (sources/contracts/*.yaml) are the single source of the rules. From each
table's spec this module builds a GX suite: columns in order, required values present,
codes in their lists, dates in the system's format, keys unique in a snapshot. The
suites are stored as JSON in ``quality/suites`` (regenerate with
``python -m quality.contract_suites``; a test keeps them in step with the contracts)
and run on pandas batches of the delivered text. GX is imported inside the functions
that use it: it costs seconds and ~140 MB to import, which runs without it should not pay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sources.contracts import Contract, Table, load_contract
from sources.drops import SYSTEMS
from sources.staging import ISO_INSTANT

SUITES_DIR = Path(__file__).parent / "suites"
ISO_TIMESTAMP = f"^{ISO_INSTANT}$"  # the shape staging accepts as an instant


def expectation_specs(contract: Contract, table: Table) -> list[dict]:
    """The suite as plain data: one {type, kwargs} per expectation."""
    specs = [{"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": table.column_names}}]
    for c in table.columns:
        if c.required:
            specs.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c.name}})
        if c.codes and not c.separator and c.type != "json":
            specs.append({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": c.name, "value_set": list(c.codes)}})
        pattern = {"date": contract.date_format, "datetime": contract.datetime_format}.get(c.type)
        if pattern:
            specs.append({"type": "expect_column_values_to_match_strftime_format",
                          "kwargs": {"column": c.name, "strftime_format": pattern}})
        regex = {"timestamp": ISO_TIMESTAMP, "integer": r"^-?\d+$", "decimal": r"^-?\d+(\.\d+)?$"}.get(c.type)
        if regex:
            specs.append({"type": "expect_column_values_to_match_regex", "kwargs": {"column": c.name, "regex": regex}})
    if contract.mode == "snapshot":
        if len(table.key) == 1:
            specs.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": table.key[0]}})
        else:
            specs.append({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": list(table.key)}})
    return specs


def suite_document(system: str, table: Table) -> dict:
    contract = load_contract(system)
    return {
        "name": f"{system}.{table.name}",
        "meta": {"generated_from": f"sources/contracts/{system}.yaml", "table": table.name, "file": table.file},
        "expectations": expectation_specs(contract, table),
    }


def write_suites(folder: Path = SUITES_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for system in SYSTEMS:
        for table in load_contract(system).tables:
            path = folder / f"{system}.{table.name}.json"
            path.write_text(json.dumps(suite_document(system, table), indent=2, sort_keys=True) + "\n", encoding="utf-8")
            written.append(path)
    return written


def suite_from_document(document: dict):
    """A stored suite document ({name, meta, expectations}) as a GX ExpectationSuite."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = gx.ExpectationSuite(name=document["name"], meta=document["meta"])
    for spec in document["expectations"]:
        suite.add_expectation_configuration(ExpectationConfiguration(type=spec["type"], kwargs=spec["kwargs"]))
    return suite


def load_suite(system: str, table_name: str, folder: Path = SUITES_DIR):
    """The stored suite as a GX ExpectationSuite."""
    document = json.loads((folder / f"{system}.{table_name}.json").read_text(encoding="utf-8"))
    return suite_from_document(document)


def result_rows(result) -> list[dict]:
    """One plain row per expectation of a GX suite validation result."""
    rows = []
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        rows.append({
            "suite": result.suite_name, "expectation": r.expectation_config.type,
            "column_name": kwargs.get("column") or ",".join(kwargs.get("column_list", [])) or None,
            "success": bool(r.success), "element_count": r.result.get("element_count"),
            "unexpected_count": r.result.get("unexpected_count"),
            "partial_unexpected": json.dumps(r.result.get("partial_unexpected_list", [])[:5], default=str),
        })
    return rows


def validate(system: str, table_name: str, frame: pd.DataFrame, reports_dir: Path | None = None,
             run_name: str | None = None, build_docs: bool = True, suite=None) -> list[dict]:
    """Run a table's stored suite on a pandas batch; one result row per expectation.

    With ``reports_dir`` (HOME/reports) the result is also kept in ``gx_store/`` and shown
    in the Data Docs site at ``gx/index.html``, rebuilt now unless ``build_docs`` is
    False (batch callers then call ``quality.data_docs.build_site`` once at the end).
    ``suite`` overrides the stored suite (warehouse tables keep theirs elsewhere)."""
    from .data_docs import run_validation

    suite = suite if suite is not None else load_suite(system, table_name)
    result = run_validation(suite, frame, source=system, asset=table_name, reports_dir=reports_dir,
                            run_name=run_name, build_docs=build_docs)
    return result_rows(result)


if __name__ == "__main__":
    for path in write_suites():
        print(path)
