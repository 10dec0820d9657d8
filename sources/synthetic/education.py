"""Capita ONE, the education management system: the city's schools as the census sees them.

Every school-age child gets a school career (Reception to Year 6 in a primary of the
household's district, Years 7-11 in a secondary, Years 12-13 for some), which life events
bend: a move across districts means a new school, some children with an education,
health and care plan go to a special school, a permanent exclusion leads to the pupil
referral unit, and some children leave the roll for elective home education or go
missing from education. Free school meals follow household poverty; absence,
suspensions, home education and missing education follow the household's needs, so
measures built from these files carry real signal.

Everything is simulated once as the full history ONE will ever hold, each record with the
date it entered the system; each drop is that history *as of* its extract date: the
records that existed then, with end dates shown only once they have happened (the
``output.as_of`` approach). Identity defects (typos, a wrong UPN check letter, postcode
styles, stale addresses) are decided once per pupil, so a pupil looks the same in every
drop. Internally everything is integer-coded (children, households, schools, districts)
so that the default city takes a few seconds; strings appear only in the written files.
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
MONTHLY_FILES = ("ehe.csv", "cme.csv")  # the monthly EHE/CME return between censuses

# Nominal term dates (month, day) and the sessions (half days) of a full term. Real term
# dates move by a few days each year; nothing downstream depends on the exact day.
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
# CODES.md has no EHE or CME reason lists yet; these follow the DfE's categories. Home
# education for mental health, to avoid exclusion or for unmet SEN follows the family's
# circumstances; the other reasons are drawn with these weights.
EHE_GENERAL_REASONS = {"PHILOSOPHICAL": 0.25, "DISSATISFIED": 0.2, "LIFESTYLE": 0.1, "HEALTH": 0.08,
                       "BULLYING": 0.07, "RELIGIOUS_CULTURAL": 0.06, "OTHER": 0.12, "NOT_GIVEN": 0.12}
EHE_REASONS = ("MENTAL_HEALTH", "EXCLUSION_AVOIDANCE", "SEN", *EHE_GENERAL_REASONS)
CME_REASONS = {"REMOVED_FROM_ROLL": 0.45, "MOVED_ADDRESS_UNKNOWN": 0.25, "FAILED_TO_START": 0.1,
               "NOT_REGISTERED": 0.12, "ABROAD_NOT_RETURNED": 0.08}

# How each household need moves the log-odds of a pupil's absence in a term.
ABSENCE_EFFECT = {"domestic_abuse": 0.55, "mental_health": 0.45, "substance_misuse": 0.6,
                  "poverty": 0.25, "housing": 0.5, "child_behaviour": 0.8}
ABSENCE_BASE_LOGIT = -3.4


# ======================================================================== dates
def _ymd(years, month: int, day: int) -> np.ndarray:
    years = np.asarray(years, dtype=np.int64)
    months = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    return months.astype("datetime64[D]") + (day - 1)


def _days(values) -> np.ndarray:
    return np.asarray(values).astype("datetime64[D]")


def _year(d) -> np.ndarray:
    return np.asarray(d).astype("datetime64[Y]").astype(np.int64) + 1970


def _month(d) -> np.ndarray:
    return np.asarray(d).astype("datetime64[M]").astype(np.int64) % 12 + 1


def _academic_year(d) -> np.ndarray:
    """The calendar year in which the school year containing ``d`` began."""
    return _year(d) - (_month(d) < 9)


def _first_school_day(years) -> np.ndarray:
    return np.busday_offset(_ymd(years, *SCHOOL_YEAR_START), 0, roll="forward")


def _leaving_day(years) -> np.ndarray:
    return np.busday_offset(_ymd(years, *SCHOOL_YEAR_END), 0, roll="backward")


def _weekday_on_or_after(d) -> np.ndarray:
    return np.busday_offset(_days(d), 0, roll="forward")


def _iso(values) -> np.ndarray:
    """Dates as YYYY-MM-DD text, None where unknown."""
    d = _days(values)
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
    rows.sort(key=lambda row: row[1])
    return pd.DataFrame({
        "term": np.asarray([r[0] for r in rows], dtype=object),
        "first": np.asarray([r[1] for r in rows], dtype="datetime64[D]"),
        "last": np.asarray([r[2] for r in rows], dtype="datetime64[D]"),
        "sessions": np.asarray([r[3] for r in rows], dtype=np.int64),
    })


# ======================================================================== lookups
DAY_SHIFT = 200_000  # keeps day numbers positive in lookup keys
KEY_SPAN = np.int64(1 << 20)  # room for every day number in a (group, day) key


def _key(group, when) -> np.ndarray:
    return np.asarray(group, dtype=np.int64) * KEY_SPAN + _days(when).astype(np.int64) + DAY_SHIFT


def _latest_at(keys: np.ndarray, groups: np.ndarray, group, when) -> np.ndarray:
    """Position of the last row of ``group`` starting on or before ``when``; -1 for none.
    ``keys`` are ``_key(groups, start)`` sorted ascending."""
    pos = np.searchsorted(keys, _key(group, when), side="right") - 1
    return np.where((pos >= 0) & (groups[np.maximum(pos, 0)] == np.asarray(group)), pos, -1)


class AddressBook:
    """Where each household lived on any date, as integer lookups.

    Gives the answer ``World.address_at`` gives (before a household's first recorded
    move-in its first address stands), prepared once, because the career simulation asks
    for hundreds of thousands of (household, date) pairs.
    """

    def __init__(self, world: World):
        res = world.population.residences
        hrow = world.needs.row_index(res["household_key"].to_numpy())
        start = _days(res["valid_from"].to_numpy())
        order = np.lexsort((start, hrow))
        self.groups = hrow[order]
        self.keys = _key(self.groups, start[order])
        addr = world.addresses
        position = np.empty(int(addr["address_id"].max()) + 1, dtype=np.int64)
        position[addr["address_id"].to_numpy()] = np.arange(len(addr))
        self.address = position[res["address_id"].to_numpy()[order]]
        self.district = np.zeros(len(addr), dtype=np.int64)
        for code, name in enumerate(DISTRICTS):
            self.district[(addr["district"] == name).to_numpy()] = code
        self.uprn = addr["uprn"].to_numpy(dtype=object)
        self.flat = addr["flat"].to_numpy(dtype=object)
        self.street_line = (addr["house"] + " " + addr["street"]).to_numpy(dtype=object)
        self.town = addr["town"].to_numpy(dtype=object)
        self.postcode = addr["postcode"].to_numpy(dtype=object)
        self.imd_decile = addr["imd_decile"].to_numpy()

    def at(self, hrow, when) -> np.ndarray:
        """Row in the address arrays of each household's home on each date."""
        pos = _latest_at(self.keys, self.groups, hrow, when)
        first = np.searchsorted(self.keys, np.asarray(hrow, dtype=np.int64) * KEY_SPAN, side="left")
        return self.address[np.where(pos < 0, first, pos)]

    def district_at(self, hrow, when) -> np.ndarray:
        return self.district[self.at(hrow, when)]


class Schools:
    """The schools a child can be placed in, by district and kind, for vectorised choice."""

    KINDS = ("PRIMARY", "SECONDARY", "SPECIAL", "AP")
    PRIMARY, SECONDARY, SPECIAL, AP = range(4)

    def __init__(self, schools: pd.DataFrame):
        s = schools.sort_values("urn", kind="stable").reset_index(drop=True)
        self.urn = s["urn"].to_numpy(dtype=object)
        phase, district = s["phase"].to_numpy(dtype=object), s["district"].to_numpy(dtype=object)
        lists = []
        for name in DISTRICTS:
            for kind in self.KINDS:
                # All-through schools first, so a pupil who drew one for primary draws it again.
                phases = {"PRIMARY": ("ALL_THROUGH", "PRIMARY"), "SECONDARY": ("ALL_THROUGH", "SECONDARY")}.get(
                    kind, (kind,))
                local = np.concatenate([np.flatnonzero((phase == ph) & (district == name)) for ph in phases])
                if len(local) == 0:  # none of that kind in the district: any in the city
                    local = np.concatenate([np.flatnonzero(phase == ph) for ph in phases])
                lists.append(local)
        self.length = np.asarray([len(x) for x in lists])
        self.offset = np.r_[0, np.cumsum(self.length)[:-1]]
        self.flat = np.concatenate(lists)

    def choose(self, district: np.ndarray, kind: np.ndarray, u: np.ndarray) -> np.ndarray:
        """School (row in ``urn``) for a district code, school kind and uniform draw."""
        key = np.asarray(district, dtype=np.int64) * len(self.KINDS) + kind
        pick = np.minimum((u * self.length[key]).astype(np.int64), self.length[key] - 1)
        return self.flat[self.offset[key] + pick]


# ======================================================================== people
def _draw_codes(weights: dict, draw: np.ndarray) -> np.ndarray:
    """Map uniform draws onto weighted codes."""
    names = np.asarray(list(weights), dtype=object)
    cum = np.cumsum(list(weights.values()))
    return names[np.minimum(np.searchsorted(cum / cum[-1], draw, side="right"), len(names) - 1)]


def ethnicity_codes(world: World) -> pd.Series:
    """A CBDS ethnicity code per person, shared by a household, drawn from its background
    group's weights in ``names.GROUPS`` (deterministic: its own random stream)."""
    persons = world.persons
    unit_key = persons["household_key"].fillna(persons["person_key"])
    unit, _ = pd.factorize(unit_key)  # numbered in order of first appearance: deterministic
    _, first_member = np.unique(unit, return_index=True)
    unit_group = persons["group"].to_numpy(dtype=object)[first_member]
    draw = world.config.rng("education.ethnicity").random(len(unit_group))
    codes = np.empty(len(unit_group), dtype=object)
    for name, (_, weights, _) in GROUPS.items():  # five groups
        mask = unit_group == name
        codes[mask] = _draw_codes(weights, draw[mask])
    return pd.Series(codes[unit], index=persons.index, name="ethnicity", dtype=object)


def first_language_codes(world: World) -> pd.Series:
    """The first language of each person's background group (``names.GROUPS``)."""
    code, groups = pd.factorize(world.persons["group"])
    language = np.asarray([GROUPS[g][2] if g in GROUPS else None for g in groups], dtype=object)
    return pd.Series(language[code], index=world.persons.index, name="first_language", dtype=object)


def _school_children(world: World) -> pd.DataFrame:
    """Children who are of school age at some point in the period, in a fixed order."""
    config = world.config
    rng = config.rng("education.children")
    persons = world.persons
    is_pupil = ((persons["role"] == "child") & persons["upn"].notna()).to_numpy()
    birth = _days(persons["birth_date"].to_numpy()[is_pupil])
    cohort = _year(birth) + (_month(birth) >= 9)
    reception = cohort + 4  # the school year (by its first September) of Reception
    # A child whose Year 13 ended before the period began was never on ONE's live roll.
    keep = _leaving_day(reception + 14) >= np.datetime64(config.start, "D")
    row = np.flatnonzero(is_pupil)[keep]
    kids = pd.DataFrame({
        "row": row, "hrow": world.needs.row_index(persons["household_key"].to_numpy(dtype=object)[row]),
        "birth": birth[keep], "death": _days(persons["death_date"].to_numpy()[row]),
        "cohort": cohort[keep], "reception": reception[keep],
        "male": (persons["sex"] == "M").to_numpy()[row],
    })
    n = len(kids)
    # ONE's internal id: integers handed out in no meaningful order, 6-7 digits.
    kids["one_id"] = 100_000 + rng.permutation(n) * 7 + rng.integers(0, 7, n)
    kids["stays_on"] = rng.random(n) < 0.55  # Years 12-13 in the school's sixth form
    # Siblings mostly share a primary and a secondary: most school draws are the household's.
    household_u = rng.random(len(world.needs.household_keys))[kids["hrow"].to_numpy()]
    kids["u_school"] = np.where(rng.random(n) < 0.8, household_u, rng.random(n))
    return kids


# ======================================================================== needs
def _needs_by_month(world: World, kids: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each need as a children x months bool matrix (the household's state that month)."""
    rows = kids["hrow"].to_numpy()
    return {need: state[rows] for need, state in world.needs.active.items()}


def _needs_at(world: World, hrow: np.ndarray, when) -> dict[str, np.ndarray]:
    cols = world.needs.month_index(when)
    return {need: state[hrow, cols] for need, state in world.needs.active.items()}


def _first_event_month(hazard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Month index of the first event given monthly probabilities ``hazard``; -1 for none."""
    hit = rng.random(hazard.shape, dtype=np.float32) < hazard
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _day_in_month(months: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _weekday_on_or_after(months + rng.integers(0, 28, len(months)) * DAY)


def _school_age_by_month(kids: pd.DataFrame, months: np.ndarray, lo: int = 0, hi: int = 11) -> np.ndarray:
    """Children x months: whether the child is in national curriculum years ``lo``..``hi``."""
    nc = _academic_year(months)[None, :] - kids["cohort"].to_numpy()[:, None] - 4
    return (nc >= lo) & (nc <= hi)


# ======================================================================== SEN
def _sen(world: World, kids: pd.DataFrame, needs: dict[str, np.ndarray]) -> pd.DataFrame:
    """When each child's SEN support (K) and EHC plan (E) began, and their need types.

    Boys and children in households where behaviour is a concern are identified more
    often, and their primary need is more often social, emotional and mental health.
    """
    rng = world.config.rng("education.sen")
    n = len(kids)
    behaviour = needs["child_behaviour"].mean(axis=1) > 0
    lift = np.exp(0.75 * behaviour + 0.35 * kids["male"].to_numpy()) / 1.5
    reception_day = _first_school_day(kids["reception"].to_numpy())
    has_e = rng.random(n) < 0.048 * lift
    has_k = ~has_e & (rng.random(n) < 0.17 * lift)
    # Some plans are in place before a child starts school; most come later.
    e_from = reception_day - 200 * DAY + rng.exponential(3.0 * 365, n).astype(np.int64) * DAY
    k_from = reception_day + rng.exponential(2.0 * 365, n).astype(np.int64) * DAY
    semh = behaviour & (rng.random(n) < 0.35)
    k_type = np.where(semh, "SEMH", _draw_codes(SEN_TYPES_K, rng.random(n))).astype(object)
    e_type = np.where(semh, "SEMH", _draw_codes(SEN_TYPES_E, rng.random(n))).astype(object)
    second = _draw_codes(SEN_TYPES_K, rng.random(n))
    has_second = rng.random(n) < 0.3
    return pd.DataFrame({
        "k_from": np.where(has_k, k_from, NAT), "e_from": np.where(has_e, e_from, NAT),
        "k_type": pd.Series(k_type, dtype=object), "e_type": pd.Series(e_type, dtype=object),
        "k_type2": pd.Series(np.where(has_second & (second != k_type), second, None), dtype=object),
        "e_type2": pd.Series(np.where(has_second & (second != e_type), second, None), dtype=object),
    })


# ======================================================================== registers
def _ehe_episodes(world: World, kids: pd.DataFrame, needs, sen: pd.DataFrame) -> pd.DataFrame:
    """Elective home education: the register standing at the start, then new episodes
    whose hazard rises with parental mental health, behaviour concerns, housing and SEN.
    About a third return to school after some months; the rest stay home until Year 11."""
    config = world.config
    rng = config.rng("education.ehe")
    months = world.needs.months
    start = np.datetime64(config.start, "D")
    n = len(kids)
    school_age = _school_age_by_month(kids, months)
    reception_day = _first_school_day(kids["reception"].to_numpy())
    sen_any = (sen["k_from"].notna() | sen["e_from"].notna()).to_numpy()

    standing = school_age[:, 0] & (rng.random(n) < 0.007 * np.exp(0.6 * sen_any))
    standing_start = np.maximum(start - rng.integers(20, 3 * 365, n) * DAY, reception_day)
    risk = (0.9 * needs["mental_health"] + 0.8 * needs["child_behaviour"] + 0.4 * needs["housing"]
            + 0.6 * sen_any[:, None])
    hazard = np.where(school_age & ~standing[:, None], 0.0002 * np.exp(risk), 0.0).astype(np.float32)
    month = _first_event_month(hazard, rng)
    new = month >= 0

    child = np.r_[np.flatnonzero(standing), np.flatnonzero(new)]
    began = np.r_[standing_start[standing], _day_in_month(months[month[new]], rng)]
    returns = rng.random(len(child)) < 0.35
    back = _weekday_on_or_after(began + np.maximum(40, rng.lognormal(np.log(220), 0.6, len(child))).astype(
        np.int64) * DAY)
    aged_out = _leaving_day(kids["reception"].to_numpy()[child] + 12)  # compulsory school age ends
    ended = np.where(returns & (back < aged_out), back, aged_out)
    then = _needs_at(world, kids["hrow"].to_numpy()[child], began)
    return pd.DataFrame({"child": child, "start": began, "end": ended, "returns": ended < aged_out,
                         "reason": pd.Series(_ehe_reason(rng, then, sen_any[child]), dtype=object)})


def _ehe_reason(rng, needs_then: dict[str, np.ndarray], sen_any: np.ndarray) -> np.ndarray:
    n = len(sen_any)
    general = _draw_codes(EHE_GENERAL_REASONS, rng.random(n))
    draw = rng.random(n)
    return np.select(
        [needs_then["mental_health"] & (draw < 0.5), needs_then["child_behaviour"] & (draw < 0.4),
         sen_any & (draw < 0.35)],
        ["MENTAL_HEALTH", "EXCLUSION_AVOIDANCE", "SEN"], general).astype(object)


def _cme_episodes(world: World, kids: pd.DataFrame, needs, ehe: pd.DataFrame) -> pd.DataFrame:
    """Children missing education: mostly families in housing trouble, fleeing domestic
    abuse or with substance misuse. The school takes the child off roll a few days
    before the LA identifies them; most are found a school again within weeks."""
    rng = world.config.rng("education.cme")
    months = world.needs.months
    n = len(kids)
    risk = (1.1 * needs["housing"] + 0.9 * needs["domestic_abuse"] + 0.7 * needs["substance_misuse"]
            + 0.4 * needs["poverty"])
    home_educated = np.zeros(n, bool)
    home_educated[ehe["child"].to_numpy()] = True  # one register at a time: keep it simple
    eligible = _school_age_by_month(kids, months) & ~home_educated[:, None]
    hazard = np.where(eligible, 0.0002 * np.exp(risk), 0.0).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    identified = _day_in_month(months[month[child]], rng)
    off_roll = np.busday_offset(identified, -rng.integers(1, 8, len(child)), roll="backward")
    quick = rng.random(len(child)) < 0.88
    days = np.where(quick, np.maximum(5, rng.lognormal(np.log(35), 0.7, len(child))),
                    rng.integers(200, 500, len(child)))
    resolved = _weekday_on_or_after(identified + days.astype(np.int64) * DAY)
    aged_out = _leaving_day(kids["reception"].to_numpy()[child] + 12)
    reason = _draw_codes(CME_REASONS, rng.random(len(child)))
    return pd.DataFrame({"child": child, "off_roll": off_roll, "identified": identified,
                         "resolved": np.minimum(resolved, aged_out), "returns": resolved < aged_out,
                         "reason": pd.Series(reason, dtype=object)})


def _school_moves(world: World, kids: pd.DataFrame, book: AddressBook) -> pd.DataFrame:
    """House moves in the period that take a child to a new school: most moves to
    another district, a few long moves within one. The new school starts within days."""
    rng = world.config.rng("education.transfers")
    groups = book.groups
    moved = (book.keys[1:] - groups[1:] * KEY_SPAN - DAY_SHIFT).astype("datetime64[D]")
    is_move = (groups[1:] == groups[:-1]) & (moved >= np.datetime64(world.config.start, "D"))
    changed = book.district[book.address[1:]] != book.district[book.address[:-1]]
    moves = pd.DataFrame({"hrow": groups[1:][is_move], "moved": moved[is_move], "changed": changed[is_move]})
    per_child = pd.DataFrame({"hrow": kids["hrow"].to_numpy(), "child": np.arange(len(kids))})
    joined = per_child.merge(moves, on="hrow").sort_values(["child", "moved"], kind="stable")
    joined = joined[rng.random(len(joined)) < np.where(joined["changed"], 0.85, 0.1)]
    new_school = _weekday_on_or_after(_days(joined["moved"]) + rng.integers(0, 15, len(joined)) * DAY)
    return pd.DataFrame({"child": joined["child"].to_numpy(), "date": new_school})


# ======================================================================== careers
# Event kinds; on the same day they apply in this order (a start after an end).
STAGE_END, AGED_OUT, DEATH, OFF_ROLL, BACK, TRANSFER, TO_SPECIAL, TO_PRU, STAGE_START = range(9)
NONE, MAINSTREAM, SPECIAL_SCHOOL, PRU = range(4)  # placements
STATE = {"in_stage": 0, "gap": 0, "pru": 0, "special": 0, "secondary": 0}  # with their defaults


def _events(child, when, kind, u=None, **state) -> dict[str, np.ndarray]:
    """Events of one kind, as columns. ``state`` gives the values they set (NaN: carried
    over); an event with a ``u`` chooses a school, with ``u`` as its draw."""
    child = np.asarray(child, dtype=np.int64)
    n = len(child)
    events = {"child": child, "date": _days(when), "kind": np.full(n, kind),
              "u": np.full(n, np.nan) if u is None else np.asarray(u, dtype=float)}
    for name in STATE:
        events[name] = np.full(n, float(state[name]) if name in state else np.nan)
    return events


def _career_events(world: World, kids: pd.DataFrame, plan: dict) -> dict:
    """Every event that moves a child onto, off or between rolls, sorted by child and date."""
    rng = world.config.rng("education.career_events")
    ehe, cme, moves, special_from = plan["ehe"], plan["cme"], plan["moves"], plan["special_from"]
    child = np.arange(len(kids))
    reception = kids["reception"].to_numpy()
    u = kids["u_school"].to_numpy()
    special = ~np.isnat(special_from)
    last_year = reception + np.where(kids["stays_on"].to_numpy() | special, 14, 12)
    # A pupil placed at an all-age special school before Year 6 ends stays there.
    phased = ~special | (special_from > _leaving_day(reception + 7))
    ehe_child, cme_child = ehe["child"].to_numpy(), cme["child"].to_numpy()
    ehe_back, cme_back = ehe["returns"].to_numpy(), cme["returns"].to_numpy()
    ehe_end, cme_end = ehe["end"].to_numpy(), cme["resolved"].to_numpy()
    death = kids["death"].to_numpy()
    died = ~np.isnat(death)
    parts = [
        _events(child, _first_school_day(reception), STAGE_START, u, in_stage=1, pru=0, secondary=0),
        _events(child[phased], _leaving_day(reception + 7)[phased] + DAY, STAGE_END, in_stage=0, pru=0),
        _events(child[phased], _first_school_day(reception + 7)[phased], STAGE_START, u[phased],
                in_stage=1, pru=0, secondary=1),
        _events(child, _leaving_day(last_year) + DAY, STAGE_END, in_stage=0, pru=0),
        _events(moves["child"], moves["date"], TRANSFER, rng.random(len(moves))),
        _events(ehe_child, ehe["start"], OFF_ROLL, gap=1),
        _events(ehe_child[ehe_back], ehe_end[ehe_back], BACK, rng.random(int(ehe_back.sum())), gap=0),
        _events(ehe_child[~ehe_back], ehe_end[~ehe_back], AGED_OUT, gap=0, in_stage=0),
        _events(cme_child, cme["off_roll"], OFF_ROLL, gap=1),
        _events(cme_child[cme_back], cme_end[cme_back], BACK, rng.random(int(cme_back.sum())), gap=0),
        _events(cme_child[~cme_back], cme_end[~cme_back], AGED_OUT, gap=0, in_stage=0),
        _events(child[special], special_from[special], TO_SPECIAL, rng.random(int(special.sum())), special=1),
        _events(child[died], death[died], DEATH, in_stage=0, gap=0),
    ]
    return _in_order(world, kids, parts)


def _in_order(world: World, kids: pd.DataFrame, parts: list[dict]) -> dict:
    """Events sorted by child, date and kind, leaving out anything after a death or the
    end of the period."""
    events = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    when = events["date"]
    death = kids["death"].to_numpy()
    keep = ~(death[events["child"]] < when) & (when <= np.datetime64(world.config.end, "D"))  # NaT: False
    order = np.lexsort((events["kind"][keep], when[keep], events["child"][keep]))
    return {name: values[keep][order] for name, values in events.items()}


def _placements(kids: pd.DataFrame, events: dict, book: AddressBook, schools: Schools) -> pd.DataFrame:
    """Resolve the event log into intervals [from, to) with a placement and a school.

    Each state (in a school stage, off roll, at the PRU, at a special school, in
    secondary) is carried forward from the last event that set it; the school is chosen
    where the family lived when the last school-choosing event happened.
    """
    child = events["child"]
    first = np.r_[True, child[1:] != child[:-1]][:len(child)]
    state = {}
    for name, default in STATE.items():
        col = events[name].copy()
        col[first & np.isnan(col)] = default  # every child starts from a known state
        state[name] = _carry_forward(col) == 1
    when = events["date"]
    u = events["u"]
    chooses = ~np.isnan(u)
    district = np.full(len(child), np.nan)
    district[chooses] = book.district_at(kids["hrow"].to_numpy()[child[chooses]], when[chooses])
    district = np.nan_to_num(_carry_forward(district)).astype(np.int64)
    u = np.nan_to_num(_carry_forward(u), nan=0.5)

    placement = np.select([~state["in_stage"] | state["gap"], state["special"], state["pru"]],
                          [NONE, SPECIAL_SCHOOL, PRU], MAINSTREAM)
    kind = np.select([placement == SPECIAL_SCHOOL, placement == PRU, state["secondary"]],
                     [Schools.SPECIAL, Schools.AP, Schools.SECONDARY], Schools.PRIMARY)
    school = np.where(placement == NONE, -1, schools.choose(district, kind, u))
    last = np.r_[child[1:] != child[:-1], True][-len(child):] if len(child) else np.zeros(0, bool)
    stop = np.where(last, NAT, np.r_[when[1:], NAT][:len(child)])
    keep = ~(stop <= when)  # same-day events leave empty intervals
    return pd.DataFrame({"child": child, "from": when, "to": stop, "placement": placement, "school": school,
                         "kind": events["kind"], "between_stages": ~state["in_stage"] & ~state["gap"]})[
        keep].reset_index(drop=True)


def _carry_forward(values: np.ndarray) -> np.ndarray:
    """Fill each NaN with the last value before it (a vectorised forward fill)."""
    filled = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(filled, np.arange(len(values)), 0))
    return np.where(filled | (last > 0) | filled[:1], values[last], np.nan)


def _placement_at(intervals: pd.DataFrame, child: np.ndarray, when: np.ndarray):
    """The placement, school and interval end of each (child, date)."""
    keys = _key(intervals["child"], intervals["from"])
    pos = _latest_at(keys, intervals["child"].to_numpy(), child, when)
    safe = np.maximum(pos, 0)
    to = intervals["to"].to_numpy()[safe]
    ok = (pos >= 0) & (np.isnat(to) | (to > _days(when)))
    placement = np.where(ok, intervals["placement"].to_numpy()[safe], NONE)
    return placement, np.where(ok, intervals["school"].to_numpy()[safe], -1), np.where(ok, to, NAT)


def _enrolments_from(intervals: pd.DataFrame) -> pd.DataFrame:
    """Merge consecutive intervals at one school into enrolments.

    The summer between Year 6 and Year 7 does not end an enrolment at an all-through or
    special school: a short between-stages interval is skipped when the school is the same.
    """
    summer = intervals["between_stages"].to_numpy() & (
        (intervals["to"] - intervals["from"]).to_numpy() <= np.timedelta64(62, "D"))
    iv = intervals[~summer]
    child, school = iv["child"].to_numpy(), iv["school"].to_numpy()
    new_run = np.r_[True, (child[1:] != child[:-1]) | (school[1:] != school[:-1])][:len(child)]
    head = np.flatnonzero(new_run)
    tail = np.r_[head[1:] - 1, len(iv) - 1]
    enrol = pd.DataFrame({
        "child": child[head], "school": school[head], "entry": iv["from"].to_numpy()[head],
        "leave": iv["to"].to_numpy()[tail] - DAY, "placement": iv["placement"].to_numpy()[head],
        "planned": iv["kind"].to_numpy()[head] == STAGE_START, "subsidiary": False,
    })
    return enrol[enrol["placement"] != NONE].reset_index(drop=True)


def _special_from(world: World, kids: pd.DataFrame, sen: pd.DataFrame) -> np.ndarray:
    """Some children with an EHC plan go to a special school a term or so after the plan
    (from Reception when the plan came first); most often for the most complex needs."""
    rng = world.config.rng("education.special")
    e_from = _days(sen["e_from"].to_numpy())
    complex_needs = np.isin(sen["e_type"].to_numpy(dtype=object), ["SLD", "PMLD", "MSI", "ASD"])
    goes = ~np.isnat(e_from) & (rng.random(len(kids)) < np.where(complex_needs, 0.55, 0.2))
    reception_day = _first_school_day(kids["reception"].to_numpy())
    when = np.maximum(_weekday_on_or_after(e_from + rng.integers(20, 120, len(kids)) * DAY), reception_day)
    return np.where(goes, when, NAT)


def _permanent_exclusions(world: World, kids, needs, intervals) -> pd.DataFrame:
    """Rare permanent exclusions (about 0.1% of pupils a year), mostly in secondary and
    where behaviour is a concern; the pupil starts at the PRU on the sixth school day."""
    rng = world.config.rng("education.permanent")
    months = world.needs.months
    risk = 2.0 * needs["child_behaviour"] + 0.5 * needs["domestic_abuse"] + 0.5 * needs["substance_misuse"]
    phase = _school_age_by_month(kids, months, 7, 11) + 0.12 * _school_age_by_month(kids, months, 1, 6)
    hazard = (0.00015 * np.exp(risk) * phase * (_month(months) != 8)).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    when = _day_in_month(months[month[child]], rng)
    placement, school, _ = _placement_at(intervals, child, when)
    ok = placement == MAINSTREAM  # only a school can exclude; a pupil off roll cannot be
    return pd.DataFrame({"child": child[ok], "date": when[ok], "school": school[ok],
                         "pru_from": np.busday_offset(when[ok], 6, roll="forward")})


def _dual_registrations(world: World, kids, needs, intervals, book: AddressBook, schools: Schools):
    """A few secondary pupils spend some weeks at the PRU while staying on their school's
    roll: the PRU holds a subsidiary (S) enrolment and the school's becomes main (M)."""
    rng = world.config.rng("education.dual")
    months = world.needs.months
    hazard = (0.00012 * np.exp(1.8 * needs["child_behaviour"]) * _school_age_by_month(kids, months, 7, 11)
              * (_month(months) != 8)).astype(np.float32)
    month = _first_event_month(hazard, rng)
    child = np.flatnonzero(month >= 0)
    entry = _day_in_month(months[month[child]], rng)
    placement, _, main_ends = _placement_at(intervals, child, entry)
    ok = placement == MAINSTREAM
    child, entry, main_ends = child[ok], entry[ok], main_ends[ok]
    leave = entry + rng.integers(30, 85, len(child)) * DAY
    leave = np.where(~np.isnat(main_ends) & (main_ends <= leave), main_ends - DAY, leave)
    district = book.district_at(kids["hrow"].to_numpy()[child], entry)
    school = schools.choose(district, np.full(len(child), Schools.AP), rng.random(len(child)))
    return pd.DataFrame({"child": child, "school": school, "entry": entry, "leave": leave, "placement": PRU,
                         "planned": False, "subsidiary": True})


def _careers(world: World, kids, needs, plan: dict, book: AddressBook, schools: Schools):
    """Every enrolment. Permanent exclusions are drawn from where pupils were without
    them; the excluded pupils' careers are then resolved again with their PRU placement."""
    events = _career_events(world, kids, plan)
    intervals = _placements(kids, events, book, schools)
    permanent = _permanent_exclusions(world, kids, needs, intervals)
    rng = world.config.rng("education.pru_places")
    excluded = np.isin(events["child"], permanent["child"].to_numpy())
    redone = _placements(kids, _in_order(world, kids, [
        {name: values[excluded] for name, values in events.items()},
        _events(permanent["child"], permanent["pru_from"], TO_PRU, rng.random(len(permanent)), pru=1),
    ]), book, schools)
    intervals = pd.concat([intervals[~np.isin(intervals["child"].to_numpy(), permanent["child"].to_numpy())],
                           redone], ignore_index=True)
    intervals = intervals.iloc[np.lexsort((_days(intervals["from"].to_numpy()),
                                           intervals["child"].to_numpy()))].reset_index(drop=True)
    enrol = pd.concat([_enrolments_from(intervals),
                       _dual_registrations(world, kids, needs, intervals, book, schools)], ignore_index=True)
    # In file order: by ONE's pupil id, then entry date.
    enrol = enrol.iloc[np.lexsort((enrol["school"].to_numpy(), _days(enrol["entry"].to_numpy()),
                                   kids["one_id"].to_numpy()[enrol["child"].to_numpy()]))].reset_index(drop=True)
    # Admissions at the start of a school stage are on ONE from the summer before.
    entry = enrol["entry"].to_numpy()
    enrol["created"] = np.where(enrol["planned"].to_numpy(), entry - 60 * DAY, entry)
    return enrol, permanent


# ======================================================================== terms
def _term_rows(world: World, kids, enrol: pd.DataFrame, terms: pd.DataFrame) -> pd.DataFrame:
    """One row per enrolment per term it overlaps, with the sessions it made possible and
    the household's needs in the middle of the term."""
    entry = _days(enrol["entry"].to_numpy())
    leave = _days(enrol["leave"].to_numpy())
    leave = np.where(np.isnat(leave), FAR_FUTURE, leave)
    first, last = terms["first"].to_numpy(), terms["last"].to_numpy()
    lo = np.maximum(entry[:, None], first[None, :])
    hi = np.minimum(leave[:, None], last[None, :])
    days = (hi - lo) / DAY + 1
    e, t = np.nonzero(days > 0)
    term_days = (last - first) / DAY + 1
    full = terms["sessions"].to_numpy()[t]
    possible = np.rint(full * days[e, t] / term_days[t]).astype(np.int64)
    child = enrol["child"].to_numpy()[e]
    rows = pd.DataFrame({
        "child": child, "school": enrol["school"].to_numpy()[e], "placement": enrol["placement"].to_numpy()[e],
        "term": t, "lo": lo[e, t], "hi": hi[e, t], "possible": possible, "full": full,
        "nc": _academic_year(first[t]) - kids["cohort"].to_numpy()[child] - 4,
    })
    keep = possible > 0
    mid = first[t] + (last[t] - first[t]) // 2
    for need, value in _needs_at(world, kids["hrow"].to_numpy()[child], mid).items():
        rows[need] = value
    return rows[keep].reset_index(drop=True)


def _attendance(world: World, kids, rows: pd.DataFrame) -> pd.DataFrame:
    """Absence per pupil per school per term: a persistent pupil tendency, older pupils
    absent more, each household need raising the rate, and a few school refusers.
    Families under strain have more of their absence unauthorised."""
    rng = world.config.rng("education.attendance")
    pupil_effect = rng.normal(0, 0.7, len(kids))
    refuser = rng.random(len(kids)) < 0.016  # emotionally based school avoidance
    child = rows["child"].to_numpy()
    nc = rows["nc"].to_numpy()
    age = np.select([nc <= 0, nc <= 6, nc <= 8, nc <= 11], [0.15, 0.0, 0.25, 0.5], 0.35)
    from_needs = sum(effect * rows[need].to_numpy() for need, effect in ABSENCE_EFFECT.items())
    n_needs = sum(rows[need].to_numpy().astype(int) for need in ABSENCE_EFFECT)
    logit = (ABSENCE_BASE_LOGIT + age + from_needs + pupil_effect[child] + 3.9 * refuser[child]
             + 0.5 * (rows["placement"].to_numpy() != MAINSTREAM) + rng.normal(0, 0.35, len(rows)))
    possible = rows["possible"].to_numpy()
    absent = rng.binomial(possible, 1 / (1 + np.exp(-logit)))
    authorised = rng.binomial(absent, 1 / (1 + np.exp(-(1.0 - 0.45 * n_needs - 0.8 * refuser[child]))))
    # In file order; a pupil who left and came back to a school within a term has one row.
    school, term, one_id = rows["school"].to_numpy(), rows["term"].to_numpy(), kids["one_id"].to_numpy()[child]
    order = np.lexsort((school, term, one_id))
    school, term, one_id, child = school[order], term[order], one_id[order], child[order]
    head = np.flatnonzero(np.r_[True, (one_id[1:] != one_id[:-1]) | (term[1:] != term[:-1])
                                | (school[1:] != school[:-1])][:len(child)])
    return pd.DataFrame({"child": child[head], "school": school[head], "term": term[head],
                         "possible": np.add.reduceat(possible[order], head),
                         "authorised": np.add.reduceat(authorised[order], head),
                         "unauthorised": np.add.reduceat((absent - authorised)[order], head)})


def _suspensions(world: World, kids, rows: pd.DataFrame) -> pd.DataFrame:
    """Suspensions and lunchtime exclusions counted per pupil-term: mostly ages 11-15 and
    strongly where behaviour is a concern, with a few pupils suspended again and again."""
    rng = world.config.rng("education.suspensions")
    proneness = rng.lognormal(0, 1.0, len(kids)) / 1.65  # mean one
    nc = rows["nc"].to_numpy()
    base = np.select([nc <= 2, nc <= 6, nc <= 8, nc <= 11], [0.002, 0.008, 0.05, 0.07], 0.012)
    risk = (1.7 * rows["child_behaviour"].to_numpy() + 0.4 * rows["domestic_abuse"].to_numpy()
            + 0.35 * rows["substance_misuse"].to_numpy() + 0.25 * rows["housing"].to_numpy())
    share = rows["possible"].to_numpy() / rows["full"].to_numpy()
    count = rng.poisson(base * share * np.exp(risk) * proneness[rows["child"].to_numpy()])
    r = np.repeat(np.arange(len(rows)), count)
    lo = _days(rows["lo"].to_numpy())[r]
    span = (_days(rows["hi"].to_numpy())[r] - lo) / DAY
    # a school day within the part of the term the pupil was on roll
    when = np.maximum(np.busday_offset(lo + (rng.random(len(r)) * span).astype(np.int64) * DAY, 0,
                                       roll="backward"), lo)
    lunch = rng.random(len(r)) < 0.04
    sessions = np.where(lunch, 1, _draw_codes(SUSPENSION_SESSIONS, rng.random(len(r))).astype(np.int64))
    return pd.DataFrame({"child": rows["child"].to_numpy()[r], "school": rows["school"].to_numpy()[r],
                         "category": np.where(lunch, 2, 0), "date": when, "sessions": sessions})


EXCLUSION_CATEGORIES = np.asarray(["SUSP", "PERM", "LUNCH"], dtype=object)


def _exclusions(world: World, kids, rows, permanent: pd.DataFrame) -> pd.DataFrame:
    rng = world.config.rng("education.exclusion_reasons")
    perm = pd.DataFrame({"child": permanent["child"].to_numpy(), "school": permanent["school"].to_numpy(),
                         "category": 1, "date": _days(permanent["date"].to_numpy()),
                         "sessions": np.full(len(permanent), -1)})
    ex = pd.concat([_suspensions(world, kids, rows), perm], ignore_index=True)
    ex = ex[ex["date"].to_numpy() <= np.datetime64(world.config.end, "D")]
    ex = ex.sort_values(["date", "child", "category"], kind="stable").reset_index(drop=True)
    n = len(ex)
    reasons = [_draw_codes(EXCLUSION_REASONS, rng.random(n)) for _ in range(3)]
    second = (rng.random(n) < 0.22) & (reasons[1] != reasons[0])
    third = second & (rng.random(n) < 0.25) & (reasons[2] != reasons[0]) & (reasons[2] != reasons[1])
    ex["reason1"] = pd.Series(reasons[0], dtype=object)
    ex["reason2"] = pd.Series(np.where(second, reasons[1], None), dtype=object)
    ex["reason3"] = pd.Series(np.where(third, reasons[2], None), dtype=object)
    ex["exclusion_id"] = 700_001 + np.arange(n)  # ONE's sequence, in the order they happened
    ex["created"] = np.busday_offset(_days(ex["date"].to_numpy()), rng.integers(0, 3, n), roll="forward")
    return ex


# ======================================================================== FSM
def _low_income_spells(world: World, book: AddressBook, rng: np.random.Generator) -> pd.DataFrame:
    """Long-standing low income short of the acute poverty need: common in deprived
    neighbourhoods, it keeps families eligible for years (a fifth stop during the period)."""
    start, end = np.datetime64(world.config.start, "D"), np.datetime64(world.config.end, "D")
    hrow = np.arange(len(world.needs.household_keys))
    decile = book.imd_decile[book.at(hrow, np.full(len(hrow), start))]
    eligible = rng.random(len(hrow)) < np.select([decile <= 2, decile <= 4, decile <= 6], [0.3, 0.18, 0.08], 0.03)
    began = start - rng.integers(0, 6 * 365, len(hrow)) * DAY
    stops = rng.random(len(hrow)) < 0.2
    ended = np.where(stops, start + (rng.random(len(hrow)) * ((end - start) / DAY)).astype(np.int64) * DAY, NAT)
    return pd.DataFrame({"hrow": hrow, "start": began, "end": ended})[eligible]


def _fsm_periods(world: World, kids, enrol: pd.DataFrame, book: AddressBook) -> pd.DataFrame:
    """Free school meal eligibility: claimed for most spells of household poverty, from a
    few weeks after it starts until a little after it ends, and for long-standing low
    income, for the part of each claim the child is at school."""
    config = world.config
    rng = config.rng("education.fsm")
    poverty = world.needs.active["poverty"]
    months = world.needs.months
    n_h, n_m = poverty.shape
    before = np.c_[np.zeros((n_h, 1), bool), poverty[:, :-1]]
    after = np.c_[poverty[:, 1:], np.zeros((n_h, 1), bool)]
    h_start, m_start = np.nonzero(poverty & ~before)
    _, m_end = np.nonzero(poverty & ~after)  # row-major order pairs each spell's start and end
    n = len(h_start)
    start = np.where(m_start == 0,  # spells already running when the period began started earlier
                     np.datetime64(config.start, "D") - rng.integers(0, 4 * 365, n) * DAY,
                     months[m_start] + rng.integers(10, 75, n) * DAY)
    month_after = np.r_[months[1:], (months[-1].astype("datetime64[M]") + 1).astype("datetime64[D]")]
    end = np.where(m_end == n_m - 1, NAT, month_after[m_end] + rng.integers(0, 60, n) * DAY)
    claimed = rng.random(n) < 0.85
    spells = pd.concat([pd.DataFrame({"hrow": h_start, "start": start, "end": end})[claimed],
                        _low_income_spells(world, book, rng)], ignore_index=True)
    # Each claim covers the household's children for the part of it they are at school.
    leave = _days(enrol["leave"].to_numpy())
    span = pd.DataFrame({"child": enrol["child"].to_numpy(), "first": _days(enrol["entry"].to_numpy()),
                         "last": np.where(np.isnat(leave), FAR_FUTURE, leave)}).groupby("child").agg(
        first=("first", "min"), last=("last", "max"))
    per_child = pd.DataFrame({"child": span.index.to_numpy(), "hrow": kids["hrow"].to_numpy()[span.index],
                              "first": _days(span["first"].to_numpy()), "last": _days(span["last"].to_numpy())})
    fsm = per_child.merge(spells, on="hrow")
    first_day, last_day = _days(fsm["first"].to_numpy()), _days(fsm["last"].to_numpy())
    begin = np.maximum(_days(fsm["start"].to_numpy()), first_day)
    end = _days(fsm["end"].to_numpy())
    end = np.minimum(np.where(np.isnat(end), FAR_FUTURE, end), last_day)
    keep = (end > begin) & (begin <= np.datetime64(config.end, "D"))
    child, begin, end = _merge_overlaps(fsm["child"].to_numpy()[keep], begin[keep], end[keep], kids)
    return pd.DataFrame({"child": child, "start": begin, "end": np.where(end == FAR_FUTURE, NAT, end)})


def _merge_overlaps(child: np.ndarray, begin: np.ndarray, end: np.ndarray, kids: pd.DataFrame):
    """One eligibility period where claims overlap or touch, in file order (ONEPupilID,
    start): a child is eligible or not, however many reasons there are."""
    one_id = kids["one_id"].to_numpy()[child]
    order = np.lexsort((begin, one_id))
    child, one_id, begin, end = child[order], one_id[order], begin[order], end[order]
    first = np.r_[True, one_id[1:] != one_id[:-1]][:len(child)]
    # the latest end so far within each child (day numbers; each child's block restarts)
    reach = pd.Series(end.astype(np.int64)).groupby(child).cummax().to_numpy()
    new_period = first | (begin.astype(np.int64) > np.r_[np.int64(0), reach[:-1]][:len(child)] + 1)
    head = np.flatnonzero(new_period)
    last_of = np.r_[head[1:], len(child)] - 1
    return child[head], begin[head], reach[last_of].astype("datetime64[D]")


# ======================================================================== pupils
def _pupil_master(world: World, kids: pd.DataFrame) -> dict[str, np.ndarray]:
    """What ONE holds for each child, with every per-record defect decided once."""
    config = world.config
    rng = config.rng("education.pupils")
    persons = world.persons
    row = kids["row"].to_numpy()
    n = len(kids)

    def column(name):
        return pd.Series(persons[name].to_numpy(dtype=object)[row], dtype=object)

    name_typo = config.defects.forename_typo / 3  # education is the most careful of the five
    master = {
        "one_id": kids["one_id"].to_numpy(),
        "upn": defects.corrupt_upn(column("upn"), rng, config.defects.invalid_check_digit).to_numpy(),
        "former_upn": column("former_upn").to_numpy(),
        "uln": column("uln").to_numpy(),
        "forename": defects.typo(column("forename"), rng, name_typo).to_numpy(),
        "middle_names": column("middle_names").to_numpy(),
        "surname": defects.typo(column("surname"), rng, name_typo).to_numpy(),
        "surname_after": defects.typo(column("surname_after"), rng, name_typo).to_numpy(),
        "birth": kids["birth"].to_numpy(),
        "sex": column("sex").to_numpy(),
        "ethnicity": ethnicity_codes(world).to_numpy()[row],
        "first_language": first_language_codes(world).to_numpy()[row],
        "hrow": kids["hrow"].to_numpy(),
    }
    # A new surname reaches ONE for most pupils, some weeks after it changes.
    changed_on = _days(persons["surname_changed_on"].to_numpy()[row])
    picked_up = rng.random(n) < 0.8
    master["surname_known_from"] = np.where(picked_up, changed_on + rng.integers(0, 60, n) * DAY, NAT)
    # A pupil whose legal name has not been updated often goes by the new one.
    master["prefers_new"] = ~picked_up & (rng.random(n) < 0.5) & ~np.isnat(changed_on)
    master["surname_changed_on"] = changed_on
    # Some pupils with a double-barrelled surname go by one half of it.
    double = np.flatnonzero(pd.Series(master["surname"], dtype=object).str.contains("-", regex=False).to_numpy())
    half = defects.shorten_hyphenated(pd.Series(master["surname"][double], dtype=object), rng, 0.3).to_numpy()
    master["preferred_other"] = np.full(n, None, dtype=object)
    master["preferred_other"][double] = np.where(half != master["surname"][double], half, None)
    master["address_lag"] = np.where(rng.random(n) < config.defects.stale_address, rng.integers(30, 240, n), 0) * DAY
    master["has_uprn"] = rng.random(n) < 0.85
    master["postcode_style"] = defects.postcode_format(pd.Series([POSTCODE_PROBE] * n, dtype=object),
                                                       config.rng("education.postcode_style"),
                                                       config.defects.postcode_format / 2).to_numpy()
    master["young_carer_u"] = rng.random(n)
    master["service_child"] = rng.random(len(world.needs.household_keys))[kids["hrow"].to_numpy()] < 0.008
    return master


# A pupil's postcode is typed the same way in every drop, whatever their address: the
# shared defect is applied once to this probe postcode and what it did is replayed.
POSTCODE_PROBE = "ZX1 1AA"


def _styled_postcodes(postcodes: np.ndarray, styled_probe: np.ndarray) -> np.ndarray:
    out = postcodes.copy()
    hit = np.flatnonzero(styled_probe != POSTCODE_PROBE)
    real, style = pd.Series(postcodes[hit], dtype=object), styled_probe[hit]
    out[hit] = np.select(
        [style == POSTCODE_PROBE.lower(), style == POSTCODE_PROBE.replace(" ", ""),
         style == POSTCODE_PROBE.replace(" ", "  ")],
        [real.str.lower(), real.str.replace(" ", "", regex=False), real.str.replace(" ", "  ", regex=False)],
        style)  # anything else is a placeholder standing in for the postcode itself
    return out


def _pupils_view(world: World, master: dict, book: AddressBook, child: np.ndarray, when) -> dict:
    """pupils.csv as of ``when`` for the children ONE knows that day (``child``, in order)."""
    m = {key: value[child] for key, value in master.items()}
    address = book.at(m["hrow"], when - m["address_lag"])
    postcode = _styled_postcodes(book.postcode[address], m["postcode_style"])
    new_name = m["surname_known_from"] <= when  # NaT compares False
    flat = book.flat[address]
    is_flat = flat != ""
    age = (when - m["birth"]) / np.timedelta64(365, "D")
    now = _needs_at(world, m["hrow"], np.full(len(m["hrow"]), when))
    caring = now["mental_health"] | now["substance_misuse"]
    not_yet = (m["surname_changed_on"] <= when) & ~new_name & m["prefers_new"]
    return {
        "ONEPupilID": m["one_id"],
        "UPN": m["upn"],
        "FormerUPN": m["former_upn"],
        "ULN": np.where(age >= 14, m["uln"], None),  # the Learner Record Service issues it at 14
        "Surname": np.where(new_name, m["surname_after"], m["surname"]),
        "Forename": m["forename"],
        "MiddleNames": m["middle_names"],
        "PreferredSurname": np.where(not_yet, m["surname_after"], m["preferred_other"]),
        "FormerSurname": np.where(new_name, m["surname"], None),
        "DOB": _iso(m["birth"]),
        "Sex": m["sex"],
        "Ethnicity": m["ethnicity"],
        "FirstLanguage": m["first_language"],
        "AddressLine1": np.where(is_flat, flat, book.street_line[address]),
        "AddressLine2": np.where(is_flat, book.street_line[address], None),
        "Town": book.town[address],
        "Postcode": postcode,
        "UPRN": np.where(m["has_uprn"], book.uprn[address], None),
        "YoungCarer": (age >= 8) & (m["young_carer_u"] < np.where(caring, 0.12, 0.004)),
        "ServiceChild": m["service_child"],
    }


def _table(columns: dict) -> pd.DataFrame:
    """A file's columns as a frame, text kept as plain Python objects so that nothing is
    converted twice on its way to the CSV. Rows arrive in file order: every record table
    is kept sorted by its file's key, and selecting rows keeps that order."""
    return pd.DataFrame({name: pd.Series(values, dtype=object if values.dtype == object else None)
                         for name, values in ((name, np.asarray(v)) for name, v in columns.items())})


# ======================================================================== the history
class History:
    """Every record ONE will ever hold for the city, simulated once; ``*_file`` methods give
    each file as it stood on a day."""

    def __init__(self, world: World):
        config = world.config
        self.world = world
        self.book = AddressBook(world)
        self.schools = Schools(world.schools)
        self.kids = _school_children(world)
        needs = _needs_by_month(world, self.kids)
        self.sen = _sen(world, self.kids, needs)
        ehe = _ehe_episodes(world, self.kids, needs, self.sen)
        cme = _cme_episodes(world, self.kids, needs, ehe)
        plan = {"ehe": ehe, "cme": cme, "moves": _school_moves(world, self.kids, self.book),
                "special_from": _special_from(world, self.kids, self.sen)}
        self.enrol, permanent = _careers(world, self.kids, needs, plan, self.book, self.schools)
        self.terms = term_calendar(config.start, config.end)
        recent = self.enrol[~(self.enrol["leave"] < pd.Timestamp(config.start))].reset_index(drop=True)
        rows = _term_rows(world, self.kids, recent, self.terms)
        self.attendance = _attendance(world, self.kids, rows)
        self.exclusions = _exclusions(world, self.kids, rows, permanent)
        self.fsm = _fsm_periods(world, self.kids, self.enrol, self.book)
        self.master = _pupil_master(world, self.kids)
        self.by_id = np.argsort(self.kids["one_id"].to_numpy(), kind="stable")
        # EHE and CME ids follow the order the records were made.
        self.ehe = ehe.sort_values(["start", "child"], kind="stable").reset_index(drop=True)
        self.ehe["ehe_id"] = 30_001 + np.arange(len(ehe))
        self.cme = cme.sort_values(["identified", "child"], kind="stable").reset_index(drop=True)
        self.cme["cme_id"] = 60_001 + np.arange(len(cme))

    def known(self, when: np.datetime64) -> np.ndarray:
        """Children ONE knows on ``when``: on a roll (or admitted), home educated or missing."""
        known = np.zeros(len(self.kids), bool)
        e = self.enrol
        leave = _days(e["leave"].to_numpy())
        on_roll = (_days(e["created"].to_numpy()) <= when) & (np.isnat(leave) | (leave >= when))
        known[e["child"].to_numpy()[on_roll]] = True
        for register, began, ended in ((self.ehe, "start", "end"), (self.cme, "identified", "resolved")):
            active = (_days(register[began].to_numpy()) <= when) & (_days(register[ended].to_numpy()) > when)
            known[register["child"].to_numpy()[active]] = True
        death = self.kids["death"].to_numpy()
        return known & ~(death <= when)

    # ---------------------------------------------------------------- one file each
    def _ids(self, child: np.ndarray) -> dict[str, np.ndarray]:
        return {"ONEPupilID": self.master["one_id"][child], "UPN": self.master["upn"][child]}

    @staticmethod
    def _held(records: pd.DataFrame, known, when, created: str, reveal: dict[str, str]) -> pd.DataFrame:
        """The records of known children that ONE held on ``when``, each end date blank
        until it has happened."""
        records = records[known[records["child"].to_numpy()]]
        held = as_of(records.assign(_created=records[created]), when)
        for column, known_at in reveal.items():
            hidden = ~(_days(held[known_at].to_numpy()) <= when)
            held[column] = np.where(hidden, NAT, _days(held[column].to_numpy()))
        return held

    def _known_by_id(self, known) -> np.ndarray:
        """The known children, in ONEPupilID order."""
        return self.by_id[known[self.by_id]]

    def pupils_file(self, when, known) -> pd.DataFrame:
        return _table(_pupils_view(self.world, self.master, self.book, self._known_by_id(known), when))

    def enrolments_file(self, when, known) -> pd.DataFrame:
        held = self._held(self.enrol.assign(leaving=self.enrol["leave"]), known, when, "created",
                          {"leaving": "leave"})
        child, entry = held["child"].to_numpy(), _days(held["entry"].to_numpy())
        leaving = _days(held["leaving"].to_numpy())
        subsidiary = held["subsidiary"].to_numpy()
        current = (entry <= when) & np.isnat(leaving)
        # A main enrolment is M while the pupil also holds a current subsidiary one.
        dual = np.isin(child, child[current & subsidiary])
        status = np.where(subsidiary, "S", np.where(current & dual, "M", "C")).astype(object)
        nc_day = np.where(np.isnat(leaving), np.maximum(entry, when), leaving)
        ids = self._ids(child)
        return _table({**ids, "URN": self.schools.urn[held["school"].to_numpy()], "EntryDate": _iso(entry),
                       "LeavingDate": _iso(leaving), "EnrolStatus": status,
                       "NCyearActual": _academic_year(nc_day) - self.kids["cohort"].to_numpy()[child] - 4})

    def fsm_file(self, when, known) -> pd.DataFrame:
        held = self._held(self.fsm.assign(known_end=self.fsm["end"]), known, when, "start", {"end": "known_end"})
        ids = self._ids(held["child"].to_numpy())
        start = _days(held["start"].to_numpy())
        return _table({**ids, "FSMStartDate": _iso(start), "FSMEndDate": _iso(held["end"])})

    def sen_file(self, when, known) -> pd.DataFrame:
        child = self._known_by_id(known)
        s = self.sen.iloc[child]
        e = _days(s["e_from"].to_numpy()) <= when
        k = ~e & (_days(s["k_from"].to_numpy()) <= when)
        ids = self._ids(child)

        def pick(e_col, k_col):
            return np.where(e, s[e_col].to_numpy(dtype=object), np.where(k, s[k_col].to_numpy(dtype=object), None))

        return _table({**ids, "SENProvision": np.select([e, k], ["E", "K"], "N").astype(object),
                       "SENType1": pick("e_type", "k_type"), "SENType2": pick("e_type2", "k_type2")})

    def attendance_file(self, when, known) -> pd.DataFrame:
        a = self.attendance
        finished = self.terms["last"].to_numpy()[a["term"].to_numpy()] < when  # a term in arrears
        a = a[finished & known[a["child"].to_numpy()]]
        ids = self._ids(a["child"].to_numpy())
        term = a["term"].to_numpy()
        return _table({**ids, "URN": self.schools.urn[a["school"].to_numpy()],
                       "Term": self.terms["term"].to_numpy()[term], "SessionsPossible": a["possible"].to_numpy(),
                       "SessionsAuthorised": a["authorised"].to_numpy(),
                       "SessionsUnauthorised": a["unauthorised"].to_numpy()})

    def exclusions_file(self, when, known) -> pd.DataFrame:
        held = self._held(self.exclusions, known, when, "created", {})
        sessions = held["sessions"].to_numpy()
        return _table({"ExclusionID": held["exclusion_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
                       "URN": self.schools.urn[held["school"].to_numpy()],
                       "Category": EXCLUSION_CATEGORIES[held["category"].to_numpy()],
                       "StartDate": _iso(held["date"]),
                       "Sessions": np.where(sessions >= 0, sessions.astype(object), None),  # none for PERM
                       "Reason1": held["reason1"].to_numpy(dtype=object),
                       "Reason2": held["reason2"].to_numpy(dtype=object),
                       "Reason3": held["reason3"].to_numpy(dtype=object)})

    def ehe_file(self, when, known) -> pd.DataFrame:
        held = self._held(self.ehe.assign(ended=self.ehe["end"]), known, when, "start", {"end": "ended"})
        return _table({"EHEID": held["ehe_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
                       "StartDate": _iso(held["start"]), "EndDate": _iso(held["end"]),
                       "Reason": held["reason"].to_numpy(dtype=object)})

    def cme_file(self, when, known) -> pd.DataFrame:
        held = self._held(self.cme.assign(found=self.cme["resolved"]), known, when, "identified",
                          {"resolved": "found"})
        return _table({"CMEID": held["cme_id"].to_numpy(), **self._ids(held["child"].to_numpy()),
                       "IdentifiedDate": _iso(held["identified"]), "Reason": held["reason"].to_numpy(dtype=object),
                       "ResolvedDate": _iso(held["resolved"])})


# ======================================================================== writer
def write_education(world: World, landing: Path) -> pd.DataFrame:
    """Write every education drop; return the truth: one row per ONEPupilID written."""
    config = world.config
    history = History(world)
    census = set(census_dates(config.start, config.end))
    files = {
        "pupils.csv": history.pupils_file, "enrolments.csv": history.enrolments_file,
        "fsm.csv": history.fsm_file, "sen.csv": history.sen_file, "attendance.csv": history.attendance_file,
        "exclusions.csv": history.exclusions_file, "ehe.csv": history.ehe_file, "cme.csv": history.cme_file,
    }
    written = [np.zeros(0, dtype=np.int64)]
    for i, extract in enumerate(drop_dates("education", config)):
        when = np.datetime64(extract, "D")
        known = history.known(when)
        drop = Drop(Path(landing), "education", extract, "snapshot")
        # The go-live extract and each census carry everything; other month ends the register.
        for name in COLUMNS if i == 0 or extract in census else MONTHLY_FILES:
            frame = files[name](when, known)
            drop.csv(name, frame[COLUMNS[name]])
            written.append(frame["ONEPupilID"].to_numpy(np.int64))
        drop.finish()
    ids = np.unique(np.concatenate(written))
    person_key = world.persons["person_key"].to_numpy(dtype=object)[history.kids["row"].to_numpy()]
    by_id = pd.Series(person_key, index=history.kids["one_id"].to_numpy())
    return pd.DataFrame({"system": "education", "table": "pupils",
                         "record_id": pd.Series(ids.astype(str), dtype=object),
                         "person_key": pd.Series(by_id.loc[ids].to_numpy(), dtype=object)})
