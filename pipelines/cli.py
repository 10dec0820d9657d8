"""The ``earlyhelp`` command: one entry point for every user-facing operation."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from assets.home import Home
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
    build.add_argument("--wait", action="store_true",
                       help="if another build holds HOME, wait for it to finish (default: refuse, exit code 3)")

    link = commands.add_parser("link", help="link any person table (Parquet or CSV) into persons",
                               description="Input columns: record_id, source, forename, middle_names, surname, "
                                           "dob (YYYY-MM-DD), sex, postcode, address; optional nhs_number, upn, "
                                           "former_upn, uprn, csc_id, alt_forename, alt_surname, dob_estimated, role. "
                                           "Output: record_id, source, person_key, match_probability, link_rule, explanation. "
                                           "By default the person model is fitted to the input's own records first "
                                           "(u by random sampling, m by expectation maximisation, starting from the "
                                           "shipped model); --model uses a saved model as it is.")
    link.add_argument("--input", type=Path, required=True, help="the person table (.parquet or .csv)")
    link.add_argument("--output", type=Path, required=True, help="where to write record_id -> person_key (.parquet or .csv)")
    link.add_argument("--model", type=Path, default=None,
                      help="a saved model JSON to use as it is (default: fit one to the input)")
    link.add_argument("--model-out", type=Path, default=None, help="also save the model fitted to the input here")

    evaluate = commands.add_parser("evaluate-identity", help="score a build's persons against a synthetic city's truth (JSON)")
    evaluate.add_argument("--truth", type=Path, required=True, help="the city's truth/ folder")
    evaluate.add_argument("--home", type=Path, required=True, help="the build's HOME")

    train = commands.add_parser("train-identity", help="refit the Splink person model to a build's own records",
                                description="Fits the person model to the records of HOME's last build (read only; "
                                            "the build is not changed) and saves it as HOME's next model version "
                                            "under HOME/identity/model/, with its training report under "
                                            "HOME/reports/identity/. The next build links with it, in full.")
    train.add_argument("--home", type=Path, required=True, help="a HOME whose build has linked identity once")
    train.add_argument("--out", type=Path, default=None,
                       help="write the model here instead of into HOME (e.g. assets/identity/model/person_model_v2.json "
                            "to replace the shipped prior)")

    accept = commands.add_parser(
        "accept-deletions", help="let a held snapshot through the mass-deletion guard at the next build",
        description="A snapshot that would delete more of a table's current records than quality/thresholds.yaml "
                    "allows (mass_deletion) is held, not staged, and the build fails. If the deletions are real, "
                    "accept that delivery here (the acceptance is recorded in audit.deletion_acceptance with its "
                    "fingerprint, your user name and the time; a different delivery for the date is judged afresh), "
                    "then build again.")
    accept.add_argument("--home", type=Path, required=True, help="the build's HOME")
    accept.add_argument("--system", required=True, help="the system whose drop was held")
    accept.add_argument("--date", type=_date, required=True, help="the held drop's extract date")

    args = parser.parse_args(argv)
    if args.command == "accept-deletions":
        return _accept_deletions(args)
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

    if args.model and not args.model.is_file():
        print(f"earlyhelp link: no model file at {args.model}", file=sys.stderr)
        return 2
    try:
        result = link_file(args.input, args.output, args.model, model_out=args.model_out)
    except (ValueError, FileNotFoundError) as error:
        print(f"earlyhelp link: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # DuckDB's IOException for an unreadable file
        print(f"earlyhelp link: cannot read {args.input}: {error}", file=sys.stderr)
        return 2
    print(f"{result['records']:,} records -> {result['persons']:,} persons "
          f"({result['review_pairs']:,} pairs left for review); model: {result['model']}; written to {args.output}")
    return 0


def _train(args) -> int:
    import duckdb

    from assets.identity.fitting import fit_to_records, next_model_path, record_views
    from assets.identity.model import MODEL_PATH, TRAINING_KEY, save_model
    from assets.identity.training_report import write_training_report

    home = Home(args.home)
    database = home.build_db
    if not database.exists():
        print(f"earlyhelp train-identity: no build database at {database}", file=sys.stderr)
        return 2
    # Splink writes working tables: fit in memory on a copy of the records, never in the build
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{str(database).replace(chr(39), chr(39) * 2)}' AS build (READ_ONLY)")
        con.execute("CREATE SCHEMA identity")
        con.execute("CREATE TABLE identity.standardised_record AS SELECT * FROM build.identity.standardised_record")
        scored = bool(con.sql("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'build' "
                              "AND schema_name = 'identity' AND table_name = 'scored_pair'").fetchall()[0][0])
        if scored:
            con.execute("CREATE TABLE identity.scored_pair AS SELECT * FROM build.identity.scored_pair")
        con.execute("DETACH build")
        model = fit_to_records(con)
        out = save_model(model, args.out or next_model_path(home.model_dir))
        report = write_training_report(con, out, MODEL_PATH, record_views(con), home.identity_reports_dir,
                                       scored_pairs="identity.scored_pair" if scored else None)
    record = model[TRAINING_KEY]
    print(f"model fitted to {record['records']:,} records, written to {out}\ntraining report: {report}")
    if args.out is None:
        print("the next build links with it (a full link)")
    return 0


def _build(args) -> int:
    from pipelines.build import build, print_summary
    from quality.home_lock import HomeBusy

    def waiting(who: str) -> None:
        print(f"earlyhelp build: waiting for {who} to finish with {args.home}", file=sys.stderr, flush=True)

    try:
        result = build(args.landing, args.home, args.truth, wait=args.wait, on_wait=waiting)
    except FileNotFoundError as error:
        print(f"earlyhelp build: {error}", file=sys.stderr)
        return 2
    except HomeBusy as error:
        print(f"earlyhelp build: {error}; nothing was done (use --wait to queue behind it)", file=sys.stderr)
        return 3
    print_summary(result)
    if not result.ok:
        failed = ", ".join(s for s, ok in result.runs.items() if not ok)
        print(f"earlyhelp build: {failed} run(s) failed; see the Dagster UI or the audit tables", file=sys.stderr)
        return 1
    return 0


def _accept_deletions(args) -> int:
    import getpass

    import duckdb

    from quality.home_lock import HomeBusy, holding_home

    database = Home(args.home).build_db
    if not database.exists():
        print(f"earlyhelp accept-deletions: no build database at {database}", file=sys.stderr)
        return 2
    try:
        with holding_home(args.home, "earlyhelp accept-deletions"), duckdb.connect(str(database)) as con:
            held = con.execute("SELECT fingerprint, reason FROM audit.drop WHERE system = ? AND extract_date = ? "
                               "ORDER BY recorded_at DESC LIMIT 1", [args.system, args.date]).fetchone()
            if held is None or not held[0] or not con.execute(
                    "SELECT count(*) FROM audit.drop WHERE system = ? AND extract_date = ? AND fingerprint = ? "
                    "AND status = 'held'", [args.system, args.date, held[0]]).fetchone()[0]:
                print(f"earlyhelp accept-deletions: no held {args.system} drop for {args.date} "
                      "(see audit.drop for what happened to it)", file=sys.stderr)
                return 2
            con.execute("INSERT INTO audit.deletion_acceptance VALUES (?, ?, ?, ?, now())",
                        [args.system, args.date, held[0], getpass.getuser()])
    except HomeBusy as error:
        print(f"earlyhelp accept-deletions: {error}; try again when it has finished", file=sys.stderr)
        return 3
    print(f"accepted: the {args.system} drop of {args.date} (fingerprint {held[0][:12]}) is staged at the next build")
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
