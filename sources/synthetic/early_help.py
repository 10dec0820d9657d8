"""The early help (MAST) legacy case system: the city's early help work as the council's
old family-centred case system exports it every Sunday (CONTRACT.md, "early_help").

The system keeps families, not children. A FAMILY_ID is opened at a household's first
referral and its members are typed in by hand, so names, dates of birth and
identifiers carry the errors of a busy front door, and the export is Windows-1252 with
CRLF line ends. When a family comes back after its episode has closed, a worker who
does not find the old record opens a new family with new PERSON_IDs for the same
people: legacy duplicates that identity resolution has to put back together
(``truth/records.csv`` maps each PERSON_ID to its person).

Every record the system will ever hold is built once, with the date it appeared
(``_created``) and the dates at which later facts became known (``_*_known``); each
weekly drop is then the state as of its extract date (``output.as_of``). Defects are
drawn once per record, so a record reads the same in every drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from . import defects as D
from .names import GROUP_NAMES, GROUPS
from .needs import NEEDS
from .output import Drop, as_of, drop_dates, fmt_date
from .world import World

SYSTEM = "early_help"
DAY = np.timedelta64(1, "D")
YEAR_DAYS = 365.25

# Legacy integer id ranges, one per table, so that ids grow with the order records were made.
FAMILY_ID_BASE = 10_001
PERSON_ID_BASE = 200_001
REFERRAL_ID_BASE = 500_001
EPISODE_ID_BASE = 700_001
ASSESSMENT_ID_BASE = 800_001
REVIEW_ID_BASE = 900_001
MANAGER_ID_BASE = 79_001  # key worker posts are 70001 upwards (services.py)

COLUMNS = {
    "FAMILIES.csv": ["FAMILY_ID", "MAIN_CARER_PERSON_ID", "ADDRESS_1", "ADDRESS_2", "TOWN", "POSTCODE",
                     "UPRN", "DISTRICT", "SF_ELIGIBLE", "CONSENT_DATE"],
    "FAMILY_MEMBERS.csv": ["FAMILY_ID", "PERSON_ID", "ROLE", "SURNAME", "FORENAME", "KNOWN_AS", "DOB",
                           "GENDER", "ETHNICITY", "NHS_NO", "UPN", "CSC_ID", "FROM_DATE", "TO_DATE"],
    "REFERRALS.csv": ["REFERRAL_ID", "FAMILY_ID", "PERSON_ID", "REFERRAL_DATE", "REFERRAL_SOURCE", "ROUTE",
                      "MASH_CONTACT_ID", "ACCEPTED", "REASON_NOT_ACCEPTED"],
    "EPISODES.csv": ["EPISODE_ID", "FAMILY_ID", "REFERRAL_ID", "START_DATE", "ALLOCATED_DATE", "KEY_WORKER_ID",
                     "TEAM", "DISTRICT", "END_DATE", "END_REASON", "STEP_UP_REFERRAL_ID"],
    "ASSESSMENTS.csv": ["ASSESSMENT_ID", "EPISODE_ID", "FAMILY_ID", "START_DATE", "COMPLETED_DATE", "NEEDS"],
    "TAF_REVIEWS.csv": ["REVIEW_ID", "EPISODE_ID", "MEETING_DATE", "PLAN_RAG", "AGENCIES"],
    "WORKERS.csv": ["WORKER_ID", "SURNAME", "FORENAME", "ROLE", "TEAM", "DISTRICT", "FTE", "START_DATE",
                    "END_DATE"],
}

# How a practitioner types ethnicity into a free-text box, by CBDS code.
ETHNICITY_TEXT = {
    "WBRI": "White British", "WIRI": "White Irish", "WIRT": "Traveller of Irish Heritage",
    "WOTH": "White Other", "WROM": "Gypsy/Roma", "MWBC": "White and Black Caribbean",
    "MWBA": "White and Black African", "MWAS": "White and Asian", "MOTH": "Other Mixed",
    "AIND": "Indian", "APKN": "Pakistani", "ABAN": "Bangladeshi", "AOTH": "Other Asian",
    "BCRB": "Black Caribbean", "BAFR": "Black African", "BOTH": "Other Black", "CHNE": "Chinese",
    "OOTH": "Other", "REFU": "Refused", "NOBT": "Not known",
}
ETHNICITY_STYLE = {"text": 0.62, "code": 0.33, "blank": 0.05}
GENDER_TEXT = {"M": "Male", "F": "Female"}
GENDER_LEGACY = {"M": "1", "F": "2"}  # the old system's numeric codes, still in migrated records
GENDER_UNKNOWN = 0.005
GENDER_LEGACY_SHARE = 0.05
NHS_SPACED = 0.2
UPRN_BLANK = 0.5
CSC_ID_RECORDED = 0.6
FORENAME_IS_NICKNAME = 0.25  # of those known by a nickname, the worker typed it as the forename

# Supporting Families headline needs, in CODES.md order.
HEADLINE = ("EDU", "EYD", "HEA", "SUB", "REL", "SAFE", "CRI", "DA", "HOU", "FIN")
NEED_HEADLINE = {"domestic_abuse": "DA", "mental_health": "HEA", "substance_misuse": "SUB",
                 "poverty": "FIN", "housing": "HOU"}
ASSESSOR_MISSES = 0.08  # a need present but not recorded
AGENCIES = ("SCHOOL", "HEALTH", "POLICE", "HOUSING", "CAMHS", "DWP")
REVIEW_EVERY_DAYS = (42, 56)  # team around the family meets every six to eight weeks
# how an episode's ending colours its plan reviews as it goes (log-odds towards red)
OUTCOME_TREND = {"STEP_UP": 1.6, "DISENGAGED": 0.7, "CONSENT_WITHDRAWN": 0.4, "OUTCOMES_MET": -1.2,
                 "UNIVERSAL": -0.8, "MOVED_AWAY": 0.0}
ROLE_ORDER = {"PARENT": 0, "CARER": 1, "OTHER ADULT": 2, "CHILD": 3}


@dataclass
class Table:
    """Every record one file will ever hold, and how it reads on a given date."""

    name: str
    records: pd.DataFrame  # the file's columns as text plus _created, _deleted and _*_known dates
    reveal: dict[str, str] = field(default_factory=dict)  # column -> date it becomes known
    blank_as: dict[str, str] = field(default_factory=dict)  # shown while a value is not yet known

    def as_of(self, when: date) -> pd.DataFrame:
        frame = as_of(self.records, np.datetime64(when, "ns"), self.reveal)
        for column, value in self.blank_as.items():
            frame[column] = frame[column].fillna(value)
        return frame[COLUMNS[self.name]]


@dataclass
class EarlyHelp:
    tables: list[Table]
    members: pd.DataFrame  # PERSON_ID, person_key, _created: the identity truth


def write_early_help(world: World, landing: Path) -> pd.DataFrame:
    """Write every weekly early help drop; return the truth rows for FAMILY_MEMBERS."""
    system = build_early_help(world)
    dates = drop_dates(SYSTEM, world.config)
    for extract_date in dates:
        drop = Drop(Path(landing), SYSTEM, extract_date, "snapshot")
        for table in system.tables:
            drop.csv(table.name, table.as_of(extract_date), encoding="cp1252", crlf=True)
        drop.finish()
    return truth_records(system.members, dates[-1])


def truth_records(members: pd.DataFrame, last_drop: date) -> pd.DataFrame:
    """One row per PERSON_ID that reached an extract (members are never deleted)."""
    written = members[members["_created"].to_numpy("datetime64[ns]") <= np.datetime64(last_drop, "ns")]
    return pd.DataFrame({
        "system": SYSTEM, "table": "FAMILY_MEMBERS",
        "record_id": written["PERSON_ID"].astype(str).to_numpy(),
        "person_key": written["person_key"].to_numpy(),
    })


def build_early_help(world: World) -> EarlyHelp:
    """All the records of the system over the whole simulated period."""
    referrals = _referrals_with_families(world)
    people = _people(world, referrals["household_key"].unique())
    families = _families(referrals)
    members = _members(world, people, families, referrals)
    episodes = _episodes(world, referrals)
    assessments = _assessments(world, people, episodes)
    reviews = _reviews(world, people, episodes)
    tables = [
        _families_table(world, families, members, referrals, assessments),
        _members_table(world, people, members),
        _referrals_table(referrals, members),
        _episodes_table(episodes),
        _assessments_table(assessments),
        _reviews_table(reviews),
        _workers_table(world),
    ]
    return EarlyHelp(tables, members[["PERSON_ID", "person_key", "_created"]])


# ------------------------------------------------------------------ helpers
def _day(values) -> np.ndarray:
    """Dates as datetime64[ns] at midnight; NaT stays NaT."""
    return pd.to_datetime(pd.Series(values)).dt.normalize().to_numpy("datetime64[ns]")


def _uk(values) -> np.ndarray:
    """DD/MM/YYYY text, formatting each distinct date once (there are few, rows are many)."""
    days = _day(values)
    distinct, position = np.unique(days.view(np.int64), return_inverse=True)
    return fmt_date(distinct.view("datetime64[ns]"), "uk").to_numpy(dtype=object)[position]


def _years_between(earlier, later) -> np.ndarray:
    return (_day(later) - _day(earlier)) / DAY / YEAR_DAYS


def _stream(world: World, what: str) -> np.random.Generator:
    """An independent random stream per decision, so adding one never shifts another."""
    return world.config.rng(f"{SYSTEM}.{what}")


def _join_codes(flags: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Semicolon-separated codes from one boolean column per code, in the dict's order."""
    text = np.full(n, "", dtype=object)
    for code, on in flags.items():
        text = text + np.where(on, code + ";", "").astype(object)
    return pd.Series(text, dtype=object).str.rstrip(";").to_numpy(dtype=object)


def _ids(base: int, n: int) -> np.ndarray:
    return base + np.arange(n, dtype=np.int64)


# ------------------------------------------------------------------ families
def _referrals_with_families(world: World) -> pd.DataFrame:
    """Each referral with the family record it was filed under.

    A household's first referral opens a family. A referral after the household's last
    episode has closed opens a new one for ``early_help_new_family_on_rereferral`` of
    them: the worker searched, missed the old record and typed the family in again.
    """
    refs = world.services["eh_referrals"].sort_values("referral_no", kind="stable").reset_index(drop=True)
    refs["referral_date"] = _day(refs["referral_date"])
    previous_end = _previous_episode_end(refs, world.services["eh_episodes"])
    came_back = previous_end < refs["referral_date"].to_numpy()  # NaT (none, or still open) is False
    retyped = _stream(world, "families").random(len(refs)) < world.config.defects.early_help_new_family_on_rereferral
    opens = ~refs["household_key"].duplicated().to_numpy() | (came_back & retyped)
    refs["opens_family"] = opens
    refs["family_seq"] = pd.Series(opens).groupby(refs["household_key"].to_numpy()).cumsum().to_numpy()
    openers = refs.loc[opens, ["household_key", "family_seq"]].assign(FAMILY_ID=_ids(FAMILY_ID_BASE, int(opens.sum())))
    return refs.merge(openers, on=["household_key", "family_seq"], how="left")


def _previous_episode_end(refs: pd.DataFrame, episodes: pd.DataFrame) -> np.ndarray:
    """End date of the household's latest episode opened before each referral (NaT if none or open)."""
    eps = episodes[["household_key", "referral_no", "end_date"]].rename(
        columns={"referral_no": "episode_referral_no", "end_date": "previous_end"})
    eps = eps.astype({"episode_referral_no": np.int64}).sort_values("episode_referral_no", kind="stable")
    query = refs[["household_key", "referral_no"]].astype({"referral_no": np.int64})
    joined = pd.merge_asof(query, eps, left_on="referral_no", right_on="episode_referral_no",
                           by="household_key", allow_exact_matches=False)
    return _day(joined["previous_end"])


def _families(refs: pd.DataFrame) -> pd.DataFrame:
    """One row per family record: when it was opened and until the household's next one."""
    fam = refs.loc[refs["opens_family"], ["FAMILY_ID", "household_key", "referral_date", "person_key"]]
    fam = fam.rename(columns={"referral_date": "created", "person_key": "first_child"}).reset_index(drop=True)
    fam["next_created"] = fam.groupby("household_key")["created"].shift(-1)
    return fam


# ------------------------------------------------------------------ members
PERSON_COLUMNS = ["person_key", "household_key", "role", "sex", "birth_date", "death_date", "forename", "surname",
                  "surname_after", "surname_changed_on", "mother_key", "father_key", "nhs_number", "upn"]


def _people(world: World, household_keys: np.ndarray) -> pd.DataFrame:
    """The people of every household early help ever sees, with their true ethnicity,
    as plain numpy columns indexed by person_key (quick to look up, unlike the whole city)."""
    keep = world.persons["household_key"].isin(household_keys).to_numpy()
    persons = world.persons.loc[keep, PERSON_COLUMNS]
    people = pd.DataFrame({c: persons[c].to_numpy() if persons[c].dtype.kind == "M"
                           else persons[c].to_numpy(dtype=object) for c in PERSON_COLUMNS})
    people["ethnicity"] = true_ethnicity(world, keep)
    return people.set_index(pd.Index(people["person_key"].to_numpy(dtype=object)))


def _household_people(people: pd.DataFrame) -> pd.DataFrame:
    """Children with the mother and any resident father (a parent living in the same household)."""
    persons = people.reset_index(drop=True)
    kids = persons[persons["role"] == "child"]
    parent_links = pd.concat([
        kids[["household_key", "mother_key"]].rename(columns={"mother_key": "person_key"}).assign(kind="mother"),
        kids[["household_key", "father_key"]].rename(columns={"father_key": "person_key"}).assign(kind="father"),
    ], ignore_index=True)
    parent_links = parent_links[parent_links["person_key"] != ""].drop_duplicates(["household_key", "person_key"])
    parents = persons.merge(parent_links, on=["household_key", "person_key"])  # resident only
    people = pd.concat([kids.assign(kind="child"), parents], ignore_index=True)
    return people[["household_key", "person_key", "kind", "birth_date", "death_date", "father_key"]]


def _members(world: World, people: pd.DataFrame, families: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Who each family record holds, from when: the household at the family's creation
    (children alive and under 19, mother, resident father), babies born while it is the
    household's current family, and any referred child not already on it."""
    cand = families.merge(_household_people(people), on="household_key")
    created, birth = cand["created"].to_numpy(), _day(cand["birth_date"])
    death = _day(cand["death_date"])
    alive = np.isnat(death) | (death > created)
    young_enough = (cand["kind"].to_numpy() != "child") | (_years_between(birth, created) < 19)
    at_creation = (birth <= created) & alive & young_enough
    next_created = _day(cand["next_created"])
    born_later = (birth > created) & (np.isnat(next_created) | (birth < next_created))
    born_later &= birth <= np.datetime64(world.config.end, "ns")
    cand["FROM_DATE"] = np.where(at_creation, created, birth)
    members = cand[at_creation | born_later].copy()
    # A newborn is added when the family next has contact, not on the day of birth.
    later = members["FROM_DATE"].to_numpy() > members["created"].to_numpy()
    lag = _stream(world, "newborn_lag").integers(3, 29, len(members)) * DAY
    members["_created"] = np.where(later, members["FROM_DATE"].to_numpy() + lag, members["FROM_DATE"].to_numpy())
    members = pd.concat([members, _referred_not_yet_members(people, families, members, refs)], ignore_index=True)
    members["ROLE"] = _roles(people, members)
    members["TO_DATE_value"] = _leaving_dates(members)
    order = members.assign(_rank=members["ROLE"].map(ROLE_ORDER)).sort_values(
        ["_created", "FAMILY_ID", "_rank", "birth_date", "person_key"], kind="stable").index
    members = members.loc[order].reset_index(drop=True)
    members["PERSON_ID"] = _ids(PERSON_ID_BASE, len(members))
    return members


def _referred_not_yet_members(people: pd.DataFrame, families: pd.DataFrame, members: pd.DataFrame,
                              refs: pd.DataFrame) -> pd.DataFrame:
    """A referred child the household rule left out (e.g. recorded dead, or not living
    there): the worker adds them on the day of the referral."""
    refs = refs.sort_values("referral_no", kind="stable").drop_duplicates(["FAMILY_ID", "person_key"])
    known = pd.MultiIndex.from_frame(members[["FAMILY_ID", "person_key"]])
    missing = refs[~pd.MultiIndex.from_frame(refs[["FAMILY_ID", "person_key"]]).isin(known)]
    who = people.loc[missing["person_key"].to_numpy()]
    return pd.DataFrame({
        "FAMILY_ID": missing["FAMILY_ID"].to_numpy(), "household_key": missing["household_key"].to_numpy(),
        "person_key": missing["person_key"].to_numpy(), "kind": "child",
        "birth_date": who["birth_date"].to_numpy(), "death_date": who["death_date"].to_numpy(),
        "father_key": who["father_key"].to_numpy(),
        "first_child": missing["FAMILY_ID"].map(families.set_index("FAMILY_ID")["first_child"]).to_numpy(),
        "created": missing["referral_date"].to_numpy(), "FROM_DATE": missing["referral_date"].to_numpy(),
        "_created": missing["referral_date"].to_numpy(),
    })


def _roles(people: pd.DataFrame, members: pd.DataFrame) -> np.ndarray:
    """PARENT for the mother and the referred child's father; a resident partner who is
    not that child's father is a CARER; a young person of 18 is an OTHER ADULT."""
    kind = members["kind"].to_numpy()
    first_child_father = people["father_key"].reindex(members["first_child"].to_numpy()).to_numpy(dtype=object)
    is_child_father = members["person_key"].to_numpy() == first_child_father
    adult_child = _years_between(members["birth_date"], members["FROM_DATE"]) >= 18
    return np.select(
        [kind == "mother", (kind == "father") & is_child_father, kind == "father", adult_child],
        ["PARENT", "PARENT", "CARER", "OTHER ADULT"], "CHILD")


def _leaving_dates(members: pd.DataFrame) -> np.ndarray:
    """A member leaves the family record at death, and a child at 19. A leaving that
    predates the member's FROM_DATE (a referral about a young person already 19, or
    about a child who had died) was never known to the worker, so it stays blank."""
    death = _day(members["death_date"])
    birth = _day(members["birth_date"])
    nineteen = (pd.to_datetime(birth) + pd.DateOffset(years=19)).to_numpy("datetime64[ns]")
    is_child = members["kind"].to_numpy() == "child"
    ages_out = np.where(is_child, nineteen, np.datetime64("NaT", "ns"))
    leaves = np.where(np.isnat(death), ages_out, np.where(np.isnat(ages_out), death, np.minimum(death, ages_out)))
    return np.where(leaves >= _day(members["FROM_DATE"]), leaves, np.datetime64("NaT", "ns"))


def _members_table(world: World, people: pd.DataFrame, members: pd.DataFrame) -> Table:
    who = people.loc[members["person_key"].to_numpy()]
    fields = _person_fields(world, members, who)
    records = pd.DataFrame({
        "FAMILY_ID": members["FAMILY_ID"].to_numpy(), "PERSON_ID": members["PERSON_ID"].to_numpy(),
        "ROLE": members["ROLE"].to_numpy(), **fields,
        "CSC_ID": _csc_ids(world, members),
        "FROM_DATE": _uk(members["FROM_DATE"]), "TO_DATE": _uk(members["TO_DATE_value"]),
        "_created": _day(members["_created"]), "_to_known": _day(members["TO_DATE_value"]),
    })
    return Table("FAMILY_MEMBERS.csv", records, reveal={"TO_DATE": "_to_known"})


def _person_fields(world: World, members: pd.DataFrame, who: pd.DataFrame) -> dict[str, np.ndarray]:
    """Names, date of birth, gender, ethnicity and identifiers as a worker typed them in."""
    rates = world.config.defects
    from_date = members["FROM_DATE"].to_numpy()
    # The surname the family gave at the time; the legacy record is never updated.
    changed = _day(who["surname_changed_on"])
    surname = np.where(~np.isnat(changed) & (changed <= from_date), who["surname_after"].to_numpy(dtype=object),
                       who["surname"].to_numpy(dtype=object))
    surname = pd.Series(surname, dtype=object)
    hyphenated = surname.str.contains("-", na=False).to_numpy()
    surname[hyphenated] = D.shorten_hyphenated(surname[hyphenated], _stream(world, "hyphen"),
                                               rates.hyphenated_surname_partial).to_numpy(dtype=object)
    surname = D.to_cp1252(D.typo(surname, _stream(world, "surname_typo"), rates.surname_typo))

    true_forename = pd.Series(who["forename"].to_numpy(dtype=object), dtype=object)
    nickname = D.nickname(true_forename, _stream(world, "nickname"), rates.nickname[SYSTEM])
    has_nickname = (nickname != true_forename).to_numpy()
    typed_as_forename = has_nickname & (_stream(world, "nickname_as_forename").random(len(members)) < FORENAME_IS_NICKNAME)
    forename = true_forename.where(~typed_as_forename, nickname)
    forename = D.to_cp1252(D.typo(forename, _stream(world, "forename_typo"), rates.forename_typo))
    known_as = D.to_cp1252(nickname.where(has_nickname & ~typed_as_forename, None))
    forename, surname = D.swap_names(forename, surname, _stream(world, "name_swap"), rates.name_swap.get(SYSTEM, 0.0))

    dob = D.swap_day_month(pd.Series(_day(who["birth_date"])), _stream(world, "dob"), rates.dob_day_month_swap)
    return {
        "SURNAME": surname.to_numpy(), "FORENAME": forename.to_numpy(), "KNOWN_AS": known_as.to_numpy(),
        "DOB": _uk(dob), "GENDER": _genders(world, who["sex"].to_numpy()),
        "ETHNICITY": _ethnicities(world, who["ethnicity"].to_numpy(dtype=object)),
        "NHS_NO": _nhs_numbers(world, who["nhs_number"]),
        "UPN": _upns(world, who, from_date),
    }


def _genders(world: World, sex: np.ndarray) -> np.ndarray:
    draw = _stream(world, "gender").random(len(sex))
    text = pd.Series(sex).map(GENDER_TEXT).to_numpy(dtype=object)
    legacy = pd.Series(sex).map(GENDER_LEGACY).to_numpy(dtype=object)
    return np.where(draw < GENDER_UNKNOWN, "Unknown",
                    np.where(draw < GENDER_UNKNOWN + GENDER_LEGACY_SHARE, legacy, text)).astype(object)


def true_ethnicity(world: World, rows: np.ndarray) -> np.ndarray:
    """The CBDS ethnicity code of the persons selected by the boolean mask ``rows``.

    The population does not carry one, so it is drawn here from the mix of the
    household's group (``names.GROUPS``): one draw per person of the city, so a person's
    ethnicity does not depend on who else early help sees.
    """
    persons = world.persons
    if "ethnicity" in persons:
        return persons.loc[rows, "ethnicity"].to_numpy(dtype=object)
    draw = world.config.rng("ethnicity").random(len(persons))[rows]
    group = persons.loc[rows, "group"].to_numpy(dtype=object)
    codes = np.full(len(group), "NOBT", dtype=object)
    for name, (_, mix, _) in GROUPS.items():
        mask = group == name
        bounds = np.cumsum(list(mix.values())) / sum(mix.values())
        pick = np.minimum(np.searchsorted(bounds, draw[mask], side="right"), len(bounds) - 1)
        codes[mask] = np.asarray(list(mix), dtype=object)[pick]
    return codes


def _ethnicities(world: World, code: np.ndarray) -> np.ndarray:
    """Free text for most records, the CBDS code for migrated ones, blank for a few."""
    text = pd.Series(code).map(ETHNICITY_TEXT).to_numpy(dtype=object)
    draw = _stream(world, "ethnicity_style").random(len(code))
    return np.where(draw < ETHNICITY_STYLE["text"], text,
                    np.where(draw < ETHNICITY_STYLE["text"] + ETHNICITY_STYLE["code"], code, None)).astype(object)


def _nhs_numbers(world: World, nhs: pd.Series) -> np.ndarray:
    rates = world.config.defects
    nhs = pd.Series(nhs.to_numpy(dtype=object), dtype=object)
    nhs = D.blank(nhs, _stream(world, "nhs_missing"), rates.nhs_missing[SYSTEM])
    nhs = D.corrupt_nhs_number(nhs, _stream(world, "nhs_check"), rates.invalid_check_digit)
    typed = nhs.notna().to_numpy()
    nhs[typed] = D.spaced_nhs(nhs[typed], _stream(world, "nhs_spaced"), NHS_SPACED).to_numpy(dtype=object)
    return nhs.to_numpy(dtype=object)


def _upns(world: World, who: pd.DataFrame, from_date: np.ndarray) -> np.ndarray:
    """The UPN where the child had one when recorded (issued at school entry)."""
    rates = world.config.defects
    birth = pd.to_datetime(_day(who["birth_date"]))
    entry_year = birth.year + (birth.month >= 9).astype(int) + 4
    school_entry = pd.to_datetime(pd.DataFrame({"year": entry_year, "month": 9, "day": 1})).to_numpy("datetime64[ns]")
    upn = pd.Series(who["upn"].to_numpy(dtype=object), dtype=object).where(school_entry <= from_date, None)
    upn = D.blank(upn, _stream(world, "upn_missing"), rates.upn_missing[SYSTEM])
    return D.corrupt_upn(upn, _stream(world, "upn_check"), rates.invalid_check_digit).to_numpy(dtype=object)


def _csc_ids(world: World, members: pd.DataFrame) -> np.ndarray:
    """The Mosaic id of the person's master record, where it existed when the member was
    added and the worker looked it up and typed it in."""
    mosaic = world.services["mosaic_people"]
    masters = mosaic[mosaic["duplicate_of"].isna()].sort_values(["created", "pers_person_id"], kind="stable")
    masters = masters.drop_duplicates("person_key").set_index("person_key")
    keys = members["person_key"].to_numpy()
    known = pd.Index(masters.index).get_indexer(keys) >= 0
    created = _day(masters["created"].reindex(keys))
    exists = known & (created <= members["FROM_DATE"].to_numpy())
    recorded = _stream(world, "csc_id").random(len(members)) < CSC_ID_RECORDED
    ids = masters["pers_person_id"].reindex(keys).to_numpy(dtype=object)
    return np.where(exists & recorded, ids, None).astype(object)


# ------------------------------------------------------------------ families table
def _families_table(world: World, families: pd.DataFrame, members: pd.DataFrame, refs: pd.DataFrame,
                    assessments: pd.DataFrame) -> Table:
    versions = _address_versions(world, families)
    fam = versions.merge(_main_carers(members), on="FAMILY_ID", how="left")
    fam = fam.merge(_consent(world, refs), on="FAMILY_ID", how="left")
    fam = fam.merge(_supporting_families_since(assessments), on="FAMILY_ID", how="left")
    records = pd.DataFrame({
        "FAMILY_ID": fam["FAMILY_ID"].to_numpy(), "MAIN_CARER_PERSON_ID": fam["main_carer"].to_numpy(dtype=object),
        "ADDRESS_1": fam["ADDRESS_1"].to_numpy(), "ADDRESS_2": fam["ADDRESS_2"].to_numpy(),
        "TOWN": fam["TOWN"].to_numpy(), "POSTCODE": fam["POSTCODE"].to_numpy(), "UPRN": fam["UPRN"].to_numpy(),
        "DISTRICT": fam["DISTRICT"].to_numpy(), "SF_ELIGIBLE": "Y", "CONSENT_DATE": _uk(fam["consent_date"]),
        "_created": _day(fam["_created"]), "_deleted": _day(fam["_deleted"]),
        "_sf_known": _day(fam["sf_since"]), "_consent_known": _day(fam["consent_known"]),
    })
    return Table("FAMILIES.csv", records, reveal={"SF_ELIGIBLE": "_sf_known", "CONSENT_DATE": "_consent_known"},
                 blank_as={"SF_ELIGIBLE": "N"})


def _address_versions(world: World, families: pd.DataFrame) -> pd.DataFrame:
    """The address each family record shows over time, one row per version with the
    dates it was shown (``_created`` to ``_deleted``).

    The address is the household's at the family's creation. A move is typed in weeks
    later, except on ``stale_address`` of the records, which keep the old address.
    """
    rates = world.config.defects
    stale = _stream(world, "stale_address").random(len(families)) < rates.stale_address
    residences = world.population.residences[["household_key", "valid_from"]]
    moves = families.loc[~stale, ["FAMILY_ID", "household_key", "created"]].merge(residences, on="household_key")
    moves["valid_from"] = _day(moves["valid_from"])
    moves = moves[moves["valid_from"] > moves["created"]].sort_values(["FAMILY_ID", "valid_from"], kind="stable")
    lag = _stream(world, "move_lag").integers(7, 91, len(moves)) * DAY
    versions = pd.concat([
        pd.DataFrame({"FAMILY_ID": families["FAMILY_ID"].to_numpy(), "household_key": families["household_key"].to_numpy(),
                      "lived_from": families["created"].to_numpy(), "_created": families["created"].to_numpy()}),
        pd.DataFrame({"FAMILY_ID": moves["FAMILY_ID"].to_numpy(), "household_key": moves["household_key"].to_numpy(),
                      "lived_from": moves["valid_from"].to_numpy(), "_created": moves["valid_from"].to_numpy() + lag}),
    ], ignore_index=True).sort_values(["FAMILY_ID", "lived_from"], kind="stable").reset_index(drop=True)
    # Typed in order: a later move is never recorded before an earlier one.
    versions["_created"] = versions.groupby("FAMILY_ID")["_created"].cummax()
    versions["_deleted"] = versions.groupby("FAMILY_ID")["_created"].shift(-1)
    address = world.address_at(versions["household_key"].to_numpy(), versions["lived_from"].to_numpy())
    flat = address["flat"].fillna("").to_numpy(dtype=object)
    street = (address["house"].astype(str) + " " + address["street"].astype(str)).to_numpy(dtype=object)
    has_flat = flat != ""
    versions["ADDRESS_1"] = np.where(has_flat, flat, street)
    versions["ADDRESS_2"] = np.where(has_flat, street, None)
    versions["TOWN"] = address["town"].to_numpy(dtype=object)
    postcode = pd.Series(address["postcode"].to_numpy(dtype=object), dtype=object)
    versions["POSTCODE"] = D.postcode_format(postcode, _stream(world, "postcode"), rates.postcode_format,
                                             rates.postcode_placeholder).to_numpy(dtype=object)
    uprn = pd.Series(address["uprn"].to_numpy(dtype=object), dtype=object)
    versions["UPRN"] = D.blank(uprn, _stream(world, "uprn"), UPRN_BLANK).to_numpy(dtype=object)
    versions["DISTRICT"] = address["district"].to_numpy(dtype=object)
    return versions


def _main_carers(members: pd.DataFrame) -> pd.DataFrame:
    """The mother's PERSON_ID, or the resident father's where the mother is not on the record."""
    adults = members[members["kind"].isin(["mother", "father"])]
    adults = adults.assign(_mother_first=(adults["kind"] != "mother")).sort_values(
        ["FAMILY_ID", "_mother_first", "PERSON_ID"], kind="stable").drop_duplicates("FAMILY_ID")
    return pd.DataFrame({"FAMILY_ID": adults["FAMILY_ID"].to_numpy(),
                         "main_carer": adults["PERSON_ID"].astype(str).to_numpy(dtype=object)})


def _consent(world: World, refs: pd.DataFrame) -> pd.DataFrame:
    """Consent is signed with the first accepted referral, a few days before it arrives."""
    accepted = refs[refs["accepted"].astype(bool)].drop_duplicates("FAMILY_ID")
    before = _stream(world, "consent").integers(0, 4, len(accepted)) * DAY
    known = accepted["referral_date"].to_numpy()
    return pd.DataFrame({"FAMILY_ID": accepted["FAMILY_ID"].to_numpy(), "consent_date": known - before,
                         "consent_known": known})


def _supporting_families_since(assessments: pd.DataFrame) -> pd.DataFrame:
    """A family is eligible from the completion of its first assessment with 3+ headline needs."""
    qualifying = assessments[(assessments["n_needs"] >= 3) & assessments["completed"].notna()]
    since = qualifying.groupby("FAMILY_ID")["completed"].min()
    return pd.DataFrame({"FAMILY_ID": since.index.to_numpy(), "sf_since": since.to_numpy()})


# ------------------------------------------------------------------ referrals and episodes
def _referrals_table(refs: pd.DataFrame, members: pd.DataFrame) -> Table:
    person_id = refs.merge(members[["FAMILY_ID", "person_key", "PERSON_ID"]], on=["FAMILY_ID", "person_key"],
                           how="left")["PERSON_ID"]
    records = pd.DataFrame({
        "REFERRAL_ID": REFERRAL_ID_BASE + refs["referral_no"].to_numpy(np.int64),
        "FAMILY_ID": refs["FAMILY_ID"].to_numpy(), "PERSON_ID": person_id.astype("Int64").to_numpy(),
        "REFERRAL_DATE": _uk(refs["referral_date"]), "REFERRAL_SOURCE": refs["source_code"].to_numpy(dtype=object),
        "ROUTE": refs["route"].to_numpy(dtype=object), "MASH_CONTACT_ID": refs["mash_contact_id"].to_numpy(dtype=object),
        "ACCEPTED": np.where(refs["accepted"].astype(bool), "Y", "N"),
        "REASON_NOT_ACCEPTED": refs["reason_not_accepted"].to_numpy(dtype=object),
        "_created": refs["referral_date"].to_numpy(),
    })
    return Table("REFERRALS.csv", records.sort_values("REFERRAL_ID", kind="stable"))


def _episodes(world: World, refs: pd.DataFrame) -> pd.DataFrame:
    eps = world.services["eh_episodes"].copy()
    for column in ("start_date", "allocated_date", "end_date"):
        eps[column] = _day(eps[column])
    eps = eps.merge(refs[["referral_no", "FAMILY_ID"]], on="referral_no", how="left")
    eps = eps.sort_values(["start_date", "referral_no"], kind="stable").reset_index(drop=True)
    eps["EPISODE_ID"] = _ids(EPISODE_ID_BASE, len(eps))
    csc = world.services["csc_referrals"]
    if "eh_episode_no" in csc:
        up = csc[csc["eh_episode_no"].notna()]
        mosaic_id = pd.Series(up["cine_referral_id"].to_numpy(dtype=object), index=up["eh_episode_no"].astype(np.int64).to_numpy())
        mosaic_id = mosaic_id[~mosaic_id.index.duplicated()]
        step_up_id = eps["episode_no"].astype(np.int64).map(mosaic_id).to_numpy(dtype=object)
    else:
        step_up_id = np.full(len(eps), None, dtype=object)
    eps["step_up_referral_id"] = np.where(eps["end_reason"].to_numpy(dtype=object) == "STEP_UP", step_up_id, None)
    return eps


def _episodes_table(eps: pd.DataFrame) -> Table:
    district = eps["district"].to_numpy(dtype=object)
    records = pd.DataFrame({
        "EPISODE_ID": eps["EPISODE_ID"].to_numpy(), "FAMILY_ID": eps["FAMILY_ID"].to_numpy(),
        "REFERRAL_ID": REFERRAL_ID_BASE + eps["referral_no"].to_numpy(np.int64),
        "START_DATE": _uk(eps["start_date"]), "ALLOCATED_DATE": _uk(eps["allocated_date"]),
        "KEY_WORKER_ID": eps["key_worker_id"].to_numpy(dtype=object),
        # a waiting family already sits on its district team's list
        "TEAM": ("EH " + pd.Series(district, dtype=object).str.title()).to_numpy(dtype=object),
        "DISTRICT": district, "END_DATE": _uk(eps["end_date"]),
        "END_REASON": eps["end_reason"].to_numpy(dtype=object),
        "STEP_UP_REFERRAL_ID": eps["step_up_referral_id"].to_numpy(dtype=object),
        "_created": eps["start_date"].to_numpy(), "_allocated": eps["allocated_date"].to_numpy(),
        "_ended": eps["end_date"].to_numpy(),
    })
    reveal = {"ALLOCATED_DATE": "_allocated", "KEY_WORKER_ID": "_allocated", "END_DATE": "_ended",
              "END_REASON": "_ended", "STEP_UP_REFERRAL_ID": "_ended"}
    return Table("EPISODES.csv", records, reveal=reveal)


# ------------------------------------------------------------------ assessments and reviews
def _children_aged(people: pd.DataFrame, household_keys: np.ndarray, when: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Whether each household had a living child aged lo <= age < hi on each date."""
    kids = people.loc[people["role"].to_numpy() == "child", ["household_key", "birth_date", "death_date"]]
    query = pd.DataFrame({"row": np.arange(len(household_keys)), "household_key": household_keys, "when": when})
    pairs = query.merge(kids, on="household_key")
    age = _years_between(pairs["birth_date"], pairs["when"])
    death = _day(pairs["death_date"])
    alive = np.isnat(death) | (death > pairs["when"].to_numpy())
    out = np.zeros(len(household_keys), dtype=bool)
    out[pairs["row"].to_numpy()[(age >= lo) & (age < hi) & alive]] = True
    return out


def _assessments(world: World, people: pd.DataFrame, eps: pd.DataFrame) -> pd.DataFrame:
    """One family assessment per allocated episode, begun soon after allocation and
    signed off two to six weeks later (never, if the episode closes first)."""
    rng = _stream(world, "assessments")
    alloc = eps[eps["allocated_date"].notna()].reset_index(drop=True)
    n = len(alloc)
    start = alloc["allocated_date"].to_numpy() + rng.integers(0, 15, n) * DAY
    completed = start + rng.integers(14, 43, n) * DAY
    end = alloc["end_date"].to_numpy()
    completed = np.where(~np.isnat(end) & (completed > end), np.datetime64("NaT"), completed)
    households = alloc["household_key"].to_numpy()
    needs = world.needs.at(households, start)
    under_five = _children_aged(people, households, start, 0, 5)
    codes, count = _headline_needs(rng, needs, under_five)
    out = pd.DataFrame({
        "EPISODE_ID": alloc["EPISODE_ID"].to_numpy(), "FAMILY_ID": alloc["FAMILY_ID"].to_numpy(),
        "start": start, "completed": completed, "NEEDS": codes, "n_needs": count,
    }).sort_values(["start", "EPISODE_ID"], kind="stable").reset_index(drop=True)
    out["ASSESSMENT_ID"] = _ids(ASSESSMENT_ID_BASE, len(out))
    return out


def _headline_needs(rng: np.random.Generator, needs: pd.DataFrame, under_five: np.ndarray):
    """Supporting Families headline needs an assessor records from the family's true needs.

    Each parental need maps to its headline; a child's behaviour shows as education,
    family relationships or offending. Assessors miss some needs, and every assessed
    family has at least one headline need.
    """
    n = len(needs)
    seen = {need: needs[need].to_numpy() & (rng.random(n) >= ASSESSOR_MISSES) for need in NEEDS}
    behaviour = seen["child_behaviour"]
    abuse_or_drugs = seen["domestic_abuse"] | seen["substance_misuse"]
    any_need = np.column_stack(list(seen.values())).any(axis=1)
    flags = {code: np.zeros(n, dtype=bool) for code in HEADLINE}
    for need, code in NEED_HEADLINE.items():
        flags[code] |= seen[need]
    flags["EDU"] |= behaviour & (rng.random(n) < 0.6)
    flags["REL"] |= (behaviour & (rng.random(n) < 0.5)) | (seen["domestic_abuse"] & (rng.random(n) < 0.3))
    flags["CRI"] |= behaviour & (rng.random(n) < 0.25)
    flags["SAFE"] |= abuse_or_drugs & (rng.random(n) < 0.4)
    flags["EYD"] |= under_five & any_need & (rng.random(n) < 0.35)
    none = ~np.column_stack(list(flags.values())).any(axis=1)
    fallback = np.asarray(["REL", "EDU", "HEA"])[rng.integers(0, 3, n)]
    for code in ("REL", "EDU", "HEA"):
        flags[code] |= none & (fallback == code)
    count = np.column_stack(list(flags.values())).sum(axis=1)
    return _join_codes(flags, n), count


def _assessments_table(assessments: pd.DataFrame) -> Table:
    records = pd.DataFrame({
        "ASSESSMENT_ID": assessments["ASSESSMENT_ID"].to_numpy(), "EPISODE_ID": assessments["EPISODE_ID"].to_numpy(),
        "FAMILY_ID": assessments["FAMILY_ID"].to_numpy(), "START_DATE": _uk(assessments["start"]),
        "COMPLETED_DATE": _uk(assessments["completed"]), "NEEDS": assessments["NEEDS"].to_numpy(),
        "_created": _day(assessments["start"]), "_completed": _day(assessments["completed"]),
    })
    # needs are signed off with the assessment; a draft shows none
    return Table("ASSESSMENTS.csv", records, reveal={"COMPLETED_DATE": "_completed", "NEEDS": "_completed"})


def _reviews(world: World, people: pd.DataFrame, eps: pd.DataFrame) -> pd.DataFrame:
    """Team-around-the-family reviews every six to eight weeks from allocation until the
    episode closes, rated red, amber or green by how the family is doing."""
    rng = _stream(world, "reviews")
    alloc = eps[eps["allocated_date"].notna()].reset_index(drop=True)
    allocated = alloc["allocated_date"].to_numpy()
    end = alloc["end_date"].to_numpy()
    last_day = np.datetime64(world.config.end, "ns") + DAY
    horizon = ((np.where(np.isnat(end), last_day, end) - allocated) / DAY).astype(np.int64)
    per_episode = horizon // REVIEW_EVERY_DAYS[0] + 1
    row = np.repeat(np.arange(len(alloc)), per_episode)
    gap = rng.integers(REVIEW_EVERY_DAYS[0], REVIEW_EVERY_DAYS[1] + 1, len(row))
    offset = pd.Series(gap).groupby(row).cumsum().to_numpy()
    held = offset < horizon[row]
    row, offset = row[held], offset[held]
    meeting = allocated[row] + offset * DAY
    households = alloc["household_key"].to_numpy()[row]
    needs = world.needs.at(households, meeting)
    out = pd.DataFrame({"EPISODE_ID": alloc["EPISODE_ID"].to_numpy()[row], "meeting": meeting})
    out["PLAN_RAG"] = _plan_rag(rng, needs, alloc.iloc[row], offset)
    out["AGENCIES"] = _agencies(rng, needs, _children_aged(people, households, meeting, 0, 5),
                                _children_aged(people, households, meeting, 4, 19))
    out = out.sort_values(["meeting", "EPISODE_ID"], kind="stable").reset_index(drop=True)
    out["REVIEW_ID"] = _ids(REVIEW_ID_BASE, len(out))
    return out


def _plan_rag(rng: np.random.Generator, needs: pd.DataFrame, episode: pd.DataFrame, offset: np.ndarray) -> np.ndarray:
    """More needs and a worse eventual ending make a redder plan, increasingly so as the
    episode goes on; an episode that ends well turns green."""
    n = len(needs)
    duration = ((episode["end_date"].to_numpy() - episode["allocated_date"].to_numpy()) / DAY)
    progress = np.where(np.isnan(duration), np.minimum(offset / 150, 1.0), np.minimum(offset / np.maximum(duration, 1), 1.0))
    trend = episode["end_reason"].map(OUTCOME_TREND).fillna(0.0).to_numpy(dtype=float)
    score = (0.55 * needs.sum(axis=1).to_numpy() + 0.25 * episode["severity"].to_numpy(dtype=float)
             + trend * progress + rng.normal(0, 0.6, n))
    return np.where(score >= 1.7, "R", np.where(score >= 0.7, "A", "G")).astype(object)


def _agencies(rng: np.random.Generator, needs: pd.DataFrame, under_five: np.ndarray, school_age: np.ndarray) -> np.ndarray:
    """Who came to the meeting: the agencies the family's needs involve."""
    n = len(needs)
    has = {need: needs[need].to_numpy() for need in NEEDS}

    def chance(p):
        return rng.random(n) < p

    flags = {
        "SCHOOL": school_age & chance(0.9),
        "HEALTH": (under_five & chance(0.85)) | ((has["mental_health"] | has["substance_misuse"]) & chance(0.7))
                  | chance(0.2),
        "POLICE": (has["domestic_abuse"] & chance(0.8)) | (has["child_behaviour"] & chance(0.3))
                  | (has["substance_misuse"] & chance(0.4)),
        "HOUSING": (has["housing"] & chance(0.85)) | (has["poverty"] & chance(0.25)),
        "CAMHS": has["child_behaviour"] & school_age & chance(0.3),
        "DWP": has["poverty"] & chance(0.35),
    }
    nobody = ~np.column_stack(list(flags.values())).any(axis=1)
    flags["SCHOOL"] |= nobody & school_age
    flags["HEALTH"] |= nobody & ~school_age
    return _join_codes(flags, n)


def _reviews_table(reviews: pd.DataFrame) -> Table:
    records = pd.DataFrame({
        "REVIEW_ID": reviews["REVIEW_ID"].to_numpy(), "EPISODE_ID": reviews["EPISODE_ID"].to_numpy(),
        "MEETING_DATE": _uk(reviews["meeting"]), "PLAN_RAG": reviews["PLAN_RAG"].to_numpy(),
        "AGENCIES": reviews["AGENCIES"].to_numpy(), "_created": _day(reviews["meeting"]),
    })
    return Table("TAF_REVIEWS.csv", records)


# ------------------------------------------------------------------ workers
def _workers_table(world: World) -> Table:
    """Every key worker post, and a team manager per district plus the service manager."""
    rng = _stream(world, "workers")
    posts = world.services["key_workers"].sort_values("worker_id", kind="stable")
    districts = sorted(posts["district"].unique())
    managers = pd.DataFrame({
        "worker_id": [str(MANAGER_ID_BASE + i) for i in range(len(districts) + 1)],
        "district": [*districts, None], "fte": 1.0, "role": "MANAGER",
        "team": [f"EH {d.title()}" for d in districts] + ["EH Service"],
        "start_date": np.datetime64(world.config.start, "ns") - rng.integers(365, 4000, len(districts) + 1) * DAY,
    })
    staff = pd.concat([posts[managers.columns], managers], ignore_index=True)
    forename, surname = _staff_names(rng, len(staff))
    records = pd.DataFrame({
        "WORKER_ID": staff["worker_id"].astype(str).to_numpy(), "SURNAME": surname, "FORENAME": forename,
        "ROLE": staff["role"].to_numpy(dtype=object), "TEAM": staff["team"].to_numpy(dtype=object),
        "DISTRICT": staff["district"].to_numpy(dtype=object),
        "FTE": staff["fte"].astype(float).map(str).to_numpy(dtype=object),  # 1.0, 0.8, 0.5
        "START_DATE": _uk(staff["start_date"]), "END_DATE": None,
        "_created": _day(staff["start_date"]),
    })
    records = records.assign(_order=records["WORKER_ID"].astype(np.int64)).sort_values("_order", kind="stable")
    return Table("WORKERS.csv", records)


def _staff_names(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    groups = list(GROUPS)
    group = rng.choice(groups, size=n, p=[GROUPS[g][0] for g in groups])
    sex = np.where(rng.random(n) < 0.8, "F", "M")  # early help staff are mostly women
    forename = np.empty(n, dtype=object)
    surname = np.empty(n, dtype=object)
    for g in groups:
        for s in ("F", "M"):
            mask = (group == g) & (sex == s)
            pool = GROUP_NAMES[g][s]
            forename[mask] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), mask.sum())]
        mask = group == g
        pool = GROUP_NAMES[g]["S"]
        surname[mask] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), mask.sum())]
    return forename, surname
