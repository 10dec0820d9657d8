"""Publish and the data dictionary, on real DuckDB files in tmp_path.

A small hand-made build database holds person data in every published schema (NHS numbers
from the 999 range, UPNs, surnames, birth dates, postcodes), including identifying
columns in the model where they do not belong, so the pseudonymisation has work to do.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import duckdb
import pytest

from assets.dictionary import build_dictionary
from assets.publish import (DROP, HASH, KEEP, PublishError, WeakSecretError, _hmac_macro, classify, keyed_hash, load_secret,
                            publish)
from quality.faults import FaultInjected, fail_at
from sources.identifiers import nhs_check_digit, upn_check_letter

SECRET = "test-secret-one-0123456789abcdefghijklmnop"

PEOPLE = [  # forename, surname, dob, sex, postcode
    ("Amelia", "Okonkwo-Hart", date(2014, 3, 9), "F", "ZX1 0AB"),
    ("Jayden", "Przybylski", date(2016, 11, 23), "M", "ZX2 0AD"),
    ("Maryam", "Achterberg", date(2012, 1, 30), "F", "ZX3 0AF"),
    ("Oliver", "Quennell", date(2019, 7, 4), "M", "ZX4 0AG"),
    ("Sophie", "Quennell", date(1988, 5, 17), "F", "ZX4 0AG"),
    ("Kacper", "Wojciechowska", date(2010, 12, 2), "M", "ZX5 0AH"),
]


def _nhs(i: int) -> str:
    n = 1
    while True:
        first = f"999{n + 1000 * i:06d}"
        if nhs_check_digit(first) is not None:
            return first + str(nhs_check_digit(first))
        n += 1


def _upn(i: int) -> str:
    tail = f"999201{i:03d}000"[:12]
    return upn_check_letter(tail) + tail


def source_people() -> list[dict]:
    return [{"person_key": f"P{i:010d}", "family_key": f"F{(i // 2):010d}", "forename": f, "surname": s,
             "dob": d, "sex": sex, "postcode": pc, "nhs_number": _nhs(i), "upn": _upn(i),
             "pers_person_id": f"MOS{5000 + i}"}
            for i, (f, s, d, sex, pc) in enumerate(PEOPLE, start=1)]


def make_build(path: Path, reports: Path, contacts: int = 4) -> Path:
    """A build database with identity, model, marts, audit (and staging, never published)."""
    people = source_people()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for schema in ("staging", "identity", "model", "marts", "audit"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute("CREATE OR REPLACE TABLE staging.raw_people (surname VARCHAR, nhs VARCHAR)")
    con.execute("""CREATE OR REPLACE TABLE identity.person (person_key VARCHAR, forename VARCHAR, surname VARCHAR,
        dob DATE, sex VARCHAR, nhs_number VARCHAR, upn VARCHAR, postcode VARCHAR, address VARCHAR)""")
    con.execute("""CREATE OR REPLACE TABLE identity.person_record (person_key VARCHAR, system VARCHAR,
        table_name VARCHAR, record_id VARCHAR, explanation VARCHAR)""")
    con.execute("""CREATE OR REPLACE TABLE model.dim_person (person_key VARCHAR, family_key VARCHAR,
        birth_month DATE, birth_year INTEGER, sex VARCHAR, district VARCHAR, lsoa VARCHAR, is_child BOOLEAN,
        systems VARCHAR[], system_count INTEGER,
        surname VARCHAR, dob DATE, nhs_number VARCHAR, upn VARCHAR, postcode VARCHAR, pers_person_id VARCHAR,
        notes VARCHAR)""")
    for i, p in enumerate(people):
        con.execute("INSERT INTO staging.raw_people VALUES (?, ?)", [p["surname"], p["nhs_number"]])
        con.execute("INSERT INTO identity.person VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [p["person_key"], p["forename"], p["surname"], p["dob"], p["sex"], p["nhs_number"],
                     p["upn"], p["postcode"], f"{10 + i} Larch Road"])
        con.execute("INSERT INTO identity.person_record VALUES (?, 'social_care', 'ssd_person', ?, ?)",
                    [p["person_key"], p["pers_person_id"], f"NHS number {p['nhs_number']} agrees"])
        con.execute("INSERT INTO model.dim_person VALUES (?, ?, date_trunc('month', ?::DATE), year(?::DATE), ?, "
                    "?, ?, ?, ['health', 'social_care'], 2, ?, ?, ?, ?, ?, ?, ?)",
                    [p["person_key"], p["family_key"], p["dob"], p["dob"], p["sex"], f"District {i % 3}",
                     f"E0100{i:04d}", p["dob"].year > 2007, p["surname"], p["dob"], p["nhs_number"], p["upn"],
                     p["postcode"], p["pers_person_id"], f"known to {p['surname']} family"])
    con.execute("COMMENT ON TABLE model.dim_person IS 'One row per person: who they are, without who they are.'")
    con.execute("COMMENT ON COLUMN model.dim_person.notes IS 'Free-text notes.'")
    con.execute("""CREATE OR REPLACE TABLE model.fact_mash_contact AS
        SELECT 'C' || i AS contact_id, 1 AS child_seq, p.person_key, d.family_key,
               TIMESTAMPTZ '2025-10-25 22:00:00+00' + i * INTERVAL 1 HOUR AS received_at,
               TIMESTAMPTZ '2025-10-26 12:00:00+00' + i * INTERVAL 1 HOUR AS decided_at,
               'A' AS rag, 'IAG' AS decision, p.surname AS child_surname, p.nhs_number AS child_nhs_number,
               true AS decided_within_24h
        FROM range(?) t(i) JOIN identity.person p ON p.person_key = 'P' || lpad(CAST(i % 6 + 1 AS VARCHAR), 10, '0')
        JOIN model.dim_person d USING (person_key)
    """, [contacts])
    con.execute("""CREATE OR REPLACE TABLE model.dim_school AS
        SELECT 100001 AS urn, 'Larch Road Primary' AS name, 'primary' AS phase, 'ZX1 0AA' AS postcode""")
    con.execute("""CREATE OR REPLACE TABLE marts.mash_timeliness_monthly AS
        SELECT date_trunc('month', received_at)::DATE AS month_start, count(*) AS contacts,
               count(*) FILTER (decided_within_24h) / count(*) AS share_within_24h
        FROM model.fact_mash_contact GROUP BY ALL""")
    con.execute("""CREATE OR REPLACE TABLE audit.check_result (run_id VARCHAR, check_name VARCHAR,
        passed BOOLEAN, sample VARCHAR)""")
    con.execute("INSERT INTO audit.check_result VALUES ('r1', 'identifier_validity', false, ?)",
                [f"[\"{people[0]['nhs_number']}\"]"])
    con.execute("CREATE OR REPLACE TABLE audit.gx_validation (run_id VARCHAR, partial_unexpected VARCHAR)")
    con.execute("INSERT INTO audit.gx_validation VALUES ('r1', ?)", [people[1]["surname"]])
    con.execute("CREATE OR REPLACE VIEW audit.failed_checks AS SELECT * FROM audit.check_result WHERE NOT passed")
    build_dictionary(con, reports)
    con.close()
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("EARLYHELP_PSEUDONYM_KEY", raising=False)
    make_build(tmp_path / "warehouse" / "build.duckdb", tmp_path / "reports")
    return tmp_path


def _values(db: Path) -> set[str]:
    """Every value of every column of every table, as text (lists also element by element)."""
    con = duckdb.connect(str(db), read_only=True)
    values = set()
    for schema, table, column, dtype in con.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database()").fetchall():
        expr = f'unnest("{column}")' if dtype.endswith("[]") else f'"{column}"'
        values |= {r[0] for r in con.execute(
            f'SELECT DISTINCT CAST(v AS VARCHAR) FROM (SELECT {expr} AS v FROM "{schema}"."{table}")').fetchall()}
    con.close()
    return values


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _query(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_analytics_holds_no_identifier_and_identifiable_does(home):
    result = publish(home / "warehouse" / "build.duckdb", home / "warehouse", SECRET)
    people = source_people()
    forbidden = ({p["nhs_number"] for p in people} | {p["upn"] for p in people} | {p["surname"] for p in people}
                 | {p["dob"].isoformat() for p in people} | {p["person_key"] for p in people}
                 | {p["pers_person_id"] for p in people} | {p["postcode"] for p in people})
    analytics = _values(home / "warehouse" / "analytics.duckdb")
    assert not analytics & forbidden
    assert not any(p["surname"] in v for v in analytics if v for p in people)  # not even inside text
    identifiable = _values(home / "warehouse" / "identifiable.duckdb")
    assert forbidden <= identifiable
    # the model is still useful: birth month, district, keys that join facts to persons
    rows = _query(home / "warehouse" / "analytics.duckdb", """
        SELECT count(*), count(DISTINCT p.person_key), min(p.birth_month), min(length(p.person_key))
        FROM model.fact_mash_contact f JOIN model.dim_person p USING (person_key)""")
    assert rows == [(4, 4, date(2012, 1, 1), 16)]
    assert "model.dim_person.notes" in result["analytics"]["unclassified"]
    assert "model.dim_person.pers_person_id" in result["analytics"]["hashed"]
    # analytics holds the chosen schemas only; identifiable every published schema, views as tables
    a_tables = set(_query(home / "warehouse" / "analytics.duckdb", "SELECT schema_name || '.' || table_name FROM duckdb_tables()"))
    i_tables = set(_query(home / "warehouse" / "identifiable.duckdb", "SELECT schema_name || '.' || table_name FROM duckdb_tables()"))
    assert {t for (t,) in a_tables if t.startswith(("identity.", "staging.", "audit.gx"))} == set()
    assert ("audit.check_result",) in a_tables and ("identity.person",) in i_tables
    assert ("audit.failed_checks",) in i_tables and not any(t.startswith("staging.") for (t,) in i_tables)


def test_pseudonymous_keys_stable_per_secret_and_a_true_hmac(home):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    keys_sql = "SELECT person_key, family_key FROM model.dim_person ORDER BY ALL"
    publish(build, wh, SECRET)
    first = _query(wh / "analytics.duckdb", keys_sql)
    publish(build, wh, SECRET)
    assert _query(wh / "analytics.duckdb", keys_sql) == first
    publish(build, wh, "another-secret-9876543210zyxwvutsrqponm")
    other = _query(wh / "analytics.duckdb", keys_sql)
    assert not {k for row in other for k in row} & {k for row in first for k in row}
    expected = sorted((keyed_hash(SECRET, p["person_key"]), keyed_hash(SECRET, p["family_key"]))
                      for p in source_people())
    assert first == expected  # HMAC-SHA256 in DuckDB agrees with Python's hmac


@pytest.mark.parametrize("secret", ["k", "a" * 64, "a much longer secret than one SHA-256 block of sixty-four bytes!!"])
def test_hmac_in_duckdb_matches_rfc_2104(secret):
    con = duckdb.connect()
    _hmac_macro(con, secret)
    values = ["P0000000001", "F0000000002", "Zoë", "", "12345"]
    got = [con.execute("SELECT pseudonym(?)", [v]).fetchone()[0] for v in values]
    assert got == [keyed_hash(secret, v) for v in values]
    assert con.execute("SELECT pseudonym(NULL), pseudonym(12345)").fetchone() == (None, keyed_hash(secret, "12345"))


def test_secret_from_home_is_created_once_private_and_never_stored(home):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh)
    key_file = home / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = load_secret(home)
    first = _query(wh / "analytics.duckdb", "SELECT person_key FROM model.dim_person ORDER BY 1")
    assert first == sorted((keyed_hash(secret, p["person_key"]),) for p in source_people())
    publish(build, wh)
    assert _query(wh / "analytics.duckdb", "SELECT person_key FROM model.dim_person ORDER BY 1") == first
    for db in ("analytics.duckdb", "identifiable.duckdb"):
        assert secret.encode() not in (wh / db).read_bytes()


def test_secret_from_environment(home, monkeypatch):
    monkeypatch.setenv("EARLYHELP_PSEUDONYM_KEY", ENV_SECRET)
    publish(home / "warehouse" / "build.duckdb", home / "warehouse")
    assert not (home / "secrets").exists()
    keys = _query(home / "warehouse" / "analytics.duckdb", "SELECT person_key FROM model.dim_person ORDER BY 1")
    assert keys == sorted((keyed_hash(ENV_SECRET, p["person_key"]),) for p in source_people())


ENV_SECRET = "from-the-environment-3f9a1c7e5b2d8046"


@pytest.mark.parametrize("weak", ["", "   ", "password", "x" * 64, "0123456789abcdef0123456789abcde"],
                         ids=["empty", "blank", "a word", "one repeated character", "31 bytes"])
def test_a_weak_secret_is_refused_and_nothing_is_published(home, monkeypatch, weak):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh, SECRET)
    before = {name: (wh / name).read_bytes() for name in ("identifiable.duckdb", "analytics.duckdb")}
    monkeypatch.setenv("EARLYHELP_PSEUDONYM_KEY", weak)
    with pytest.raises(WeakSecretError, match="EARLYHELP_PSEUDONYM_KEY") as refused:
        publish(build, wh)
    assert len(weak.strip()) < 4 or weak not in str(refused.value)  # the message never quotes the secret
    monkeypatch.delenv("EARLYHELP_PSEUDONYM_KEY")
    with pytest.raises(WeakSecretError, match="the caller"):
        publish(build, wh, weak)
    # an empty or weak key file (a kill while it was first written, or an operator's) too
    (home / "secrets").mkdir(mode=0o700)
    key_file = home / "secrets" / "pseudonym.key"
    key_file.write_text(weak)
    key_file.chmod(0o600)
    with pytest.raises(WeakSecretError, match="pseudonym.key"):
        publish(build, wh)
    assert {name: (wh / name).read_bytes() for name in before} == before


def test_a_key_file_others_can_read_is_refused(home):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh)
    key_file = home / "secrets" / "pseudonym.key"
    key_file.chmod(0o644)
    with pytest.raises(WeakSecretError, match="chmod 600"):
        publish(build, wh)


def test_the_key_file_is_made_whole_or_not_at_all(home):
    """It is linked into place from a finished private file: no partial key is ever seen,
    and no temporary file is left beside it."""
    secret = load_secret(home)
    files = sorted(p.name for p in (home / "secrets").iterdir())
    assert files == ["pseudonym.key"] and len(secret) == 64 and int(secret, 16) >= 0
    assert load_secret(home) == secret


READER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    sql = "SELECT count(*) FROM model.fact_mash_contact"
    print(con.execute(sql).fetchone()[0], flush=True)
    sys.stdin.readline()
    print(con.execute(sql).fetchone()[0], flush=True)
    con.close()
""")


def test_reader_keeps_reading_the_old_file_while_a_publish_swaps_in_the_new(home):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh, SECRET)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(wh / "analytics.duckdb")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "4"   # the reader holds the file open
        make_build(build, home / "reports", contacts=9)  # the next build
        publish(build, wh, SECRET)                       # not blocked by the reader
        reader.stdin.write("again\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "4"   # still the old, whole file
        assert reader.wait(timeout=60) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    assert _query(wh / "analytics.duckdb", "SELECT count(*) FROM model.fact_mash_contact") == [(9,)]
    assert _query(wh / "identifiable.duckdb", "SELECT count(*) FROM model.fact_mash_contact") == [(9,)]


def _serving_state(wh: Path) -> dict:
    return {p.name: _sha(p) for p in wh.iterdir() if p.name in ("analytics.duckdb", "identifiable.duckdb")}


def _leftovers(wh: Path) -> list[str]:
    """Temporary files and links, and generations no pointer names (a failed publish's)."""
    named = {Path(os.readlink(wh / p)).name for p in ("current", "previous") if (wh / p).is_symlink()}
    return ([p.name for p in wh.iterdir() if p.name.endswith((".partial", ".previous", ".new", ".wal"))]
            + [p.name for p in (wh / "generations").iterdir() if p.name not in named])


def test_failure_before_the_swap_leaves_serving_files_byte_identical(home):
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh, SECRET)
    before = _serving_state(wh)
    make_build(build, home / "reports", contacts=7)
    with fail_at("publish.before_swap"), pytest.raises(FaultInjected):
        publish(build, wh, SECRET)
    assert _serving_state(wh) == before and len(before) == 2
    assert _leftovers(wh) == []
    with pytest.raises(FileNotFoundError):
        publish(home / "no" / "build.duckdb", wh, SECRET)
    assert _serving_state(wh) == before


def test_identifier_in_an_allowed_column_stops_the_publish(home):
    """An allowed-looking column holding NHS numbers fails the scan: nothing is swapped."""
    build, wh = home / "warehouse" / "build.duckdb", home / "warehouse"
    publish(build, wh, SECRET)
    before = _serving_state(wh)
    con = duckdb.connect(str(build))
    con.execute("CREATE TABLE model.fact_leak AS SELECT nhs_number AS source_id FROM identity.person")
    con.close()
    with pytest.raises(PublishError, match="model.fact_leak.source_id"):
        publish(build, wh, SECRET)
    assert _serving_state(wh) == before
    assert _leftovers(wh) == []


@pytest.mark.parametrize("column", [
    "forename", "surname", "child_surname", "Forename", "SURNAME", "mother_name", "full_name", "nhs_number",
    "NHS_NO", "child_nhs_number", "pers_common_child_id", "upn", "former_upn", "FormerUPN", "child_upn", "uln",
    "ULN", "uprn", "postcode", "addr_address_postcode", "address", "address_line_1", "telephone", "phone_number",
    "email", "dob", "DOB", "date_of_birth", "birth_date", "pers_dob", "record_id", "explanation", "sample"])
@pytest.mark.parametrize("table", ["model.dim_person", "model.fact_new", "marts.any_mart", "audit.check_result",
                                   "docs.columns"])
def test_identifying_column_names_never_pass(table, column):
    schema, name = table.split(".")
    assert classify(schema, name, column)[0] == DROP


@pytest.mark.parametrize("column", ["person_key", "family_key", "mother_person_key", "pers_person_id", "PERSON_ID",
                                    "ONEPupilID", "patient_id", "csc_id", "family_id"])
def test_person_keys_and_ids_are_hashed(column):
    assert classify("model", "fact_x", column)[0] == HASH


def test_unknown_model_columns_fail_closed_and_known_ones_pass():
    assert classify("model", "fact_x", "free_text")[0] == DROP
    for column in ("contact_id", "received_at", "referral_date", "district", "birth_month", "wait_days",
                   "decided_within_24h", "imd_decile", "worker_key"):
        assert classify("model", "fact_x", column)[0] == KEEP, column


def test_dictionary_describes_every_table_and_column(home, tmp_path):
    sql_root = tmp_path / "sql_src" / "assets"
    (sql_root / "marts").mkdir(parents=True)
    (sql_root / "marts" / "timeliness.sql").write_text(textwrap.dedent("""\
        -- marts.mash_timeliness_monthly: how quickly the MASH decides, month by month.
        -- Grain: one row per month_start (received_at in Europe/London).
        --   contacts          contacts received in the month
        --   share_within_24h  decided within 24 hours over contacts; NULL when there
        --                     were no contacts
        CREATE OR REPLACE TABLE marts.mash_timeliness_monthly AS
        SELECT month_start, count(*) AS contacts, avg(x) AS share_within_24h FROM y;
        """))
    (sql_root / "marts" / "two_tables.sql").write_text(textwrap.dedent("""\
        -- Working tables first; nothing in this block names a published table.
        CREATE OR REPLACE TEMP TABLE _work AS SELECT 1;

        -- audit.check_result: every check's outcome. Grain: one row per check run (e.g. per
        -- asset and partition).
        CREATE OR REPLACE TABLE audit.check_result AS
        SELECT run_id,
               check_name,  -- the check's name in quality/thresholds.yaml
               passed
        FROM z;
        """))
    build = home / "warehouse" / "build.duckdb"
    con = duckdb.connect(str(build))
    page = build_dictionary(con, home / "reports", sql_root=sql_root)
    tables = con.execute("SELECT schema, table_name, grain, description, row_count, description_source "
                         "FROM docs.tables").fetchall()
    columns = con.execute("SELECT schema, table_name, column_name, description, description_source "
                          "FROM docs.columns").fetchall()
    catalog = con.execute("""SELECT schema_name, table_name, column_name FROM duckdb_columns()
        WHERE database_name = current_database()
          AND schema_name IN ('identity', 'model', 'marts', 'audit', 'docs')""").fetchall()
    con.close()
    assert {(s, t, c) for s, t, c, _, _ in columns} == set(catalog)
    assert {(s, t) for s, t, *_ in tables} == {(s, t) for s, t, _ in catalog}
    assert all(d and d.strip() for *_, d, _ in columns) and all(t[3] and t[3].strip() for t in tables)
    by_table = {(s, t): (g, d, n, src) for s, t, g, d, n, src in tables}
    assert by_table[("marts", "mash_timeliness_monthly")][:2] == (
        "one row per month_start (received_at in Europe/London)", "how quickly the MASH decides, month by month.")
    assert by_table[("audit", "check_result")][:2] == (
        "one row per check run (e.g. per asset and partition)", "every check's outcome.")
    assert by_table[("model", "dim_person")][1:4] == (
        "One row per person: who they are, without who they are.", 6, "comment")
    # a table no SQL file here makes and descriptions.yaml does not name: inferred, no grain
    assert by_table[("model", "fact_mash_contact")][0] is None
    assert by_table[("model", "fact_mash_contact")][3] == "inferred"
    by_column = {(s, t, c): (d, src) for s, t, c, d, src in columns}
    assert by_column[("marts", "mash_timeliness_monthly", "share_within_24h")] == (
        "decided within 24 hours over contacts; NULL when there were no contacts", "sql")
    assert by_column[("marts", "mash_timeliness_monthly", "contacts")] == ("contacts received in the month", "sql")
    assert by_column[("audit", "check_result", "check_name")] == ("the check's name in quality/thresholds.yaml", "sql")
    assert by_column[("model", "dim_person", "sex")] == ("Sex, harmonised to M, F or U (unknown).", "descriptions.yaml")
    assert by_column[("model", "fact_mash_contact", "decided_within_24h")] == (
        "True when decided within 24h; NULL when it does not apply.", "descriptions.yaml")
    assert by_column[("model", "dim_person", "notes")] == ("Free-text notes.", "comment")
    assert by_column[("model", "dim_person", "person_key")][1] == "descriptions.yaml"
    assert by_column[("model", "fact_mash_contact", "received_at")][0] == "Instant (UTC) of the 'received' event."
    html = page.read_text()
    assert page == home / "reports" / "data_dictionary.html"
    for schema, table, *_ in tables:
        assert f"<code>{schema}.{table}</code>" in html
    undocumented = [(s, t, c) for s, t, c, _, src in columns if src == "inferred"]
    assert undocumented, "the fixture has columns no source describes"
    for s, t, c in undocumented:
        assert f"<li><code>{s}.{t}.{c}</code></li>" in html
    assert "<script" not in html


def test_analytics_dictionary_lists_only_what_analytics_holds(home):
    publish(home / "warehouse" / "build.duckdb", home / "warehouse", SECRET)
    db = home / "warehouse" / "analytics.duckdb"
    documented = set(_query(db, "SELECT schema, table_name, column_name FROM docs.columns"))
    present = set(_query(db, "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
                             "WHERE database_name = current_database()"))
    assert documented == present
    (desc,) = _query(db, "SELECT description FROM docs.columns WHERE table_name = 'dim_person' "
                         "AND column_name = 'person_key'")[0]
    assert "keyed hash" in desc
    assert _query(db, "SELECT comment FROM duckdb_tables() WHERE table_name = 'dim_person'") == [
        ("One row per person: who they are, without who they are.",)]


def test_the_pseudonymisation_rules_file_is_checked_as_it_is_read(tmp_path):
    from assets.publish import load_rules

    good = tmp_path / "rules.yaml"
    good.write_text('rules:\n  - ["*.*.nhs*", drop, "NHS number"]\n  - ["Model.*.*", keep, "the rest"]\n')
    assert load_rules(good) == [("*.*.nhs*", "drop", "NHS number"), ("model.*.*", "keep", "the rest")]
    bad = tmp_path / "bad.yaml"
    bad.write_text('rules:\n  - ["*.*.nhs*", publish, "a typo for an action"]\n')
    with pytest.raises(ValueError, match="rule 1 must be"):
        load_rules(bad)
