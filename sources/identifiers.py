"""NHS number, UPN and ULN check-digit rules (CODES.md), as pure functions.

The scalar ``is_valid_*`` functions are what the pipeline uses to decide whether an
identifier may serve as a link key. The vectorised ``*_check`` functions compute check
digits for whole numpy arrays so that the synthetic city can issue millions of
identifiers without a Python loop.
"""

from __future__ import annotations

import re

import numpy as np

UPN_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"  # no I, O, S
_UPN_LETTER_VALUE = {letter: i for i, letter in enumerate(UPN_ALPHABET)}
_NHS_WEIGHTS = np.arange(10, 1, -1)  # 10..2 on digits 1..9
_UPN_WEIGHTS = np.arange(2, 14)  # 2..13 on characters 2..13

SYNTHETIC_NHS_RANGE = (9_990_000_000, 9_999_999_999)


# ---------------------------------------------------------------- NHS number
def normalise_nhs_number(value: str | None) -> str | None:
    """Strip the spaces and dashes people type; None when nothing is left."""
    if value is None:
        return None
    digits = re.sub(r"[\s-]", "", str(value))
    return digits or None


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus 11 check digit for nine digits; None when the result is 10 (invalid)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str | None) -> bool:
    digits = normalise_nhs_number(value)
    if digits is None or len(digits) != 10 or not digits.isdigit():
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def is_synthetic_nhs_number(value: str | None) -> bool:
    digits = normalise_nhs_number(value)
    return bool(digits) and is_valid_nhs_number(digits) and digits.startswith("999")


def nhs_check_digits(first_nine: np.ndarray) -> np.ndarray:
    """Vectorised check digits for an int64 array of 9-digit bases; -1 where invalid."""
    digits = (first_nine[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    check = 11 - (digits * _NHS_WEIGHTS).sum(axis=1) % 11
    check = np.where(check == 11, 0, check)
    return np.where(check == 10, -1, check)


# ---------------------------------------------------------------- UPN
def upn_check_letter(last_twelve: str) -> str:
    total = 0
    for weight, char in zip(range(2, 14), last_twelve):
        total += weight * (int(char) if char.isdigit() else _UPN_LETTER_VALUE[char])
    return UPN_ALPHABET[total % 23]


_UPN_SHAPE = re.compile(r"^[A-Z][0-9]{11}[0-9A-Z]$")


def is_valid_upn(value: str | None) -> bool:
    """A permanent or temporary UPN whose first character is its check letter."""
    if not value:
        return False
    upn = str(value).strip().upper()
    if not _UPN_SHAPE.match(upn):
        return False
    if any(c not in UPN_ALPHABET for c in upn if c.isalpha()):
        return False
    return upn_check_letter(upn[1:]) == upn[0]


def upn_check_letters(last_twelve: np.ndarray) -> np.ndarray:
    """Vectorised check letters for an array of 12-character strings (digits only)."""
    codes = np.frombuffer("".join(last_twelve).encode("ascii"), dtype=np.uint8)
    values = codes.reshape(-1, 12).astype(np.int64) - ord("0")
    index = (values * _UPN_WEIGHTS).sum(axis=1) % 23
    return np.asarray(list(UPN_ALPHABET))[index]


# ---------------------------------------------------------------- ULN
def is_valid_uln(value: str | None) -> bool:
    if not value or len(value) != 10 or not value.isdigit() or value[0] == "0":
        return False
    remainder = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1))) % 11
    return remainder != 0 and int(value[9]) == 10 - remainder


def uln_check_digits(first_nine: np.ndarray) -> np.ndarray:
    """Vectorised ULN check digits; -1 where the remainder is 0 (no valid check)."""
    digits = (first_nine[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    remainder = (digits * _NHS_WEIGHTS).sum(axis=1) % 11
    return np.where(remainder == 0, -1, 10 - remainder)
