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
    """Share of records carrying each defect, per system where it differs."""

    forename_typo: float = 0.03
    surname_typo: float = 0.03
    nickname: dict[str, float] = field(
        default_factory=lambda: {"early_help": 0.12, "mash": 0.15, "social_care": 0.04}
    )
    dob_day_month_swap: float = 0.01
    mash_dob_approximate: float = 0.08
    mash_dob_blank: float = 0.05
    nhs_missing: dict[str, float] = field(
        default_factory=lambda: {
            "mash": 0.45, "early_help": 0.35, "social_care": 0.15, "health": 0.01
        }
    )
    upn_missing: dict[str, float] = field(
        default_factory=lambda: {"mash": 0.50, "early_help": 0.40, "social_care": 0.30}
    )
    invalid_check_digit: float = 0.01
    postcode_format: float = 0.10
    postcode_placeholder: float = 0.01
    mosaic_duplicate: float = 0.04
    mosaic_duplicate_merged: float = 0.6
    early_help_new_family_on_rereferral: float = 0.25
    surname_change: float = 0.02
    hyphenated_surname_partial: float = 0.3
    stale_address: float = 0.15


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
    defects: Defects = field(default_factory=Defects)
    calibration: Calibration = field(default_factory=Calibration)

    def __post_init__(self) -> None:
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
