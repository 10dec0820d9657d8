"""The probabilistic person model: Splink comparisons, blocking rules, training.

The comparisons are written as plain SQL levels so that each level's label is the
explanation a reviewer reads ("surname: one part of a double-barrelled name"), and the
same settings run on DuckDB here and on Spark at scale. The trained model is versioned
JSON in `model/`; runs and tests load it, and only `train_model` (the `earlyhelp
train-identity` command) writes a new one, because u-estimation by random sampling
dominates the cost of a small run.
"""

import json
import logging
from pathlib import Path

import duckdb

MODEL_DIR = Path(__file__).parent / "model"
MODEL_PATH = MODEL_DIR / "person_model_v1.json"

# Candidate pairs for scoring. Each rule is cheap on its own; together they must cover
# almost every true pair (the blocking ceiling is measured by evaluate-identity).
BLOCKING_RULES = {
    "birth date and surname initial": "l.dob = r.dob AND l.surname[1] = r.surname[1]",
    "birth date and forename initial": "l.dob = r.dob AND l.forename[1] = r.forename[1]",
    "birth date and postcode": "l.dob = r.dob AND l.postcode = r.postcode",
    "day and month swapped": "l.dob = r.dob_swapped AND l.surname[1] = r.surname[1]",
    "day and month swapped (reverse)": "l.dob_swapped = r.dob AND l.surname[1] = r.surname[1]",
    "names and birth year": "l.forename = r.forename AND l.surname = r.surname AND l.birth_year = r.birth_year",
    "names and postcode": "l.forename = r.forename AND l.surname = r.surname AND l.postcode = r.postcode",
    "forename and postcode": "l.forename = r.forename AND l.postcode = r.postcode",
    "surname, postcode and birth year": "l.surname = r.surname AND l.postcode = r.postcode AND l.birth_year = r.birth_year",
}

# Rules used only to train m-probabilities by expectation maximisation: each leaves
# the compared columns free so that their agreement can be learnt.
TRAINING_BLOCKS = [
    "l.dob = r.dob AND l.postcode_district = r.postcode_district",
    "l.forename = r.forename AND l.surname = r.surname",
    "l.nhs_number = r.nhs_number",
]

# Rules that are almost never wrong, to estimate how likely two random records match.
PRIOR_RULES = ["l.nhs_number = r.nhs_number", "l.upn = r.upn"]
PRIOR_RULES_RECALL = 0.7


def _level(sql, label, *, null=False, tf=None):
    level = {"sql_condition": sql, "label_for_charts": label}
    if null:
        level["is_null_level"] = True
    if tf:
        level["tf_adjustment_column"] = tf
        level["tf_adjustment_weight"] = 1.0
    return level


def _comparison(name, description, levels):
    return {"output_column_name": name, "comparison_description": description,
            "comparison_levels": levels}


COMPARISONS = [
    _comparison("forename", "first forename", [
        _level('"forename_l" IS NULL OR "forename_r" IS NULL', "forename missing", null=True),
        _level('"forename_l" = "forename_r"', "forename exact", tf="forename"),
        _level('len(list_intersect("forename_group_l", "forename_group_r")) > 0',
               "forename: nickname of the same name"),
        _level('jaro_winkler_similarity("forename_l", "forename_r") >= 0.92', "forename: one-letter slip"),
        _level('jaro_winkler_similarity("forename_l", "forename_r") >= 0.8', "forename similar"),
        _level("ELSE", "forename different"),
    ]),
    _comparison("surname", "surname", [
        _level('"surname_l" IS NULL OR "surname_r" IS NULL', "surname missing", null=True),
        _level('"surname_l" = "surname_r"', "surname exact", tf="surname"),
        _level('"surname_l" = "alt_surname_r" OR "alt_surname_l" = "surname_r" '
               'OR list_has_any("surname_parts_l", "surname_parts_r")',
               "surname: former, preferred or one part of a double-barrelled name"),
        _level('jaro_winkler_similarity("surname_l", "surname_r") >= 0.92', "surname: one-letter slip"),
        _level('jaro_winkler_similarity("surname_l", "surname_r") >= 0.8', "surname similar"),
        _level("ELSE", "surname different"),
    ]),
    _comparison("dob", "date of birth", [
        _level('coalesce("dob_l", "dob_approximate_l") IS NULL OR coalesce("dob_r", "dob_approximate_r") IS NULL',
               "birth date missing", null=True),
        _level('"dob_l" = "dob_r"', "birth date exact"),
        _level('"dob_l" = "dob_swapped_r" OR "dob_swapped_l" = "dob_r"', "birth date: day and month swapped"),
        _level('("dob_approximate_l" IS NOT NULL OR "dob_approximate_r" IS NOT NULL) AND '
               'abs(datediff(\'day\', coalesce("dob_l", "dob_approximate_l"), coalesce("dob_r", "dob_approximate_r"))) <= 366',
               "birth date: an estimate within a year"),
        _level('abs(datediff(\'day\', "dob_l", "dob_r")) <= 31', "birth date within a month"),
        _level('abs(datediff(\'year\', coalesce("dob_l", "dob_approximate_l"), coalesce("dob_r", "dob_approximate_r"))) >= 12',
               "birth dates a generation apart"),
        _level("ELSE", "birth date different"),
    ]),
    _comparison("postcode", "postcode of the current address", [
        _level('"postcode_l" IS NULL OR "postcode_r" IS NULL', "postcode missing", null=True),
        _level('"postcode_l" = "postcode_r"', "postcode exact", tf="postcode"),
        _level('"postcode_sector_l" = "postcode_sector_r"', "postcode: same sector"),
        _level('"postcode_district_l" = "postcode_district_r"', "postcode: same district"),
        _level("ELSE", "postcode different"),
    ]),
    _comparison("sex", "sex", [
        _level('"sex_l" IS NULL OR "sex_r" IS NULL', "sex missing", null=True),
        _level('"sex_l" = "sex_r"', "sex agrees"),
        _level("ELSE", "sex differs"),
    ]),
    _comparison("identifiers", "NHS number and UPN, where both records hold one", [
        _level('("nhs_number_l" IS NULL OR "nhs_number_r" IS NULL) AND ("upn_l" IS NULL OR "upn_r" IS NULL)',
               "no identifier to compare", null=True),
        _level('"nhs_number_l" = "nhs_number_r" OR "upn_l" = "upn_r"', "NHS number or UPN agrees"),
        _level("ELSE", "NHS number or UPN differs"),
    ]),
]

COLUMNS_USED = [
    "forename", "forename_group", "surname", "alt_surname", "surname_parts", "dob",
    "dob_approximate", "dob_swapped", "birth_year", "postcode", "postcode_sector",
    "postcode_district", "sex", "nhs_number", "upn",
]


def settings() -> dict:
    """Untrained settings: what training starts from."""
    return {
        "link_type": "link_and_dedupe",
        "unique_id_column_name": "record_key",
        "source_dataset_column_name": "system",
        "probability_two_random_records_match": 1e-5,
        "blocking_rules_to_generate_predictions": list(BLOCKING_RULES.values()),
        "comparisons": COMPARISONS,
        "retain_intermediate_calculation_columns": True,
        "retain_matching_columns": True,
        "additional_columns_to_retain": ["forename_group"],
    }


def linker_for(con: duckdb.DuckDBPyConnection, tables: dict[str, str], model: dict | Path,
               validate: bool = True):
    """A Splink linker over `tables` (system -> table name) on this DuckDB connection.
    validate: check that the model's columns exist (Splink parses every rule: ~0.25 s)."""
    from splink import DuckDBAPI, Linker  # Splink's import costs ~1 s: only where used

    db_api = DuckDBAPI(con)
    frames = [db_api.register(table, table_name=f"__input_{system}") for system, table in tables.items()]
    return Linker(frames, model if isinstance(model, dict) else json.loads(Path(model).read_text()),
                  log_level=logging.WARNING, validate_settings=validate)


def load_model(path: Path = MODEL_PATH) -> dict:
    return json.loads(Path(path).read_text())


def train_model(con: duckdb.DuckDBPyConnection, tables: dict[str, str], out: Path = MODEL_PATH,
                *, max_pairs: float = 2e6, seed: int = 1) -> dict:
    """Estimate u by random sampling and m by EM on the training blocks; save JSON."""
    linker = linker_for(con, tables, settings())
    linker.training.estimate_probability_two_random_records_match(PRIOR_RULES, recall=PRIOR_RULES_RECALL)
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for rule in TRAINING_BLOCKS:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    model = linker.misc.save_model_to_json(str(out), overwrite=True)
    return floor_untrained_levels(model, out)


M_FLOOR = 1e-3


def floor_untrained_levels(model: dict, out: Path) -> dict:
    """A level never seen among training matches gets m = 0 (or none), which would let
    one disagreement (a recorded sex that differs) veto any evidence; floor it instead."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level") and level.get("m_probability", 0) < M_FLOOR:
                level["m_probability"] = M_FLOOR
    Path(out).write_text(json.dumps(model, indent=2) + "\n")
    return model
