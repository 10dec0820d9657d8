"""Free text bound for analytics.duckdb: identifiers typed inside a value never get there.

On tests/test_publish.py's hand-made build database (real DuckDB files): referrer_org
(kept, scrubbed) and reason_not_accepted (kept as codes only) carry a name, a birth date,
an NHS number and a postcode typed into one value; the final scan then searches inside
every kept value and stops the publish, naming column and kind but never the value.
"""

from __future__ import annotations

import hashlib
import uuid

import duckdb
import pytest

from assets.dictionary import build_dictionary
from assets.publish import IDENTIFIER_SHAPES, PublishError, publish
from tests.test_publish import SECRET, _values, make_build

TYPED = "Jane Smith 01/02/2015 999 123 4567 LS1 4AB"
PIECES = ("Jane Smith", "01/02/2015", "999 123 4567", "LS1 4AB")
KNOWN_SURNAME = "Quennell"  # a person identity holds (tests/test_publish.py PEOPLE)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("EARLYHELP_PSEUDONYM_KEY", raising=False)
    build = make_build(tmp_path / "warehouse" / "build.duckdb", tmp_path / "reports", contacts=6)
    with duckdb.connect(str(build)) as con:
        con.execute("ALTER TABLE model.fact_mash_contact ADD COLUMN referrer_org VARCHAR")
        con.execute("""UPDATE model.fact_mash_contact SET referrer_org = CASE contact_id
            WHEN 'C0' THEN 'Kingsmere Police' WHEN 'C1' THEN ? WHEN 'C2' THEN ?
            WHEN 'C3' THEN '0-19 Health Visiting Service' WHEN 'C4' THEN 'Kingsmere General Hospital ED' END""",
                    [TYPED, f"the {KNOWN_SURNAME} family's neighbour"])
        con.execute("""CREATE TABLE model.fact_eh_referral AS SELECT * FROM (VALUES
            ('R1', 'THRESHOLD_NOT_MET'), ('R2', ?), ('R3', 'mum refused, family moved to Leeds'),
            ('R4', NULL), ('R5', 'CONSENT_NOT_GIVEN'), ('R6', upper(?))) t(referral_id, reason_not_accepted)""",
                    [TYPED, KNOWN_SURNAME])
        con.execute("""CREATE TABLE marts.closures_monthly AS SELECT * FROM (VALUES
            (DATE '2025-10-01', 'early_help', 'MOVED_AWAY', 3), (DATE '2025-10-01', 'early_help', ?, 1))
            t(month_start, service, reason, closures)""", [TYPED])
        con.execute("""CREATE TABLE model.fact_camhs_referral AS SELECT 'Q1' AS request_id,
            ['ANX', ?, 'ASD'] AS reason_codes""", [TYPED])
        build_dictionary(con, tmp_path / "reports")  # describes the new columns too
    return tmp_path


def query(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_identifiers_typed_into_free_text_never_reach_analytics(home):
    wh = home / "warehouse"
    result = publish(wh / "build.duckdb", wh, SECRET)
    analytics, identifiable = wh / "analytics.duckdb", wh / "identifiable.duckdb"
    values = _values(analytics)
    assert not [v for v in values if v and any(p in v for p in PIECES)], "a piece of the typed text was published"
    assert not [v for v in values if v and KNOWN_SURNAME.lower() in v.lower()]
    # what is left is still useful: organisations and codes pass untouched
    assert query(analytics, "SELECT contact_id, referrer_org FROM model.fact_mash_contact ORDER BY 1") == [
        ("C0", "Kingsmere Police"), ("C1", None), ("C2", None), ("C3", "0-19 Health Visiting Service"),
        ("C4", "Kingsmere General Hospital ED"), ("C5", None)]
    assert query(analytics, "SELECT reason_not_accepted FROM model.fact_eh_referral ORDER BY referral_id") == [
        ("THRESHOLD_NOT_MET",), (None,), (None,), (None,), ("CONSENT_NOT_GIVEN",), (None,)]
    assert query(analytics, "SELECT reason FROM marts.closures_monthly ORDER BY closures DESC") == [("MOVED_AWAY",), (None,)]
    assert query(analytics, "SELECT reason_codes FROM model.fact_camhs_referral") == [(["ANX", None, "ASD"],)]
    assert result["analytics"]["free_text"]["model.fact_mash_contact.referrer_org"] == {"action": "scrub", "withheld": 2}
    assert result["analytics"]["free_text"]["model.fact_eh_referral.reason_not_accepted"]["withheld"] == 3
    # the analysts' dictionary says so
    (description,) = query(analytics, "SELECT description FROM docs.columns WHERE column_name = 'referrer_org'")[0]
    assert "is NULL here" in description
    # the restricted file keeps the text as recorded
    assert query(identifiable, "SELECT referrer_org FROM model.fact_mash_contact WHERE contact_id = 'C1'") == [(TYPED,)]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serving_tree(wh):
    """Every path under the warehouse folder but the build database and its lock."""
    return sorted(str(p.relative_to(wh)) for p in wh.rglob("*") if not p.name.startswith(("build.duckdb", ".publish")))


SMUGGLED = [("NHS number", "NHS 999 123 4567."), ("NHS number", "ref:9991234567;"), ("NHS number", "999-123-4567"),
            ("UPN", "pupil A123456789012 at school"), ("postcode", "lives at LS1 4AB now"),
            ("postcode", "ZX40AG"), ("date", "born 01/02/2015"), ("date", "dob 2015-02-01"),
            ("date", "dob 1st February 2015"), ("date", "1.2.15")]


@pytest.mark.parametrize("kind, value", SMUGGLED, ids=[v for _, v in SMUGGLED])
def test_a_value_smuggled_into_a_kept_column_stops_the_publish(home, kind, value):
    """A KEEP column (decision: a code) holds typed text no scrub saw. Columns holding
    hashed-looking keys, UUIDs, codes and coarse dates beside it are not reported."""
    wh = home / "warehouse"
    build = wh / "build.duckdb"
    publish(build, wh, SECRET)
    before = {n: sha256(wh / n) for n in ("identifiable.duckdb", "analytics.duckdb")}
    on_disk = serving_tree(wh)
    with duckdb.connect(str(build)) as con:
        con.execute("UPDATE model.fact_mash_contact SET decision = ? WHERE contact_id = 'C2'", [value])
        con.execute("""CREATE TABLE model.fact_lookalike AS SELECT * FROM (VALUES
            (?, ?, 'MC0000010', 'E01900000', '2025-SPR', '2014-15', '9992001', '5-10', 'EH South', 'W1234')) t(
            source_id, request_id, contact_id, lsoa, term, financial_year, laestab, route, team, worker_id)""",
                    [hashlib.sha256(b"x").hexdigest()[:16], str(uuid.UUID(int=1234567890123))])
    with pytest.raises(PublishError) as stopped:
        publish(build, wh, SECRET)
    message = str(stopped.value)
    assert f"model.fact_mash_contact.decision holds a value containing something shaped like a {kind}" in message
    assert "fact_lookalike" not in message
    assert value not in message and not any(piece in message for piece in value.split() if len(piece) > 4)
    assert {n: sha256(wh / n) for n in before} == before
    assert serving_tree(wh) == on_disk  # nothing of the failed publish is left


@pytest.mark.parametrize("text, kinds", [
    ("Jane Smith 01/02/2015 999 123 4567 LS1 4AB", {"NHS number", "postcode", "date"}),
    ("a1234567890b", set()),                                  # inside a hex digest: no edge
    ("c8920328-9741-45d3-9957-143c82c6405b", set()),          # a UUID
    ("18c7398b074041e4bfa765fff3642b92", set()),
    ("MC0000010 E01900000 2025-SPR 2014-15 0-19 5-10", set()),
    ("9991234567", {"NHS number"}), ("A123456789012", {"UPN"}), ("zx4 0ag", {"postcode"}),
    ("12 May 2015", {"date"}), ("2015/2/1", {"date"}),
    ("1st February 2015", {"date"}), ("01-Feb-2015", {"date"}), ("3 sept. 14", {"date"}),
    # FHIR resource ids of the default city: hex runs that read like "51 feb ... 80", "12 dec 201"
    ("51febf80-a7cc-4b76-aa68-4c7341442ca6", set()), ("12dec201-3ac1-4eeb-a969-de25d0a4c262", set()),
    ("04dec213-6426-4023-a76a-94f1f3989892", set()),
])
def test_identifier_shapes_are_found_inside_values_and_only_there(text, kinds):
    with duckdb.connect() as con:
        found = {kind for kind, pattern in IDENTIFIER_SHAPES.items()
                 if con.execute("SELECT regexp_matches(?, ?)", [text, pattern]).fetchone()[0]}
    assert found == kinds
