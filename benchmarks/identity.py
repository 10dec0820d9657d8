"""Benchmark identity: a full link of a city, then one more day's drops linked incrementally.

    python benchmarks/identity.py --city data/city

Stages every drop except the newest date of each daily system, links identity in full
(timed), then stages the newest drops and links again (timed, incremental scoring),
staging and identity each on its own connection as in the build,
and reports how many unchanged records kept their person_key. "identity s" is
run_identity's own clock (as the build's identity step); "close s" is closing the
connection afterwards, when DuckDB checkpoints what identity wrote. Each phase runs in
its own process so that peak memory is that phase's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def landing_without_newest_day(landing: Path, out: Path) -> str:
    """Every drop folder except the newest date of each system that has more than one
    drop, its files hard-linked (ingestion refuses linked folders and files, never hard
    links: they are plain files); return that newest date."""
    newest = max(p.name for p in landing.glob("*/*") if (p / "_manifest.json").exists())
    for system in landing.iterdir():
        drops = sorted(p for p in system.iterdir() if (p / "_manifest.json").exists())
        (out / system.name).mkdir(parents=True)
        for drop in drops:
            if drop.name != newest or len(drops) == 1:
                _link_drop(drop, out / system.name / drop.name)
    return newest


def _link_drop(drop: Path, target: Path) -> None:
    target.mkdir()
    for file in drop.iterdir():
        os.link(file, target / file.name)


def phase(database: str, landing: str, staged: str, review: str, run_id: str) -> None:
    """One child process: stage what is new, then link identity; print JSON figures."""
    import duckdb

    from assets.identity.engine import run_identity
    from sources.ingest import ingest

    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    start = time.perf_counter()
    ingest(con, Path(landing), Path(staged), run_id=run_id)
    # In the build, staging and identity are separate assets, each with its own
    # connection (assets/resources.py Warehouse.connect): closing staging's connection
    # checkpoints what it wrote before identity starts. Do the same here, inside the
    # staging time, so that identity's first commit does not pay for staging's writes.
    con.close()
    staged_seconds = time.perf_counter() - start
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    before = dict(con.sql("SELECT record_key, person_key FROM identity.person_registry").fetchall()) \
        if con.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'person_registry'").fetchall()[0][0] else {}
    hashes = dict(con.sql("SELECT record_key, record_hash FROM identity.standardised_record").fetchall()) if before else {}
    result = run_identity(con, run_id, Path(review))
    after = dict(con.sql("SELECT record_key, person_key FROM identity.person_registry").fetchall())
    now = dict(con.sql("SELECT record_key, record_hash FROM identity.standardised_record").fetchall())
    unchanged = [k for k in before if k in now and hashes.get(k) == now[k]]
    kept = sum(before[k] == after[k] for k in unchanged)
    # What identity wrote and DuckDB has not yet checkpointed is written when the asset
    # closes its connection: reported apart, as it lands after the identity step's clock.
    start = time.perf_counter()
    con.close()
    close_seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"staging_seconds": staged_seconds, "identity": result, "peak_mib": peak,
                      "close_seconds": close_seconds,
                      "unchanged_records": len(unchanged), "unchanged_kept_key": kept}, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--city", type=Path, default=Path("data/city"), help="a synthetic city (landing/, truth/)")
    parser.add_argument("--phase", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(*args.phase)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        earlier = tmp / "landing_before"
        newest = landing_without_newest_day(args.city.resolve() / "landing", earlier)
        database, staged, review = str(tmp / "build.duckdb"), str(tmp / "staged"), str(tmp / "review")
        figures = []
        for name, landing in (("full", earlier), ("next day", args.city.resolve() / "landing")):
            out = subprocess.run([sys.executable, __file__, "--phase", database, str(landing), staged, review, name],
                                 capture_output=True, text=True, cwd=ROOT, env=os.environ)
            if out.returncode:
                sys.exit(f"{name} phase failed:\n{out.stderr[-3000:]}")
            figures.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
        print(f"city: {args.city}   newest day: {newest}")
        print(f"{'phase':<10} {'records':>9} {'persons':>9} {'scoring':>12} {'identity s':>11} {'linking s':>10} "
              f"{'families s':>11} {'close s':>8} {'peak MiB':>9}  unchanged records keeping their key")
        for name, f in figures:
            s = f["identity"]["seconds"]
            linking = s["total"] - s["families"]
            kept = (f"{f['unchanged_kept_key']:,} of {f['unchanged_records']:,} "
                    f"({f['unchanged_kept_key'] / f['unchanged_records']:.4%})") if f["unchanged_records"] else "-"
            print(f"{name:<10} {f['identity']['records']:>9,} {f['identity']['persons']:>9,} {f['identity']['mode']:>12} "
                  f"{s['total']:>11.2f} {linking:>10.2f} {s['families']:>11.2f} {f['close_seconds']:>8.2f} "
                  f"{f['peak_mib']:>9,.0f}  {kept}")
            print("           " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))


if __name__ == "__main__":
    main()
