"""The people of the city and where they live: the ground truth every system sees part of.

Households of mothers, fathers (some living elsewhere after separation) and children
0-19, half-siblings, births with twins, rare deaths, and moves between addresses. All of
it is drawn with numpy over whole arrays; the only Python loops run over a handful of
name groups or districts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..identifiers import SYNTHETIC_NHS_RANGE, nhs_check_digits, uln_check_digits, upn_check_letter, upn_check_letters
from . import names as N
from .config import DISTRICTS, CityConfig
from .geography import DISTRICT_SHARE, Geography, build_geography

DAY = np.timedelta64(1, "D")
YEAR_DAYS = 365.25
CHILDREN_PER_HOUSEHOLD = ([1, 2, 3, 4, 5], [0.36, 0.37, 0.18, 0.07, 0.02])


@dataclass
class Population:
    persons: pd.DataFrame
    households: pd.DataFrame  # household_key, kind, group, vulnerability, district
    residences: pd.DataFrame  # household_key, address_id, valid_from, valid_to (NaT open)
    geography: Geography


def d64(value) -> np.datetime64:
    return np.datetime64(value, "D")


def build_population(config: CityConfig) -> Population:
    rng = config.rng("population")
    start, end = d64(config.start), d64(config.end)

    fam = _family_households(config, rng, start)
    persons, households = _people(config, rng, fam, start)
    persons = pd.concat([persons, _births(config, rng, persons, households, start, end)], ignore_index=True)
    persons = _deaths(rng, persons, start, end)
    persons = _surname_changes(config, rng, persons, start, end)
    persons = _identifiers(config, rng, persons, end)
    persons = _twin_names(rng, persons)
    persons["ethnicity"] = _ethnicity(rng, persons)

    geography = build_geography(config, len(households))
    households, residences = _homes(config, rng, households, geography, start, end)
    persons["person_key"] = [f"P{i:07d}" for i in range(len(persons))]
    key_of = pd.Series(persons["person_key"].to_numpy(), index=persons["pid"].to_numpy())
    for col in ("mother", "father", "twin_of"):
        persons[f"{col}_key"] = persons[f"{col}_pid"].map(key_of).fillna("")
    house_key = pd.Series(households["household_key"].to_numpy(), index=households["house"].to_numpy())
    persons["household_key"] = persons["house"].map(house_key)
    persons = persons.drop(columns=["pid", "mother_pid", "father_pid", "twin_of_pid"])
    return Population(persons, households, residences.drop(columns=["house"]), geography)


# ------------------------------------------------------------------ households
def _family_households(config: CityConfig, rng: np.random.Generator, start: np.datetime64) -> pd.DataFrame:
    """One row per child at the start, with the household they live in."""
    target = config.children
    n_house = int(target / 1.5) + 50
    sizes = rng.choice(CHILDREN_PER_HOUSEHOLD[0], size=n_house, p=CHILDREN_PER_HOUSEHOLD[1])
    house = np.repeat(np.arange(n_house), sizes)
    order = np.concatenate([np.arange(s) for s in sizes])  # 0 = youngest
    # Youngest child's age, then older siblings spaced 1-5 years apart (0 for twins).
    youngest_age = rng.uniform(0, 20, n_house)
    gap = 1.0 + rng.gamma(2.0, 0.8, len(house))
    # Only about half the children have an older sibling slot to pair with.
    twin = rng.random(len(house)) < 2 * config.calibration.twin_birth_share
    gap = np.where((order > 0) & twin, 0.0, gap)
    gap = np.where(order == 0, 0.0, gap)
    age = youngest_age[house] + _cumsum_by_group(gap, house)
    keep = age < 20
    frame = pd.DataFrame({"house": house[keep], "order": order[keep], "age": age[keep]})
    frame["is_twin_with_next_younger"] = (twin & (order > 0))[keep]
    # Take whole households until the target is met, trimming the last one.
    frame = frame.iloc[:target].copy()
    frame["birth_date"] = start - np.round(frame["age"].to_numpy() * YEAR_DAYS).astype("int64") * DAY
    return frame


def _cumsum_by_group(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    first = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    offset = np.repeat(total[first] - values[first], np.diff(np.r_[first, len(values)]))
    return total - offset


def _people(config, rng, fam: pd.DataFrame, start):
    """Mothers, fathers (resident or separated) and the children, with names."""
    houses = np.unique(fam["house"].to_numpy())
    n_h = len(houses)
    hidx = np.searchsorted(houses, fam["house"].to_numpy())
    eldest_birth = fam.groupby("house")["birth_date"].min().to_numpy()
    n_kids = np.bincount(hidx, minlength=n_h)

    group_names = list(N.GROUPS)
    group = rng.choice(group_names, size=n_h, p=[N.GROUPS[g][0] for g in group_names])
    mother_age_at_first = np.clip(rng.normal(27.5, 5.5, n_h), 16, 44)
    mother_birth = eldest_birth - np.round(mother_age_at_first * YEAR_DAYS).astype("int64") * DAY
    father_resident = rng.random(n_h) < 0.62
    father_birth = mother_birth - np.round(rng.normal(2.5, 3.0, n_h) * YEAR_DAYS).astype("int64") * DAY
    half_sibs = (n_kids >= 2) & (rng.random(n_h) < 0.18)
    # Fathers not in the household live elsewhere in the city 70% of the time.
    separated_known = rng.random(n_h) < 0.70
    prev_father_known = rng.random(n_h) < 0.70

    vulnerability = rng.normal(0, 1, n_h)
    households = pd.DataFrame(
        {"house": houses, "kind": "family", "group": group, "vulnerability": vulnerability}
    )

    people = []
    pid = 0
    mother_pid = np.arange(n_h) + pid
    pid += n_h
    father_pid = np.arange(n_h) + pid  # current father of the youngest children
    pid += n_h
    prev_father_pid = np.arange(n_h) + pid
    pid += n_h

    fem = _names_for(rng, group, "F")
    msur = _names_for(rng, group, "S")
    fsur = _names_for(rng, group, "S")
    psur = _names_for(rng, group, "S")
    married = father_resident & (rng.random(n_h) < 0.55)
    mother_surname = np.where(married, fsur, msur)
    people.append(pd.DataFrame({
        "pid": mother_pid, "house": houses, "role": "adult", "sex": "F", "birth_date": mother_birth,
        "forename": fem, "surname": mother_surname, "group": group, "is_mother": True,
    }))
    # Current father: resident, separated (own household) or unknown (not in the city).
    father_exists = father_resident | separated_known
    people.append(pd.DataFrame({
        "pid": father_pid[father_exists], "house": np.where(father_resident, houses, -1 - houses)[father_exists],
        "role": "adult", "sex": "M", "birth_date": father_birth[father_exists],
        "forename": _names_for(rng, group, "M")[father_exists], "surname": fsur[father_exists],
        "group": group[father_exists], "is_mother": False,
    }))
    prev_exists = half_sibs & prev_father_known
    people.append(pd.DataFrame({
        "pid": prev_father_pid[prev_exists], "house": (-1 - n_h - houses)[prev_exists], "role": "adult",
        "sex": "M", "birth_date": (father_birth - 400 * DAY)[prev_exists],
        "forename": _names_for(rng, group, "M")[prev_exists], "surname": psur[prev_exists],
        "group": group[prev_exists], "is_mother": False,
    }))

    # Children: the older half of a half-sibling household belong to the previous father.
    n = len(fam)
    order = fam["order"].to_numpy()
    older_half = half_sibs[hidx] & (order >= np.ceil(n_kids[hidx] / 2))
    father_key = np.where(older_half, np.where(prev_exists[hidx], prev_father_pid[hidx], -1),
                          np.where(father_exists[hidx], father_pid[hidx], -1))
    father_surname = np.where(older_half, psur[hidx], fsur[hidx])
    takes_father = (father_key >= 0) & (rng.random(n) < 0.75)
    child_surname = np.where(takes_father, father_surname, mother_surname[hidx])
    double = rng.random(n) < 0.05
    child_surname = np.where(double & takes_father, pd.Series(msur[hidx]).str.cat(pd.Series(father_surname), sep="-").to_numpy(), child_surname)
    sex = np.where(rng.random(n) < 0.512, "M", "F")
    children = pd.DataFrame({
        "pid": pid + np.arange(n), "house": fam["house"].to_numpy(), "role": "child", "sex": sex,
        "birth_date": fam["birth_date"].to_numpy(), "surname": child_surname, "group": group[hidx],
        "is_mother": False, "mother_pid": mother_pid[hidx], "father_pid": father_key,
        "twin_next": fam["is_twin_with_next_younger"].to_numpy(),
    })
    children["forename"] = _forenames(rng, group[hidx], sex)
    pid += n
    persons = pd.concat(people + [children], ignore_index=True)
    # A twin shares the birth date of the next younger sibling, recorded both ways.
    persons["twin_of_pid"] = -1
    tw = children.index[children["twin_next"].to_numpy()]
    younger = tw - 1  # rows are ordered youngest first within a household
    valid = children["house"].to_numpy()[younger] == children["house"].to_numpy()[tw]
    tw, younger = tw[valid], younger[valid]
    offset = len(persons) - n
    persons.loc[offset + tw, "twin_of_pid"] = children["pid"].to_numpy()[younger]
    persons.loc[offset + younger, "twin_of_pid"] = children["pid"].to_numpy()[tw]
    persons.loc[offset + tw, "birth_date"] = children["birth_date"].to_numpy()[younger]
    persons.loc[offset + tw, "sex"] = np.where(rng.random(len(tw)) < 0.6, children["sex"].to_numpy()[younger], persons.loc[offset + tw, "sex"])
    persons["is_twin"] = persons["twin_of_pid"] >= 0
    persons = persons.drop(columns=["twin_next"])

    # Households: separated fathers each get one of their own.
    sep = persons[persons["house"] < 0]
    extra = pd.DataFrame({"house": sep["house"].to_numpy(), "kind": "single_adult",
                          "group": sep["group"].to_numpy(), "vulnerability": rng.normal(0.3, 1, len(sep))})
    households = pd.concat([households, extra], ignore_index=True)
    return persons, households


def _names_for(rng, group: np.ndarray, kind: str) -> np.ndarray:
    out = np.empty(len(group), dtype=object)
    for g in N.GROUP_NAMES:
        mask = group == g
        pool = N.GROUP_NAMES[g][kind]
        out[mask] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), mask.sum())]
    # A few accented names, most of which survive Windows-1252 and some of which do not.
    special = {"F": (N.ACCENTED_FEMALE_CP1252, N.NON_CP1252_FEMALE),
               "M": (N.ACCENTED_MALE_CP1252, N.NON_CP1252_MALE),
               "S": (N.ACCENTED_SURNAMES_CP1252, N.NON_CP1252_SURNAMES)}[kind]
    draw = rng.random(len(group))
    for pool, lo, hi in ((special[0], 0.0, 0.012), (special[1], 0.012, 0.017)):
        mask = (draw >= lo) & (draw < hi)
        out[mask] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), mask.sum())]
    return out


def _forenames(rng, group: np.ndarray, sex: np.ndarray) -> np.ndarray:
    return np.where(sex == "F", _names_for(rng, group, "F"), _names_for(rng, group, "M"))


def _ethnicity(rng, persons: pd.DataFrame) -> np.ndarray:
    """One CBDS ethnicity code per person, drawn once so that every system that
    records it starts from the same truth (and then records it in its own code list)."""
    out = np.empty(len(persons), dtype=object)
    group = persons["group"].to_numpy()
    for g, (_, codes, _) in N.GROUPS.items():
        mask = group == g
        weights = np.asarray(list(codes.values()))
        out[mask] = rng.choice(list(codes), size=mask.sum(), p=weights / weights.sum())
    return out


# ------------------------------------------------------------------ life events
def _births(config, rng, persons: pd.DataFrame, households: pd.DataFrame, start, end) -> pd.DataFrame:
    mothers = persons[persons["is_mother"]]
    years = (end - start) / DAY / YEAR_DAYS
    age_mid = ((start - mothers["birth_date"].to_numpy()) / DAY / YEAR_DAYS) + years / 2
    fertile = (age_mid > 17) & (age_mid < 43)
    rate = config.calibration.births_per_1000_women_per_year / 1000 * years * 1.6  # mothers, not all women
    n_births = rng.poisson(np.where(fertile, rate, 0.0))
    n_births = np.minimum(n_births, 2)
    m_idx = np.repeat(np.arange(len(mothers)), n_births)
    span = int((end - start) / DAY)
    birth = start + rng.integers(0, span, len(m_idx)) * DAY
    m = mothers.iloc[m_idx]
    # The newest baby takes the surname of the youngest sibling where there is one.
    kids = persons[persons["role"] == "child"].sort_values("birth_date")
    youngest = kids.groupby("mother_pid").last()
    sib = youngest.reindex(m["pid"].to_numpy())
    surname = np.where(sib["surname"].notna(), sib["surname"].to_numpy(), m["surname"].to_numpy())
    father = np.where(sib["father_pid"].notna(), sib["father_pid"].fillna(-1).to_numpy(), -1).astype(np.int64)
    n = len(m_idx)
    twin = rng.random(n) < config.calibration.twin_birth_share
    base = persons["pid"].max() + 1
    babies = pd.DataFrame({
        "pid": base + np.arange(n), "house": m["house"].to_numpy(), "role": "child",
        "sex": np.where(rng.random(n) < 0.512, "M", "F"), "birth_date": birth, "surname": surname,
        "group": m["group"].to_numpy(), "is_mother": False, "mother_pid": m["pid"].to_numpy(),
        "father_pid": father, "twin_of_pid": -1,
    })
    twins = babies[twin].copy()
    twins["pid"] = base + n + np.arange(len(twins))
    twins["sex"] = np.where(rng.random(len(twins)) < 0.6, twins["sex"], np.where(twins["sex"] == "M", "F", "M"))
    twins["twin_of_pid"] = babies.loc[twin, "pid"].to_numpy()
    babies.loc[twin, "twin_of_pid"] = twins["pid"].to_numpy()
    babies = pd.concat([babies, twins], ignore_index=True)
    babies["forename"] = _forenames(rng, babies["group"].to_numpy(), babies["sex"].to_numpy())
    babies["is_twin"] = babies["twin_of_pid"] >= 0
    return babies


def _deaths(rng, persons: pd.DataFrame, start, end) -> pd.DataFrame:
    span = int((end - start) / DAY)
    infant = (start - persons["birth_date"].to_numpy()) / DAY < 365
    p = np.where(persons["role"] == "adult", 0.004, np.where(infant, 0.003, 0.0005))
    dies = rng.random(len(persons)) < p
    earliest = np.maximum(persons["birth_date"].to_numpy(), start)
    offset = rng.integers(1, max(span, 2), len(persons)) * DAY
    death = np.where(dies, earliest + offset, np.datetime64("NaT"))
    death = np.where(death > end, np.datetime64("NaT"), death)
    persons["death_date"] = death.astype("datetime64[D]")
    return persons


def _surname_changes(config, rng, persons, start, end) -> pd.DataFrame:
    """Some children take a new surname during the period (a parent's new partner)."""
    span = int((end - start) / DAY)
    child = persons["role"] == "child"
    change = child & (rng.random(len(persons)) < config.defects.surname_change)
    new = _names_for(rng, persons["group"].to_numpy(), "S")
    persons["surname_after"] = np.where(change, new, None)
    persons["surname_changed_on"] = np.where(
        change, start + rng.integers(30, span, len(persons)) * DAY, np.datetime64("NaT")
    ).astype("datetime64[D]")
    middle = _forenames(rng, persons["group"].to_numpy(), persons["sex"].to_numpy())
    middle = np.where(middle == persons["forename"].to_numpy(), "", middle)
    persons["middle_names"] = np.where(rng.random(len(persons)) < 0.55, middle, "")
    return persons


def _identifiers(config, rng, persons: pd.DataFrame, end) -> pd.DataFrame:
    """NHS numbers in the 999 range, UPNs issued at school entry, ULNs from 14."""
    n = len(persons)
    # Children first: the 999 range holds ~909,000 valid numbers.
    lo, hi = SYNTHETIC_NHS_RANGE[0] // 10, SYNTHETIC_NHS_RANGE[1] // 10
    bases = rng.permutation(np.arange(lo, hi + 1))
    checks = nhs_check_digits(bases)
    valid = bases[checks >= 0] * 10 + checks[checks >= 0]
    priority = np.argsort(np.where(persons["role"] == "child", 0, 1), kind="stable")
    nhs = np.full(n, None, dtype=object)
    take = min(n, len(valid))
    nhs[priority[:take]] = valid[:take].astype(str)
    persons["nhs_number"] = nhs

    # UPN: school entry the September after the 4th birthday, if that is before the end.
    bd = pd.to_datetime(persons["birth_date"])
    cohort = bd.dt.year + (bd.dt.month >= 9).astype(int)
    entry_year = cohort + 4
    in_school = (persons["role"] == "child") & (pd.Timestamp(end).year - entry_year >= 0) & (
        pd.Timestamp(end) >= pd.to_datetime(entry_year.astype(str) + "-09-01")
    )
    estab = rng.integers(2001, 2100, n)
    yy = (entry_year % 100).to_numpy()
    key = estab * 100 + yy
    serial = pd.Series(np.where(in_school, key, -1)).groupby(np.where(in_school, key, -1)).cumcount().to_numpy()
    body = pd.Series([f"{config.la_code}{e:04d}{y:02d}{s % 1000:03d}" for e, y, s in zip(estab, yy, serial)])
    upn = pd.Series(upn_check_letters(body.to_numpy())).str.cat(body)
    persons["upn"] = np.where(in_school, upn, None)
    temp = in_school & (rng.random(n) < 0.01)
    temp_body = body[temp].str.slice(0, 11) + "A"  # a temporary UPN ends in a letter
    former = np.full(n, None, dtype=object)
    former[temp.to_numpy()] = [upn_check_letter(b) + b for b in temp_body]  # ~1% of children
    persons["former_upn"] = former
    # ULN for anyone 14 or over before the end
    age_end = (pd.Timestamp(end) - bd).dt.days / YEAR_DAYS
    has_uln = (persons["role"] == "child") & (age_end >= 14)
    # A stride coprime with the range visits every base once: unique without a shuffle.
    uln_base = 100_000_000 + (int(rng.integers(0, 10**8)) + np.arange(n, dtype=np.int64) * 7919) % 899_999_999
    uln_check = uln_check_digits(uln_base)
    persons["uln"] = np.where(has_uln & (uln_check >= 0), (uln_base * 10 + uln_check).astype(str), None)
    return persons


def _twin_names(rng, persons: pd.DataFrame) -> pd.DataFrame:
    """Parents of twins often choose look-alike names."""
    row_of = pd.Series(persons.index, index=persons["pid"])
    first = persons.index[(persons["twin_of_pid"] >= 0) & (persons["pid"] < persons["twin_of_pid"])]
    chosen = first[rng.random(len(first)) < 0.35]
    pairs = np.asarray(N.TWIN_NAME_PAIRS, dtype=object)[rng.integers(0, len(N.TWIN_NAME_PAIRS), len(chosen))]
    persons.loc[chosen, "forename"] = pairs[:, 0]
    persons.loc[row_of.loc[persons.loc[chosen, "twin_of_pid"]].to_numpy(), "forename"] = pairs[:, 1]
    return persons


# ------------------------------------------------------------------ homes
def _homes(config, rng, households: pd.DataFrame, geo: Geography, start, end):
    """Addresses at the start and moves during the period, one fresh address per move."""
    n_h = len(households)
    span = int((end - start) / DAY)
    years = span / YEAR_DAYS
    pools = {d: geo.addresses.index[geo.addresses["district"] == d].to_numpy() for d in DISTRICTS}
    next_free = {d: 0 for d in DISTRICTS}

    def take(districts: np.ndarray) -> np.ndarray:
        out = np.empty(len(districts), dtype=np.int64)
        for d in DISTRICTS:
            mask = districts == d
            k = int(mask.sum())
            pool = pools[d]
            if next_free[d] + k > len(pool):  # a very mobile city: wrap round the stock
                next_free[d] = 0
            out[mask] = pool[next_free[d]: next_free[d] + k]
            next_free[d] += k
        return out

    share = np.asarray([DISTRICT_SHARE[d] for d in DISTRICTS])
    # More vulnerable households live in the more deprived districts.
    tilt = np.outer(households["vulnerability"].to_numpy(), [0.0, 0.25, -0.35, -0.2, 0.35])
    weights = share * np.exp(tilt)
    weights /= weights.sum(axis=1, keepdims=True)
    cum = weights.cumsum(axis=1)
    district = np.asarray(DISTRICTS)[(rng.random(n_h)[:, None] > cum).sum(axis=1)]
    households["district"] = district
    first_addr = take(district)
    moved_in = start - rng.integers(30, 10 * 365, n_h) * DAY

    rate = config.calibration.moves_per_household_per_year * years * np.exp(0.3 * households["vulnerability"].to_numpy())
    n_moves = np.minimum(rng.poisson(rate), 4)
    h_idx = np.repeat(np.arange(n_h), n_moves)
    move_day = start + rng.integers(1, span, len(h_idx)) * DAY
    order = np.lexsort((move_day, h_idx))
    h_idx, move_day = h_idx[order], move_day[order]
    stay = rng.random(len(h_idx)) < 0.75
    dest_district = np.where(stay, district[h_idx], rng.choice(np.asarray(DISTRICTS), len(h_idx), p=share))
    dest = take(dest_district)

    res = pd.DataFrame({
        "house": np.r_[households["house"].to_numpy(), households["house"].to_numpy()[h_idx]],
        "address_id": np.r_[geo.addresses.loc[first_addr, "address_id"].to_numpy(),
                            geo.addresses.loc[dest, "address_id"].to_numpy()],
        "valid_from": np.r_[moved_in, move_day].astype("datetime64[D]"),
    }).sort_values(["house", "valid_from"], kind="stable").reset_index(drop=True)
    nxt = res.groupby("house")["valid_from"].shift(-1)
    res["valid_to"] = nxt  # the day the next period starts; NaT while still living there
    households["household_key"] = [f"H{i:07d}" for i in range(n_h)]
    key = dict(zip(households["house"], households["household_key"]))
    res["household_key"] = res["house"].map(key)
    return households, res[["household_key", "address_id", "valid_from", "valid_to", "house"]]
