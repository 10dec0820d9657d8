"""The probabilistic person model: Splink comparisons, blocking rules, and fitting.

The comparisons are written as plain SQL levels so that each level's label is the
explanation a reviewer reads ("surname: one part of a double-barrelled name"), and the
same settings run on DuckDB here and on Spark at scale.

Every local authority's records have their own error profile, so a deployment links
with a model fitted to its own records (`fit_model`): u by random sampling, m by
expectation maximisation on blocks of pairs that agree on names or on birth date and
postcode, and anchored on pairs sharing a validated NHS number or UPN, starting from
the shipped model in `model/` as a prior. No truth is used. The shipped model is that
prior, and what `--model` falls back to; the match threshold and the clustering rules
(link.py, cluster.py) are fixed in advance and never fitted.
"""

import hashlib
import json
import logging
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

MODEL_DIR = Path(__file__).parent / "model"
MODEL_PATH = MODEL_DIR / "person_model_v2.json"

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
    # a record whose names and birth date are all mistyped still gives its address
    "postcode and house": "l.postcode = r.postcode AND split_part(l.address, ' ', 1) = split_part(r.address, ' ', 1)",
    # forename and surname typed into each other's boxes
    "names swapped": "l.forename = r.surname AND l.surname = r.forename",
    "birth date and swapped initials": "l.dob = r.dob AND l.forename[1] = r.surname[1] AND l.surname[1] = r.forename[1]",
    # a record without a birth date (blank, or only an estimate) escapes every rule above
    # that needs one: pair it by names, or by surname and address
    "names, a birth date missing": "l.forename = r.forename AND l.surname = r.surname AND (l.dob IS NULL OR r.dob IS NULL)",
    "surname and postcode, a birth date missing":
        "l.surname = r.surname AND l.postcode = r.postcode AND (l.dob IS NULL OR r.dob IS NULL)",
}

# Blocks for expectation maximisation. Each leaves some comparisons free so that their
# agreement among matches can be learnt. The first two also give the prior (the
# probability that two random records match): each block's share of matches is scaled
# back to all pairs by the Bayes factors of the exact levels the block implies.
EM_BLOCKS = [
    "l.forename = r.forename AND l.surname = r.surname",
    "l.dob = r.dob AND l.postcode = r.postcode AND l.address = r.address",
]
# Pairs sharing a validated identifier are almost all matches: EM on them anchors the m
# of every other comparison in pairs known to be one person. Used where such pairs exist.
ANCHOR_BLOCKS = ["l.nhs_number = r.nhs_number", "l.upn = r.upn"]


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
        _level('"forename_l" = "surname_r"', "forename: recorded as the surname (names swapped)", tf="forename"),
        _level('jaro_winkler_similarity("forename_l", "surname_r") >= 0.92',
               "forename: a slip from the surname (names swapped)"),
        _level('len(list_intersect("forename_group_l", "forename_group_r")) > 0',
               "forename: nickname of the same name"),
        _level('jaro_winkler_similarity("forename_l", "forename_r") >= 0.92', "forename: one-letter slip"),
        _level('jaro_winkler_similarity("forename_l", "forename_r") >= 0.8', "forename similar"),
        _level("ELSE", "forename different"),
    ]),
    _comparison("surname", "surname", [
        _level('"surname_l" IS NULL OR "surname_r" IS NULL', "surname missing", null=True),
        _level('"surname_l" = "surname_r"', "surname exact", tf="surname"),
        _level('"surname_l" = "forename_r"', "surname: recorded as the forename (names swapped)", tf="surname"),
        _level('jaro_winkler_similarity("surname_l", "forename_r") >= 0.92',
               "surname: a slip from the forename (names swapped)"),
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
    # Postcode and address read together: a house and its postcode are one fact, and
    # counted apart they would double the evidence of living together (which siblings share).
    _comparison("residence", "current address: postcode and first line", [
        _level('("postcode_l" IS NULL OR "postcode_r" IS NULL) AND ("address_l" IS NULL OR "address_r" IS NULL)',
               "address missing", null=True),
        _level('"postcode_l" = "postcode_r" AND "address_l" = "address_r"', "address and postcode exact"),
        _level('"postcode_l" = "postcode_r" AND jaro_winkler_similarity("address_l", "address_r") >= 0.9',
               "postcode exact, address a slip apart"),
        _level('"postcode_l" = "postcode_r"', "postcode exact, another address", tf="postcode"),
        _level('"address_l" = "address_r"', "address exact, postcode differs or missing"),
        _level('jaro_winkler_similarity("address_l", "address_r") >= 0.9', "address: a slip apart"),
        _level('"postcode_sector_l" = "postcode_sector_r"', "postcode: same sector"),
        _level('"postcode_district_l" = "postcode_district_r"', "postcode: same district"),
        _level("ELSE", "address different"),
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
    "postcode_district", "address", "sex", "nhs_number", "upn",
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
    frames = [db_api.register(table, table_name=f"__input_{i}") for i, table in enumerate(tables.values())]
    settings = {k: v for k, v in model.items() if k != TRAINING_KEY} if isinstance(model, dict) else load_model(model)
    return Linker(frames, settings, log_level=logging.WARNING, validate_settings=validate)


TRAINING_KEY = "earlyhelp_training"  # what the fit saw and how it ran; not a Splink setting


@dataclass(frozen=True)
class Training:
    """How a model is fitted; saved inside every fitted model's JSON."""

    u_max_pairs: float = 2e6  # random pairs sampled for u
    seed: int = 1
    em_blocks: tuple[str, ...] = tuple(EM_BLOCKS)
    anchor_blocks: tuple[str, ...] = tuple(ANCHOR_BLOCKS)
    # Fewer records than this are too few to fit: the prior is used, its match prior
    # rescaled to the number of records.
    min_records: int = 500
    # A level never (or hardly) seen among the matching pairs EM weighed has m near 0,
    # which would let one such disagreement veto any evidence; one never seen in n
    # matching pairs is, with 95% confidence, rarer than 3 / n (the rule of three): m is
    # floored there, so the weight against it is as strong as this data can support.
    unseen_level_confidence_count: float = 3.0


def load_model(path: Path = MODEL_PATH) -> dict:
    """The Splink settings of a saved model (its training record left out)."""
    model = json.loads(Path(path).read_text())
    model.pop(TRAINING_KEY, None)
    return model


def training_record(path: Path) -> dict:
    """What a saved model was fitted on and how; {} for a model saved without one."""
    return json.loads(Path(path).read_text()).get(TRAINING_KEY, {})


def save_model(model: dict, path: Path) -> Path:
    """Write atomically: a reader (or a killed run) never finds half a model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(model, indent=2) + "\n")
    partial.replace(path)
    return path


def prior_for(model: dict, records: int) -> float:
    """The model's match prior for a table of `records` records. Each record has about as
    many others of the same person whatever the table's size, while pairs grow with its
    square: the prior scales with 1 / records from the table the model was fitted on."""
    prior = model["probability_two_random_records_match"]
    fitted_on = model.get(TRAINING_KEY, {}).get("records")
    if not fitted_on or not records:
        return prior
    return min(0.5, prior * fitted_on / records)


def _count(con: duckdb.DuckDBPyConnection, tables: dict[str, str], where: str = "true") -> int:
    return sum(con.sql(f"SELECT count(*) FROM {t} WHERE {where}").fetchall()[0][0] for t in tables.values())


def fit_model(con: duckdb.DuckDBPyConnection, tables: dict[str, str], prior: Path = MODEL_PATH,
              training: Training = Training()) -> dict:
    """The person model fitted to the records in `tables` (system -> standardised table),
    starting from the model saved at `prior` (default: the shipped one). The result
    carries a training record: when, on how many records (and per system), with which
    settings, and what each EM block found."""
    start = load_model(prior)
    records = _count(con, tables)
    record = {"fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "records": records,
              "records_by_system": {system: _count(con, {system: t}) for system, t in tables.items()},
              "settings": asdict(training), "prior": Path(prior).name,
              "prior_sha256": hashlib.sha256(Path(prior).read_bytes()).hexdigest()}
    if records < training.min_records:
        start["probability_two_random_records_match"] = prior_for(
            dict(start, **{TRAINING_KEY: training_record(prior)}), records)
        return dict(start, **{TRAINING_KEY: dict(
            record, fitted=False, reason=f"{records} records are too few to fit (fewer than "
                                         f"{training.min_records}): the prior's parameters are used")})
    linker = linker_for(con, tables, start)
    linker.training.estimate_u_using_random_sampling(max_pairs=training.u_max_pairs, seed=training.seed)
    # Splink warns on stderr of every level a session never saw; the training record
    # lists them instead (levels_not_seen), where the review of the model reads them
    em_logger = logging.getLogger("splink.internals.expectation_maximisation")
    level, em_logger.level = em_logger.level, logging.ERROR
    try:
        sessions = [_em(linker, con, tables, rule) for rule in training.em_blocks + training.anchor_blocks]
    finally:
        em_logger.setLevel(level)
    estimates = [_prior_from_block(linker, s, records) for s in sessions[:len(training.em_blocks)]]
    estimates = [e for e in estimates if e]
    if estimates:
        linker._settings_obj._probability_two_random_records_match = statistics.median(estimates)
    model = linker.misc.save_model_to_json()
    _m_from_sessions(model, linker, sessions, training.unseen_level_confidence_count)
    for session in sessions:
        session.pop("implied_levels", None)
        session.pop("estimated", None)
    model[TRAINING_KEY] = dict(record, fitted=True, em_sessions=sessions)
    return model


def _em(linker, con, tables: dict[str, str], rule: str) -> dict:
    """One EM session on the pairs `rule` blocks; a block without pairs (no shared
    identifiers in this data) is noted and skipped."""
    pairs = _block_pairs(con, tables, rule)
    if pairs == 0:
        return {"block": rule, "pairs": 0, "skipped": "no pairs in this data"}
    session = linker.training.estimate_parameters_using_expectation_maximisation(rule)
    from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT

    blocked = {c.output_column_name for c in session._comparisons_that_cannot_be_estimated}
    final = session._core_model_settings_history[-1] if session._core_model_settings_history else None
    unseen = [f"{c.output_column_name}: {lv.label_for_charts}" for c in (final.comparisons if final else [])
              for lv in c._comparison_levels_excluding_null if lv._m_probability == LEVEL_NOT_OBSERVED_TEXT]
    return {"block": rule, "pairs": pairs, "iterations": len(session._core_model_settings_history),
            "levels_not_seen": unseen,
            "share_matching": session.core_model_settings.probability_two_random_records_match,
            "estimated": [c.output_column_name for c in linker._settings_obj.comparisons
                          if c.output_column_name not in blocked],
            "implied_levels": [(i["comparison"].output_column_name, i["level"].comparison_vector_value)
                               for i in session._comparison_levels_to_reverse_blocking_rule]}


def _prior_from_block(linker, session: dict, records: int) -> float | None:
    """The match prior one block implies: the matching pairs EM found among its pairs,
    divided by the share of all matches the block can hold (the product of the fitted m
    of the exact levels it implies: a match agrees on forename and on surname about
    independently, while non-matches that share a surname, siblings, share much else),
    over all pairs. Noted in the session; None when the block implies no level."""
    if not session.get("implied_levels"):
        return None
    held = 1.0
    for name, value in session["implied_levels"]:
        comparison = linker._settings_obj._get_comparison_by_output_column_name(name)
        held *= comparison._get_comparison_level_by_comparison_vector_value(value).m_probability
    matching = session["share_matching"] * session["pairs"]
    session["matching_pairs"] = round(matching)
    session["share_of_matches_held"] = held
    session["prior"] = matching / held / (records * (records - 1) / 2)
    return session["prior"]


def _block_pairs(con, tables: dict[str, str], rule: str) -> int:
    """Pairs (across and within systems, each once) a training block generates."""
    union = " UNION ALL ".join(f"SELECT * FROM {t}" for t in tables.values())
    return con.sql(f"WITH r AS ({union}) SELECT count(*) FROM r AS l JOIN r ON ({rule}) "
                   "AND l.record_key < r.record_key").fetchall()[0][0]


def _m_from_sessions(model: dict, linker, sessions: list[dict], count: float) -> None:
    """Each level's m: the median of the EM sessions' estimates, as Splink takes it, except
    that a session that weighed the comparison and never saw the level counts as having
    seen it 0 times (Splink leaves such a session out, so a level every session on pairs
    sharing an NHS number found empty keeps what a looser block guessed: a parent's record
    under the child's name read as the child's birth date typed a generation wrong). Then
    at least count / n, n the most matching pairs a session that estimated the comparison
    weighed (Training.unseen_level_confidence_count)."""
    from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT

    for comparison, fitted in zip(linker._settings_obj.comparisons, model["comparisons"]):
        name = comparison.output_column_name
        seen = max((s["share_matching"] * s["pairs"] for s in sessions if name in s.get("estimated", ())), default=0)
        floor = min(1.0, count / seen) if seen else None
        for level, saved in zip(comparison.comparison_levels, fitted["comparison_levels"]):
            if level.is_null_level or not level._trained_m_probabilities:
                continue
            estimates = [0.0 if r["probability"] == LEVEL_NOT_OBSERVED_TEXT else r["probability"]
                         for r in level._trained_m_probabilities]
            saved["m_probability"] = max(statistics.median(estimates), floor or 0.0)
