"""The identity engine on the session's small city: every staged person record gets one
person, keys survive a second run, reviewers' decisions are honoured, and the persons
match the city's truth.

The six systems are staged once per module and linked once (run-1) into a DuckDB file;
a test that links again works on its own copy of that file.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest

from assets.identity.engine import assign_persons, read_source_records, run_identity
from assets.identity.link import link_records
from assets.identity.evaluate import evaluate_identity
from sources.ingest import ingest
from tests.conftest import stage_and_link


@pytest.fixture(scope="module")
def built(small_city, tmp_path_factory) -> Path:
    """A build database with every system staged and identity linked once (run-1)."""
    return stage_and_link(small_city[0], tmp_path_factory.mktemp("identity_build"))


@pytest.fixture
def con(built, tmp_path):
    """A writable copy of the linked build database."""
    copy = tmp_path / "build.duckdb"
    shutil.copyfile(built, copy)
    connection = duckdb.connect(str(copy))
    yield connection
    connection.close()


def keys(con) -> dict[str, str]:
    return dict(con.execute("SELECT record_key, person_key FROM identity.person_record").fetchall())


def write_decisions(review_dir: Path, name: str, rows: list[dict]) -> Path:
    folder = review_dir / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["record_l", "record_r", "decision", "reviewer", "decided_at"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_every_staged_person_record_gets_exactly_one_person_key(built):
    with duckdb.connect(str(built), read_only=True) as con:
        staged = con.execute("SELECT count(*), count(DISTINCT (system, table_name, record_id)) "
                             "FROM identity.source_person").fetchone()
        assert staged[0] == staged[1] > 4000
        assert {s for (s,) in con.execute("SELECT DISTINCT system FROM identity.source_person").fetchall()} == {
            "education", "health", "social_care", "early_help", "mash"}
        without = con.execute("""
            SELECT count(*) FROM identity.source_person s
            ANTI JOIN identity.person_record p USING (system, table_name, record_id)""").fetchone()[0]
        assert without == 0
        repeated = con.execute("""
            SELECT count(*) FROM (SELECT system, table_name, record_id FROM identity.person_record
                                  GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0]
        assert repeated == 0
        assert con.execute("SELECT count(*) FROM identity.person_record").fetchone()[0] == staged[0]
        assert con.execute("SELECT count(*) FROM identity.person_record WHERE person_key IS NULL "
                           "OR link_rule IS NULL OR explanation IS NULL").fetchone()[0] == 0
        # every person_key is a person, and every person has its records
        assert con.execute("SELECT count(*) FROM identity.person").fetchone()[0] == \
            con.execute("SELECT count(DISTINCT person_key) FROM identity.person_record").fetchone()[0]
        # the first run issued every key and recorded it as new
        assert con.execute("SELECT count(*) FROM identity.link_event WHERE run_id = 'run-1' "
                           "AND entity = 'person' AND event_type = 'new'").fetchone()[0] == \
            con.execute("SELECT count(*) FROM identity.person").fetchone()[0]


def test_a_second_run_on_unchanged_data_keeps_every_key_and_records_no_event(con, tmp_path):
    before = keys(con)
    events = con.execute("SELECT count(*) FROM identity.link_event").fetchone()[0]
    run_identity(con, "run-2", tmp_path / "review")
    assert keys(con) == before
    assert con.execute("SELECT count(*) FROM identity.link_event WHERE run_id = 'run-2'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM identity.link_event").fetchone()[0] == events


def test_a_not_a_match_decision_splits_an_automatic_link_and_is_kept(con, tmp_path):
    # an accepted probabilistic link whose two records are in one person
    record_l, record_r = con.execute("""
        SELECT k.record_l, k.record_r FROM identity.link k
        JOIN identity.person_record pl ON pl.record_key = k.record_l
        JOIN identity.person_record pr ON pr.record_key = k.record_r
        WHERE k.status = 'accepted' AND k.priority = 2 AND pl.person_key = pr.person_key
        ORDER BY k.match_probability, k.record_l LIMIT 1""").fetchone()
    old_key = keys(con)[record_l]
    review = tmp_path / "review"
    write_decisions(review, "d1.csv", [{"record_l": record_l, "record_r": record_r, "decision": "not a match",
                                        "reviewer": "A. Reviewer", "decided_at": "2025-12-01T10:00:00Z"}])
    result = run_identity(con, "run-2", review)
    assert result["decisions_imported"]["decisions"] == 1

    after = keys(con)
    assert after[record_l] != after[record_r]
    assert old_key in (after[record_l], after[record_r])  # one side keeps the person's key
    splits = con.execute("SELECT key, other_key FROM identity.link_event WHERE run_id = 'run-2' "
                         "AND event_type = 'split'").fetchall()
    assert (old_key, ({after[record_l], after[record_r]} - {old_key}).pop()) in splits
    assert con.execute("SELECT record_l, record_r, decision, reviewer FROM identity.review_decision").fetchall() == [
        (record_l, record_r, "not a match", "A. Reviewer")]
    # the decided pair is not queued for review again
    assert con.execute("SELECT count(*) FROM identity.review_queue WHERE record_l = ? AND record_r = ?",
                       [record_l, record_r]).fetchone()[0] == 0

    # the decision stays in force on later runs without the file being imported again
    run_identity(con, "run-3", review)
    assert keys(con) == after
    assert con.execute("SELECT count(*) FROM identity.review_decision").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM identity.link_event WHERE run_id = 'run-3'").fetchone()[0] == 0


def test_a_match_decision_joins_a_grey_zone_pair_and_bad_rows_are_reported(con, tmp_path):
    # two grey-zone pairs of four different persons, with no identifiers that would forbid a match
    grey = con.execute("""
        SELECT record_l, record_r, person_key_l, person_key_r FROM identity.review_queue
        WHERE why = 'grey zone' AND person_key_l <> person_key_r
          AND (nhs_number_l IS NULL OR nhs_number_r IS NULL) AND (upn_l IS NULL OR upn_r IS NULL)
        ORDER BY match_probability DESC, record_l""").fetchall()
    match_l, match_r, *matched = grey[0]
    other_l, other_r, *_ = next(g for g in grey[1:] if not set(g[2:]) & set(matched))
    before = keys(con)
    assert before[match_l] != before[match_r]
    review = tmp_path / "review"
    write_decisions(review, "d1.csv", [
        {"record_l": match_l, "record_r": match_r, "decision": "Match", "reviewer": "A. Reviewer",
         "decided_at": "2025-12-01"},
        {"record_l": other_l, "record_r": other_r, "decision": "probably", "reviewer": "A. Reviewer",
         "decided_at": "2025-12-01"},
        {"record_l": "health/Patient/no-such-record", "record_r": other_r, "decision": "match",
         "reviewer": "A. Reviewer", "decided_at": "2025-12-01"},
        {"record_l": other_l, "record_r": other_r, "decision": "", "reviewer": "", "decided_at": ""},
    ])
    result = run_identity(con, "run-2", review)
    assert result["decisions_imported"] == {"files": 1, "decisions": 1, "rejected": 2}

    after = keys(con)
    assert after[match_l] == after[match_r]
    joined = con.execute("SELECT link_rule, explanation FROM identity.link WHERE record_l = ? AND record_r = ?",
                         [match_l, match_r]).fetchone()
    assert joined[0] == "reviewer: match" and "A. Reviewer" in joined[1]
    # the row with a bad value changed nothing
    assert after[other_l] != after[other_r]
    issues = con.execute("SELECT file_name, line, rule, raw_value, imported_run FROM identity.review_import_issue "
                         "ORDER BY line").fetchall()
    assert issues == [
        ("d1.csv", 3, "decision must be 'match' or 'not a match'", "probably", "run-2"),
        ("d1.csv", 4, "record key not known to identity", "health/Patient/no-such-record", "run-2"),
    ]
    assert con.execute("SELECT record_l, record_r, decision FROM identity.review_decision").fetchall() == [
        (match_l, match_r, "match")]
    assert con.execute("SELECT file_name, rows_read, rows_rejected FROM identity.review_import").fetchall() == [
        ("d1.csv", 3, 2)]


def test_persons_match_the_small_citys_truth(built, small_city):
    city, _summary = small_city
    with duckdb.connect(str(built), read_only=True) as con:
        result = evaluate_identity(con, city / "truth")
    assert result["pairwise"]["precision"] >= 0.999, result["pairwise"]
    assert result["pairwise"]["recall"] >= 0.99, result["pairwise"]
    assert result["twin_merges"] == 0, result["twin_merge_examples"]
    assert result["records"]["duplicated_in_prediction"] == 0
    assert result["records"]["not_in_truth"] == 0


def test_keys_survive_a_rebuild_of_the_database_from_scratch(small_city, tmp_path):
    """The registries are saved as Parquet beside the database: a fresh database (the
    staged drops restored, identity linked anew) gives every record its old key and
    records no new person events."""
    city, _summary = small_city
    durable = tmp_path / "identity"
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    with duckdb.connect(str(first)) as con:
        ingest(con, city / "landing", tmp_path / "staged")
        run_identity(con, "run-1", tmp_path / "review", durable_dir=durable)
        before = keys(con)
    assert (durable / "person_registry.parquet").exists()
    with duckdb.connect(str(second)) as con:
        ingest(con, city / "landing", tmp_path / "staged")
        result = run_identity(con, "run-2", tmp_path / "review", durable_dir=durable)
        assert "person_registry" in result["restored"]
        assert keys(con) == before
        assert con.execute("SELECT count(*) FROM identity.link_event WHERE run_id = 'run-2'").fetchall()[0][0] == 0


def test_train_identity_writes_a_model_that_links(built, tmp_path):
    """Retraining is its own command: it reads a build's records without writing to the
    build, and the model it saves links the same records."""
    from pipelines.cli import main

    home = tmp_path / "home"
    (home / "warehouse").mkdir(parents=True)
    shutil.copyfile(built, home / "warehouse" / "build.duckdb")
    before = sha256_of(home / "warehouse" / "build.duckdb")
    out = tmp_path / "model.json"
    assert main(["train-identity", "--home", str(home), "--out", str(out)]) == 0
    assert sha256_of(home / "warehouse" / "build.duckdb") == before
    import json

    model = json.loads(out.read_text())
    levels = [lv for c in model["comparisons"] for lv in c["comparison_levels"] if not lv.get("is_null_level")]
    assert all(0 < lv["m_probability"] <= 1 for lv in levels)
    assert all(0 < lv["u_probability"] <= 1 for lv in levels if "u_probability" in lv)
    with duckdb.connect(str(home / "warehouse" / "build.duckdb")) as con:
        result = run_identity(con, "retrained", tmp_path / "review", model=out)
        assert result["persons"] < result["records"]


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_incremental_link_of_the_next_day_equals_a_full_relink(small_city, tmp_path):
    """Linking only what the newest day changed gives the same persons, with the same
    keys, as re-linking everyone."""
    city, _summary = small_city
    newest = max(p.name for p in (city / "landing").glob("*/*") if (p / "_manifest.json").exists())
    earlier = tmp_path / "earlier"
    for drop in (city / "landing").glob("*/*"):
        if (drop / "_manifest.json").exists() and (drop.name != newest or len(list(drop.parent.iterdir())) == 1):
            shutil.copytree(drop, earlier / drop.parent.name / drop.name)
    database = tmp_path / "build.duckdb"
    with duckdb.connect(str(database)) as con:
        ingest(con, earlier, tmp_path / "staged")
        assert run_identity(con, "day-1", tmp_path / "review")["mode"] == "full"
        ingest(con, city / "landing", tmp_path / "staged")
    shutil.copyfile(database, tmp_path / "relinked.duckdb")
    with duckdb.connect(str(database)) as con:
        assert run_identity(con, "day-2", tmp_path / "review")["mode"] == "incremental"
        incremental = keys(con)
        incremental_persons = persons(con)
    with duckdb.connect(str(tmp_path / "relinked.duckdb")) as con:
        read_source_records(con)
        assert link_records(con, incremental=False).mode == "full"
        assign_persons(con, "day-2")
        assert keys(con) == incremental
        assert persons(con) == incremental_persons


def persons(con) -> set[tuple]:
    return set(con.execute("SELECT * EXCLUDE (systems), array_to_string(systems, ',') "
                           "FROM identity.person").fetchall())
