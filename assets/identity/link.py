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

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sources.sql_runner import run_sql
import pyarrow as pa

from .cluster import constrained_clusters
from .fitting import record_views
from .model import MODEL_PATH, linker_for, prior_for

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


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_schema = ? AND table_name = ?", [schema, table]).fetchall()}


SCRATCH = "identity_scratch"


def scratch(con: duckdb.DuckDBPyConnection) -> str:
    """An in-memory catalog for an incremental run's intermediate tables: written to the
    database they would go through its log and bring on checkpoints for nothing."""
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {SCRATCH}")
    return SCRATCH


TOUCHING = ("(record_l IN (SELECT record_key FROM changed_record) "
            "OR record_r IN (SELECT record_key FROM changed_record))")


def standardise(con: duckdb.DuckDBPyConnection, incremental: bool = True) -> int | None:
    """identity.source_person -> identity.standardised_record.

    With an earlier run's table (and incremental), only source rows that are new or
    changed since then are standardised; they, and records no longer delivered, are
    listed in the temp table changed_record and their number returned. Else None."""
    con.execute(MACROS.read_text())
    con.execute(f"CREATE OR REPLACE TABLE identity.nickname AS "
                f"SELECT lower(formal) AS formal, lower(nickname) AS nickname FROM read_csv('{NICKNAMES}')")
    if not (incremental and "source_hash" in _columns(con, "identity", "standardised_record")):
        run_sql(con, SQL / "standardise.sql", source="identity.source_person", target="identity.standardised_record")
        return None
    con.execute("""
        CREATE OR REPLACE TEMP TABLE source_delta AS
        SELECT sp.* FROM identity.source_person AS sp
        ANTI JOIN identity.standardised_record s
          ON s.record_key = sp.system || '/' || sp.table_name || '/' || sp.record_id AND s.source_hash = hash(sp)
    """)
    run_sql(con, SQL / "standardise.sql", source="source_delta", target=f"{scratch(con)}.standardised_delta")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE changed_record AS
        SELECT record_key FROM {SCRATCH}.standardised_delta
        UNION
        SELECT s.record_key FROM identity.standardised_record s
        ANTI JOIN identity.source_person sp ON s.record_key = sp.system || '/' || sp.table_name || '/' || sp.record_id
    """)
    # identifiers and birth dates a changed record held or holds: what shared-identifier
    # edges and twin births must be rebuilt for
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE changed_value AS
        SELECT * FROM identity.standardised_record WHERE record_key IN (SELECT record_key FROM changed_record)
        UNION ALL SELECT * FROM {SCRATCH}.standardised_delta
    """)
    con.execute("DELETE FROM identity.standardised_record WHERE record_key IN (SELECT record_key FROM changed_record)")
    con.execute(f"INSERT INTO identity.standardised_record SELECT * FROM {SCRATCH}.standardised_delta")
    return con.sql("SELECT count(*) FROM changed_record").fetchall()[0][0]


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


def _blocking_rules(model: dict) -> list[str]:
    return [r["blocking_rule"] if isinstance(r, dict) else r for r in model["blocking_rules_to_generate_predictions"]]


def _tf_columns(model: dict) -> list[str]:
    return sorted({lv["tf_adjustment_column"] for c in model["comparisons"] for lv in c["comparison_levels"]
                   if lv.get("tf_adjustment_column")})


def _incremental_input(con: duckdb.DuckDBPyConnection, rules: list[str]) -> int:
    """link_subset: the changed records and every record a blocking rule pairs them with."""
    con.execute("""CREATE OR REPLACE TEMP TABLE changed_std AS SELECT * FROM identity.standardised_record
                   WHERE record_key IN (SELECT record_key FROM changed_record)""")
    partners = " UNION ".join(
        f"SELECT r.record_key FROM changed_std l JOIN identity.standardised_record r ON {rule} "
        f"UNION SELECT l.record_key FROM identity.standardised_record l JOIN changed_std r ON {rule}"
        for rule in rules)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE link_subset AS
        SELECT s.*, s.record_key IN (SELECT record_key FROM changed_record) AS is_changed
        FROM identity.standardised_record s
        WHERE s.record_key IN (SELECT record_key FROM changed_std UNION {partners})
    """)
    return con.sql("SELECT count(*) FROM link_subset").fetchall()[0][0]


def score_pairs(con: duckdb.DuckDBPyConnection, model: dict | Path = MODEL_PATH,
                changed: int | None = None) -> tuple[int, str]:
    """Splink scores of blocked pairs above the grey floor -> identity.scored_pair.

    changed (the number of records in the temp table changed_record) makes the run
    incremental when it is a small share: only pairs touching a changed record are
    scored (each blocking rule gains "and one side changed", the equivalent of
    predict_between(changed, all) plus predict_within(changed)), Splink reads only those
    records and the records a blocking rule pairs them with, term frequencies come from
    every record, and the prior is the last full run's. Earlier scores of untouched pairs
    are kept: a pair's score depends on its two records and the saved model, while term
    frequencies and the prior drift only slowly (above INCREMENTAL_SHARE, re-score all)."""
    model = json.loads(Path(model).read_text()) if not isinstance(model, dict) else dict(model)
    fingerprint = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()
    total = con.sql("SELECT count(*) FROM identity.standardised_record").fetchall()[0][0]
    mode = _scoring_mode(con, changed, total, fingerprint)
    if mode == "incremental":
        if _incremental_input(con, _blocking_rules(model)) == 0:  # nothing new to score
            return con.sql("SELECT count(*) FROM identity.scored_pair").fetchall()[0][0], mode
        model = _incremental_model(con, model)
    if total < MIN_RECORDS_FOR_TERM_FREQUENCIES:
        # in a small table every name is "common": its own frequencies would outweigh the evidence
        model["comparisons"] = [
            dict(c, comparison_levels=[{k: v for k, v in lv.items() if not k.startswith("tf_")}
                                       for lv in c["comparison_levels"]])
            for c in model["comparisons"]]
    scores = _predict(con, model, mode, total, fingerprint)
    _store_scores(con, model, scores, mode)
    return con.sql("SELECT count(*) FROM identity.scored_pair").fetchall()[0][0], mode


def _scoring_mode(con: duckdb.DuckDBPyConnection, changed: int | None, total: int, fingerprint: str) -> str:
    """incremental when few records changed since a full run with this same model."""
    same_model = "model_sha256" in _columns(con, "identity", "link_state") and con.sql(
        "SELECT model_sha256 FROM identity.link_state").fetchall() == [(fingerprint,)]
    return ("incremental" if changed is not None and changed <= INCREMENTAL_SHARE * total and same_model
            and _columns(con, "identity", "scored_pair") else "full")


def _incremental_model(con: duckdb.DuckDBPyConnection, model: dict) -> dict:
    """The model scoring only pairs with a changed side, under the last full run's prior."""
    model = dict(model)
    model["blocking_rules_to_generate_predictions"] = [f"({rule}) AND (l.is_changed OR r.is_changed)"
                                                       for rule in _blocking_rules(model)]
    model["probability_two_random_records_match"] = con.sql(
        "SELECT prior FROM identity.link_state").fetchall()[0][0]
    return model


def _predict(con: duckdb.DuckDBPyConnection, model: dict, mode: str, total: int, fingerprint: str) -> str:
    """Splink's predictions above the grey floor; returns the name of the table holding them.
    A full run stores its prior and the model's fingerprint in identity.link_state."""
    source = "link_subset" if mode == "incremental" else "identity.standardised_record"
    inputs = record_views(con, source, prefix="link_input")
    database = con.sql("SELECT current_database()").fetchall()[0][0]
    if mode == "incremental":
        for column in _tf_columns(model):  # frequencies of the whole population, not the subset
            con.execute(f"""CREATE OR REPLACE TEMP TABLE tf_lookup_{column} AS
                SELECT "{column}", count(*) / sum(count(*)) OVER () AS "tf_{column}"
                FROM identity.standardised_record WHERE "{column}" IS NOT NULL GROUP BY 1""")
        con.execute(f"USE {SCRATCH}")  # Splink's intermediate tables, small here, need not be logged
    try:
        # an incremental run continues a full run's state with the same model on the same
        # columns, which that run checked
        if mode == "full":
            # the prior depends on how many records this run holds (prior_for)
            model["probability_two_random_records_match"] = prior_for(model, total)
        linker = linker_for(con, inputs, model, validate=mode == "full")
        if mode == "incremental":
            for column in _tf_columns(model):
                linker.table_management.register_term_frequency_lookup(
                    linker._db_api.register(f"tf_lookup_{column}"), column)
        else:
            prior = linker._settings_obj._probability_two_random_records_match
            con.execute("CREATE OR REPLACE TABLE identity.link_state AS SELECT ?::DOUBLE AS prior, ? AS model_sha256",
                        [prior, fingerprint])
        predictions = linker.inference.predict(threshold_match_probability=GREY_FLOOR, warning_mode="never")
        return f'"{con.sql("SELECT current_database()").fetchall()[0][0]}".main.{predictions.physical_name}'
    finally:
        con.execute(f'USE "{database}"')


def _store_scores(con: duckdb.DuckDBPyConnection, model: dict, scores: str, mode: str) -> None:
    """Scores, each pair ordered and explained by its comparison levels, into identity.scored_pair."""
    explanation = " || '; ' || ".join(
        f"coalesce({_level_labels(c)}, '')" for c in model["comparisons"])
    new_scores = f"""
        SELECT least(record_key_l, record_key_r) AS record_l,
               greatest(record_key_l, record_key_r) AS record_r,
               match_probability, match_weight, match_key,
               trim(regexp_replace({explanation}, '(; )+', '; ', 'g'), '; ') AS explanation
        FROM {scores}"""
    if mode == "incremental":  # in place: rewriting the whole table costs more than the change
        con.execute(f"DELETE FROM identity.scored_pair WHERE {TOUCHING}")
        con.execute(f"INSERT INTO identity.scored_pair {new_scores}")
    else:
        con.execute(f"CREATE OR REPLACE TABLE identity.scored_pair AS {new_scores}")
    con.execute(f"DROP TABLE {scores}")


def _affected_records(con: duckdb.DuckDBPyConnection) -> None:
    """affected_record: every record in a connected component (of the graph of candidate
    links, old or new) that holds a changed record. Components untouched by the change
    cluster exactly as before, so only these are clustered again."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE candidate_arc AS
        SELECT record_l AS a, record_r AS b FROM identity.link WHERE proposed = 'candidate'
        UNION ALL SELECT record_r, record_l FROM identity.link WHERE proposed = 'candidate'
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE affected_record AS
        SELECT record_key FROM changed_record
        UNION SELECT c.record_key FROM identity.cluster c
              WHERE c.cluster_id IN (SELECT cluster_id FROM identity.cluster
                                     WHERE record_key IN (SELECT record_key FROM changed_record))
    """)
    while True:
        added = con.execute("""
            INSERT INTO affected_record
            SELECT DISTINCT c.record_key
            FROM candidate_arc e
            JOIN affected_record r ON r.record_key = e.a
            JOIN identity.cluster reached ON reached.record_key = e.b
            JOIN identity.cluster c ON c.cluster_id = reached.cluster_id
            WHERE c.record_key NOT IN (SELECT record_key FROM affected_record)
        """).fetchall()[0][0]
        if not added:
            return


def _rebuild_deterministic_edges(con: duckdb.DuckDBPyConnection) -> None:
    """Shared-identifier edges and twin births of the identifiers and birth dates that
    changed records held or hold (changed_value); every other row is as the last run left it."""
    con.execute("CREATE OR REPLACE TEMP TABLE twin_birth_before AS SELECT * FROM identity.twin_birth")
    run_sql(con, SQL / "deterministic_edges.sql", changed="changed_value", target=f"{SCRATCH}.deterministic_delta")
    con.execute(f"""DELETE FROM identity.deterministic_edge e WHERE {TOUCHING} OR EXISTS (
                        SELECT 1 FROM deterministic_scope d WHERE d.link_rule = e.link_rule AND d.record_key = e.record_r)""")
    con.execute(f"INSERT INTO identity.deterministic_edge SELECT * FROM {SCRATCH}.deterministic_delta")
    dobs = "dob IN (SELECT dob FROM changed_value)"
    run_sql(con, SQL / "twin_guard.sql", dobs=dobs, target=f"{SCRATCH}.twin_birth_delta")
    con.execute(f"DELETE FROM identity.twin_birth WHERE {dobs}")
    con.execute(f"INSERT INTO identity.twin_birth SELECT * FROM {SCRATCH}.twin_birth_delta")


def _twin_changes(con: duckdb.DuckDBPyConnection) -> None:
    """Add to changed_record the records whose twin-guard situation changed: a birth date
    newly or no longer known to be twins', for their surname or postcode."""
    con.execute("""
        INSERT INTO changed_record
        WITH moved AS (
            (SELECT dob, key_kind, key_value FROM identity.twin_birth
             EXCEPT SELECT dob, key_kind, key_value FROM twin_birth_before)
            UNION
            (SELECT dob, key_kind, key_value FROM twin_birth_before
             EXCEPT SELECT dob, key_kind, key_value FROM identity.twin_birth))
        SELECT DISTINCT s.record_key FROM identity.standardised_record s JOIN moved m ON m.dob = s.dob
          AND ((m.key_kind = 'surname' AND m.key_value = s.surname) OR (m.key_kind = 'postcode' AND m.key_value = s.postcode))
        EXCEPT SELECT record_key FROM changed_record
    """)


def link_records(con: duckdb.DuckDBPyConnection, model: dict | Path | Callable = MODEL_PATH,
                 threshold: float = MATCH_THRESHOLD, incremental: bool = True) -> LinkSummary:
    """identity.source_person -> identity.standardised_record, identity.link,
    identity.cluster (record_key, cluster_id). Reviewer decisions are read from
    identity.review_decision when that table exists.

    Incrementally (an earlier run's tables exist and few records changed), only changed
    records are standardised and scored, only pairs touching them are re-examined, and
    only the components of the link graph holding them are clustered again; a run that
    imports reviewer decisions, or follows an older version's tables, does everything.
    model may be a function of the connection, called once the records are standardised
    (to fit a model to them)."""
    seconds = {}
    t = time.perf_counter()
    con.execute("CREATE TABLE IF NOT EXISTS identity.review_decision ("
                "record_l VARCHAR, record_r VARCHAR, decision VARCHAR, reviewer VARCHAR, "
                "decided_at TIMESTAMPTZ, imported_run VARCHAR)")
    resumable = (incremental and "proposed" in _columns(con, "identity", "link")
                 and _columns(con, "identity", "cluster") and _columns(con, "identity", "twin_birth")
                 and "threshold" in _columns(con, "identity", "link_state")
                 and con.sql("SELECT threshold FROM identity.link_state").fetchall() == [(threshold,)])
    changed = standardise(con, incremental=bool(resumable))
    seconds["standardise"] = time.perf_counter() - t
    if callable(model):
        t = time.perf_counter()
        model = model(con)
        seconds["fit_model"] = time.perf_counter() - t

    t = time.perf_counter()
    if changed is None:
        run_sql(con, SQL / "deterministic_edges.sql", changed="identity.standardised_record",
                      target="identity.deterministic_edge")
        run_sql(con, SQL / "twin_guard.sql", dobs="true", target="identity.twin_birth")
        run_sql(con, SQL / "twin_share.sql")
    else:
        _rebuild_deterministic_edges(con)
        if not _columns(con, "identity", "twin_share"):
            run_sql(con, SQL / "twin_share.sql")
    seconds["deterministic"] = time.perf_counter() - t

    t = time.perf_counter()
    scored, mode = score_pairs(con, model, changed)
    seconds["splink"] = time.perf_counter() - t

    t = time.perf_counter()
    scope = _candidate_links(con, threshold, mode)
    _cluster(con, scope)
    seconds["cluster"] = time.perf_counter() - t

    counts = con.sql("""
        SELECT (SELECT count(*) FROM identity.standardised_record),
               (SELECT count(DISTINCT cluster_id) FROM identity.cluster),
               (SELECT count(*) FROM identity.deterministic_edge WHERE accepted),
               (SELECT count(*) FROM identity.link WHERE status = 'grey zone'),
               (SELECT count(*) FROM identity.link WHERE status = 'refused')
    """).fetchall()[0]
    return LinkSummary(records=counts[0], clusters=counts[1], deterministic_edges=counts[2],
                       scored_pairs=scored, mode=mode, grey_zone_pairs=counts[3], refused_edges=counts[4],
                       seconds=seconds)


def _candidate_links(con: duckdb.DuckDBPyConnection, threshold: float, mode: str) -> str:
    """identity.link from the scored pairs and identifier edges (in full, or incrementally
    for the pairs touching a changed record); returns the SQL scope of records to cluster."""
    con.execute(f"SET VARIABLE match_threshold = {threshold}")
    # twins the records cannot show are still likely where shown twins are common: then
    # hold back unshown ones too (candidate_edges.sql), at the same odds as a link needs
    (share,) = con.sql("SELECT share FROM identity.twin_share").fetchall()[0]
    con.execute(f"SET VARIABLE unshown_twins_likely = {bool(share > 1 - threshold)}")
    con.execute("ALTER TABLE identity.link_state ADD COLUMN IF NOT EXISTS threshold DOUBLE")
    con.execute("UPDATE identity.link_state SET threshold = ?", [threshold])
    if mode == "incremental":
        _twin_changes(con)
        # pairs touching a changed record, and any evidence the last run did not hold
        touching = TOUCHING.replace("record_l", "p.record_l").replace("record_r", "p.record_r")
        pairs = (f"({touching} OR NOT EXISTS (SELECT 1 FROM identity.link o "
                 "WHERE o.record_l = p.record_l AND o.record_r = p.record_r))")
        run_sql(con, SQL / "candidate_edges.sql", target=f"{SCRATCH}.link_delta", pairs=pairs, scored_pairs=touching,
                      identifier_edges=f"(SELECT * FROM identity.deterministic_edge WHERE {TOUCHING} "
                                       f"UNION SELECT * FROM {SCRATCH}.deterministic_delta)")
        # in place: the link table is wide (explanations) and mostly unchanged
        con.execute(f"""
            DELETE FROM identity.link k
            WHERE {TOUCHING.replace("record_l", "k.record_l").replace("record_r", "k.record_r")}
               OR EXISTS (SELECT 1 FROM {SCRATCH}.link_delta d WHERE d.record_l = k.record_l AND d.record_r = k.record_r)""")
        con.execute(f"INSERT INTO identity.link SELECT * FROM {SCRATCH}.link_delta")
        _affected_records(con)
        scope = "record_key IN (SELECT record_key FROM affected_record)"
    else:
        run_sql(con, SQL / "candidate_edges.sql", target="identity.link", pairs="true", scored_pairs="true",
                      identifier_edges="identity.deterministic_edge")
        scope = "true"
    return scope


def _cluster(con: duckdb.DuckDBPyConnection, scope: str) -> None:
    """Cluster the records in ``scope`` under the identifier constraints and reviewers'
    'not a match' decisions; write each candidate's fate and identity.cluster."""
    records = con.sql(f"SELECT record_key, nhs_number, upn, former_upn FROM identity.standardised_record "
                      f"WHERE {scope} ORDER BY record_key").fetchall()
    index = {key: i for i, (key, *_) in enumerate(records)}
    nhs = {i: r[1] for i, r in enumerate(records) if r[1]}
    upn = {i: {u for u in r[2:] if u} for i, r in enumerate(records) if r[2] or r[3]}
    edge_scope = "true" if scope == "true" else "record_l IN (SELECT record_key FROM affected_record)"
    edges = con.sql(f"SELECT record_l, record_r FROM identity.link WHERE proposed = 'candidate' AND {edge_scope} "
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
    clusters = pa.table({"record_key": pa.array(keys, pa.string()),
                         "cluster_id": pa.array([keys[c] for c in outcome.cluster_of], pa.string())})
    con.register("edge_outcome", edge_outcome)
    con.register("clusters_arrow", clusters)
    # clustering decides the fate of every candidate in scope: accepted, refused, or
    # redundant (its records were already joined by stronger links)
    in_scope = "true" if scope == "true" else "record_l IN (SELECT record_key FROM affected_record)"
    con.execute(f"UPDATE identity.link SET status = 'redundant', reason = NULL "
                f"WHERE proposed = 'candidate' AND {in_scope}")
    con.execute("""
        UPDATE identity.link AS k SET status = o.outcome, reason = coalesce(o.reason, k.reason)
        FROM edge_outcome o WHERE k.record_l = o.record_l AND k.record_r = o.record_r
    """)
    if scope == "true":
        con.execute("CREATE OR REPLACE TABLE identity.cluster AS SELECT * FROM clusters_arrow")
    else:
        # affected_record holds every changed record, those no longer delivered too
        con.execute("DELETE FROM identity.cluster c USING affected_record a WHERE c.record_key = a.record_key")
        con.execute("INSERT INTO identity.cluster SELECT * FROM clusters_arrow")
    con.unregister("edge_outcome")
    con.unregister("clusters_arrow")
