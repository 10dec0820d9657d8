"""The city's ground: five districts, postcodes with deprivation, addresses and schools.

Postcodes use the outward area ``ZX``, which no real postcode uses, so nothing here can
be mistaken for a real address. UPRNs are 12-digit numbers from one synthetic block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import DISTRICTS, CityConfig

CITY = "Kingsmere"
# share of the city's households, and the mean deprivation decile (1 = most deprived)
DISTRICT_SHARE = {"NORTH": 0.20, "EAST": 0.22, "SOUTH": 0.16, "WEST": 0.18, "CENTRAL": 0.24}
DISTRICT_IMD = {"NORTH": 5.0, "EAST": 3.5, "SOUTH": 7.5, "WEST": 6.5, "CENTRAL": 2.5}
OUTWARD_PER_DISTRICT = 4
ADDRESSES_PER_POSTCODE = 14
INWARD_LETTERS = list("ABDEFGHJLNPQRSTUWXYZ")
STREET_STEMS = """Mill Church Station Park Victoria Albert Queen King Manor Chapel Bridge
Grange Orchard Meadow Willow Oak Ash Beech Elm Cedar Holly Rose Primrose Hawthorn Linden
Cromwell Nelson Wellington Milton Byron Shelley Tennyson Wordsworth Baird Faraday Stephenson
Brunel Newton Darwin Nightingale Pankhurst Attlee Bevan Keir Hardie Lowry Brontë Gaskell
Spinners Weavers Foundry Canal Wharf Lock Quarry Colliery Furnace Cotton Wool Tanner
Market Hall Castle Abbey Priory Minster Cross Well Spring Brook Moor Heath Fell Dale""".split()
STREET_KINDS = ["Street", "Road", "Lane", "Avenue", "Close", "Drive", "Way", "Grove", "Terrace", "Crescent"]


@dataclass
class Geography:
    postcodes: pd.DataFrame  # postcode, district, lsoa, imd_decile
    addresses: pd.DataFrame  # address_id, uprn, flat, house, street, town, postcode, district, imd_decile
    schools: pd.DataFrame  # urn, laestab, name, phase, district, postcode


def build_geography(config: CityConfig, households_needed: int) -> Geography:
    rng = config.rng("geography")
    postcodes = _postcodes(rng, households_needed)
    addresses = _addresses(rng, postcodes, households_needed)
    schools = _schools(config, rng, postcodes)
    return Geography(postcodes, addresses, schools)


def _postcodes(rng: np.random.Generator, households_needed: int) -> pd.DataFrame:
    # Address stock 1.6x the households at the start leaves room for every move.
    units_needed = int(np.ceil(households_needed * 1.6 / ADDRESSES_PER_POSTCODE))
    frames = []
    outward_no = 1
    for district in DISTRICTS:
        units = max(40, int(units_needed * DISTRICT_SHARE[district]))
        # A sector (the digit after the space) holds at most 400 units (20 x 20 letters)
        # and an outward code at most ten sectors: bigger cities get more outward codes.
        outwards = max(OUTWARD_PER_DISTRICT, int(np.ceil(units / 4000)))
        per_outward = int(np.ceil(units / outwards))
        sectors = min(10, int(np.ceil(per_outward / 40)))
        for _ in range(outwards):
            k = np.arange(per_outward)
            sector = k % sectors
            letters = k // sectors  # < 400 because per_outward <= 4000
            inward = [
                f"{s}{INWARD_LETTERS[l // 20]}{INWARD_LETTERS[l % 20]}" for s, l in zip(sector, letters)
            ]
            frames.append(pd.DataFrame({"postcode": [f"ZX{outward_no} {i}" for i in inward], "district": district}))
            outward_no += 1
    postcodes = pd.concat(frames, ignore_index=True).drop_duplicates("postcode")
    # LSOAs: consecutive blocks of about 45 postcodes (roughly 650 households)
    block = np.arange(len(postcodes)) // 45
    postcodes["lsoa"] = [f"E019{b:05d}" for b in block]
    lsoa_imd = {
        b: int(np.clip(round(DISTRICT_IMD[d] + rng.normal(0, 1.8)), 1, 10))
        for b, d in zip(block, postcodes["district"])
    }
    postcodes["imd_decile"] = [lsoa_imd[b] for b in block]
    return postcodes.reset_index(drop=True)


def _addresses(rng: np.random.Generator, postcodes: pd.DataFrame, households_needed: int) -> pd.DataFrame:
    n_pc = len(postcodes)
    pc_index = np.repeat(np.arange(n_pc), ADDRESSES_PER_POSTCODE)
    house = np.tile(np.arange(1, ADDRESSES_PER_POSTCODE + 1), n_pc) + (pc_index % 3) * 20
    street_no = pc_index // 3  # three postcodes share a street
    stems = np.asarray(STREET_STEMS)[street_no % len(STREET_STEMS)]
    kinds = np.asarray(STREET_KINDS)[(street_no // len(STREET_STEMS)) % len(STREET_KINDS)]
    street = pd.Series(stems).str.cat(pd.Series(kinds), sep=" ").to_numpy()
    is_flat = rng.random(len(pc_index)) < 0.15
    flat = np.where(is_flat, "Flat " + (rng.integers(1, 9, len(pc_index))).astype(str), "")
    n = len(pc_index)
    addresses = pd.DataFrame(
        {
            "address_id": np.arange(n, dtype=np.int64),
            "uprn": (100_090_000_000 + np.arange(n) * 7 + 3).astype(str),
            "flat": flat,
            "house": house.astype(str),
            "street": street,
            "town": CITY,
            "postcode": postcodes["postcode"].to_numpy()[pc_index],
            "district": postcodes["district"].to_numpy()[pc_index],
            "imd_decile": postcodes["imd_decile"].to_numpy()[pc_index],
        }
    )
    # Shuffle so that consecutive households do not live next door to each other.
    return addresses.iloc[rng.permutation(n)].reset_index(drop=True)


def _schools(config: CityConfig, rng: np.random.Generator, postcodes: pd.DataFrame) -> pd.DataFrame:
    rows = []
    estab = {"PRIMARY": 2000, "SECONDARY": 4000, "ALL_THROUGH": 4500, "SPECIAL": 7000, "AP": 1100}
    per_district = {
        "PRIMARY": max(2, round(config.children / 1200 / len(DISTRICTS))),
        "SECONDARY": max(1, round(config.children / 7000 / len(DISTRICTS))),
    }
    for district in DISTRICTS:
        for phase, count in per_district.items():
            for _ in range(count):
                rows.append((phase, district))
    rows.append(("ALL_THROUGH", "CENTRAL"))
    rows += [("SPECIAL", d) for d in DISTRICTS[: max(2, round(config.children / 40_000))]]
    rows.append(("AP", "CENTRAL"))
    frame = pd.DataFrame(rows, columns=["phase", "district"])
    frame["urn"] = (900_001 + np.arange(len(frame))).astype(str)
    frame["estab_no"] = frame["phase"].map(estab) + frame.groupby("phase").cumcount() + 1
    frame["laestab"] = config.la_code + frame["estab_no"].astype(str)
    stems = np.asarray(STREET_STEMS)[rng.permutation(len(STREET_STEMS))]
    suffix = {
        "PRIMARY": "Primary School", "SECONDARY": "Academy", "ALL_THROUGH": "All-through School",
        "SPECIAL": "Special School", "AP": "Pupil Referral Unit",
    }
    frame["name"] = [f"{stems[i % len(stems)]} {suffix[p]}" for i, p in enumerate(frame["phase"])]
    frame["postcode"] = [
        rng.choice(postcodes.loc[postcodes["district"] == d, "postcode"].to_numpy()) for d in frame["district"]
    ]
    return frame[["urn", "laestab", "name", "phase", "district", "postcode"]]
