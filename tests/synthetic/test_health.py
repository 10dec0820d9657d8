"""The health writer: FHIR R4 NDJSON drops as CONTRACT.md describes them, with the truth
records that identity reconciliation is judged on and the risk signal it carries."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from sources.identifiers import is_valid_nhs_number
from sources.synthetic.config import CityConfig
from sources.synthetic.health import write_health
from sources.synthetic.output import drop_dates
from sources.synthetic.world import build_world

CONFIG = CityConfig(children=2000, start=date(2024, 1, 1), end=date(2025, 12, 31), go_live=date(2025, 9, 1))
RESOURCES = ("Patient", "RelatedPerson", "Encounter", "ServiceRequest")
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VERIFICATION_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
ETHNIC_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ATTENDANCE_URL = "urn:earlyhelp:attendance-status"
REJECTION_URL = "urn:earlyhelp:rejection-date"
DISCHARGE_URL = "urn:earlyhelp:discharge-date"
NHS_ETHNIC_LETTERS = set("ABCDEFGHJKLMNPRSZ")
CAMHS_SOURCES = {"A1", "A2", "B1", "B2", "C1", "C2", "C3", "E1", "E2", "E3", "E4", "E5", "E6",
                 "F1", "F2", "F3", "G4", "H1", "P1"}
RISK_NEEDS = ["mental_health", "substance_misuse", "domestic_abuse", "housing"]


@pytest.fixture(scope="module")
def world():
    return build_world(CONFIG)


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    landing = tmp_path_factory.mktemp("health_landing")
    truth = write_health(world, landing)
    return landing, truth


@pytest.fixture(scope="module")
def drops(written):
    """Every drop, parsed: {extract date: {resource type: [resources]}}."""
    landing, _ = written
    out = {}
    for folder in sorted((landing / "health").iterdir()):
        out[date.fromisoformat(folder.name)] = {
            name: [json.loads(line) for line in (folder / f"{name}.ndjson").read_text("utf-8").splitlines()]
            for name in RESOURCES
        }
    return out


def extension(resource: dict, url: str) -> dict | None:
    """Extensions are found by url, never by position (CONTRACT.md)."""
    found = [e for e in resource.get("extension", []) if e["url"] == url]
    assert len(found) <= 1
    return found[0] if found else None


def nhs_identifier(resource: dict) -> dict | None:
    found = [i for i in resource.get("identifier", []) if i["system"] == NHS_SYSTEM]
    return found[0] if found else None


def reference_id(reference: dict) -> str:
    kind, _, rid = reference["reference"].partition("/")
    assert kind == "Patient"
    return rid


def no_empty_values(value) -> bool:
    """FHIR JSON never carries nulls, empty strings, empty arrays or empty objects."""
    if isinstance(value, dict):
        return bool(value) and all(no_empty_values(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(no_empty_values(v) for v in value)
    return value is not None and value != ""


# ------------------------------------------------------------------ files and manifests
def test_one_drop_per_health_extract_date(drops):
    assert list(drops) == drop_dates("health", CONFIG)


def test_manifests_match_rows_and_checksums(written):
    landing, _ = written
    for folder in sorted((landing / "health").iterdir()):
        manifest = json.loads((folder / "_manifest.json").read_text())
        assert manifest["system"] == "health" and manifest["mode"] == "snapshot"
        assert manifest["extract_date"] == folder.name
        assert {f["name"] for f in manifest["files"]} == {f"{name}.ndjson" for name in RESOURCES}
        for entry in manifest["files"]:
            data = (folder / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert len(data.splitlines()) == entry["rows"]
            assert data == b"" or data.endswith(b"\n")


def test_every_line_is_a_resource_of_its_file_without_nulls(drops):
    for extract_date, resources in drops.items():
        for name, items in resources.items():
            assert items, f"{extract_date} {name} is empty"
            assert all(r["resourceType"] == name for r in items)
            ids = [r["id"] for r in items]
            assert len(set(ids)) == len(ids), f"duplicate ids in {name}"
            assert ids == sorted(ids), "files are ordered by id so that a seed gives the same bytes"
            assert all(no_empty_values(r) for r in items)


def test_same_world_gives_identical_files(world, written, tmp_path):
    landing, truth = written
    again = write_health(world, tmp_path)
    pd.testing.assert_frame_equal(truth, again)
    for path in sorted((landing / "health").rglob("*.ndjson")):
        assert (tmp_path / path.relative_to(landing)).read_bytes() == path.read_bytes(), path.name


# ------------------------------------------------------------------ Patient
def test_patients_are_the_children_aged_0_to_19_on_the_extract_date(world, written, drops):
    _, truth = written
    person_of = truth.set_index("record_id")["person_key"]
    persons = world.persons.set_index("person_key")
    for extract_date, resources in drops.items():
        keys = person_of.loc[[p["id"] for p in resources["Patient"]]]
        people = persons.loc[keys]
        assert (people["role"] == "child").all()
        birth = pd.to_datetime(people["birth_date"])
        when = pd.Timestamp(extract_date)
        assert (birth <= when).all() and (birth > when - pd.DateOffset(years=20)).all()
        children = world.children()
        expected = children[(pd.to_datetime(children["birth_date"]) <= when)
                            & (pd.to_datetime(children["birth_date"]) > when - pd.DateOffset(years=20))]
        assert set(keys) == set(expected["person_key"])
        for patient, key in zip(resources["Patient"], keys):
            assert patient["birthDate"] == persons.at[key, "birth_date"].strftime("%Y-%m-%d")
            assert patient["gender"] in {"male", "female", "unknown"}
            died = persons.at[key, "death_date"]
            assert ("deceasedDateTime" in patient) == (pd.notna(died) and died <= when)


def test_nhs_numbers_are_valid_synthetic_numbers_except_the_injected_few(drops):
    patients = drops[max(drops)]["Patient"]
    identifiers = [nhs_identifier(p) for p in patients]
    present = [i for i in identifiers if i is not None]
    missing_share = 1 - len(present) / len(patients)
    assert 0 < missing_share < 0.03
    valid = [is_valid_nhs_number(i["value"]) for i in present]
    assert 1 - np.mean(valid) < 0.01  # ~0.2% mistyped
    assert all(i["value"].startswith("999") for i, ok in zip(present, valid) if ok)
    for identifier, ok in zip(present, valid):
        status = extension(identifier, VERIFICATION_URL)
        code = status["valueCodeableConcept"]["coding"][0]["code"]
        assert code in {f"0{d}" for d in range(1, 9)}
        if not ok:
            assert code == "02", "a mistyped number was never traced"
    codes = pd.Series([extension(i, VERIFICATION_URL)["valueCodeableConcept"]["coding"][0]["code"] for i in present])
    assert (codes == "01").mean() > 0.9


def test_babies_under_six_weeks_have_trace_postponed(drops):
    for extract_date, resources in drops.items():
        for patient in resources["Patient"]:
            identifier = nhs_identifier(patient)
            if identifier is None:
                continue
            age = (extract_date - date.fromisoformat(patient["birthDate"])).days
            code = extension(identifier, VERIFICATION_URL)["valueCodeableConcept"]["coding"][0]["code"]
            assert (code == "08") == (age < 42)


def test_patient_shape_names_address_gp_and_ethnicity(drops):
    patients = drops[max(drops)]["Patient"]
    for patient in patients:
        ethnic = extension(patient, ETHNIC_URL)
        assert ethnic["valueCodeableConcept"]["coding"][0]["code"] in NHS_ETHNIC_LETTERS
        uses = [n["use"] for n in patient["name"]]
        assert uses[0] == "official" and set(uses) <= {"official", "usual", "nickname"}
        official = patient["name"][0]
        assert official["family"] and official["given"]
        (address,) = patient["address"]
        assert address["line"] and address["city"] and address["postalCode"].startswith("ZX")
        assert address["period"]["start"] >= patient["birthDate"]
        for gp in patient.get("generalPractitioner", []):
            assert gp["identifier"]["value"].startswith("Y9") and len(gp["identifier"]["value"]) == 6
    letters = pd.Series([extension(p, ETHNIC_URL)["valueCodeableConcept"]["coding"][0]["code"] for p in patients])
    assert letters.value_counts(normalize=True)["A"] > 0.4 and 0.04 < (letters == "Z").mean() < 0.2
    assert sum("generalPractitioner" in p for p in patients) / len(patients) > 0.98
    assert any(len(p["name"]) > 1 for p in patients), "some children go by a usual name"


def test_records_keep_their_id_and_identity_across_drops(written, drops):
    _, truth = written
    patients = truth[truth["table"] == "Patient"]
    assert patients["person_key"].is_unique, "one Patient id per child, however many drops"
    first, last = drops[min(drops)]["Patient"], drops[max(drops)]["Patient"]
    later = {p["id"]: p for p in last}
    for patient in first:
        if patient["id"] in later:
            assert later[patient["id"]]["birthDate"] == patient["birthDate"]
            assert nhs_identifier(later[patient["id"]]) is None or nhs_identifier(patient) is None or (
                nhs_identifier(later[patient["id"]])["value"] == nhs_identifier(patient)["value"])


# ------------------------------------------------------------------ RelatedPerson and truth
def test_every_person_record_has_truth(written, drops):
    _, truth = written
    assert list(truth.columns) == ["system", "table", "record_id", "person_key"]
    assert (truth["system"] == "health").all() and truth["record_id"].is_unique
    known = set(zip(truth["table"], truth["record_id"]))
    seen = {(name, r["id"]) for resources in drops.values() for name in ("Patient", "RelatedPerson")
            for r in resources[name]}
    assert seen == known


def test_related_persons_are_the_childs_own_parents(world, written, drops):
    _, truth = written
    person_of = truth.set_index("record_id")["person_key"]
    persons = world.persons.set_index("person_key")
    for extract_date, resources in drops.items():
        patient_ids = {p["id"] for p in resources["Patient"]}
        pairs = set()
        for link in resources["RelatedPerson"]:
            child_id = reference_id(link["patient"])
            assert child_id in patient_ids
            child, adult = person_of[child_id], person_of[link["id"]]
            assert (child, adult) not in pairs, "one RelatedPerson per (child, adult)"
            pairs.add((child, adult))
            assert persons.at[adult, "role"] == "adult"
            code = link["relationship"][0]["coding"][0]["code"]
            parent = "father_key" if code == "FTH" else "mother_key"
            assert persons.at[child, parent] == adult
            age = (extract_date - persons.at[child, "birth_date"].date()).days / 365.25
            assert age < 5, "health visiting holds the links of under-fives"
            for phone in link.get("telecom", []):
                assert phone["value"].startswith("07700 900") and len(phone["value"]) == 12
            identifier = nhs_identifier(link)
            if identifier:
                assert identifier["value"] == persons.at[adult, "nhs_number"]


def test_mothers_appear_once_per_child_with_their_own_record_ids(written, drops):
    _, truth = written
    links = truth[truth["table"] == "RelatedPerson"]
    per_adult = links.groupby("person_key")["record_id"].nunique()
    assert (per_adult > 1).any(), "a mother of siblings has one RelatedPerson per child"
    last = drops[max(drops)]
    under_five = [p["id"] for p in last["Patient"]
                  if (max(drops) - date.fromisoformat(p["birthDate"])).days < 5 * 365]
    linked = {reference_id(r["patient"]) for r in last["RelatedPerson"]}
    assert np.mean([i in linked for i in under_five]) > 0.85
    codes = pd.Series([r["relationship"][0]["coding"][0]["code"] for r in last["RelatedPerson"]])
    assert set(codes) <= {"MTH", "FTH", "GRD"} and (codes == "MTH").mean() > 0.6
    with_nhs = np.mean([nhs_identifier(r) is not None for r in last["RelatedPerson"]])
    assert 0.45 < with_nhs < 0.75


# ------------------------------------------------------------------ Encounter
def test_encounters_reference_patients_and_follow_the_contract(drops):
    for extract_date, resources in drops.items():
        patient_ids = {p["id"] for p in resources["Patient"]}
        for encounter in resources["Encounter"]:
            assert reference_id(encounter["subject"]) in patient_ids
            assert date.fromisoformat(encounter["period"]["start"]) <= extract_date
            code = extension(encounter, ATTENDANCE_URL)["valueCode"]
            assert code in {"2", "3", "4", "5"}
            assert encounter["status"] in {"finished", "cancelled", "entered-in-error"}
            if encounter["status"] != "entered-in-error":
                assert (encounter["status"] == "finished") == (code == "5")
            assert encounter["type"][0]["coding"][0]["code"] in {"ANT", "NBV", "68W", "12M", "2YR", "NCMP", "SAFE"}


def test_review_timing_follows_the_healthy_child_programme(drops):
    last = drops[max(drops)]
    born = {p["id"]: date.fromisoformat(p["birthDate"]) for p in last["Patient"]}
    windows = {"ANT": (-98, -77), "NBV": (10, 14), "68W": (42, 56), "12M": (274, 456), "2YR": (730, 913)}
    types = set()
    for encounter in last["Encounter"]:
        review = encounter["type"][0]["coding"][0]["code"]
        types.add(review)
        if review in windows:
            lo, hi = windows[review]
            days = (date.fromisoformat(encounter["period"]["start"]) - born[reference_id(encounter["subject"])]).days
            assert lo <= days <= hi + 28, f"{review} at {days} days (a rebooked review comes up to 4 weeks late)"
    assert types == set(windows) | {"NCMP", "SAFE"}


def test_did_not_attend_is_more_common_in_households_under_strain(world, written, drops):
    _, truth = written
    person_of = truth.set_index("record_id")["person_key"]
    household_of = world.persons.set_index("person_key")["household_key"]
    encounters = [e for e in drops[max(drops)]["Encounter"] if e["status"] != "entered-in-error"]
    households = household_of.loc[person_of.loc[[reference_id(e["subject"]) for e in encounters]]].to_numpy()
    dates = np.array([e["period"]["start"] for e in encounters], dtype="datetime64[D]")
    strained = world.needs.at(households, dates)[RISK_NEEDS].any(axis=1).to_numpy()
    missed = np.array([extension(e, ATTENDANCE_URL)["valueCode"] == "3" for e in encounters])
    assert strained.sum() > 50 and (~strained).sum() > 50
    assert missed[strained].mean() > 1.5 * missed[~strained].mean()


# ------------------------------------------------------------------ ServiceRequest (CAMHS)
def test_camhs_referrals_follow_the_contract_and_reveal_outcomes_once_they_happen(drops):
    for extract_date, resources in drops.items():
        patient_ids = {p["id"] for p in resources["Patient"]}
        for referral in resources["ServiceRequest"]:
            assert reference_id(referral["subject"]) in patient_ids
            authored = date.fromisoformat(referral["authoredOn"])
            assert authored <= extract_date
            assert referral["requester"]["display"] in CAMHS_SOURCES
            assert referral["priority"] in {"routine", "urgent", "asap"}
            assert referral["reasonCode"] and all(c["coding"][0]["code"] for c in referral["reasonCode"])
            rejected, discharged = extension(referral, REJECTION_URL), extension(referral, DISCHARGE_URL)
            assert referral["status"] == ("revoked" if rejected else "completed" if discharged else "active")
            for outcome in (rejected, discharged):
                if outcome:
                    assert authored <= date.fromisoformat(outcome["valueDate"]) <= extract_date


def test_camhs_referrals_come_from_children_with_mental_health_or_behaviour_needs(world, written, drops):
    _, truth = written
    person_of = truth.set_index("record_id")["person_key"]
    persons = world.persons.set_index("person_key")
    referrals = drops[max(drops)]["ServiceRequest"]
    keys = person_of.loc[[reference_id(r["subject"]) for r in referrals]]
    ages = np.array([(date.fromisoformat(r["authoredOn"]) - persons.at[k, "birth_date"].date()).days / 365.25
                     for r, k in zip(referrals, keys)])
    assert ((ages >= 5) & (ages < 18)).all()
    dates = np.array([r["authoredOn"] for r in referrals], dtype="datetime64[D]")
    needs = world.needs.at(persons.loc[keys, "household_key"].to_numpy(), dates)
    referred_share = needs[["mental_health", "child_behaviour"]].any(axis=1).mean()
    # the same share among all 5-17s in the middle of the period, for comparison
    children = world.children()
    mid = np.datetime64(CONFIG.start, "D") + (np.datetime64(CONFIG.end, "D") - np.datetime64(CONFIG.start, "D")) // 2
    age = (mid - children["birth_date"].to_numpy().astype("datetime64[D]")).astype(int) / 365.25
    school_age = children[(age >= 5) & (age < 18)]
    base = world.needs.at(school_age["household_key"].to_numpy(), np.full(len(school_age), mid))
    assert referred_share > 2 * base[["mental_health", "child_behaviour"]].any(axis=1).mean()
    per_year = len(referrals) / ((max(drops) - CONFIG.start).days / 365.25) / len(school_age)
    assert 0.005 < per_year < 0.04
