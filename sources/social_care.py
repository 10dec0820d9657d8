"""Children's social care (Mosaic): daily full snapshots of SSD-shaped tables.

UTF-8 with a byte-order mark and CRLF line ends (a SQL Server export). Dates are ISO;
``cine_referral_date`` is a local clock reading without an offset, kept as TIMESTAMP.
Merged duplicate people carry ``pers_duplicate_of``; some disappear from later
snapshots, which history records as deleted.
"""

from .contracts import load_contract
from .staging import read_csv_drop

SYSTEM = "social_care"


def read_drop(con, drop):
    return read_csv_drop(load_contract(SYSTEM), drop)
