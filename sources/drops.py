"""Finding complete drops in a landing folder and checking them against their manifest.

A drop is ``<landing>/<system>/<YYYY-MM-DD>/`` with ``_manifest.json`` written last
(CONTRACT.md, "Drops"). A folder without a manifest is still being written and is not
read. A drop whose files disagree with the manifest (row count or sha256) is rejected
whole, with a reason that names the file; the warehouse keeps its last good state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .staging import read_csv_bytes

SYSTEMS = ("education", "health", "social_care", "early_help", "mash", "reference")
MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class ManifestFile:
    name: str
    rows: int
    sha256: str


@dataclass
class Drop:
    system: str
    extract_date: date
    folder: Path
    mode: str = ""
    files: list[ManifestFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def partition(self) -> str:
        return self.extract_date.isoformat()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fingerprint(self) -> str:
        """One checksum for the drop's content: the same delivery twice has the same one."""
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            digest.update(f"{f.name}:{f.sha256};".encode())
        return digest.hexdigest()


def find_drops(landing: Path, systems: tuple[str, ...] = SYSTEMS) -> list[Drop]:
    """Every complete drop (one with a manifest) under ``landing``, oldest first."""
    found = []
    for system in systems:
        root = Path(landing) / system
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                extract_date = date.fromisoformat(folder.name)
            except ValueError:
                continue  # not a drop folder
            if (folder / MANIFEST).exists():
                found.append(read_manifest(system, extract_date, folder))
    return sorted(found, key=lambda d: (d.extract_date, d.system))


def read_manifest(system: str, extract_date: date, folder: Path) -> Drop:
    drop = Drop(system, extract_date, folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        drop.mode = manifest["mode"]
        drop.files = [ManifestFile(f["name"], int(f["rows"]), str(f["sha256"])) for f in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: unreadable manifest ({error})")
        return drop
    if manifest.get("system") != system:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: names system {manifest.get('system')!r}")
    if manifest.get("extract_date") != folder.name:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: names extract date {manifest.get('extract_date')!r}")
    return drop


def verify(drop: Drop, encoding: str = "utf-8", count_rows: bool = True) -> Drop:
    """Check every listed file's sha256 and (unless the caller counts rows itself from
    its parse) its data-row count; note every mismatch."""
    where = f"{drop.system}/{drop.partition}"
    listed = {f.name for f in drop.files}
    for extra in sorted(p.name for p in drop.folder.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in listed):
        drop.problems.append(f"{where}/{extra}: file not listed in the manifest")
    for f in drop.files:
        path = drop.folder / f.name
        if not path.exists():
            drop.problems.append(f"{where}/{f.name}: listed in the manifest but missing")
            continue
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != f.sha256:
            drop.problems.append(f"{where}/{f.name}: sha256 {actual[:12]}… does not match the manifest's {f.sha256[:12]}…"
                                 " (truncated or corrupt)")
            continue
        if count_rows:
            check_rows(drop, f.name, rows_in(data, f.name, encoding))
    return drop


def check_rows(drop: Drop, file_name: str, rows: int) -> None:
    """Note a file whose data rows disagree with its manifest entry."""
    expected = next(f.rows for f in drop.files if f.name == file_name)
    if rows != expected:
        drop.problems.append(f"{drop.system}/{drop.partition}/{file_name}: {rows} data rows, "
                             f"the manifest says {expected} (truncated or padded)")


def rows_in(data: bytes, name: str, encoding: str) -> int:
    """Data rows as ingestion counts them from its parse (blank lines are not rows; a line
    that cannot be read is one), so that checking a drop here and ingesting it agree."""
    if name.endswith(".ndjson"):
        from .health import ndjson_rows  # health reads drops: imported here, not at the top
        return ndjson_rows(data)
    return read_csv_bytes(data, encoding).delivered
