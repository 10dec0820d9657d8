"""What a run's result depends on, as fingerprints: when none has changed since the last
successful run, the run would rebuild the same tables, so it is skipped.

Plain functions (no Dagster). The staging asset records its system's fingerprint when it
has staged every drop the landing holds; publishing records the warehouse's when the
serving pair is swapped in. ``earlyhelp build`` compares the current fingerprints with
the recorded ones (``audit.input_fingerprint``) before it launches anything.

A fingerprint is a SHA-256 over what the step reads, never over the clock: the model,
marts and features are functions of the staged history, identity's inputs and the code
(no table reads the current date), so equal inputs give equal tables.
- staging/<system>: every drop folder of the system in the landing (its manifest's file
  checksums, each file's size and modification time, so a file rewritten under an
  unchanged manifest counts as new), the landing's non-drop entries (reported each run),
  the operator's accepted deletions for the system, and the pipeline's code;
- warehouse: the staging fingerprints, the person models fitted in this HOME, the
  pseudonymisation secret (hashed, never stored) and the code; a reviewer's decision file
  not yet imported, or a missing serving file, makes the warehouse stale whatever its
  fingerprint; and every step that rewrites warehouse tables first records CHANGING.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from assets.home import Home
from assets.publish import SECRET_ENV, serving_pair
from sources.drops import SYSTEMS, find_drops, ignored_in_landing
from sources.sql_runner import table_exists

ROOT = Path(__file__).resolve().parents[1]
# The code a build runs: every Python, SQL, YAML and JSON file of these packages (the
# synthetic city's generator is not part of the pipeline).
CODE_PACKAGES = ("assets", "sources", "quality", "pipelines")
CODE_SUFFIXES = {".py", ".sql", ".yaml", ".yml", ".json"}
EXCLUDED_CODE = (Path("sources") / "synthetic",)


def _sha(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _code_files(paths, root: Path) -> list[Path]:
    """The code files among ``paths`` (files, or folders searched whole), the generator's aside."""
    found = (p for path in map(Path, paths) for p in ([path] if path.is_file() else path.rglob("*")))
    return sorted(p for p in found if p.suffix in CODE_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
                  and not any(p.is_relative_to(root / x) for x in EXCLUDED_CODE))


def _content_hash(files: list[Path], root: Path) -> str:
    return _sha(f"{p.relative_to(root)}={hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files)


@cache
def code_fingerprint(root: Path = ROOT) -> str:
    """The pipeline's code and configuration, read once per process."""
    return _content_hash(_code_files([root / package for package in CODE_PACKAGES], root), root)


@cache
def folder_version(*paths: Path) -> str:
    """A Dagster code version for the assets made by the code in ``paths`` (folders or
    files): short, and new whenever any file there changes, so the UI marks them stale
    as the CLI does."""
    return _content_hash(_code_files(paths, ROOT), ROOT)[:16]


def _files(folder: Path) -> list[str]:
    """name, size and modification time of every file below ``folder`` (stat only)."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            out.append(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}")
    return out


def landing_fingerprint(landing: Path, system: str, accepted: list[tuple] = ()) -> tuple[str, list[str]]:
    """(fingerprint, drop partitions) of one system's landing folder."""
    drops = find_drops(landing, (system,))
    parts = [f"code={code_fingerprint()}", f"system={system}"]
    for drop in drops:
        parts += [f"drop={drop.partition}", drop.fingerprint, *drop.problems, *_files(drop.folder)]
    parts += [f"ignored={name}" for name, _ in ignored_in_landing(landing, system)]
    parts += [f"accepted={a}" for a in sorted(map(str, accepted))]
    return _sha(parts), [d.partition for d in drops]


def accepted_deletions(con: duckdb.DuckDBPyConnection, system: str) -> list[tuple]:
    if not table_exists(con, "audit.deletion_acceptance"):
        return []
    return con.execute("SELECT extract_date, fingerprint FROM audit.deletion_acceptance WHERE system = ? "
                       "ORDER BY ALL", [system]).fetchall()


def secret_fingerprint(home: Path) -> str:
    """A hash of the pseudonymisation secret (a changed secret changes every published key)."""
    value = os.environ.get(SECRET_ENV)
    if value is None:
        path = Home(home).pseudonym_key
        value = path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else ""
    return hashlib.sha256(b"earlyhelp pseudonym secret\x00" + value.encode("utf-8", "surrogateescape")).hexdigest()


def warehouse_fingerprint(home: Path, staging: dict[str, str]) -> str:
    """The warehouse job's inputs, given each system's recorded staging fingerprint.
    Reviewers' decision files are not part of it: each is imported once, by checksum, so
    what matters is whether one is waiting (``pending_decisions``)."""
    home = Home(home)
    parts = [f"code={code_fingerprint()}", f"secret={secret_fingerprint(home.root)}"]
    parts += [f"staging/{system}={staging[system]}" for system in sorted(staging)]
    parts += [f"model={f}" for f in _files(home.model_dir)]
    return _sha(parts)


def recorded_staging(before: dict[str, tuple]) -> dict[str, str]:
    """{system: fingerprint} of the staging scopes in ``recorded``'s answer."""
    return {scope.removeprefix("staging/"): fp for scope, (fp, *_) in before.items() if scope.startswith("staging/")}


def pending_decisions(con: duckdb.DuckDBPyConnection, home: Path) -> list[str]:
    """Reviewers' decision files not yet imported (identity imports each once, by checksum)."""
    folder = Home(home).review_decisions_dir
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        return []
    known = ({sha for (sha,) in con.execute("SELECT sha256 FROM identity.review_import").fetchall()}
             if table_exists(con, "identity.review_import") else set())
    return [f.name for f in files if hashlib.sha256(f.read_bytes()).hexdigest() not in known]


def recorded(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """{scope: (fingerprint, run_id, recorded_at)}: each scope's newest recorded fingerprint."""
    if not table_exists(con, "audit.input_fingerprint"):
        return {}
    rows = con.execute("""SELECT scope, fingerprint, run_id, recorded_at FROM audit.input_fingerprint
                          QUALIFY row_number() OVER (PARTITION BY scope ORDER BY recorded_at DESC) = 1""").fetchall()
    return {scope: tuple(rest) for scope, *rest in rows}


def record(con: duckdb.DuckDBPyConnection, scope: str, fingerprint: str, run_id: str) -> None:
    from quality.audit import ensure_audit

    ensure_audit(con)
    con.execute("INSERT INTO audit.input_fingerprint VALUES (?, ?, ?, now())", [scope, fingerprint, run_id])


# Recorded for the warehouse by every step that rewrites its tables, before it does: until
# publish records what it published, no build takes the serving files as up to date (a
# run killed or failed in between leaves this, which matches no fingerprint).
CHANGING = "(tables being rebuilt)"


def mark_changing(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    record(con, "warehouse", CHANGING, run_id)


def current_staging(con: duckdb.DuckDBPyConnection, landing: Path) -> dict[str, str]:
    """{system: fingerprint} of every system the landing holds drops for."""
    out = {}
    for system in SYSTEMS:
        fingerprint, drops = landing_fingerprint(landing, system, accepted_deletions(con, system))
        if drops:
            out[system] = fingerprint
    return out


@dataclass
class Plan:
    """What a build must run: the systems whose staging inputs changed, and whether the
    warehouse job's did. ``since``: each step's (run, time) of its last recorded result."""
    stale_systems: list[str]
    warehouse_stale: bool
    since: dict[str, tuple]
    pending_decisions: list[str]

    @property
    def nothing_new(self) -> bool:
        return not self.stale_systems and not self.warehouse_stale


def plan(home: Path, landing: Path) -> Plan:
    """Compare the current fingerprints with the recorded ones. Reads the build database
    read-only (call while holding the HOME lock, so no writer has it open)."""
    home = Home(home)
    if not home.build_db.exists():
        return Plan([s for s in SYSTEMS if find_drops(landing, (s,))], True, {}, [])
    with duckdb.connect(str(home.build_db), read_only=True) as con:
        staging, before, waiting = current_staging(con, landing), recorded(con), pending_decisions(con, home.root)
    stale = [s for s in staging if before.get(f"staging/{s}", ("",))[0] != staging[s]]
    since = {scope: (run_id, at) for scope, (_, run_id, at) in before.items()}
    try:
        served = all(p.is_file() for p in serving_pair(home.root))
    except FileNotFoundError:
        served = False
    warehouse_stale = (bool(stale) or bool(waiting) or not served
                       or before.get("warehouse", ("",))[0] != warehouse_fingerprint(home.root,
                                                                                     recorded_staging(before)))
    return Plan(stale, warehouse_stale, since, waiting)
