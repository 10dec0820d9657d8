"""The ways a system's record of a person goes wrong, as vectorised transforms.

Each function takes whole columns plus a random generator and a rate, and returns the
damaged column; rates come from ``config.Defects``. A defect is applied independently in
each system, as happens when five teams type the same child into five systems.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from ..identifiers import UPN_ALPHABET
from .names import NICKNAMES

_KEYBOARD_NEIGHBOURS = {
    "a": "sq", "e": "wr", "i": "uo", "o": "ip", "n": "bm", "m": "n", "r": "et", "t": "ry",
    "l": "k", "s": "ad", "h": "gj", "y": "tu", "c": "xv", "d": "sf", "k": "jl", "u": "yi",
}


def typo(values: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Drop, double, swap or mistype one letter in ``rate`` of the values."""
    out = values.astype(object).copy()
    hit = np.flatnonzero((rng.random(len(out)) < rate) & out.notna().to_numpy())
    kinds = rng.integers(0, 4, len(hit))
    for i, kind in zip(hit, kinds):  # only the damaged ~3% pass through Python
        s = out.iat[i]
        if len(s) < 4:
            continue
        p = int(rng.integers(1, len(s) - 1))
        if kind == 0:
            s = s[:p] + s[p + 1:]
        elif kind == 1:
            s = s[:p] + s[p] + s[p:]
        elif kind == 2:
            s = s[:p] + s[p + 1] + s[p] + s[p + 2:]
        else:
            c = s[p].lower()
            s = s[:p] + (_KEYBOARD_NEIGHBOURS.get(c, c)[0]) + s[p + 1:]
        out.iat[i] = s
    return out


def nickname(forenames: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Replace ``rate`` of the names that have a common short form with one of them."""
    out = forenames.astype(object).copy()
    has = out.isin(NICKNAMES.keys()).to_numpy()
    hit = np.flatnonzero(has & (rng.random(len(out)) < rate))
    for i in hit:
        options = NICKNAMES[out.iat[i]]
        out.iat[i] = options[int(rng.integers(0, len(options)))]
    return out


def swap_day_month(dates: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Swap day and month where that still makes a date (02/05 typed as 05/02)."""
    d = pd.to_datetime(dates)
    hit = (rng.random(len(d)) < rate) & d.notna().to_numpy() & (d.dt.day <= 12).to_numpy() & (
        d.dt.day != d.dt.month).to_numpy()
    swapped = pd.to_datetime(
        {"year": d.dt.year, "month": d.dt.day.where(hit, 1), "day": d.dt.month.where(hit, 1)}, errors="coerce"
    )
    return d.where(~hit, swapped)


def swap_names(forenames: pd.Series, surnames: pd.Series, rng: np.random.Generator,
               rate: float) -> tuple[pd.Series, pd.Series]:
    """Exchange forename and surname in ``rate`` of the records that have both, as when
    "Smith, Jack" is typed into a form's first-name box. Draws from ``rng`` whatever the
    rate, so give it a stream of its own."""
    first = forenames.astype(object)
    last = pd.Series(np.asarray(surnames, dtype=object), index=first.index, dtype=object)
    hit = (rng.random(len(first)) < rate) & first.notna().to_numpy() & last.notna().to_numpy()
    if not hit.any():
        return first, last
    return first.where(~hit, last), last.where(~hit, first)


def shorten_hyphenated(surnames: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Keep one half of a double-barrelled surname, as a hurried form often does."""
    s = surnames.astype(object)
    has = s.str.contains("-", na=False).to_numpy()
    hit = has & (rng.random(len(s)) < rate)
    parts = s.str.split("-")
    first = rng.random(len(s)) < 0.5
    half = np.where(first, parts.str[0], parts.str[-1])
    return s.where(~hit, pd.Series(half, index=s.index))


def postcode_format(postcodes: pd.Series, rng: np.random.Generator, rate: float,
                    placeholder_rate: float = 0.0) -> pd.Series:
    """Lower case, no space or double space in ``rate``; placeholders in a few."""
    s = postcodes.astype(object).copy()
    draw = rng.random(len(s))
    kind = rng.integers(0, 3, len(s))
    lower = s.str.lower()
    nospace = s.str.replace(" ", "", regex=False)
    double = s.str.replace(" ", "  ", regex=False)
    styled = np.select([kind == 0, kind == 1], [lower, nospace], double)
    s = s.where(~(draw < rate), pd.Series(styled, index=s.index))
    placeholder = np.where(rng.random(len(s)) < 0.5, "XXXX", "ZZ99 3VZ")  # no fixed abode code
    hit = (draw >= rate) & (draw < rate + placeholder_rate)
    return s.where(~hit, pd.Series(placeholder, index=s.index))


def corrupt_nhs_number(values: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Mistype one digit so that the modulus 11 check fails."""
    from ..identifiers import is_valid_nhs_number

    out = values.astype(object).copy()
    hit = np.flatnonzero(out.notna().to_numpy() & (rng.random(len(out)) < rate))
    for i in hit:
        digits = list(out.iat[i])
        for _ in range(10):
            p = int(rng.integers(3, 10))
            digits[p] = str((int(digits[p]) + int(rng.integers(1, 10))) % 10)
            if not is_valid_nhs_number("".join(digits)):
                break
        out.iat[i] = "".join(digits)
    return out


def corrupt_upn(values: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Change the check letter so that the UPN fails its check."""
    out = values.astype(object).copy()
    hit = np.flatnonzero(out.notna().to_numpy() & (rng.random(len(out)) < rate))
    for i in hit:
        upn = out.iat[i]
        wrong = UPN_ALPHABET[(UPN_ALPHABET.index(upn[0]) + int(rng.integers(1, 22))) % 23]
        out.iat[i] = wrong + upn[1:]
    return out


def blank(values: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    return values.astype(object).where(rng.random(len(values)) >= rate, None)


def spaced_nhs(values: pd.Series, rng: np.random.Generator, rate: float) -> pd.Series:
    """Write ``rate`` of NHS numbers 3-3-4 with spaces, as people type them."""
    s = values.astype(object)
    spaced = s.str.slice(0, 3) + " " + s.str.slice(3, 6) + " " + s.str.slice(6)
    return s.where(~(rng.random(len(s)) < rate), spaced)


def to_cp1252(values: pd.Series) -> pd.Series:
    """What a Windows-1252 legacy system keeps of a name: accents it can hold survive,
    other letters are stripped to their base letter or become '?'."""
    def fold(text):
        if text is None or pd.isna(text):
            return text
        try:
            text.encode("cp1252")
            return text
        except UnicodeEncodeError:
            out = []
            for ch in text:
                try:
                    ch.encode("cp1252")
                    out.append(ch)
                except UnicodeEncodeError:
                    base = unicodedata.normalize("NFKD", ch)[0]
                    out.append(base if base.isascii() and base.isalpha() else "?")
            return "".join(out)

    values = pd.Series(values, dtype=object)
    distinct = pd.unique(values[values.notna()])  # names repeat: fold each once
    folded = values.map(dict(zip(distinct, map(fold, distinct)))).astype(object)
    return folded.where(values.notna(), None)
