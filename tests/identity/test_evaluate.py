"""Identity evaluation on a hand-made truth, with every expected figure worked by hand.

Three true persons, nine records in three systems:

    A (twin of B, household H1, born 2015-03-01): education e1, health h1, mash m1, m2
    B (twin of A, household H1, born 2015-03-01): education e2, health h2
    C (household H2):                              education e3, health h3, mash m3

True pairs: A C(4,2)=6, B 1, C 3 -> 10. By system pair, education|health has 3 (one
per person) and mash|mash has 1 (m1-m2).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import duckdb
import pytest

from assets.identity.evaluate import cli_evaluate, evaluate_identity, store_evaluation

TRUTH = {
    ("education", "pupils", "e1"): "A", ("health", "Patient", "h1"): "A",
    ("mash", "contacts", "m1"): "A", ("mash", "contacts", "m2"): "A",
    ("education", "pupils", "e2"): "B", ("health", "Patient", "h2"): "B",
    ("education", "pupils", "e3"): "C", ("health", "Patient", "h3"): "C",
    ("mash", "contacts", "m3"): "C",
}
PERSONS = [("A", "H1", "2015-03-01", "F", "true"), ("B", "H1", "2015-03-01", "F", "true"),
           ("C", "H2", "2012-07-09", "M", "false")]

# The engine merges the twins (X), leaves m2 out of person_record (a missing singleton),
# gets C right (Z) and links one record the truth does not know (e999, excluded).
MERGED_TWINS = {
    ("education", "pupils", "e1"): "X", ("health", "Patient", "h1"): "X",
    ("mash", "contacts", "m1"): "X", ("education", "pupils", "e2"): "X",
    ("health", "Patient", "h2"): "X",
    ("education", "pupils", "e3"): "Z", ("health", "Patient", "h3"): "Z",
    ("mash", "contacts", "m3"): "Z", ("education", "pupils", "e999"): "Z",
}
PERFECT = {record: f"pk-{person}" for record, person in TRUTH.items()}


def write_truth(folder: Path, truth=TRUTH, persons=PERSONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["system,table,record_id,person_key"]
    lines += [f"{s},{t},{r},{p}" for (s, t, r), p in truth.items()]
    (folder / "records.csv").write_text("\n".join(lines) + "\n")
    lines = ["person_key,household_key,birth_date,sex,is_twin"] + [",".join(p) for p in persons]
    (folder / "persons.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_prediction(con: duckdb.DuckDBPyConnection, prediction: dict) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    con.execute("""CREATE OR REPLACE TABLE identity.person_record (
        person_key VARCHAR, system VARCHAR, table_name VARCHAR, record_id VARCHAR,
        match_probability DOUBLE, link_rule VARCHAR)""")
    if prediction:
        con.executemany("INSERT INTO identity.person_record VALUES (?, ?, ?, ?, 1.0, 'test')",
                        [(key, s, t, r) for (s, t, r), key in prediction.items()])


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "build.duckdb"))
    yield connection
    connection.close()


@pytest.fixture
def truth(tmp_path):
    return write_truth(tmp_path / "truth")


def pair(result, systems):
    return next(p for p in result["by_system_pair"] if p["systems"] == systems)


def test_merged_twins_worked_by_hand(con, truth):
    write_prediction(con, MERGED_TWINS)
    result = evaluate_identity(con, truth)

    # predicted pairs: X C(5,2)=10 + Z C(3,2)=3 = 13 (m2 is alone, e999 excluded);
    # true positives: X holds 3 of A (3 pairs) and 2 of B (1), Z all 3 of C (3) -> 7
    assert result["pairwise"] == pytest.approx({
        "precision": 7 / 13, "recall": 7 / 10, "f1": 2 * 7 / (13 + 10),
        "true_pairs": 10, "predicted_pairs": 13, "true_positive_pairs": 7})
    # education|health: X has 2 pupils x 2 patients = 4 predicted, 2 true (e1-h1, e2-h2);
    # Z has e3-h3: 1 predicted, 1 true. True pairs are 3 (one per person).
    assert pair(result, "education|health") == pytest.approx({
        "systems": "education|health", "precision": 3 / 5, "recall": 1.0, "f1": 0.75,
        "true_pairs": 3, "predicted_pairs": 5, "true_positive_pairs": 3})
    # m1-m2 is true but m2 is missing: nothing predicted, so precision is 1.0 by convention
    assert pair(result, "mash|mash") == pytest.approx({
        "systems": "mash|mash", "precision": 1.0, "recall": 0.0, "f1": 0.0,
        "true_pairs": 1, "predicted_pairs": 0, "true_positive_pairs": 0})
    # e1-e2 is a wrong same-system pair inside X
    assert pair(result, "education|education")["predicted_pairs"] == 1
    assert pair(result, "education|education")["precision"] == 0.0
    assert [p["systems"] for p in result["by_system_pair"]] == sorted(
        p["systems"] for p in result["by_system_pair"])
    assert sum(p["true_pairs"] for p in result["by_system_pair"]) == 10
    assert sum(p["predicted_pairs"] for p in result["by_system_pair"]) == 13

    # clusters X, Z and the missing m2; only C is exactly right; X over-merges; A is split
    assert result["clusters"] == pytest.approx({
        "true_persons": 3, "predicted_persons": 3, "exactly_right": 1 / 3,
        "over_merged_clusters": 1, "split_persons": 1, "records": 9})
    assert result["records"] == {
        "truth": 9, "predicted": 9, "missing_from_prediction": 1,
        "missing_by_system": {"mash": 1}, "not_in_truth": 1, "duplicated_in_prediction": 0}
    assert result["twin_merges"] == 1
    assert result["twin_merge_examples"] == [
        {"predicted_person_key": "X", "true_person_keys": ["A", "B"]}]
    assert result["blocking_ceiling"] is None and result["grey_zone_size"] is None
    json.dumps(result)  # serialisable as it stands


def test_perfect_prediction(con, truth):
    write_prediction(con, PERFECT)
    result = evaluate_identity(con, truth)
    assert result["pairwise"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "true_pairs": 10,
                                  "predicted_pairs": 10, "true_positive_pairs": 10}
    assert result["clusters"] == {"true_persons": 3, "predicted_persons": 3, "exactly_right": 1.0,
                                  "over_merged_clusters": 0, "split_persons": 0, "records": 9}
    assert result["twin_merges"] == 0 and result["twin_merge_examples"] == []
    assert result["records"]["missing_from_prediction"] == 0


def test_merging_persons_who_are_not_twins_of_each_other_is_no_twin_merge(con, tmp_path):
    # same merge, but B is born on another day: A and B are no longer twins of each other
    persons = [PERSONS[0], ("B", "H1", "2015-03-02", "F", "true"), PERSONS[2]]
    write_prediction(con, MERGED_TWINS)
    result = evaluate_identity(con, write_truth(tmp_path / "t2", persons=persons))
    assert result["clusters"]["over_merged_clusters"] == 1
    assert result["twin_merges"] == 0


def test_empty_prediction_makes_every_record_a_singleton(con, truth):
    write_prediction(con, {})
    result = evaluate_identity(con, truth)
    assert result["pairwise"] == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "true_pairs": 10,
                                  "predicted_pairs": 0, "true_positive_pairs": 0}
    assert result["records"]["missing_from_prediction"] == 9
    assert result["clusters"]["predicted_persons"] == 9
    assert result["clusters"]["split_persons"] == 3
    assert result["clusters"]["exactly_right"] == 0.0


def test_counts_match_pair_enumeration_on_a_random_case(con, tmp_path):
    """The closed-form counts agree with brute force over every pair of records."""
    rng = random.Random(7)
    systems = [("education", "pupils"), ("health", "Patient"), ("health", "RelatedPerson"),
               ("social_care", "ssd_person"), ("early_help", "FAMILY_MEMBERS"),
               ("mash", "contacts")]
    truth = {}
    for i in range(120):
        system, table = rng.choice(systems)
        truth[(system, table, str(i))] = f"T{rng.randrange(30)}"
    prediction = {r: (p if rng.random() < 0.7 else f"Q{rng.randrange(40)}")
                  for r, p in truth.items() if rng.random() < 0.9}
    persons = [(p, "H", "2000-01-01", "F", "false") for p in sorted(set(truth.values()))]
    write_prediction(con, prediction)
    result = evaluate_identity(con, write_truth(tmp_path / "rnd", truth, persons))

    expected: dict[str, list[int]] = {}
    for a, b in itertools.combinations(truth, 2):
        key = "|".join(sorted((a[0], b[0])))
        same_true = truth[a] == truth[b]
        same_pred = a in prediction and b in prediction and prediction[a] == prediction[b]
        counts = expected.setdefault(key, [0, 0, 0])
        counts[0] += same_true
        counts[1] += same_pred
        counts[2] += same_true and same_pred
    expected = {k: v for k, v in expected.items() if v[0] or v[1]}
    got = {p["systems"]: [p["true_pairs"], p["predicted_pairs"], p["true_positive_pairs"]]
           for p in result["by_system_pair"]}
    assert got == expected
    totals = [sum(v[i] for v in expected.values()) for i in range(3)]
    pw = result["pairwise"]
    assert [pw["true_pairs"], pw["predicted_pairs"], pw["true_positive_pairs"]] == totals


def write_standardised(con: duckdb.DuckDBPyConnection, records: dict) -> None:
    """identity.standardised_record with the columns the blocking rules and identifiers
    read; ``records`` maps (system, table, record_id) to the values that differ from
    the defaults."""
    con.execute("CREATE SCHEMA IF NOT EXISTS identity")
    con.execute("""CREATE OR REPLACE TABLE identity.standardised_record (
        record_key VARCHAR, forename VARCHAR, surname VARCHAR, dob DATE, dob_swapped DATE,
        birth_year INTEGER, postcode VARCHAR, address VARCHAR, nhs_number VARCHAR, upn VARCHAR,
        former_upn VARCHAR, csc_id VARCHAR)""")
    for (system, table, record_id), values in records.items():
        row = {"forename": None, "surname": None, "dob": None, "dob_swapped": None, "birth_year": None,
               "postcode": None, "address": None, "nhs_number": None, "upn": None, "former_upn": None,
               "csc_id": None, **values}
        con.execute("INSERT INTO identity.standardised_record VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f"{system}/{table}/{record_id}", *row.values()])


def test_blocking_ceiling_is_computed_from_the_truth_and_the_grey_zone_read_from_the_latest_run(con, truth):
    write_prediction(con, PERFECT)
    # A's and B's records share a birth date and surname initial (caught by a blocking
    # rule); of C's, e3 and h3 share an NHS number and m3 shares nothing: 8 of 10 true pairs
    same_birthday = {"forename": "Sam", "surname": "Lee", "dob": "2015-03-01"}
    write_standardised(con, {
        **{r: same_birthday for r, person in TRUTH.items() if person in "AB"},
        ("education", "pupils", "e3"): {"forename": "Kit", "surname": "Ray", "nhs_number": "9434765919"},
        ("health", "Patient", "h3"): {"forename": "Kit", "surname": "Ray", "nhs_number": "9434765919"},
        ("mash", "contacts", "m3"): {"forename": "Kitt", "surname": "Wray"},
    })
    # no production code records a blocking ceiling (identity has no truth): a stored one
    # is not read back
    con.execute("CREATE SCHEMA audit")
    con.execute("CREATE TABLE audit.identity_metric "
                "(run_id VARCHAR, metric VARCHAR, value DOUBLE, recorded_at TIMESTAMPTZ)")
    con.execute("""INSERT INTO audit.identity_metric VALUES
        ('old', 'blocking_ceiling', 0.5, '2025-01-01 00:00+00'),
        ('old', 'grey_zone_pairs', 99, '2025-01-01 00:00+00'),
        ('new', 'blocking_ceiling', 0.997, '2025-02-01 00:00+00'),
        ('new', 'grey_zone_pairs', 42, '2025-02-01 00:00+00')""")
    result = evaluate_identity(con, truth)
    assert result["blocking_ceiling"] == pytest.approx(8 / 10)
    assert result["grey_zone_size"] == 42

    con.execute("INSERT INTO audit.identity_metric VALUES "
                "('newest', 'records', 9, '2025-03-01 00:00+00')")
    result = evaluate_identity(con, truth)
    assert result["grey_zone_size"] is None  # the latest run did not record it


def test_store_evaluation_appends_runs(con, truth):
    write_prediction(con, MERGED_TWINS)
    first = evaluate_identity(con, truth)
    store_evaluation(con, first, "run-1")
    write_prediction(con, PERFECT)
    store_evaluation(con, evaluate_identity(con, truth), "run-2")

    rows = con.execute("""SELECT run_id, count(*), count(DISTINCT evaluated_at)
                          FROM audit.identity_evaluation GROUP BY run_id ORDER BY run_id""").fetchall()
    assert [r[0] for r in rows] == ["run-1", "run-2"]
    assert all(r[2] == 1 for r in rows)

    def value(run_id, scope, metric):
        return con.execute("""SELECT value FROM audit.identity_evaluation
                              WHERE run_id = ? AND scope = ? AND metric = ?""",
                           [run_id, scope, metric]).fetchall()[0][0]

    assert value("run-1", "overall", "precision") == pytest.approx(7 / 13)
    assert value("run-2", "overall", "precision") == 1.0
    assert value("run-1", "education|health", "predicted_pairs") == 5
    assert value("run-1", "twins", "twin_merges") == 1
    assert value("run-2", "twins", "twin_merges") == 0
    assert value("run-1", "clusters", "exactly_right") == pytest.approx(1 / 3)
    assert value("run-1", "records", "missing_from_prediction") == 1
    assert value("run-1", "records", "missing_mash") == 1
    # null linking metrics are not stored
    assert not con.execute("SELECT count(*) FROM audit.identity_evaluation "
                           "WHERE scope = 'linking'").fetchall()[0][0]


def test_cli_evaluate_exit_codes(tmp_path, capsys):
    home = tmp_path / "home"
    truth = write_truth(tmp_path / "truth")

    assert cli_evaluate(truth, home) == 2
    assert "no build database" in capsys.readouterr().err

    (home / "warehouse").mkdir(parents=True)
    db = home / "warehouse" / "build.duckdb"
    duckdb.connect(str(db)).close()
    assert cli_evaluate(truth, home) == 2
    assert "identity.person_record" in capsys.readouterr().err

    with duckdb.connect(str(db)) as con:
        write_prediction(con, MERGED_TWINS)
    assert cli_evaluate(tmp_path / "nowhere", home) == 2
    assert "records.csv" in capsys.readouterr().err

    assert cli_evaluate(truth, home) == 0
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert printed["twin_merges"] == 1
    assert printed["pairwise"]["true_positive_pairs"] == 7
    assert out.startswith("{\n  ")  # indented
