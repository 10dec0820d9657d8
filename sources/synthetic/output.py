"""Writing drops the way the five systems deliver them (CONTRACT.md, "Drops").

A drop is one folder per system per extract date. Files are written first and
``_manifest.json`` last, with each file's data-row count and sha256, so that a reader
never mistakes a half-written folder for a complete one. Everything here is
deterministic: the same tables give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .config import CityConfig

LONDON = ZoneInfo("Europe/London")
EXTRACT_TIME = (23, 5, 11)  # each system's nightly export finishes at 23:05:11 local time


# ------------------------------------------------------------------ schedule
def third_thursday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 14)


def month_ends(start: date, end: date) -> list[date]:
    out, d = [], date(start.year, start.month, 1)
    while d <= end:
        nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        if start <= last <= end:
            out.append(last)
        d = nxt
    return out


def census_dates(start: date, end: date) -> list[date]:
    return [
        d for y in range(start.year, end.year + 1) for m in (1, 5, 10)
        if start <= (d := third_thursday(y, m)) <= end
    ]


def drop_dates(system: str, config: CityConfig) -> list[date]:
    """Extract dates of a system: an initial full extract at go-live, then its cadence."""
    first, end = config.go_live, config.end
    after = first + timedelta(days=1)
    days = [after + timedelta(days=i) for i in range((end - after).days + 1)]
    cadence = {
        "mash": days,
        "social_care": days,
        "early_help": [d for d in days if d.weekday() == 6],
        "health": month_ends(after, end),
        "education": sorted(set(census_dates(after, end)) | set(month_ends(after, end))),
    }[system]
    return [first] + cadence


def extract_instant(extract_date: date) -> datetime:
    """The moment a nightly extract is taken, as an aware local time."""
    return datetime(extract_date.year, extract_date.month, extract_date.day, *EXTRACT_TIME, tzinfo=LONDON)


# ------------------------------------------------------------------ as-of state
def as_of(records: pd.DataFrame, when, reveal: dict[str, str] | None = None,
          created: str = "_created", deleted: str = "_deleted") -> pd.DataFrame:
    """The rows a system held at ``when``, each column as it stood then.

    ``records`` holds every record a system will ever have, with the date it appeared
    (``created``) and, optionally, the date it was removed (``deleted``). ``reveal``
    maps a column to the date column at which its value became known: before that date
    the value is blank (a referral not yet closed has no close date). Columns whose name
    starts with ``_`` are bookkeeping and are dropped.
    """
    when = np.datetime64(when, "ns")
    keep = records[created].to_numpy("datetime64[ns]") <= when
    if deleted in records:
        gone = records[deleted].to_numpy("datetime64[ns]")
        keep &= ~(gone <= when)
    out = records.loc[keep].copy()
    for column, known_at in (reveal or {}).items():
        hidden = ~(out[known_at].to_numpy("datetime64[ns]") <= when)
        out[column] = out[column].astype(object).where(~hidden, None)
    return out[[c for c in out.columns if not c.startswith("_")]]


# ------------------------------------------------------------------ formatting
# Arrow's strftime kernel formats millions of values a second; pandas' is ~50x slower
# on time-zone-aware values, which dominated the MASH writer.
def _naive(values) -> pa.Array:
    s = pd.to_datetime(pd.Series(values), errors="coerce")
    if s.dt.tz is not None:
        s = s.dt.tz_localize(None)
    return pa.array(s.astype("datetime64[s]"), from_pandas=True)


def _local_and_offset(values):
    utc = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    local = utc.dt.tz_convert(LONDON).dt.tz_localize(None)
    summer = (local - utc.dt.tz_localize(None)).dt.total_seconds().to_numpy() > 0
    return local, summer


def _strftime(array: pa.Array, pattern: str) -> pd.Series:
    return pd.Series(pc.strftime(array, format=pattern).to_numpy(zero_copy_only=False), dtype=object)


def fmt_date(values, style: str = "iso") -> pd.Series:
    """Dates as text: ``iso`` (YYYY-MM-DD) or ``uk`` (DD/MM/YYYY); blank when missing."""
    return _strftime(_naive(values), "%Y-%m-%d" if style == "iso" else "%d/%m/%Y")


def fmt_local_datetime(values) -> pd.Series:
    """Naive local clock reading `YYYY-MM-DD HH:MM:SS` (the Mosaic SQL Server style)."""
    local, _ = _local_and_offset(values)
    return _strftime(_naive(local), "%Y-%m-%d %H:%M:%S")


def fmt_instant(values) -> pd.Series:
    """ISO 8601 with the UK offset of the moment, e.g. `2025-03-30T00:30:00+00:00`."""
    local, summer = _local_and_offset(values)
    text = _strftime(_naive(local), "%Y-%m-%dT%H:%M:%S")
    offset = pd.Series(np.where(summer, "+01:00", "+00:00"), dtype=object)
    return (text + offset).where(text.notna(), None)


def fmt_flag(values, yes: str = "Y", no: str = "N") -> pd.Series:
    s = pd.Series(values)
    return s.map({True: yes, False: no}).astype(object).where(s.notna(), None)


# ------------------------------------------------------------------ writing
@dataclass
class Drop:
    """One folder being written. Call ``finish()`` once every file is in it."""

    landing: Path
    system: str
    extract_date: date
    mode: str  # snapshot | delta
    files: list[dict] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.landing / self.system / self.extract_date.isoformat()

    def csv(self, name: str, frame: pd.DataFrame, encoding: str = "utf-8", crlf: bool = False) -> None:
        """Write a CSV. ``encoding`` is utf-8, utf-8-sig (with BOM) or cp1252.

        Every value is written as text; None and empty strings are blank fields.
        """
        table = pa.table({c: _as_text(frame[c]) for c in frame.columns})
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(quoting_style="needed"))
        data = buffer.getvalue()
        if encoding != "utf-8":
            data = data.decode("utf-8").encode(encoding)  # strict: never lose a character silently
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        self._write(name, data, len(frame))

    def ndjson(self, name: str, lines) -> None:
        """Write one JSON document per line (already serialised, e.g. by DuckDB)."""
        lines = list(lines)
        data = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
        self._write(name, data, len(lines))

    def _write(self, name: str, data: bytes, rows: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_bytes(data)
        self.files.append({"name": name, "rows": rows, "sha256": hashlib.sha256(data).hexdigest()})

    def finish(self) -> Path:
        manifest = {
            "system": self.system,
            "extract_date": self.extract_date.isoformat(),
            "mode": self.mode,
            "generated_at": extract_instant(self.extract_date).isoformat(),
            "files": sorted(self.files, key=lambda f: f["name"]),
        }
        path = self.folder / "_manifest.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return path


def _as_text(values: pd.Series) -> pa.Array:
    """A column as Arrow text: integers as digits, booleans as true/false, "" as blank."""
    s = pd.Series(values, copy=False)
    if s.dtype == bool:
        s = s.map({True: "true", False: "false"})
    try:
        array = pa.array(s, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column mixing text and numbers
        array = pa.array(s.map(lambda v: None if v is None or v != v else str(v)), type=pa.string())
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
