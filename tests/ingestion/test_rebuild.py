"""A rebuild restores staged drops from their Parquet instead of re-parsing raw files."""

import shutil

import duckdb

from sources.ingest import ingest


def table_fingerprints(con) -> dict:
    tables = con.sql("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                     "WHERE table_schema IN ('staging', 'history', 'quarantine')").fetchall()
    return {t: con.sql(f"SELECT count(*), sum(hash(r)) FROM {t} r").fetchall() for (t,) in tables}


def test_rebuild_restores_from_parquet_without_the_raw_files(small_city, tmp_path):
    landing = tmp_path / "landing"
    for system in ("mash", "early_help"):
        shutil.copytree(small_city[0] / "landing" / system, landing / system)
    staged = tmp_path / "staged"
    with duckdb.connect(str(tmp_path / "first.duckdb")) as con:
        ingest(con, landing, staged, systems=("mash", "early_help"))
        before = table_fingerprints(con)
    # the raw files are archived away; only the manifests remain in the landing folder
    for path in landing.rglob("*"):
        if path.is_file() and path.name != "_manifest.json":
            path.unlink()
    with duckdb.connect(str(tmp_path / "rebuilt.duckdb")) as con:
        summaries = ingest(con, landing, staged, systems=("mash", "early_help"))
        assert all(s.restored == s.staged and not s.rejected for s in summaries)
        assert table_fingerprints(con) == before
        reasons = {r for (r,) in con.sql("SELECT DISTINCT reason FROM audit.drop WHERE status = 'staged'").fetchall()}
        assert reasons == {"restored from staged Parquet"}
        unbalanced = con.sql("SELECT count(*) FROM audit.drop_file "
                             "WHERE delivered_rows <> staged_rows + quarantined_rows").fetchall()
        assert unbalanced == [(0,)]
