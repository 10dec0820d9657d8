"""Everything that shapes the synthetic city, in one place.

Rates are per child unless stated, calibrated for the default city of 120,000 children
and scaled linearly with ``children``. Defect rates are the share of a system's person
records that carry the defect; they are what identity reconciliation must overcome.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np

SYSTEMS = ("education", "health", "social_care", "early_help", "mash")
DISTRICTS = ("NORTH", "EAST", "SOUTH", "WEST", "CENTRAL")


@dataclass(frozen=True)
class Defects:
    """Share of records carrying each defect, per system where it differs.

    A plain float is the rate in every system that applies the defect (a system may
    scale it: the MASH types names at 1.5x the typo rate, health at 1/6 and education at
    1/3; Mosaic's duplicate records add 0.1 to the typo rates and 0.05 to the date swap).
    A dict gives the rate per system; a system missing from it never has the defect.
    The defaults are the error profile the project was developed on (``"default"`` in
    ``DEFECT_PROFILES``); other named profiles are listed below the class.
    """

    # Names
    forename_typo: float = 0.03  # one letter dropped, doubled, transposed or mistyped
    surname_typo: float = 0.03  # the same, in the surname
    # the forename typed as a common short form (William -> Bill), of the records whose
    # forename has one (``names.NICKNAMES``); early help often keeps it in KNOWN_AS
    nickname: dict[str, float] = field(
        default_factory=lambda: {"early_help": 0.12, "mash": 0.15, "social_care": 0.04}
    )
    # forename and surname typed in each other's field (Smith Jack for Jack Smith): the
    # record still describes the same person, as truth/records.csv says
    name_swap: dict[str, float] = field(
        default_factory=lambda: {"mash": 0.0, "early_help": 0.0, "social_care": 0.0}
    )
    # Dates of birth
    dob_day_month_swap: float = 0.01  # 02/05 typed as 05/02, where that is still a date
    mash_dob_approximate: float = 0.08  # a referrer's guess: first of the month or 1 July
    mash_dob_blank: float = 0.05  # no date of birth at all
    # Identifiers: the share of records without the NHS number (or UPN) the person has
    nhs_missing: dict[str, float] = field(
        default_factory=lambda: {
            "mash": 0.45, "early_help": 0.35, "social_care": 0.15, "health": 0.01
        }
    )
    upn_missing: dict[str, float] = field(
        default_factory=lambda: {"mash": 0.50, "early_help": 0.40, "social_care": 0.30}
    )
    invalid_check_digit: float = 0.01  # a typed NHS number or UPN that fails its check
    # Addresses
    postcode_format: float = 0.10  # lower case, no space or a double space
    postcode_placeholder: float = 0.01  # XXXX or the no-fixed-abode code ZZ99 3VZ
    # a record still showing a previous address after a move: the MASH is given the
    # address of 400 days before, an early help family record is never updated after a
    # move, and education learns of the move 30-240 days late
    stale_address: float = 0.15
    # Records
    mosaic_duplicate: float = 0.04  # children with a second Mosaic person record
    mosaic_duplicate_merged: float = 0.6  # of those duplicates, later merged (pers_duplicate_of)
    early_help_new_family_on_rereferral: float = 0.25  # a returning family typed in again
    surname_change: float = 0.02  # children whose surname changes during the period
    hyphenated_surname_partial: float = 0.3  # a double-barrelled surname cut to one half


# The named error profiles of ``earlyhelp synth --defects``. Each profile changes only
# defect rates, never volumes or service rates, and never the truth: the same seed
# gives the same people, records and truth/ files under every profile.
DEFECT_PROFILES: dict[str, Defects] = {
    # what the project was developed and calibrated on; byte-identical to having no flag
    "default": Defects(),
    # a messier council: about 2.7x the name typos, twice the nicknames, forename and
    # surname swapped on a few per cent of front-door records, three times the date
    # swaps, NHS numbers and UPNs missing 20 points more often, twice the stale
    # addresses. Every record keeps enough (names, birth date, address) to be linked.
    "high": Defects(
        forename_typo=0.08,
        surname_typo=0.08,
        nickname={"early_help": 0.25, "mash": 0.30, "social_care": 0.10},
        name_swap={"mash": 0.04, "early_help": 0.02, "social_care": 0.01},
        dob_day_month_swap=0.03,
        # health is the NHS's own record: a number is missing for a few more children only
        nhs_missing={"mash": 0.65, "early_help": 0.55, "social_care": 0.35, "health": 0.03},
        upn_missing={"mash": 0.70, "early_help": 0.60, "social_care": 0.50},
        stale_address=0.30,
    ),
    # a tidier council: half the name defects, no name swaps, identifiers missing about
    # 15 points less often, half the stale addresses
    "low": Defects(
        forename_typo=0.015,
        surname_typo=0.015,
        nickname={"early_help": 0.06, "mash": 0.08, "social_care": 0.02},
        dob_day_month_swap=0.005,
        nhs_missing={"mash": 0.30, "early_help": 0.20, "social_care": 0.05, "health": 0.005},
        upn_missing={"mash": 0.35, "early_help": 0.25, "social_care": 0.15},
        stale_address=0.08,
    ),
}


def defect_profile(name: str) -> Defects:
    """The named profile, or a ValueError that lists the known names."""
    try:
        return DEFECT_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown defect profile {name!r}; choose from {', '.join(DEFECT_PROFILES)}") from None


@dataclass(frozen=True)
class Calibration:
    """Targets for the default city, from the council review."""

    mash_contacts_per_month_per_120k: float = 1864.0
    # decision split of MASH contacts
    decision_share: dict[str, float] = field(
        default_factory=lambda: {
            "CSC_ASSESSMENT": 0.22, "TARGETED_EH": 0.13, "OTHER_SERVICE": 0.02, "IAG": 0.63
        }
    )
    # early help referral sources across all routes
    eh_source_share: dict[str, float] = field(
        default_factory=lambda: {"health": 0.32, "schools": 0.25, "self": 0.02}
    )
    eh_direct_referrals_per_month_per_120k: float = 190.0
    key_worker_families_standard: int = 11  # the 10-12 families a full-time worker holds
    key_worker_families_max: int = 12
    key_worker_staffing_ratio: float = 0.95  # funded capacity / steady-state demand
    twin_birth_share: float = 0.015
    births_per_1000_women_per_year: float = 58.0
    moves_per_household_per_year: float = 0.10


@dataclass(frozen=True)
class CityConfig:
    children: int = 120_000
    seed: int = 1
    start: date = date(2023, 1, 1)
    end: date = date(2025, 12, 31)
    go_live: date | None = None  # None: 27 days before end (four weeks of drops)
    la_code: str = "999"
    defects: Defects = field(default_factory=Defects)  # or the name of one of DEFECT_PROFILES
    calibration: Calibration = field(default_factory=Calibration)

    def __post_init__(self) -> None:
        if isinstance(self.defects, str):
            object.__setattr__(self, "defects", defect_profile(self.defects))
        if self.children < 50:
            raise ValueError("a city needs at least 50 children")
        if self.end <= self.start:
            raise ValueError("--end must come after --start")
        if self.go_live is None:
            object.__setattr__(self, "go_live", max(self.start, self.end - timedelta(days=27)))
        if not self.start <= self.go_live <= self.end:
            raise ValueError("--go-live must fall between --start and --end")

    @property
    def scale(self) -> float:
        """How this city's volumes compare with the 120,000-child default."""
        return self.children / 120_000

    def with_(self, **changes) -> "CityConfig":
        return replace(self, **changes)

    def rng(self, stream: str) -> np.random.Generator:
        """An independent random stream per component, so adding one never shifts another."""
        return np.random.default_rng([self.seed, zlib.crc32(stream.encode())])
