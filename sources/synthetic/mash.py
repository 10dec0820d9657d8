"""The MASH front door's delta feed (CONTRACT.md, "mash").

A row per child per contact, sent when the contact arrives and again each time triage
moves on (rated, decided). Each nightly drop carries the newest version of every row
that changed since the previous extract; the go-live drop carries every row's newest
version so far. What the referrer typed about the child is often incomplete: names
with nicknames and typos, approximate or missing birth dates, few NHS numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import defects as D
from .output import Drop, drop_dates, extract_instant, fmt_date, fmt_instant

COLUMNS = [
    "contact_id", "child_seq", "received_at", "channel", "referrer_source_code", "referrer_org",
    "child_forename", "child_surname", "child_dob", "child_dob_estimated", "child_sex",
    "child_nhs_number", "child_upn", "address_line1", "postcode", "csc_person_id", "concerns",
    "rag", "rated_at", "triage_worker_id", "decision", "decision_at", "decision_signed_off_by",
    "updated_at",
]
REFERRER_ORG = {
    "6": "Kingsmere Police", "3A": "Kingsmere Medical Practice", "3B": "0-19 Health Visiting Service",
    "3C": "School Nursing Service", "3E": "Kingsmere General Hospital ED", "3F": "Kingsmere Community Health",
    "4": "Kingsmere Housing", "5B": "Kingsmere City Council", "5C": "Neighbouring Borough Council",
    "5A": "Kingsmere Children's Social Care", "5D": "Kingsmere Early Help", "8": "Kingsmere Women's Aid",
    "7": "Youth Justice Service", "2B": "Education Welfare Service",
}


def write_mash(world, landing: Path) -> pd.DataFrame:
    contacts = world.services["contacts"]
    rows = _what_the_referrer_said(world, contacts)
    versions = _versions(rows, contacts)
    previous = None
    for extract_date in drop_dates("mash", world.config):
        cutoff = pd.Timestamp(extract_instant(extract_date))
        window = versions["_updated"] <= cutoff
        if previous is not None:
            window &= versions["_updated"] > previous
        delta = versions[window].drop_duplicates(["contact_id", "child_seq"], keep="last")
        drop = Drop(landing, "mash", extract_date, "delta")
        drop.csv("contacts.csv", delta.sort_values(["contact_id", "child_seq"], kind="stable")[COLUMNS])
        drop.finish()
        previous = cutoff
    return pd.DataFrame({
        "system": "mash", "table": "contacts",
        "record_id": rows["contact_id"] + ":" + rows["child_seq"],
        "person_key": rows["person_key"].to_numpy(),
    })


def _what_the_referrer_said(world, contacts: pd.DataFrame) -> pd.DataFrame:
    """Identity details as typed at the front door, decided once per contact row."""
    config, defects = world.config, world.config.defects
    rng = config.rng("mash.identity")
    n = len(contacts)
    people = world.persons.set_index("person_key").loc[contacts["person_key"]]
    when = contacts["received_at"].dt.tz_localize(None).to_numpy()

    forename = D.nickname(pd.Series(people["forename"].to_numpy()), rng, defects.nickname["mash"])
    forename = D.typo(forename, rng, defects.forename_typo * 1.5)
    changed = ~np.isnat(people["surname_changed_on"].to_numpy()) & (people["surname_changed_on"].to_numpy() <= when)
    surname = pd.Series(np.where(changed, people["surname_after"].to_numpy(), people["surname"].to_numpy()))
    surname = D.shorten_hyphenated(surname, rng, defects.hyphenated_surname_partial)
    surname = D.typo(surname, rng, defects.surname_typo * 1.5)
    forename, surname = D.swap_names(forename, surname, config.rng("mash.name_swap"),
                                     defects.name_swap.get("mash", 0.0))

    dob = D.swap_day_month(pd.Series(people["birth_date"].to_numpy()), rng, defects.dob_day_month_swap)
    approximate = rng.random(n) < defects.mash_dob_approximate
    guessed = np.where(rng.random(n) < 0.5, dob.dt.to_period("M").dt.start_time,
                       pd.to_datetime(dob.dt.year.astype("Int64").astype(str) + "-07-01", errors="coerce"))
    dob = dob.where(~approximate, guessed)
    missing_dob = rng.random(n) < defects.mash_dob_blank
    dob_text = fmt_date(dob).where(~missing_dob, None)
    estimated = np.where(missing_dob, None, np.where(approximate, "true", "false"))

    nhs = D.blank(pd.Series(people["nhs_number"].to_numpy()), rng, defects.nhs_missing["mash"])
    nhs = D.spaced_nhs(D.corrupt_nhs_number(nhs, rng, defects.invalid_check_digit), rng, 0.2)
    upn = D.blank(pd.Series(people["upn"].to_numpy()), rng, defects.upn_missing["mash"])
    upn = D.corrupt_upn(upn, rng, defects.invalid_check_digit)
    sex = np.where(rng.random(n) < 0.02, "U", people["sex"].to_numpy())

    # the address the referrer gave: usually current, sometimes the one before
    stale = rng.random(n) < defects.stale_address
    asked = np.where(stale, when - np.timedelta64(400, "D"), when)
    address = world.address_at(contacts["household_key"].to_numpy(), asked)
    line1 = (address["flat"].where(address["flat"] == "", address["flat"] + ", ") + address["house"] + " " + address["street"])
    postcode = D.postcode_format(address["postcode"], rng, defects.postcode_format * 2, defects.postcode_placeholder)

    return pd.DataFrame({
        "contact_id": contacts["contact_id"].to_numpy(), "child_seq": contacts["child_seq"].astype(str).to_numpy(),
        "person_key": contacts["person_key"].to_numpy(),
        "child_forename": forename.to_numpy(), "child_surname": surname.to_numpy(),
        "child_dob": dob_text.to_numpy(), "child_dob_estimated": estimated, "child_sex": sex,
        "child_nhs_number": nhs.to_numpy(), "child_upn": upn.to_numpy(),
        "address_line1": line1.to_numpy(), "postcode": postcode.to_numpy(),
        "csc_person_id": _matched_mosaic_id(world, contacts, rng),
    })


def _matched_mosaic_id(world, contacts: pd.DataFrame, rng) -> np.ndarray:
    """The MASH worker finds the child in Mosaic most of the time when a record exists."""
    people = world.services["mosaic_people"]
    masters = people[people["duplicate_of"].isna() & ~people["pers_person_id"].isin(
        people["duplicate_of"].dropna())].drop_duplicates("person_key")
    masters = masters.set_index("person_key")
    found = contacts["person_key"].map(masters["pers_person_id"])
    created = contacts["person_key"].map(masters["created"])
    known = found.notna() & (pd.to_datetime(created) <= contacts["received_at"].dt.tz_localize(None))
    matched = known & (rng.random(len(contacts)) < 0.75)
    return found.where(matched, None).to_numpy()


def _versions(rows: pd.DataFrame, contacts: pd.DataFrame) -> pd.DataFrame:
    """Three versions of each row: as received, once rated, once decided."""
    base = rows.copy()
    org = contacts["source_code"].map(REFERRER_ORG)
    schools = contacts["source_code"] == "2A"
    base["received_at"] = fmt_instant(contacts["received_at"]).to_numpy()
    base["channel"] = contacts["channel"].to_numpy()
    base["referrer_source_code"] = contacts["source_code"].to_numpy()
    base["referrer_org"] = org.where(~schools, "Kingsmere school").to_numpy()
    base["concerns"] = contacts["concerns"].to_numpy()
    rated = fmt_instant(contacts["rated_at"]).to_numpy()
    decided = fmt_instant(contacts["decided_at"]).to_numpy()
    lag = pd.to_timedelta(2, unit="m")
    stages = []
    for stage, updated in (("received", contacts["received_at"] + lag), ("rated", contacts["rated_at"]),
                           ("decided", contacts["decided_at"])):
        v = base.copy()
        v["rag"] = contacts["rag"].to_numpy() if stage != "received" else None
        v["rated_at"] = rated if stage != "received" else None
        v["triage_worker_id"] = contacts["triage_worker_id"].to_numpy() if stage != "received" else None
        v["decision"] = contacts["decision"].to_numpy() if stage == "decided" else None
        v["decision_at"] = decided if stage == "decided" else None
        v["decision_signed_off_by"] = contacts["decision_signed_off_by"].to_numpy() if stage == "decided" else None
        v["_updated"] = updated.dt.tz_convert("UTC").array  # stays a datetime array, not Timestamp objects
        v["updated_at"] = fmt_instant(updated).to_numpy()
        v["_stage"] = len(stages)
        stages.append(v)
    versions = pd.concat(stages, ignore_index=True)
    return versions.sort_values(["_updated", "_stage"], kind="stable").reset_index(drop=True)
