"""Education (Capita ONE): termly census snapshots and a monthly EHE/CME return.

UTF-8, ISO dates, true/false flags. A census drop carries all eight tables; a monthly
drop only ehe.csv and cme.csv, so each table's history advances on its own drops.
Attendance is cumulative: every completed term up to the census, a term in arrears.
"""

from .contracts import load_contract
from .staging import read_csv_drop

SYSTEM = "education"


def read_drop(con, drop):
    return read_csv_drop(load_contract(SYSTEM), drop)
