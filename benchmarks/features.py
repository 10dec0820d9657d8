"""Benchmark the features layer: build schema `features` and evaluate the baseline model on
a copy of a build's database.

    python benchmarks/features.py --home data/home

Copies HOME/warehouse/build.duckdb (it must hold history, identity and model: run
`earlyhelp build` first) to a temporary folder, then times build_features and
train_and_evaluate on the copy, each in its own process so that peak memory is its own.
Prints JSON: rows, seconds, rows per second, peak MiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assets.home import Home  # noqa: E402


def phase(database: str, name: str) -> None:
    import duckdb

    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    start = time.perf_counter()
    if name == "features":
        from assets.features.features import build_features

        counts = build_features(con)
        rows = counts["child_month"]
        extra = {"tables": counts}
    else:
        from assets.features.evaluate import train_and_evaluate

        run = train_and_evaluate(con)
        rows = run["train_rows"] + run["test_rows"]
        extra = {"auc": run.get("auc"), "clears_bar": run["clears_bar"], "bar_failures": run["bar_failures"]}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"phase": name, "rows": rows, "seconds": round(seconds, 1),
                      "rows_per_second": round(rows / seconds), "peak_mib": round(peak), **extra}, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "data" / "home")
    parser.add_argument("--phase", nargs=2, metavar=("DATABASE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(*args.phase)
        return
    source = Home(args.home).build_db
    if not source.exists():
        sys.exit(f"no build database at {source}: run `earlyhelp build` first")
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "build.duckdb"
        shutil.copy(source, database)
        for name in ("features", "model"):
            out = subprocess.run([sys.executable, __file__, "--phase", str(database), name],
                                 check=True, capture_output=True, text=True)
            print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
