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
    """Every version of every row, each valid until the next version of its key. The key
    and the version column are the contract's (mash.yaml: key, version), so the history
    cannot drift from what staging checks."""
    spec = next(t for t in load_contract(SYSTEM).tables if t.name.lower() == table)
    key = ", ".join(f'"{k}"' for k in spec.key)
    version = f'"{spec.version}"'
    # a version re-sent in a later drop is kept once: the latest drop's copy
    return f"""
        CREATE OR REPLACE TABLE history.mash__{table} AS
        SELECT * EXCLUDE (_rank),
               lead({version}) OVER (PARTITION BY {key} ORDER BY {version}, extract_date) AS valid_to,
               valid_to IS NULL AS is_current
        FROM (
            SELECT *, {version} AS valid_from,
                   row_number() OVER (PARTITION BY {key}, {version} ORDER BY extract_date DESC) AS _rank
            FROM staging.mash__{table}
        ) WHERE _rank = 1
    """
