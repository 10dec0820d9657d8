"""Evaluate identity reconciliation against the synthetic city's ground truth.

Pure functions over a DuckDB connection (no Dagster): ``evaluate_identity`` compares the
clusters in ``identity.person_record`` with ``truth/records.csv`` and ``truth/persons.csv``
(CONTRACT.md, "Ground truth"), ``store_evaluation`` appends the figures to
``audit.identity_evaluation``, and ``cli_evaluate`` backs ``earlyhelp evaluate-identity``.

Conventions (also in ``evaluate_identity``'s docstring):

- A *record* is (system, table, record_id), compared as strings; ``table_name`` in
  ``identity.person_record`` is matched to the truth's ``table``.
- The evaluated records are the truth's records. A truth record the pipeline never put in
  ``identity.person_record`` is a predicted singleton (it links to nothing). A predicted
  record with no truth row is excluded from every measure and only counted.
- Pairs are unordered pairs of distinct evaluated records. Precision with no predicted
  pairs is 1.0 (nothing was claimed, so nothing is wrong); recall with no true pairs is
  1.0; F1 is 0.0 when precision and recall are both 0.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from assets.home import Home
from quality.audit import ensure_audit
from sources.sql_runner import table_exists

PAIR_METRICS = ("precision", "recall", "f1", "true_pairs", "predicted_pairs", "true_positive_pairs")

# Every evaluated record with its predicted cluster and its true person. A missing record
# gets a cluster key of its own; the \x1f (unit separator) prefix cannot occur in a real
# person_key, so a missing record never joins a real cluster.
_LABELLED = """
truth AS (
    SELECT system, "table" AS table_name, record_id, person_key AS true_key
    FROM read_csv($records, all_varchar = true, header = true)
),
predicted AS (
    -- one row per source record is the engine's promise; min() keeps a broken promise
    -- from multiplying truth rows (duplicates are counted separately)
    SELECT system::VARCHAR AS system, table_name::VARCHAR AS table_name,
           record_id::VARCHAR AS record_id, min(person_key::VARCHAR) AS pred_key
    FROM identity.person_record
    GROUP BY ALL
),
labelled AS (
    SELECT t.system, t.table_name, t.record_id, t.true_key,
           coalesce(p.pred_key, chr(31) || 'missing' || chr(31) || t.system || chr(31)
                    || t.table_name || chr(31) || t.record_id) AS pred_key,
           p.pred_key IS NULL AS missing
    FROM truth t LEFT JOIN predicted p USING (system, table_name, record_id)
)
"""

# Pair counts per system pair without enumerating pairs. Records are counted per
# (group, system) for three groupings: predicted cluster (predicted pairs), true person
# (true pairs) and (cluster, person) cell (true positives: pairs that are together in
# both). Within a group, n records of one system make C(n,2) same-system pairs and
# n_a, n_b records of two systems make n_a * n_b cross-system pairs.
_PAIRS_SQL = "WITH" + _LABELLED + """,
grouped AS (
    SELECT 'predicted' AS kind, pred_key AS g1, '' AS g2, system, count(*) AS n
    FROM labelled GROUP BY ALL
    UNION ALL
    SELECT 'true', true_key, '', system, count(*) FROM labelled GROUP BY ALL
    UNION ALL
    SELECT 'true_positive', pred_key, true_key, system, count(*) FROM labelled GROUP BY ALL
),
pair_counts AS (
    SELECT kind, system || '|' || system AS systems, sum(n * (n - 1) // 2) AS pairs
    FROM grouped GROUP BY ALL
    UNION ALL
    SELECT a.kind, a.system || '|' || b.system, sum(a.n * b.n)
    FROM grouped a
    JOIN grouped b ON a.kind = b.kind AND a.g1 = b.g1 AND a.g2 = b.g2 AND a.system < b.system
    GROUP BY ALL
)
SELECT systems,
       coalesce(sum(pairs) FILTER (kind = 'true'), 0)::BIGINT,
       coalesce(sum(pairs) FILTER (kind = 'predicted'), 0)::BIGINT,
       coalesce(sum(pairs) FILTER (kind = 'true_positive'), 0)::BIGINT
FROM pair_counts
GROUP BY systems
HAVING sum(pairs) > 0
ORDER BY systems
"""

_CLUSTERS_SQL = "WITH" + _LABELLED + """,
persons AS (
    SELECT true_key, count(DISTINCT pred_key) AS clusters, count(*) AS records,
           any_value(pred_key) AS some_cluster
    FROM labelled GROUP BY true_key
),
clusters AS (
    SELECT pred_key, count(DISTINCT true_key) AS persons, count(*) AS records
    FROM labelled GROUP BY pred_key
)
SELECT
    (SELECT count(*) FROM persons),
    (SELECT count(*) FROM clusters),
    -- exactly right: the person sits in one cluster and that cluster holds nothing else
    (SELECT count(*) FROM persons p JOIN clusters c ON c.pred_key = p.some_cluster
     WHERE p.clusters = 1 AND c.records = p.records),
    (SELECT count(*) FROM clusters WHERE persons > 1),
    (SELECT count(*) FROM persons WHERE clusters > 1),
    (SELECT count(*) FROM labelled),
    (SELECT count(*) FILTER (missing) FROM labelled)
"""

_COVERAGE_SQL = "WITH" + _LABELLED + """
SELECT
    (SELECT count(*) FROM identity.person_record),
    (SELECT count(*) FROM predicted p ANTI JOIN truth t USING (system, table_name, record_id)),
    (SELECT count(*) FROM (SELECT system, table_name, record_id FROM identity.person_record
                           GROUP BY ALL HAVING count(*) > 1)),
    (SELECT coalesce(json_group_object(system, n), '{}') FROM (
        SELECT system, count(*) AS n FROM labelled WHERE missing GROUP BY system ORDER BY system))
"""

# Twins are two true persons both flagged is_twin, in one household, born the same day.
# A twin merge is a predicted cluster holding records of both.
_TWINS_SQL = "WITH" + _LABELLED + """,
person AS (
    SELECT person_key, household_key, birth_date,
           lower(trim(is_twin)) IN ('true', 't', '1', 'yes') AS is_twin
    FROM read_csv($persons, all_varchar = true, header = true)
),
members AS (
    SELECT DISTINCT l.pred_key, p.person_key, p.household_key, p.birth_date
    FROM labelled l JOIN person p ON p.person_key = l.true_key
    WHERE p.is_twin
),
merged AS (
    SELECT a.pred_key, a.person_key AS twin_a, b.person_key AS twin_b
    FROM members a JOIN members b
      ON a.pred_key = b.pred_key AND a.household_key = b.household_key
     AND a.birth_date = b.birth_date AND a.person_key < b.person_key
)
SELECT pred_key, list_sort(list_distinct(flatten(list([twin_a, twin_b]))))
FROM merged GROUP BY pred_key ORDER BY pred_key
"""


def _rates(true_pairs: int, predicted_pairs: int, tp: int) -> dict:
    precision = tp / predicted_pairs if predicted_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true_pairs,
            "predicted_pairs": predicted_pairs, "true_positive_pairs": tp}


def _grey_zone_pairs(con: duckdb.DuckDBPyConnection) -> float | None:
    """grey_zone_pairs of the latest run in audit.identity_metric (identity records it),
    or None."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'audit' AND table_name = 'identity_metric'").fetchall()[0][0]
    if not exists:
        return None
    return con.execute("""
        WITH latest AS (SELECT run_id FROM audit.identity_metric
                        ORDER BY recorded_at DESC NULLS LAST LIMIT 1)
        SELECT max_by(value, recorded_at)
        FROM audit.identity_metric JOIN latest USING (run_id)
        WHERE metric = 'grey_zone_pairs'
    """).fetchall()[0][0]


def blocking_ceiling(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> float | None:
    """Share of true pairs that become candidates at all: caught by a blocking rule or
    sharing a validated identifier (recall can still exceed it through other records
    of the same person). None when the build holds no standardised records."""
    from .model import BLOCKING_RULES

    exists = con.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                     "AND table_name = 'standardised_record'").fetchall()[0][0]
    if not exists:
        return None
    rules = list(BLOCKING_RULES.values()) + [
        "l.nhs_number = r.nhs_number", "l.upn = r.upn", "l.upn = r.former_upn", "l.former_upn = r.upn",
        "l.csc_id = r.csc_id"]
    caught = " OR ".join(f"coalesce({rule}, false)" for rule in rules)
    (share,) = con.execute(f"""
        WITH truth AS (
            SELECT system || '/' || "table" || '/' || record_id AS record_key, person_key
            FROM read_csv($records, all_varchar = true)
        ), pairs AS (
            SELECT a.record_key AS l_key, b.record_key AS r_key
            FROM truth a JOIN truth b ON a.person_key = b.person_key AND a.record_key < b.record_key
        )
        SELECT avg(({caught})::INT)
        FROM pairs
        JOIN identity.standardised_record l ON l.record_key = pairs.l_key
        JOIN identity.standardised_record r ON r.record_key = pairs.r_key
    """, {"records": str(Path(truth_dir) / "records.csv")}).fetchall()[0]
    return share


def evaluate_identity(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict:
    """Compare identity.person_record's clusters with the ground truth in ``truth_dir``.

    Records are joined on (system, table, record_id) as strings. Truth records missing
    from identity.person_record count as singletons (``records.missing_from_prediction``);
    predicted records without a truth row are excluded (``records.not_in_truth``).

    Pairwise measures count unordered pairs of distinct evaluated records: a true pair
    shares a true person, a predicted pair a predicted cluster. ``by_system_pair`` splits
    them by the sorted systems of the two records ("education|health", "mash|mash"),
    listing only system pairs with at least one true or predicted pair. Precision is 1.0
    when there are no predicted pairs, recall 1.0 when there are no true pairs, F1 0.0
    when both are 0.

    Cluster measures are over evaluated records only: ``exactly_right`` is the share of
    true persons whose records form one predicted cluster holding nothing else;
    ``over_merged_clusters`` holds records of more than one true person;
    ``split_persons`` are spread over more than one cluster. ``twin_merges`` counts
    clusters holding two true persons who are twins of each other (both is_twin, same
    household_key and birth_date). ``blocking_ceiling`` is computed here from the truth
    and identity.standardised_record (identity never has the truth, so it cannot record
    it), or None without standardised records; ``grey_zone_size`` comes from the latest
    run in audit.identity_metric, or is None.
    """
    params = {"records": str(Path(truth_dir) / "records.csv")}

    pairwise = {"true": 0, "predicted": 0, "tp": 0}
    by_system_pair = []
    for systems, true_pairs, predicted_pairs, tp in con.execute(_PAIRS_SQL, params).fetchall():
        by_system_pair.append({"systems": systems, **_rates(true_pairs, predicted_pairs, tp)})
        pairwise["true"] += true_pairs
        pairwise["predicted"] += predicted_pairs
        pairwise["tp"] += tp

    (true_persons, predicted_persons, exactly_right, over_merged, split, records,
     missing) = con.execute(_CLUSTERS_SQL, params).fetchall()[0]
    predicted_records, not_in_truth, duplicated, missing_by_system = con.execute(
        _COVERAGE_SQL, params).fetchall()[0]

    twins = con.execute(
        _TWINS_SQL, {**params, "persons": str(Path(truth_dir) / "persons.csv")}).fetchall()
    grey = _grey_zone_pairs(con)

    return {
        "pairwise": _rates(pairwise["true"], pairwise["predicted"], pairwise["tp"]),
        "by_system_pair": by_system_pair,
        "clusters": {
            "true_persons": true_persons,
            "predicted_persons": predicted_persons,
            "exactly_right": exactly_right / true_persons if true_persons else 1.0,
            "over_merged_clusters": over_merged,
            "split_persons": split,
            "records": records,
        },
        "records": {
            "truth": records,
            "predicted": predicted_records,
            "missing_from_prediction": missing,
            "missing_by_system": json.loads(missing_by_system),
            "not_in_truth": not_in_truth,
            "duplicated_in_prediction": duplicated,
        },
        "twin_merges": len(twins),
        "twin_merge_examples": [
            {"predicted_person_key": key, "true_person_keys": list(persons)}
            for key, persons in twins[:5]
        ],
        "blocking_ceiling": blocking_ceiling(con, truth_dir),
        "grey_zone_size": int(grey) if grey is not None and float(grey).is_integer() else grey,
    }


def _rows(result: dict) -> list[tuple[str, str, float]]:
    """Flatten a result into (scope, metric, value); None values are left out."""
    rows = [("overall", m, result["pairwise"][m]) for m in PAIR_METRICS]
    for pair in result["by_system_pair"]:
        rows += [(pair["systems"], m, pair[m]) for m in PAIR_METRICS]
    rows += [("clusters", m, v) for m, v in result["clusters"].items()]
    rows += [("records", m, v) for m, v in result["records"].items() if not isinstance(v, dict)]
    rows += [("records", f"missing_{system}", n)
             for system, n in result["records"]["missing_by_system"].items()]
    rows.append(("twins", "twin_merges", result["twin_merges"]))
    rows += [("linking", m, result[m]) for m in ("blocking_ceiling", "grey_zone_size")]
    return [(scope, metric, float(value)) for scope, metric, value in rows if value is not None]


def store_evaluation(con: duckdb.DuckDBPyConnection, result: dict, run_id: str) -> None:
    """Append ``result`` to audit.identity_evaluation under ``run_id`` (never deletes)."""
    ensure_audit(con)
    rows = _rows(result)
    # one statement, so a run's figures land together or not at all, with one timestamp
    con.execute("""
        INSERT INTO audit.identity_evaluation
        SELECT $run_id, $at, unnest($scopes), unnest($metrics), unnest($values)
    """, {"run_id": run_id, "at": datetime.now(timezone.utc),
          "scopes": [r[0] for r in rows], "metrics": [r[1] for r in rows],
          "values": [r[2] for r in rows]})


def stored_evaluation(con: duckdb.DuckDBPyConnection, since) -> dict | None:
    """The overall figures of the newest evaluation stored at or after ``since`` (None if none)."""
    if not table_exists(con, "audit.identity_evaluation"):
        return None
    rows = con.execute("""
        SELECT scope, metric, value, evaluated_at FROM audit.identity_evaluation
        WHERE scope IN ('overall', 'twins') AND evaluated_at = (
            SELECT max(evaluated_at) FROM audit.identity_evaluation WHERE evaluated_at >= ?)""", [since]).fetchall()
    if not rows:
        return None
    return {"pairwise": {m: v for scope, m, v, _ in rows if scope == "overall"},
            "twin_merges": int(next((v for scope, m, v, _ in rows if m == "twin_merges"), 0)),
            "evaluated_at": rows[0][3]}


def cli_evaluate(truth_dir: Path, home: Path) -> int:
    """Print the evaluation of HOME's build warehouse as JSON; 2 if an input is missing."""
    def fail(message: str) -> int:
        print(f"evaluate-identity: {message}", file=sys.stderr)
        return 2

    truth_dir, db = Path(truth_dir), Home(home).build_db
    for name in ("records.csv", "persons.csv"):
        if not (truth_dir / name).is_file():
            return fail(f"truth file {truth_dir / name} not found")
    if not db.is_file():
        return fail(f"no build database at {db}; run `earlyhelp build` first")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        return fail(f"cannot open {db}: {exc}")
    try:
        has_table = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'identity' AND table_name = 'person_record'").fetchall()[0][0]
        if not has_table:
            return fail(f"{db} has no identity.person_record; the identity build has not run")
        result = evaluate_identity(con, truth_dir)
    finally:
        con.close()
    print(json.dumps(result, indent=2))
    return 0
