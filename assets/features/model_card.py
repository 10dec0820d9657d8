"""The model card: one static HTML page (HOME/reports/model_card.html) read from the
``features.model_*`` tables that assets/features/evaluate.py writes, and from
``features.window`` and ``features.feature_definition`` where the feature build made them.

It says what the baseline model is for and not for, which months it learnt from and was
tested on, its features and weights, whether it clears the bar written before evaluation,
how well its risks are calibrated, for whom it errs, and its limitations. No JavaScript,
no external assets; every value is escaped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb

from assets.home import MODEL_CARD_PAGE

from quality.report import STYLE, _e, _table
from sources.sql_runner import table_exists

CARD_STYLE = STYLE + ".note{border-left:4px solid #3465a4;background:#f4f7fb;padding:.5rem 1rem}"


def _pct(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}%}"


def _num(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _rows(con, sql: str) -> list[dict]:
    relation = con.sql(sql)
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def write_model_card(con: duckdb.DuckDBPyConnection, path) -> Path:
    """Write the card to ``path`` (a .html file, or a reports directory to hold
    model_card.html) and return the file's path."""
    out = Path(path)
    out = out if out.suffix == ".html" else out / MODEL_CARD_PAGE
    run = _rows(con, "SELECT * FROM features.model_run")[0] if table_exists(con, "features.model_run") else None
    parts = ["<h1>Model card: escalation to social care within a year (baseline)</h1>"]
    if run is None:
        parts.append("<p>No model has been evaluated yet: features.model_run does not exist.</p>")
    else:
        parts += [_header(run), _intended_use(), _window(con, run), _bar(con, run), _features(con),
                  _calibration(con), _subgroups(con), _prompts(con, run)]
    parts.append(_limitations())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Model card</title>"
                   f"<style>{CARD_STYLE}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return out


def verdict(run: dict) -> str:
    if run["clears_bar"]:
        return ("The model clears the minimum bar set before evaluation: every line of the bar was met "
                "on the test months.")
    return f"The model does NOT clear the minimum bar set before evaluation: {run['bar_failures']}."


def _header(run: dict) -> str:
    return (f"<p>Run <code>{_e(run['run_id'])}</code> at {run['run_at']:%Y-%m-%d %H:%M} UTC; "
            f"configuration sha256 <code>{_e(run['config_sha256'])}</code> (assets/features/model.yaml). "
            f"Card written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"
            f'<p class="headline {"pass" if run["clears_bar"] else "fail"}">{_e(verdict(run))}</p>')


def _intended_use() -> str:
    return ("<h2>Intended use</h2><ul>"
            "<li>An <strong>advisory prompt for a practitioner to look</strong> at a child who is not open to "
            "social care: a reason to read the record and talk to the people who know the family.</li>"
            "<li><strong>Never a decision</strong>: not a referral, not a threshold for a service, not evidence "
            "about a family, and not to be used on individual families without professional judgement.</li>"
            "<li>Each prompt lists the features that raised the score most, so the person looking can check "
            "them against what they know; a prompt with wrong or stale reasons should be discarded.</li>"
            "<li>Its main use is the evaluation itself: whether a transparent model helps at all, for whom it "
            "errs, and why each child was flagged.</li></ul>")


def _window(con, run: dict) -> str:
    parts = ["<h2>Data window and point-in-time correctness</h2>",
             _table(["", "from", "to", "child-months", "children", "escalation rate"], [
                 ["training months", run["train_from"], run["train_to"], f"{run['train_rows']:,}",
                  f"{run['train_children']:,}", _pct(run["train_base_rate"])],
                 ["test months", run["test_from"], run["test_to"], f"{run['test_rows']:,}",
                  f"{run['test_children']:,}", _pct(run["test_base_rate"])],
                 ["current prompts", run["latest_as_of"], run["latest_as_of"], "", "", "not known yet"]]),
             f"<p>The label is <code>{_e(run['label'])}</code>: a recorded social care assessment, child protection "
             f"plan or start of being looked after within {_e(run['horizon_months'])} months after the month-end. "
             "Only month-ends whose whole horizon lies inside the data are trained or tested on. The model learns "
             "from the earlier months and is judged on later ones, as it would be used.</p>"
             + _knowledge(con, run)]
    return "".join(parts)


def _knowledge(con, run: dict) -> str:
    """What "known at a month-end" meant for this build, from features.window."""
    rule = ("<p>Features use only what the warehouse knew at each month-end "
            "(<code>assets/features/sql/known.sql</code>): a record counts from the drop that first delivered it, "
            "so a record typed in late counts from its delivery, not from the date it claims; an event counts once "
            "its own date has passed; an end, a rating, a decision or an assessment's factors count only from their "
            "own dates; school attendance counts from the census that delivers it. The leakage test "
            "(<code>tests/features/test_leakage.py</code>) rewrites everything after a month-end and checks that "
            "month's features do not change.</p>")
    windows = _rows(con, "SELECT * FROM features.window") if table_exists(con, "features.window") else []
    if not windows:
        return rule + ('<div class="note"><p>features.window was not found in this database, so the feature '
                       "build's own statement of its window and knowledge rule is not shown.</p></div>")
    w = windows[0]
    go_live = min(str(g).split()[-1] for g in w["go_live"]) if w.get("go_live") else None
    note = (f"<p>Feature month-ends {_e(w['first_as_of'])} to {_e(w['last_as_of'])}; data as of "
            f"{_e(w['data_as_of'])}; the systems went live on {_e(', '.join(map(str, w.get('go_live') or [])))}. "
            f"Knowledge rule: <code>{_e(w['knowledge_rule'])}</code>.</p>")
    if w["knowledge_rule"] == "backload_as_claimed":
        note += ("<p>Each system's first drop was a full extract of records made before go-live, which nobody "
                 "delivered earlier. Under this rule those records count from the dates they claim (masked as above), "
                 "and hold the values they had at go-live: a value corrected before go-live shows only as corrected, "
                 "and a record deleted before go-live (a child who moved away, a merged duplicate) is missing from "
                 "earlier months. From go-live on, every record counts from its delivery. The rule "
                 "<code>strict</code> counts the first extract from go-live instead, leaving earlier months empty.</p>")
        if go_live and run.get("test_to") and str(run["test_to"]) < go_live:
            note += ("<p><strong>Every training and test month-end here falls before go-live</strong>: this "
                     "evaluation rests entirely on the source systems' own dates, not on delivery dates.</p>")
    return rule + f'<div class="note">{note}</div>'


def _bar(con, run: dict) -> str:
    checks = _rows(con, "SELECT * FROM features.model_bar")
    bar_rows = [[c["criterion"], _num(c["observed"]) or "not measured", f"{c['comparison']} {c['required']:g}",
                 '<span class="pass">met</span>' if c["passed"] else '<span class="fail">NOT met</span>']
                for c in checks]
    headline = [["AUC (test)", _num(run["auc"])],
                ["threshold (score at the top flag share of training)", _num(run["threshold"], 4)],
                ["share flagged: training target / test observed",
                 f"{_pct(run['flag_share'])} / {_pct(run['flag_rate'])}"],
                ["precision at the threshold (test)", _pct(run["precision"])],
                ["recall at the threshold (test)", _pct(run["recall"])],
                ["precision / base rate (lift)", _num(run["precision_lift"], 2)],
                ["expected calibration error (test)", _num(run["ece"], 4)],
                ["largest false-negative-rate gap", f"{_num(run['max_fnr_gap'])} {_e(run['max_fnr_gap_subgroup'] or '')}"]]
    return ("<h2>Metrics against the bar</h2><p>The bar was written in the configuration before evaluation.</p>"
            + _table(["criterion", "observed", "required", "result"], bar_rows, raw_columns={3})
            + _table(["measure", "value"], headline))


def _features(con) -> str:
    definitions = table_exists(con, "features.feature_definition")
    rows = _rows(con, f"""
        SELECT c.*, {'d.definition, d.source' if definitions else 'NULL AS definition, NULL AS source'}
        FROM features.model_coefficient c
        {'LEFT JOIN features.feature_definition d ON d.feature = c.source_column' if definitions else ''}
        ORDER BY c.feature <> '(intercept)', abs(c.coefficient) DESC""")
    return ("<h2>Features and weights</h2><p>Logistic regression (L2 penalty), numeric features standardised on "
            "the training months. A child's score is the intercept plus each weight times the child's encoded "
            "value; the odds ratio is per standard deviation for numeric features and for presence otherwise. "
            "Numeric features count relative to the average child in the training months, so a prompt's reasons "
            "can include a below-average count of something the model weighs against escalation. "
            "Ethnicity, sex and district are not features: they appear only in the subgroup table.</p>"
            + _table(["feature", "column", "weight (log-odds)", "odds ratio", "per", "training mean", "training sd",
                      "definition", "source"],
                     [[r["label"], r["feature"], _num(r["coefficient"]), _num(r["odds_ratio"], 2), r["scale"],
                       _num(r["mean"], 2), _num(r["std"], 2), r["definition"], r["source"]] for r in rows]))


def _calibration(con) -> str:
    rows = _rows(con, "SELECT * FROM features.model_calibration WHERE period = 'test' ORDER BY bin")
    return ("<h2>Calibration (test months)</h2><p>Child-months in ten equal-sized groups by predicted risk: "
            "a calibrated model's observed rate matches its mean prediction in each.</p>"
            + _table(["decile of predicted risk", "child-months", "mean predicted", "observed", "score range"],
                     [[r["bin"], f"{r['n']:,}", _pct(r["mean_predicted"], 2), _pct(r["observed_rate"], 2),
                       f"{r['min_score']:.4f} to {r['max_score']:.4f}"] for r in rows]))


def _subgroups(con) -> str:
    rows = _rows(con, """
        SELECT * FROM features.model_subgroup
        ORDER BY subgroup <> 'all', subgroup, try_cast(group_value AS INTEGER) NULLS LAST, group_value""")
    return ("<h2>Errors by subgroup (test months)</h2><p>For each group: how many were flagged, how many of those "
            "did not escalate (false-positive rate, among those who did not escalate), and how many who escalated "
            "were missed (false-negative rate). Counts in each subgroup add up to the 'all' row. Rates on few "
            "children are noise.</p>"
            + _table(["subgroup", "group", "child-months", "flagged", "flag rate", "escalated", "false-positive rate",
                      "false-negative rate", "precision"],
                     [[r["subgroup"], r["group_value"], f"{r['n']:,}", f"{r['flagged']:,}", _pct(r["flag_rate"]),
                       f"{r['positives']:,}", _pct(r["false_positive_rate"]), _pct(r["false_negative_rate"]),
                       _pct(r["precision"])] for r in rows]))


def _prompts(con, run: dict) -> str:
    count = con.sql("SELECT count(*) FROM features.model_flag WHERE period = 'current'").fetchall()[0][0]
    reasons = con.sql("""
        SELECT reason_1_feature, count(*) FROM features.model_flag
        WHERE period = 'current' AND reason_1_feature IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""").fetchall()
    return (f"<h2>Current prompts</h2><p>{count:,} children are above the threshold at the latest month-end "
            f"({_e(run['latest_as_of'])}). Each is listed in <code>features.model_flag</code> (period 'current') "
            "with the three features that raised the score most. Children are not listed here.</p>"
            + (_table(["main reason", "children"], [list(r) for r in reasons]) if reasons else ""))


def _limitations() -> str:
    return ("<h2>Limitations</h2><ul>"
            "<li><strong>Synthetic data.</strong> The city is generated; nothing here says how a model would do "
            "on real children.</li>"
            "<li><strong>Labels are recorded escalations, not harm.</strong> They reflect who was referred and "
            "assessed, which depends on who is visible to services; a model learns that visibility as well as need, "
            "and its misses include children whose harm was never recorded.</li>"
            "<li><strong>Identity linkage errors.</strong> Records joined to the wrong child, or one child split in "
            "two, move features and labels between children. Every month-end uses today's linkage and families, "
            "which later records may have helped: the one input not rebuilt as it stood then.</li>"
            "<li><strong>Repeated months per child.</strong> A child appears once per month-end, so child-months "
            "are not independent: counts overstate the evidence and a child with a long history weighs more.</li>"
            "<li><strong>Overlapping horizons.</strong> Unless the configured gap is as long as the horizon, "
            "some training labels were observed during the test months, which flatters the test a little.</li>"
            "<li><strong>Deprivation and proxies.</strong> Area deprivation is a feature and free school meals is "
            "a proxy for poverty; the weights are shown so that flagging poverty rather than risk can be seen.</li>"
            "<li><strong>Small groups.</strong> Subgroup rates on few children are unreliable; the bar's "
            "false-negative-rate gap counts only groups with enough escalations.</li>"
            "<li><strong>Drift.</strong> The threshold is set on the training months; practice and recording change, "
            "so the flag rate and calibration must be rechecked on every run.</li></ul>")
