"""MASH front door: a daily delta feed keyed by (contact_id, child_seq).

A row is re-sent as triage progresses; the version with the latest ``updated_at`` is
the current one and earlier versions are kept. Timestamps carry their UTC offset and
are compared as instants, so the October and March clock changes do not distort
decision times.
"""

from .contracts import load_contract
from .staging import read_csv_drop

SYSTEM = "mash"


def read_drop(con, drop):
    return read_csv_drop(load_contract(SYSTEM), drop)


def history_sql(table: str = "contacts") -> str:
    """Every version of every row, each valid until the next version of its key."""
    return f"""
        CREATE OR REPLACE TABLE history.mash__{table} AS
        SELECT * EXCLUDE (_rank),
               lead(updated_at) OVER (PARTITION BY contact_id, child_seq ORDER BY updated_at, extract_date) AS valid_to,
               valid_to IS NULL AS is_current
        FROM (
            SELECT *, updated_at AS valid_from,
                   row_number() OVER (PARTITION BY contact_id, child_seq, updated_at ORDER BY extract_date DESC) AS _rank
            FROM staging.mash__{table}
        ) WHERE _rank = 1
    """
