"""Publish: copy the build database to two serving files and swap them in as a pair.

DuckDB allows one writer per file, and even a read-only reader holds a lock that keeps a
writer out. So analysts never open ``build.duckdb``: each publish writes a new generation
folder, ``HOME/warehouse/generations/<id>/`` holding ``identifiable.duckdb`` and
``analytics.duckdb``, checkpoints, closes and fsyncs both, and only then swaps ONE pointer,
the symlink ``HOME/warehouse/current -> generations/<id>``, by ``os.replace`` (atomic). The
published names are fixed symlinks through it (``identifiable.duckdb ->
current/identifiable.duckdb``, the same for analytics), so a kill at any instant leaves
``current`` naming either the old pair or the new pair, never one of each.
``serving_pair(home)`` resolves ``current`` once, for a reader that needs the two files of
one publish. A reader that has an old file open keeps reading it (the inode lives while
open). The generation before ``current`` stays as ``previous`` until the next publish has
swapped, because DuckDB resolves the links and puts a reader's spill folder
(``<file>.tmp``) inside the generation folder; any other generation (older, or of a
publish that died) is removed under the publish lock, at the start of each publish and
after its swap, and a publish that fails removes its own in a finally.
A HOME from before generations (plain files at the two names) is converted by hard links
on its first publish; see ``_migrate``.

- ``identifiable.duckdb`` (restricted): schemas identity, model, marts, features, docs and audit,
  every table and view copied as a table.
- ``analytics.duckdb`` (pseudonymised): model, marts, features, docs and a few audit tables, each
  column passed through ``RULES``: direct identifiers dropped, person and family keys
  replaced by a keyed hash, free text scrubbed or cut to codes, and a column no rule
  allows dropped (fail closed, reported). Before the swap the file is scanned, and a value
  holding anything shaped like an NHS number, UPN, full postcode or date (inside the value,
  not only the whole value) stops the publish.

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
import shutil
import stat
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from assets.home import ANALYTICS, IDENTIFIABLE, Home
from quality.faults import fault_point
from quality.filelock import exclusive_lock

log = logging.getLogger(__name__)

SECRET_ENV = "EARLYHELP_PSEUDONYM_KEY"
HASH_HEX_CHARS = 16
IDENTIFIABLE_SCHEMAS = ("identity", "model", "marts", "features", "docs", "audit")
# Tables that go to analytics.duckdb at all ("schema.table" globs); columns then pass RULES.
ANALYTICS_TABLES = ("model.*", "marts.*", "features.*", "docs.*", "audit.run", "audit.drop", "audit.drop_file",
                    "audit.check_result", "audit.identity_metric")

KEEP, DROP, HASH = "keep", "drop", "hash"
# Free text (text columns only; other types are kept as they are):
# SCRUB: a value holding anything identifier-shaped (IDENTIFIER_SHAPES) or a word that is a
#        known person's name is published as NULL, whole: the words around an identifier
#        (an address, a relationship) identify too, so no part of such a value is kept.
# CODE:  only a value shaped like a code (CODE_SHAPE) that SCRUB would keep is published;
#        anything else (a sentence typed where a code belongs) is NULL.
SCRUB, CODE = "scrub", "code"
# Pseudonymisation rules for analytics.duckdb, (glob over "schema.table.column", action,
# why), first match wins: data, in publish_rules.yaml beside this file.
RULES_FILE = Path(__file__).with_name("publish_rules.yaml")
ACTIONS = (KEEP, DROP, HASH, SCRUB, CODE)


def load_rules(path: Path = RULES_FILE) -> list[tuple[str, str, str]]:
    """The rules, each checked: three fields, an action this module knows, a reason."""
    rules = []
    for n, rule in enumerate(yaml.safe_load(Path(path).read_text(encoding="utf-8"))["rules"], start=1):
        if not (isinstance(rule, list) and len(rule) == 3 and rule[1] in ACTIONS and rule[2]):
            raise ValueError(f"{path}: rule {n} must be [glob, one of {', '.join(ACTIONS)}, why]: {rule!r}")
        rules.append((str(rule[0]).lower(), rule[1], str(rule[2])))
    return rules


RULES: list[tuple[str, str, str]] = load_rules()
# Shapes searched for INSIDE values (RE2 has no look-around, so an edge is a character that
# is not a letter or digit, or the value's end: hex digests, UUIDs and codes such as
# MC0000010 or E01900000 never match, while "NHS 999 123 4567." does).
_EDGE_L, _EDGE_R = "(^|[^0-9A-Za-z])", "([^0-9A-Za-z]|$)"
IDENTIFIER_SHAPES = {
    "NHS number": _EDGE_L + "[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}" + _EDGE_R,
    "UPN": _EDGE_L + "[A-Za-z][0-9]{11}[0-9A-Za-z]" + _EDGE_R,
    "postcode": _EDGE_L + "[A-Za-z]{1,2}[0-9][A-Za-z0-9]?[ ]*[0-9][A-Za-z]{2}" + _EDGE_R,
    # A month by name needs separators around it and must end as a word: hex (a UUID's
    # "51febf80", "12dec201") has day, month and year run together.
    "date": _EDGE_L + "([0-9]{1,2}[/.-][0-9]{1,2}[/.-]([0-9]{4}|[0-9]{2})|[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}"
            "|[0-9]{1,2}(st|nd|rd|th)?[ ./-]+(?i:jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?"
            "|sep(t|tember)?|oct(ober)?|nov(ember)?|dec(ember)?)[.,]?[ ./-]+[0-9]{2,4})"
            + _EDGE_R,
}
# Integers can only carry a number: only the NHS number shape applies to them.
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT")
# Columns whose text legitimately holds dates: the pipeline's own audit records (a drop's
# extract date in a reason, a check's newest drop in `observed`) and the systems' go-live
# dates. Every other shape is still searched for in them.
DATES_EXPECTED = ("audit.*.*", "features.window.go_live")
# A code: one word of letters, digits and underscores (THRESHOLD_NOT_MET, RC8, 10A).
CODE_SHAPE = "[A-Za-z0-9_]{1,40}"
# Words of a name: the same split for the names identity holds and for the text searched,
# so "O'Brien" and "Mary-Jane" match however they are typed. Shorter words are ignored
# ("ED" in "Hospital ED" is not Ed); a short name beside a date or number is still caught
# by IDENTIFIER_SHAPES.
NAME_WORD_SPLIT, MIN_NAME_WORD = "[^\\pL]+", 3


class PublishError(RuntimeError):
    """Publishing stopped; the serving files are as they were."""


def classify(schema: str, table: str, column: str, rules=RULES) -> tuple[str, str]:
    """(action, why) for one column of analytics.duckdb; unmatched -> drop."""
    target = f"{schema}.{table}.{column}".lower()
    for pattern, action, why in rules:
        if fnmatch.fnmatchcase(target, pattern):
            return action, why
    return DROP, "unclassified: no rule allows it (add one to assets/publish_rules.yaml)"


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
    path = Home(home).pseudonym_key
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
            _fsync(path.parent)
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
        return f"list_transform({_q(column)}, lambda x: pseudonym(x))"
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


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name_columns(con, catalog: str) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every column of schema identity that RULES takes
    for a person's name (forename, surname, middle names, given, alias): the known names."""
    return [(s, t, c, d) for s, t, c, d in con.execute(
        """SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
           WHERE database_name = ? AND schema_name = 'identity' AND data_type IN ('VARCHAR', 'VARCHAR[]')
           ORDER BY ALL""", [catalog]).fetchall()
        if classify(s, t, c)[1] == "name"]


def _free_text_macros(con, catalog: str) -> None:
    """TEMP table known_name (every word of every name identity holds) and macros
    withheld(v) (v holds an identifier shape or a known name's word) and code_or_null(v)."""
    names = [f"SELECT {'unnest(' + _q(c) + ')' if d.endswith('[]') else _q(c)} AS n FROM {_q(catalog, s, t)}"
             for s, t, c, d in _name_columns(con, catalog)] or ["SELECT NULL::VARCHAR AS n"]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE known_name AS SELECT DISTINCT w AS word FROM (
        SELECT unnest(string_split_regex(lower(n), {_lit(NAME_WORD_SPLIT)})) AS w FROM ({' UNION ALL '.join(names)}))
        WHERE length(w) >= {MIN_NAME_WORD}""")
    shapes = "|".join(f"({p})" for p in IDENTIFIER_SHAPES.values())
    con.execute(f"""CREATE OR REPLACE TEMP MACRO withheld(v) AS regexp_matches(v, {_lit(shapes)})
        OR EXISTS (SELECT 1 FROM unnest(string_split_regex(lower(v), {_lit(NAME_WORD_SPLIT)})) AS t(w)
                   WHERE w IN (SELECT word FROM known_name))""")


def _publishable(v: str, action: str) -> str:
    """SQL: true when the text ``v`` may be published under SCRUB or CODE."""
    if action == CODE:
        return f"(regexp_full_match({v}, {_lit(CODE_SHAPE)}) AND NOT withheld({v}))"
    return f"(NOT withheld({v}))"


def _free_text_expr(con, source: str, column: str, data_type: str, action: str) -> str:
    """SQL publishing one SCRUB or CODE text column of the table ``source``. A list is done
    element by element; DuckDB allows no subquery (withheld's name search) in a lambda, so
    the elements to withhold are found first and looked up from a session variable."""
    if not data_type.endswith("[]"):
        return f"CASE WHEN {_publishable(_q(column), action)} THEN {_q(column)} END"
    variable = "withheld_" + hashlib.sha256(f"{source}.{column}".encode()).hexdigest()[:12]
    con.execute(f"""SET VARIABLE {variable} = (SELECT coalesce(list(DISTINCT x), []::VARCHAR[]) FROM
        (SELECT unnest({_q(column)}) AS x FROM {source}) WHERE x IS NOT NULL AND NOT {_publishable('x', action)})""")
    return f"list_transform({_q(column)}, lambda x: CASE WHEN NOT list_contains(getvariable('{variable}'), x) THEN x END)"


def guard_tests(schema: str, table: str, column: str, data_type: str) -> list[tuple[str, str]]:
    """(kind, regex) searched for inside one published column's values: every shape in text
    (lists too, as text), the NHS number in integers; nothing in other types."""
    if data_type in INTEGER_TYPES:
        return [("NHS number", IDENTIFIER_SHAPES["NHS number"])]
    if data_type not in ("VARCHAR", "VARCHAR[]"):
        return []
    dates_ok = any(fnmatch.fnmatchcase(f"{schema}.{table}.{column}".lower(), p) for p in DATES_EXPECTED)
    return [(kind, pattern) for kind, pattern in IDENTIFIER_SHAPES.items() if not (dates_ok and kind == "date")]


def _guard(con, out: str, published: dict) -> list[str]:
    """Columns of the analytics file holding, anywhere inside a value, something shaped like
    an identifier (one scan per table). Names the column and the kind, never the value."""
    found = []
    for (schema, table), cols in published.items():
        if schema == "docs":  # written from the repository's SQL and YAML, not from data
            continue
        tests = []
        for column, (action, data_type) in cols.items():
            if action == HASH:  # 16 hex characters of a keyed hash by construction
                continue
            for kind, pattern in guard_tests(schema, table, column, data_type):
                tests.append((f"{column} holds a value containing something shaped like a {kind}",
                              f"coalesce(bool_or(regexp_matches(CAST({_q(column)} AS VARCHAR), {_lit(pattern)})), false)"))
        if tests:
            hits = con.execute(f"SELECT {', '.join(t for _, t in tests)} FROM {_q(out, schema, table)}").fetchone()
            found += [f"{schema}.{table}.{what}" for (what, _), hit in zip(tests, hits) if hit]
    return found


def _write(build_db: Path, target: Path, analytics: bool, secret: str) -> dict:
    """Write one serving file at ``target`` (in a new generation folder) from the build
    database: its tables, each column as the rules say, the dictionary describing what it
    holds, the comments; then, for analytics, the scan for identifiers (fails closed)."""
    report = {"tables": 0, "rows": 0, "hashed": [], "dropped": [], "unclassified": [], "skipped_tables": [],
              "free_text": {}}
    published: dict[tuple, dict] = {}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{build_db.as_posix()}' AS build (READ_ONLY)")
        con.execute(f"ATTACH '{target.as_posix()}' AS out")
        if analytics:
            _hmac_macro(con, secret)
            _free_text_macros(con, "build")
        objects = _objects_to_publish(con, analytics)
        for schema in sorted({s for s, _ in objects}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q('out', schema)}")
        for schema, table in objects:
            select, kept = _column_selects(con, schema, table, analytics, report)
            if not select:
                report["skipped_tables"].append(f"{schema}.{table}")
                continue
            con.execute(f"CREATE TABLE {_q('out', schema, table)} AS SELECT {', '.join(select)} "
                        f"FROM {_q('build', schema, table)}")
            published[(schema, table)] = kept
            report["tables"] += 1
            _count_withheld(con, schema, table, kept, report)
        if analytics and ("docs", "columns") in published:
            _describe_what_analytics_holds(con, published)
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


def _objects_to_publish(con, analytics: bool) -> list[tuple[str, str]]:
    """(schema, table) of every table and view of the build database the file gets."""
    if not analytics:
        return _objects(con, "build", IDENTIFIABLE_SCHEMAS)
    schemas = sorted({p.split(".")[0] for p in ANALYTICS_TABLES})
    return [(s, t) for s, t in _objects(con, "build", schemas)
            if any(fnmatch.fnmatchcase(f"{s}.{t}", p) for p in ANALYTICS_TABLES)]


def _column_selects(con, schema: str, table: str, analytics: bool, report: dict) -> tuple[list[str], dict]:
    """The select list for one table, each column kept, hashed, scrubbed or dropped as the
    rules say (every column kept in the identifiable file), and {column: (action, type)}."""
    select, kept = [], {}
    for column, data_type in _columns(con, "build", schema, table):
        action, why = classify(schema, table, column) if analytics else (KEEP, "the identifiable file keeps all")
        name = f"{schema}.{table}.{column}"
        if action == DROP:
            report["dropped"].append(name)
            if why.startswith("unclassified"):
                report["unclassified"].append(name)
            continue
        if action == HASH:
            report["hashed"].append(name)
            select.append(f"{_hash_expr(column, data_type)} AS {_q(column)}")
        elif action in (SCRUB, CODE) and data_type in ("VARCHAR", "VARCHAR[]"):
            select.append(f"{_free_text_expr(con, _q('build', schema, table), column, data_type, action)} AS {_q(column)}")
        else:
            action = KEEP  # SCRUB or CODE on a number, date or flag: it cannot hold text
            select.append(_q(column))
        kept[column] = (action, data_type)
    return select, kept


def _count_withheld(con, schema: str, table: str, kept: dict, report: dict) -> None:
    """How many free-text values the rules withheld from one published table (the run's metadata)."""
    for column, (action, data_type) in kept.items():
        if action in (SCRUB, CODE):
            count = (f"sum(len(list_filter({_q(column)}, lambda x: x IS NOT NULL)))" if data_type.endswith("[]")
                     else f"count({_q(column)})")
            before, after = (con.execute(f"SELECT coalesce({count}, 0) FROM {_q(db, schema, table)}").fetchone()[0]
                             for db in ("build", "out"))
            report["free_text"][f"{schema}.{table}.{column}"] = {"action": action, "withheld": before - after}


def _describe_what_analytics_holds(con, published: dict) -> None:
    """The analytics dictionary describes what analytics holds, and says what was hashed,
    scrubbed or cut to codes."""
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
    for action, note in ((SCRUB, "Free text: a value holding anything shaped like an NHS number, UPN, "
                                  "postcode or date, or a word of a known person's name, is NULL here."),
                         (CODE, "Codes only: a value not shaped like a code, or holding a known person's "
                                "name, is NULL here.")):
        con.execute(f"UPDATE {cols_table} d SET description = d.description || ' ' || ? FROM published_column p "
                    "WHERE p.action = ? AND p.schema = d.schema AND p.table_name = d.table_name "
                    "AND p.column_name = d.column_name", [note, action])
    if ("docs", "tables") in published:
        con.execute(f"DELETE FROM {_q('out', 'docs', 'tables')} d WHERE NOT EXISTS (SELECT 1 FROM "
                    "published_column p WHERE p.schema = d.schema AND p.table_name = d.table_name)")


# The layout under HOME/warehouse (see the module docstring).
CURRENT, PREVIOUS, GENERATIONS = "current", "previous", "generations"
SERVING = (IDENTIFIABLE, ANALYTICS)
# The steps of a publish that are fault points ("publish.<step>", quality/faults.py): the
# tests kill a publish at each, to show that a kill at any instant leaves a whole pair.
KILL_STEPS = ("identifiable_written", "analytics_written", "before_swap", "after_swap",
              "migration_linked", "migration_one_name")


def _reached(step: str) -> None:
    fault_point(f"publish.{step}")


def _remove(*paths: Path) -> None:
    for path in paths:
        for p in (path, path.with_name(path.name + ".wal")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries (a rename or link in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pointed(warehouse_dir: Path, link: str) -> str | None:
    """Name of the generation folder that ``link`` (current or previous) points to, if any."""
    try:
        return Path(os.readlink(warehouse_dir / link)).name
    except OSError:  # missing, or not a link (a HOME before generations)
        return None


def serving_pair(home: Path) -> tuple[Path, Path]:
    """(identifiable, analytics) of one publish: ``current`` is read once, so the two paths
    are of the same generation even if a publish swaps ``current`` meanwhile. Open both
    read-only. The generation stays on disk until the next-but-one publish starts. A HOME
    not yet published since generations came in has plain files: those are returned."""
    warehouse_dir = Home(Path(home).absolute()).warehouse_dir
    generation = _pointed(warehouse_dir, CURRENT)
    if generation is not None:
        folder = warehouse_dir / GENERATIONS / generation
        return folder / IDENTIFIABLE, folder / ANALYTICS
    plain = (warehouse_dir / IDENTIFIABLE, warehouse_dir / ANALYTICS)
    if all(p.is_file() for p in plain):
        return plain
    raise FileNotFoundError(f"nothing is published in {warehouse_dir}")


def _swap_link(warehouse_dir: Path, name: str, target: str) -> None:
    """Point the symlink ``name`` at ``target`` atomically: made beside it, renamed over it."""
    temporary = warehouse_dir / f".{name}.new"
    _remove(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, warehouse_dir / name)


def _point(warehouse_dir: Path, generation: Path) -> None:
    """``previous`` to what ``current`` names (kept one publish longer, for open readers),
    then ``current`` to ``generation``: the one rename that changes what readers see."""
    old = _pointed(warehouse_dir, CURRENT)
    if old is not None:
        _swap_link(warehouse_dir, PREVIOUS, f"{GENERATIONS}/{old}")
    _swap_link(warehouse_dir, CURRENT, f"{GENERATIONS}/{generation.name}")


def _new_generation(warehouse_dir: Path, prefix: str = "") -> Path:
    """An empty generation folder, owner-only whatever the umask (it will hold identifiable
    data, and it shields each file from the moment DuckDB creates it)."""
    root = warehouse_dir / GENERATIONS
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    folder = root / f"{prefix}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{_secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def _tidy(warehouse_dir: Path) -> list[str]:
    """Remove every generation neither ``current`` nor ``previous`` names (before a publish:
    those of a publish that died; after its swap: the one no longer previous), temporary
    links, and the partial files and backup of the layout before generations. Called under
    the publish lock, so no publish is writing any of them. Returns the generations' names."""
    removed = []
    _remove(*(warehouse_dir / f".{n}.partial" for n in SERVING), warehouse_dir / f".{IDENTIFIABLE}.previous",
            *(warehouse_dir / f".{n}.new" for n in (CURRENT, PREVIOUS, *SERVING)))
    keep = {_pointed(warehouse_dir, CURRENT), _pointed(warehouse_dir, PREVIOUS)}
    root = warehouse_dir / GENERATIONS
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name not in keep:
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
            else:
                folder.unlink()
            removed.append(folder.name)
    if removed:
        _fsync(root)
    return removed


def _migrate(warehouse_dir: Path) -> None:
    """Turn plain serving files (the layout before generations) into links through
    ``current`` without changing what any reader sees: the files are hard-linked into a
    generation (same inodes, so the same bytes), ``current`` is pointed at it, and only then
    is each plain name replaced by its link. A kill at any point leaves each name naming
    the same file as before; the next publish finishes the job."""
    plain = [n for n in SERVING if (warehouse_dir / n).is_file() and not (warehouse_dir / n).is_symlink()]
    if not plain:
        return
    generation = _new_generation(warehouse_dir, prefix="migrated-")
    pointed = False
    try:
        for name in SERVING:
            if (warehouse_dir / name).exists():  # a plain file, or a link a killed migration already made
                os.link(os.path.realpath(warehouse_dir / name), generation / name)
        if (generation / IDENTIFIABLE).exists():
            os.chmod(generation / IDENTIFIABLE, 0o600)
        _fsync(generation)
        _fsync(generation.parent)
        _point(warehouse_dir, generation)
        pointed = True
        _reached("migration_linked")
        for name in plain:
            _remove(warehouse_dir / f"{name}.wal")  # a serving file is never written: any WAL is stale
            _swap_link(warehouse_dir, name, f"{CURRENT}/{name}")
            _reached("migration_one_name")
        _fsync(warehouse_dir)
    finally:
        if not pointed:
            shutil.rmtree(generation, ignore_errors=True)


def publish(build_db: Path, warehouse_dir: Path, secret: str | None = None) -> dict:
    """Write identifiable.duckdb and analytics.duckdb in a new generation folder under
    ``warehouse_dir`` from ``build_db`` and swap them in as a pair. ``build_db`` must have no
    writer open (it is attached read-only). ``secret`` defaults to
    ``load_secret(warehouse_dir.parent)``. Its steps are fault points ``publish.<one of
    KILL_STEPS>`` (quality/faults.py): the tests kill it or make it fail at each.
    Returns what was published; raises, leaving the serving files as they were, on failure."""
    build_db, warehouse_dir = Path(build_db), Path(warehouse_dir).absolute()
    if not build_db.is_file():
        raise FileNotFoundError(f"no build database at {build_db}")
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(warehouse_dir / ".publish.lock"):
        # read under the lock: a key being made by another publish is never half-read
        secret = check_secret(secret, "the caller") if secret is not None else load_secret(warehouse_dir.parent)
        removed = _tidy(warehouse_dir)
        _migrate(warehouse_dir)
        generation = _new_generation(warehouse_dir)
        swapped = False
        try:
            result = {}
            for kind, name in (("identifiable", IDENTIFIABLE), ("analytics", ANALYTICS)):
                result[kind] = _write(build_db, generation / name, kind == "analytics", secret)
                os.chmod(generation / name, 0o600)  # whatever the umask: analysts are granted access explicitly
                _fsync(generation / name)
                _reached(f"{kind}_written")
            _fsync(generation)
            _fsync(generation.parent)
            # DuckDB resolves the links and keeps a WAL beside the generation's file, which
            # goes with its folder; one beside a name (an older DuckDB, or a plain file's) is stale
            _remove(*(warehouse_dir / f"{n}.wal" for n in SERVING))
            _reached("before_swap")
            _point(warehouse_dir, generation)
            swapped = True
            _reached("after_swap")
            for name in SERVING:  # a HOME published for the first time: the fixed names
                if not os.path.lexists(warehouse_dir / name):
                    _swap_link(warehouse_dir, name, f"{CURRENT}/{name}")
            _fsync(warehouse_dir)
        finally:
            if not swapped:  # nothing of a failed publish stays on disk
                shutil.rmtree(generation, ignore_errors=True)
        try:  # the generation before the previous one: no longer kept for readers
            removed += _tidy(warehouse_dir)
        except OSError as error:  # published all the same; the next publish tries again
            log.warning("could not remove an old generation: %s", error)
    for kind, report in result.items():
        report["path"] = str(generation / (IDENTIFIABLE if kind == "identifiable" else ANALYTICS))
    if result["analytics"]["unclassified"]:
        log.warning("analytics.duckdb: unclassified columns dropped: %s", ", ".join(result["analytics"]["unclassified"]))
    result["generation"] = str(generation)
    result["removed_generations"] = removed
    result["hash"] = f"hmac-sha256, first {HASH_HEX_CHARS} hex characters"
    return result
