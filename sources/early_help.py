"""Early help (legacy MAST system): weekly full snapshots, family-centred.

Windows-1252 with DD/MM/YYYY dates and Y/N flags: decoding as UTF-8 would corrupt
names such as Zoë, so the contract's encoding is the one used. Legacy PERSON_IDs repeat
people when a family is re-registered; identity reconciliation resolves them.
"""

from .contracts import load_contract
from .staging import read_csv_drop

SYSTEM = "early_help"


def read_drop(con, drop):
    return read_csv_drop(load_contract(SYSTEM), drop)
