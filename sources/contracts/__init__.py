"""Each system's extract contract, kept as data (one YAML file per system).

A contract names every table a system sends, its file, key, columns, column types,
which columns are required, which carry a code list and which hold an identifier
that is checked (NHS number, UPN, postcode). The staging engine turns these specs into
SQL; Great Expectations suites are generated from the same specs, so the rules live in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

HERE = Path(__file__).parent
TYPES = {"text", "integer", "decimal", "date", "datetime", "timestamp", "boolean", "flag", "json"}
IDENTIFIERS = {"nhs_number", "upn", "postcode"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"
    required: bool = False
    codes: tuple[str, ...] = ()
    codes_name: str = ""
    identifier: str = ""
    separator: str = ""  # a list of codes in one field, e.g. "3B;4B"
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    file: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    description: str = ""
    version: str = ""  # delta tables: the column whose latest value wins (sources/mash.py history_sql)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Contract:
    system: str
    mode: str
    format: str
    encoding: str
    date_format: str
    datetime_format: str
    tables: tuple[Table, ...] = field(default_factory=tuple)

    def table_for_file(self, file_name: str) -> Table | None:
        return next((t for t in self.tables if t.file == file_name), None)


@cache
def code_lists() -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load((HERE / "codes.yaml").read_text(encoding="utf-8"))
    return {name: tuple(str(v) for v in values) for name, values in raw.items()}


@cache
def load_contract(system: str) -> Contract:
    raw = yaml.safe_load((HERE / f"{system}.yaml").read_text(encoding="utf-8"))
    lists = code_lists()
    tables = []
    for name, spec in raw["tables"].items():
        columns = []
        for col in spec["columns"]:
            codes = col.get("codes", ())
            codes_name = codes if isinstance(codes, str) else ""
            values = lists[codes] if isinstance(codes, str) else tuple(str(v) for v in codes)
            column = Column(name=col["name"], type=col.get("type", "text"), required=bool(col.get("required", False)),
                            codes=values, codes_name=codes_name, identifier=col.get("identifier", ""),
                            separator=col.get("separator", ""), description=col.get("description", ""))
            if column.type not in TYPES:
                raise ValueError(f"{system}.{name}.{column.name}: unknown type {column.type!r}")
            if column.identifier and column.identifier not in IDENTIFIERS:
                raise ValueError(f"{system}.{name}.{column.name}: unknown identifier {column.identifier!r}")
            columns.append(column)
        table = Table(name=name, file=spec["file"], key=tuple(spec["key"]), columns=tuple(columns),
                      description=spec.get("description", ""), version=spec.get("version", ""))
        # a delta feed re-sends rows, so its history needs the column saying which copy is newer
        if raw["mode"] == "delta" and table.version not in table.column_names:
            raise ValueError(f"{system}.{name}: a delta table's version must name one of its columns, "
                             f"not {table.version!r}")
        tables.append(table)
    return Contract(system=raw["system"], mode=raw["mode"], format=raw.get("format", "csv"),
                    encoding=raw.get("encoding", "utf-8"), date_format=raw.get("date_format", "%Y-%m-%d"),
                    datetime_format=raw.get("datetime_format", "%Y-%m-%d %H:%M:%S"), tables=tuple(tables))
