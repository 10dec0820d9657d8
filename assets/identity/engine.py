"""One identity run over the build database: source records -> persons, families, review.

`run_identity` is what the Dagster asset and `earlyhelp build` call; `link_file` is the
same engine on any person table (`earlyhelp link`). Both are plain functions.
"""

import csv
import hashlib
import importlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from assets.home import IDENTITY_REPORTS, MODELS, REVIEW_DECISIONS, REVIEW_QUEUE
from quality.audit import ensure_audit
from quality.faults import fault_point
from sources.sql_runner import run_sql, table_exists

from .families import build_families
from .fitting import fit_and_save, record_views, remembered, saved_models
from .link import MATCH_THRESHOLD, SCRATCH, SQL, link_records, scratch
from .model import MODEL_PATH, TRAINING_KEY, save_model
from .training_report import write_training_report


DECISIONS = ("match", "not a match")
# What must outlive the build database: keys, their history and reviewers' labels.
# Saved as Parquet under HOME/identity after every run, restored into a fresh database.
DURABLE_TABLES = ("person_registry", "family_registry", "family_registry_member", "household_registry",
                  "link_event", "review_decision", "review_import")
KEYED_BY_FIRST_COLUMN = ("person_registry", "family_registry", "family_registry_member", "household_registry")


def save_durable_tables(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for table in DURABLE_TABLES:
        if not table_exists(con, f"identity.{table}"):
            continue
        partial = folder / f".{table}.parquet.partial"
        con.execute(f"COPY identity.{table} TO '{partial}' (FORMAT parquet, COMPRESSION zstd)")
        partial.replace(folder / f"{table}.parquet")  # atomic: a crash leaves the last good copy


def restore_durable_tables(con: duckdb.DuckDBPyConnection, folder: Path) -> list[str]:
    """Into a database that lacks them (a rebuild from scratch), reload the saved tables."""
    restored = []
    for table in DURABLE_TABLES:
        saved = folder / f"{table}.parquet"
        if saved.exists() and not table_exists(con, f"identity.{table}"):
            columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{saved}')").fetchall()
            ddl = ", ".join(f'"{name}" {kind}' for name, kind, *_ in columns)
            if table in KEYED_BY_FIRST_COLUMN:  # upserts (ON CONFLICT) need the primary key back
                ddl += f', PRIMARY KEY ("{columns[0][0]}")'
            con.execute(f"CREATE TABLE identity.{table} ({ddl})")
            con.execute(f"INSERT INTO identity.{table} SELECT * FROM read_parquet('{saved}')")
            restored.append(table)
    return restored
DECISION_COLUMNS = ("record_l", "record_r", "decision", "reviewer", "decided_at")


class ReviewFileError(ValueError):
    pass


def import_review_decisions(con: duckdb.DuckDBPyConnection, review_dir: Path, run_id: str) -> dict:
    """Read reviewers' CSVs from REVIEW/decisions/*.csv once each (by checksum).

    Columns: record_l, record_r (record keys as in identity.review_queue), decision
    ('match' or 'not a match'), reviewer, decided_at. A row breaking a rule is kept in
    identity.review_import_issue with file, line and rule; the file's good rows still count.
    """
    con.execute("CREATE TABLE IF NOT EXISTS identity.review_import (file_name VARCHAR, sha256 VARCHAR, "
                "imported_run VARCHAR, rows_read INTEGER, rows_rejected INTEGER, imported_at TIMESTAMPTZ)")
    con.execute("CREATE TABLE IF NOT EXISTS identity.review_import_issue (file_name VARCHAR, line INTEGER, "
                "rule VARCHAR, raw_value VARCHAR, imported_run VARCHAR)")
    con.execute("CREATE TABLE IF NOT EXISTS identity.review_decision (record_l VARCHAR, record_r VARCHAR, "
                "decision VARCHAR, reviewer VARCHAR, decided_at TIMESTAMPTZ, imported_run VARCHAR)")
    counts = {"files": 0, "decisions": 0, "rejected": 0}
    folder = Path(review_dir) / REVIEW_DECISIONS
    if not folder.is_dir():
        return counts
    known = {sha for (sha,) in con.sql("SELECT sha256 FROM identity.review_import").fetchall()}
    records = {k for (k,) in con.sql("SELECT record_key FROM identity.standardised_record").fetchall()} \
        if table_exists(con, "identity.standardised_record") else set()
    for path in sorted(folder.glob("*.csv")):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha in known:
            continue
        good, issues = [], []
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in DECISION_COLUMNS[:3] if c not in (reader.fieldnames or [])]
            if missing:
                raise ReviewFileError(f"review decisions {path}: missing column(s) {', '.join(missing)}; "
                                      f"expected {', '.join(DECISION_COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                decision = (row.get("decision") or "").strip().lower()
                if decision == "":
                    continue  # an undecided row of an exported queue
                if decision not in DECISIONS:
                    issues.append((path.name, line, "decision must be 'match' or 'not a match'", decision))
                    continue
                unknown = [row[c] for c in ("record_l", "record_r") if records and row[c] not in records]
                if unknown:
                    issues.append((path.name, line, "record key not known to identity", unknown[0]))
                    continue
                good.append((row["record_l"], row["record_r"], decision, row.get("reviewer") or None,
                             row.get("decided_at") or None, run_id))
        if good:
            con.executemany("INSERT INTO identity.review_decision VALUES (?, ?, ?, ?, coalesce(TRY_CAST(? AS TIMESTAMPTZ), now()), ?)", good)
        if issues:
            con.executemany("INSERT INTO identity.review_import_issue VALUES (?, ?, ?, ?, ?)",
                            [(*i, run_id) for i in issues])
        con.execute("INSERT INTO identity.review_import VALUES (?, ?, ?, ?, ?, now())",
                    [path.name, sha, run_id, len(good) + len(issues), len(issues)])
        counts["files"] += 1
        counts["decisions"] += len(good)
        counts["rejected"] += len(issues)
    return counts


def export_review_queue(con: duckdb.DuckDBPyConnection, review_dir: Path) -> Path:
    """The queue as a CSV with an empty decision column, for a reviewer to fill in and
    save under REVIEW/decisions/."""
    review_dir.mkdir(parents=True, exist_ok=True)
    out = review_dir / REVIEW_QUEUE
    con.execute(f"""COPY (SELECT record_l, record_r, '' AS decision, '' AS reviewer, '' AS decided_at,
                                 * EXCLUDE (record_l, record_r)
                          FROM identity.review_queue ORDER BY match_probability DESC, record_l, record_r)
                 TO '{out}' (HEADER)""")
    return out


def record_metrics(con: duckdb.DuckDBPyConnection, run_id: str, extra: dict) -> None:
    """Identity quality figures for this run -> audit.identity_metric (append-only)."""
    ensure_audit(con)
    con.execute("SET VARIABLE run_id = ?", [run_id])
    con.execute("""
        INSERT INTO audit.identity_metric
        SELECT getvariable('run_id'), metric, value, now() FROM (
            SELECT 'records' AS metric, count(*)::DOUBLE AS value FROM identity.person_record
            UNION ALL SELECT 'persons', count(*) FROM identity.person
            UNION ALL SELECT 'grey_zone_pairs', count(*) FROM identity.review_queue WHERE why = 'grey zone'
            UNION ALL SELECT 'review_queue_pairs', count(*) FROM identity.review_queue
            UNION ALL SELECT 'twin_guard_refusals', count(*) FROM identity.link
                      WHERE status = 'refused' AND (reason LIKE 'twin guard%' OR reason LIKE 'same birth date%')
            UNION ALL SELECT 'constraint_refusals', count(*) FROM identity.link
                      WHERE status = 'refused' AND reason IN ('different NHS numbers', 'different UPNs')
            UNION ALL SELECT 'persons_with_two_nhs_numbers', count(*) FROM (
                      SELECT p.person_key FROM identity.person_record p JOIN identity.standardised_record s USING (record_key)
                      GROUP BY 1 HAVING count(DISTINCT s.nhs_number) > 1)
            UNION ALL SELECT 'match_rate_' || p.system, avg((m.system_count > 1)::INT)
                      FROM identity.person_record p JOIN identity.person m USING (person_key) GROUP BY p.system
            UNION ALL SELECT 'nhs_coverage_' || system, avg((nhs_number IS NOT NULL)::INT)
                      FROM identity.standardised_record GROUP BY system
            UNION ALL SELECT 'upn_coverage_' || system, avg((upn IS NOT NULL)::INT)
                      FROM identity.standardised_record GROUP BY system
        )
    """)
    rows = [(run_id, k, float(v)) for k, v in extra.items()]
    con.executemany("INSERT INTO audit.identity_metric VALUES (?, ?, ?, now())", rows)


def read_source_records(con: duckdb.DuckDBPyConnection) -> None:
    """History -> identity.source_person. Rewriting the whole table costs more than
    building it, and a day changes few rows: only rows that differ are deleted (by
    rowid, which needs no second scan) and inserted; the whole table is replaced when
    its columns changed. The new rows are a view, read once by the comparison: storing
    them first would cost as much as the query itself."""
    run_sql(con, SQL / "source_person.sql")
    if table_exists(con, "identity.source_person") and (
            con.sql("DESCRIBE identity.source_person").fetchall() == con.sql("DESCRIBE source_person_now").fetchall()):
        con.execute("""
            CREATE OR REPLACE TEMP TABLE source_person_diff AS
            SELECT o.rowid AS stale_rowid, n.*
            FROM identity.source_person o
            FULL JOIN (SELECT *, hash(s) AS row_hash FROM source_person_now s) n
              ON o.record_id = n.record_id AND o.table_name = n.table_name AND o.system = n.system
            WHERE o.rowid IS NULL OR n.row_hash IS NULL OR hash(o) <> n.row_hash""")
        con.execute("DELETE FROM identity.source_person WHERE rowid IN (SELECT stale_rowid FROM source_person_diff)")
        con.execute("INSERT INTO identity.source_person "
                    "SELECT * EXCLUDE (stale_rowid, row_hash) FROM source_person_diff WHERE row_hash IS NOT NULL")
    else:
        con.execute("CREATE OR REPLACE TABLE identity.source_person AS SELECT * FROM source_person_now")
    con.execute("DROP VIEW source_person_now")


def assign_persons(con: duckdb.DuckDBPyConnection, run_id: str, mode: str = "full") -> None:
    """Clusters -> stable person keys, person_record, person and the review queue. After
    an incremental link only the records clustered again (affected_record) are revisited."""
    con.execute("SET VARIABLE run_id = ?", [run_id])
    scope = "record_key IN (SELECT record_key FROM affected_record)" if mode == "incremental" else "true"
    run_sql(con, SQL / "person_keys.sql", scope=scope)
    run_sql(con, SQL / "person_record.sql", scope=scope)
    if mode == "incremental":  # in place: the queue is wide (explanations) and mostly unchanged
        pairs = ("k.record_l IN (SELECT record_key FROM affected_record) "
                 "OR k.record_r IN (SELECT record_key FROM affected_record)")
        run_sql(con, SQL / "review_queue.sql", scope=pairs, target=f"{scratch(con)}.review_queue_delta")
        con.execute(f"DELETE FROM identity.review_queue k WHERE {pairs}")
        con.execute(f"INSERT INTO identity.review_queue SELECT * FROM {SCRATCH}.review_queue_delta")
        con.execute("UPDATE identity.review_queue SET queued_run = getvariable('run_id')")
    else:
        run_sql(con, SQL / "review_queue.sql", scope="true", target="identity.review_queue")


def choose_model(con: duckdb.DuckDBPyConnection, model: Path | None, model_dir: Path | None,
                 fitted: dict) -> Path | dict | Callable:
    """The model this run links with (fitting.py states the rule). When none exists yet,
    a function that fits one once the records are standardised; it notes what it fitted
    in `fitted` (model, path)."""
    if model:
        return Path(model)
    saved = saved_models(model_dir)
    if saved:
        return saved[-1]
    known = remembered(con)
    if known:
        return known

    def fit(connection: duckdb.DuckDBPyConnection) -> dict:
        fitted["model"], fitted["path"] = fit_and_save(connection, model_dir)
        return fitted["model"]
    return fit


def run_identity(con: duckdb.DuckDBPyConnection, run_id: str, review_dir: Path,
                 model: Path | None = None, threshold: float = MATCH_THRESHOLD,
                 durable_dir: Path | None = None, reports_dir: Path | None = None) -> dict:
    """Link every staged person record; keep keys stable; build families; queue reviews.
    With durable_dir, keys and labels are restored from and saved to Parquet there, so
    they survive a rebuild of the database itself, and the deployment's fitted model is
    kept in its model/ folder. Without a model, the first full link fits one to these
    records; with reports_dir, its training report goes to reports_dir/identity/."""
    started = time.perf_counter()
    # Splink's import (with pandas and sqlglot) is ~0.6 s of pure Python; DuckDB releases
    # the GIL while it reads the source records, so the two overlap on a second core.
    threading.Thread(target=importlib.import_module, args=("splink",), daemon=True).start()
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    restored = restore_durable_tables(con, durable_dir) if durable_dir else []
    t = time.perf_counter()
    read_source_records(con)
    source_seconds = time.perf_counter() - t
    imported = import_review_decisions(con, review_dir, run_id)
    fitted: dict = {}
    chosen = choose_model(con, model, Path(durable_dir) / MODELS if durable_dir else None, fitted)
    # a reviewer's decision can join or split any component: then re-examine everything
    summary = link_records(con, chosen, threshold, incremental=imported["decisions"] == 0)
    assign_persons(con, run_id, summary.mode)
    queue = export_review_queue(con, review_dir)
    fault_point("identity.linked")
    t = time.perf_counter()
    families = build_families(con, run_id)
    seconds = dict(source_records=source_seconds, **summary.seconds, families=time.perf_counter() - t)
    report = None
    if fitted.get("path") and reports_dir:
        t = time.perf_counter()
        report = write_model_report(con, fitted["path"], Path(reports_dir) / IDENTITY_REPORTS)
        seconds["model_report"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    if durable_dir:
        fault_point("identity.durable")
        save_durable_tables(con, durable_dir)
    record_metrics(con, run_id, {
        "scored_pairs": summary.scored_pairs, "deterministic_edges": summary.deterministic_edges,
        "review_decisions_imported": imported["decisions"], "families": families.get("families", 0),
        **{f"seconds_{k}": v for k, v in seconds.items()}})
    return {"records": summary.records, "persons": summary.clusters, "families": families.get("families"),
            "mode": summary.mode, "restored": restored,
            "model": str(fitted.get("path") or (chosen if isinstance(chosen, Path) else "remembered in the database")),
            "model_fitted": bool(fitted), "model_report": str(report) if report else None,
            "review_queue": con.sql("SELECT count(*) FROM identity.review_queue").fetchall()[0][0],
            "review_queue_csv": str(queue), "decisions_imported": imported, "seconds": seconds}


def write_model_report(con: duckdb.DuckDBPyConnection, model_path: Path, out_dir: Path) -> Path:
    """The training report of a model fitted to this database's records, with this run's
    scored pairs; Splink's working tables stay in the in-memory catalog."""
    views = record_views(con)
    database = con.sql("SELECT current_database()").fetchall()[0][0]
    con.execute(f"USE {scratch(con)}")
    try:
        return write_training_report(con, model_path, MODEL_PATH, views, out_dir,
                                     scored_pairs=f'"{database}".identity.scored_pair')
    finally:
        con.execute(f'USE "{database}"')


STANDARD_COLUMNS = {  # the documented input of `earlyhelp link`; the first nine are required
    "record_id": "VARCHAR", "source": "VARCHAR", "forename": "VARCHAR", "middle_names": "VARCHAR",
    "surname": "VARCHAR", "dob": "DATE", "sex": "VARCHAR", "postcode": "VARCHAR", "address": "VARCHAR",
    "nhs_number": "VARCHAR", "upn": "VARCHAR", "former_upn": "VARCHAR", "uprn": "VARCHAR",
    "csc_id": "VARCHAR", "alt_forename": "VARCHAR", "alt_surname": "VARCHAR",
    "dob_estimated": "BOOLEAN", "role": "VARCHAR",
}
REQUIRED = list(STANDARD_COLUMNS)[:9]


def stage_link_input(con: duckdb.DuckDBPyConnection, relation: str, present: dict[str, str]) -> None:
    """identity.source_person from a person table in the standard schema (``relation``,
    with ``present`` mapping each standard column it has to its own name): every value
    cast as the engine reads it, a column it lacks as NULL, its source (else 'input') as
    the system."""
    selected = ", ".join(
        (f'TRY_CAST("{present[c]}" AS {t})' if c in present else f"NULL::{t}") + f" AS {c}"
        for c, t in STANDARD_COLUMNS.items())
    con.execute("CREATE SCHEMA identity")
    con.execute(f"""
        CREATE TABLE identity.source_person AS
        SELECT coalesce(source, 'input') AS system, 'records' AS table_name, record_id,
               forename, middle_names, surname, alt_forename, alt_surname, dob, dob_estimated, sex,
               postcode, address, uprn, nhs_number, upn, former_upn, csc_id, false AS is_deleted, role,
               NULL::DATE AS first_delivered
        FROM (SELECT {selected} FROM {relation})
    """)


def link_file(input_path: Path, output_path: Path, model: Path | None = None,
              threshold: float = MATCH_THRESHOLD, model_out: Path | None = None) -> dict:
    """Link any person table (Parquet or CSV, standard schema) and write record_id ->
    person_key with the probability, rule and explanation of each record's link. Without
    a model, one is fitted to the table itself (as a deployment's first link is), and
    saved to model_out when given."""
    input_path, output_path = Path(input_path), Path(output_path)
    reader = "read_parquet" if input_path.suffix.lower() == ".parquet" else "read_csv"
    options = "" if reader == "read_parquet" else ", all_varchar = true"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if not input_path.is_file():
        raise FileNotFoundError(f"no input file at {input_path}")
    quoted = str(input_path).replace("'", "''")  # a view cannot take a prepared parameter
    con.execute(f"CREATE TEMP VIEW raw_input AS SELECT * FROM {reader}('{quoted}'{options})")
    present = {c.lower(): c for c in con.sql("SELECT * FROM raw_input LIMIT 0").columns}
    missing = [c for c in REQUIRED if c not in present]
    if missing:
        raise ValueError(f"{input_path}: missing column(s) {', '.join(missing)}; "
                         f"required: {', '.join(REQUIRED)}")
    duplicates = con.sql(f'SELECT count(*) - count(DISTINCT "{present["record_id"]}") FROM raw_input').fetchall()[0][0]
    if duplicates:
        raise ValueError(f"{input_path}: record_id must be unique; {duplicates} repeated")
    stage_link_input(con, "raw_input", present)
    fitted: dict = {}
    summary = link_records(con, choose_model(con, model, None, fitted), threshold)
    assign_persons(con, "link")
    if model_out and fitted:
        save_model(fitted["model"], Path(model_out))
    con.execute(f"""
        COPY (SELECT s.record_id, s.system AS source, p.person_key, p.match_probability, p.link_rule, p.explanation
              FROM identity.person_record p JOIN identity.standardised_record s USING (record_key)
              ORDER BY p.person_key, s.record_id)
        TO '{str(output_path).replace("'", "''")}' ({'FORMAT parquet' if output_path.suffix.lower() == '.parquet' else 'HEADER'})
    """)
    record = fitted["model"].get(TRAINING_KEY, {}) if fitted else {}
    return {"records": summary.records, "persons": summary.clusters,
            "review_pairs": con.sql("SELECT count(*) FROM identity.review_queue").fetchall()[0][0],
            "model": str(model) if model else ("fitted to the input" if record.get("fitted")
                                                else record.get("reason", "fitted to the input")),
            "seconds": summary.seconds}
