"""The synthetic city honours the extract contract (../shared/extracts/CONTRACT.md)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date

import pandas as pd
import pytest

from sources.identifiers import is_valid_nhs_number, is_valid_upn
from sources.synthetic.city import generate_city
from sources.synthetic.config import CityConfig

SYSTEMS = ("education", "health", "social_care", "early_help", "mash", "reference")
ENCODING = {"social_care": "utf-8-sig", "early_help": "cp1252"}
CSV_COLUMNS = {
    "mash/contacts.csv": "contact_id child_seq received_at channel referrer_source_code referrer_org child_forename child_surname child_dob child_dob_estimated child_sex child_nhs_number child_upn address_line1 postcode csc_person_id concerns rag rated_at triage_worker_id decision decision_at decision_signed_off_by updated_at",
    "social_care/ssd_person.csv": "pers_person_id pers_forename pers_surname pers_sex pers_ethnicity pers_dob pers_expected_dob pers_death_date pers_common_child_id pers_upn pers_upn_unknown pers_is_mother pers_duplicate_of",
    "social_care/ssd_address.csv": "addr_table_id addr_person_id addr_address_type addr_address_start_date addr_address_end_date addr_address_postcode addr_address_json",
    "social_care/ssd_family.csv": "fami_table_id fami_family_id fami_person_id",
    "social_care/ssd_person_relationship.csv": "rel_person_id rel_related_person_id rel_type rel_start_date rel_end_date",
    "social_care/ssd_cin_episodes.csv": "cine_referral_id cine_person_id cine_referral_date cine_cin_primary_need_code cine_referral_source_code cine_referral_nfa cine_close_reason cine_close_date cine_referral_team cine_referral_worker_id cine_mash_contact_id",
    "social_care/ssd_cin_assessments.csv": "cina_assessment_id cina_person_id cina_referral_id cina_assessment_start_date cina_assessment_child_seen cina_assessment_auth_date cina_assessment_outcome_nfa cina_assessment_factors",
    "social_care/ssd_cin_plans.csv": "cinp_cin_plan_id cinp_person_id cinp_referral_id cinp_cin_plan_start_date cinp_cin_plan_end_date",
    "social_care/ssd_s47_enquiry.csv": "s47e_s47_enquiry_id s47e_person_id s47e_referral_id s47e_s47_start_date s47e_s47_end_date s47e_s47_outcome",
    "social_care/ssd_cp_plans.csv": "cppl_cp_plan_id cppl_person_id cppl_referral_id cppl_cp_plan_start_date cppl_cp_plan_end_date cppl_cp_plan_initial_category cppl_cp_plan_latest_category",
    "social_care/ssd_cla_episodes.csv": "clae_cla_episode_id clae_person_id clae_cla_episode_start_date clae_cla_episode_start_reason clae_cla_primary_need_code clae_cla_episode_ceased clae_cla_episode_ceased_reason clae_cla_legal_status",
    "social_care/ssd_professionals.csv": "prof_professional_id prof_staff_id prof_role prof_team prof_fte prof_agency_worker",
    "social_care/ssd_involvements.csv": "invo_involvements_id invo_professional_id invo_person_id invo_involvement_start_date invo_involvement_end_date invo_role",
    "early_help/FAMILIES.csv": "FAMILY_ID MAIN_CARER_PERSON_ID ADDRESS_1 ADDRESS_2 TOWN POSTCODE UPRN DISTRICT SF_ELIGIBLE CONSENT_DATE",
    "early_help/FAMILY_MEMBERS.csv": "FAMILY_ID PERSON_ID ROLE SURNAME FORENAME KNOWN_AS DOB GENDER ETHNICITY NHS_NO UPN CSC_ID FROM_DATE TO_DATE",
    "early_help/REFERRALS.csv": "REFERRAL_ID FAMILY_ID PERSON_ID REFERRAL_DATE REFERRAL_SOURCE ROUTE MASH_CONTACT_ID ACCEPTED REASON_NOT_ACCEPTED",
    "early_help/EPISODES.csv": "EPISODE_ID FAMILY_ID REFERRAL_ID START_DATE ALLOCATED_DATE KEY_WORKER_ID TEAM DISTRICT END_DATE END_REASON STEP_UP_REFERRAL_ID",
    "early_help/ASSESSMENTS.csv": "ASSESSMENT_ID EPISODE_ID FAMILY_ID START_DATE COMPLETED_DATE NEEDS",
    "early_help/TAF_REVIEWS.csv": "REVIEW_ID EPISODE_ID MEETING_DATE PLAN_RAG AGENCIES",
    "early_help/WORKERS.csv": "WORKER_ID SURNAME FORENAME ROLE TEAM DISTRICT FTE START_DATE END_DATE",
    "education/pupils.csv": "ONEPupilID UPN FormerUPN ULN Surname Forename MiddleNames PreferredSurname FormerSurname DOB Sex Ethnicity FirstLanguage AddressLine1 AddressLine2 Town Postcode UPRN YoungCarer ServiceChild",
    "education/enrolments.csv": "ONEPupilID UPN URN EntryDate LeavingDate EnrolStatus NCyearActual",
    "education/fsm.csv": "ONEPupilID UPN FSMStartDate FSMEndDate",
    "education/sen.csv": "ONEPupilID UPN SENProvision SENType1 SENType2",
    "education/attendance.csv": "ONEPupilID UPN URN Term SessionsPossible SessionsAuthorised SessionsUnauthorised",
    "education/exclusions.csv": "ExclusionID ONEPupilID UPN URN Category StartDate Sessions Reason1 Reason2 Reason3",
    "education/ehe.csv": "EHEID ONEPupilID UPN StartDate EndDate Reason",
    "education/cme.csv": "CMEID ONEPupilID UPN IdentifiedDate Reason ResolvedDate",
    "reference/postcodes.csv": "postcode district lsoa imd_decile",
    "reference/schools.csv": "urn laestab name phase district postcode",
}


def drops(landing, system):
    return sorted(p for p in (landing / system).iterdir() if p.is_dir())


def read(path, system) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=ENCODING.get(system, "utf-8"))


def test_every_system_delivers_drops_with_a_manifest(small_city):
    landing = small_city[0] / "landing"
    for system in SYSTEMS:
        folders = drops(landing, system)
        assert folders, f"no drops for {system}"
        for folder in folders:
            manifest = json.loads((folder / "_manifest.json").read_text())
            assert manifest["system"] == system and manifest["extract_date"] == folder.name
            assert manifest["mode"] == ("delta" if system == "mash" else "snapshot")
            listed = {f["name"] for f in manifest["files"]}
            assert listed == {p.name for p in folder.iterdir() if p.name != "_manifest.json"}


def test_manifests_match_rows_and_checksums(small_city):
    landing = small_city[0] / "landing"
    for manifest_path in landing.glob("*/*/_manifest.json"):
        for entry in json.loads(manifest_path.read_text())["files"]:
            data = (manifest_path.parent / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            if entry["name"].endswith(".ndjson"):
                rows = len(data.splitlines())
            else:
                system = manifest_path.parent.parent.name
                text = data.decode(ENCODING.get(system, "utf-8"))
                rows = sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1
            assert rows == entry["rows"], f"{manifest_path.parent.name}/{entry['name']}"


def test_csv_files_have_the_contract_columns_and_encoding(small_city):
    landing = small_city[0] / "landing"
    seen = set()
    for key, columns in CSV_COLUMNS.items():
        system, name = key.split("/")
        for folder in drops(landing, system):
            path = folder / name
            if not path.exists():
                continue
            seen.add(key)
            raw = path.read_bytes()
            if system == "social_care":
                assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
            frame = read(path, system)
            assert list(frame.columns) == columns.split(), key
    assert seen == set(CSV_COLUMNS), f"never delivered: {set(CSV_COLUMNS) - seen}"


def test_date_styles(small_city):
    landing = small_city[0] / "landing"
    eh = read(drops(landing, "early_help")[-1] / "REFERRALS.csv", "early_help")
    assert eh["REFERRAL_DATE"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    sc = read(drops(landing, "social_care")[-1] / "ssd_cin_episodes.csv", "social_care")
    assert sc["cine_referral_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
    assert pd.to_datetime(sc["cine_close_date"].replace("", None), format="%Y-%m-%d").notna().sum() > 0


def test_mash_timestamps_carry_the_offset_of_the_moment(small_city):
    landing = small_city[0] / "landing"
    rows = pd.concat([read(f / "contacts.csv", "mash") for f in drops(landing, "mash")])
    received = rows["received_at"]
    assert received.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}").all()
    # the window crosses 26 October 2025: summer time before, GMT after
    assert received[received.str.startswith("2025-10-2") & received.str.endswith("+01:00")].size
    assert received[received.str.startswith("2025-11") & received.str.endswith("+00:00")].size
    assert not received[received.str.startswith("2025-11")].str.endswith("+01:00").any()


def test_mash_delta_resends_rows_as_triage_progresses(small_city):
    landing = small_city[0] / "landing"
    rows = pd.concat([read(f / "contacts.csv", "mash").assign(drop=f.name) for f in drops(landing, "mash")])
    per_key = rows.groupby(["contact_id", "child_seq"])
    assert (per_key.size() > 1).any(), "no row was ever re-sent"
    latest = rows.sort_values("updated_at").groupby(["contact_id", "child_seq"]).tail(1)
    decided = latest[latest["decision"] != ""]
    assert set(decided["decision"]) <= {"CSC_ASSESSMENT", "TARGETED_EH", "OTHER_SERVICE", "IAG"}
    assert (decided["decision_at"] >= decided["received_at"]).mean() > 0.99


def test_nhs_numbers_are_synthetic_and_mostly_valid(small_city):
    landing = small_city[0] / "landing"
    values = pd.concat([
        read(drops(landing, "mash")[0] / "contacts.csv", "mash")["child_nhs_number"],
        read(drops(landing, "social_care")[-1] / "ssd_person.csv", "social_care")["pers_common_child_id"],
        read(drops(landing, "early_help")[-1] / "FAMILY_MEMBERS.csv", "early_help")["NHS_NO"],
    ])
    values = values[values != ""].str.replace(" ", "")
    assert values.str.startswith("999").all(), "an NHS number outside the synthetic 999 range"
    valid = values.map(is_valid_nhs_number)
    assert 0.97 < valid.mean() < 1.0, f"valid share {valid.mean():.4f}: the injected invalid share is about 1%"


def test_upns_carry_valid_check_letters_but_for_the_injected_share(small_city):
    landing = small_city[0] / "landing"
    census = [f for f in drops(landing, "education") if (f / "pupils.csv").exists()][-1]
    upns = read(census / "pupils.csv", "education")["UPN"]
    valid = upns[upns != ""].map(is_valid_upn)
    assert 0.97 < valid.mean() < 1.0


def test_truth_covers_every_person_bearing_record(small_city):
    out = small_city[0]
    landing = out / "landing"
    truth = pd.read_csv(out / "truth" / "records.csv", dtype=str)
    persons = pd.read_csv(out / "truth" / "persons.csv", dtype=str)
    assert set(truth["person_key"]) <= set(persons["person_key"])
    known = set(zip(truth["system"], truth["table"], truth["record_id"]))
    found = set()
    for folder in drops(landing, "mash"):
        f = read(folder / "contacts.csv", "mash")
        found |= {("mash", "contacts", f"{c}:{s}") for c, s in zip(f["contact_id"], f["child_seq"])}
    for folder in drops(landing, "social_care"):
        found |= {("social_care", "ssd_person", i) for i in read(folder / "ssd_person.csv", "social_care")["pers_person_id"]}
    for folder in drops(landing, "early_help"):
        found |= {("early_help", "FAMILY_MEMBERS", i) for i in read(folder / "FAMILY_MEMBERS.csv", "early_help")["PERSON_ID"]}
    for folder in drops(landing, "education"):
        if (folder / "pupils.csv").exists():
            found |= {("education", "pupils", i) for i in read(folder / "pupils.csv", "education")["ONEPupilID"]}
    for folder in drops(landing, "health"):
        for table in ("Patient", "RelatedPerson"):
            for line in (folder / f"{table}.ndjson").read_text().splitlines():
                found.add(("health", table, json.loads(line)["id"]))
    assert found - known == set(), f"{len(found - known)} records have no truth"


def test_same_arguments_give_identical_files(tmp_path):
    config = CityConfig(children=300, seed=7, start=date(2025, 1, 1), end=date(2025, 6, 30), go_live=date(2025, 6, 20))

    def checksums(out):
        generate_city(config, out)
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    first, second = checksums(tmp_path / "a"), checksums(tmp_path / "b")
    assert first == second
    other = CityConfig(children=300, seed=8, start=config.start, end=config.end, go_live=config.go_live)
    generate_city(other, tmp_path / "c")
    assert (tmp_path / "c" / "truth" / "records.csv").read_bytes() != (tmp_path / "a" / "truth" / "records.csv").read_bytes()


@pytest.mark.parametrize("bad", [
    dict(end=date(2020, 1, 1)), dict(go_live=date(2019, 1, 1)), dict(children=10),
])
def test_nonsense_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        CityConfig(**bad)
