"""What the services did: MASH contacts and triage, social care referrals to CIN, CP and
CLA, and early help referrals that wait for a key worker with room.

This is the truth of each event, keyed by person_key and household_key. The system
modules (mash, social_care, early_help) turn it into each system's own records, ids and
defects. Contact volumes, decision split and referral sources are calibrated here
(``config.Calibration``); severity comes from the latent needs, so the events carry
the signal that risk features are later judged on.
"""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd

from .config import DISTRICTS, CityConfig
from .needs import NEEDS
from .output import LONDON

DAY = np.timedelta64(1, "D")
HOUR_NS = 3_600_000_000_000
# how strongly each need draws the attention of agencies (log scale)
CONTACT_WEIGHT = {"domestic_abuse": 1.1, "mental_health": 0.6, "substance_misuse": 0.9,
                  "poverty": 0.3, "housing": 0.4, "child_behaviour": 0.7}
SEVERITY_WEIGHT = {"domestic_abuse": 1.2, "mental_health": 0.6, "substance_misuse": 1.0,
                   "poverty": 0.3, "housing": 0.4, "child_behaviour": 0.5}
# referrer source given the need that prompted the contact (CODES.md source codes)
SOURCES = {
    "domestic_abuse": {"6": 0.70, "3E": 0.08, "2A": 0.10, "1A": 0.05, "8": 0.07},
    "mental_health": {"3A": 0.30, "3B": 0.15, "3F": 0.15, "2A": 0.18, "1A": 0.10, "6": 0.12},
    "substance_misuse": {"6": 0.40, "3A": 0.18, "3E": 0.15, "2A": 0.10, "1D": 0.10, "9": 0.07},
    "poverty": {"2A": 0.38, "4": 0.22, "5B": 0.14, "3B": 0.12, "8": 0.14},
    "housing": {"4": 0.50, "5B": 0.18, "2A": 0.17, "8": 0.15},
    "child_behaviour": {"2A": 0.55, "2B": 0.10, "6": 0.20, "1A": 0.10, "3C": 0.05},
    "none": {"2A": 0.30, "3B": 0.10, "3C": 0.06, "1A": 0.14, "1D": 0.08, "9": 0.07, "6": 0.15, "8": 0.10},
}
CONCERNS = {"domestic_abuse": ["3B", "3A", "17A"], "mental_health": ["4B", "4A"],
            "substance_misuse": ["2B", "1B"], "poverty": ["16A", "20"], "housing": ["20", "16A"],
            "child_behaviour": ["14A", "4A", "10A", "24A"], "none": ["21"]}
PRIMARY_NEED = {"domestic_abuse": "N1", "mental_health": "N3", "substance_misuse": "N4",
                "poverty": "N7", "housing": "N4", "child_behaviour": "N6", "none": "N5"}
# Funding relative to demand: the most deprived districts are the most stretched,
# which is where the review found families waiting three months or more.
DISTRICT_FUNDING = {"CENTRAL": 0.66, "EAST": 0.88, "NORTH": 1.0, "SOUTH": 1.05, "WEST": 1.0}
# relative early help referral volume by calendar month, January first
EH_SEASON = (1.0, 1.0, 1.1, 0.9, 1.0, 1.0, 0.8, 0.3, 1.3, 1.6, 1.6, 1.2)
HEALTH_SOURCES = ("3A", "3B", "3C", "3D", "3E", "3F")
SCHOOL_SOURCES = ("2A", "2B")


def simulate_services(world) -> dict[str, pd.DataFrame]:
    config = world.config
    contacts = _mash_contacts(world)
    csc = _csc_referrals(world, contacts)
    eh_refs = _eh_referrals(world, contacts, csc)
    requests = _episode_requests(eh_refs)
    workers = _key_workers(config, requests)
    episodes = _allocate_key_workers(config, requests, workers)
    step_up = _step_up_referrals(world, episodes, eh_refs)
    csc = pd.concat([csc, _csc_outcomes(config, step_up, config.rng("services.stepup_outcomes"))],
                    ignore_index=True)
    csc = csc.sort_values(["referral_date", "person_key"], kind="stable").reset_index(drop=True)
    csc["cine_referral_id"] = (310_001 + np.arange(len(csc))).astype(str)
    return {"contacts": contacts, "csc_referrals": csc, "eh_referrals": eh_refs,
            "eh_episodes": episodes, "key_workers": workers, "mosaic_people": mosaic_people(world, csc)}


# ------------------------------------------------------------------ MASH
def _children_by_household_month(world) -> np.ndarray:
    """Count of children 0-17 alive in each household in each month (households x months)."""
    needs = world.needs
    kids = world.children()
    n_m = len(needs.months)
    rows = needs.row_index(kids["household_key"].to_numpy())
    born = needs.month_index(kids["birth_date"].to_numpy())
    born = np.where(kids["birth_date"].to_numpy() < needs.months[0], 0, born)
    adult = kids["birth_date"].to_numpy().astype("datetime64[D]") + np.timedelta64(18 * 365 + 4, "D")
    leave = np.where(adult > needs.months[-1], n_m, needs.month_index(adult))
    death = kids["death_date"].to_numpy()
    dies = ~np.isnat(death)
    leave = np.where(dies, np.minimum(leave, needs.month_index(np.where(dies, death, needs.months[0]))), leave)
    leave = np.where(adult < needs.months[0], 0, leave)
    delta = np.zeros((len(needs.household_keys), n_m + 1), dtype=np.int32)
    ok = leave > born
    np.add.at(delta, (rows[ok], born[ok]), 1)
    np.add.at(delta, (rows[ok], leave[ok]), -1)
    return np.cumsum(delta, axis=1)[:, :n_m]


def _mash_contacts(world) -> pd.DataFrame:
    config = world.config
    rng = config.rng("services.mash")
    needs = world.needs
    kids_hm = _children_by_household_month(world)
    weight = np.zeros(kids_hm.shape)
    for need, w in CONTACT_WEIGHT.items():
        weight += w * needs.active[need]
    vuln = world.households.set_index("household_key").loc[needs.household_keys, "vulnerability"].to_numpy()
    intensity = kids_hm * np.exp(weight + 0.3 * vuln[:, None] - 1.5)
    rows_per_event = np.where(kids_hm >= 2, 1 + 0.35 * (kids_hm - 1), 1.0)
    months_in_period = _month_fraction(config, needs.months)
    target = config.calibration.mash_contacts_per_month_per_120k * config.scale
    scale = target * months_in_period.sum() / (intensity * months_in_period).sum()
    lam = scale * intensity * months_in_period / rows_per_event
    events = rng.poisson(lam)
    h_idx, m_idx = np.nonzero(events)
    reps = events[h_idx, m_idx]
    h_idx, m_idx = np.repeat(h_idx, reps), np.repeat(m_idx, reps)
    n_ev = len(h_idx)

    # when: a day in the month (inside the period) and a time, mostly office hours
    month_start = needs.months[m_idx]
    first = np.maximum(month_start, np.datetime64(config.start, "D"))
    last = np.minimum(np.r_[needs.months[1:], needs.months[-1] + 31 * DAY][m_idx].astype("datetime64[M]").astype("datetime64[D]"),
                      np.datetime64(config.end, "D") + DAY)
    span = np.maximum((last - first) / DAY, 1).astype(np.int64)
    day = first + (rng.random(n_ev) * span).astype(np.int64) * DAY
    office = rng.random(n_ev) < 0.75
    hour = np.where(office, np.clip(rng.normal(12.5, 2.6, n_ev), 7.5, 19.5), rng.uniform(0, 24, n_ev))
    local = pd.Series(day.astype("datetime64[ns]") + (hour * HOUR_NS).astype("int64").astype("timedelta64[ns]"))
    received = local.dt.tz_localize(LONDON, ambiguous=False, nonexistent="shift_forward").dt.tz_convert("UTC")

    # which need prompted the contact, and what follows from it
    active = np.stack([needs.active[n][h_idx, m_idx] for n in NEEDS], axis=1)
    w = active * np.asarray([CONTACT_WEIGHT[n] for n in NEEDS])
    any_need = w.sum(axis=1) > 0
    pick = (rng.random(n_ev)[:, None] * w.sum(axis=1, keepdims=True) > np.cumsum(w, axis=1)).sum(axis=1)
    driver = np.where(any_need, np.asarray(NEEDS)[np.minimum(pick, len(NEEDS) - 1)], "none")
    source = _draw_by_group(rng, driver, SOURCES)
    concerns = _concerns(rng, driver, active)
    severity = (active * np.asarray([SEVERITY_WEIGHT[n] for n in NEEDS])).sum(axis=1)
    severity = severity + 0.4 * vuln[h_idx] + rng.normal(0, 0.7, n_ev)

    events_df = pd.DataFrame({
        "h": h_idx, "household_key": needs.household_keys[h_idx], "received_at": received.to_numpy(),
        "source_code": source, "driver": driver, "concerns": concerns, "severity": severity,
        "n_kids": kids_hm[h_idx, m_idx],
    }).sort_values("received_at", kind="stable").reset_index(drop=True)
    events_df["contact_id"] = [f"MC{i + 1:07d}" for i in range(len(events_df))]
    return _contact_children(world, rng, events_df)


def _month_fraction(config: CityConfig, months: np.ndarray) -> np.ndarray:
    """Share of each calendar month inside the simulated period."""
    start, end = np.datetime64(config.start, "D"), np.datetime64(config.end, "D") + DAY
    nxt = (months.astype("datetime64[M]") + 1).astype("datetime64[D]")
    inside = (np.minimum(nxt, end) - np.maximum(months, start)) / DAY
    return np.clip(inside / ((nxt - months) / DAY), 0, 1)


def _draw_by_group(rng, group: np.ndarray, table: dict[str, dict[str, float]]) -> np.ndarray:
    out = np.empty(len(group), dtype=object)
    for key, dist in table.items():
        mask = group == key
        out[mask] = rng.choice(list(dist), size=mask.sum(), p=np.asarray(list(dist.values())) / sum(dist.values()))
    return out


def _concerns(rng, driver: np.ndarray, active: np.ndarray) -> np.ndarray:
    first = _draw_by_group(rng, driver, {k: {c: 1.0 for c in v} for k, v in CONCERNS.items()})
    # a second concern from another active need, for about a third of contacts
    other = np.where(rng.random(len(driver)) < 0.35, np.asarray(NEEDS)[rng.integers(0, len(NEEDS), len(driver))], "")
    other_index = np.array([NEEDS.index(o) if o else 0 for o in other])
    has_other = (other != "") & (other != driver) & active[np.arange(len(driver)), other_index]
    second = _draw_by_group(rng, np.where(has_other, other, "none"), {k: {v[0]: 1.0} for k, v in CONCERNS.items()})
    joined = np.where(has_other & (second != first) & (first != "21") & (second != "21"),
                      pd.Series(first).str.cat(pd.Series(second), sep=";").to_numpy(), first)
    return joined


def _contact_children(world, rng, events: pd.DataFrame) -> pd.DataFrame:
    """One row per child per contact: all the children 0-17 for a third of family
    contacts, otherwise one of them."""
    kids = world.children()[["person_key", "household_key", "birth_date", "death_date"]]
    cand = events[["contact_id", "household_key", "received_at"]].merge(kids, on="household_key")
    when = cand["received_at"].dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    age_days = (when - cand["birth_date"].to_numpy().astype("datetime64[D]")) / DAY
    alive = np.isnat(cand["death_date"].to_numpy()) | (cand["death_date"].to_numpy() > when)
    cand = cand[(age_days >= 0) & (age_days < 18 * 365.25) & alive].copy()
    cand["draw"] = rng.random(len(cand))
    all_kids = pd.Series(rng.random(len(events)) < 0.35, index=events["contact_id"])
    cand["all"] = cand["contact_id"].map(all_kids).to_numpy()
    cand = cand.sort_values(["contact_id", "draw"], kind="stable")
    cand["rank"] = cand.groupby("contact_id").cumcount()
    chosen = cand[cand["all"] | (cand["rank"] == 0)].copy()
    chosen = chosen.sort_values(["contact_id", "birth_date", "person_key"], kind="stable")
    chosen["child_seq"] = chosen.groupby("contact_id").cumcount() + 1
    out = chosen[["contact_id", "child_seq", "person_key"]].merge(events, on="contact_id")
    out = out.sort_values(["received_at", "contact_id", "child_seq"], kind="stable").reset_index(drop=True)
    return _triage(world.config, rng, out)


def _triage(config: CityConfig, rng, contacts: pd.DataFrame) -> pd.DataFrame:
    """RAG rating and decision by severity, calibrated to the review's decision split."""
    n = len(contacts)
    sev = contacts["severity"].to_numpy() + rng.normal(0, 0.3, n)
    rank = sev.argsort().argsort() / max(n - 1, 1)
    rag = np.where(rank >= 0.91, "R", np.where(rank >= 0.55, "A", "G"))
    share = config.calibration.decision_share
    decide = rank + rng.normal(0, 0.04, n)
    order = decide.argsort().argsort() / max(n - 1, 1)
    decision = np.where(order >= 1 - share["CSC_ASSESSMENT"], "CSC_ASSESSMENT",
                        np.where(order >= 1 - share["CSC_ASSESSMENT"] - share["TARGETED_EH"], "TARGETED_EH", "IAG"))
    other = (decision == "IAG") & (rng.random(n) < share["OTHER_SERVICE"] / share["IAG"])
    decision = np.where(other, "OTHER_SERVICE", decision)
    # all the children of one contact share its rating and decision in most cases
    first = contacts.groupby("contact_id")["child_seq"].transform("min").to_numpy() == contacts["child_seq"].to_numpy()
    head = pd.Series(np.where(first, rag, None)).ffill().to_numpy()
    head_dec = pd.Series(np.where(first, decision, None)).ffill().to_numpy()
    same = rng.random(n) < 0.85
    contacts["rag"] = np.where(same, head, rag)
    contacts["decision"] = np.where(same, head_dec, decision)

    received = contacts["received_at"]
    red = contacts["rag"].to_numpy() == "R"
    rate_h = np.where(red, rng.lognormal(np.log(0.8), 0.5, n), rng.lognormal(np.log(2.0), 0.7, n))
    decide_h = np.where(red, rng.lognormal(np.log(2.2), 0.45, n), rng.lognormal(np.log(9.0), 0.7, n))
    decide_h = np.maximum(decide_h, rate_h + 0.25)
    contacts["rated_at"] = received + pd.to_timedelta((rate_h * HOUR_NS).astype("int64"), unit="ns")
    contacts["decided_at"] = received + pd.to_timedelta((decide_h * HOUR_NS).astype("int64"), unit="ns")
    channel_police = np.where(rng.random(n) < 0.7, "PORTAL", "EMAIL")
    channel = rng.choice(["PORTAL", "EMAIL", "PHONE"], size=n, p=[0.55, 0.25, 0.20])
    contacts["channel"] = np.where(contacts["source_code"].to_numpy() == "6", channel_police, channel)
    team = max(6, round(24 * config.scale))
    contacts["triage_worker_id"] = [f"MW{i:03d}" for i in rng.integers(1, team + 1, n)]
    contacts["decision_signed_off_by"] = [f"MM{i:02d}" for i in rng.integers(1, max(2, team // 6) + 1, n)]
    return contacts


# ------------------------------------------------------------------ social care
def _csc_referrals(world, contacts: pd.DataFrame) -> pd.DataFrame:
    rng = world.config.rng("services.csc")
    refs = contacts[contacts["decision"] == "CSC_ASSESSMENT"]
    refs = pd.DataFrame({
        "person_key": refs["person_key"].to_numpy(), "household_key": refs["household_key"].to_numpy(),
        "referral_date": _local_date(refs["decided_at"]), "source_code": refs["source_code"].to_numpy(),
        "mash_contact_id": refs["contact_id"].to_numpy(), "route": "MASH",
        "driver": refs["driver"].to_numpy(), "severity": refs["severity"].to_numpy(),
        "concerns": refs["concerns"].to_numpy(),
    })
    out = _csc_outcomes(world.config, refs, rng)
    return _drop_overlapping(out, "person_key", "referral_date", "close_date")


def _local_date(instants: pd.Series) -> np.ndarray:
    return pd.to_datetime(instants, utc=True).dt.tz_convert(LONDON).dt.tz_localize(None).dt.normalize().to_numpy().astype("datetime64[D]")


def _csc_outcomes(config: CityConfig, refs: pd.DataFrame, rng) -> pd.DataFrame:
    """Assessment, then no further action, step-down, CIN, or a section 47 enquiry that
    can lead to a child protection plan and for a few to care."""
    n = len(refs)
    refs = refs.reset_index(drop=True).copy()
    ref = refs["referral_date"].to_numpy().astype("datetime64[D]")
    sev = refs["severity"].to_numpy()
    z = (sev - np.mean(sev)) / (np.std(sev) + 1e-9) if n else sev

    def days(median, sigma, lo=1, hi=2000):
        return np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi).astype(np.int64) * DAY

    refs["nfa_at_referral"] = rng.random(n) < 0.06
    refs["assess_start"] = ref + rng.integers(0, 4, n) * DAY
    refs["assess_auth"] = refs["assess_start"].to_numpy() + days(26, 0.45, 3, 90)
    refs["child_seen"] = rng.random(n) < 0.95
    u = rng.random(n)
    p_s47 = np.clip(0.22 + 0.10 * z, 0.05, 0.6)
    p_cin = np.clip(0.30 + 0.05 * z, 0.1, 0.6)
    p_down = 0.12
    outcome = np.where(u < p_s47, "S47", np.where(u < p_s47 + p_cin, "CIN", np.where(u < p_s47 + p_cin + p_down, "STEP_DOWN", "NFA")))
    outcome = np.where(refs["nfa_at_referral"], "NFA_REFERRAL", outcome)
    refs["assessment_outcome"] = outcome
    auth = refs["assess_auth"].to_numpy()

    s47 = outcome == "S47"
    refs["s47_start"] = np.where(s47, refs["assess_start"].to_numpy() + rng.integers(0, 6, n) * DAY, np.datetime64("NaT"))
    refs["s47_end"] = np.where(s47, refs["s47_start"].to_numpy() + rng.integers(5, 16, n) * DAY, np.datetime64("NaT"))
    v = rng.random(n)
    s47_outcome = np.where(v < np.clip(0.55 + 0.1 * z, 0.3, 0.85), "ICPC", np.where(v < 0.85, "CIN", "NFA"))
    refs["s47_outcome"] = np.where(s47, s47_outcome, None)
    cp = s47 & (s47_outcome == "ICPC")
    refs["cp_start"] = np.where(cp, refs["s47_end"].to_numpy() + rng.integers(5, 16, n) * DAY, np.datetime64("NaT"))
    refs["cp_end"] = np.where(cp, refs["cp_start"].to_numpy() + days(270, 0.5, 60, 1500), np.datetime64("NaT"))
    cat = _draw_by_group(rng, refs["driver"].to_numpy(), {
        "domestic_abuse": {"EMO": 0.6, "NEG": 0.2, "PHY": 0.1, "MUL": 0.1},
        "none": {"NEG": 0.5, "EMO": 0.2, "PHY": 0.12, "SAB": 0.06, "MUL": 0.12},
        **{k: {"NEG": 0.65, "EMO": 0.2, "PHY": 0.07, "SAB": 0.03, "MUL": 0.05}
           for k in ("mental_health", "substance_misuse", "poverty", "housing", "child_behaviour")},
    })
    refs["cp_category"] = np.where(cp, cat, None)
    cla = (cp & (rng.random(n) < 0.22)) | (s47 & ~cp & (z > 1.0) & (rng.random(n) < 0.25))
    cla_start = np.where(cp, refs["cp_start"].to_numpy() + rng.integers(10, 200, n) * DAY,
                         refs["s47_end"].to_numpy())
    refs["cla_start"] = np.where(cla, cla_start, np.datetime64("NaT"))
    refs["cla_end"] = np.where(cla, refs["cla_start"].to_numpy() + days(420, 0.7, 30, 3000), np.datetime64("NaT"))
    refs["cla_legal_status"] = np.where(cla, rng.choice(["C2", "V2", "C1", "L1", "E1"], n, p=[0.45, 0.3, 0.15, 0.05, 0.05]), None)
    refs["cla_ceased_reason"] = np.where(cla, rng.choice(["E13", "E11", "E12", "E41", "E45", "X1"], n, p=[0.45, 0.1, 0.1, 0.15, 0.1, 0.1]), None)
    # A CP plan is ended in favour of CLA when the child comes into care
    refs["cp_end"] = np.where(cla & cp, np.minimum(refs["cp_end"].to_numpy(), refs["cla_start"].to_numpy()), refs["cp_end"].to_numpy())

    cin = (outcome == "CIN") | (s47 & (s47_outcome == "CIN")) | cp
    cin_start = np.where(outcome == "CIN", auth + rng.integers(0, 11, n) * DAY,
                         np.where(cp, refs["cp_end"].to_numpy(), refs["s47_end"].to_numpy()))
    refs["cin_start"] = np.where(cin, cin_start, np.datetime64("NaT"))
    refs["cin_end"] = np.where(cin, refs["cin_start"].to_numpy() + days(180, 0.5, 30, 1200), np.datetime64("NaT"))

    ends = np.stack([auth, refs["s47_end"].to_numpy(), refs["cp_end"].to_numpy(), refs["cla_end"].to_numpy(),
                     refs["cin_end"].to_numpy()], axis=1).astype("datetime64[D]")
    close = np.where(np.isnat(ends), np.datetime64("1900-01-01"), ends).max(axis=1)
    close = np.where(refs["nfa_at_referral"], ref + rng.integers(0, 3, n) * DAY, close)
    refs["close_date"] = close
    w = rng.random(n)
    after_plan = np.where(w < 0.78, "RC7", np.where(w < 0.93, "RC9", "RC5"))
    reason = np.select(
        [refs["nfa_at_referral"], outcome == "NFA", outcome == "STEP_DOWN", cla],
        ["RC8", "RC8", "RC9", np.where(w < 0.5, "RC4", "RC3")], after_plan)
    refs["close_reason"] = np.where(s47 & (s47_outcome == "NFA"), "RC8", reason)
    refs["primary_need"] = pd.Series(refs["driver"]).map(PRIMARY_NEED).to_numpy()
    return refs


def _drop_overlapping(refs: pd.DataFrame, key: str, start: str, end: str) -> pd.DataFrame:
    """A second referral while the child's case is still open joins that case: keep
    only referrals that start after the previous kept one closed."""
    refs = refs.sort_values([key, start], kind="stable").reset_index(drop=True)
    keep = np.ones(len(refs), dtype=bool)
    keys, starts, ends = refs[key].to_numpy(), refs[start].to_numpy(), refs[end].to_numpy()
    open_until, last_key = None, None
    for i in range(len(refs)):  # one pass over referrals (thousands), not children
        if keys[i] == last_key and starts[i] <= open_until:
            keep[i] = False
            continue
        last_key, open_until = keys[i], ends[i]
    return refs[keep].reset_index(drop=True)


# ------------------------------------------------------------------ early help
def _eh_referrals(world, contacts: pd.DataFrame, csc: pd.DataFrame) -> pd.DataFrame:
    """Referrals to early help from the MASH, step-down from social care and direct
    from schools, health and families, with sources calibrated to the review."""
    config = world.config
    rng = config.rng("services.eh")
    teh = contacts[(contacts["decision"] == "TARGETED_EH") & (contacts["child_seq"] == contacts.groupby("contact_id")["child_seq"].transform("min"))]
    mash = pd.DataFrame({
        "household_key": teh["household_key"].to_numpy(), "person_key": teh["person_key"].to_numpy(),
        "referral_date": _local_date(teh["decided_at"]), "source_code": teh["source_code"].to_numpy(),
        "route": "MASH", "mash_contact_id": teh["contact_id"].to_numpy(), "severity": teh["severity"].to_numpy(),
    })
    down = csc[csc["close_reason"] == "RC9"]
    step_down = pd.DataFrame({
        "household_key": down["household_key"].to_numpy(), "person_key": down["person_key"].to_numpy(),
        "referral_date": down["close_date"].to_numpy(), "source_code": "5A", "route": "STEP_DOWN",
        "mash_contact_id": None, "severity": down["severity"].to_numpy(),
    })
    step_down = step_down[step_down["referral_date"] <= np.datetime64(config.end, "D")]
    direct = _direct_eh_referrals(world, rng, pd.concat([mash, step_down], ignore_index=True))
    refs = pd.concat([mash, step_down, direct], ignore_index=True)
    refs = refs.sort_values(["referral_date", "household_key"], kind="stable").reset_index(drop=True)
    refs["referral_no"] = np.arange(len(refs))
    refs["district"] = world.address_at(refs["household_key"].to_numpy(), refs["referral_date"].to_numpy())["district"].to_numpy()
    n = len(refs)
    declined = rng.random(n) < 0.10
    refs["accepted"] = ~declined
    refs["reason_not_accepted"] = np.where(declined, rng.choice(["THRESHOLD_NOT_MET", "CONSENT_NOT_GIVEN", "SIGNPOSTED"], n, p=[0.5, 0.3, 0.2]), None)
    return refs


def _direct_eh_referrals(world, rng, routed: pd.DataFrame) -> pd.DataFrame:
    config = world.config
    months = _month_fraction(config, world.needs.months).sum()
    count = rng.poisson(config.calibration.eh_direct_referrals_per_month_per_120k * config.scale * months)
    # who: children in households with needs, a few without
    kids = world.children()
    kids = kids[kids["birth_date"] < np.datetime64(config.end)]
    # schools refer most in the autumn term and least in August: the queue builds each autumn
    days = np.arange(np.datetime64(config.start, "D"), np.datetime64(config.end, "D") + DAY)
    month = days.astype("datetime64[M]").astype(int) % 12
    season = np.asarray(EH_SEASON)[month]
    when = rng.choice(days, size=len(kids), p=season / season.sum())
    n_needs = world.needs.count_at(kids["household_key"].to_numpy(), when)
    age = (when - kids["birth_date"].to_numpy().astype("datetime64[D]")) / DAY / 365.25
    death = kids["death_date"].to_numpy()
    alive = np.isnat(death) | (death > when)
    weight = np.where((age >= 0) & (age < 18) & alive, np.exp(1.1 * n_needs), 0.0)
    pick = rng.choice(len(kids), size=count, p=weight / weight.sum())
    refs = pd.DataFrame({
        "household_key": kids["household_key"].to_numpy()[pick], "person_key": kids["person_key"].to_numpy()[pick],
        "referral_date": when[pick], "route": "DIRECT", "mash_contact_id": None,
        "severity": n_needs[pick] * 0.6 + rng.normal(0, 0.5, count),
    })
    # sources: fill each target share across all routes, the rest from other agencies
    target = config.calibration.eh_source_share
    total = len(routed) + count
    have = {
        "health": routed["source_code"].isin(HEALTH_SOURCES).sum(),
        "schools": routed["source_code"].isin(SCHOOL_SOURCES).sum(),
        "self": (routed["source_code"] == "1C").sum(),
    }
    quota = {k: int(max(0, round(target[k] * total - have[k]))) for k in target}
    pools = {"health": (["3A", "3B", "3C", "3F"], [0.3, 0.35, 0.25, 0.1]), "schools": (["2A", "2B"], [0.85, 0.15]),
             "self": (["1C"], [1.0]), "other": (["1A", "4", "8", "5B"], [0.3, 0.2, 0.35, 0.15])}
    labels = np.concatenate([np.repeat(k, min(quota[k], count)) for k in ("health", "schools", "self")] + [np.array([], dtype=object)])
    labels = np.r_[labels, np.repeat("other", max(0, count - len(labels)))][:count]
    labels = labels[rng.permutation(count)]
    refs["source_code"] = _draw_by_group(rng, labels, {k: dict(zip(*pools[k])) for k in pools})
    refs["route"] = np.where(refs["source_code"] == "2B", "INCLUSION_PANEL",
                             np.where(refs["source_code"] == "8", "VLR", "DIRECT"))
    return refs


def _key_workers(config: CityConfig, refs: pd.DataFrame) -> pd.DataFrame:
    """Key worker posts per district, funded a little below steady-state demand so that
    families queue at busy times."""
    rng = config.rng("services.workers")
    years = (np.datetime64(config.end) - np.datetime64(config.start)) / DAY / 365.25
    median_days = 150
    rows = []
    for district in DISTRICTS:
        per_year = (refs["district"].to_numpy() == district).sum() / years
        # about 83% of accepted referrals open an episode (measured); the rest join an open one
        fte_needed = 0.83 * per_year * median_days * 1.12 / 365.25 / config.calibration.key_worker_families_standard
        fte_funded = max(1.0, fte_needed * config.calibration.key_worker_staffing_ratio * DISTRICT_FUNDING[district])
        total = 0.0
        while total < fte_funded:
            fte = rng.choice([1.0, 0.8, 0.6, 0.5], p=[0.72, 0.12, 0.06, 0.10])
            rows.append((district, fte))
            total += fte
    n = len(rows)
    workers = pd.DataFrame(rows, columns=["district", "fte"])
    workers["worker_id"] = [f"{70001 + i}" for i in range(n)]
    workers["role"] = np.where(rng.random(n) < 0.8, "INTERVENTION_WORKER", np.where(rng.random(n) < 0.5, "SWIPI", "SPECIALIST"))
    workers["team"] = "EH " + workers["district"].str.title()
    late = rng.random(n) < 0.12  # posts filled part-way through the period
    span = (np.datetime64(config.end, "D") - np.datetime64(config.start, "D")) / DAY
    workers["start_date"] = np.where(late, np.datetime64(config.start, "D") + (rng.random(n) * span * 0.7).astype(np.int64) * DAY,
                                     np.datetime64(config.start, "D") - rng.integers(100, 3000, n) * DAY)
    workers["capacity"] = np.maximum(1, np.round(rng.choice([10, 11, 12], n) * workers["fte"].to_numpy())).astype(int)
    return workers


def _episode_requests(refs: pd.DataFrame) -> pd.DataFrame:
    """Accepted referrals: each opens an episode unless the family's episode is still
    open or waiting when it arrives (decided in ``_allocate_key_workers``)."""
    return refs[refs["accepted"]]


def _allocate_key_workers(config: CityConfig, acc: pd.DataFrame, workers: pd.DataFrame) -> pd.DataFrame:
    """First come, first served per district: a family is allocated the key worker with
    most room as soon as one has room; until then it waits (and some give up)."""
    rng = config.rng("services.allocation")
    n = len(acc)
    duration = np.clip(rng.lognormal(np.log(150), 0.5, n), 30, 720).astype(int)
    patience = np.clip(rng.exponential(400, n), 30, None).astype(int)
    start = np.datetime64(config.start, "D")
    arrive = ((acc["referral_date"].to_numpy().astype("datetime64[D]") - start) / DAY).astype(int)
    allocated = np.full(n, -1)
    worker_of = np.full(n, -1)
    ended = np.full(n, -1)
    w_district = workers["district"].to_numpy()
    w_cap = workers["capacity"].to_numpy()
    w_from = ((workers["start_date"].to_numpy().astype("datetime64[D]") - start) / DAY).astype(int)
    load = np.zeros(len(workers), dtype=int)
    releases: list[tuple[int, int]] = []
    district = acc["district"].to_numpy()
    order = np.argsort(arrive, kind="stable")
    days = int((np.datetime64(config.end, "D") - start) / DAY) + 1
    queues = {d: [] for d in DISTRICTS}
    by_day = pd.Series(order).groupby(arrive[order]).apply(list).to_dict()
    family = acc["household_key"].to_numpy()
    open_episode: dict[str, int] = {}  # household -> its episode still open or waiting
    opens = np.zeros(n, dtype=bool)
    for day in range(days):
        while releases and releases[0][0] <= day:
            _, w = heapq.heappop(releases)
            load[w] -= 1
        for i in by_day.get(day, []):
            current = open_episode.get(family[i])
            if current is not None and (ended[current] < 0 or ended[current] > day):
                continue  # joins the family's open episode
            open_episode[family[i]] = i
            opens[i] = True
            queues[district[i]].append(i)
        for d, queue in queues.items():
            if not queue:
                continue
            still = []
            for i in queue:
                if day - arrive[i] >= patience[i]:
                    ended[i] = day  # gave up waiting
                else:
                    still.append(i)
            queue[:] = still
            avail = np.flatnonzero((w_district == d) & (w_from <= day) & (load < w_cap))
            while queue and len(avail):
                room = w_cap[avail] - load[avail]
                w = avail[np.argmax(room)]
                i = queue.pop(0)
                allocated[i], worker_of[i], ended[i] = day, w, day + duration[i]
                load[w] += 1
                heapq.heappush(releases, (day + duration[i], w))
                if load[w] >= w_cap[w]:
                    avail = avail[avail != w]
    episodes = acc.copy()
    episodes["opens"] = opens
    episodes["start_date"] = episodes["referral_date"]
    episodes["allocated_date"] = np.where(allocated >= 0, start + allocated * DAY, np.datetime64("NaT"))
    episodes["worker_index"] = worker_of
    episodes["key_worker_id"] = np.where(worker_of >= 0, workers["worker_id"].to_numpy()[np.maximum(worker_of, 0)], None)
    episodes["end_date"] = np.where(ended >= 0, start + ended * DAY, np.datetime64("NaT"))
    episodes.loc[episodes["end_date"] > np.datetime64(config.end), "end_date"] = np.datetime64("NaT")
    sev = episodes["severity"].to_numpy()
    u = rng.random(n)
    p_up = np.clip(0.05 + 0.04 * (sev - sev.mean()), 0.01, 0.3)
    reason = np.where(u < p_up, "STEP_UP", np.select(
        [u < p_up + 0.14, u < p_up + 0.18, u < p_up + 0.28, u < p_up + 0.32],
        ["DISENGAGED", "MOVED_AWAY", "UNIVERSAL", "CONSENT_WITHDRAWN"], "OUTCOMES_MET"))
    reason = np.where(allocated < 0, "CONSENT_WITHDRAWN", reason)
    episodes["end_reason"] = np.where(pd.isna(episodes["end_date"]), None, reason)
    episodes = episodes[episodes.pop("opens").to_numpy()].reset_index(drop=True)
    episodes["episode_no"] = np.arange(len(episodes))
    return episodes


def _step_up_referrals(world, episodes: pd.DataFrame, eh_refs: pd.DataFrame) -> pd.DataFrame:
    up = episodes[episodes["end_reason"] == "STEP_UP"]
    return pd.DataFrame({
        "person_key": up["person_key"].to_numpy(), "household_key": up["household_key"].to_numpy(),
        "referral_date": up["end_date"].to_numpy().astype("datetime64[D]"), "source_code": "5D",
        "mash_contact_id": None, "route": "STEP_UP", "driver": "none",
        "severity": up["severity"].to_numpy() + 0.8, "concerns": "20",
        "eh_episode_no": up["episode_no"].to_numpy(),
    })


# ------------------------------------------------------------------ social care people
def mosaic_people(world, csc: pd.DataFrame) -> pd.DataFrame:
    """Who has a Mosaic person record, from when, under which ``pers_person_id``.

    Children get a record at their first referral, with their mother (and often the
    father) beside them; some babies are recorded unborn three months before birth.
    A few children are recorded twice by a worker who did not find the first record:
    most duplicates are later merged (``duplicate_of``), some then disappear from
    the extract. Columns: person_key, pers_person_id, created, duplicate_of,
    merged_on, deleted_on, unborn_until (birth date for records created unborn).
    """
    config = world.config
    rng = config.rng("services.mosaic_people")
    persons = world.persons.set_index("person_key")
    first_ref = csc.groupby("person_key")["referral_date"].min()
    kids = pd.DataFrame({"person_key": first_ref.index, "created": first_ref.to_numpy().astype("datetime64[D]")})
    kids["household_key"] = persons.loc[kids["person_key"], "household_key"].to_numpy()
    parents = []
    for role, share in (("mother_key", 1.0), ("father_key", 0.5)):
        who = persons.loc[kids["person_key"], role].to_numpy()
        take = (who != "") & (rng.random(len(kids)) < share)
        parents.append(pd.DataFrame({"person_key": who[take], "created": kids["created"].to_numpy()[take]}))
    # unborn: babies born into households with two or more needs, some referred pre-birth
    born = world.children()
    born = born[born["birth_date"] >= np.datetime64(config.start)]
    pre = world.needs.count_at(born["household_key"].to_numpy(), born["birth_date"].to_numpy()) >= 2
    pre &= rng.random(len(born)) < 0.25
    unborn = pd.DataFrame({
        "person_key": born["person_key"].to_numpy()[pre],
        "created": (born["birth_date"].to_numpy()[pre].astype("datetime64[D]") - rng.integers(60, 150, pre.sum()) * DAY),
        "unborn_until": born["birth_date"].to_numpy()[pre].astype("datetime64[D]"),
    })
    people = pd.concat([kids[["person_key", "created"]], unborn, *parents], ignore_index=True)
    people = people.sort_values(["person_key", "created"], kind="stable").drop_duplicates("person_key")
    people = people.sort_values(["created", "person_key"], kind="stable").reset_index(drop=True)
    people["pers_person_id"] = (1_000_001 + np.arange(len(people)) * 3).astype(str)
    people["duplicate_of"] = None
    people["merged_on"] = np.datetime64("NaT")
    people["deleted_on"] = np.datetime64("NaT")

    # duplicates: children with a later referral, recorded again at that referral
    refs2 = csc.sort_values("referral_date").groupby("person_key").nth(1)[["person_key", "referral_date"]]
    children = people[people["person_key"].isin(first_ref.index)]
    dup_pool = children.sample(frac=1.0, random_state=int(rng.integers(0, 2**31)))
    n_dup = int(round(len(children) * config.defects.mosaic_duplicate))
    dups = dup_pool.head(n_dup).copy()
    second = refs2.set_index("person_key")["referral_date"].astype("datetime64[ns]")  # typed even when empty
    soon_after = pd.to_datetime(dups["created"]) + pd.to_timedelta(rng.integers(1, 30, len(dups)), unit="D")
    at_second = second.reindex(dups["person_key"].to_numpy())  # keeps its datetime type, even when empty
    dups["created"] = np.where(at_second.notna(), at_second.to_numpy(), soon_after.to_numpy()).astype("datetime64[D]")
    dups["duplicate_of"] = None
    master_id = dups["pers_person_id"].to_numpy()
    dups["pers_person_id"] = (2_000_002 + np.arange(len(dups)) * 3).astype(str)
    merged = rng.random(len(dups)) < config.defects.mosaic_duplicate_merged
    merge_day = dups["created"].to_numpy() + rng.integers(5, 200, len(dups)) * DAY
    dups["merged_on"] = np.where(merged, merge_day, np.datetime64("NaT"))
    dups["duplicate_of"] = np.where(merged, master_id, None)
    vanish = merged & (rng.random(len(dups)) < 0.5)
    dups["deleted_on"] = np.where(vanish, merge_day + 30 * DAY, np.datetime64("NaT"))
    out = pd.concat([people, dups], ignore_index=True)
    out["unborn_until"] = pd.to_datetime(out["unborn_until"])
    return out[["person_key", "pers_person_id", "created", "duplicate_of", "merged_on", "deleted_on", "unborn_until"]]
