"""Benchmark identity on a city with another error profile: fitted model, shipped model, plain Splink.

    .venv/bin/python benchmarks/linkage_defects.py                      # 20,000 children, --defects high
    .venv/bin/python benchmarks/linkage_defects.py --city DIR           # a city already generated
    .venv/bin/python benchmarks/linkage_defects.py --children 2000 --defects default --json out.json

What it measures. The shipped person model (assets/identity/model/) was fitted to this
project's default city; a council's records have their own error profile. On a city made
with another defect profile (`earlyhelp synth --defects high`: more typos, nicknames,
swapped names, missing identifiers and stale addresses), every drop is staged once, and
the same person records are linked three ways, each scored against the city's truth
(pairwise precision, recall and F1 over persons, twin merges) with its wall seconds:

- earlyhelp (fitted): `run_identity` on a HOME with no model yet, as a deployment's first
  build does: the model is fitted to these records (assets/identity/fitting.py), then used.
- earlyhelp (shipped model): `run_identity(model=<the shipped model>)`, used as it is.
- plain Splink: Splink 5 on DuckDB over the same source records (identity.source_person:
  each record as its system delivered it), configured by hand as a user following
  Splink's tutorials would (PEER_SETTINGS, with the reason for each choice), one
  configuration fixed before any score was seen, clustered at 0.99 like the engine.

The truth is used only for scoring. The load average and date are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assets.home import Home  # noqa: E402

# The plain Splink run: a user who has read Splink's tutorials and the data's columns.
PEER_SETTINGS = {
    # the light cleaning the tutorials ask for before linking: trimmed lower-case names,
    # dates as dates, postcodes in one case and spacing, sex as M or F, identifiers as
    # typed with spaces removed (the user does not know the NHS number's check digit)
    "cleaning": {
        "forename": "lower(trim(forename))",
        "surname": "lower(trim(surname))",
        "dob": "CASE WHEN dob_estimated THEN NULL ELSE dob END",
        "sex": "CASE upper(left(trim(sex), 1)) WHEN 'M' THEN 'M' WHEN '1' THEN 'M' WHEN 'F' THEN 'F' "
               "WHEN '2' THEN 'F' END",
        "postcode": "nullif(upper(regexp_replace(trim(postcode), '\\s+', ' ', 'g')), '')",
        "address": "lower(trim(address))",
        "nhs_number": "nullif(regexp_replace(nhs_number, '\\s', '', 'g'), '')",
        "upn": "nullif(upper(trim(upn)), '')",
    },
    # Splink's out-of-the-box comparisons for people: names with term frequencies,
    # birth date, Splink's own UK postcode comparison, sex, and the two identifiers exact
    "comparisons": [
        ("NameComparison", "forename", {}, True),
        ("NameComparison", "surname", {}, True),
        ("DateOfBirthComparison", "dob", {"input_is_string": False}, False),
        ("PostcodeComparison", "postcode", {}, False),
        ("ExactMatch", "sex", {}, False),
        ("ExactMatch", "nhs_number", {}, False),
        ("ExactMatch", "upn", {}, False),
    ],
    # candidate pairs: names, birth date, postcode with a first initial, and each identifier
    "blocking_rules": [("forename", "surname"), ("dob",), ("postcode", "substr(forename, 1, 1)"),
                       ("nhs_number",), ("upn",)],
    # the prior from the identifiers, with the tutorials' guess of their recall
    "prior_rules": [("nhs_number",), ("upn",)],
    "prior_recall": 0.8,
    "u_max_pairs": 1e7,
    "u_seed": 1,
    # m by EM on birth date, then on names, each leaving the other comparisons free
    "em_blocking_rules": [("dob",), ("forename", "surname")],
    "predict_threshold": 0.2,
    "cluster_threshold": 0.99,
}


def stage(city: Path, database: Path) -> float:
    import duckdb

    from sources.ingest import ingest

    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        ingest(con, city / "landing", database.parent / "staged")
    return time.perf_counter() - started


def engine(database: Path, truth: Path, model: Path | None, home: Path) -> dict:
    """run_identity on its own copy of the staged database; with no model, on a HOME with
    none, so that it fits one. Scored against the truth."""
    import duckdb

    from assets.identity.engine import run_identity
    from assets.identity.evaluate import evaluate_identity

    copy = Home(home).build_db
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("SET TimeZone = 'UTC'")
        started = time.perf_counter()
        result = run_identity(con, "benchmark", Home(home).review_dir, model=model, durable_dir=Home(home).identity_dir)
        seconds = time.perf_counter() - started
        scores = evaluate_identity(con, truth)
    return {"seconds": seconds, **{k: scores["pairwise"][k] for k in ("precision", "recall", "f1")},
            "twin_merges": scores["twin_merges"], "persons": result["persons"], "model": result["model"],
            "fit_seconds": result["seconds"].get("fit_model")}


def peer(database: Path, truth: Path) -> dict:
    """The plain Splink run on identity.source_person of the fitted run's database."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from assets.identity.evaluate import evaluate_identity

    s = PEER_SETTINGS
    rule = lambda r: r if isinstance(r, str) else block_on(*r)  # noqa: E731
    con = duckdb.connect()
    con.execute(f"ATTACH '{database}' AS build (READ_ONLY)")
    cleaned = ", ".join(f"{sql} AS {name}" for name, sql in s["cleaning"].items())
    con.execute(f"CREATE TABLE records AS SELECT system || '/' || table_name || '/' || record_id AS unique_id, "
                f"system, table_name, record_id, {cleaned} FROM build.identity.source_person")
    con.execute("DETACH build")
    started = time.perf_counter()
    db_api = DuckDBAPI(connection=con)
    systems = [x for (x,) in con.sql("SELECT DISTINCT system FROM records ORDER BY 1").fetchall()]
    frames = [db_api.register(con.sql(f"SELECT * EXCLUDE (system, table_name, record_id) FROM records "
                                      f"WHERE system = '{x}'"), dataset_display_name=x) for x in systems]
    comparisons = []
    for kind, column, options, tf in s["comparisons"]:
        comparison = getattr(cl, kind)(column, **options)
        comparisons.append(comparison.configure(term_frequency_adjustments=True) if tf else comparison)
    settings = SettingsCreator(link_type="link_and_dedupe", blocking_rules_to_generate_predictions=[
        rule(r) for r in s["blocking_rules"]], comparisons=comparisons)
    linker = Linker(frames, settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match([rule(r) for r in s["prior_rules"]],
                                                                    recall=s["prior_recall"])
    linker.training.estimate_u_using_random_sampling(max_pairs=s["u_max_pairs"], seed=s["u_seed"])
    for r in s["em_blocking_rules"]:
        linker.training.estimate_parameters_using_expectation_maximisation(rule(r))
    predictions = linker.inference.predict(threshold_match_probability=s["predict_threshold"])
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=s["cluster_threshold"])
    seconds = time.perf_counter() - started
    con.execute("CREATE SCHEMA identity")
    con.execute(f"""CREATE TABLE identity.person_record AS
                    SELECT r.system, r.table_name, r.record_id, c.cluster_id AS person_key
                    FROM records r JOIN {clusters.physical_name} c USING (unique_id)""")
    scores = evaluate_identity(con, truth)
    return {"seconds": seconds, **{k: scores["pairwise"][k] for k in ("precision", "recall", "f1")},
            "twin_merges": scores["twin_merges"], "persons": scores["clusters"]["predicted_persons"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", type=Path, help="a generated city (landing/ and truth/); default: make one")
    parser.add_argument("--children", type=int, default=20000)
    parser.add_argument("--defects", default="high")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linkage_defects_") as tmp:
        tmp = Path(tmp)
        city = args.city
        if city is None:
            from sources.synthetic.city import generate_city
            from sources.synthetic.config import CityConfig

            city = tmp / "city"
            generate_city(CityConfig(children=args.children, seed=args.seed, defects=args.defects), city)
        database = tmp / "staged" / "build.duckdb"
        database.parent.mkdir()
        figures = {"city": str(args.city or f"{args.children} children, seed {args.seed}, --defects {args.defects}"),
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "load_before": os.getloadavg(), "staging_seconds": stage(city, database)}
        from assets.identity.model import MODEL_PATH

        runs = {}
        for name, model in (("earlyhelp (fitted)", None), ("earlyhelp (shipped model)", MODEL_PATH)):
            home = tmp / name.split()[1].strip("()")
            home.mkdir()
            runs[name] = engine(database, city / "truth", model, home)
        runs["plain Splink"] = peer(Home(tmp / "fitted").build_db, city / "truth")
        figures["runs"] = runs
        figures["load_after"] = os.getloadavg()
    print(f"identity on {figures['city']}   {figures['date']}   load {' '.join(f'{x:.2f}' for x in figures['load_before'])}"
          f" -> {' '.join(f'{x:.2f}' for x in figures['load_after'])}   staging {figures['staging_seconds']:.1f} s")
    print(f"{'run':<28}{'precision':>10}{'recall':>9}{'F1':>9}{'twin merges':>13}{'persons':>9}{'seconds':>9}")
    for name, r in runs.items():
        print(f"{name:<28}{r['precision']:>10.5f}{r['recall']:>9.5f}{r['f1']:>9.5f}{r['twin_merges']:>13}"
              f"{r['persons']:>9,}{r['seconds']:>9.1f}")
    fitted, shipped, plain = (runs[k]["recall"] for k in runs)
    print(f"recall: fitted {100 * (fitted - shipped):+.2f} points against the shipped model, "
          f"{100 * (fitted - plain):+.2f} against plain Splink")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
