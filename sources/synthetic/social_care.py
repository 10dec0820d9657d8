"""The Mosaic case system's nightly SSD-shaped export (CONTRACT.md, "social_care").

Every table is a full snapshot: each drop holds every record as it stood at the
extract, so a referral shows no close date until it has closed and a merged duplicate
person shows its ``pers_duplicate_of`` only from the merge. UTF-8 with a byte-order
mark and CRLF line ends, as SQL Server exports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import defects as D
from .output import Drop, as_of, drop_dates, fmt_date, fmt_flag, fmt_local_datetime

DAY = np.timedelta64(1, "D")
NAT = np.datetime64("NaT")


def write_social_care(world, landing: Path) -> pd.DataFrame:
    tables = build_tables(world)
    for extract_date in drop_dates("social_care", world.config):
        when = np.datetime64(extract_date) + np.timedelta64(23, "h")
        drop = Drop(landing, "social_care", extract_date, "snapshot")
        for name, (records, reveal) in tables.items():
            drop.csv(f"{name}.csv", as_of(records, when, reveal), encoding="utf-8-sig", crlf=True)
        drop.finish()
    people = world.services["mosaic_people"]
    return pd.DataFrame({"system": "social_care", "table": "ssd_person",
                         "record_id": people["pers_person_id"].to_numpy(), "person_key": people["person_key"].to_numpy()})


def build_tables(world) -> dict[str, tuple[pd.DataFrame, dict[str, str]]]:
    """Every record each table will ever hold, with when it appeared and when each
    late-known column became known (see ``output.as_of``)."""
    services = world.services
    refs = services["csc_referrals"].copy()
    people = services["mosaic_people"]
    person_id = _person_id_at_referral(people, refs)
    refs["pers_person_id"] = person_id
    workers = _professionals(world)
    refs["worker"] = workers["prof_professional_id"].to_numpy()[
        world.config.rng("social_care.allocation").integers(0, len(workers), len(refs))]
    return {
        "ssd_person": _person(world, people),
        "ssd_address": _address(world, people),
        "ssd_family": _family(world, people),
        "ssd_person_relationship": _relationships(world, people),
        "ssd_cin_episodes": _cin_episodes(world, refs, workers),
        "ssd_cin_assessments": _assessments(refs),
        "ssd_cin_plans": _cin_plans(refs),
        "ssd_s47_enquiry": _s47(refs),
        "ssd_cp_plans": _cp_plans(refs),
        "ssd_cla_episodes": _cla(refs),
        "ssd_professionals": (workers.assign(_created=np.datetime64("2000-01-01")), {}),
        "ssd_involvements": _involvements(refs),
    }


def _person_id_at_referral(people: pd.DataFrame, refs: pd.DataFrame) -> np.ndarray:
    """The record a referral was filed under: the newest record of that child that
    existed on the day (a duplicate made at a referral carries that referral)."""
    recs = people[["person_key", "pers_person_id", "created"]].copy()
    recs["created"] = pd.to_datetime(recs["created"])
    recs["person_key"] = recs["person_key"].astype("str")
    q = pd.DataFrame({"person_key": refs["person_key"].astype("str").to_numpy(),
                      "when": pd.to_datetime(refs["referral_date"]), "_row": np.arange(len(refs))})
    joined = pd.merge_asof(q.sort_values("when"), recs.sort_values("created"), left_on="when",
                           right_on="created", by="person_key", direction="backward")
    first = recs.sort_values("created").drop_duplicates("person_key").set_index("person_key")["pers_person_id"]
    joined["pers_person_id"] = joined["pers_person_id"].fillna(joined["person_key"].map(first))
    return joined.sort_values("_row")["pers_person_id"].to_numpy()


def _person(world, people: pd.DataFrame):
    config, defects = world.config, world.config.defects
    rng = config.rng("social_care.person")
    p = world.persons.set_index("person_key").loc[people["person_key"]]
    n = len(people)
    duplicate = people["pers_person_id"].astype(int).to_numpy() >= 2_000_000
    forename = D.nickname(pd.Series(p["forename"].to_numpy()), rng, defects.nickname["social_care"])
    forename = D.typo(forename, rng, defects.forename_typo + 0.1 * duplicate)
    surname = D.typo(pd.Series(p["surname"].to_numpy()), rng, defects.surname_typo + 0.1 * duplicate)
    forename, surname = D.swap_names(forename, surname, config.rng("social_care.name_swap"),
                                     defects.name_swap.get("social_care", 0.0))
    dob = D.swap_day_month(pd.Series(p["birth_date"].to_numpy()), rng, defects.dob_day_month_swap + 0.05 * duplicate)
    nhs = D.blank(pd.Series(p["nhs_number"].to_numpy()), rng, defects.nhs_missing["social_care"])
    nhs = D.corrupt_nhs_number(nhs, rng, defects.invalid_check_digit)
    upn = D.blank(pd.Series(p["upn"].to_numpy()), rng, defects.upn_missing["social_care"])
    upn = D.corrupt_upn(upn, rng, defects.invalid_check_digit)
    unborn = people["unborn_until"].notna().to_numpy()
    age_at_record = (pd.to_datetime(people["created"]) - pd.to_datetime(p["birth_date"].to_numpy())).dt.days.to_numpy() / 365.25
    upn_unknown = np.select([unborn, p["role"].to_numpy() == "adult", age_at_record < 4.5, upn.isna().to_numpy()],
                            [None, None, "UN1", "UN5"], None)
    records = pd.DataFrame({
        "pers_person_id": people["pers_person_id"].to_numpy(),
        "pers_forename": forename.to_numpy(),
        "pers_surname": surname.to_numpy(),
        "pers_sex": p["sex"].to_numpy(),
        "pers_ethnicity": p["ethnicity"].to_numpy(),
        "pers_dob": fmt_date(dob).to_numpy(),
        "pers_expected_dob": fmt_date(np.where(unborn, people["unborn_until"].to_numpy() + rng.integers(-10, 11, n) * DAY, NAT)).to_numpy(),
        "pers_death_date": fmt_date(p["death_date"].to_numpy()).to_numpy(),
        "pers_common_child_id": nhs.to_numpy(),
        "pers_upn": upn.to_numpy(),
        "pers_upn_unknown": np.where(unborn, "UN6", upn_unknown),
        "pers_is_mother": fmt_flag(p["is_mother"].to_numpy()).to_numpy(),
        "pers_duplicate_of": people["duplicate_of"].to_numpy(),
        "_created": pd.to_datetime(people["created"]).to_numpy(),
        "_deleted": pd.to_datetime(people["deleted_on"]).to_numpy(),
        "_born": np.where(unborn, pd.to_datetime(people["unborn_until"]).to_numpy(), np.datetime64("1900-01-01")),
        "_merged": pd.to_datetime(people["merged_on"]).to_numpy(),
        "_died": pd.to_datetime(p["death_date"].to_numpy()),
    })
    reveal = {"pers_forename": "_born", "pers_dob": "_born", "pers_common_child_id": "_born",
              "pers_duplicate_of": "_merged", "pers_death_date": "_died"}
    return records.sort_values("pers_person_id", kind="stable"), reveal


def _address(world, people: pd.DataFrame):
    """Address history for each person record: the home when recorded, and each later
    move once the worker hears of it."""
    rng = world.config.rng("social_care.address")
    res = world.population.residences
    p = world.persons.set_index("person_key").loc[people["person_key"]]
    recs = pd.DataFrame({"pers_person_id": people["pers_person_id"].to_numpy(),
                         "household_key": p["household_key"].to_numpy(),
                         "created": pd.to_datetime(people["created"]).to_numpy()})
    hist = recs.merge(res, on="household_key")
    ends = pd.to_datetime(hist["valid_to"])
    hist = hist[ends.isna() | (ends > hist["created"])].copy()  # periods still current when recorded
    lag = rng.integers(3, 60, len(hist)) * DAY
    hist["_created"] = np.maximum(hist["created"].to_numpy(), pd.to_datetime(hist["valid_from"]).to_numpy() + lag)
    hist["_ended_known"] = pd.to_datetime(hist["valid_to"]).to_numpy() + lag
    hist = hist.sort_values(["pers_person_id", "valid_from"], kind="stable")
    addr = world.addresses.set_index("address_id").loc[hist["address_id"]]
    payload = [json.dumps({"FLAT": f, "HOUSE": h, "STREET": s, "TOWN": t, "UPRN": u}, ensure_ascii=False)
               for f, h, s, t, u in zip(addr["flat"], addr["house"], addr["street"], addr["town"], addr["uprn"])]
    out = pd.DataFrame({
        "addr_table_id": (800_001 + np.arange(len(hist))).astype(str),
        "addr_person_id": hist["pers_person_id"].to_numpy(),
        "addr_address_type": "HOME",
        "addr_address_start_date": fmt_date(hist["valid_from"]).to_numpy(),
        "addr_address_end_date": fmt_date(hist["valid_to"]).to_numpy(),
        "addr_address_postcode": D.postcode_format(addr["postcode"].reset_index(drop=True), rng,
                                                   world.config.defects.postcode_format).to_numpy(),
        "addr_address_json": payload,
        "_created": hist["_created"].to_numpy(),
        "_ended_known": hist["_ended_known"].to_numpy(),
    })
    return out, {"addr_address_end_date": "_ended_known"}


def _family(world, people: pd.DataFrame):
    p = world.persons.set_index("person_key").loc[people["person_key"]]
    households = p["household_key"].to_numpy()
    family_id = pd.Series(households).rank(method="dense").astype(int).to_numpy() + 40_000
    out = pd.DataFrame({
        "fami_table_id": (900_001 + np.arange(len(people))).astype(str),
        "fami_family_id": family_id.astype(str),
        "fami_person_id": people["pers_person_id"].to_numpy(),
        "_created": pd.to_datetime(people["created"]).to_numpy(),
        "_deleted": pd.to_datetime(people["deleted_on"]).to_numpy(),
    })
    return out, {}


def _relationships(world, people: pd.DataFrame):
    """Mother, father and sibling links between records of the same real family."""
    masters = people[people["pers_person_id"].astype(int) < 2_000_000]
    p = world.persons.set_index("person_key")
    rec = masters.assign(created=pd.to_datetime(masters["created"])).set_index("person_key")
    kids = rec.index[p.loc[rec.index, "role"].to_numpy() == "child"]
    rows = []
    for rel, col in (("MOTHER", "mother_key"), ("FATHER", "father_key")):
        parent = p.loc[kids, col].to_numpy()
        ok = pd.Series(parent).isin(rec.index).to_numpy()  # hash lookup: np.isin on strings is quadratic
        rows.append(pd.DataFrame({"a": kids[ok], "b": parent[ok], "rel_type": rel}))
    child_rec = p.loc[kids, ["mother_key", "father_key"]].reset_index()
    pairs = child_rec.merge(child_rec, on="mother_key", suffixes=("", "_sib"))
    pairs = pairs[(pairs["person_key"] != pairs["person_key_sib"]) & (pairs["mother_key"] != "")]
    half = pairs["father_key"].to_numpy() != pairs["father_key_sib"].to_numpy()
    rows.append(pd.DataFrame({"a": pairs["person_key"].to_numpy(), "b": pairs["person_key_sib"].to_numpy(),
                              "rel_type": np.where(half, "HALF_SIBLING", "SIBLING")}))
    links = pd.concat(rows, ignore_index=True)
    start = np.maximum(rec.loc[links["a"], "created"].to_numpy(), rec.loc[links["b"], "created"].to_numpy())
    out = pd.DataFrame({
        "rel_person_id": rec.loc[links["a"], "pers_person_id"].to_numpy(),
        "rel_related_person_id": rec.loc[links["b"], "pers_person_id"].to_numpy(),
        "rel_type": links["rel_type"].to_numpy(),
        "rel_start_date": fmt_date(start).to_numpy(),
        "rel_end_date": None,
        "_created": start,
    }).sort_values(["rel_person_id", "rel_related_person_id"], kind="stable")
    return out, {}


def _cin_episodes(world, refs: pd.DataFrame, workers: pd.DataFrame):
    contacts = world.services["contacts"].drop_duplicates("contact_id").set_index("contact_id")["decided_at"]
    referred_at = refs["mash_contact_id"].map(contacts)
    # a referral made from a contact is logged at the decision time; others at 09:00
    fallback = pd.to_datetime(refs["referral_date"]).dt.tz_localize("Europe/London") + pd.Timedelta(hours=9)
    instant = pd.to_datetime(referred_at, utc=True).fillna(fallback.dt.tz_convert("UTC"))
    district = world.address_at(refs["household_key"].to_numpy(), refs["referral_date"].to_numpy())["district"]
    out = pd.DataFrame({
        "cine_referral_id": refs["cine_referral_id"].to_numpy(),
        "cine_person_id": refs["pers_person_id"].to_numpy(),
        "cine_referral_date": fmt_local_datetime(instant).to_numpy(),
        "cine_cin_primary_need_code": refs["primary_need"].to_numpy(),
        "cine_referral_source_code": refs["source_code"].to_numpy(),
        "cine_referral_nfa": fmt_flag(refs["nfa_at_referral"]).to_numpy(),
        "cine_close_reason": refs["close_reason"].to_numpy(),
        "cine_close_date": fmt_date(refs["close_date"]).to_numpy(),
        "cine_referral_team": ("CSC " + district.str.title()).to_numpy(),
        "cine_referral_worker_id": refs["worker"].to_numpy(),
        "cine_mash_contact_id": refs["mash_contact_id"].to_numpy(),
        "_created": pd.to_datetime(refs["referral_date"]).to_numpy(),
        "_closed": pd.to_datetime(refs["close_date"]).to_numpy(),
    })
    return out, {"cine_close_reason": "_closed", "cine_close_date": "_closed"}


def _assessments(refs: pd.DataFrame):
    a = refs[~refs["nfa_at_referral"]]
    factors = a["concerns"].fillna("21").str.split(";").map(json.dumps)
    out = pd.DataFrame({
        "cina_assessment_id": (600_001 + np.arange(len(a))).astype(str),
        "cina_person_id": a["pers_person_id"].to_numpy(),
        "cina_referral_id": a["cine_referral_id"].to_numpy(),
        "cina_assessment_start_date": fmt_date(a["assess_start"]).to_numpy(),
        "cina_assessment_child_seen": fmt_flag(a["child_seen"]).to_numpy(),
        "cina_assessment_auth_date": fmt_date(a["assess_auth"]).to_numpy(),
        "cina_assessment_outcome_nfa": fmt_flag(a["assessment_outcome"].isin(["NFA", "STEP_DOWN"])).to_numpy(),
        "cina_assessment_factors": factors.to_numpy(),
        "_created": pd.to_datetime(a["assess_start"]).to_numpy(),
        "_authorised": pd.to_datetime(a["assess_auth"]).to_numpy(),
    })
    late = {c: "_authorised" for c in ("cina_assessment_auth_date", "cina_assessment_outcome_nfa", "cina_assessment_factors")}
    return out, late


def _cin_plans(refs: pd.DataFrame):
    r = refs[refs["cin_start"].notna()]
    out = pd.DataFrame({
        "cinp_cin_plan_id": (700_001 + np.arange(len(r))).astype(str),
        "cinp_person_id": r["pers_person_id"].to_numpy(),
        "cinp_referral_id": r["cine_referral_id"].to_numpy(),
        "cinp_cin_plan_start_date": fmt_date(r["cin_start"]).to_numpy(),
        "cinp_cin_plan_end_date": fmt_date(r["cin_end"]).to_numpy(),
        "_created": pd.to_datetime(r["cin_start"]).to_numpy(),
        "_ended": pd.to_datetime(r["cin_end"]).to_numpy(),
    })
    return out, {"cinp_cin_plan_end_date": "_ended"}


def _s47(refs: pd.DataFrame):
    r = refs[refs["s47_start"].notna()]
    out = pd.DataFrame({
        "s47e_s47_enquiry_id": (650_001 + np.arange(len(r))).astype(str),
        "s47e_person_id": r["pers_person_id"].to_numpy(),
        "s47e_referral_id": r["cine_referral_id"].to_numpy(),
        "s47e_s47_start_date": fmt_date(r["s47_start"]).to_numpy(),
        "s47e_s47_end_date": fmt_date(r["s47_end"]).to_numpy(),
        "s47e_s47_outcome": r["s47_outcome"].to_numpy(),
        "_created": pd.to_datetime(r["s47_start"]).to_numpy(),
        "_ended": pd.to_datetime(r["s47_end"]).to_numpy(),
    })
    return out, {"s47e_s47_end_date": "_ended", "s47e_s47_outcome": "_ended"}


def _cp_plans(refs: pd.DataFrame):
    r = refs[refs["cp_start"].notna()]
    out = pd.DataFrame({
        "cppl_cp_plan_id": (750_001 + np.arange(len(r))).astype(str),
        "cppl_person_id": r["pers_person_id"].to_numpy(),
        "cppl_referral_id": r["cine_referral_id"].to_numpy(),
        "cppl_cp_plan_start_date": fmt_date(r["cp_start"]).to_numpy(),
        "cppl_cp_plan_end_date": fmt_date(r["cp_end"]).to_numpy(),
        "cppl_cp_plan_initial_category": r["cp_category"].to_numpy(),
        "cppl_cp_plan_latest_category": r["cp_category"].to_numpy(),
        "_created": pd.to_datetime(r["cp_start"]).to_numpy(),
        "_ended": pd.to_datetime(r["cp_end"]).to_numpy(),
    })
    return out, {"cppl_cp_plan_end_date": "_ended"}


def _cla(refs: pd.DataFrame):
    r = refs[refs["cla_start"].notna()]
    out = pd.DataFrame({
        "clae_cla_episode_id": (780_001 + np.arange(len(r))).astype(str),
        "clae_person_id": r["pers_person_id"].to_numpy(),
        "clae_cla_episode_start_date": fmt_date(r["cla_start"]).to_numpy(),
        "clae_cla_episode_start_reason": "S",
        "clae_cla_primary_need_code": r["primary_need"].to_numpy(),
        "clae_cla_episode_ceased": fmt_date(r["cla_end"]).to_numpy(),
        "clae_cla_episode_ceased_reason": r["cla_ceased_reason"].to_numpy(),
        "clae_cla_legal_status": r["cla_legal_status"].to_numpy(),
        "_created": pd.to_datetime(r["cla_start"]).to_numpy(),
        "_ended": pd.to_datetime(r["cla_end"]).to_numpy(),
    })
    return out, {"clae_cla_episode_ceased": "_ended", "clae_cla_episode_ceased_reason": "_ended"}


def _professionals(world) -> pd.DataFrame:
    rng = world.config.rng("social_care.professionals")
    n = max(10, round(140 * world.config.scale))
    team = np.asarray(["CSC North", "CSC East", "CSC South", "CSC West", "CSC Central"])[np.arange(n) % 5]
    return pd.DataFrame({
        "prof_professional_id": (50_001 + np.arange(n)).astype(str),
        "prof_staff_id": [f"SW{i:05d}" for i in rng.permutation(n) + 1],
        "prof_role": np.where(np.arange(n) % 8 == 0, "TEAM_MANAGER", "SOCIAL_WORKER"),
        "prof_team": team,
        "prof_fte": np.where(rng.random(n) < 0.85, "1.0", "0.6"),
        "prof_agency_worker": np.where(rng.random(n) < 0.15, "Y", "N"),
    })


def _involvements(refs: pd.DataFrame):
    start = pd.to_datetime(refs["referral_date"]) + pd.Timedelta(days=2)
    out = pd.DataFrame({
        "invo_involvements_id": (850_001 + np.arange(len(refs))).astype(str),
        "invo_professional_id": refs["worker"].to_numpy(),
        "invo_person_id": refs["pers_person_id"].to_numpy(),
        "invo_involvement_start_date": fmt_date(start).to_numpy(),
        "invo_involvement_end_date": fmt_date(refs["close_date"]).to_numpy(),
        "invo_role": "ALLOCATED_SW",
        "_created": start.to_numpy(),
        "_ended": pd.to_datetime(refs["close_date"]).to_numpy(),
    })
    return out, {"invo_involvement_end_date": "_ended"}
