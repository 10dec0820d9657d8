"""Publish: copy the build database to two serving files and swap them in atomically.

DuckDB allows one writer per file, and even a read-only reader holds a lock that keeps a
writer out. So analysts never open ``build.duckdb``: each publish writes fresh files
beside it (``.identifiable.duckdb.partial``, ``.analytics.duckdb.partial``), checkpoints
and closes them, then renames them over the serving files with ``os.replace``. A reader
that has the old file open keeps reading the old inode, untouched; a new connection
opens the new file. Nothing is renamed unless both files were written, and if anything
fails the partial files are deleted and both serving files stay byte-identical.

- ``identifiable.duckdb`` (restricted): schemas identity, model, marts, features, docs and audit,
  every table and view copied as a table.
- ``analytics.duckdb`` (pseudonymised): model, marts, features, docs and a few audit tables, each
  column passed through ``RULES``: direct identifiers dropped, person and family keys
  replaced by a keyed hash, and a column no rule allows dropped (fail closed, reported).
  Before the swap the file is scanned, and a value shaped like an NHS number, UPN or
  full postcode in any text or integer column stops the publish.

The keyed hash is HMAC-SHA256 (RFC 2104) computed in DuckDB from its ``sha256`` (DuckDB
2.0 has no hmac function without the community ``crypto`` extension), truncated to 16
hex characters. The secret comes from ``EARLYHELP_PSEUDONYM_KEY``, else from
``HOME/secrets/pseudonym.key`` (created once, mode 0600); it is never written to a
database or a log.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import secrets as _secrets
import stat
import tempfile
from pathlib import Path

import duckdb

from quality.filelock import exclusive_lock

log = logging.getLogger(__name__)

SECRET_ENV = "EARLYHELP_PSEUDONYM_KEY"
HASH_HEX_CHARS = 16
IDENTIFIABLE = "identifiable.duckdb"
ANALYTICS = "analytics.duckdb"
IDENTIFIABLE_SCHEMAS = ("identity", "model", "marts", "features", "docs", "audit")
# Tables that go to analytics.duckdb at all ("schema.table" globs); columns then pass RULES.
ANALYTICS_TABLES = ("model.*", "marts.*", "features.*", "docs.*", "audit.run", "audit.drop", "audit.drop_file",
                    "audit.check_result", "audit.identity_metric")

KEEP, DROP, HASH = "keep", "drop", "hash"
# Pseudonymisation rules for analytics.duckdb: (pattern, action, why). The pattern is a
# glob over "schema.table.column" (lower case); the first match wins, so exceptions sit
# above the rules they except. A column no rule matches is dropped and reported.
RULES: list[tuple[str, str, str]] = [
    # exceptions: names of things, not of people; coarse dates and places
    ("*.*.table_name", KEEP, "name of a table"),
    ("*.*.column_name", KEEP, "name of a column"),
    ("*.*.file_name", KEEP, "name of a delivered file"),
    ("*.*.check_name", KEEP, "name of a quality check"),
    ("*.*.schema_name", KEEP, "name of a schema"),
    ("*.*.team_name", KEEP, "name of a team"),
    ("*.*.school_name", KEEP, "name of a school"),
    ("model.dim_school.name", KEEP, "name of a school"),
    ("*.*.birth_month", KEEP, "month of birth, not the date"),
    ("*.*.birth_year", KEEP, "year of birth"),
    ("*.*.postcode_district", KEEP, "outward code only"),
    ("*.*.postcode_sector", KEEP, "sector only"),
    ("*.*.sample", DROP, "check samples may hold raw source values"),
    ("*.*.partial_unexpected", DROP, "may hold raw source values"),
    ("*.*.raw_value", DROP, "raw source value"),
    ("*.*.*_flagged", DROP, "an identifier that failed its check"),
    ("*.*.explanation", DROP, "link explanations quote names and identifiers"),
    # direct identifiers
    ("*.*.*forename*", DROP, "name"),
    ("*.*.*surname*", DROP, "name"),
    ("*.*.*first_name*", DROP, "name"),
    ("*.*.*last_name*", DROP, "name"),
    ("*.*.*middle_name*", DROP, "name"),
    ("*.*.*given*", DROP, "name"),
    ("*.*.*alias*", DROP, "name"),
    ("*.*.*name*", DROP, "any other name is taken for a person's"),
    ("*.*.*nhs*", DROP, "NHS number"),
    ("*.*.*common_child_id*", DROP, "Mosaic's copy of the NHS number"),
    ("*.*.*upn*", DROP, "unique pupil number (and former UPN)"),
    ("*.*.uln", DROP, "unique learner number"),
    ("*.*.*_uln", DROP, "unique learner number"),
    ("*.*.*uprn*", DROP, "property reference: an address"),
    ("*.*.*postcode*", DROP, "full postcode"),
    ("*.*.*address*", DROP, "address"),
    ("*.*.*addr_*", DROP, "address"),
    ("*.*.*street*", DROP, "address"),
    ("*.*.*line_1*", DROP, "address"),
    ("*.*.*line1*", DROP, "address"),
    ("*.*.*phone*", DROP, "telephone"),
    ("*.*.*mobile*", DROP, "telephone"),
    ("*.*.*email*", DROP, "email"),
    ("*.*.*dob*", DROP, "exact birth date"),
    ("*.*.*birth_date*", DROP, "exact birth date"),
    ("*.*.*birthdate*", DROP, "exact birth date"),
    ("*.*.*date_of_birth*", DROP, "exact birth date"),
    ("*.*.*death_date*", DROP, "exact death date"),
    ("*.*.*date_of_death*", DROP, "exact death date"),
    ("*.*.record_id", DROP, "id of a person record"),
    ("*.*.record_key", DROP, "id of a person record"),
    ("*.*.*record_l", DROP, "id of a person record"),
    ("*.*.*record_r", DROP, "id of a person record"),
    # keys and person-identifying source ids: keyed hash, the same everywhere so joins work
    ("*.*.*person_key*", HASH, "person key"),
    ("*.*.*family_key*", HASH, "family key"),
    ("*.*.*household_key*", HASH, "household key"),
    ("*.*.*person_id", HASH, "source person id (pers_person_id, csc_person_id, PERSON_ID)"),
    ("*.*.onepupilid", HASH, "Capita ONE pupil id"),
    ("*.*.*pupil_id", HASH, "pupil id"),
    ("*.*.*patient_id", HASH, "patient id"),
    ("*.*.csc_id", HASH, "Mosaic person id recorded elsewhere"),
    ("*.*.*member_id", HASH, "family member id"),
    ("*.*.family_id", HASH, "source family id"),
    ("*.*.*_family_id", HASH, "source family id"),
    # aggregates, the dictionary and the chosen audit tables: what the rules above left
    ("marts.*.*", KEEP, "aggregate measures"),
    ("features.*.*", KEEP, "features, labels and the model's evaluation: ages, counts, flags, codes and "
                           "scores (person and family keys are hashed above; no names, dates of birth or addresses)"),
    ("docs.*.*", KEEP, "the data dictionary"),
    # a failing check's sample names the rows at fault by their keys: restricted
    ("audit.check_result.sample", DROP, "keys of the rows a failing check names"),
    ("audit.*.*", KEEP, "run and check records"),
    # the model: an allow-list of non-identifying kinds of column
    ("model.ref_*.*", KEEP, "reference code lists"),
    ("model.*.*_id", KEEP, "id of an event, case, worker or school (not of a person)"),
    ("model.*.*_seq", KEEP, "sequence within a record"),
    ("model.*.*_key", KEEP, "key of a non-person entity (worker)"),
    ("model.*.*_date", KEEP, "date of an event"),
    ("model.*.*_at", KEEP, "instant of an event"),
    ("model.*.*_start", KEEP, "period start"),
    ("model.*.*_end", KEEP, "period end"),
    ("model.*.date", KEEP, "calendar date"),
    ("model.*.*year", KEEP, "year"),
    ("model.*.*_days", KEEP, "duration"),
    ("model.*.*_hours", KEEP, "duration"),
    ("model.*.*_within_*", KEEP, "timeliness flag"),
    ("model.*.is_*", KEEP, "flag"),
    ("model.*.has_*", KEEP, "flag"),
    ("model.*.*_code", KEEP, "code"),
    ("model.*.*_group", KEEP, "harmonised group"),
    ("model.*.*_decile*", KEEP, "deprivation decile"),
    ("model.*.*_rate", KEEP, "rate"),
    ("model.*.*_count", KEEP, "count"),
    ("model.*.*_per_*", KEEP, "rate"),
    ("model.*.sessions*", KEEP, "school sessions"),
    ("model.*.district", KEEP, "district"),
    ("model.*.lsoa", KEEP, "small area"),
    ("model.*.sex", KEEP, "sex"),
    ("model.*.ethnicity*", KEEP, "ethnicity"),
    ("model.*.system*", KEEP, "source system"),
    ("model.*.team", KEEP, "team"),
    ("model.*.role", KEEP, "role"),
    ("model.*.fte", KEEP, "worker FTE"),
    ("model.*.urn", KEEP, "school"),
    ("model.*.phase", KEEP, "school phase"),
    ("model.*.term", KEEP, "school term"),
    ("model.*.members", KEEP, "count"),
    ("model.*.children", KEEP, "count"),
    ("model.*.adults", KEEP, "count"),
    ("model.*.rag", KEEP, "RAG rating"),
    ("model.*.decision", KEEP, "decision"),
    ("model.*.outcome*", KEEP, "outcome"),
    ("model.*.status", KEEP, "status"),
    ("model.*.route", KEEP, "route"),
    ("model.*.accepted", KEEP, "flag"),
    ("model.*.category", KEEP, "category"),
    ("model.*.*reason*", KEEP, "reason code"),
    ("model.*.factors", KEEP, "assessment factors"),
    ("model.*.primary_need", KEEP, "need code"),
    ("model.*.nfa", KEEP, "flag"),
    ("model.*.child_seen", KEEP, "flag"),
    ("model.*.legal_status", KEEP, "legal status"),
    ("model.*.placement*", KEEP, "placement type"),
    ("model.*.review_type", KEEP, "health review type"),
    ("model.*.attendance", KEEP, "attendance outcome"),
    ("model.*.priority", KEEP, "priority"),
    ("model.*.source", KEEP, "source"),
    ("model.*.*_source", KEEP, "where a value came from"),
    ("model.*.service", KEEP, "service"),
    ("model.*.*_category", KEEP, "category"),
    ("model.*.*_deleted", KEEP, "flag"),
    ("model.*.*_need", KEEP, "need code"),
    ("model.*.*_type", KEEP, "type code"),
    ("model.*.*_status", KEEP, "status"),
    ("model.*.valid_from", KEEP, "period start"),
    ("model.*.valid_to", KEEP, "period end"),
    ("model.*.quarter", KEEP, "calendar"),
    ("model.*.*_of_week", KEEP, "calendar"),
    ("model.*.hours_*", KEEP, "duration"),
    ("model.*.days_*", KEEP, "duration"),
    ("model.*.known_as_*", KEEP, "flag"),
    ("model.*.records", KEEP, "count"),
    ("model.*.persons", KEEP, "count"),
    ("model.*.lsoas", KEEP, "count"),
    ("model.*.current_members", KEEP, "count"),
    ("model.*.laestab", KEEP, "school establishment number"),
    ("model.*.channel", KEEP, "contact channel"),
    ("model.*.referrer_org", KEEP, "referring organisation (an organisation, not a person)"),
    ("model.*.concerns", KEEP, "concern codes"),
]
# A value shaped like one of these in any published text or integer column stops the publish.
GUARD_PATTERNS = {
    "NHS number": r"^\s*\d{3}\s?\d{3}\s?\d{4}\s*$",
    "UPN": r"^\s*[A-Za-z]\d{11}[0-9A-Za-z]\s*$",
    "postcode": r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}\s*$",
}


class PublishError(RuntimeError):
    """Publishing stopped; the serving files are as they were."""


def classify(schema: str, table: str, column: str, rules=RULES) -> tuple[str, str]:
    """(action, why) for one column of analytics.duckdb; unmatched -> drop."""
    target = f"{schema}.{table}.{column}".lower()
    for pattern, action, why in rules:
        if fnmatch.fnmatchcase(target, pattern):
            return action, why
    return DROP, "unclassified: no rule allows it (add one to assets/publish.py RULES)"


# A keyed hash is only as strong as its key: one an attacker can guess lets them recover
# every pseudonymised key by hashing candidate ids. 32 bytes is the HMAC-SHA256 block's
# half, the usual floor; a key of one repeated character or a short word is refused.
MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT = 10


class WeakSecretError(PublishError):
    """The pseudonymisation secret is missing, too short or plainly not random."""


def check_secret(secret: str, source: str) -> str:
    """``secret`` if it is at least MIN_SECRET_BYTES long and not plainly repetitive; else
    raise WeakSecretError naming ``source`` (never the value)."""
    value = (secret or "").strip()
    if len(value.encode()) < MIN_SECRET_BYTES or len(set(value)) < MIN_SECRET_DISTINCT:
        raise WeakSecretError(
            f"the pseudonymisation secret from {source} is too weak ({len(value.encode())} bytes, "
            f"{len(set(value))} distinct characters; needs at least {MIN_SECRET_BYTES} random bytes, for "
            f"example `python -c 'import secrets; print(secrets.token_hex(32))'`): nothing was published")
    return value


def load_secret(home: Path) -> str:
    """The pseudonymisation secret: EARLYHELP_PSEUDONYM_KEY, else HOME/secrets/pseudonym.key,
    created once so keys stay stable across runs: written whole to a private temporary
    file and linked into place, so a kill can never leave an empty or partial key behind.
    An existing key file must be readable by its owner only. Weak secrets are refused."""
    value = os.environ.get(SECRET_ENV)
    if value is not None:
        return check_secret(value, f"the environment variable {SECRET_ENV}")
    path = Path(home) / "secrets" / "pseudonym.key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pseudonym.key.")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(_secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temporary, path)  # atomic, and never over a key another run made first
            except FileExistsError:
                pass
            _fsync_dir(path.parent)
        finally:
            os.unlink(temporary)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise WeakSecretError(f"{path} is readable by others (mode {mode:o}); make it private with "
                              f"`chmod 600 {path}`: nothing was published")
    return check_secret(path.read_text(encoding="ascii"), str(path))


def keyed_hash(secret: str, value) -> str:
    """The same keyed hash in Python (for tests and for looking one key up)."""
    import hmac
    return hmac.new(secret.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def _hmac_macro(con: duckdb.DuckDBPyConnection, secret: str) -> None:
    """TEMP macro pseudonym(v) = first 16 hex of HMAC-SHA256(secret, v::VARCHAR), built from
    sha256 as RFC 2104 defines it. The macro lives in this in-memory connection only."""
    key = secret.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    con.execute(f"""CREATE OR REPLACE TEMP MACRO pseudonym(v) AS CASE WHEN v IS NULL THEN NULL ELSE
        substr(sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode(CAST(v AS VARCHAR))))),
               1, {HASH_HEX_CHARS}) END""")


def _q(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def _objects(con, catalog: str, schemas) -> list[tuple[str, str]]:
    marks = ",".join("?" for _ in schemas)
    return con.execute(f"""
        SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name IN ({marks})
        UNION ALL
        SELECT schema_name, view_name FROM duckdb_views()
        WHERE database_name = ? AND schema_name IN ({marks}) AND NOT internal
        ORDER BY 1, 2""", [catalog, *schemas, catalog, *schemas]).fetchall()


def _columns(con, catalog: str, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute("""SELECT column_name, data_type FROM duckdb_columns()
        WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index""",
                       [catalog, schema, table]).fetchall()


def _hash_expr(column: str, data_type: str) -> str:
    if data_type.endswith("[]"):
        return f"list_transform({_q(column)}, x -> pseudonym(x))"
    return f"pseudonym({_q(column)})"


def _comment(con, target: str, kind: str, text: str | None) -> None:
    if text:
        con.execute(f"COMMENT ON {kind} {target} IS '{text.replace(chr(39), chr(39) * 2)}'")


def _apply_comments(con, out: str, published: dict) -> None:
    """COMMENTs from docs.tables / docs.columns, so the duckdb CLI shows them too."""
    if ("docs", "tables") not in published or ("docs", "columns") not in published:
        return
    for schema, table, desc in con.execute(f"SELECT schema, table_name, description FROM {_q(out, 'docs', 'tables')}").fetchall():
        if (schema, table) in published:
            _comment(con, _q(out, schema, table), "TABLE", desc)
    for schema, table, column, desc in con.execute(
            f"SELECT schema, table_name, column_name, description FROM {_q(out, 'docs', 'columns')}").fetchall():
        if column in published.get((schema, table), {}):
            _comment(con, _q(out, schema, table, column), "COLUMN", desc)


def _guard(con, out: str, published: dict) -> list[str]:
    """Columns of the analytics file holding a value shaped like an identifier (one scan per table)."""
    found = []
    for (schema, table), cols in published.items():
        if schema == "docs":
            continue
        tests = []
        for column, (action, data_type) in cols.items():
            if action == HASH or data_type not in ("VARCHAR", "BIGINT", "INTEGER", "UBIGINT", "HUGEINT"):
                continue
            for kind, pattern in GUARD_PATTERNS.items():
                tests.append((f"{column} holds a value shaped like a {kind}",
                              f"bool_or(regexp_matches(CAST({_q(column)} AS VARCHAR), '{pattern}'))"))
        if tests:
            hits = con.execute(f"SELECT {', '.join(t for _, t in tests)} FROM {_q(out, schema, table)}").fetchone()
            found += [f"{schema}.{table}.{what}" for (what, _), hit in zip(tests, hits) if hit]
    return found


def _write(build_db: Path, target: Path, analytics: bool, secret: str) -> dict:
    """Write one serving file at ``target`` (a partial path) from the build database."""
    report = {"tables": 0, "rows": 0, "hashed": [], "dropped": [], "unclassified": [], "skipped_tables": []}
    published: dict[tuple, dict] = {}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{build_db.as_posix()}' AS build (READ_ONLY)")
        con.execute(f"ATTACH '{target.as_posix()}' AS out")
        if analytics:
            _hmac_macro(con, secret)
            schemas = sorted({p.split(".")[0] for p in ANALYTICS_TABLES})
            objects = [(s, t) for s, t in _objects(con, "build", schemas)
                       if any(fnmatch.fnmatchcase(f"{s}.{t}", p) for p in ANALYTICS_TABLES)]
        else:
            objects = _objects(con, "build", IDENTIFIABLE_SCHEMAS)
        for schema in sorted({s for s, _ in objects}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q('out', schema)}")
        for schema, table in objects:
            select, kept = [], {}
            for column, data_type in _columns(con, "build", schema, table):
                action = KEEP
                if analytics:
                    action, why = classify(schema, table, column)
                    name = f"{schema}.{table}.{column}"
                    if action == DROP:
                        report["dropped"].append(name)
                        if why.startswith("unclassified"):
                            report["unclassified"].append(name)
                        continue
                    if action == HASH:
                        report["hashed"].append(name)
                        select.append(f"{_hash_expr(column, data_type)} AS {_q(column)}")
                        kept[column] = (HASH, data_type)
                        continue
                select.append(_q(column))
                kept[column] = (KEEP, data_type)
            if not select:
                report["skipped_tables"].append(f"{schema}.{table}")
                continue
            con.execute(f"CREATE TABLE {_q('out', schema, table)} AS SELECT {', '.join(select)} "
                        f"FROM {_q('build', schema, table)}")
            published[(schema, table)] = kept
            report["tables"] += 1
        if analytics and ("docs", "columns") in published:
            # the analytics dictionary describes what analytics holds, and says what was hashed
            con.execute("CREATE TEMP TABLE published_column (schema VARCHAR, table_name VARCHAR, "
                        "column_name VARCHAR, action VARCHAR)")
            con.executemany("INSERT INTO published_column VALUES (?, ?, ?, ?)",
                            [[s, t, c, a] for (s, t), cols in published.items() for c, (a, _) in cols.items()])
            cols_table = _q("out", "docs", "columns")
            con.execute(f"DELETE FROM {cols_table} d WHERE NOT EXISTS (SELECT 1 FROM published_column p "
                        "WHERE p.schema = d.schema AND p.table_name = d.table_name AND p.column_name = d.column_name)")
            con.execute(f"UPDATE {cols_table} d SET description = d.description || ' Pseudonymised: a keyed hash "
                        "(HMAC-SHA256, 16 hex characters), stable across publishes and joinable across tables.', "
                        "data_type = CASE WHEN d.data_type LIKE '%[]' THEN 'VARCHAR[]' ELSE 'VARCHAR' END "
                        "FROM published_column p WHERE p.action = 'hash' AND p.schema = d.schema "
                        "AND p.table_name = d.table_name AND p.column_name = d.column_name")
            if ("docs", "tables") in published:
                con.execute(f"DELETE FROM {_q('out', 'docs', 'tables')} d WHERE NOT EXISTS (SELECT 1 FROM "
                            "published_column p WHERE p.schema = d.schema AND p.table_name = d.table_name)")
        _apply_comments(con, "out", published)
        if analytics:
            problems = _guard(con, "out", published)
            if problems:
                raise PublishError("analytics.duckdb would hold identifiers: " + "; ".join(problems))
        report["rows"] = sum(con.execute(f"SELECT count(*) FROM {_q('out', s, t)}").fetchone()[0]
                             for s, t in published)
        con.execute("CHECKPOINT out")
        con.execute("DETACH out")
        con.execute("DETACH build")
    finally:
        con.close()
    return report


def _remove(*paths: Path) -> None:
    for path in paths:
        for p in (path, path.with_name(path.name + ".wal")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(build_db: Path, warehouse_dir: Path, secret: str | None = None, *,
            fail_before_swap: bool = False) -> dict:
    """Write identifiable.duckdb and analytics.duckdb in ``warehouse_dir`` from ``build_db``
    and swap them in atomically. ``build_db`` must have no writer open (it is attached
    read-only). ``secret`` defaults to ``load_secret(warehouse_dir.parent)``.
    ``fail_before_swap`` (tests only) raises after both files are written, before any swap.
    Returns what was published; raises, leaving the serving files as they were, on failure."""
    build_db, warehouse_dir = Path(build_db), Path(warehouse_dir)
    if not build_db.is_file():
        raise FileNotFoundError(f"no build database at {build_db}")
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    targets = {kind: warehouse_dir / name for kind, name in (("identifiable", IDENTIFIABLE), ("analytics", ANALYTICS))}
    partials = {kind: path.with_name(f".{path.name}.partial") for kind, path in targets.items()}
    backup = warehouse_dir / f".{IDENTIFIABLE}.previous"
    with exclusive_lock(warehouse_dir / ".publish.lock"):
        # read under the lock: a key being made by another publish is never half-read
        secret = check_secret(secret, "the caller") if secret is not None else load_secret(warehouse_dir.parent)
        _remove(*partials.values(), backup)  # left by a publish that died
        try:
            result = {kind: _write(build_db, partials[kind], kind == "analytics", secret) for kind in targets}
            if fail_before_swap:
                raise PublishError("failure forced before the swap (fail_before_swap=True)")
            for path in targets.values():  # a serving file is never written, so any WAL is stale
                _remove(path.with_name(path.name + ".wal"))
            if targets["identifiable"].exists():
                os.link(targets["identifiable"], backup)
            os.replace(partials["identifiable"], targets["identifiable"])
            try:
                os.replace(partials["analytics"], targets["analytics"])
            except BaseException:
                if backup.exists():
                    os.replace(backup, targets["identifiable"])
                raise
            _fsync_dir(warehouse_dir)
        finally:
            _remove(*partials.values(), backup)
    for kind, report in result.items():
        report["path"] = str(targets[kind])
    if result["analytics"]["unclassified"]:
        log.warning("analytics.duckdb: unclassified columns dropped: %s", ", ".join(result["analytics"]["unclassified"]))
    result["hash"] = f"hmac-sha256, first {HASH_HEX_CHARS} hex characters"
    return result
