"""All or nothing: a layer rebuilt inside one DuckDB transaction, so that a failure
part-way leaves the previous tables as they were."""

from contextlib import contextmanager

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
