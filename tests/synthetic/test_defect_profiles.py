"""Named defect profiles (``earlyhelp synth --defects``): ``high`` measurably damages
more records than ``default``, ``default`` is byte-identical to no flag, and the truth is
the same under every profile.

Rates are measured from the files on disk against the truth: truth/records.csv says
which person a record describes, and the city's population (rebuilt from the same
seed, which no profile changes) says who that person really is.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from sources.synthetic import defects as D
from sources.synthetic.city import generate_city
from sources.synthetic.config import DEFECT_PROFILES, CityConfig, Defects
from sources.synthetic.names import NICKNAMES
from sources.synthetic.world import build_world

CHILDREN, SEED = 2000, 1
PROFILES = ("default", "high", "low")
ENCODING = {"social_care": "utf-8-sig", "early_help": "cp1252"}
EH_STALE_LAG = timedelta(days=91)  # early help types a move in within 90 days unless the record is stale
MASH_STALE_LOOKBACK = np.timedelta64(400, "D")  # a stale MASH address is the one of 400 days before


# ------------------------------------------------------------------ reading a city
def _csv(path: Path, system: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=ENCODING.get(system, "utf-8"))


def _drops(landing: Path, system: str) -> list[Path]:
    return sorted(p for p in (landing / system).iterdir() if p.is_dir())


def person_records(out: Path) -> dict[str, pd.DataFrame]:
    """Each system's person records in one shape: record_id, forename, surname, dob,
    nhs, upn (blank as ""), plus the system's own extras. Snapshots are read from the
    last drop that has the table; the MASH deltas are folded to each row's newest version."""
    landing = out / "landing"
    mash = pd.concat([_csv(d / "contacts.csv", "mash") for d in _drops(landing, "mash")], ignore_index=True)
    mash = mash.drop_duplicates(["contact_id", "child_seq"], keep="last")
    sc = _csv(_drops(landing, "social_care")[-1] / "ssd_person.csv", "social_care")
    eh_drop = _drops(landing, "early_help")[-1]
    eh = _csv(eh_drop / "FAMILY_MEMBERS.csv", "early_help")
    census = [d for d in _drops(landing, "education") if (d / "pupils.csv").exists()][-1]
    pupils = _csv(census / "pupils.csv", "education")
    patients = []
    for line in (_drops(landing, "health")[-1] / "Patient.ndjson").read_text().splitlines():
        p = json.loads(line)
        official = next(n for n in p["name"] if n["use"] == "official")
        nhs = next((i["value"] for i in p.get("identifier", []) if i["system"].endswith("nhs-number")), "")
        patients.append({"record_id": p["id"], "forename": official["given"][0], "surname": official["family"],
                         "dob": p.get("birthDate", ""), "nhs": nhs, "upn": ""})
    uk = pd.to_datetime(eh["DOB"], format="%d/%m/%Y", errors="coerce").dt.strftime("%Y-%m-%d").fillna("")
    return {
        "mash": pd.DataFrame({
            "record_id": mash["contact_id"] + ":" + mash["child_seq"], "forename": mash["child_forename"],
            "surname": mash["child_surname"], "dob": mash["child_dob"], "nhs": mash["child_nhs_number"],
            "upn": mash["child_upn"], "address_line1": mash["address_line1"],
            "received_at": pd.to_datetime(mash["received_at"], utc=True).dt.tz_localize(None)}),
        "social_care": pd.DataFrame({
            "record_id": sc["pers_person_id"], "forename": sc["pers_forename"], "surname": sc["pers_surname"],
            "dob": sc["pers_dob"], "nhs": sc["pers_common_child_id"], "upn": sc["pers_upn"]}),
        "early_help": pd.DataFrame({
            "record_id": eh["PERSON_ID"], "forename": eh["FORENAME"], "surname": eh["SURNAME"], "dob": uk,
            "nhs": eh["NHS_NO"], "upn": eh["UPN"], "known_as": eh["KNOWN_AS"], "family_id": eh["FAMILY_ID"],
            "from_date": pd.to_datetime(eh["FROM_DATE"], format="%d/%m/%Y")}),
        "education": pd.DataFrame({
            "record_id": pupils["ONEPupilID"], "forename": pupils["Forename"], "surname": pupils["Surname"],
            "dob": pupils["DOB"], "nhs": "", "upn": pupils["UPN"]}),
        "health": pd.DataFrame(patients),
        "_families": _csv(eh_drop / "FAMILIES.csv", "early_help").assign(_extract=pd.Timestamp(eh_drop.name)),
    }


TABLE = {"mash": "contacts", "social_care": "ssd_person", "early_help": "FAMILY_MEMBERS", "education": "pupils",
         "health": "Patient"}


def _with_truth(records: pd.DataFrame, system: str, truth: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    keys = truth[(truth["system"] == system) & (truth["table"] == TABLE[system])].set_index("record_id")["person_key"]
    out = records.assign(person_key=records["record_id"].map(keys))
    assert out["person_key"].notna().all(), f"{system} records without truth"
    true = persons.loc[out["person_key"]].reset_index(drop=True)
    out = out.reset_index(drop=True)
    for column in ("forename", "surname", "surname_after", "birth_date", "nhs_number", "upn", "household_key"):
        out["true_" + column] = true[column].to_numpy()
    return out


def _fold(values: pd.Series) -> pd.Series:
    return pd.Series(values, dtype=object).fillna("").astype(str).str.casefold()


def _swapped_dob(iso: pd.Series) -> pd.Series:
    d = pd.to_datetime(iso)
    ok = (d.dt.day <= 12) & (d.dt.day != d.dt.month)
    swapped = pd.to_datetime({"year": d.dt.year, "month": d.dt.day.where(ok, 1), "day": d.dt.month.where(ok, 1)})
    return swapped.dt.strftime("%Y-%m-%d").where(ok, None)


def _line1(addresses: pd.DataFrame) -> pd.Series:
    flat = addresses["flat"].fillna("")
    return (flat.where(flat == "", flat + ", ") + addresses["house"].astype(str) + " " + addresses["street"]).reset_index(drop=True)


# which defects each system's person records carry (and so are measured there)
CARRIES = {
    "mash": ("forename_typo", "surname_typo", "nickname", "name_swap", "dob_swap", "nhs_missing", "upn_missing",
             "stale_address"),
    "social_care": ("forename_typo", "surname_typo", "nickname", "name_swap", "dob_swap", "nhs_missing",
                    "upn_missing"),
    "early_help": ("forename_typo", "surname_typo", "nickname", "name_swap", "dob_swap", "nhs_missing",
                   "upn_missing", "stale_address"),
    "education": ("forename_typo", "surname_typo"),
    "health": ("forename_typo", "surname_typo", "nhs_missing"),
}


def defect_counts(out: Path, world) -> pd.DataFrame:
    """Per system and defect, how many records carry it (``hits``) of how many could
    (``eligible``), measured against the truth. ``rate`` is their ratio.

    forename_typo / surname_typo: the name is none of the true forms (true name, short
    form, surname after a change, one half of a double-barrelled surname) nor swapped,
    of all records; nickname: the forename (or KNOWN_AS) is a short form, of records
    whose true forename has one; name_swap: forename and surname exchanged, of all
    records; dob_swap: day and month exchanged, of records whose true date allows it;
    nhs_missing / upn_missing: blank, of records whose person has one (early help: a
    UPN once at school); stale_address: the old address shown, of records whose
    household moved early enough for the move to be known.
    """
    truth = pd.read_csv(out / "truth" / "records.csv", dtype=str)
    persons = world.persons.set_index("person_key")
    tables = person_records(out)
    rows = []

    def count(system, defect, hit, eligible=None):
        hit = np.asarray(hit, dtype=bool)
        eligible = np.ones(len(hit), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        if defect in CARRIES[system]:
            rows.append({"system": system, "defect": defect, "hits": int((hit & eligible).sum()),
                         "eligible": int(eligible.sum())})

    for system in CARRIES:
        r = _with_truth(tables[system], system, truth, persons)
        r = r[r["forename"] != ""].reset_index(drop=True)  # unborn Mosaic records show no name until birth
        if system == "early_help":  # a Windows-1252 system: compare with what it can hold
            for column in ("true_forename", "true_surname", "true_surname_after"):
                r[column] = D.to_cp1252(r[column]).to_numpy()
        fore, sur = _fold(r["forename"]), _fold(r["surname"])
        true_fore = _fold(r["true_forename"])
        surnames = [_fold(r["true_surname"]), _fold(r["true_surname_after"])]
        for s in list(surnames):
            surnames += [s.str.split("-").str[0], s.str.split("-").str[-1]]
        sur_ok = np.logical_or.reduce([(sur == s).to_numpy() for s in surnames])
        fore_is_a_surname = np.logical_or.reduce([(fore == s).to_numpy() for s in surnames])
        swapped = (fore_is_a_surname & (fore != true_fore).to_numpy()) | ((sur == true_fore).to_numpy() & ~sur_ok)
        short = [{n.casefold() for n in NICKNAMES.get(name, [])} for name in r["true_forename"]]
        is_short = np.array([f in s for f, s in zip(fore, short)], dtype=bool)
        if "known_as" in r:
            is_short |= np.array([k in s for k, s in zip(_fold(r["known_as"]), short)], dtype=bool)
        count(system, "forename_typo", (fore != true_fore).to_numpy() & ~is_short & ~swapped)
        count(system, "surname_typo", ~sur_ok & ~swapped)
        count(system, "nickname", is_short, [bool(s) for s in short])
        count(system, "name_swap", swapped)
        can_swap = _swapped_dob(r["true_birth_date"].dt.strftime("%Y-%m-%d"))
        count(system, "dob_swap", r["dob"] == can_swap, can_swap.notna())
        count(system, "nhs_missing", r["nhs"] == "", r["true_nhs_number"].notna())
        has_upn = r["true_upn"].notna()
        if system == "early_help":  # early help records a UPN only once the child is at school
            has_upn &= _school_entry(r["true_birth_date"]) <= r["from_date"]
        count(system, "upn_missing", r["upn"] == "", has_upn)
        if system == "mash":
            count(system, "stale_address", *_mash_stale(r, world))
    count("early_help", "stale_address", *_early_help_stale(tables["_families"], tables["early_help"], truth, world))
    out = pd.DataFrame(rows)
    return out.assign(rate=out["hits"] / out["eligible"])


def pooled(counts: pd.DataFrame) -> pd.DataFrame:
    """Each defect over every system that carries it."""
    total = counts.groupby("defect")[["hits", "eligible"]].sum()
    return total.assign(rate=total["hits"] / total["eligible"])


def _school_entry(birth: pd.Series) -> pd.Series:
    year = birth.dt.year + (birth.dt.month >= 9).astype(int) + 4
    return pd.to_datetime(pd.DataFrame({"year": year, "month": 9, "day": 1}))


def _mash_stale(r: pd.DataFrame, world):
    """Of contacts whose household lived elsewhere 400 days before, the share that give that old address."""
    when = r["received_at"].to_numpy("datetime64[ns]")
    now = world.address_at(r["true_household_key"].to_numpy(), when)
    before = world.address_at(r["true_household_key"].to_numpy(), when - MASH_STALE_LOOKBACK)
    moved = (now["address_id"].to_numpy() != before["address_id"].to_numpy())
    shown = r["address_line1"].to_numpy()
    return shown == _line1(before).to_numpy(), moved


def _early_help_stale(families: pd.DataFrame, members: pd.DataFrame, truth: pd.DataFrame, world):
    """Of families whose household moved after the record was opened and long enough
    before the extract for the move to be typed in, the share still at the first address."""
    keys = truth[truth["system"] == "early_help"].set_index("record_id")["person_key"]
    households = world.persons.set_index("person_key")["household_key"]
    opened = members.groupby("family_id")["from_date"].min()  # the first member came with the family
    fam = families[families["MAIN_CARER_PERSON_ID"] != ""].copy()
    fam["household_key"] = fam["MAIN_CARER_PERSON_ID"].map(keys).map(households)
    fam["opened"] = fam["FAMILY_ID"].map(opened)
    fam = fam[fam["opened"].notna() & fam["household_key"].notna()]
    first = world.address_at(fam["household_key"].to_numpy(), fam["opened"].to_numpy("datetime64[ns]"))
    known = world.address_at(fam["household_key"].to_numpy(),
                             (fam["_extract"] - EH_STALE_LAG).to_numpy("datetime64[ns]"))
    moved = first["address_id"].to_numpy() != known["address_id"].to_numpy()
    street = (first["house"].astype(str) + " " + first["street"]).to_numpy(dtype=object)
    flat = first["flat"].fillna("").to_numpy(dtype=object)
    a1, a2 = fam["ADDRESS_1"].to_numpy(dtype=object), fam["ADDRESS_2"].to_numpy(dtype=object)
    shows_first = np.where(flat != "", (a1 == flat) & (a2 == street), a1 == street)
    return shows_first, moved


# ------------------------------------------------------------------ the cities
@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    """The same 2,000-child city (seed 1, the default three years) under each profile."""
    root = tmp_path_factory.mktemp("profiles")
    for name in PROFILES:
        generate_city(CityConfig(children=CHILDREN, seed=SEED, defects=name), root / name)
    return root


@pytest.fixture(scope="module")
def world():
    return build_world(CityConfig(children=CHILDREN, seed=SEED))  # who really lives in the city


@pytest.fixture(scope="module")
def counts(cities, world):
    return {name: defect_counts(cities / name, world) for name in PROFILES}


NAME_DEFECTS = ("forename_typo", "surname_typo", "nickname", "name_swap", "dob_swap", "stale_address")
IDENTIFIER_DEFECTS = ("nhs_missing", "upn_missing")


@pytest.mark.parametrize("defect", NAME_DEFECTS + IDENTIFIER_DEFECTS)
def test_high_raises_each_defect_over_the_systems_that_carry_it(counts, defect):
    default, high = pooled(counts["default"]).loc[defect], pooled(counts["high"]).loc[defect]
    assert default["eligible"] == high["eligible"] > 100, "the same records are measured under both profiles"
    if defect in IDENTIFIER_DEFECTS:  # configured 15-25 points higher
        assert high["rate"] >= default["rate"] + 0.08, (defect, default["rate"], high["rate"])
    elif defect == "name_swap":  # new in the high profile
        assert default["hits"] == 0 and high["rate"] > 0.01, (default["rate"], high["rate"])
    else:  # configured 2-3x the default
        assert high["rate"] >= 1.5 * default["rate"] > 0, (defect, default["rate"], high["rate"])


def test_high_raises_each_defect_in_each_system_with_enough_records(counts):
    default = counts["default"].set_index(["system", "defect"])
    high = counts["high"].set_index(["system", "defect"])
    measured = default.index[default["eligible"] >= 150]
    assert len(measured) >= 20
    for key in measured:
        assert high.loc[key, "rate"] > default.loc[key, "rate"], (key, default.loc[key, "rate"], high.loc[key, "rate"])
    # the swap appears where the brief puts it: the front door, early help and Mosaic
    swaps = high.xs("name_swap", level="defect")["hits"]
    assert (swaps > 0).all() and set(swaps.index) == {"mash", "early_help", "social_care"}


def test_low_lowers_the_defects(counts):
    default, low = pooled(counts["default"]), pooled(counts["low"])
    for defect in ("forename_typo", "surname_typo", "nickname", "dob_swap", "stale_address", *IDENTIFIER_DEFECTS):
        assert low.loc[defect, "rate"] < default.loc[defect, "rate"], defect
    assert low.loc["name_swap", "hits"] == 0


def test_truth_and_volumes_are_the_same_under_every_profile(cities):
    """A swapped or mistyped record still describes the same person: no profile changes
    who exists, which records there are or whom they describe, only how they read."""
    for file in ("persons.csv", "records.csv"):
        first = (cities / "default" / "truth" / file).read_bytes()
        assert all((cities / name / "truth" / file).read_bytes() == first for name in PROFILES), file

    def files(name):
        return {str(p.relative_to(cities / name / "landing")): p for p in (cities / name / "landing").rglob("*.*")}

    default = files("default")
    for name in PROFILES:
        other = files(name)
        assert set(other) == set(default)
        for rel in default:  # the same rows in every file
            if rel.endswith("_manifest.json"):
                rows = lambda p: [(f["name"], f["rows"]) for f in json.loads(p.read_text())["files"]]  # noqa: E731
                assert rows(other[rel]) == rows(default[rel]), (name, rel)


def test_high_keeps_identifiers_in_the_synthetic_ranges(cities):
    tables = person_records(cities / "high")
    nhs = pd.concat([tables[s]["nhs"] for s in ("mash", "social_care", "early_help", "health")])
    nhs = nhs[nhs != ""].str.replace(" ", "")
    assert nhs.str.fullmatch(r"999\d{7}").all(), "an NHS number outside the synthetic 999 range"
    upn = pd.concat([tables[s]["upn"] for s in ("mash", "social_care", "early_help", "education")])
    upn = upn[upn != ""]
    assert upn.str.fullmatch(r"[A-Z]999\d{8}[0-9A-Z]").all(), "a UPN outside the synthetic LA 999"


def test_profiles_change_only_defect_rates():
    assert set(DEFECT_PROFILES) >= {"default", "high"}
    assert DEFECT_PROFILES["default"] == Defects()
    for name, profile in DEFECT_PROFILES.items():
        config = CityConfig(children=300, defects=name)
        assert config.defects == profile and config.calibration == CityConfig().calibration
        for field_name in ("mosaic_duplicate", "surname_change", "early_help_new_family_on_rereferral"):
            assert getattr(profile, field_name) == getattr(Defects(), field_name), (name, field_name)
    with pytest.raises(ValueError, match="unknown defect profile 'extreme'; choose from default, high"):
        CityConfig(defects="extreme")


# ------------------------------------------------------------------ the command
SMALL = ["--children", "300", "--seed", "7", "--start", "2025-01-01", "--end", "2025-06-30", "--go-live", "2025-06-20"]


def _checksums(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_defects_default_is_byte_identical_to_no_flag(tmp_path, capsys):
    assert main(["synth", *SMALL, "--out", str(tmp_path / "none")]) == 0
    assert main(["synth", *SMALL, "--defects", "default", "--out", str(tmp_path / "default")]) == 0
    assert main(["synth", *SMALL, "--defects", "high", "--out", str(tmp_path / "high")]) == 0
    assert "defects high" in capsys.readouterr().out
    none, default, high = (_checksums(tmp_path / n) for n in ("none", "default", "high"))
    assert none == default
    assert high != default and high["truth/records.csv"] == default["truth/records.csv"]


def test_an_unknown_profile_is_refused_with_exit_code_2(tmp_path):
    out = tmp_path / "city"
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "synth", *SMALL, "--defects", "extreme",
                             "--out", str(out)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 2
    assert "argument --defects: invalid choice: 'extreme'" in result.stderr
    assert "default" in result.stderr and "high" in result.stderr
    assert not out.exists()
