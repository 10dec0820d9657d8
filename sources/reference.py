"""Reference data: postcodes with district and deprivation, and schools."""

from .contracts import load_contract
from .staging import read_csv_drop

SYSTEM = "reference"


def read_drop(con, drop):
    return read_csv_drop(load_contract(SYSTEM), drop)
