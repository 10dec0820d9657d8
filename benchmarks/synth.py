"""Benchmark the synthetic city: seconds, rows written and peak memory at two scales.

    python benchmarks/synth.py                      # 120,000 and 1,200,000 children
    python benchmarks/synth.py --children 20000     # one scale

Each scale runs in its own process so that peak memory (max RSS) is that run's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from sources.synthetic.city import generate_city
from sources.synthetic.config import CityConfig
start = time.perf_counter()
summary = generate_city(CityConfig(children=int(sys.argv[1])), Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": sum(summary.rows.values()),
                  "drops": sum(summary.drops.values()), "stages": summary.seconds}))
"""


def run(children: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        done = subprocess.run([sys.executable, "-c", CHILD, str(children), out], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent.parent)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result = json.loads(done.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    result.update(children=children, peak_mib=max(peak_kib, before) / 1024, bytes=size)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, nargs="*", default=[120_000, 1_200_000])
    args = parser.parse_args()
    print(f"{'children':>10} {'seconds':>8} {'rows':>12} {'rows/s':>10} {'drops':>6} {'MiB on disk':>11} {'peak MiB':>9}")
    for n in args.children:
        r = run(n)
        print(f"{n:>10,} {r['seconds']:>8.1f} {r['rows']:>12,} {r['rows'] / r['seconds']:>10,.0f} {r['drops']:>6} "
              f"{r['bytes'] / 2**20:>11,.0f} {r['peak_mib']:>9,.0f}", flush=True)
        print("           stages: " + ", ".join(f"{k} {v}s" for k, v in r["stages"].items()), flush=True)


if __name__ == "__main__":
    main()
