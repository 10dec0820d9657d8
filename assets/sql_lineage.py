"""What each SQL file makes and reads: the lineage the asset graph shows, read from the SQL.

A layer's SQL files run in order on one connection, so a temporary table or macro made by
one file can be read by a later one. ``tables_made`` walks the files' CREATE statements in
that order and returns, for every permanent table, the permanent tables it reads, through
any temporary tables and macros in between. (What a table means and its grain, from the
same files' headers, is read by assets/dictionary.py.) Plain functions, no Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SCHEMAS = ("staging", "history", "identity", "model", "marts", "features")
_CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?(TABLE|VIEW|MACRO)\s+"
                     r"(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][\w.]*)", re.I | re.M)
_QUALIFIED = re.compile(r"\b(" + "|".join(SCHEMAS) + r")\.([A-Za-z_]\w*)\b")
_WORD = re.compile(r"\b([A-Za-z_]\w*)\b")


@dataclass
class SqlTable:
    """A permanent table one SQL file makes, and the permanent tables behind it."""
    name: str  # schema.table
    file: str
    reads: set[str] = field(default_factory=set)


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _permanent(match: re.Match) -> bool:
    name = match.group(3).lower()
    return not match.group(1) and "." in name and name.split(".")[0] in SCHEMAS


def tables_made(files: list[Path]) -> dict[str, SqlTable]:
    """{schema.table: SqlTable} for every permanent table the files make, in their order."""
    working: dict[str, set[str]] = {}  # temporary table, view or macro -> permanent tables behind it
    made: dict[str, SqlTable] = {}
    for path in files:
        sql = path.read_text(encoding="utf-8")
        matches = list(_CREATE.finditer(sql))
        for i, match in enumerate(matches):
            body = _without_comments(sql[match.end():matches[i + 1].start() if i + 1 < len(matches) else len(sql)])
            name = match.group(3).lower()
            reads = {f"{s}.{t}".lower() for s, t in _QUALIFIED.findall(body)}
            for word in {w.lower() for w in _WORD.findall(body)}:
                reads |= working.get(word, set())
            reads.discard(name)
            if _permanent(match):
                made[name] = SqlTable(name, path.name, reads)
            else:
                working[name.split(".")[-1]] = reads
    return made
