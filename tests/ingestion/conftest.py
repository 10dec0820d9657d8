"""Fixtures for bad-input ingestion tests: copy drops of the session city into a test's
own landing folder, damage them as a delivery goes wrong, and ingest into a real DuckDB
file.

Two kinds of damage are simulated, and they differ only in the manifest:

- *the system itself sent bad content*: the file is edited and the drop's
  ``_manifest.json`` is rewritten so that rows and sha256 agree with it
  (``Landing.rewrite_manifest``), as the sending system would have done;
- *corruption in transit*: the file is edited and the manifest is left alone.

Edits are made on the bytes of the file, keeping the system's encoding, quoting and
line ends, so that the only difference from a real drop is the one under test.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sources.contracts import load_contract
from sources.ingest import SystemSummary, ingest

MANIFEST = "_manifest.json"


def csv_line(fields: list[str | None]) -> str:
    """One CSV record the way the five systems write them: text quoted, blank unquoted."""
    return ",".join("" if v is None or v == "" else '"' + str(v).replace('"', '""') + '"' for v in fields)


class Landing:
    """A test's landing folder, filled with drops copied from the session city."""

    def __init__(self, root: Path, city_landing: Path):
        self.root = root
        self.city = city_landing

    # ---------------------------------------------------------------- drops
    def city_dates(self, system: str) -> list[str]:
        return sorted(p.name for p in (self.city / system).iterdir() if (p / MANIFEST).exists())

    def copy(self, system: str, *dates: str) -> list[Path]:
        """Copy whole drop folders of the session city into this landing."""
        out = []
        for day in dates:
            target = self.folder(system, day)
            shutil.copytree(self.city / system / day, target)
            out.append(target)
        return out

    def folder(self, system: str, day: str) -> Path:
        return self.root / system / day

    def path(self, system: str, day: str, file: str) -> Path:
        return self.folder(system, day) / file

    def manifest(self, system: str, day: str) -> dict:
        return json.loads((self.folder(system, day) / MANIFEST).read_text(encoding="utf-8"))

    def manifest_rows(self, system: str, day: str, file: str) -> int:
        return next(f["rows"] for f in self.manifest(system, day)["files"] if f["name"] == file)

    def rewrite_manifest(self, system: str, day: str, include_new_files: bool = False) -> dict:
        """Make the manifest agree with the files as they now are (rows and sha256), as the
        sending system does when it exports bad content itself. Files that no longer exist
        leave the manifest; with ``include_new_files`` files it never listed join it."""
        folder = self.folder(system, day)
        manifest = self.manifest(system, day)
        encoding = load_contract(system).encoding
        names = [f["name"] for f in manifest["files"] if (folder / f["name"]).exists()]
        if include_new_files:
            names += sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in names)
        manifest["files"] = [{"name": name, "rows": count_rows(folder / name, encoding),
                              "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()} for name in names]
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    def resign_manifest(self, system: str, day: str, rows: dict[str, int] | None = None) -> dict:
        """Make the manifest's sha256 agree with the files as they now are but keep the
        rows it states (or set ``rows[file]``), as a system does that exported a row
        broken: it counts the rows it wrote, it does not parse its own file again."""
        folder = self.folder(system, day)
        manifest = self.manifest(system, day)
        for f in manifest["files"]:
            f["sha256"] = hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest()
            f["rows"] = (rows or {}).get(f["name"], f["rows"])
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    # ---------------------------------------------------------------- editing files
    def lines(self, system: str, day: str, file: str) -> list[bytes]:
        """The file's physical lines as bytes, line ends removed (line 1 is the header)."""
        data = self.path(system, day, file).read_bytes().replace(b"\r\n", b"\n")
        lines = data.split(b"\n")
        return lines[:-1] if data.endswith(b"\n") else lines

    def write_lines(self, system: str, day: str, file: str, lines: list[bytes]) -> None:
        path = self.path(system, day, file)
        newline = b"\r\n" if b"\r\n" in path.read_bytes()[:4096] else b"\n"
        path.write_bytes(b"".join(line + newline for line in lines))

    def records(self, system: str, day: str, file: str) -> tuple[list[str], list[list[str]]]:
        """Header and data records, decoded in the system's encoding."""
        text = self.path(system, day, file).read_bytes().decode(_python_encoding(system))
        header, *rows = list(csv.reader(io.StringIO(text, newline="")))
        return header, rows

    def write_records(self, system: str, day: str, file: str, header: list[str], rows: list[list[str]]) -> None:
        """Write header and records back in the system's encoding, quoting and line ends."""
        path = self.path(system, day, file)
        data = path.read_bytes()
        newline = "\r\n" if b"\r\n" in data[:4096] else "\n"
        text = "".join(csv_line(r) + newline for r in [header, *rows])
        bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
        path.write_bytes(bom + text.encode(load_contract(system).encoding.replace("-sig", "")))

    def set_value(self, system: str, day: str, file: str, line_no: int, column: str, value: str) -> list[str]:
        """Set one field on one physical line (line 1 is the header); returns the record."""
        header, rows = self.records(system, day, file)
        assert len(rows) + 1 == len(self.lines(system, day, file)), "expects one record per line"
        rows[line_no - 2][header.index(column)] = value
        self.write_records(system, day, file, header, rows)
        return rows[line_no - 2]

    def find_line(self, system: str, day: str, file: str, where) -> int:
        """The physical line number of the first record for which ``where(record_dict)``."""
        header, rows = self.records(system, day, file)
        for i, row in enumerate(rows):
            if where(dict(zip(header, row))):
                return i + 2
        raise LookupError(f"no record in {system}/{day}/{file} matches")


def _python_encoding(system: str) -> str:
    encoding = load_contract(system).encoding
    return "utf-8-sig" if encoding.startswith("utf-8") else encoding


def count_rows(path: Path, encoding: str) -> int:
    """Data rows as the manifest counts them: CSV records less the header, NDJSON lines."""
    data = path.read_bytes()
    if path.suffix == ".ndjson":
        return sum(1 for line in data.splitlines() if line.strip())
    text = data.decode(encoding, errors="replace")
    return max(0, sum(1 for record in csv.reader(io.StringIO(text, newline="")) if record) - 1)  # blank lines are not rows


REPO = Path(__file__).resolve().parents[2]
_INGEST_SCRIPT = """
import json, sys
from pathlib import Path
import duckdb
from sources.ingest import ingest
db, staged, spec = sys.argv[1:]
con = duckdb.connect(db)
out = []
for landing, system, run_id in json.loads(spec):
    [summary] = ingest(con, Path(landing), Path(staged), systems=(system,), run_id=run_id)
    out.append(summary.__dict__)
con.close()
print(json.dumps(out))
"""


class Warehouse:
    """A real DuckDB file in the test's folder, with the ingest call the tests make."""

    def __init__(self, folder: Path, name: str = "build"):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.duckdb"
        self.staged_dir = folder / f"{name}_staged"
        self.con = duckdb.connect(str(self.path))

    def ingest(self, landing: Landing | Path, *systems: str, run_id: str | None = None) -> dict[str, SystemSummary]:
        root = landing.root if isinstance(landing, Landing) else Path(landing)
        return {s.system: s for s in ingest(self.con, root, self.staged_dir, systems=systems, run_id=run_id)}

    def ingest_in_subprocess(self, *runs: tuple[Landing, str, str]) -> subprocess.CompletedProcess:
        """``ingest`` once per ``(landing, system, run_id)``, one after another in one child
        process, so that a crash inside DuckDB fails one test instead of killing the
        session (``returncode`` non-zero, ``stderr`` says why; on success ``stdout`` holds
        the summaries as a JSON list). The connection is closed meanwhile: DuckDB lets one
        process at a time open the file."""
        self.con.close()
        spec = json.dumps([[str(landing.root), system, run_id] for landing, system, run_id in runs])
        try:
            return subprocess.run([sys.executable, "-c", _INGEST_SCRIPT, str(self.path), str(self.staged_dir), spec],
                                  cwd=REPO, capture_output=True, text=True, timeout=300)
        finally:
            self.con = duckdb.connect(str(self.path))

    def all(self, sql: str, params=None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def one(self, sql: str, params=None):
        row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row is not None and len(row) == 1 else row

    def issues(self, system: str, day: str | None = None, file: str | None = None) -> list[dict]:
        sql = "SELECT * FROM quarantine.issue WHERE system = ?"
        params = [system]
        if day:
            sql, params = sql + " AND extract_date = ?", params + [day]
        if file:
            sql, params = sql + " AND file_name = ?", params + [file]
        cur = self.con.execute(sql + " ORDER BY ALL", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def drop_file(self, system: str, day: str, file: str) -> dict:
        """The file's row in ``audit.drop_file`` from the latest attempt."""
        cur = self.con.execute("SELECT * FROM audit.drop_file WHERE system = ? AND extract_date = ? AND file_name = ? "
                               "ORDER BY recorded_at DESC LIMIT 1", [system, day, file])
        row = cur.fetchone()
        assert row is not None, f"no audit.drop_file row for {system}/{day}/{file}"
        return dict(zip([d[0] for d in cur.description], row))

    def drop_status(self, system: str, day: str) -> tuple[str, str] | None:
        """(status, reason) of the latest ``audit.drop`` row for a drop, or None."""
        return self.con.execute("SELECT status, reason FROM audit.drop WHERE system = ? AND extract_date = ? "
                                "ORDER BY recorded_at DESC LIMIT 1", [system, day]).fetchone()

    def staged_count(self, table: str, day: str | None = None) -> int:
        if day is None:
            return self.one(f"SELECT count(*) FROM staging.{table}")
        return self.one(f"SELECT count(*) FROM staging.{table} WHERE extract_date = ?", [day])

    def table_contents(self, schema: str) -> dict[str, list[tuple]]:
        """Every table of a schema, rows sorted, for comparing two builds."""
        names = [r[0] for r in self.all("SELECT table_name FROM duckdb_tables() WHERE schema_name = ? "
                                        "ORDER BY table_name", [schema])]
        return {name: self.all(f"SELECT * FROM {schema}.{name} ORDER BY ALL") for name in names}

    def close(self) -> None:
        self.con.close()


@pytest.fixture(scope="session")
def city_landing(small_city) -> Path:
    out, _summary = small_city
    return out / "landing"


@pytest.fixture
def landing(tmp_path, city_landing) -> Landing:
    root = tmp_path / "landing"
    root.mkdir()
    return Landing(root, city_landing)


@pytest.fixture
def warehouse(tmp_path):
    wh = Warehouse(tmp_path / "warehouse")
    yield wh
    wh.close()


@pytest.fixture
def make_warehouse(tmp_path):
    """Further fresh warehouses in the same test (``make_warehouse("second")``)."""
    made = []

    def make(name: str) -> Warehouse:
        made.append(Warehouse(tmp_path / name, name))
        return made[-1]

    yield make
    for wh in made:
        wh.close()
