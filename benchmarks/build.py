"""The daily life of the pipeline, measured: `earlyhelp build` on one city, four times in
a row on one HOME, as a data engineer meets it:

1. fresh: a new HOME, every drop but the newest day's;
2. nothing new: the same landing again;
3. next day: the newest day's drops added;
4. correction: an earlier social care snapshot re-delivered with five rows gone.

A fresh HOME built from the final landing is not a peer to compare tables with: its
person keys and its person model come from a different history (keys are kept stable
across a HOME's builds; the model is fitted on the first build's records).

Each build runs in its own process: wall seconds, CPU seconds (its own and its
children's) and peak RSS are that process's; the seconds of every asset and check are
their Dagster step durations, read from the HOME's instance. Printed as markdown tables;
--record writes them into docs/benchmarks.md between this script's markers.

    python benchmarks/build.py --city data/city [--record]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from identity import landing_without_newest_day  # noqa: E402  (benchmarks/identity.py)

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- benchmarks/build.py: begin -->", "<!-- benchmarks/build.py: end -->"
CORRECTED_SYSTEM, CORRECTED_FILE, ROWS_REMOVED = "social_care", "ssd_cin_episodes.csv", 5


def phase(landing: str, home: str, truth: str) -> None:
    """One child process: one build; print its figures as JSON on the last line."""
    import dagster as dg

    from pipelines.build import build, dagster_instance

    started, wall = datetime.now(timezone.utc), time.perf_counter()
    result = build(Path(landing), Path(home), Path(truth))
    wall = time.perf_counter() - wall
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    instance = dagster_instance(Path(home))
    steps: dict[str, float] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(created_after=started)):
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                steps[step.step_key] = steps.get(step.step_key, 0.0) + step.end_time - step.start_time
    evaluation = (result.identity or {}).get("evaluation") or {}
    print(json.dumps({
        "ok": result.ok, "wall": wall, "cpu": self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime,
        "peak_mib": self_.ru_maxrss / 1024, "steps": steps, "up_to_date": sorted(result.up_to_date),
        "precision": (evaluation.get("pairwise") or {}).get("precision"),
        "recall": (evaluation.get("pairwise") or {}).get("recall"), "twin_merges": evaluation.get("twin_merges"),
        "auc": (result.model or {}).get("auc")}))


def run_phase(landing: Path, home: Path, truth: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", str(landing), str(home), str(truth)],
                         capture_output=True, text=True, cwd=ROOT, env=os.environ)
    if out.returncode != 0:
        sys.exit(f"build failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_newest_day(landing: Path, full: Path, newest: str) -> None:
    for drop in full.glob(f"*/{newest}"):
        target = landing / drop.parent.name / newest
        if not target.exists():
            target.mkdir()
            for file in drop.iterdir():
                os.link(file, target / file.name)


def correct_earlier_drop(landing: Path, newest: str) -> str:
    """Re-deliver the social care snapshot five days before the newest with the last
    ROWS_REMOVED rows of CORRECTED_FILE gone (a plain copy: the city's files stay as
    they are), and its manifest re-signed as the sender would. Returns its date."""
    drops = sorted(p for p in (landing / CORRECTED_SYSTEM).iterdir() if p.name < newest)
    folder = drops[-5]
    for file in list(folder.iterdir()):  # hard links -> own copies
        data = file.read_bytes()
        file.unlink()
        file.write_bytes(data)
    path = folder / CORRECTED_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-ROWS_REMOVED]))
    manifest = json.loads((folder / "_manifest.json").read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        if entry["name"] == CORRECTED_FILE:
            entry["rows"] -= ROWS_REMOVED
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "_manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder.name


def tables(figures: dict[str, dict]) -> str:
    phases = list(figures)
    out = ["| build | wall s | CPU s | peak RSS MiB | jobs up to date | precision | recall | twin merges | AUC |",
           "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, f in figures.items():
        num = lambda v, fmt: format(v, fmt) if v is not None else "—"  # noqa: E731
        out.append(f"| {name} | {f['wall']:.1f} | {f['cpu']:.1f} | {f['peak_mib']:,.0f} | "
                   f"{len(f['up_to_date'])} | {num(f['precision'], '.5f')} | {num(f['recall'], '.5f')} | "
                   f"{num(f['twin_merges'], 'd')} | {num(f['auc'], '.3f')} |")
    steps = sorted({s for f in figures.values() for s in f["steps"]},
                   key=lambda s: -max(f["steps"].get(s, 0) for f in figures.values()))
    out += ["", "| asset or check (Dagster step) | " + " | ".join(phases) + " |",
            "|---|" + "---:|" * len(phases)]
    for step in steps:
        cells = [f"{figures[p]['steps'][step]:.2f}" if step in figures[p]["steps"] else "—" for p in phases]
        out.append(f"| `{step}` | " + " | ".join(cells) + " |")
    return "\n".join(out)


def record(text: str) -> None:
    doc = DOCS.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip() + "\n\n## The daily run (`benchmarks/build.py`)\n\n" + block + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--city", type=Path, default=Path("data/city"))
    parser.add_argument("--record", action="store_true", help="write the tables into docs/benchmarks.md")
    parser.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(*args.phase)
        return
    city = args.city.resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    load_before, when = os.getloadavg(), datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(dir=ROOT / "data") as tmp:
        tmp = Path(tmp)
        landing, home = tmp / "landing", tmp / "home"
        newest = landing_without_newest_day(city / "landing", landing)
        figures = {"fresh (all but the newest day)": run_phase(landing, home, city / "truth")}
        figures["nothing new"] = run_phase(landing, home, city / "truth")
        add_newest_day(landing, city / "landing", newest)
        figures[f"next day ({newest})"] = run_phase(landing, home, city / "truth")
        corrected = correct_earlier_drop(landing, newest)
        figures[f"correction ({CORRECTED_SYSTEM} {corrected})"] = run_phase(landing, home, city / "truth")
    load_after = os.getloadavg()
    text = (f"Measured {when:%Y-%m-%d %H:%M} UTC at {commit} on `{args.city}` (2 cores; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after). With `--truth`, as `make demo` builds.\n\n"
            + tables(figures))
    print(text)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
