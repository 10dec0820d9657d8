"""Finding complete drops in a landing folder and checking them against their manifest.

A drop is ``<landing>/<system>/<YYYY-MM-DD>/`` with ``_manifest.json`` written last
(CONTRACT.md, "Drops"). A folder without a manifest is still being written and is not
read. A drop whose files disagree with the manifest (row count or sha256) is rejected
whole, with a reason that names the file; the warehouse keeps its last good state.

Suppliers' files are hostile until checked. A drop is confined to its own folder: a
manifest may name only plain file names, and a drop folder, its manifest and its files
must be plain files and folders, not symbolic links or devices. Anything else rejects the
drop with a reason naming the entry; the target is never opened, read or hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .staging import read_csv_bytes

SYSTEMS = ("education", "health", "social_care", "early_help", "mash", "reference")
MANIFEST = "_manifest.json"
# a hostile name is quoted in messages and the audit, never whole
NAME_SHOWN = 80


def shown(name: str) -> str:
    """A supplier's name as messages quote it: repr (so control characters show), bounded."""
    text = repr(name)
    return text if len(text) <= NAME_SHOWN else text[:NAME_SHOWN] + "…"


def plain_file_name(name: str) -> bool:
    """A name that can only mean a file directly inside the drop folder."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and not name.startswith("~") and len(name) <= 255)


def _not_plain(path: Path, what: str) -> str | None:
    """Why ``path`` is not a plain (non-link) file or folder, or None; lstat never follows."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link (refused, not followed)"
    if what == "folder" and not stat.S_ISDIR(mode) or what == "file" and not stat.S_ISREG(mode):
        return f"is not a plain {what}"
    return None


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
            if not _is_date_name(folder.name):
                continue  # not a drop folder: ignored_in_landing reports it
            extract_date = date.fromisoformat(folder.name)
            if not os.path.lexists(folder / MANIFEST):
                continue
            refused = _not_plain(folder, "folder")
            if refused:  # a linked drop folder could reach anywhere: refuse it unread
                found.append(Drop(system, extract_date, folder,
                                  problems=[f"{system}/{folder.name}: the drop folder {refused}"]))
                continue
            found.append(read_manifest(system, extract_date, folder))
    return sorted(found, key=lambda d: (d.extract_date, d.system))


def ignored_in_landing(landing: Path, system: str) -> list[tuple[str, str]]:
    """(name, why) of every entry in ``landing/system`` that is not a drop folder and so
    is never read: a folder not named as a real YYYY-MM-DD date (``latest``,
    ``2025-02-30``), or a file. A dated folder without its manifest yet is a drop still
    arriving, not listed here."""
    root = Path(landing) / system
    if not root.is_dir():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        dated = _is_date_name(entry.name)
        if entry.is_symlink() and dated:
            continue  # a linked drop folder: find_drops refuses it as a drop, with its reason
        if entry.is_symlink() or not entry.is_dir():
            out.append((shown(entry.name), "not a drop folder (a file or a link): ignored"))
        elif not dated:
            out.append((shown(entry.name), "folder name is not a YYYY-MM-DD date: ignored, nothing in it is read"))
    return out


def _is_date_name(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def read_manifest(system: str, extract_date: date, folder: Path) -> Drop:
    drop = Drop(system, extract_date, folder)
    refused = _not_plain(folder / MANIFEST, "file")
    if refused:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: {refused}")
        return drop
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        drop.mode = manifest["mode"]
        drop.files = [ManifestFile(f["name"], int(f["rows"]), str(f["sha256"])) for f in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: unreadable manifest ({error})")
        return drop
    for f in drop.files:
        if not plain_file_name(f.name):
            drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: entry {shown(f.name)} is not a plain file name "
                                 "inside the drop folder (refused, not read)")
        elif f.rows < 0:
            drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: entry {shown(f.name)} declares {f.rows} rows")
    if drop.problems:
        return drop
    if manifest.get("system") != system:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: names system {manifest.get('system')!r}")
    if manifest.get("extract_date") != folder.name:
        drop.problems.append(f"{system}/{folder.name}/{MANIFEST}: names extract date {manifest.get('extract_date')!r}")
    return drop


def verify(drop: Drop, encoding: str = "utf-8", count_rows: bool = True,
           counted_by_caller: frozenset[str] = frozenset()) -> Drop:
    """Check every listed file's sha256 and data-row count; note every mismatch. With
    count_rows False, the files in ``counted_by_caller`` are counted by the caller from its
    parse; every other file is still counted here, so no declared count is ever trusted.
    Listed files must be plain files (never followed through a link)."""
    if not drop.ok:  # refused before its files were looked at: nothing is read
        return drop
    where = f"{drop.system}/{drop.partition}"
    listed = {f.name for f in drop.files}
    for extra in sorted(p.name for p in drop.folder.iterdir() if p.name != MANIFEST and p.name not in listed
                        and (p.is_symlink() or p.is_file())):
        drop.problems.append(f"{where}/{shown(extra)}: file not listed in the manifest")
    for f in drop.files:
        path = drop.folder / f.name
        refused = _not_plain(path, "file")
        if refused:
            drop.problems.append(f"{where}/{shown(f.name)}: {refused}")
            continue
        if not path.exists():
            drop.problems.append(f"{where}/{f.name}: listed in the manifest but missing")
            continue
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != f.sha256:
            drop.problems.append(f"{where}/{f.name}: sha256 {actual[:12]}… does not match the manifest's {f.sha256[:12]}…"
                                 " (truncated or corrupt)")
            continue
        if count_rows or f.name not in counted_by_caller:
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
