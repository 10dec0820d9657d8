"""Link standardised person records into clusters of one real person.

Order of evidence, strongest first (see constrained_clusters):
1. reviewer decisions (match / not a match), imported from the review CSV;
2. shared validated identifiers (deterministic_edges.sql), unless birth date or sex
   contradicts;
3. Splink match probabilities at or above the match threshold, unless the twin guard
   holds the pair back.
Every candidate edge is kept in identity.link with its status, so every person can be
explained edge by edge, and every refused or grey-zone pair can be reviewed.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from .cluster import constrained_clusters
from .model import MODEL_PATH, PRIOR_RULES, PRIOR_RULES_RECALL, linker_for, load_model

SQL = Path(__file__).parent / "sql"
MACROS = Path(__file__).parents[2] / "sources" / "sql" / "macros.sql"
NICKNAMES = Path(__file__).parent / "nicknames.csv"

MATCH_THRESHOLD = 0.99  # automatic link at or above; precision before recall
GREY_FLOOR = 0.5  # between this and the threshold a pair goes to clerical review


@dataclass
class LinkSummary:
    records: int
    clusters: int
    deterministic_edges: int
    scored_pairs: int
    mode: str  # 'full' or 'incremental' scoring
    grey_zone_pairs: int
    refused_edges: int
    seconds: dict


def run_sql_file(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute((SQL / name).read_text())


def standardise(con: duckdb.DuckDBPyConnection) -> None:
    """identity.source_person -> identity.standardised_record (the last run's is kept as
    identity.standardised_record_previous, to find what changed)."""
    con.execute(MACROS.read_text())
    if con.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
               "AND table_name = 'standardised_record'").fetchall()[0][0]:
        con.execute("CREATE OR REPLACE TABLE identity.standardised_record_previous AS "
                    "SELECT * FROM identity.standardised_record")
    con.execute(f"CREATE OR REPLACE TABLE identity.nickname AS "
                f"SELECT lower(formal) AS formal, lower(nickname) AS nickname FROM read_csv('{NICKNAMES}')")
    run_sql_file(con, "standardise.sql")


def _level_labels(comparison: dict) -> str:
    """SQL CASE turning a comparison's gamma value into the label a reviewer reads."""
    levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
    name = comparison["output_column_name"]
    # a term-frequency adjustment (a rare surname agreeing) is part of the evidence shown
    tf = f" + coalesce(mw_tf_adj_{name}, 0)" if any(lv.get("tf_adjustment_column") for lv in levels) else ""
    whens = " ".join(
        f"WHEN {len(levels) - 1 - i} THEN '{lv['label_for_charts']}'" for i, lv in enumerate(levels))
    return (f"CASE gamma_{name} WHEN -1 THEN NULL {whens} END || "
            f"CASE WHEN gamma_{name} = -1 THEN '' ELSE ' (' || printf('%+.1f', mw_{name}{tf}) || ')' END")


INCREMENTAL_SHARE = 0.25  # above this share of changed records, re-score everything
MIN_RECORDS_FOR_TERM_FREQUENCIES = 1000


def changed_records(con: duckdb.DuckDBPyConnection) -> int | None:
    """Mark records new or changed since the last run (temp table changed_record).
    None when there is no earlier run to build on."""
    exists = con.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                     "AND table_name IN ('standardised_record_previous', 'scored_pair')").fetchall()[0][0]
    if exists < 2:
        return None
    previous_columns = con.sql("SELECT * FROM identity.standardised_record_previous LIMIT 0").columns
    if "record_hash" not in previous_columns:  # written by an older version: score everything
        return None
    con.execute("""
        CREATE OR REPLACE TEMP TABLE changed_record AS
        SELECT record_key FROM identity.standardised_record
        EXCEPT
        SELECT record_key FROM identity.standardised_record_previous p
        WHERE EXISTS (SELECT 1 FROM identity.standardised_record s
                      WHERE s.record_key = p.record_key AND s.record_hash = p.record_hash)
    """)
    return con.sql("SELECT count(*) FROM changed_record").fetchall()[0][0]


def score_pairs(con: duckdb.DuckDBPyConnection, model: dict | Path = MODEL_PATH,
                incremental: bool = True) -> tuple[int, str]:
    """Splink scores of blocked pairs above the grey floor -> identity.scored_pair.

    Incrementally, only pairs touching a new or changed record are scored (each blocking
    rule gains "and one side changed", the equivalent of predict_between(changed, all)
    plus predict_within(changed)); earlier scores of untouched pairs are kept, because a
    pair's score depends on its two records and the saved model (term frequencies and the
    prior drift a little as records arrive: above INCREMENTAL_SHARE changed, re-score all)."""
    model = load_model(model) if not isinstance(model, dict) else dict(model)
    changed = changed_records(con) if incremental else None
    total = con.sql("SELECT count(*) FROM identity.standardised_record").fetchall()[0][0]
    mode = "incremental" if changed is not None and changed <= INCREMENTAL_SHARE * total else "full"
    flag = "record_key IN (SELECT record_key FROM changed_record)" if mode == "incremental" else "true"
    systems = [s for (s,) in con.sql("SELECT DISTINCT system FROM identity.standardised_record ORDER BY 1").fetchall()]
    for system in systems:
        con.execute(f"CREATE OR REPLACE TEMP VIEW link_input_{system} AS "
                    f"SELECT *, {flag} AS is_changed FROM identity.standardised_record WHERE system = '{system}'")
    if mode == "incremental":
        model["blocking_rules_to_generate_predictions"] = [
            f"({rule['blocking_rule'] if isinstance(rule, dict) else rule}) AND (l.is_changed OR r.is_changed)"
            for rule in model["blocking_rules_to_generate_predictions"]]
    if total < MIN_RECORDS_FOR_TERM_FREQUENCIES:
        # in a small table every name is "common": its own frequencies would outweigh the evidence
        model["comparisons"] = [
            dict(c, comparison_levels=[{k: v for k, v in lv.items() if not k.startswith("tf_")}
                                       for lv in c["comparison_levels"]])
            for c in model["comparisons"]]
    linker = linker_for(con, {s: f"link_input_{s}" for s in systems}, model)
    # The prior depends on how many records this run holds, not on the training city.
    # With no pair sharing an identifier there is nothing to estimate it from: keep the
    # trained prior.
    if con.sql(f"SELECT count(*) FROM identity.deterministic_edge WHERE link_rule <> 'Mosaic person id agrees'").fetchall()[0][0]:
        linker.training.estimate_probability_two_random_records_match(PRIOR_RULES, recall=PRIOR_RULES_RECALL)
    predictions = linker.inference.predict(threshold_match_probability=GREY_FLOOR, warning_mode="never")
    explanation = " || '; ' || ".join(
        f"coalesce({_level_labels(c)}, '')" for c in model["comparisons"])
    new_scores = f"""
        SELECT least(record_key_l, record_key_r) AS record_l,
               greatest(record_key_l, record_key_r) AS record_r,
               match_probability, match_weight, match_key,
               rtrim(regexp_replace({explanation}, '(; )+', '; ', 'g'), '; ') AS explanation
        FROM {predictions.physical_name}"""
    if mode == "incremental":
        con.execute(f"""
            CREATE OR REPLACE TABLE identity.scored_pair AS
            SELECT * FROM identity.scored_pair k
            WHERE k.record_l NOT IN (SELECT record_key FROM changed_record)
              AND k.record_r NOT IN (SELECT record_key FROM changed_record)
              AND k.record_l IN (SELECT record_key FROM identity.standardised_record)
              AND k.record_r IN (SELECT record_key FROM identity.standardised_record)
            UNION ALL {new_scores}""")
    else:
        con.execute(f"CREATE OR REPLACE TABLE identity.scored_pair AS {new_scores}")
    predictions.drop_table_from_database_and_remove_from_cache()
    return con.sql("SELECT count(*) FROM identity.scored_pair").fetchall()[0][0], mode


def link_records(con: duckdb.DuckDBPyConnection, model: dict | Path = MODEL_PATH,
                 threshold: float = MATCH_THRESHOLD, incremental: bool = True) -> LinkSummary:
    """identity.source_person -> identity.standardised_record, identity.link,
    identity.cluster (record_key, cluster_id). Reviewer decisions are read from
    identity.review_decision when that table exists."""
    seconds = {}
    t = time.perf_counter()
    standardise(con)
    seconds["standardise"] = time.perf_counter() - t

    t = time.perf_counter()
    run_sql_file(con, "deterministic_edges.sql")
    run_sql_file(con, "twin_guard.sql")
    seconds["deterministic"] = time.perf_counter() - t

    t = time.perf_counter()
    scored, mode = score_pairs(con, model, incremental)
    seconds["splink"] = time.perf_counter() - t

    t = time.perf_counter()
    con.execute("CREATE TABLE IF NOT EXISTS identity.review_decision ("
                "record_l VARCHAR, record_r VARCHAR, decision VARCHAR, reviewer VARCHAR, "
                "decided_at TIMESTAMPTZ, imported_run VARCHAR)")
    con.execute(f"SET VARIABLE match_threshold = {threshold}")
    run_sql_file(con, "candidate_edges.sql")
    records = con.sql("SELECT record_key, nhs_number, upn, former_upn FROM identity.standardised_record "
                      "ORDER BY record_key").fetchall()
    index = {key: i for i, (key, *_) in enumerate(records)}
    nhs = {i: r[1] for i, r in enumerate(records) if r[1]}
    upn = {i: {u for u in r[2:] if u} for i, r in enumerate(records) if r[2] or r[3]}
    edges = con.sql("SELECT record_l, record_r FROM identity.link WHERE status = 'candidate' "
                    "ORDER BY priority, match_probability DESC, record_l, record_r").fetchall()
    cannot = con.sql("SELECT record_l, record_r FROM identity.current_review_decision "
                     "WHERE decision = 'not a match'").fetchall()
    outcome = constrained_clusters(
        len(records), nhs, upn,
        [index[l] for l, _ in edges], [index[r] for _, r in edges],
        [(index[l], index[r]) for l, r in cannot if l in index and r in index])
    keys = [r[0] for r in records]
    decided = outcome.accepted + [p for p, _ in outcome.refused]
    edge_outcome = pa.table({
        "record_l": [edges[p][0] for p in decided],
        "record_r": [edges[p][1] for p in decided],
        "outcome": ["accepted"] * len(outcome.accepted) + ["refused"] * len(outcome.refused),
        "reason": [None] * len(outcome.accepted) + [reason for _, reason in outcome.refused],
    }, schema=pa.schema([("record_l", pa.string()), ("record_r", pa.string()),
                         ("outcome", pa.string()), ("reason", pa.string())]))
    clusters = pa.table({"record_key": keys, "cluster_id": [keys[c] for c in outcome.cluster_of]})
    con.register("edge_outcome", edge_outcome)
    con.register("clusters_arrow", clusters)
    con.execute("""
        CREATE OR REPLACE TABLE identity.link AS
        SELECT k.* REPLACE (
                   CASE WHEN k.status <> 'candidate' THEN k.status
                        ELSE coalesce(o.outcome, 'redundant') END AS status,
                   coalesce(o.reason, k.reason) AS reason)
        FROM identity.link k
        LEFT JOIN edge_outcome o ON k.status = 'candidate' AND k.record_l = o.record_l AND k.record_r = o.record_r
    """)
    con.execute("CREATE OR REPLACE TABLE identity.cluster AS SELECT * FROM clusters_arrow")
    con.unregister("edge_outcome")
    con.unregister("clusters_arrow")
    seconds["cluster"] = time.perf_counter() - t

    counts = con.sql("""
        SELECT (SELECT count(DISTINCT cluster_id) FROM identity.cluster),
               (SELECT count(*) FROM identity.deterministic_edge WHERE accepted),
               (SELECT count(*) FROM identity.link WHERE status = 'grey zone'),
               (SELECT count(*) FROM identity.link WHERE status = 'refused')
    """).fetchall()[0]
    return LinkSummary(records=len(records), clusters=counts[0], deterministic_edges=counts[1],
                       scored_pairs=scored, mode=mode, grey_zone_pairs=counts[2], refused_edges=counts[3],
                       seconds=seconds)
