"""The one way this project runs a .sql file, and asks whether a table exists.

Placeholders are ``${name}``, filled from keyword arguments; a placeholder left unfilled
is an error naming the file, never SQL sent with a hole in it. Statements run one by
one, so a failure names the file, the statement's number and its first line.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


class SqlFileError(RuntimeError):
    """A .sql file could not be rendered or one of its statements failed."""


def render_sql(path: Path, **params) -> str:
    """The text of ``path`` with every ``${name}`` replaced by ``str(params[name])``."""
    text = Path(path).read_text(encoding="utf-8")
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in params})
    if missing:
        raise SqlFileError(f"{path}: no value for placeholder(s) {', '.join('${' + m + '}' for m in missing)}")
    return _PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), text)


def run_sql(con: duckdb.DuckDBPyConnection, path: Path, **params) -> None:
    """Run every statement of ``path`` (rendered with ``params``) on ``con``, in order."""
    for number, statement in enumerate(con.extract_statements(render_sql(path, **params)), start=1):
        try:
            con.execute(statement)
        except duckdb.Error as error:
            first = next((line.strip() for line in statement.query.splitlines()
                          if line.strip() and not line.strip().startswith("--")), "")
            raise SqlFileError(f"{Path(path).name}, statement {number} ({first[:80]}): {error}") from error


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether ``schema.table`` names a table or view in the connection's current database."""
    schema, name = qualified.split(".")
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, name]).fetchall()[0][0])
