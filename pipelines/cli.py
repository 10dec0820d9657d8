"""The ``earlyhelp`` command: one entry point for every user-facing operation."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from sources.synthetic.config import CityConfig


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="earlyhelp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    defaults = CityConfig()
    synth = commands.add_parser("synth", help="generate a synthetic city in the five systems' native formats")
    synth.add_argument("--children", type=int, default=defaults.children, help="children 0-19 at the start (default %(default)s)")
    synth.add_argument("--seed", type=int, default=defaults.seed, help="random seed; the same arguments give identical files")
    synth.add_argument("--start", type=_date, default=defaults.start, help="first day of the simulated period (default %(default)s)")
    synth.add_argument("--end", type=_date, default=defaults.end, help="last day of the simulated period (default %(default)s)")
    synth.add_argument("--go-live", type=_date, default=None,
                       help="day each system sends its initial full extract; drops follow at each system's cadence "
                            "until --end (default: 27 days before --end; use --start for every drop of the period)")
    synth.add_argument("--out", type=Path, required=True, help="folder for landing/ and truth/")

    build = commands.add_parser("build", help="run the whole pipeline, in process, on every drop in a landing folder")
    build.add_argument("--landing", type=Path, required=True, help="the landing folder (<landing>/<system>/<date>/)")
    build.add_argument("--home", type=Path, required=True,
                       help="where the build keeps its database, Dagster instance, staged Parquet and reports")

    args = parser.parse_args(argv)
    if args.command == "synth":
        return _synth(args)
    if args.command == "build":
        return _build(args)
    return 2


def _build(args) -> int:
    from pipelines.build import build, print_summary

    try:
        result = build(args.landing, args.home)
    except FileNotFoundError as error:
        print(f"earlyhelp build: {error}", file=sys.stderr)
        return 2
    print_summary(result)
    if not result.ok:
        failed = ", ".join(s for s, ok in result.runs.items() if not ok)
        print(f"earlyhelp build: {failed} run(s) failed; see the Dagster UI or the audit tables", file=sys.stderr)
        return 1
    return 0


def _synth(args) -> int:
    from sources.synthetic.city import generate_city

    try:
        config = CityConfig(children=args.children, seed=args.seed, start=args.start, end=args.end, go_live=args.go_live)
    except ValueError as error:
        print(f"earlyhelp synth: {error}", file=sys.stderr)
        return 2
    summary = generate_city(config, args.out)
    print(f"Synthetic city: {config.children:,} children, seed {config.seed}, "
          f"{config.start} to {config.end}, drops from {config.go_live}")
    print(f"{'system':<12} {'drops':>6} {'rows':>12}")
    for system in sorted(summary.drops):
        print(f"{system:<12} {summary.drops[system]:>6} {summary.rows[system]:>12,}")
    print(f"truth: {summary.persons:,} persons, {summary.records:,} source records")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in summary.seconds.items()) + f" (total {sum(summary.seconds.values()):.1f})")
    print(f"landing: {args.out / 'landing'}\ntruth:   {args.out / 'truth'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
