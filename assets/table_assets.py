"""One Dagster asset per table: specs, lineage and standard metadata for a SQL layer.

A layer (the model, the marts, the features) is still built in one step, in one
transaction, because its files share temporary tables and must succeed or fail together;
but each table it makes is its own asset, with the tables it reads (assets/sql_lineage.py)
as its deps, its SQL header's meaning and grain as its description, and, when built, its
row count and column schema as Dagster's standard ``dagster/row_count`` and
``dagster/column_schema`` metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import dagster as dg
import duckdb

from assets.dictionary import declared_tables
from assets.inputs import folder_version
from assets.sql_lineage import SqlTable

# Identity is one step with three outputs; a table of schema identity belongs to one of them.
IDENTITY_PERSONS = dg.AssetKey(["identity", "persons"])
IDENTITY_FAMILIES = dg.AssetKey(["identity", "families"])
IDENTITY_REVIEW_QUEUE = dg.AssetKey(["identity", "review_queue"])
STAGED_SYSTEMS = ("education", "health", "social_care", "early_help", "mash", "reference")


def key_of(table: str) -> dg.AssetKey:
    """The asset that makes ``schema.table``: a staged or history table is its system's
    staging asset; an identity table one of identity's outputs; any other its own asset."""
    schema, name = table.split(".", 1)
    if schema in ("staging", "history"):
        system = next(s for s in STAGED_SYSTEMS if name.startswith(s + "__"))
        return dg.AssetKey(["staging", system])
    if schema == "identity":
        if name.startswith(("family", "household")):
            return IDENTITY_FAMILIES
        if name.startswith("review"):
            return IDENTITY_REVIEW_QUEUE
        return IDENTITY_PERSONS
    return dg.AssetKey([schema, name])


def table_specs(tables: dict[str, SqlTable], group: str, names: Iterable[str],
                made_in_python: dict[str, set[str]] | None = None, code: Path | None = None) -> list[dg.AssetSpec]:
    """An AssetSpec per table of ``names`` ("schema.table"): deps from what its SQL reads
    (or, for a table made in Python, ``made_in_python[table]``), the code version of the
    layer's folder ``code``, description and grain as
    the data dictionary reads them (the SQL header, else descriptions.yaml)."""
    declared = declared_tables(schemas=tuple({name.split(".", 1)[0] for name in names}))
    specs = []
    for name in names:
        said = declared.get(tuple(name.split(".", 1)), {})
        description = " ".join(filter(None, [said.get("description"),
                                             f"Grain: {said['grain']}" if said.get("grain") else None]))
        reads, source = ((tables[name].reads, tables[name].file) if name in tables
                         else (made_in_python[name], "Python"))
        deps = sorted({key_of(r) for r in reads} - {key_of(name)}, key=lambda k: k.to_user_string())
        specs.append(dg.AssetSpec(key_of(name), deps=deps, group_name=group, kinds={"duckdb"},
                                  code_version=folder_version(code) if code else None,
                                  description=description or None,
                                  metadata={"table": name, "made_by": source, "grain": said.get("grain") or ""}))
    return specs


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    schema, name = table.split(".", 1)
    columns = con.execute("SELECT column_name, data_type, comment FROM duckdb_columns() "
                          "WHERE schema_name = ? AND table_name = ? ORDER BY column_index", [schema, name]).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(c, t, description=d) for c, t, d in columns])


def materialized(con: duckdb.DuckDBPyConnection, names: Iterable[str],
                 preview_rows: int = 0) -> Iterator[dg.MaterializeResult]:
    """A MaterializeResult per table with its row count and column schema (and, for
    aggregate tables that hold no person's data, the first ``preview_rows`` rows)."""
    for name in names:
        rows = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        metadata = {"dagster/row_count": rows, "dagster/column_schema": column_schema(con, name)}
        if preview_rows:
            metadata["preview"] = dg.MetadataValue.md(_markdown(con.sql(f"SELECT * FROM {name} LIMIT {preview_rows}")))
        yield dg.MaterializeResult(asset_key=key_of(name), metadata=metadata)


def _markdown(relation: duckdb.DuckDBPyRelation) -> str:
    """A relation's rows as a Markdown table (pipes and line ends in values escaped)."""
    def cell(value) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(relation.columns) + " |", "|" + "---|" * len(relation.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in relation.fetchall()]
    return "\n".join(lines)
