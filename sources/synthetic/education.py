"""Capita ONE, the education management system: the city's schools as the census sees them.

Every school-age child gets a school career (Reception to Year 6 in a primary of the
household's district, Years 7-11 in a secondary, Years 12-13 for some), which life events
bend: a move across districts means a new school, a few children with an education,
health and care plan go to a special school, a permanent exclusion leads to the pupil
referral unit, and some children leave the roll for elective home education or go
missing from education. Free school meals follow household poverty, absence and
suspensions follow the household's needs, so measures built from these files carry
real signal.

Everything is simulated once as the full history the system will ever hold, each record
with the date it entered ONE; each drop is then that history *as of* its extract date:
the records that existed, with end dates shown only once they have happened (see
``output.as_of``). Identity defects (typos, a wrong UPN check letter, postcode styles,
stale addresses) are decided once per pupil, so a pupil looks the same in every drop.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from . import defects
from .config import DISTRICTS
from .names import GROUPS
from .output import Drop, as_of, census_dates, drop_dates
from .world import World

DAY = np.timedelta64(1, "D")
NAT = np.datetime64("NaT", "D")
FAR_FUTURE = np.datetime64("2200-01-01", "D")

COLUMNS = {
    "pupils.csv": ["ONEPupilID", "UPN", "FormerUPN", "ULN", "Surname", "Forename", "MiddleNames",
                   "PreferredSurname", "FormerSurname", "DOB", "Sex", "Ethnicity", "FirstLanguage",
                   "AddressLine1", "AddressLine2", "Town", "Postcode", "UPRN", "YoungCarer", "ServiceChild"],
    "enrolments.csv": ["ONEPupilID", "UPN", "URN", "EntryDate", "LeavingDate", "EnrolStatus", "NCyearActual"],
    "fsm.csv": ["ONEPupilID", "UPN", "FSMStartDate", "FSMEndDate"],
    "sen.csv": ["ONEPupilID", "UPN", "SENProvision", "SENType1", "SENType2"],
    "attendance.csv": ["ONEPupilID", "UPN", "URN", "Term", "SessionsPossible", "SessionsAuthorised",
                       "SessionsUnauthorised"],
    "exclusions.csv": ["ExclusionID", "ONEPupilID", "UPN", "URN", "Category", "StartDate", "Sessions",
                       "Reason1", "Reason2", "Reason3"],
    "ehe.csv": ["EHEID", "ONEPupilID", "UPN", "StartDate", "EndDate", "Reason"],
    "cme.csv": ["CMEID", "ONEPupilID", "UPN", "IdentifiedDate", "Reason", "ResolvedDate"],
}
CENSUS_FILES = tuple(COLUMNS)
MONTHLY_FILES = ("ehe.csv", "cme.csv")

# Nominal term dates (month, day) and the sessions (half days) a full term offers. Real
# term dates move by a few days each year; nothing downstream depends on the exact day.
TERMS = (("SPR", (1, 5), (4, 3), 120), ("SUM", (4, 20), (7, 22), 130), ("AUT", (9, 2), (12, 19), 140))
SCHOOL_YEAR_START = (9, 2)  # rolled forward to a weekday
SCHOOL_YEAR_END = (7, 22)  # the leaving day, rolled back to a weekday

SEN_TYPES_K = {"SLCN": 0.24, "SEMH": 0.19, "MLD": 0.17, "SPLD": 0.12, "ASD": 0.09, "OTH": 0.04,
               "PD": 0.03, "HI": 0.02, "VI": 0.01, "MSI": 0.005, "NSA": 0.085}
SEN_TYPES_E = {"ASD": 0.33, "SLCN": 0.21, "SEMH": 0.14, "MLD": 0.07, "SLD": 0.06, "PD": 0.05,
               "SPLD": 0.03, "PMLD": 0.02, "HI": 0.02, "VI": 0.01, "MSI": 0.005, "OTH": 0.055}
EXCLUSION_REASONS = {"DB": 0.46, "PA": 0.11, "VA": 0.07, "VP": 0.08, "OW": 0.06, "DA": 0.03, "DM": 0.03,
                     "BU": 0.03, "SM": 0.02, "MT": 0.02, "PP": 0.02, "DS": 0.02, "TH": 0.015,
                     "RA": 0.01, "LG": 0.01, "PH": 0.015}
SUSPENSION_SESSIONS = {1: 0.12, 2: 0.38, 3: 0.1, 4: 0.2, 6: 0.1, 10: 0.1}
# CODES.md has no EHE or CME reason lists yet; these follow the DfE categories.
EHE_REASONS = ("PHILOSOPHICAL", "MENTAL_HEALTH", "DISSATISFIED", "SEN", "HEALTH", "BULLYING",
               "EXCLUSION_AVOIDANCE", "RELIGIOUS_CULTURAL", "LIFESTYLE", "OTHER", "NOT_GIVEN")
CME_REASONS = ("REMOVED_FROM_ROLL", "MOVED_ADDRESS_UNKNOWN", "FAILED_TO_START", "NOT_REGISTERED",
               "ABROAD_NOT_RETURNED")

# How each household need moves the log-odds of a pupil's absence in a term.
ABSENCE_EFFECT = {"domestic_abuse": 0.55, "mental_health": 0.45, "substance_misuse": 0.6,
                  "poverty": 0.25, "housing": 0.5, "child_behaviour": 0.8}
ABSENCE_BASE_LOGIT = -3.3


# ======================================================================== dates
def _ymd(years, month: int, day: int) -> np.ndarray:
    years = np.asarray(years, dtype=np.int64)
    months = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    return months.astype("datetime64[D]") + (day - 1)


def _year(d) -> np.ndarray:
    return np.asarray(d, dtype="datetime64[Y]").astype(np.int64) + 1970


def _month(d) -> np.ndarray:
    return np.asarray(d, dtype="datetime64[M]").astype(np.int64) % 12 + 1


def _academic_year(d) -> np.ndarray:
    """The calendar year in which the school year containing ``d`` began."""
    return _year(d) - (_month(d) < 9)


def _first_school_day(years) -> np.ndarray:
    return np.busday_offset(_ymd(years, *SCHOOL_YEAR_START), 0, roll="forward")


def _leaving_day(years) -> np.ndarray:
    return np.busday_offset(_ymd(years, *SCHOOL_YEAR_END), 0, roll="backward")


def _weekday_on_or_after(d) -> np.ndarray:
    return np.busday_offset(np.asarray(d, dtype="datetime64[D]"), 0, roll="forward")


def _iso(values) -> np.ndarray:
    """Dates as YYYY-MM-DD text, None where unknown (fast for whole columns)."""
    d = pd.to_datetime(pd.Series(values, copy=False)).to_numpy("datetime64[D]")
    text = np.datetime_as_string(d, unit="D").astype(object)
    text[np.isnat(d)] = None
    return text


def term_calendar(start: date, end: date) -> pd.DataFrame:
    """Every term overlapping ``start``..``end``: label (``2024-AUT``), first and last day."""
    rows = [
        (f"{year}-{name}", date(year, *first), date(year, *last), sessions)
        for year in range(start.year - 1, end.year + 1)
        for name, first, last, sessions in TERMS
        if date(year, *last) >= start and date(year, *first) <= end
    ]
    terms = pd.DataFrame(rows, columns=["term", "first", "last", "sessions"])
    for col in ("first", "last"):
        terms[col] = terms[col].to_numpy("datetime64[D]")
    return terms.sort_values("first", kind="stable").reset_index(drop=True)


# ======================================================================== people
def _draw_codes(weights: dict[str, float], draw: np.ndarray) -> np.ndarray:
    """Map uniform draws onto weighted codes."""
    names = np.asarray(list(weights), dtype=object)
    cum = np.cumsum(list(weights.values()))
    return names[np.minimum(np.searchsorted(cum / cum[-1], draw, side="right"), len(names) - 1)]


def _household_units(world: World) -> tuple[pd.Series, pd.DataFrame]:
    """The unit a person's ethnicity is drawn for (the household) and one row per unit."""
    persons = world.persons
    unit = persons["household_key"].astype(object).where(persons["household_key"].notna(), persons["person_key"])
    units = pd.DataFrame({"unit": unit.to_numpy(), "group": persons["group"].to_numpy()})
    return unit, units.drop_duplicates("unit").sort_values("unit", kind="stable").reset_index(drop=True)


def ethnicity_codes(world: World) -> pd.Series:
    """A CBDS ethnicity code per person, shared by a household, drawn from its background
    group's weights in ``names.GROUPS`` (deterministic: its own random stream)."""
    unit, units = _household_units(world)
    draw = world.config.rng("education.ethnicity").random(len(units))
    codes = np.empty(len(units), dtype=object)
    for group, (_, weights, _) in GROUPS.items():  # five groups
        mask = (units["group"] == group).to_numpy()
        codes[mask] = _draw_codes(weights, draw[mask])
    by_unit = pd.Series(codes, index=units["unit"].to_numpy())
    return pd.Series(by_unit.reindex(unit.to_numpy()).to_numpy(), index=world.persons.index, name="ethnicity")


def first_language_codes(world: World) -> pd.Series:
    """The first language of each person's background group (``names.GROUPS``)."""
    language = {group: spec[2] for group, spec in GROUPS.items()}
    return world.persons["group"].map(language).rename("first_language")


def _school_children(world: World) -> pd.DataFrame:
    """Children who are ever of school age in the period, one row each, in a fixed order."""
    config = world.config
    rng = config.rng("education.children")
    is_pupil = ((world.persons["role"] == "child") & world.persons["upn"].notna()).to_numpy()
    p = world.persons[is_pupil]
    birth = p["birth_date"].to_numpy("datetime64[D]")
    cohort = _year(birth) + (_month(birth) >= 9)
    reception = cohort + 4  # the school year (by its starting September) of Reception
    # A child whose Year 13 ended before the period began was never on ONE's live roll.
    keep = _leaving_day(reception + 14) >= np.datetime64(config.start, "D")
    kids = pd.DataFrame({
        "person_key": p["person_key"].to_numpy(), "household_key": p["household_key"].to_numpy(),
        "birth": birth, "death": p["death_date"].to_numpy("datetime64[D]"), "cohort": cohort,
        "reception": reception, "sex": p["sex"].to_numpy(), "row": np.flatnonzero(is_pupil),
    })[keep].sort_values("person_key", kind="stable").reset_index(drop=True)
    n = len(kids)
    kids["hrow"] = world.needs.row_index(kids["household_key"].to_numpy())
    # ONE's internal id: an integer handed out in no meaningful order, 6-7 digits.
    slot = rng.permutation(n)
    kids["one_id"] = 100_000 + slot * 7 + rng.integers(0, 7, n)
    kids["stays_on"] = rng.random(n) < 0.55  # Years 12-13 in the school's sixth form
    # Siblings mostly share a primary and a secondary: the school draw is the household's.
    household_u = pd.Series(kids["household_key"].to_numpy()).map(
        _stable_uniform(kids["household_key"].to_numpy(), rng)).to_numpy()
    kids["u_school"] = np.where(rng.random(n) < 0.8, household_u, rng.random(n))
    return kids


def _stable_uniform(keys: np.ndarray, rng: np.random.Generator) -> pd.Series:
    unique = np.unique(keys.astype(str))
    return pd.Series(rng.random(len(unique)), index=unique)


# ======================================================================== needs
def _needs_by_month(world: World, kids: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each need as a children x months bool matrix (the household's state that month)."""
    rows = kids["hrow"].to_numpy()
    return {need: state[rows] for need, state in world.needs.active.items()}


def _needs_at(world: World, kids_rows: np.ndarray, kids: pd.DataFrame, when) -> dict[str, np.ndarray]:
    """The needs of the household of ``kids`` row ``kids_rows`` at each date ``when``."""
    rows = kids["hrow"].to_numpy()[kids_rows]
    cols = world.needs.month_index(when)
    return {need: state[rows, cols] for need, state in world.needs.active.items()}


def _first_event_month(hazard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Month index of the first event for monthly probabilities ``hazard``; -1 for none."""
    hit = rng.random(hazard.shape, dtype=np.float32) < hazard
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _day_in_month(months: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return months + rng.integers(0, 28, len(months)) * DAY


# ======================================================================== SEN
def _sen(world: World, kids: pd.DataFrame, needs: dict[str, np.ndarray]) -> pd.DataFrame:
    """When each child's SEN support (K) and EHC plan (E) began, and their need types.

    Boys and children in households where behaviour is a concern are identified more
    often, and their primary need is more often social, emotional and mental health.
    """
    rng = world.config.rng("education.sen")
    n = len(kids)
    behaviour = needs["child_behaviour"].mean(axis=1) > 0
    lift = np.exp(0.75 * behaviour + 0.35 * (kids["sex"].to_numpy() == "M"))
    reception_day = _first_school_day(kids["reception"].to_numpy())
    has_e = rng.random(n) < 0.042 * lift / 1.35
    has_k = ~has_e & (rng.random(n) < 0.2 * lift / 1.35)
    # Some plans are in place before a child starts school; most come later.
    e_from = reception_day - 200 * DAY + (rng.exponential(3.0 * 365, n)).astype(np.int64) * DAY
    k_from = reception_day + (rng.exponential(2.0 * 365, n)).astype(np.int64) * DAY
    semh = behaviour & (rng.random(n) < 0.5)
    k_type = np.where(semh, "SEMH", _draw_codes(SEN_TYPES_K, rng.random(n)))
    e_type = np.where(semh, "SEMH", _draw_codes(SEN_TYPES_E, rng.random(n)))
    second = _draw_codes(SEN_TYPES_K, rng.random(n))
    has_second = rng.random(n) < 0.3
    return pd.DataFrame({
        "k_from": np.where(has_k, k_from, NAT), "e_from": np.where(has_e, e_from, NAT),
        "k_type": k_type, "e_type": e_type,
        "type2_k": np.where(has_second & (second != k_type), second, None),
        "type2_e": np.where(has_second & (second != e_type), second, None),
    })


# ======================================================================== life events
def _school_age_by_month(kids: pd.DataFrame, months: np.ndarray, lo: int = 0, hi: int = 11) -> np.ndarray:
    nc = _academic_year(months)[None, :] - kids["cohort"].to_numpy()[:, None] - 4
    return (nc >= lo) & (nc <= hi)


def _ehe_episodes(world: World, kids: pd.DataFrame, needs, sen: pd.DataFrame) -> pd.DataFrame:
    """Elective home education: a standing register at the start, then new episodes whose
    hazard rises with parental mental health, behaviour concerns, housing and SEN."""
    config = world.config
    rng = config.rng("education.ehe")
    months = world.needs.months
    start = np.datetime64(config.start, "D")
    n = len(kids)
    school_age = _school_age_by_month(kids, months)
    reception_day = _first_school_day(kids["reception"].to_numpy())
    sen_any = (sen["k_from"].notna() | sen["e_from"].notna()).to_numpy()

    # The register as it stood when the period began.
    standing = school_age[:, 0] & (rng.random(n) < 0.009 * np.exp(0.6 * sen_any))
    standing_start = np.maximum(start - rng.integers(20, 3 * 365, n) * DAY, reception_day)

    risk = (0.9 * needs["mental_health"] + 0.8 * needs["child_behaviour"] + 0.4 * needs["housing"]
            + 0.6 * sen_any[:, None])
    hazard = np.where(school_age & ~standing[:, None], 0.00032 * np.exp(risk), 0.0).astype(np.float32)
    month = _first_event_month(hazard, rng)
    new = month >= 0
    new_start = _weekday_on_or_after(_day_in_month(months[np.maximum(month, 0)], rng))

    child = np.r_[np.flatnonzero(standing), np.flatnonzero(new)]
    began = np.r_[standing_start[standing], new_start[new]]
    # A third return to school after months; the rest stay home until Year 11 ends.
    returns = rng.random(len(child)) < 0.35
    back = began + np.maximum(40, rng.lognormal(np.log(220), 0.6, len(child))).astype(np.int64) * DAY
    aged_out = _leaving_day(kids["reception"].to_numpy()[child] + 12)
    ended = np.where(returns & (back < aged_out), back, aged_out)
    m = _needs_at(world, child, kids, began)
    reason = _ehe_reason(rng, m, sen_any[child])
    return pd.DataFrame({"child": child, "start": began, "end": ended,
                         "returns": ended < aged_out, "reason": reason})


def _ehe_reason(rng, needs_then: dict[str, np.ndarray], sen_any: np.ndarray) -> np.ndarray:
    n = len(sen_any)
    general = _draw_codes({"PHILOSOPHICAL": 0.25, "DISSATISFIED": 0.2, "LIFESTYLE": 0.1, "HEALTH": 0.08,
                           "BULLYING": 0.07, "RELIGIOUS_CULTURAL": 0.06, "OTHER": 0.12, "NOT_GIVEN": 0.12},
                          rng.random(n))
    draw = rng.random(n)
    return np.select(
        [needs_then["mental_health"] & (draw < 0.5), needs_then["child_behaviour"] & (draw < 0.4),
         sen_any & (draw < 0.35)],
        ["MENTAL_HEALTH", "EXCLUSION_AVOIDANCE", "SEN"], general)


def _cme_episodes(world: World, kids: pd.DataFrame, needs, ehe: pd.DataFrame) -> pd.DataFrame:
    """Children missing education: mostly families in housing trouble, fleeing domestic
    abuse or with substance misuse. The school takes the child off roll a few days
    before the LA identifies them; most are found a school again within weeks."""
    config = world.config
    rng = config.rng("education.cme")
    months = world.needs.months
    n = len(kids)
    risk = (1.1 * needs["housing"] + 0.9 * needs["domestic_abuse"] + 0.7 * needs["substance_misuse"]
            + 0.4 * needs["poverty"])
    eligible = _school_age_by_month(kids, months) & ~np.isin(np.arange(n), ehe["child"].to_numpy())[:, None]
    hazard = np.where(eligible, 0.00012 * np.exp(risk), 0.0).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    identified = _weekday_on_or_after(_day_in_month(months[month[child]], rng))
    off_roll = np.busday_offset(identified, -rng.integers(1, 8, len(child)), roll="backward")
    quick = rng.random(len(child)) < 0.88
    days = np.where(quick, np.maximum(5, rng.lognormal(np.log(35), 0.7, len(child))),
                    rng.integers(200, 500, len(child)))
    resolved = _weekday_on_or_after(identified + days.astype(np.int64) * DAY)
    aged_out = _leaving_day(kids["reception"].to_numpy()[child] + 12)
    return pd.DataFrame({
        "child": child, "off_roll": off_roll, "identified": identified,
        "resolved": np.minimum(resolved, aged_out), "returns": resolved < aged_out,
        "reason": _draw_codes({"REMOVED_FROM_ROLL": 0.45, "MOVED_ADDRESS_UNKNOWN": 0.25, "FAILED_TO_START": 0.1,
                               "NOT_REGISTERED": 0.12, "ABROAD_NOT_RETURNED": 0.08}, rng.random(len(child))),
    })


def _district_moves(world: World, kids: pd.DataFrame) -> pd.DataFrame:
    """Moves in the period that take a school-age child to a new school: most moves to
    another district, a few long moves within one."""
    rng = world.config.rng("education.transfers")
    res = world.population.residences.sort_values(["household_key", "valid_from"], kind="stable")
    district = world.addresses.set_index("address_id")["district"].reindex(res["address_id"]).to_numpy()
    same_house = res["household_key"].to_numpy()[1:] == res["household_key"].to_numpy()[:-1]
    moves = pd.DataFrame({
        "household_key": res["household_key"].to_numpy()[1:][same_house],
        "moved": res["valid_from"].to_numpy("datetime64[D]")[1:][same_house],
        "changed": (district[1:] != district[:-1])[same_house],
    })
    moves = moves[moves["moved"] >= np.datetime64(world.config.start, "D")]
    per_child = pd.DataFrame({"household_key": kids["household_key"].to_numpy(), "child": np.arange(len(kids))})
    joined = per_child.merge(moves, on="household_key").sort_values(["child", "moved"], kind="stable")
    take = rng.random(len(joined)) < np.where(joined["changed"], 0.85, 0.1)
    joined = joined[take]
    new_school = _weekday_on_or_after(joined["moved"].to_numpy() + rng.integers(0, 15, len(joined)) * DAY)
    return pd.DataFrame({"child": joined["child"].to_numpy(), "date": new_school})


# ======================================================================== careers
# Event kinds; on the same day they apply in this order (a start after an end).
STAGE_END, AGED_OUT, DEATH, OFF_ROLL, BACK, TRANSFER, SPECIAL, PERMANENT, STAGE_START = range(9)
PRIMARY, SECONDARY = 0, 1
NONE, MAINSTREAM, SPECIAL_SCHOOL, AP = 0, 1, 2, 3
STATE = ("in_stage", "gap", "ap", "special", "phase")


def _events(child, when, kind, u=None, chooses=False, **state) -> pd.DataFrame:
    """Events of one kind; ``state`` gives the values they set (others carry over)."""
    child = np.asarray(child)
    frame = pd.DataFrame({"child": child, "date": np.asarray(when, dtype="datetime64[D]"), "kind": kind,
                          "chooses": chooses, "u": np.nan if u is None else u})
    for name in STATE:
        frame[name] = float(state[name]) if name in state else np.nan
    return frame


def _career_events(world: World, kids: pd.DataFrame, sen, ehe, cme, special_from, moves, permanent) -> pd.DataFrame:
    rng = world.config.rng("education.career_events")
    n = len(kids)
    child = np.arange(n)
    reception = kids["reception"].to_numpy()
    u = kids["u_school"].to_numpy()
    last_year = reception + np.where(kids["stays_on"].to_numpy() | ~np.isnat(special_from), 14, 12)
    # A special school pupil stays at the same (all-age) school: no change of phase.
    phased = np.isnat(special_from) | (special_from > _leaving_day(reception + 7))
    parts = [
        _events(child, _first_school_day(reception), STAGE_START, u, True, in_stage=1, ap=0, phase=PRIMARY,
                gap=0, special=0),
        _events(child[phased], _leaving_day(reception + 7)[phased] + DAY, STAGE_END, in_stage=0, ap=0),
        _events(child[phased], _first_school_day(reception + 7)[phased], STAGE_START, u[phased], True,
                in_stage=1, ap=0, phase=SECONDARY),
        _events(child, _leaving_day(last_year) + DAY, STAGE_END, in_stage=0, ap=0),
        _events(moves["child"], moves["date"], TRANSFER, rng.random(len(moves)), True),
        _events(ehe["child"], ehe["start"], OFF_ROLL, gap=1),
        _events(ehe["child"][ehe["returns"]], ehe["end"][ehe["returns"]], BACK,
                rng.random(int(ehe["returns"].sum())), True, gap=0),
        _events(ehe["child"][~ehe["returns"]], ehe["end"][~ehe["returns"]], AGED_OUT, gap=0, in_stage=0),
        _events(cme["child"], cme["off_roll"], OFF_ROLL, gap=1),
        _events(cme["child"][cme["returns"]], cme["resolved"][cme["returns"]], BACK,
                rng.random(int(cme["returns"].sum())), True, gap=0),
        _events(cme["child"][~cme["returns"]], cme["resolved"][~cme["returns"]], AGED_OUT, gap=0, in_stage=0),
    ]
    has_special = ~np.isnat(special_from)
    parts.append(_events(child[has_special], special_from[has_special], SPECIAL, rng.random(int(has_special.sum())),
                         True, special=1))
    if len(permanent):
        parts.append(_events(permanent["child"], permanent["ap_from"], PERMANENT,
                             rng.random(len(permanent)), True, ap=1))
    death = kids["death"].to_numpy()
    died = ~np.isnat(death)
    parts.append(_events(child[died], death[died], DEATH, in_stage=0, gap=0))
    events = pd.concat([p for p in parts if len(p)], ignore_index=True)
    events = events.sort_values(["child", "date", "kind"], kind="stable").reset_index(drop=True)
    # Nothing happens after a death, nor after the period ends.
    after_death = events["date"].to_numpy() > pd.Series(death).to_numpy("datetime64[D]")[events["child"]]
    after_end = events["date"].to_numpy() > np.datetime64(world.config.end, "D")
    return events[~(after_death & ~np.isnat(death[events["child"]])) & ~after_end].reset_index(drop=True)


class Schools:
    """The schools a child can be placed in, by district and kind, for vectorised choice."""

    KINDS = ("PRIMARY", "SECONDARY", "SPECIAL", "AP")

    def __init__(self, schools: pd.DataFrame):
        s = schools.sort_values("urn", kind="stable")
        lists = []
        for district in DISTRICTS:
            for kind in self.KINDS:
                phases = {"PRIMARY": ["ALL_THROUGH", "PRIMARY"], "SECONDARY": ["ALL_THROUGH", "SECONDARY"]}.get(
                    kind, [kind])
                # All-through schools first, so a pupil who drew one for primary draws it again.
                local = pd.concat([s[(s["phase"] == ph) & (s["district"] == district)] for ph in phases])
                if local.empty:  # no such school in the district: any in the city
                    local = pd.concat([s[s["phase"] == ph] for ph in phases])
                lists.append(local["urn"].to_numpy(dtype=object))
        self.length = np.asarray([len(x) for x in lists])
        self.offset = np.r_[0, np.cumsum(self.length)[:-1]]
        self.urns = np.concatenate(lists)

    def choose(self, district: np.ndarray, kind: np.ndarray, u: np.ndarray) -> np.ndarray:
        key = pd.Series(district).map({d: i for i, d in enumerate(DISTRICTS)}).to_numpy(int) * len(self.KINDS) + kind
        pick = np.minimum((u * self.length[key]).astype(np.int64), self.length[key] - 1)
        return self.urns[self.offset[key] + pick]


def _placements(world: World, kids: pd.DataFrame, events: pd.DataFrame, schools: Schools) -> pd.DataFrame:
    """Resolve the event log into intervals [from, to) with a placement and a school."""
    events = events.copy()
    first = np.r_[True, events["child"].to_numpy()[1:] != events["child"].to_numpy()[:-1]]
    for name, default in (("in_stage", 0), ("gap", 0), ("ap", 0), ("special", 0), ("phase", PRIMARY)):
        col = events[name].to_numpy().copy()
        col[first & np.isnan(col)] = default  # every child starts from a known state
        events[name] = pd.Series(col).ffill().to_numpy()
    # The district that decides a school is where the family lived when it was chosen.
    choose = events["chooses"].to_numpy(bool)
    chosen_at = world.address_at(kids["household_key"].to_numpy()[events["child"][choose]],
                                 events["date"].to_numpy()[choose])
    district = np.full(len(events), None, dtype=object)
    district[choose] = chosen_at["district"].to_numpy()
    u = np.where(choose, events["u"].to_numpy(), np.nan)
    district = pd.Series(district).ffill().to_numpy()
    u = pd.Series(u).ffill().fillna(0.5).to_numpy()
    district = np.where(pd.isna(district), DISTRICTS[0], district)

    in_stage, gap = events["in_stage"].to_numpy() == 1, events["gap"].to_numpy() == 1
    placement = np.select(
        [~in_stage | gap, events["special"].to_numpy() == 1, events["ap"].to_numpy() == 1],
        [NONE, SPECIAL_SCHOOL, AP], MAINSTREAM)
    kind = np.select([placement == SPECIAL_SCHOOL, placement == AP, events["phase"].to_numpy() == SECONDARY],
                     [2, 3, 1], 0)
    school = np.where(placement == NONE, None, schools.choose(district, kind, u))

    child = events["child"].to_numpy()
    start = events["date"].to_numpy()
    last = np.r_[child[1:] != child[:-1], True]
    stop = np.where(last, NAT, np.r_[start[1:], NAT])
    intervals = pd.DataFrame({"child": child, "from": start, "to": stop, "placement": placement,
                              "school": school, "kind": events["kind"].to_numpy(),
                              "between_stages": ~in_stage & ~gap})
    return intervals[~(stop <= start)].reset_index(drop=True)  # same-day events leave empty intervals


def _enrolments_from(intervals: pd.DataFrame) -> pd.DataFrame:
    """Merge consecutive intervals at one school into enrolments.

    The summer between Year 6 and Year 7 does not end an enrolment at an all-through or
    special school: a short between-stages gap is ignored when the school is the same.
    """
    summer = intervals["between_stages"].to_numpy() & (
        (intervals["to"] - intervals["from"]).to_numpy() <= np.timedelta64(62, "D"))
    iv = intervals[~summer].reset_index(drop=True)
    child, school = iv["child"].to_numpy(), iv["school"].to_numpy()
    new_run = np.r_[True, (child[1:] != child[:-1]) | (school[1:] != school[:-1])]
    run = np.cumsum(new_run) - 1
    first_of_run = np.flatnonzero(new_run)
    last_of_run = np.r_[first_of_run[1:] - 1, len(iv) - 1]
    enrol = pd.DataFrame({
        "child": child[first_of_run], "urn": school[first_of_run], "entry": iv["from"].to_numpy()[first_of_run],
        "leave": iv["to"].to_numpy()[last_of_run] - DAY, "placement": iv["placement"].to_numpy()[first_of_run],
        "planned": iv["kind"].to_numpy()[first_of_run] == STAGE_START,
    })
    del run
    return enrol[enrol["placement"] != NONE].reset_index(drop=True)


def _placement_at(intervals: pd.DataFrame, child: np.ndarray, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The placement and school of each (child, date) from sorted intervals."""
    day = lambda d: (np.asarray(d, dtype="datetime64[D]").astype(np.int64) + 100_000)  # noqa: E731
    keys = intervals["child"].to_numpy(np.int64) * 1_000_000 + day(intervals["from"])
    query = np.asarray(child, dtype=np.int64) * 1_000_000 + day(when)
    pos = np.searchsorted(keys, query, side="right") - 1
    ok = (pos >= 0) & (intervals["child"].to_numpy()[np.maximum(pos, 0)] == child)
    to = intervals["to"].to_numpy()[np.maximum(pos, 0)]
    ok &= np.isnat(to) | (to > np.asarray(when, dtype="datetime64[D]"))
    placement = np.where(ok, intervals["placement"].to_numpy()[np.maximum(pos, 0)], NONE)
    school = np.where(ok, intervals["school"].to_numpy()[np.maximum(pos, 0)], None)
    return placement, school


def _permanent_exclusions(world: World, kids, needs, intervals) -> pd.DataFrame:
    """Rare permanent exclusions (about 0.1% of pupils a year), mostly in secondary and
    where behaviour is a concern; the pupil starts at the PRU on the sixth school day."""
    rng = world.config.rng("education.permanent")
    months = world.needs.months
    risk = 2.0 * needs["child_behaviour"] + 0.5 * needs["domestic_abuse"] + 0.5 * needs["substance_misuse"]
    secondary = _school_age_by_month(kids, months, 7, 11)
    primary = _school_age_by_month(kids, months, 1, 6)
    in_term = _month(months) != 8
    hazard = (0.00004 * np.exp(risk) * (secondary + 0.12 * primary) * in_term).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    when = _weekday_on_or_after(_day_in_month(months[month[child]], rng))
    placement, school = _placement_at(intervals, child, when)
    ok = placement == MAINSTREAM
    return pd.DataFrame({"child": child[ok], "date": when[ok], "urn": school[ok],
                         "ap_from": np.busday_offset(when[ok], 6, roll="forward")})


def _dual_registrations(world: World, kids, needs, intervals, schools: Schools) -> pd.DataFrame:
    """A few secondary pupils spend some weeks at the PRU while staying on their school's
    roll: the PRU holds a subsidiary (S) enrolment and the school's becomes main (M)."""
    rng = world.config.rng("education.dual")
    months = world.needs.months
    hazard = (0.00012 * np.exp(1.8 * needs["child_behaviour"]) * _school_age_by_month(kids, months, 7, 11)
              * (_month(months) != 8)).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    entry = _weekday_on_or_after(_day_in_month(months[month[child]], rng))
    placement, _ = _placement_at(intervals, child, entry)
    ok = placement == MAINSTREAM
    child, entry = child[ok], entry[ok]
    leave = entry + rng.integers(30, 85, len(child)) * DAY
    main_leave = _interval_end(intervals, child, entry)
    leave = np.where(np.isnat(main_leave) | (main_leave > leave), leave, main_leave)
    district = world.address_at(kids["household_key"].to_numpy()[child], entry)["district"].to_numpy()
    urn = schools.choose(district, np.full(len(child), 3), rng.random(len(child)))
    return pd.DataFrame({"child": child, "urn": urn, "entry": entry, "leave": leave, "placement": AP,
                         "planned": False, "status": "S"})


def _interval_end(intervals, child, when) -> np.ndarray:
    day = lambda d: (np.asarray(d, dtype="datetime64[D]").astype(np.int64) + 100_000)  # noqa: E731
    keys = intervals["child"].to_numpy(np.int64) * 1_000_000 + day(intervals["from"])
    pos = np.searchsorted(keys, child.astype(np.int64) * 1_000_000 + day(when), side="right") - 1
    return intervals["to"].to_numpy()[pos] - DAY


def _special_from(world: World, kids: pd.DataFrame, sen: pd.DataFrame) -> np.ndarray:
    """About a third of children with an EHC plan go to a special school from the start
    of the term after the plan (or from Reception when the plan came first)."""
    rng = world.config.rng("education.special")
    e_from = sen["e_from"].to_numpy("datetime64[D]")
    severe = np.isin(sen["e_type"].to_numpy(), ["SLD", "PMLD", "MSI", "ASD"])
    goes = ~np.isnat(e_from) & (rng.random(len(kids)) < np.where(severe, 0.55, 0.2))
    reception_day = _first_school_day(kids["reception"].to_numpy())
    when = np.maximum(_weekday_on_or_after(e_from + rng.integers(20, 120, len(kids)) * DAY), reception_day)
    return np.where(goes, when, NAT)


def _careers(world: World, kids, sen, needs, ehe, cme, schools: Schools):
    """Build every enrolment in two passes: the second adds the PRU placements that follow
    the permanent exclusions drawn from where pupils were in the first."""
    special_from = _special_from(world, kids, sen)
    moves = _district_moves(world, kids)
    none = pd.DataFrame(columns=["child", "ap_from"])
    first = _placements(world, kids, _career_events(world, kids, sen, ehe, cme, special_from, moves, none), schools)
    permanent = _permanent_exclusions(world, kids, needs, first)
    intervals = _placements(world, kids,
                            _career_events(world, kids, sen, ehe, cme, special_from, moves, permanent), schools)
    enrol = _enrolments_from(intervals)
    enrol["status"] = "C"
    dual = _dual_registrations(world, kids, needs, intervals, schools)
    enrol = pd.concat([enrol, dual], ignore_index=True)
    enrol = enrol.sort_values(["child", "entry", "urn"], kind="stable").reset_index(drop=True)
    # Admissions at the start of a school stage are on ONE from the summer before.
    enrol["created"] = np.where(enrol["planned"], enrol["entry"].to_numpy() - 60 * DAY, enrol["entry"].to_numpy())
    return enrol, permanent


# ======================================================================== terms
def _term_rows(world: World, kids, enrol: pd.DataFrame, terms: pd.DataFrame) -> pd.DataFrame:
    """One row per enrolment per term it overlaps, with the sessions it made possible."""
    entry = enrol["entry"].to_numpy("datetime64[D]")
    leave = enrol["leave"].to_numpy("datetime64[D]")
    leave = np.where(np.isnat(leave), FAR_FUTURE, leave)
    first, last = terms["first"].to_numpy(), terms["last"].to_numpy()
    lo = np.maximum(entry[:, None], first[None, :])
    hi = np.minimum(leave[:, None], last[None, :])
    days = (hi - lo) / DAY + 1
    e, t = np.nonzero(days > 0)
    term_days = (last - first) / DAY + 1
    possible = np.rint(terms["sessions"].to_numpy()[t] * days[e, t] / term_days[t]).astype(np.int64)
    rows = pd.DataFrame({
        "enrol": e, "child": enrol["child"].to_numpy()[e], "urn": enrol["urn"].to_numpy()[e],
        "placement": enrol["placement"].to_numpy()[e], "term": terms["term"].to_numpy()[t],
        "term_first": first[t], "term_last": last[t], "lo": lo[e, t], "hi": hi[e, t], "possible": possible,
    })
    rows = rows[rows["possible"] > 0].reset_index(drop=True)
    mid = rows["term_first"].to_numpy() + (rows["term_last"] - rows["term_first"]).to_numpy() // 2
    rows["nc"] = _academic_year(rows["term_first"].to_numpy()) - kids["cohort"].to_numpy()[rows["child"]] - 4
    needs = _needs_at(world, rows["child"].to_numpy(), kids, mid)
    for need, value in needs.items():
        rows[need] = value
    return rows


def _attendance(world: World, kids, rows: pd.DataFrame) -> pd.DataFrame:
    """Absence per pupil per school per term: a persistent pupil tendency, older pupils
    absent more, and each household need raising the rate; families under strain have
    more of their absence unauthorised."""
    rng = world.config.rng("education.attendance")
    pupil_effect = rng.normal(0, 0.7, len(kids))
    refuser = rng.random(len(kids)) < 0.012  # emotionally based school avoidance
    nc = rows["nc"].to_numpy()
    age = np.select([nc <= 0, nc <= 6, nc <= 8, nc <= 11], [0.15, 0.0, 0.25, 0.5], 0.35)
    needs_now = sum(ABSENCE_EFFECT[n] * rows[n].to_numpy() for n in ABSENCE_EFFECT)
    n_needs = sum(rows[n].to_numpy().astype(int) for n in ABSENCE_EFFECT)
    child = rows["child"].to_numpy()
    logit = (ABSENCE_BASE_LOGIT + age + needs_now + pupil_effect[child] + 3.2 * refuser[child]
             + 0.5 * (rows["placement"].to_numpy() != MAINSTREAM) + rng.normal(0, 0.35, len(rows)))
    rate = 1 / (1 + np.exp(-logit))
    possible = rows["possible"].to_numpy()
    absent = rng.binomial(possible, rate)
    authorised_share = 1 / (1 + np.exp(-(1.0 - 0.45 * n_needs - 0.8 * refuser[child])))
    authorised = rng.binomial(absent, authorised_share)
    return pd.DataFrame({"child": child, "urn": rows["urn"].to_numpy(), "term": rows["term"].to_numpy(),
                         "term_first": rows["term_first"].to_numpy(), "term_last": rows["term_last"].to_numpy(),
                         "possible": possible, "authorised": authorised, "unauthorised": absent - authorised})


def _suspensions(world: World, kids, rows: pd.DataFrame) -> pd.DataFrame:
    """Suspensions and lunchtime exclusions, counted per pupil-term: mostly ages 11-15 and
    strongly where behaviour is a concern, with a few pupils suspended again and again."""
    rng = world.config.rng("education.suspensions")
    proneness = rng.lognormal(0, 1.0, len(kids))
    nc = rows["nc"].to_numpy()
    base = np.select([nc <= 2, nc <= 6, nc <= 8, nc <= 11], [0.002, 0.008, 0.05, 0.07], 0.012)
    risk = (1.7 * rows["child_behaviour"].to_numpy() + 0.4 * rows["domestic_abuse"].to_numpy()
            + 0.35 * rows["substance_misuse"].to_numpy() + 0.25 * rows["housing"].to_numpy())
    share = rows["possible"].to_numpy() / np.select(
        [rows["term"].str.endswith("AUT"), rows["term"].str.endswith("SPR")], [140, 120], 130)
    count = rng.poisson(base * share * np.exp(risk) * proneness[rows["child"].to_numpy()] / 1.65)
    r = np.repeat(np.arange(len(rows)), count)
    span = (rows["hi"] - rows["lo"]).to_numpy()[r] / DAY
    when = np.busday_offset(rows["lo"].to_numpy("datetime64[D]")[r] + (rng.random(len(r)) * span).astype(np.int64) * DAY,
                            0, roll="forward")
    lunch = rng.random(len(r)) < 0.04
    sessions = np.where(lunch, 1, _draw_codes(SUSPENSION_SESSIONS, rng.random(len(r))).astype(np.int64))
    out = pd.DataFrame({"child": rows["child"].to_numpy()[r], "urn": rows["urn"].to_numpy()[r],
                        "category": np.where(lunch, "LUNCH", "SUSP"), "date": when, "sessions": sessions})
    return out[out["date"] <= np.datetime64(world.config.end, "D")]


def _exclusions(world: World, kids, rows, permanent: pd.DataFrame) -> pd.DataFrame:
    rng = world.config.rng("education.exclusion_reasons")
    perm = pd.DataFrame({"child": permanent["child"].to_numpy(), "urn": permanent["urn"].to_numpy(),
                         "category": "PERM", "date": permanent["date"].to_numpy(), "sessions": None})
    ex = pd.concat([_suspensions(world, kids, rows), perm], ignore_index=True)
    ex = ex.sort_values(["date", "child", "category"], kind="stable").reset_index(drop=True)
    n = len(ex)
    reasons = [_draw_codes(EXCLUSION_REASONS, rng.random(n)) for _ in range(3)]
    second = (rng.random(n) < 0.22) & (reasons[1] != reasons[0])
    third = second & (rng.random(n) < 0.25) & (reasons[2] != reasons[0]) & (reasons[2] != reasons[1])
    ex["reason1"] = reasons[0]
    ex["reason2"] = np.where(second, reasons[1], None)
    ex["reason3"] = np.where(third, reasons[2], None)
    ex["exclusion_id"] = 700_001 + np.arange(n)  # ONE's sequence, in the order they were recorded
    ex["created"] = np.busday_offset(ex["date"].to_numpy("datetime64[D]"), rng.integers(0, 3, n), roll="forward")
    return ex


# ======================================================================== FSM
def _fsm_periods(world: World, kids, enrol: pd.DataFrame) -> pd.DataFrame:
    """Free school meal eligibility: claimed for most spells of household poverty, from a
    month or two after it starts until a little after it ends, while the child is at school."""
    config = world.config
    rng = config.rng("education.fsm")
    poverty = world.needs.active["poverty"]
    months = world.needs.months
    n_h, n_m = poverty.shape
    before = np.c_[np.zeros((n_h, 1), bool), poverty[:, :-1]]
    after = np.c_[poverty[:, 1:], np.zeros((n_h, 1), bool)]
    h_start, m_start = np.nonzero(poverty & ~before)
    h_end, m_end = np.nonzero(poverty & ~after)  # same order: one end per start
    claimed = rng.random(len(h_start)) < 0.85
    start = months[m_start] + rng.integers(10, 75, len(h_start)) * DAY
    # Spells already running when the period began started some time before.
    start = np.where(m_start == 0, np.datetime64(config.start, "D") - rng.integers(0, 4 * 365, len(h_start)) * DAY,
                     start)
    next_month = np.append(months, months[-1] + 31 * DAY).astype("datetime64[M]").astype("datetime64[D]")
    end = np.where(m_end == n_m - 1, NAT, next_month[np.minimum(m_end + 1, n_m)] + rng.integers(0, 60, len(h_end)) * DAY)
    spells = pd.DataFrame({"hrow": h_start, "start": start, "end": end})[claimed]
    # Each claim covers the household's children for the part of it they are at school.
    school_span = enrol.assign(open=enrol["leave"].isna()).groupby("child").agg(
        first=("entry", "min"), last=("leave", "max"), open=("open", "any"))
    per_child = pd.DataFrame({"child": school_span.index.to_numpy(), "hrow": kids["hrow"].to_numpy()[school_span.index]})
    fsm = per_child.merge(spells, on="hrow")
    span = school_span.loc[fsm["child"]]
    first = span["first"].to_numpy("datetime64[D]")
    last = np.where(span["open"].to_numpy(), NAT, span["last"].to_numpy("datetime64[D]"))
    fsm["start"] = np.maximum(fsm["start"].to_numpy("datetime64[D]"), first)
    end = fsm["end"].to_numpy("datetime64[D]")
    fsm["end"] = np.where(np.isnat(end), last, np.where(np.isnat(last), end, np.minimum(end, last)))
    fsm = fsm[np.isnat(fsm["end"].to_numpy()) | (fsm["end"] > fsm["start"])]
    fsm = fsm[fsm["start"] <= np.datetime64(config.end, "D")]
    return fsm.sort_values(["child", "start"], kind="stable").reset_index(drop=True)[["child", "start", "end"]]


# ======================================================================== pupils
def _pupil_master(world: World, kids: pd.DataFrame) -> pd.DataFrame:
    """What ONE holds for each child, with every per-record defect decided once."""
    config = world.config
    rng = config.rng("education.pupils")
    p = world.persons
    rows = p.iloc[kids["row"].to_numpy()]
    n = len(kids)
    name_typo = config.defects.forename_typo / 3  # education is the most careful of the five
    master = pd.DataFrame({
        "one_id": kids["one_id"].to_numpy(),
        "upn": defects.corrupt_upn(rows["upn"].reset_index(drop=True), rng,
                                   config.defects.invalid_check_digit).to_numpy(),
        "former_upn": rows["former_upn"].to_numpy(),
        "uln": rows["uln"].to_numpy(),
        "forename": defects.typo(rows["forename"].reset_index(drop=True), rng, name_typo).to_numpy(),
        "middle_names": rows["middle_names"].to_numpy(),
        "surname": defects.typo(rows["surname"].reset_index(drop=True), rng, name_typo).to_numpy(),
        "surname_after": defects.typo(rows["surname_after"].reset_index(drop=True), rng, name_typo).to_numpy(),
        "birth": kids["birth"].to_numpy(),
        "sex": kids["sex"].to_numpy(),
        "ethnicity": ethnicity_codes(world).to_numpy()[kids["row"].to_numpy()],
        "first_language": first_language_codes(world).to_numpy()[kids["row"].to_numpy()],
    })
    # A new surname reaches ONE for most pupils, some weeks after it changes.
    changed_on = rows["surname_changed_on"].to_numpy("datetime64[D]")
    picked_up = rng.random(n) < 0.8
    master["surname_known_from"] = np.where(picked_up, changed_on + rng.integers(0, 60, n) * DAY, NAT)
    # A pupil whose legal name has not been updated often goes by the new one.
    master["prefers_new"] = ~picked_up & (rng.random(n) < 0.5)
    mother = p.set_index("person_key")["surname"].reindex(rows["mother_key"].to_numpy()).to_numpy()
    uses_mothers = (rng.random(n) < 0.02) & pd.notna(mother) & (mother != rows["surname"].to_numpy())
    master["preferred_other"] = np.where(uses_mothers, mother, None)
    master["address_lag"] = np.where(rng.random(n) < config.defects.stale_address,
                                     rng.integers(30, 240, n), 0) * DAY
    master["has_uprn"] = rng.random(n) < 0.85
    master["young_carer_u"] = rng.random(n)
    service_u = _stable_uniform(kids["household_key"].to_numpy(), rng)
    master["service_child"] = kids["household_key"].map(service_u).to_numpy() < 0.008
    master["household_key"] = kids["household_key"].to_numpy()
    master["hrow"] = kids["hrow"].to_numpy()
    return master


def _pupils_view(world: World, master: pd.DataFrame, known: np.ndarray, when: np.datetime64) -> pd.DataFrame:
    """pupils.csv as of ``when`` for the children ``known`` to ONE that day."""
    config = world.config
    # Addresses and postcode styles are worked out for every pupil in a fixed order, so
    # the same pupil gets the same defect in every drop.
    address = world.address_at(master["household_key"].to_numpy(), when - master["address_lag"].to_numpy())
    postcode = defects.postcode_format(address["postcode"].reset_index(drop=True),
                                       config.rng("education.postcode_style"), config.defects.postcode_format / 2)
    m = master[known]
    a = address[known]
    new_name = ~np.isnat(m["surname_known_from"].to_numpy()) & (m["surname_known_from"].to_numpy() <= when)
    changed_legally = ~pd.isna(m["surname_after"].to_numpy())
    flat = a["flat"].to_numpy().astype(object)
    street = (a["house"].astype(str) + " " + a["street"].astype(str)).to_numpy()
    is_flat = flat != ""
    age = (when - m["birth"].to_numpy()) / np.timedelta64(365, "D")
    needs = world.needs.at(m["household_key"].to_numpy(), np.full(len(m), when))
    caring = needs["mental_health"].to_numpy() | needs["substance_misuse"].to_numpy()
    young_carer = (age >= 8) & (m["young_carer_u"].to_numpy() < np.where(caring, 0.12, 0.004))
    preferred = np.where(changed_legally & ~new_name & m["prefers_new"].to_numpy(), m["surname_after"].to_numpy(),
                         m["preferred_other"].to_numpy())
    return pd.DataFrame({
        "ONEPupilID": m["one_id"].to_numpy(),
        "UPN": m["upn"].to_numpy(),
        "FormerUPN": m["former_upn"].to_numpy(),
        "ULN": np.where(age >= 14, m["uln"].to_numpy(), None),  # issued by the LRS at 14
        "Surname": np.where(new_name, m["surname_after"].to_numpy(), m["surname"].to_numpy()),
        "Forename": m["forename"].to_numpy(),
        "MiddleNames": m["middle_names"].to_numpy(),
        "PreferredSurname": preferred,
        "FormerSurname": np.where(new_name, m["surname"].to_numpy(), None),
        "DOB": _iso(m["birth"].to_numpy()),
        "Sex": m["sex"].to_numpy(),
        "Ethnicity": m["ethnicity"].to_numpy(),
        "FirstLanguage": m["first_language"].to_numpy(),
        "AddressLine1": np.where(is_flat, flat, street),
        "AddressLine2": np.where(is_flat, street, None),
        "Town": a["town"].to_numpy(),
        "Postcode": postcode.to_numpy()[known],
        "UPRN": np.where(m["has_uprn"].to_numpy(), a["uprn"].to_numpy(), None),
        "YoungCarer": young_carer,
        "ServiceChild": m["service_child"].to_numpy(),
    })


# ======================================================================== the history
class History:
    """Every record ONE will ever hold for the city, simulated once."""

    def __init__(self, world: World):
        config = world.config
        self.world = world
        self.kids = _school_children(world)
        needs = _needs_by_month(world, self.kids)
        self.sen = _sen(world, self.kids, needs)
        self.ehe = _ehe_episodes(world, self.kids, needs, self.sen)
        self.cme = _cme_episodes(world, self.kids, needs, self.ehe)
        self.schools = Schools(world.schools)
        self.enrol, permanent = _careers(world, self.kids, self.sen, needs, self.ehe, self.cme, self.schools)
        terms = term_calendar(config.start, config.end)
        rows = _term_rows(world, self.kids, self.enrol[self.enrol["leave"].isna()
                                                       | (self.enrol["leave"] >= pd.Timestamp(config.start))]
                          .reset_index(drop=True), terms)
        self.attendance = _attendance(world, self.kids, rows)
        self.exclusions = _exclusions(world, self.kids, rows, permanent)
        self.fsm = _fsm_periods(world, self.kids, self.enrol)
        self.master = _pupil_master(world, self.kids)
        self._number_registers()

    def _number_registers(self) -> None:
        """EHE and CME ids follow the order the records were made."""
        self.ehe = self.ehe.sort_values(["start", "child"], kind="stable").reset_index(drop=True)
        self.ehe["ehe_id"] = 30_001 + np.arange(len(self.ehe))
        self.cme = self.cme.sort_values(["identified", "child"], kind="stable").reset_index(drop=True)
        self.cme["cme_id"] = 60_001 + np.arange(len(self.cme))

    # ---------------------------------------------------------------- as of a day
    def known(self, when: np.datetime64) -> np.ndarray:
        """Children ONE knows on ``when``: on a roll (or admitted), home educated or missing."""
        n = len(self.kids)
        e = self.enrol
        leave = e["leave"].to_numpy("datetime64[D]")
        on_roll = (e["created"].to_numpy("datetime64[D]") <= when) & (np.isnat(leave) | (leave >= when))
        ehe = (self.ehe["start"].to_numpy() <= when) & (self.ehe["end"].to_numpy() > when)
        cme = (self.cme["identified"].to_numpy() <= when) & (self.cme["resolved"].to_numpy() > when)
        known = np.zeros(n, bool)
        for child in (e["child"].to_numpy()[on_roll], self.ehe["child"].to_numpy()[ehe],
                      self.cme["child"].to_numpy()[cme]):
            known[child] = True
        death = self.kids["death"].to_numpy()
        return known & ~(~np.isnat(death) & (death <= when))

    def _ids(self, child: np.ndarray) -> dict[str, np.ndarray]:
        return {"ONEPupilID": self.master["one_id"].to_numpy()[child], "UPN": self.master["upn"].to_numpy()[child]}

    def pupils(self, when, known) -> pd.DataFrame:
        return _pupils_view(self.world, self.master, known, when).sort_values("ONEPupilID", kind="stable")

    def enrolments(self, when, known) -> pd.DataFrame:
        e = self.enrol.assign(_created=self.enrol["created"], _left=self.enrol["leave"], LeavingDate=self.enrol["leave"])
        e = e[known[e["child"].to_numpy()]]
        held = as_of(e, when, reveal={"LeavingDate": "_left"})
        entry = held["entry"].to_numpy("datetime64[D]")
        leaving = pd.to_datetime(held["LeavingDate"]).to_numpy("datetime64[D]")
        current = (entry <= when) & np.isnat(leaving)
        # A main enrolment is M while the pupil also holds a current subsidiary one.
        dual = held["child"].to_numpy()[current & (held["status"].to_numpy() == "S")]
        status = np.where(current & np.isin(held["child"].to_numpy(), dual) & (held["status"].to_numpy() == "C"),
                          "M", held["status"].to_numpy())
        nc_day = np.where(np.isnat(leaving), np.maximum(entry, when), leaving)
        nc = _academic_year(nc_day) - self.kids["cohort"].to_numpy()[held["child"].to_numpy()] - 4
        child = held["child"].to_numpy()
        return pd.DataFrame({**self._ids(child), "URN": held["urn"].to_numpy(), "EntryDate": _iso(entry),
                             "LeavingDate": _iso(leaving), "EnrolStatus": status, "NCyearActual": nc}
                            ).sort_values(["ONEPupilID", "EntryDate", "URN"], kind="stable")

    def fsm_view(self, when, known) -> pd.DataFrame:
        f = self.fsm[known[self.fsm["child"].to_numpy()]]
        held = as_of(f.assign(_created=f["start"], _ended=f["end"]), when, reveal={"end": "_ended"})
        return pd.DataFrame({**self._ids(held["child"].to_numpy()), "FSMStartDate": _iso(held["start"]),
                             "FSMEndDate": _iso(held["end"])}).sort_values(["ONEPupilID", "FSMStartDate"],
                                                                            kind="stable")

    def sen_view(self, when, known) -> pd.DataFrame:
        child = np.flatnonzero(known)
        s = self.sen.iloc[child]
        e = s["e_from"].to_numpy("datetime64[D]") <= when
        k = ~e & (s["k_from"].to_numpy("datetime64[D]") <= when)
        return pd.DataFrame({
            **self._ids(child), "SENProvision": np.select([e, k], ["E", "K"], "N"),
            "SENType1": np.select([e, k], [s["e_type"].to_numpy(), s["k_type"].to_numpy()], None),
            "SENType2": np.select([e, k], [s["type2_e"].to_numpy(), s["type2_k"].to_numpy()], None),
        }).sort_values("ONEPupilID", kind="stable")

    def attendance_view(self, when, known) -> pd.DataFrame:
        a = self.attendance
        a = a[(a["term_last"].to_numpy() < when) & known[a["child"].to_numpy()]]  # a term in arrears
        return pd.DataFrame({**self._ids(a["child"].to_numpy()), "URN": a["urn"].to_numpy(),
                             "Term": a["term"].to_numpy(), "SessionsPossible": a["possible"].to_numpy(),
                             "SessionsAuthorised": a["authorised"].to_numpy(),
                             "SessionsUnauthorised": a["unauthorised"].to_numpy(),
                             "_first": a["term_first"].to_numpy()}
                            ).sort_values(["ONEPupilID", "_first", "URN"], kind="stable").drop(columns="_first")

    def exclusions_view(self, when, known) -> pd.DataFrame:
        x = self.exclusions[known[self.exclusions["child"].to_numpy()]]
        held = as_of(x.rename(columns={"created": "_created"}), when)
        return pd.DataFrame({
            "ExclusionID": held["exclusion_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
            "URN": held["urn"].to_numpy(), "Category": held["category"].to_numpy(), "StartDate": _iso(held["date"]),
            "Sessions": held["sessions"].to_numpy(), "Reason1": held["reason1"].to_numpy(),
            "Reason2": held["reason2"].to_numpy(), "Reason3": held["reason3"].to_numpy(),
        }).sort_values("ExclusionID", kind="stable")

    def ehe_view(self, when, known) -> pd.DataFrame:
        r = self.ehe[known[self.ehe["child"].to_numpy()]]
        held = as_of(r.assign(_created=r["start"], _ended=r["end"]), when, reveal={"end": "_ended"})
        return pd.DataFrame({"EHEID": held["ehe_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
                             "StartDate": _iso(held["start"]), "EndDate": _iso(held["end"]),
                             "Reason": held["reason"].to_numpy()}).sort_values("EHEID", kind="stable")

    def cme_view(self, when, known) -> pd.DataFrame:
        r = self.cme[known[self.cme["child"].to_numpy()]]
        held = as_of(r.assign(_created=r["identified"], _resolved=r["resolved"]), when,
                     reveal={"resolved": "_resolved"})
        return pd.DataFrame({"CMEID": held["cme_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
                             "IdentifiedDate": _iso(held["identified"]), "Reason": held["reason"].to_numpy(),
                             "ResolvedDate": _iso(held["resolved"])}).sort_values("CMEID", kind="stable")


# ======================================================================== writer
def write_education(world: World, landing: Path) -> pd.DataFrame:
    """Write every education drop; return the truth rows for pupils (one per ONEPupilID)."""
    config = world.config
    history = History(world)
    census = set(census_dates(config.start, config.end))
    dates = drop_dates("education", config)
    written: list[np.ndarray] = []
    for i, extract in enumerate(dates):
        when = np.datetime64(extract, "D")
        known = history.known(when)
        drop = Drop(Path(landing), "education", extract, "snapshot")
        full = i == 0 or extract in census
        views = {
            "pupils.csv": history.pupils, "enrolments.csv": history.enrolments, "fsm.csv": history.fsm_view,
            "sen.csv": history.sen_view, "attendance.csv": history.attendance_view,
            "exclusions.csv": history.exclusions_view, "ehe.csv": history.ehe_view, "cme.csv": history.cme_view,
        }
        for name in CENSUS_FILES if full else MONTHLY_FILES:
            frame = views[name](when, known)
            drop.csv(name, frame[COLUMNS[name]])
            written.append(frame["ONEPupilID"].to_numpy())
        drop.finish()
    ids = np.unique(np.concatenate(written)) if written else np.array([], dtype=np.int64)
    person = pd.Series(history.kids["person_key"].to_numpy(), index=history.master["one_id"].to_numpy())
    return pd.DataFrame({"system": "education", "table": "pupils", "record_id": ids.astype(str),
                         "person_key": person.loc[ids].to_numpy()})
