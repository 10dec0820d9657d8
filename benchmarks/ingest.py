"""Benchmark ingestion: rows/s per system next to DuckDB's raw read of the same files.

    python benchmarks/ingest.py --landing data/city/landing

The raw read is DuckDB counting every row of the same files with no typing or checks
(``read_csv(..., all_varchar=true)``, ``read_json_objects``); the ratio is the cost of
what staging adds (contract checks, quarantine, history, Parquet, audit). Staging runs
in a fresh build database so nothing is skipped as already loaded.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sources.contracts import load_contract  # noqa: E402
from sources.drops import SYSTEMS, find_drops  # noqa: E402
from sources.ingest import ingest  # noqa: E402


def raw_read(landing: Path, system: str) -> tuple[int, float]:
    contract = load_contract(system)
    con = duckdb.connect()
    start = time.perf_counter()
    rows = 0
    for drop in find_drops(landing, (system,)):
        for f in {t.file for t in contract.tables}:
            path = drop.folder / f
            if not path.exists():
                continue
            if contract.format == "ndjson":
                query = f"SELECT count(*) FROM read_json_objects('{path}', format='newline_delimited')"
            else:
                encoding = {"cp1252": "latin-1", "utf-8-sig": "utf-8"}.get(contract.encoding, contract.encoding)
                query = f"SELECT count(*) FROM read_csv('{path}', all_varchar=true, header=true, encoding='{encoding}')"
            rows += con.sql(query).fetchall()[0][0]
    return rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--landing", type=Path, default=Path("data/city/landing"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        con = duckdb.connect(str(Path(home) / "build.duckdb"))
        print(f"{'system':<12} {'rows':>10} {'staging s':>10} {'rows/s':>10} {'raw read s':>11} {'raw rows/s':>11} {'ratio':>6}")
        total, cpu = 0.0, 0.0
        load_before = os.getloadavg()[0]
        for system in SYSTEMS:
            start, start_cpu = time.perf_counter(), _cpu_seconds()
            [summary] = ingest(con, args.landing, Path(home) / "staged", systems=(system,))
            ours = time.perf_counter() - start
            total += ours
            cpu += _cpu_seconds() - start_cpu
            rows, raw = raw_read(args.landing, system)
            print(f"{system:<12} {summary.rows_delivered:>10,} {ours:>10.2f} {summary.rows_delivered / ours:>10,.0f} "
                  f"{raw:>11.2f} {rows / raw:>11,.0f} {ours / raw:>6.1f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"whole history staged in {total:.1f} s (CPU {cpu:.1f} s of this process); peak memory {peak:,.0f} MiB")
    # Other work on the machine slows staging down: the load average says how much there was.
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} cores")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
