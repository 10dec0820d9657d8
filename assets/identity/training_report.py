"""The training report of a fitted person model: one self-contained HTML page.

What the model learnt from a deployment's own records, for the review data workstream:
the training record (when, on how many records, with which settings, what each EM block
found), every comparison level's match weight beside the prior's, and Splink's own
charts for the fitted model: match weights, m and u per comparison level, the match
weights of the pairs this run scored, and the unlinkable records. The chart library
(vega, vega-lite, vega-embed, shipped inside the Splink wheel) is inlined, so the page
works with no network. Every value is escaped; no record's values appear on the page.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from urllib.parse import quote

import duckdb

from .model import TRAINING_KEY, linker_for, load_model

# The pages charts are drawn on, in the order shown, with what each tells a reader.
CHARTS = (
    ("match_weights", "Match weights",
     "The evidence each comparison level adds (positive) or takes away (negative), in bits, and the prior."),
    ("m_u", "m and u probabilities",
     "m: how often matching pairs fall in each level; u: how often non-matching pairs do."),
    ("histogram", "Match weights of the scored pairs",
     "Every pair this run scored above the review floor, by total match weight."),
    ("unlinkables", "Unlinkable records",
     "The share of records that would not reach a given match weight even when compared with "
     "themselves: they carry too little to be linked at that threshold."),
)


def _weight(level: dict) -> float | None:
    m, u = level.get("m_probability"), level.get("u_probability")
    return math.log2(m / u) if m and u else None


def level_weights(model: dict) -> dict[tuple[str, str], float | None]:
    return {(c["output_column_name"], lv["label_for_charts"]): _weight(lv)
            for c in model["comparisons"] for lv in c["comparison_levels"] if not lv.get("is_null_level")}


def chart_specs(con: duckdb.DuckDBPyConnection, model_path: Path, tables: dict[str, str],
                scored_pairs: str | None) -> dict[str, dict]:
    """Splink's chart specifications (Vega-Lite, data inline) for the model at
    model_path over the records in `tables`; scored_pairs names a table of this run's
    scored pairs (with match_weight), or None."""
    linker = linker_for(con, tables, load_model(model_path), validate=False)
    specs = {"match_weights": linker.visualisations.match_weights_chart().chart_dict,
             "m_u": linker.visualisations.m_u_parameters_chart().chart_dict,
             "unlinkables": linker.evaluation.unlinkables_chart().chart_dict}
    if scored_pairs:
        frame = linker._db_api.register(scored_pairs, table_name="__splink__df_predict")  # the name Splink's SQL reads
        specs["histogram"] = linker.visualisations.match_weights_histogram(frame).chart_dict
    return specs


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 or abs(value) >= 1e5 else f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(model_path: Path, prior_path: Path, specs: dict[str, dict]) -> str:
    """The page, from a saved model, the prior it started from, and chart specs."""
    from splink.internals.html_utils import json_for_html, load_chart_libraries

    raw = json.loads(Path(model_path).read_text())
    record = raw.get(TRAINING_KEY, {})
    fitted, prior = level_weights(raw), level_weights(load_model(prior_path))
    sessions = record.get("em_sessions", [])
    parts = [
        f"<h1>Person model {html.escape(Path(model_path).name)}</h1>",
        "<p>" + (f"Fitted {html.escape(str(record.get('fitted_at', '')))} to "
                 f"{record.get('records', 0):,} records of this deployment, starting from the prior "
                 f"<code>{html.escape(str(record.get('prior', '')))}</code>. No truth was used: u by random "
                 "sampling, m by expectation maximisation, the prior from the blocks' matching pairs. The match "
                 "threshold and the clustering rules are fixed in advance and not fitted."
                 if record.get("fitted") else html.escape(record.get("reason", "This model was not fitted here."))) + "</p>",
        "<h2>Records seen</h2>",
        _table(["system", "records"], [[s, n] for s, n in sorted(record.get("records_by_system", {}).items())]),
        "<h2>Expectation maximisation</h2>",
        _table(["block", "pairs", "iterations", "share matching", "matching pairs", "share of all matches held",
                "prior it implies"],
               [[s["block"], s["pairs"], s.get("iterations"), s.get("share_matching"), s.get("matching_pairs"),
                 s.get("share_of_matches_held"), s.get("prior", s.get("skipped"))] for s in sessions]),
        f"<p>Probability two random records match: <b>{html.escape(_fmt(raw['probability_two_random_records_match']))}</b>"
        f" (the median of the blocks' estimates).</p>",
        "<h2>Settings</h2>",
        _table(["setting", "value"], [[k, json.dumps(v)] for k, v in record.get("settings", {}).items()]),
        "<h2>Match weight of each level, fitted against the prior</h2>",
        _table(["comparison", "level", "prior (bits)", "fitted (bits)", "change"],
               [[c, lv, prior.get((c, lv)), w, None if w is None or prior.get((c, lv)) is None else w - prior[(c, lv)]]
                for (c, lv), w in fitted.items()]),
    ]
    for key, title, meaning in CHARTS:
        if key in specs:
            parts.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(meaning)}</p><div class='chart' id='chart-{key}'></div>")
    libraries = "".join(f"<script>{source}</script>" for source in load_chart_libraries().values())
    embeds = "".join(
        f"vegaEmbed('#chart-{key}', {json_for_html(spec, cls=_Numbers)}, {{actions: false}})"
        ".catch(function (e) { document.getElementById('chart-" + key + "').textContent = 'chart error: ' + e; });"
        for key, spec in specs.items())
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}table{border-collapse:collapse;"
             "margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;font-size:.9rem}"
             "code{background:#f3f3f3}.chart{margin-bottom:2rem}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Person model "
            f"{html.escape(Path(model_path).name)}</title><style>{style}</style>{libraries}</head><body>"
            + "".join(parts) + f"<script>{embeds}</script></body></html>")


class _Numbers(json.JSONEncoder):
    def default(self, o):  # DuckDB hands Splink's histogram bins back as Decimal
        try:
            return float(o)
        except (TypeError, ValueError):
            return super().default(o)


def write_training_report(con: duckdb.DuckDBPyConnection, model_path: Path, prior_path: Path,
                          tables: dict[str, str], out_dir: Path, scored_pairs: str | None = None) -> Path:
    """HTML report for the model at model_path into out_dir (named after the model), and
    index.html listing every model's report there, newest first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{Path(model_path).stem}.html"
    partial = page.with_name(f".{page.name}.partial")
    partial.write_text(render(model_path, prior_path, chart_specs(con, model_path, tables, scored_pairs)),
                       encoding="utf-8")
    partial.replace(page)
    write_index(out_dir)
    return page


def write_index(out_dir: Path) -> Path:
    """out_dir/index.html: a link to every report there, newest first."""
    reports = sorted((p for p in out_dir.glob("*.html") if p.name != "index.html"), reverse=True)
    # "./" and percent-encoding keep each link a file beside the index: a name such as
    # "javascript:alert(1).html" would otherwise be read as a URL scheme and run.
    items = "".join(f"<li><a href='./{html.escape(quote(p.name))}'>{html.escape(p.stem)}</a></li>" for p in reports)
    index = out_dir / "index.html"
    index.write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Person models</title></head><body>"
        f"<h1>Person models fitted in this deployment</h1><ul>{items}</ul></body></html>", encoding="utf-8")
    return index
