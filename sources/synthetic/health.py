"""Health: 0-19 public health nursing and CAMHS, as a FHIR R4 bulk export (CONTRACT.md, "health").

Every month the health trust exports its full current state as NDJSON: one ``Patient``
per child 0-19, ``RelatedPerson`` links to mothers (and some fathers) recorded by health
visiting, ``Encounter`` contacts (health-visiting reviews, school measurement,
safeguarding) and CAMHS referrals as ``ServiceRequest``.

Everything that will ever be true of a record is drawn once, per record, from the world
(so a record is stable from drop to drop); each drop then shows the records that existed
by its extract date, with statuses and dates revealed only once they happened. Events
are drawn from the households' latent needs, so that missed appointments and CAMHS
referrals carry real risk signal.

Design decisions worth knowing:

- A child's Patient record appears at birth and leaves the snapshot on the 20th birthday
  (discharged from the 0-19 service). A child who dies keeps the record, with
  ``deceasedDateTime``.
- RelatedPerson links are shown while the child is under five (the health-visiting
  caseload); they leave the snapshot at the fifth birthday, when the school nursing team
  takes over.
- An antenatal contact happens before the child's Patient record exists; it is moved
  onto the child's record at birth, so it first appears in the drop after the birth.
- Encounters, referrals and links of a child who has left the snapshot leave with the
  child, so every reference in a drop resolves within that drop.
- Each resource's JSON shape is written out once as a template (end of this module)
  and built by DuckDB column-wise; optional elements are omitted when absent, never
  written as null, and every file is sorted by id so that a seed gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import defects
from .config import DISTRICTS, CityConfig
from .output import Drop, as_of, drop_dates
from .world import World

SYSTEM = "health"
DAY = np.timedelta64(1, "D")

# ------------------------------------------------------------------ FHIR vocabulary
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
VERIFICATION_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
ETHNIC_URL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
ETHNIC_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ATTENDANCE_URL = "urn:earlyhelp:attendance-status"
REJECTION_URL = "urn:earlyhelp:rejection-date"
DISCHARGE_URL = "urn:earlyhelp:discharge-date"
REVIEW_TYPE_SYSTEM = "urn:earlyhelp:review-type"
CAMHS_REASON_SYSTEM = "urn:earlyhelp:camhs-reason"

# ------------------------------------------------------------------ patients
SERVICE_AGE_LIMIT = 20  # the 0-19 service: a record leaves on the 20th birthday
HEALTH_VISITING_AGE_LIMIT = 5
BABY_TRACE_POSTPONED_DAYS = 42  # verification status 08 while a baby is under six weeks
# Spine-traced numbers are mistyped far less often than numbers typed into other systems.
NHS_MISTYPED_SHARE_OF_GENERAL = 0.2
NAME_TYPO_SHARE_OF_GENERAL = 1 / 6
USUAL_NAME_RATE = 0.05  # of children whose forename has a common short form
GENDER_UNKNOWN_RATE = 0.001
NOT_GP_REGISTERED_RATE = 0.005
UNTRACED_STATUS = {"02": 0.012, "03": 0.008}  # present not traced / trace required
ETHNICITY_NOT_STATED_RATE = 0.08  # recorded as Z although the family has an ethnicity
# The person's CBDS code (drawn once in the population) in the NHS single-letter list.
CBDS_TO_NHS_ETHNIC = {
    "WBRI": "A", "WIRI": "B", "WIRT": "C", "WOTH": "C", "WROM": "C", "MWBC": "D", "MWBA": "E",
    "MWAS": "F", "MOTH": "G", "AIND": "H", "APKN": "J", "ABAN": "K", "AOTH": "L", "BCRB": "M",
    "BAFR": "N", "BOTH": "P", "CHNE": "R", "OOTH": "S", "REFU": "Z", "NOBT": "Z",
}
CHILDREN_PER_PRACTICE = 10_000

# ------------------------------------------------------------------ related persons
LINKED_SHARE_BORN_IN_PERIOD = 0.97
LINKED_SHARE_UNDER_FIVE_AT_START = 0.90
FATHER_LINK_RATE = 0.20  # of linked children whose father is known in the city
MOTHER_AS_GUARDIAN_RATE = 0.03  # carer recorded as GRD rather than MTH
ADULT_NHS_NUMBER_RATE = 0.60
ADULT_BIRTH_DATE_RATE = 0.95
TELECOM_RATE = 0.85
DRAMA_PHONE_PREFIX = "07700 900"  # Ofcom's range reserved for drama: never a real phone

# ------------------------------------------------------------------ encounters
# Health-visiting reviews: days from birth (window), share of children offered one.
HV_REVIEWS = {
    "ANT": ((-98, -77), 0.75),
    "NBV": ((10, 14), 0.97),
    "68W": ((42, 56), 0.92),
    "12M": ((274, 456), 0.85),
    "2YR": ((730, 913), 0.78),
}
NCMP_COVERAGE = 0.95
# Did-not-attend: base rate, multiplied by exp(sum of weights of the household's needs).
DNA_BASE = {"HV": 0.05, "NCMP": 0.02, "SAFE": 0.06}
DNA_NEED_WEIGHTS = {"mental_health": 0.8, "substance_misuse": 0.9, "domestic_abuse": 0.7,
                    "housing": 0.6, "poverty": 0.2}
CANCELLED_BY_PATIENT = 0.03
CANCELLED_BY_PROVIDER = 0.03
REBOOK_RATE = 0.70  # missed or cancelled health-visiting reviews offered a second date
ENTERED_IN_ERROR_RATE = 0.003
# Safeguarding contacts per child-month, lifted by the household's needs (log scale).
SAFE_MONTHLY_BASE = 0.0006
SAFE_NEED_WEIGHTS = {"domestic_abuse": 2.2, "substance_misuse": 1.8, "mental_health": 0.6}
HOME_CONTACTS = ("ANT", "NBV", "SAFE")

# ------------------------------------------------------------------ CAMHS referrals
CAMHS_AGES = (5, 18)  # from the 5th to the 18th birthday
CAMHS_MONTHLY_BASE = 0.00045
CAMHS_NEED_WEIGHTS = {"mental_health": 1.3, "child_behaviour": 1.6, "domestic_abuse": 0.5}
CAMHS_TEEN_LIFT = 1.8  # referrals rise steeply in adolescence
CAMHS_REASONS = ("ANX", "MOOD", "SH", "ADHD", "ASD", "EAT", "BEH", "TRA")
# (base, + mental_health, + child_behaviour, + domestic_abuse) weights per reason
CAMHS_REASON_WEIGHTS = np.array([
    [3.0, 4.0, 0.0, 1.0],  # ANX anxiety
    [2.0, 4.0, 0.0, 0.5],  # MOOD low mood / depression
    [1.0, 2.0, 0.0, 0.5],  # SH self-harm
    [1.5, 0.0, 4.0, 0.0],  # ADHD
    [1.5, 0.0, 3.0, 0.0],  # ASD
    [0.5, 1.0, 0.0, 0.0],  # EAT eating difficulties
    [1.0, 0.0, 4.0, 1.0],  # BEH conduct / behaviour
    [0.5, 1.0, 0.0, 3.0],  # TRA trauma
]).T
MOSTLY_TEENAGE_REASONS = ("SH", "EAT")
UNDER_TWELVE_FACTOR = 0.1  # how much rarer those reasons are before the 12th birthday
SECOND_REASON_RATE = 0.20
CAMHS_SOURCES = ("A1", "C2", "B2", "F1", "B1", "C1", "H1", "F3", "G4", "E6", "A2", "P1")
CAMHS_SOURCE_WEIGHTS = np.array([35, 20, 8, 8, 3, 6, 4, 5, 3, 2, 1, 2], dtype=float)
PRIORITIES = ("routine", "urgent", "asap")
PRIORITY_SHARE = {"SH": (0.45, 0.40, 0.15), "EAT": (0.60, 0.35, 0.05)}  # others routine mostly
OTHER_PRIORITY_SHARE = (0.90, 0.09, 0.01)
# Share of referrals CAMHS turns down: behaviour alone often falls below its threshold.
CAMHS_REJECTION = {"BEH": 0.45, "SH": 0.08}
OTHER_REJECTION = 0.28


# ================================================================== entry point
def write_health(world: World, landing: Path) -> pd.DataFrame:
    """Write every health drop under ``landing/health/<date>/``; return the truth records."""
    residences = _Residences.of(world)
    patients = _patient_records(world)
    related = _related_person_records(world, patients)
    encounters = _encounter_records(world, patients)
    referrals = _referral_records(world, patients)

    con = duckdb.connect()
    written = []
    for extract_date in drop_dates(SYSTEM, world.config):
        drop = Drop(Path(landing), SYSTEM, extract_date, "snapshot")
        present = _patient_present(patients, extract_date)  # bool per child, by row
        pat = _patients_at(world.config, residences, patients[present].reset_index(drop=True), extract_date)
        rel = _related_persons_at(residences, related, present, extract_date)
        drop.ndjson("Patient.ndjson", _ndjson(con, pat, PATIENT_SQL))
        drop.ndjson("RelatedPerson.ndjson", _ndjson(con, rel, RELATED_PERSON_SQL))
        drop.ndjson("Encounter.ndjson", _ndjson(con, _encounters_at(encounters, present, extract_date), ENCOUNTER_SQL))
        drop.ndjson("ServiceRequest.ndjson", _ndjson(con, _referrals_at(referrals, present, extract_date),
                                                     SERVICE_REQUEST_SQL))
        drop.finish()
        written += [pd.DataFrame({"table": "Patient", "record_id": pat["id"], "person_key": pat["_person_key"]}),
                    pd.DataFrame({"table": "RelatedPerson", "record_id": rel["id"], "person_key": rel["_person_key"]})]
    con.close()
    return _truth(written)


def _truth(written: list[pd.DataFrame]) -> pd.DataFrame:
    columns = ["system", "table", "record_id", "person_key"]
    truth = pd.concat(written, ignore_index=True).drop_duplicates("record_id")
    truth.insert(0, "system", SYSTEM)
    return truth.sort_values(["table", "record_id"], kind="stable").reset_index(drop=True)[columns]


# ================================================================== shared helpers
def _opaque_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random version-4 UUIDs as text: opaque, stable for a seed, built without a loop."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for (lo, hi), at in zip(((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)), (0, 9, 14, 19, 24)):
        out[:, at:at + hi - lo] = hexed[:, lo:hi]
    # 122 random bits: a clash is as likely as guessing a UUID, so none is checked for.
    return out.view("S36").ravel().astype(str)


def _days(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[D]")


def _ymd(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = _days(dates)
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _birthday(birth: np.ndarray, years: int) -> np.ndarray:
    """The date of the given birthday; 29 February birthdays fall on 1 March."""
    y, m, d = _ymd(birth)
    leapling = (m == 2) & (d == 29)
    m, d = np.where(leapling, 3, m), np.where(leapling, 1, d)
    month = (y + years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (m - 1)
    return month.astype("datetime64[D]") + (d - 1) * DAY


def _pick(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    """Draw ``n`` values from a {value: share} dict."""
    p = np.asarray(list(shares.values()), dtype=float)
    return np.asarray(list(shares), dtype=object)[rng.choice(len(p), size=n, p=p / p.sum())]


def _pick_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One index per row of a (rows x options) weight matrix."""
    cum = weights.cumsum(axis=1)
    draw = rng.random(len(weights))[:, None] * cum[:, -1:]
    return (draw >= cum).sum(axis=1)


def _household_rows(world: World, household_keys) -> np.ndarray:
    """Each household's row in ``world.needs``: the integer that keys needs and residences.

    Same answer as ``Needs.row_index``, by hash rather than by comparing text in a
    binary search, which matters at a million children.
    """
    keys = pa.array(household_keys)
    rows = pc.index_in(keys, value_set=pa.array(world.needs.household_keys, keys.type))
    if rows.null_count:
        raise KeyError("a household missing from the needs simulation")
    return rows.to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class _Residences:
    """Every household's addresses over time, searchable by household row and day.

    Households are identified by their row in ``world.needs`` (``_household_rows``), the
    same integer that looks up their needs, so per-drop lookups never compare text keys.
    Like ``World.address_at``, but also gives the move-in date, which FHIR carries as
    the address period.
    """

    keys: np.ndarray  # household row << 32 | day number, sorted
    address: np.ndarray  # row in ``columns`` for each period
    moved_in: np.ndarray  # datetime64[D] for each period
    columns: dict[str, pa.Array]  # address parts by address row (Arrow: gathers stay off Python objects)

    @classmethod
    def of(cls, world: World) -> "_Residences":
        res = world.population.residences
        households = _household_rows(world, res["household_key"])
        moved_in = _days(res["valid_from"].to_numpy())
        keys = cls._key(households, moved_in)
        order = np.argsort(keys, kind="stable")
        addresses = world.addresses
        address_row = pd.Series(np.arange(len(addresses)), index=addresses["address_id"].to_numpy())
        columns = {name: pa.array(values.to_numpy(dtype=object), pa.string()) for name, values in {
            "flat": addresses["flat"],
            "street_line": addresses["house"] + " " + addresses["street"],
            "city": addresses["town"],
            "postcode": addresses["postcode"],
            "district": addresses["district"],
        }.items()}
        return cls(keys[order], address_row.reindex(res["address_id"].to_numpy()).to_numpy()[order],
                   moved_in[order], columns)

    @staticmethod
    def _key(household_rows: np.ndarray, days: np.ndarray) -> np.ndarray:
        day_number = _days(days).astype(np.int64) + (1 << 30)  # positive for any plausible date
        return (np.asarray(household_rows, dtype=np.int64) << 32) | day_number

    def at(self, household_rows: np.ndarray, when) -> dict:
        """Address parts and move-in date of each household on each date."""
        household_rows = np.asarray(household_rows, dtype=np.int64)
        when = np.broadcast_to(_days(when), household_rows.shape)
        period = np.searchsorted(self.keys, self._key(household_rows, when), side="right") - 1
        # Asked about a date before the first known move-in: the first known address stands.
        before_first = (period < 0) | ((self.keys[np.maximum(period, 0)] >> 32) != household_rows)
        first = np.searchsorted(self.keys, household_rows << 32, side="left")
        period = np.where(before_first, first, period)
        address = pa.array(self.address[period])
        return {**{name: values.take(address) for name, values in self.columns.items()},
                "moved_in": self.moved_in[period]}


def _needs_on(world: World, household_rows: np.ndarray, dates) -> dict[str, np.ndarray]:
    """Each need of each household (by needs row) on each date."""
    months = world.needs.month_index(_days(dates))
    return {need: active[household_rows, months] for need, active in world.needs.active.items()}


def _need_score(needs: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    return sum(w * needs[need] for need, w in weights.items())


def _months(config: CityConfig) -> np.ndarray:
    return np.arange(np.datetime64(config.start, "M"), np.datetime64(config.end, "M") + 1)


def _day_in_month(rng: np.random.Generator, month: np.datetime64, n: int) -> np.ndarray:
    first = month.astype("datetime64[D]")
    length = ((month + 1).astype("datetime64[D]") - first).astype(np.int64)
    return first + rng.integers(0, length, n) * DAY


# ================================================================== Patient
def _patient_records(world: World) -> pd.DataFrame:
    """One row per child the city ever has: the health record as it will ever be."""
    config, rates = world.config, world.config.defects
    rng = config.rng("health.patients")
    kids = world.children().reset_index(drop=True)
    n = len(kids)
    birth = _days(kids["birth_date"].to_numpy())
    household = _household_rows(world, kids["household_key"])

    nhs = defects.blank(kids["nhs_number"], rng, rates.nhs_missing.get(SYSTEM, 0.0))
    mistyped_rate = rates.invalid_check_digit * NHS_MISTYPED_SHARE_OF_GENERAL
    recorded_nhs = defects.corrupt_nhs_number(nhs, rng, mistyped_rate)
    mistyped = (nhs.notna() & (recorded_nhs != nhs)).to_numpy(dtype=bool)
    # A mistyped number was typed locally and never traced against the spine.
    untraced = _pick(rng, {"01": 1 - sum(UNTRACED_STATUS.values()), **UNTRACED_STATUS}, n)
    verification = np.where(mistyped, "02", untraced)

    name_typo = rates.forename_typo * NAME_TYPO_SHARE_OF_GENERAL
    forename = defects.typo(kids["forename"], rng, name_typo)
    surname = defects.typo(kids["surname"], rng, rates.surname_typo * NAME_TYPO_SHARE_OF_GENERAL)
    surname_after = defects.typo(kids["surname_after"], rng, rates.surname_typo * NAME_TYPO_SHARE_OF_GENERAL)
    short = defects.nickname(kids["forename"], rng, USUAL_NAME_RATE)
    usual = short.where(short != kids["forename"], None)

    gender = np.where(kids["sex"].to_numpy() == "F", "female", "male")
    gender = np.where(rng.random(n) < GENDER_UNKNOWN_RATE, "unknown", gender)
    # Health learns of moves and name changes some weeks late.
    lag_days = (7 + rng.gamma(2.0, 12.0, n)).astype(np.int64)
    gp_registered = rng.random(n) >= NOT_GP_REGISTERED_RATE

    return pd.DataFrame({
        "id": _opaque_ids(config.rng("health.patient_ids"), n),
        "_person_key": kids["person_key"].to_numpy(),
        "_household": household,
        "_born": birth,
        "_aged_out": _birthday(birth, SERVICE_AGE_LIMIT),
        "_death": _days(kids["death_date"].to_numpy()),
        "_nhs": recorded_nhs.to_numpy(),
        "_verification": verification,
        "_forename": forename.to_numpy(),
        "_middle": kids["middle_names"].fillna("").to_numpy(),
        "_surname": surname.to_numpy(),
        "_surname_after": surname_after.to_numpy(),
        "_surname_known": _days(kids["surname_changed_on"].to_numpy()) + lag_days * DAY,
        "_usual": usual.to_numpy(),
        "_gender": gender,
        "_ethnic": _ethnic_categories(config, kids["ethnicity"]),
        "_lag_days": lag_days,
        "_gp_registered": gp_registered,
        # A family registers at one practice: one draw per household picks it in the district.
        "_practice_draw": config.rng("health.practices").random(len(world.needs.household_keys))[household],
    })


def _ethnic_categories(config: CityConfig, cbds_codes: pd.Series) -> np.ndarray:
    """The child's ethnicity as an NHS letter; 'Z' (not stated) where the code has no
    counterpart and for a share of children whose ethnicity health never recorded."""
    letters = cbds_codes.map(CBDS_TO_NHS_ETHNIC).fillna("Z").to_numpy(dtype=object)
    not_stated = config.rng("health.ethnicity").random(len(letters)) < ETHNICITY_NOT_STATED_RATE
    return np.where(not_stated, "Z", letters).astype(str)


def _practice_code(config: CityConfig, districts: pa.Array, draws: np.ndarray) -> np.ndarray:
    """Synthetic ODS-style practice codes ``Y9`` + district digit + 3 digits."""
    per_district = max(2, round(config.children / CHILDREN_PER_PRACTICE / len(DISTRICTS)))
    codes = np.array([[f"Y9{d}{k:03d}" for k in range(1, per_district + 1)] for d in range(len(DISTRICTS))])
    district_no = pc.index_in(districts, pa.array(DISTRICTS)).to_numpy(zero_copy_only=False)
    return codes[district_no, np.floor(draws * per_district).astype(np.int64)]


def _patient_present(records: pd.DataFrame, extract_date) -> np.ndarray:
    """Which children the service holds on a date: born, and not yet 20.

    Other resources refer to children by row number in ``records``, so that a drop's
    membership is one boolean lookup rather than a join on text ids.
    """
    when = np.datetime64(extract_date, "D")
    return ((records["_born"] <= when) & (records["_aged_out"] > when)).to_numpy()


def _patients_at(config: CityConfig, residences: _Residences, rows: pd.DataFrame, extract_date) -> pd.DataFrame:
    """The Patient rows of one drop (``rows`` already the children present), for PATIENT_SQL."""
    when = np.datetime64(extract_date, "D")
    born = _days(rows["_born"])
    known = np.maximum(when - rows["_lag_days"].to_numpy() * DAY, born)
    home = residences.at(rows["_household"].to_numpy(), known)
    baby = (when - born) < BABY_TRACE_POSTPONED_DAYS * DAY
    renamed = _days(rows["_surname_known"]) <= when  # NaT compares False
    death = _days(rows["_death"])
    practice = _practice_code(config, home["district"], rows["_practice_draw"].to_numpy())
    return pd.DataFrame({
        "id": rows["id"],
        "_person_key": rows["_person_key"],
        "nhs": rows["_nhs"],
        "verification": np.where(baby, "08", rows["_verification"]),
        "ethnic": rows["_ethnic"],
        "family": rows["_surname_after"].where(renamed, rows["_surname"]),
        "forename": rows["_forename"],
        "middle": rows["_middle"],
        "usual": rows["_usual"],
        "gender": rows["_gender"],
        "birth": born,
        "deceased": np.where(death <= when, death, np.datetime64("NaT")),
        **_address_columns(home, born),
        "practice": np.where(rows["_gp_registered"], practice, None),
    })


def _address_columns(home: dict, not_before: np.ndarray | None = None) -> dict:
    """FHIR address parts; a baby's address period starts at birth, not at the move-in."""
    moved_in = home["moved_in"]
    return {
        **{part: pd.Series(home[part], dtype=pd.ArrowDtype(pa.string()))
           for part in ("flat", "street_line", "city", "postcode")},
        "address_from": moved_in if not_before is None else np.maximum(moved_in, not_before),
    }


# ================================================================== RelatedPerson
def _related_person_records(world: World, patients: pd.DataFrame) -> pd.DataFrame:
    """Mother (and some father) links health visiting records, one row per (child, adult)."""
    config = world.config
    rng = config.rng("health.related")
    start = np.datetime64(config.start, "D")
    kids = world.children().reset_index(drop=True)  # same order as ``patients``
    born = _days(patients["_born"])
    born_in_period = born >= start
    under_five_at_start = ~born_in_period & (_birthday(born, HEALTH_VISITING_AGE_LIMIT) > start)
    draw = rng.random(len(kids))
    linked = np.where(born_in_period, draw < LINKED_SHARE_BORN_IN_PERIOD,
                      under_five_at_start & (draw < LINKED_SHARE_UNDER_FIVE_AT_START))
    # Recorded at the new birth visit (children born before the period: long before it).
    link_date = born + rng.integers(10, 15, len(kids)) * DAY

    mothers = linked & (kids["mother_key"].to_numpy() != "")
    fathers = linked & (kids["father_key"].to_numpy() != "") & (rng.random(len(kids)) < FATHER_LINK_RATE)
    mother_code = np.where(rng.random(len(kids)) < MOTHER_AS_GUARDIAN_RATE, "GRD", "MTH")
    links = pd.concat([
        pd.DataFrame({"_child": np.flatnonzero(mothers), "_adult_key": kids["mother_key"].to_numpy()[mothers],
                      "relationship": mother_code[mothers]}),
        pd.DataFrame({"_child": np.flatnonzero(fathers), "_adult_key": kids["father_key"].to_numpy()[fathers],
                      "relationship": "FTH"}),
    ], ignore_index=True)

    persons = world.persons
    adult_row = pc.index_in(pa.array(links["_adult_key"], pa.string()),
                            value_set=pa.array(persons["person_key"], pa.string())).to_numpy(zero_copy_only=False)
    adults = persons[["household_key", "nhs_number", "surname", "forename", "middle_names", "birth_date"]]
    adults = adults.iloc[adult_row].reset_index(drop=True)
    n = len(links)
    rates = config.defects
    typo_rate = rates.forename_typo * NAME_TYPO_SHARE_OF_GENERAL
    nhs = adults["nhs_number"].to_numpy(dtype=object)
    phone = _adult_phone_numbers(config, len(persons), adult_row)
    child = links["_child"].to_numpy()
    return pd.DataFrame({
        "id": _opaque_ids(config.rng("health.related_ids"), n),
        "_person_key": links["_adult_key"].to_numpy(),
        "_adult_household": _household_rows(world, adults["household_key"]),
        "_child": child,
        "_patient_id": patients["id"].to_numpy()[child],
        "_linked": link_date[child],
        "_fifth_birthday": _birthday(born[child], HEALTH_VISITING_AGE_LIMIT),
        "_lag_days": (7 + rng.gamma(2.0, 12.0, n)).astype(np.int64),
        "relationship": links["relationship"].to_numpy(),
        "nhs": np.where(rng.random(n) < ADULT_NHS_NUMBER_RATE, nhs, None),
        "family": defects.typo(adults["surname"], rng, rates.surname_typo * NAME_TYPO_SHARE_OF_GENERAL).to_numpy(),
        "forename": defects.typo(adults["forename"], rng, typo_rate).to_numpy(),
        "middle": adults["middle_names"].fillna("").to_numpy(),
        "phone": np.where(rng.random(n) < TELECOM_RATE, phone, None),
        "birth": np.where(rng.random(n) < ADULT_BIRTH_DATE_RATE, _days(adults["birth_date"].to_numpy()),
                          np.datetime64("NaT")),
    })


def _adult_phone_numbers(config: CityConfig, n_persons: int, adult_rows: np.ndarray) -> np.ndarray:
    """One drama-range mobile per adult (by row in persons), the same on every sibling's link."""
    digits = config.rng("health.phones").integers(0, 1000, n_persons)[adult_rows]
    suffixes = np.array([f"{DRAMA_PHONE_PREFIX}{d:03d}" for d in range(1000)], dtype=object)
    return suffixes[digits]


def _related_persons_at(residences: _Residences, records: pd.DataFrame, present: np.ndarray,
                        extract_date) -> pd.DataFrame:
    """Links recorded by the extract, while the child is under five and still held."""
    when = np.datetime64(extract_date, "D")
    rows = records[(records["_linked"] <= when) & (records["_fifth_birthday"] > when)
                   & present[records["_child"].to_numpy()]].reset_index(drop=True)
    known = when - rows["_lag_days"].to_numpy() * DAY
    home = residences.at(rows["_adult_household"].to_numpy(), known)
    out = rows[["id", "_person_key", "relationship", "nhs", "family", "forename", "middle", "phone", "birth"]].copy()
    out["patient_id"] = rows["_patient_id"]
    for column, values in _address_columns(home).items():
        out[column] = values
    return out


# ================================================================== Encounter
def _encounter_records(world: World, patients: pd.DataFrame) -> pd.DataFrame:
    """Every contact the service will ever record in the period, with its outcome."""
    rng = world.config.rng("health.encounters")
    events = pd.concat([
        _health_visiting_reviews(world, rng, patients),
        _ncmp_measurements(world, rng, patients),
        _safeguarding_contacts(world, rng, patients),
    ], ignore_index=True)
    events = events.sort_values(["_child", "date", "type"], kind="stable").reset_index(drop=True)
    events["attendance"] = _attendance(world, rng, patients["_household"].to_numpy()[events["_child"]],
                                       events["date"].to_numpy(), events["_kind"].to_numpy())
    events = pd.concat([events, _rebooked(world, rng, patients, events)], ignore_index=True)

    n = len(events)
    born = _days(patients["_born"])[events["_child"]]
    error = rng.random(n) < ENTERED_IN_ERROR_RATE
    return pd.DataFrame({
        "id": _opaque_ids(world.config.rng("health.encounter_ids"), n),
        "_child": events["_child"].to_numpy(),
        "patient_id": patients["id"].to_numpy()[events["_child"]],
        # An antenatal contact moves onto the child's record at birth.
        "_created": np.maximum(_days(events["date"]), born),
        "type": events["type"].to_numpy(),
        "start_date": _days(events["date"]),
        "attendance": events["attendance"].to_numpy(),
        "status": np.where(events["attendance"].to_numpy() == "5", "finished", "cancelled"),
        "error_at": np.where(error, _days(events["date"]) + rng.integers(1, 31, n) * DAY, np.datetime64("NaT")),
    })


def _in_period(world: World, patients: pd.DataFrame, child: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Contacts that fall in the simulated period, while the child is alive and 0-19."""
    start, end = np.datetime64(world.config.start, "D"), np.datetime64(world.config.end, "D")
    death = _days(patients["_death"])[child]
    aged_out = _days(patients["_aged_out"])[child]
    return (dates >= start) & (dates <= end) & ~(dates >= death) & (dates < aged_out)


def _health_visiting_reviews(world: World, rng: np.random.Generator, patients: pd.DataFrame) -> pd.DataFrame:
    born = _days(patients["_born"])
    frames = []
    for review, ((lo, hi), coverage) in HV_REVIEWS.items():
        dates = born + rng.integers(lo, hi + 1, len(born)) * DAY
        offered = rng.random(len(born)) < coverage
        child = np.flatnonzero(offered)
        keep = _in_period(world, patients, child, dates[child])
        frames.append(pd.DataFrame({"_child": child[keep], "type": review, "date": dates[child][keep], "_kind": "HV"}))
    return pd.concat(frames, ignore_index=True)


def _ncmp_measurements(world: World, rng: np.random.Generator, patients: pd.DataFrame) -> pd.DataFrame:
    """Height and weight in Reception and Year 6, measured on a school day, January to June."""
    born = _days(patients["_born"])
    year, month, _ = _ymd(born)
    reception_start = year + (month >= 9) + 4  # September of the year the child starts school
    frames = []
    for years_in in (0, 6):  # Reception, Year 6
        spring = _days(pd.Series(reception_start + years_in + 1).astype(str) + "-01-08")
        dates = np.busday_offset(spring + rng.integers(0, 165, len(born)) * DAY, 0, roll="forward")
        offered = rng.random(len(born)) < NCMP_COVERAGE
        child = np.flatnonzero(offered)
        keep = _in_period(world, patients, child, dates[child])
        frames.append(pd.DataFrame({"_child": child[keep], "type": "NCMP", "date": dates[child][keep],
                                    "_kind": "NCMP"}))
    return pd.concat(frames, ignore_index=True)


def _safeguarding_contacts(world: World, rng: np.random.Generator, patients: pd.DataFrame) -> pd.DataFrame:
    """Monthly chance of a safeguarding contact, driven by domestic abuse and substance misuse."""
    born, death, aged_out = _days(patients["_born"]), _days(patients["_death"]), _days(patients["_aged_out"])
    rows = patients["_household"].to_numpy()
    frames = []
    for month in _months(world.config):
        first = month.astype("datetime64[D]")
        alive = (born <= first) & (aged_out > first) & ~(death <= first)
        column = world.needs.month_index([first])[0]
        score = sum(w * world.needs.active[need][rows, column] for need, w in SAFE_NEED_WEIGHTS.items())
        child = np.flatnonzero(alive & (rng.random(len(born)) < SAFE_MONTHLY_BASE * np.exp(score)))
        dates = _day_in_month(rng, month, len(child))
        keep = _in_period(world, patients, child, dates)
        frames.append(pd.DataFrame({"_child": child[keep], "type": "SAFE", "date": dates[keep], "_kind": "SAFE"}))
    return pd.concat(frames, ignore_index=True)


def _attendance(world: World, rng: np.random.Generator, household_rows: np.ndarray, dates: np.ndarray,
                kinds: np.ndarray) -> np.ndarray:
    """Seen (5), did not attend (3), cancelled by patient (2) or provider (4).

    Families under strain miss appointments: the household's needs at the date raise
    the did-not-attend rate, which is the risk signal this system carries.
    """
    kinds = np.asarray(kinds, dtype=object)
    base = np.select([kinds == kind for kind in DNA_BASE], list(DNA_BASE.values()))
    p_dna = np.minimum(base * np.exp(_need_score(_needs_on(world, household_rows, dates), DNA_NEED_WEIGHTS)), 0.6)
    draw = rng.random(len(dates))
    by_patient = p_dna + CANCELLED_BY_PATIENT
    by_provider = by_patient + CANCELLED_BY_PROVIDER
    return np.select([draw < p_dna, draw < by_patient, draw < by_provider], ["3", "2", "4"], "5")


def _rebooked(world: World, rng: np.random.Generator, patients: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """A missed or cancelled health-visiting review is usually offered again, once."""
    missed = events[(events["_kind"] == "HV") & (events["attendance"] != "5")]
    missed = missed[rng.random(len(missed)) < REBOOK_RATE]
    child = missed["_child"].to_numpy()
    dates = _days(missed["date"]) + rng.integers(7, 29, len(missed)) * DAY
    keep = _in_period(world, patients, child, dates)
    again = pd.DataFrame({"_child": child[keep], "type": missed["type"].to_numpy()[keep], "date": dates[keep],
                          "_kind": "HV"})
    again["attendance"] = _attendance(world, rng, patients["_household"].to_numpy()[again["_child"]],
                                      again["date"].to_numpy(), again["_kind"].to_numpy())
    return again


def _encounters_at(records: pd.DataFrame, present: np.ndarray, extract_date) -> pd.DataFrame:
    """Contacts dated by the extract, of children present; errors show once corrected."""
    rows = as_of(records[present[records["_child"].to_numpy()]], extract_date, reveal={"error_at": "error_at"})
    rows = rows.reset_index(drop=True)
    rows["status"] = rows["status"].where(rows["error_at"].isna(), "entered-in-error")
    rows["encounter_class"] = np.where(np.isin(rows["type"].to_numpy(dtype=object), HOME_CONTACTS), "HH", "AMB")
    return rows.drop(columns=["error_at"])


# ================================================================== ServiceRequest (CAMHS)
def _referral_records(world: World, patients: pd.DataFrame) -> pd.DataFrame:
    """CAMHS referrals of 5-17 year olds, driven by mental health and behaviour needs."""
    rng = world.config.rng("health.referrals")
    born, death = _days(patients["_born"]), _days(patients["_death"])
    youngest, teen, oldest = (_birthday(born, age) for age in (CAMHS_AGES[0], 12, CAMHS_AGES[1]))
    rows = patients["_household"].to_numpy()
    frames = []
    for month in _months(world.config):
        first = month.astype("datetime64[D]")
        eligible = (youngest <= first) & (oldest > first) & ~(death <= first)
        is_teen = teen <= first
        column = world.needs.month_index([first])[0]
        need = {k: world.needs.active[k][rows, column] for k in CAMHS_NEED_WEIGHTS}
        score = sum(w * need[k] for k, w in CAMHS_NEED_WEIGHTS.items())
        p = CAMHS_MONTHLY_BASE * np.exp(score) * np.where(is_teen, CAMHS_TEEN_LIFT, 1.0)
        child = np.flatnonzero(eligible & (rng.random(len(born)) < p))
        frames.append(pd.DataFrame({
            "_child": child, "authored": _day_in_month(rng, month, len(child)), "_teen": is_teen[child],
            **{f"_{k}": v[child] for k, v in need.items()},
        }))
    refs = pd.concat(frames, ignore_index=True)
    refs = refs[refs["authored"] <= np.datetime64(world.config.end, "D")].reset_index(drop=True)
    return _referral_details(world.config, rng, patients, refs)


def _referral_details(config: CityConfig, rng: np.random.Generator, patients: pd.DataFrame,
                      refs: pd.DataFrame) -> pd.DataFrame:
    n = len(refs)
    reasons = np.asarray(CAMHS_REASONS, dtype=object)
    drivers = np.column_stack([np.ones(n), refs["_mental_health"], refs["_child_behaviour"], refs["_domestic_abuse"]])
    weights = drivers @ CAMHS_REASON_WEIGHTS
    teenage = np.isin(reasons, MOSTLY_TEENAGE_REASONS)
    weights[:, teenage] *= np.where(refs["_teen"].to_numpy(), 1.0, UNDER_TWELVE_FACTOR)[:, None]
    which = _pick_rows(rng, weights)
    reason = reasons[which]
    second = reasons[_pick_rows(rng, weights)]
    second = np.where((rng.random(n) < SECOND_REASON_RATE) & (second != reason), second, None)

    source_weights = np.tile(CAMHS_SOURCE_WEIGHTS, (n, 1))
    sources = np.asarray(CAMHS_SOURCES)
    source_weights[:, sources == "H1"] += np.where(reason == "SH", 25.0, 0.0)[:, None]  # after an A&E attendance
    source_weights[:, sources == "C2"] += np.where(np.isin(reason, ("BEH", "ADHD")), 15.0, 0.0)[:, None]
    source_weights[:, sources == "B1"] *= np.where(refs["_teen"].to_numpy(), 1.0, 0.0)[:, None]
    source = sources[_pick_rows(rng, source_weights)]

    priority_by_reason = np.array([PRIORITY_SHARE.get(r, OTHER_PRIORITY_SHARE) for r in CAMHS_REASONS])
    priority = np.asarray(PRIORITIES)[_pick_rows(rng, priority_by_reason[which])]

    authored = _days(refs["authored"])
    rejection_by_reason = np.array([CAMHS_REJECTION.get(r, OTHER_REJECTION) for r in CAMHS_REASONS])
    rejected = rng.random(n) < rejection_by_reason[which]
    rejection = authored + rng.integers(3, 36, n) * DAY
    discharge = authored + (30 + rng.gamma(2.0, 100.0, n)).astype(np.int64) * DAY
    return pd.DataFrame({
        "id": _opaque_ids(config.rng("health.referral_ids"), n),
        "_child": refs["_child"].to_numpy(),
        "patient_id": patients["id"].to_numpy()[refs["_child"]],
        "_created": authored,
        "authored": authored,
        "source": source,
        "priority": priority,
        "reason": reason.astype(str),
        "reason2": second,
        "rejection_date": np.where(rejected, rejection, np.datetime64("NaT")),
        "discharge_date": np.where(rejected, np.datetime64("NaT"), discharge),
    })


def _referrals_at(records: pd.DataFrame, present: np.ndarray, extract_date) -> pd.DataFrame:
    """Referrals received by the extract; rejection or discharge shows once it happened."""
    rows = as_of(records[present[records["_child"].to_numpy()]], extract_date,
                 reveal={"rejection_date": "rejection_date", "discharge_date": "discharge_date"})
    rows = rows.reset_index(drop=True)
    rejected = rows["rejection_date"].notna().to_numpy()
    discharged = rows["discharge_date"].notna().to_numpy()
    rows["status"] = np.select([rejected, discharged], ["revoked", "completed"], "active")
    rows["outcome_url"] = np.select([rejected, discharged], [REJECTION_URL, DISCHARGE_URL], None)
    rows["outcome_date"] = pd.to_datetime(rows["rejection_date"].where(rejected, rows["discharge_date"]))
    return rows.drop(columns=["rejection_date", "discharge_date"])


# ================================================================== serialisation
# Each resource is described below as a template that mirrors its FHIR JSON: constants
# for the fixed parts, ``Col`` for a value taken from a column and ``When`` for an
# element that is left out when a condition is false. A template compiles once into a
# DuckDB ``concat(...)`` of constant JSON text and ``to_json`` values, which builds the
# lines column-wise (several times faster than ``to_json`` of whole structs).


@dataclass(frozen=True)
class Col:
    """A JSON value taken from an SQL expression over the drop's rows."""

    sql: str


@dataclass(frozen=True)
class When:
    """An object member or list item present only where the SQL condition holds."""

    condition: str
    value: object


def _coding(system: str, code) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _reference(column: str) -> dict:
    return {"reference": Col(f"'Patient/' || {column}")}


_GIVEN = Col("CASE WHEN middle IS NULL OR middle = '' THEN [forename] "
             "ELSE list_concat([forename], string_split(middle, ' ')) END")
_HOME_ADDRESS = {
    "use": "home",
    "line": Col("CASE WHEN flat IS NULL OR flat = '' THEN [street_line] ELSE [flat, street_line] END"),
    "city": Col("city"),
    "postalCode": Col("postcode"),
    "period": {"start": Col("address_from::DATE")},
}

PATIENT = {
    "resourceType": "Patient",
    "id": Col("id"),
    "extension": [{"url": ETHNIC_URL, "valueCodeableConcept": _coding(ETHNIC_SYSTEM, Col("ethnic"))}],
    "identifier": When("nhs IS NOT NULL", [{
        "extension": [{"url": VERIFICATION_URL,
                       "valueCodeableConcept": _coding(VERIFICATION_SYSTEM, Col("verification"))}],
        "system": NHS_NUMBER_SYSTEM,
        "value": Col("nhs"),
    }]),
    "name": [
        {"use": "official", "family": Col("family"), "given": _GIVEN},
        When("usual IS NOT NULL", {"use": "usual", "family": Col("family"), "given": Col("[usual]")}),
    ],
    "gender": Col("gender"),
    "birthDate": Col("birth::DATE"),
    "deceasedDateTime": When("deceased IS NOT NULL", Col("deceased::DATE")),
    "address": [_HOME_ADDRESS],
    "generalPractitioner": When("practice IS NOT NULL", [
        {"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": Col("practice")}}]),
}

RELATED_PERSON = {
    "resourceType": "RelatedPerson",
    "id": Col("id"),
    "identifier": When("nhs IS NOT NULL", [{"system": NHS_NUMBER_SYSTEM, "value": Col("nhs")}]),
    "patient": _reference("patient_id"),
    "relationship": [_coding(ROLE_SYSTEM, Col("relationship"))],
    "name": [{"use": "official", "family": Col("family"), "given": _GIVEN}],
    "telecom": When("phone IS NOT NULL", [{"system": "phone", "value": Col("phone"), "use": "mobile"}]),
    "birthDate": When("birth IS NOT NULL", Col("birth::DATE")),
    "address": [_HOME_ADDRESS],
}

ENCOUNTER = {
    "resourceType": "Encounter",
    "id": Col("id"),
    "extension": [{"url": ATTENDANCE_URL, "valueCode": Col("attendance")}],
    "status": Col("status"),
    "class": {"system": ACT_CODE_SYSTEM, "code": Col("encounter_class")},
    "type": [_coding(REVIEW_TYPE_SYSTEM, Col("type"))],
    "subject": _reference("patient_id"),
    "period": {"start": Col("start_date::DATE")},
}

SERVICE_REQUEST = {
    "resourceType": "ServiceRequest",
    "id": Col("id"),
    # rejected or discharged: never both, so one extension at most
    "extension": When("outcome_date IS NOT NULL", [
        {"url": Col("outcome_url"), "valueDate": Col("outcome_date::DATE")}]),
    "status": Col("status"),
    "intent": "order",
    "priority": Col("priority"),
    "subject": _reference("patient_id"),
    "authoredOn": Col("authored::DATE"),
    "requester": {"display": Col("source")},
    "reasonCode": [_coding(CAMHS_REASON_SYSTEM, Col("reason")),
                   When("reason2 IS NOT NULL", _coding(CAMHS_REASON_SYSTEM, Col("reason2")))],
}


def _pieces(template) -> list:
    """JSON text pieces: ``str`` for constant text, ``Col``/``When`` for SQL to fill in."""
    if isinstance(template, Col):
        return [template]
    if isinstance(template, dict):
        return _members("{", "}", [(json.dumps(k) + ":", v) for k, v in template.items()])
    if isinstance(template, list):
        return _members("[", "]", [("", v) for v in template])
    return [json.dumps(template, ensure_ascii=False)]


def _members(open_: str, close: str, members: list[tuple[str, object]]) -> list:
    if members and isinstance(members[0][1], When):
        raise ValueError("the first member of an object or list must always be present")  # commas lead
    out = [open_]
    for i, (key, value) in enumerate(members):
        separator = "," if i else ""
        if isinstance(value, When):
            out.append(When(value.condition, [separator + key] + _pieces(value.value)))
        else:
            out += [separator + key] + _pieces(value)
    return out + [close]


def _concat_sql(pieces: list) -> str:
    """``concat(...)`` of the pieces, adjacent constants merged (concat skips NULLs)."""
    args, text = [], ""
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
            continue
        if text:
            args.append("'" + text.replace("'", "''") + "'")
            text = ""
        if isinstance(piece, Col):
            args.append(f"to_json({piece.sql})")
        else:
            args.append(f"CASE WHEN {piece.condition} THEN {_concat_sql(piece.value)} END")
    if text:
        args.append("'" + text.replace("'", "''") + "'")
    return f"concat({', '.join(args)})"


def _select_sql(template: dict) -> str:
    return f"SELECT {_concat_sql(_pieces(template))} AS line FROM resource_rows ORDER BY id"


PATIENT_SQL, RELATED_PERSON_SQL, ENCOUNTER_SQL, SERVICE_REQUEST_SQL = (
    _select_sql(t) for t in (PATIENT, RELATED_PERSON, ENCOUNTER, SERVICE_REQUEST))


def _ndjson(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, sql: str) -> list[str]:
    """One JSON document per row, ordered by id so that the same state gives the same bytes."""
    columns = [c for c in frame.columns if not c.startswith("_")]
    con.register("resource_rows", pa.Table.from_pandas(frame[columns], preserve_index=False))
    try:
        return con.sql(sql).to_arrow_table().column("line").to_pylist()
    finally:
        con.unregister("resource_rows")
