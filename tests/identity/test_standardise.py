"""Standardisation (assets/identity/sql/standardise.sql) on a hand-written
identity.source_person: the folded values linking compares, and the identifiers it may
use as keys.

Each test writes a few records into a real DuckDB file, runs ``standardise`` and reads
identity.standardised_record back by record_id.
"""

from __future__ import annotations

from datetime import date

import duckdb
from assets.identity.link import standardise
from sources.identifiers import UPN_ALPHABET, is_valid_nhs_number, is_valid_upn, nhs_check_digit, upn_check_letter

SOURCE_COLUMNS = {
    "system": "VARCHAR", "table_name": "VARCHAR", "record_id": "VARCHAR", "forename": "VARCHAR",
    "middle_names": "VARCHAR", "surname": "VARCHAR", "alt_forename": "VARCHAR", "alt_surname": "VARCHAR",
    "dob": "DATE", "dob_estimated": "BOOLEAN", "sex": "VARCHAR", "postcode": "VARCHAR", "address": "VARCHAR",
    "uprn": "VARCHAR", "nhs_number": "VARCHAR", "upn": "VARCHAR", "former_upn": "VARCHAR", "csc_id": "VARCHAR",
    "is_deleted": "BOOLEAN", "role": "VARCHAR",
}


def valid_nhs(base: int) -> str:
    """The first valid 999-range (synthetic) NHS number at or after nine digits ``base``."""
    while nhs_check_digit(str(base)) is None:
        base += 1
    number = f"{base}{nhs_check_digit(str(base))}"
    assert is_valid_nhs_number(number) and number.startswith("999")
    return number


def broken_nhs(number: str) -> str:
    """The same number with a wrong check digit."""
    wrong = f"{number[:9]}{(int(number[9]) + 1) % 10}"
    assert not is_valid_nhs_number(wrong)
    return wrong


def valid_upn(last_twelve: str) -> str:
    upn = upn_check_letter(last_twelve) + last_twelve
    assert is_valid_upn(upn)
    return upn


def broken_upn(upn: str) -> str:
    wrong = UPN_ALPHABET[(UPN_ALPHABET.index(upn[0]) + 1) % len(UPN_ALPHABET)] + upn[1:]
    assert not is_valid_upn(wrong)
    return wrong


def standardised(tmp_path, *records: dict) -> dict[str, dict]:
    """Write records (defaults: system 'test', table 'records', a name and a dob) to
    identity.source_person in a DuckDB file, standardise, and return the rows by record_id."""
    with duckdb.connect(str(tmp_path / "build.duckdb")) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS identity")
        con.execute("CREATE OR REPLACE TABLE identity.source_person ("
                    + ", ".join(f"{c} {t}" for c, t in SOURCE_COLUMNS.items()) + ")")
        rows = []
        for i, record in enumerate(records):
            row = {"system": "test", "table_name": "records", "record_id": str(i + 1),
                   "forename": "Sam", "surname": "Smith", "dob": date(2015, 6, 20), **record}
            rows.append([row.get(c) for c in SOURCE_COLUMNS])
        con.executemany(f"INSERT INTO identity.source_person VALUES ({', '.join('?' for _ in SOURCE_COLUMNS)})",
                        rows)
        standardise(con)
        cur = con.execute("SELECT * FROM identity.standardised_record")
        names = [d[0] for d in cur.description]
        out = {r["record_id"]: r for r in (dict(zip(names, row)) for row in cur.fetchall())}
    assert len(out) == len(records), "one standardised row per source record"
    return out


# ---------------------------------------------------------------- names
def test_names_fold_case_accents_and_letters_without_an_accent_form(tmp_path):
    got = standardised(tmp_path,
                       {"record_id": "zoe", "forename": "Zoë", "surname": "Müller"},
                       {"record_id": "lukasz", "forename": "Łukasz", "surname": "  WIŚNIEWSKI "},
                       {"record_id": "upper", "forename": "ZOE", "surname": "MULLER"})
    assert (got["zoe"]["forename"], got["zoe"]["surname"]) == ("zoe", "muller")
    assert (got["lukasz"]["forename"], got["lukasz"]["surname"]) == ("lukasz", "wisniewski")
    # the accented and the plain capitalised spellings are the same name after folding
    assert (got["upper"]["forename"], got["upper"]["surname"]) == ("zoe", "muller")


def test_apostrophes_and_hyphens_are_removed_and_a_double_barrelled_surname_keeps_its_parts(tmp_path):
    got = standardised(tmp_path,
                       {"record_id": "obrien", "forename": "Aoife", "surname": "O'Brien"},
                       {"record_id": "barrel", "forename": "Mia", "surname": "Harris-Parker"},
                       {"record_id": "spaced", "forename": "Mia", "surname": "Harris Parker"},
                       {"record_id": "single", "forename": "Mia", "surname": "Parker"})
    assert got["obrien"]["surname"] == "obrien"
    assert got["obrien"]["surname_parts"] == ["obrien"]
    assert got["barrel"]["surname"] == "harrisparker"
    assert got["barrel"]["surname_parts"] == ["harris", "parker"]
    # hyphen or space: the same surname
    assert got["spaced"]["surname"] == "harrisparker"
    assert got["spaced"]["surname_parts"] == ["harris", "parker"]
    assert got["single"]["surname_parts"] == ["parker"]


def test_a_second_forename_moves_to_middle_names(tmp_path):
    got = standardised(tmp_path, {"forename": "Mary Ann", "middle_names": "Louise"})
    assert got["1"]["forename"] == "mary"
    assert got["1"]["middle_names"] == "ann louise"


def test_nickname_groups_hold_the_formal_name(tmp_path):
    got = standardised(tmp_path,
                       {"record_id": "liv", "forename": "Liv"},
                       {"record_id": "jimmy", "forename": "Jimmy"},
                       {"record_id": "olivia", "forename": "Olivia"},
                       {"record_id": "known_as", "forename": "Olivia", "alt_forename": "Liv"},
                       {"record_id": "zara", "forename": "Zara"})
    assert got["liv"]["forename"] == "liv"
    assert "olivia" in got["liv"]["forename_group"] and "liv" in got["liv"]["forename_group"]
    assert "james" in got["jimmy"]["forename_group"]
    assert "olivia" in got["olivia"]["forename_group"]
    assert "liv" in got["known_as"]["forename_group"]
    # a name with no nickname entry stands for itself only
    assert got["zara"]["forename_group"] == ["zara"]
    assert "james" not in got["liv"]["forename_group"]


# ---------------------------------------------------------------- birth date
def test_dob_swapped_exchanges_day_and_month_only_where_that_is_another_date(tmp_path):
    got = standardised(tmp_path,
                       {"record_id": "swappable", "dob": date(2012, 3, 7)},
                       {"record_id": "day_13", "dob": date(2012, 3, 13)},
                       {"record_id": "same", "dob": date(2012, 5, 5)},
                       {"record_id": "dec", "dob": date(2019, 12, 1)},
                       {"record_id": "estimated", "dob": date(2012, 3, 7), "dob_estimated": True})
    assert got["swappable"]["dob"] == date(2012, 3, 7)
    assert got["swappable"]["dob_swapped"] == date(2012, 7, 3)
    assert got["day_13"]["dob_swapped"] is None
    assert got["same"]["dob_swapped"] is None
    assert got["dec"]["dob_swapped"] == date(2019, 1, 12)
    # an estimated date is kept apart and never compared as an exact one
    assert got["estimated"]["dob"] is None and got["estimated"]["dob_swapped"] is None
    assert got["estimated"]["dob_approximate"] == date(2012, 3, 7)
    assert got["swappable"]["birth_year"] == 2012


# ---------------------------------------------------------------- sex
SEX_CODES = [
    ("M", "M"), ("F", "F"), ("U", None),  # Mosaic, the MASH
    ("male", "M"), ("female", "F"), ("other", None), ("unknown", None),  # health (FHIR gender)
    ("Male", "M"), ("Female", "F"), (" m ", "M"),  # early help
    ("1", "M"), ("2", "F"), ("9", None), ("", None), (None, None),  # education census codes
]


def test_sex_codes_of_every_system_become_m_or_f(tmp_path):
    got = standardised(tmp_path, *({"record_id": str(i), "sex": raw} for i, (raw, _) in enumerate(SEX_CODES)))
    assert {raw: got[str(i)]["sex"] for i, (raw, _) in enumerate(SEX_CODES)} == dict(SEX_CODES)


# ---------------------------------------------------------------- postcode and address
POSTCODES = [  # raw -> (postcode, sector, district)
    ("zx11aa", ("ZX1 1AA", "ZX1 1", "ZX1")),
    (" ZX1  1AA ", ("ZX1 1AA", "ZX1 1", "ZX1")),
    ("zx10 9bd", ("ZX10 9BD", "ZX10 9", "ZX10")),
    ("ZX1A 2BE", ("ZX1A 2BE", "ZX1A 2", "ZX1A")),
    ("XXXX", (None, None, None)),  # placeholders (sources/sql/macros.sql)
    ("ZZ99 9ZZ", (None, None, None)),  # no fixed abode
    ("zz993cz", (None, None, None)),
    ("NFA", (None, None, None)),
    ("not known", (None, None, None)),
    ("ZX1 1CI", (None, None, None)),  # C and I never appear in the inward code's letters
    (None, (None, None, None)),
]


def test_postcodes_get_a_canonical_form_sector_and_district_and_placeholders_none(tmp_path):
    got = standardised(tmp_path, *({"record_id": str(i), "postcode": raw} for i, (raw, _) in enumerate(POSTCODES)))
    found = {raw: tuple(got[str(i)][c] for c in ("postcode", "postcode_sector", "postcode_district"))
             for i, (raw, _) in enumerate(POSTCODES)}
    assert found == dict(POSTCODES)


def test_address_and_uprn_are_folded(tmp_path):
    row = standardised(tmp_path, {"address": "Flat 2,  12 St. Mary's Road", "uprn": "1000-2345"})["1"]
    assert row["address"] == "flat 2 12 st mary s road"
    assert row["uprn"] == "10002345"


# ---------------------------------------------------------------- identifiers
def test_nhs_numbers_are_validated_by_modulus_11_and_typed_spacing_is_normalised(tmp_path):
    good, other = valid_nhs(999123456), valid_nhs(999765432)
    bad = broken_nhs(good)
    got = standardised(tmp_path,
                       {"record_id": "good", "nhs_number": good},
                       {"record_id": "spaced", "nhs_number": f"{good[:3]} {good[3:6]} {good[6:]}"},
                       {"record_id": "dashed", "nhs_number": f"{other[:3]}-{other[3:6]}-{other[6:]}"},
                       {"record_id": "bad", "nhs_number": bad},
                       {"record_id": "short", "nhs_number": good[:9]},
                       {"record_id": "letters", "nhs_number": "99912345AB"},
                       {"record_id": "none", "nhs_number": None})
    assert (got["good"]["nhs_number"], got["good"]["nhs_number_invalid"]) == (good, False)
    assert (got["spaced"]["nhs_number"], got["spaced"]["nhs_number_invalid"]) == (good, False)
    assert (got["dashed"]["nhs_number"], got["dashed"]["nhs_number_invalid"]) == (other, False)
    for key in ("bad", "short", "letters"):
        assert got[key]["nhs_number"] is None, key
        assert got[key]["nhs_number_invalid"] is True, key
    assert (got["none"]["nhs_number"], got["none"]["nhs_number_invalid"]) == (None, False)


def test_nhs_number_whose_check_digit_would_be_10_is_invalid(tmp_path):
    base = next(b for b in range(999000000, 999001000) if nhs_check_digit(str(b)) is None)
    number = f"{base}0"
    assert not is_valid_nhs_number(number)
    row = standardised(tmp_path, {"nhs_number": number})["1"]
    assert row["nhs_number"] is None and row["nhs_number_invalid"] is True


def test_upns_are_validated_by_their_check_letter(tmp_path):
    upn, former = valid_upn("820200125001"), valid_upn("820200118007")
    temporary = valid_upn("82020012500A")  # a temporary UPN ends in a letter
    got = standardised(tmp_path,
                       {"record_id": "good", "upn": upn.lower() + " ", "former_upn": former},
                       {"record_id": "temporary", "upn": temporary},
                       {"record_id": "bad", "upn": broken_upn(upn), "former_upn": broken_upn(former)},
                       {"record_id": "shape", "upn": "I20200125001X"},
                       {"record_id": "none"})
    assert (got["good"]["upn"], got["good"]["upn_invalid"]) == (upn, False)
    assert got["good"]["former_upn"] == former
    assert (got["temporary"]["upn"], got["temporary"]["upn_invalid"]) == (temporary, False)
    assert (got["bad"]["upn"], got["bad"]["upn_invalid"]) == (None, True)
    assert got["bad"]["former_upn"] is None
    assert (got["shape"]["upn"], got["shape"]["upn_invalid"]) == (None, True)
    assert (got["none"]["upn"], got["none"]["upn_invalid"]) == (None, False)


def test_record_key_carries_provenance_and_roles_are_normalised(tmp_path):
    got = standardised(tmp_path,
                       {"system": "education", "table_name": "pupils", "record_id": "E1", "role": "Child"},
                       {"system": "health", "table_name": "RelatedPerson", "record_id": "R1", "role": "ADULT"},
                       {"system": "mash", "table_name": "contacts", "record_id": "M1", "role": "referrer",
                        "is_deleted": True})
    assert got["E1"]["record_key"] == "education/pupils/E1"
    assert (got["E1"]["system"], got["E1"]["table_name"]) == ("education", "pupils")
    assert (got["E1"]["role"], got["R1"]["role"], got["M1"]["role"]) == ("child", "adult", None)
    assert (got["E1"]["is_deleted"], got["M1"]["is_deleted"]) == (False, True)
