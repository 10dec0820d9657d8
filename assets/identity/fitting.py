"""Which person model a deployment links with, and fitting one to its own records.

The rule, in order: a model the caller names; else the newest model saved under the
HOME (``HOME/identity/model/person_model_v<NNN>_<YYYYMMDD>.json``); else the model this
database last fitted (``identity.person_model``); else, on the first full link, a model
fitted now to the deployment's standardised records, starting from the shipped model.
So a HOME is fitted once, every later day reuses its model, and only `earlyhelp
train-identity` (or deleting the HOME's models) brings a new one, which makes the next
link a full one.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import duckdb

from .model import MODEL_PATH, TRAINING_KEY, Training, fit_model, save_model

MODEL_NAME = re.compile(r"person_model_v(\d{3,})_(\d{8})\.json")
FITTED_TABLE = "identity.person_model"


def saved_models(model_dir: Path | None) -> list[Path]:
    """A HOME's fitted models, oldest version first."""
    if not model_dir or not Path(model_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(model_dir).iterdir() if (m := MODEL_NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def next_model_path(model_dir: Path, today: date | None = None) -> Path:
    models = saved_models(model_dir)
    version = int(MODEL_NAME.fullmatch(models[-1].name).group(1)) + 1 if models else 1
    return Path(model_dir) / f"person_model_v{version:03d}_{(today or date.today()):%Y%m%d}.json"


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def record_views(con: duckdb.DuckDBPyConnection, source: str = "identity.standardised_record",
                 prefix: str = "fit_input") -> dict[str, str]:
    """One temp view per system over `source` (qualified with its database, so that it
    reads the same table whichever catalog is in use): system -> view name."""
    database = con.sql("SELECT current_database()").fetchall()[0][0]
    qualified = f'"{database}".{source}' if source.count(".") == 1 else source
    systems = [s for (s,) in con.sql(f"SELECT DISTINCT system FROM {qualified} ORDER BY 1").fetchall()]
    views = {}
    for i, system in enumerate(systems):
        views[system] = f"{prefix}_{i}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {prefix}_{i} AS "
                    f"SELECT * FROM {qualified} WHERE system = {_literal(system)}")
    return views


def fit_to_records(con: duckdb.DuckDBPyConnection, prior: Path = MODEL_PATH,
                   training: Training = Training()) -> dict:
    """A model fitted to identity.standardised_record. Splink's working tables go to an
    in-memory catalog: written to the build database they would only grow its log."""
    from .link import scratch

    views = record_views(con)
    database = con.sql("SELECT current_database()").fetchall()[0][0]
    con.execute(f"USE {scratch(con)}")
    try:
        return fit_model(con, views, prior, training)
    finally:
        con.execute(f'USE "{database}"')


def remember(con: duckdb.DuckDBPyConnection, model: dict, name: str) -> None:
    """Keep the model in the database that links with it (identity.person_model)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {FITTED_TABLE} (name VARCHAR, fitted_at VARCHAR, records BIGINT, "
                "model_json VARCHAR, saved_at TIMESTAMPTZ)")
    record = model.get(TRAINING_KEY, {})
    con.execute(f"INSERT INTO {FITTED_TABLE} VALUES (?, ?, ?, ?, now())",
                [name, record.get("fitted_at"), record.get("records"), json.dumps(model)])


def remembered(con: duckdb.DuckDBPyConnection) -> dict | None:
    exists = con.sql("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'identity' "
                     "AND table_name = 'person_model' AND NOT temporary").fetchall()[0][0]
    if not exists:
        return None
    rows = con.sql(f"SELECT model_json FROM {FITTED_TABLE} ORDER BY saved_at DESC LIMIT 1").fetchall()
    return json.loads(rows[0][0]) if rows else None


def fit_and_save(con: duckdb.DuckDBPyConnection, model_dir: Path | None, prior: Path = MODEL_PATH) -> tuple[dict, Path | None]:
    """Fit to this database's records, remember the model in it and, with a HOME's model
    folder, save it there as the next version. Returns the model and where it was saved."""
    model = fit_to_records(con, prior)
    path = save_model(model, next_model_path(model_dir)) if model_dir else None
    remember(con, model, path.name if path else "fitted in this database")
    return model, path
