"""The ``earlyhelp`` command: one entry point for every user-facing operation."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from sources.synthetic.config import DEFECT_PROFILES, CityConfig


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
    synth.add_argument("--defects", choices=list(DEFECT_PROFILES), default="default",
                       help="named error profile of the records (sources/synthetic/config.py; default %(default)s)")

    build = commands.add_parser("build", help="run the whole pipeline, in process, on every drop in a landing folder")
    build.add_argument("--landing", type=Path, required=True, help="the landing folder (<landing>/<system>/<date>/)")
    build.add_argument("--home", type=Path, required=True,
                       help="where the build keeps its database, Dagster instance, staged Parquet and reports")
    build.add_argument("--truth", type=Path, default=None,
                       help="a synthetic city's truth/ folder: score identity against it after the build")

    link = commands.add_parser("link", help="link any person table (Parquet or CSV) into persons",
                               description="Input columns: record_id, source, forename, middle_names, surname, "
                                           "dob (YYYY-MM-DD), sex, postcode, address; optional nhs_number, upn, "
                                           "former_upn, uprn, csc_id, alt_forename, alt_surname, dob_estimated, role. "
                                           "Output: record_id, source, person_key, match_probability, link_rule, explanation.")
    link.add_argument("--input", type=Path, required=True, help="the person table (.parquet or .csv)")
    link.add_argument("--output", type=Path, required=True, help="where to write record_id -> person_key (.parquet or .csv)")
    link.add_argument("--model", type=Path, default=None, help="a trained model JSON (default: the repo's)")

    evaluate = commands.add_parser("evaluate-identity", help="score a build's persons against a synthetic city's truth (JSON)")
    evaluate.add_argument("--truth", type=Path, required=True, help="the city's truth/ folder")
    evaluate.add_argument("--home", type=Path, required=True, help="the build's HOME")

    train = commands.add_parser("train-identity", help="retrain the Splink person model on a build's records and save it")
    train.add_argument("--home", type=Path, required=True, help="a HOME whose build has linked identity once")
    train.add_argument("--out", type=Path, default=None, help="model JSON to write (default: the repo's model file)")

    args = parser.parse_args(argv)
    if args.command == "synth":
        return _synth(args)
    if args.command == "build":
        return _build(args)
    if args.command == "link":
        return _link(args)
    if args.command == "evaluate-identity":
        from assets.identity.evaluate import cli_evaluate

        return cli_evaluate(args.truth, args.home)
    if args.command == "train-identity":
        return _train(args)
    return 2


def _link(args) -> int:
    from assets.identity.engine import link_file
    from assets.identity.model import MODEL_PATH

    try:
        result = link_file(args.input, args.output, args.model or MODEL_PATH)
    except (ValueError, FileNotFoundError) as error:
        print(f"earlyhelp link: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # DuckDB's IOException for an unreadable file
        print(f"earlyhelp link: cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    print(f"{result['records']:,} records -> {result['persons']:,} persons "
          f"({result['review_pairs']:,} pairs left for review); written to {args.output}")
    return 0


def _train(args) -> int:
    import duckdb

    from assets.identity.model import MODEL_PATH, train_model

    database = args.home / "warehouse" / "build.duckdb"
    if not database.exists():
        print(f"earlyhelp train-identity: no build database at {database}", file=sys.stderr)
        return 2
    # Splink writes its working tables: train in memory on a copy of the records
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{database}' AS build (READ_ONLY)")
        con.execute("CREATE TABLE records AS SELECT * FROM build.identity.standardised_record")
        con.execute("DETACH build")
        systems = [s for (s,) in con.sql("SELECT DISTINCT system FROM records ORDER BY 1").fetchall()]
        for system in systems:
            con.execute(f"CREATE VIEW link_input_{system} AS SELECT * FROM records WHERE system = '{system}'")
        out = args.out or MODEL_PATH
        train_model(con, {s: f"link_input_{s}" for s in systems}, out)
    print(f"model written to {out}")
    return 0


def _build(args) -> int:
    from pipelines.build import build, print_summary

    try:
        result = build(args.landing, args.home, args.truth)
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
        config = CityConfig(children=args.children, seed=args.seed, start=args.start, end=args.end, go_live=args.go_live,
                            defects=args.defects)
    except ValueError as error:
        print(f"earlyhelp synth: {error}", file=sys.stderr)
        return 2
    summary = generate_city(config, args.out)
    print(f"Synthetic city: {config.children:,} children, seed {config.seed}, "
          f"{config.start} to {config.end}, drops from {config.go_live}, defects {args.defects}")
    print(f"{'system':<12} {'drops':>6} {'rows':>12}")
    for system in sorted(summary.drops):
        print(f"{system:<12} {summary.drops[system]:>6} {summary.rows[system]:>12,}")
    print(f"truth: {summary.persons:,} persons, {summary.records:,} source records")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in summary.seconds.items()) + f" (total {sum(summary.seconds.values()):.1f})")
    print(f"landing: {args.out / 'landing'}\ntruth:   {args.out / 'truth'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
