"""The one SQL runner: placeholders filled or refused, failures named by file and statement."""

import duckdb
import pytest

from sources.sql_runner import SqlFileError, render_sql, run_sql, table_exists


def test_a_file_runs_statement_by_statement_with_its_placeholders(tmp_path):
    path = tmp_path / "make.sql"
    path.write_text("-- a header\nCREATE SCHEMA s;\nCREATE TABLE s.${name} AS SELECT ${value} AS v;\n")
    with duckdb.connect() as con:
        run_sql(con, path, name="t", value=42)
        assert con.sql("SELECT v FROM s.t").fetchall() == [(42,)]
        assert table_exists(con, "s.t") and not table_exists(con, "s.u")


def test_a_placeholder_without_a_value_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "make.sql"
    path.write_text("CREATE TABLE t AS SELECT 1;\nCREATE TABLE ${target} AS SELECT ${missing};\n")
    with pytest.raises(SqlFileError, match=r"make.sql: no value for placeholder\(s\) \$\{missing\}, \$\{target\}"):
        render_sql(path)
    with duckdb.connect() as con:
        with pytest.raises(SqlFileError):
            run_sql(con, path, target="x")
        assert not table_exists(con, "main.t")  # refused whole: not even the first statement ran


def test_a_failing_statement_is_named_by_file_number_and_first_line(tmp_path):
    path = tmp_path / "broken.sql"
    path.write_text("CREATE TABLE a AS SELECT 1 AS x;\n-- the second\nCREATE TABLE b AS SELECT nope FROM a;\n")
    with duckdb.connect() as con, pytest.raises(SqlFileError) as raised:
        run_sql(con, path)
    assert str(raised.value).startswith("broken.sql, statement 2 (CREATE TABLE b AS SELECT nope FROM a;):")
