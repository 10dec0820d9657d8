"""The education (Capita ONE) writer honours the contract and carries the city's signal.

One small city is written once for the module; each test reads the files back as a
pipeline would (strings only, blank = unknown) and checks one promise.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from sources.identifiers import is_valid_uln, is_valid_upn
from sources.synthetic.config import CityConfig
from sources.synthetic.education import CME_REASONS, EHE_REASONS, AddressBook, ethnicity_codes, write_education
from sources.synthetic.output import census_dates, drop_dates
from sources.synthetic.world import build_world

CONFIG = CityConfig(children=2000, start=date(2024, 1, 1), end=date(2025, 12, 31), go_live=date(2025, 9, 1))

# CONTRACT.md, "education"; written out here, not imported, so the test checks the writer.
CONTRACT = {
    "pupils.csv": "ONEPupilID UPN FormerUPN ULN Surname Forename MiddleNames PreferredSurname FormerSurname DOB "
                  "Sex Ethnicity FirstLanguage AddressLine1 AddressLine2 Town Postcode UPRN YoungCarer ServiceChild",
    "enrolments.csv": "ONEPupilID UPN URN EntryDate LeavingDate EnrolStatus NCyearActual",
    "fsm.csv": "ONEPupilID UPN FSMStartDate FSMEndDate",
    "sen.csv": "ONEPupilID UPN SENProvision SENType1 SENType2",
    "attendance.csv": "ONEPupilID UPN URN Term SessionsPossible SessionsAuthorised SessionsUnauthorised",
    "exclusions.csv": "ExclusionID ONEPupilID UPN URN Category StartDate Sessions Reason1 Reason2 Reason3",
    "ehe.csv": "EHEID ONEPupilID UPN StartDate EndDate Reason",
    "cme.csv": "CMEID ONEPupilID UPN IdentifiedDate Reason ResolvedDate",
}
DATE_COLUMNS = {
    "pupils.csv": ["DOB"], "enrolments.csv": ["EntryDate", "LeavingDate"], "fsm.csv": ["FSMStartDate", "FSMEndDate"],
    "exclusions.csv": ["StartDate"], "ehe.csv": ["StartDate", "EndDate"], "cme.csv": ["IdentifiedDate", "ResolvedDate"],
}
# CODES.md
CBDS_ETHNICITY = set("WBRI WIRI WIRT WOTH WROM MWBC MWBA MWAS MOTH AIND APKN ABAN AOTH BCRB BAFR BOTH CHNE OOTH "
                     "REFU NOBT".split())
SEN_TYPES = set("SPLD MLD SLD PMLD SEMH SLCN HI VI MSI PD ASD OTH NSA".split())
EXCLUSION_REASONS = set("PP PA VP VA BU RA LG DS SM DA DM TH MT OW PH DB".split())
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    world = build_world(CONFIG)
    landing = tmp_path_factory.mktemp("education") / "landing"
    truth = write_education(world, landing)
    return world, landing, truth


def folders(landing):
    return sorted(p for p in (landing / "education").iterdir() if p.is_dir())


def is_full_census(folder) -> bool:
    extract = date.fromisoformat(folder.name)
    return extract == CONFIG.go_live or extract in census_dates(CONFIG.start, CONFIG.end)


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def census_folders(landing):
    return [f for f in folders(landing) if is_full_census(f)]


def all_files(landing):
    for folder in folders(landing):
        for path in sorted(folder.glob("*.csv")):
            yield path


# ---------------------------------------------------------------- drops and manifests
def test_drops_follow_the_census_and_monthly_schedule(city):
    _, landing, _ = city
    assert [f.name for f in folders(landing)] == [d.isoformat() for d in drop_dates("education", CONFIG)]
    full = census_folders(landing)
    assert [f.name for f in full] == ["2025-09-01", "2025-10-16"]
    for folder in folders(landing):
        names = {p.name for p in folder.iterdir()}
        expected = set(CONTRACT) if folder in full else {"ehe.csv", "cme.csv"}
        assert names == expected | {"_manifest.json"}, folder.name


def test_manifests_list_every_file_with_its_rows_and_checksum(city):
    _, landing, _ = city
    for folder in folders(landing):
        manifest = json.loads((folder / "_manifest.json").read_text(encoding="utf-8"))
        assert (manifest["system"], manifest["extract_date"], manifest["mode"]) == ("education", folder.name,
                                                                                    "snapshot")
        assert {f["name"] for f in manifest["files"]} == {p.name for p in folder.glob("*.csv")}
        for entry in manifest["files"]:
            data = (folder / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
            assert len(rows) - 1 == entry["rows"]


# ---------------------------------------------------------------- format
def test_every_file_is_utf8_csv_with_exactly_the_contract_columns(city):
    _, landing, _ = city
    for path in all_files(landing):
        text = path.read_bytes().decode("utf-8")  # strict: raises on anything else
        header = next(csv.reader(io.StringIO(text)))
        assert header == CONTRACT[path.name].split(), path


def test_dates_are_iso_and_flags_true_or_false(city):
    _, landing, _ = city
    for path in all_files(landing):
        frame = read(path)
        for column in DATE_COLUMNS.get(path.name, []):
            values = frame[column][frame[column] != ""]
            assert values.str.match(ISO_DATE).all(), (path, column)
            pd.to_datetime(values, format="%Y-%m-%d")  # real dates, not just the shape
        if path.name == "pupils.csv":
            for flag in ("YoungCarer", "ServiceChild"):
                assert set(frame[flag]) <= {"true", "false"}


def test_codes_come_from_the_code_lists(city):
    _, landing, _ = city
    for folder in census_folders(landing):
        pupils = read(folder / "pupils.csv")
        assert set(pupils["Sex"]) <= {"M", "F", "U"}
        assert set(pupils["Ethnicity"]) <= CBDS_ETHNICITY
        assert pupils["Surname"].ne("").all() and pupils["Forename"].ne("").all()
        enrol = read(folder / "enrolments.csv")
        assert set(enrol["EnrolStatus"]) <= {"C", "M", "S"}
        assert enrol["NCyearActual"].astype(int).between(0, 13).all()
        sen = read(folder / "sen.csv")
        assert set(sen["SENProvision"]) == {"N", "K", "E"}
        assert set(sen["SENType1"]) - {""} <= SEN_TYPES and set(sen["SENType2"]) - {""} <= SEN_TYPES
        assert (sen["SENType1"] == "").eq(sen["SENProvision"] == "N").all(), "a type exactly when there is SEN"
        ex = read(folder / "exclusions.csv")
        assert set(ex["Category"]) <= {"SUSP", "PERM", "LUNCH"}
        for column in ("Reason1", "Reason2", "Reason3"):
            assert set(ex[column]) - {""} <= EXCLUSION_REASONS
        assert ex["Reason1"].ne("").all() and ex["ExclusionID"].is_unique
        assert ex.loc[ex["Category"] != "PERM", "Sessions"].astype(int).gt(0).all()
        att = read(folder / "attendance.csv")
        assert att["Term"].str.match(r"^\d{4}-(AUT|SPR|SUM)$").all()
        # CODES.md has no EHE/CME reason lists yet: the writer's own published lists
        assert set(read(folder / "ehe.csv")["Reason"]) <= set(EHE_REASONS)
        assert set(read(folder / "cme.csv")["Reason"]) <= set(CME_REASONS)


def test_upns_valid_but_for_the_injected_share_and_stable_across_drops(city):
    _, landing, _ = city
    by_id = {}
    for folder in census_folders(landing):
        pupils = read(folder / "pupils.csv")
        valid = pupils["UPN"].map(is_valid_upn)
        assert 0.95 < valid.mean() < 1.0, valid.mean()  # ~1% carry a wrong check letter
        assert pupils["ULN"][pupils["ULN"] != ""].map(is_valid_uln).all()
        for pupil, upn in zip(pupils["ONEPupilID"], pupils["UPN"]):
            assert by_id.setdefault(pupil, upn) == upn, "a pupil's UPN changed between drops"
        assert pupils["ONEPupilID"].is_unique and pupils["ONEPupilID"].str.match(r"^\d{6,7}$").all()


# ---------------------------------------------------------------- referential integrity
def test_every_pupil_written_is_in_the_truth_once(city):
    world, landing, truth = city
    assert list(truth.columns) == ["system", "table", "record_id", "person_key"]
    assert (truth["system"] == "education").all() and (truth["table"] == "pupils").all()
    assert truth["record_id"].is_unique
    assert set(truth["person_key"]) <= set(world.persons["person_key"])
    assert truth["person_key"].is_unique, "ONE holds one record per child"
    written = set()
    for path in all_files(landing):
        written |= set(read(path)["ONEPupilID"])
    assert written == set(truth["record_id"])


def test_truth_matches_the_child_the_record_describes(city):
    world, landing, truth = city
    pupils = read(census_folders(landing)[-1] / "pupils.csv")
    person = truth.set_index("record_id")["person_key"].loc[pupils["ONEPupilID"]].to_numpy()
    real = world.persons.set_index("person_key").loc[person]
    assert (pupils["DOB"].to_numpy() == real["birth_date"].dt.strftime("%Y-%m-%d").to_numpy()).all()
    assert (pupils["Sex"].to_numpy() == real["sex"].to_numpy()).mean() > 0.99
    upn_kept = pupils["UPN"].str.slice(1).to_numpy() == real["upn"].str.slice(1).to_numpy()
    assert upn_kept.all(), "only the check letter of a UPN is ever damaged"


def test_files_refer_only_to_pupils_and_schools_that_exist(city):
    world, landing, _ = city
    urns = set(world.schools["urn"])
    for folder in census_folders(landing):
        pupils = set(read(folder / "pupils.csv")["ONEPupilID"])
        for name in ("enrolments.csv", "fsm.csv", "sen.csv", "attendance.csv", "exclusions.csv", "ehe.csv",
                     "cme.csv"):
            frame = read(folder / name)
            assert set(frame["ONEPupilID"]) <= pupils, (folder.name, name)
            if "URN" in frame:
                assert set(frame["URN"]) <= urns, (folder.name, name)
        assert len(read(folder / "sen.csv")) == len(pupils)


def test_each_pupil_is_on_roll_home_educated_or_missing(city):
    _, landing, _ = city
    for folder in census_folders(landing):
        day = folder.name
        enrol = read(folder / "enrolments.csv")
        ehe, cme = read(folder / "ehe.csv"), read(folder / "cme.csv")
        on_roll = set(enrol.loc[(enrol["LeavingDate"] == "") | (enrol["LeavingDate"] >= day), "ONEPupilID"])
        home = set(ehe.loc[(ehe["StartDate"] <= day) & (ehe["EndDate"] == ""), "ONEPupilID"])
        missing = set(cme.loc[(cme["IdentifiedDate"] <= day) & (cme["ResolvedDate"] == ""), "ONEPupilID"])
        assert set(read(folder / "pupils.csv")["ONEPupilID"]) == on_roll | home | missing
        # one current main enrolment per pupil on roll (a subsidiary one may sit beside it)
        current = enrol[(enrol["LeavingDate"] == "") & (enrol["EnrolStatus"] != "S")]
        assert current["ONEPupilID"].is_unique


def test_nothing_is_shown_before_it_has_happened(city):
    _, landing, _ = city
    for folder in folders(landing):
        day = folder.name
        for name, column in (("enrolments.csv", "LeavingDate"), ("fsm.csv", "FSMEndDate"),
                             ("exclusions.csv", "StartDate"), ("ehe.csv", "EndDate"), ("ehe.csv", "StartDate"),
                             ("cme.csv", "ResolvedDate"), ("cme.csv", "IdentifiedDate")):
            if (folder / name).exists():
                values = read(folder / name)[column]
                assert (values[values != ""] <= day).all(), (day, name, column)
        if (folder / "attendance.csv").exists():
            terms = read(folder / "attendance.csv")["Term"]
            assert "2025-AUT" not in set(terms), "the autumn term is reported once it has finished"
            assert "2025-SUM" in set(terms)  # a term in arrears: the summer term is the newest


def test_enrolment_dates_and_attendance_sessions_are_consistent(city):
    _, landing, _ = city
    folder = census_folders(landing)[-1]
    enrol = read(folder / "enrolments.csv")
    ended = enrol[enrol["LeavingDate"] != ""]
    assert (ended["EntryDate"] <= ended["LeavingDate"]).all()
    att = read(folder / "attendance.csv")
    possible, authorised, unauthorised = (att[c].astype(int) for c in
                                          ("SessionsPossible", "SessionsAuthorised", "SessionsUnauthorised"))
    assert possible.between(1, 140).all() and (authorised >= 0).all() and (unauthorised >= 0).all()
    assert (authorised + unauthorised <= possible).all()
    assert not att.duplicated(["ONEPupilID", "URN", "Term"]).any()


# ---------------------------------------------------------------- signal
def _term_middle(terms: pd.Series) -> np.ndarray:
    middle = {"SPR": "-02-20", "SUM": "-06-01", "AUT": "-10-25"}
    return pd.to_datetime(terms.str.slice(0, 4) + terms.str.slice(5).map(middle)).to_numpy()


def test_absence_rises_with_household_needs(city):
    world, landing, truth = city
    att = read(census_folders(landing)[-1] / "attendance.csv")
    person = truth.set_index("record_id")["person_key"].loc[att["ONEPupilID"]].to_numpy()
    household = world.persons.set_index("person_key")["household_key"].loc[person].to_numpy()
    needs = world.needs.at(household, _term_middle(att["Term"]))
    strained = needs[["domestic_abuse", "substance_misuse", "mental_health", "housing", "child_behaviour"]].any(
        axis=1).to_numpy()
    absent = (att["SessionsAuthorised"].astype(int) + att["SessionsUnauthorised"].astype(int)) / att[
        "SessionsPossible"].astype(int)
    assert strained.mean() > 0.1
    assert absent[strained].mean() > 1.4 * absent[~strained].mean()
    persistent = (absent >= 0.1).mean()
    assert 0.12 < persistent < 0.32, persistent  # about a fifth of pupils are persistently absent
    assert (absent >= 0.5).mean() < 0.05


def test_free_school_meals_follow_household_poverty(city):
    world, landing, truth = city
    folder = census_folders(landing)[-1]
    pupils = read(folder / "pupils.csv")
    fsm = read(folder / "fsm.csv")
    current = set(fsm.loc[(fsm["FSMStartDate"] <= folder.name) & (fsm["FSMEndDate"] == ""), "ONEPupilID"])
    eligible = pupils["ONEPupilID"].isin(current).to_numpy()
    person = truth.set_index("record_id")["person_key"].loc[pupils["ONEPupilID"]].to_numpy()
    household = world.persons.set_index("person_key")["household_key"].loc[person].to_numpy()
    poor = world.needs.at(household, np.full(len(household), np.datetime64("2025-08-01")))["poverty"].to_numpy()
    assert 0.08 < eligible.mean() < 0.35
    assert eligible[poor].mean() > 2 * eligible[~poor].mean()


def test_suspensions_concentrate_on_secondary_age_and_behaviour_concerns(city):
    world, landing, truth = city
    folder = census_folders(landing)[-1]
    ex = read(folder / "exclusions.csv")
    susp = ex[ex["Category"] == "SUSP"]
    enrol = read(folder / "enrolments.csv").drop_duplicates("ONEPupilID", keep="last")
    year = enrol.set_index("ONEPupilID")["NCyearActual"].astype(int)
    secondary = year.reindex(susp["ONEPupilID"]).fillna(0).to_numpy() >= 7
    assert secondary.mean() > 0.6
    person = truth.set_index("record_id")["person_key"].loc[susp["ONEPupilID"]].to_numpy()
    household = world.persons.set_index("person_key")["household_key"].loc[person].to_numpy()
    behaviour = world.needs.at(household, pd.to_datetime(susp["StartDate"]).to_numpy())["child_behaviour"]
    pupils = truth.set_index("record_id")["person_key"].loc[read(folder / "pupils.csv")["ONEPupilID"]].to_numpy()
    everyone = world.persons.set_index("person_key")["household_key"].loc[pupils].to_numpy()
    base = world.needs.at(everyone, np.full(len(everyone), np.datetime64("2025-03-01")))["child_behaviour"]
    assert behaviour.mean() > 1.8 * base.mean(), (behaviour.mean(), base.mean())


# ---------------------------------------------------------------- determinism and helpers
def test_same_config_gives_byte_identical_files(city, tmp_path):
    world, landing, truth = city
    again = write_education(world, tmp_path / "landing")
    pd.testing.assert_frame_equal(truth, again)
    for path in all_files(landing):
        twin = tmp_path / "landing" / path.relative_to(landing)
        assert twin.read_bytes() == path.read_bytes(), path


def test_ethnicity_is_a_cbds_code_shared_by_a_household(city):
    world, _, _ = city
    codes = ethnicity_codes(world)
    assert codes.index.equals(world.persons.index)
    assert set(codes) <= CBDS_ETHNICITY
    per_household = pd.DataFrame({"h": world.persons["household_key"], "c": codes}).groupby("h")["c"].nunique()
    assert (per_household == 1).all()
    assert codes.equals(ethnicity_codes(world))


@pytest.mark.parametrize("config", [
    CityConfig(children=300, seed=7, start=date(2025, 1, 1), end=date(2025, 6, 30), go_live=date(2025, 6, 20)),
    CityConfig(children=50, seed=3, start=date(2025, 1, 1), end=date(2025, 2, 28), go_live=date(2025, 1, 1)),
])
def test_tiny_and_short_cities_still_write_every_drop(config, tmp_path):
    truth = write_education(build_world(config), tmp_path)
    written = sorted(p.name for p in (tmp_path / "education").iterdir())
    assert written == [d.isoformat() for d in drop_dates("education", config)]
    assert len(truth) > 0 and all((tmp_path / "education" / d / "_manifest.json").exists() for d in written)


def test_table_keys_are_unique_as_the_reader_contract_declares(city):
    _, landing, _ = city
    keys = {"pupils.csv": ["ONEPupilID"], "enrolments.csv": ["ONEPupilID", "URN", "EntryDate"],
            "fsm.csv": ["ONEPupilID", "FSMStartDate"], "sen.csv": ["ONEPupilID"],
            "attendance.csv": ["ONEPupilID", "URN", "Term"], "exclusions.csv": ["ExclusionID"],
            "ehe.csv": ["EHEID"], "cme.csv": ["CMEID"]}
    for path in all_files(landing):
        assert not read(path).duplicated(keys[path.name]).any(), path
    fsm = read(census_folders(landing)[-1] / "fsm.csv")
    nxt = fsm.groupby("ONEPupilID")["FSMStartDate"].shift(-1)
    ended = fsm["FSMEndDate"].replace("", "9999-12-31")
    assert (nxt.isna() | (nxt > ended)).all(), "eligibility periods of a pupil never overlap"


def test_the_prepared_address_lookup_agrees_with_the_world(city):
    world, _, _ = city
    rng = np.random.default_rng(0)
    households = world.needs.household_keys[rng.integers(0, len(world.needs.household_keys), 500)]
    when = np.datetime64("2022-01-01") + rng.integers(0, 4 * 365, 500).astype("timedelta64[D]")
    book = AddressBook(world)
    mine = book.uprn[book.at(world.needs.row_index(households), when)]
    theirs = world.address_at(households, when)["uprn"].to_numpy(dtype=object)
    assert (mine == theirs).all()
