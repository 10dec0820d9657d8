"""The quality report for the review data workstream: one static HTML file per build at
HOME/reports/quality/index.html, readable without Python or JavaScript.

It reads only the audit schema (and quarantine.issue): headline pass/fail of the newest
build, every check with its result and threshold, trends over builds as inline SVG
charts, the identity quality summary, quarantine by system and rule, and links to the
Great Expectations Data Docs and the data dictionary.
"""

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from assets.home import DICTIONARY_PAGE, QUALITY_PAGE
from sources.sql_runner import table_exists

from .audit import ensure_audit

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#1b1b1b}
h1{margin-bottom:.2rem} table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f2f2f2} .pass{color:#176d2f;font-weight:600} .fail{color:#b00020;font-weight:600}
.warn{color:#8a5a00;font-weight:600} .headline{font-size:1.4rem;padding:.6rem 1rem;border-radius:.3rem;display:inline-block}
.headline.pass{background:#e3f4e8} .headline.fail{background:#fde7ea} code{font-size:.85rem}
figure{display:inline-block;margin:0 2rem 1rem 0} figcaption{font-size:.85rem;color:#555}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list], raw_columns: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if i in raw_columns else _e(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(title: str, series: list[tuple[str, float]], colour: str = "#3465a4") -> str:
    """A small bar chart as inline SVG: one bar per build, oldest first."""
    if not series:
        return ""
    width, height, gap = 24, 120, 6
    top = max(v for _, v in series) or 1
    bars = "".join(
        f'<rect x="{i * (width + gap)}" y="{height - v / top * height:.1f}" width="{width}" '
        f'height="{v / top * height:.1f}" fill="{colour}"><title>{_e(label)}: {v:g}</title></rect>'
        for i, (label, v) in enumerate(series))
    svg_width = len(series) * (width + gap)
    return (f'<figure><svg width="{svg_width}" height="{height}" role="img" aria-label="{_e(title)}">{bars}</svg>'
            f"<figcaption>{_e(title)} (newest right; max {top:g})</figcaption></figure>")


def write_quality_report(con: duckdb.DuckDBPyConnection, reports_dir: Path) -> Path:
    """HOME/reports/quality/index.html from the audit schema: the newest build's checks,
    trends over builds, identity quality and quarantine. Written whole (a partial file
    renamed into place), so a reader never sees half a report."""
    ensure_audit(con)
    builds = con.sql("""
        SELECT build_id, min(checked_at) AS started, count(*) AS checks,
               count(*) FILTER (WHERE NOT passed) AS failed,
               count(*) FILTER (WHERE NOT passed AND severity = 'blocking') AS blocking_failed
        FROM audit.check_result GROUP BY build_id ORDER BY started
    """).fetchall()
    evaluation = con.sql("""
        SELECT run_id, max(value) FILTER (WHERE metric = 'precision'), max(value) FILTER (WHERE metric = 'recall')
        FROM audit.identity_evaluation WHERE scope = 'overall' GROUP BY run_id ORDER BY min(evaluated_at)
    """).fetchall()
    parts = [*_checks_section(con, builds[-1][0] if builds else None), *_trends_section(con, builds, evaluation),
             *_identity_section(con, evaluation), *_quarantine_section(con),
             '<h2>More detail</h2><ul><li><a href="../gx/index.html">Great Expectations Data Docs</a> '
             "(every expectation of every suite run in this build)</li>"
             f'<li><a href="../{DICTIONARY_PAGE}">Data dictionary</a></li></ul>']
    out = Path(reports_dir) / QUALITY_PAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Data quality report</title>"
                       f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    partial.replace(out)
    return out


def _status(passed: bool, severity: str) -> str:
    if passed:
        return '<span class="pass">pass</span>'
    return '<span class="fail">FAIL</span>' if severity == "blocking" else '<span class="warn">warning</span>'


def _checks_section(con, newest: str | None) -> list[str]:
    """The headline and every check of the newest build (each check's latest result)."""
    results = con.execute("""
        SELECT asset, check_name, severity, passed, observed, expected, failing_rows, sample, checked_at
        FROM audit.check_result WHERE build_id = ?
        QUALIFY row_number() OVER (PARTITION BY asset, check_name ORDER BY checked_at DESC) = 1
        ORDER BY asset, check_name
    """, [newest]).fetchall()
    blocking_failed = [r for r in results if not r[3] and r[2] == "blocking"]
    warnings = [r for r in results if not r[3] and r[2] != "blocking"]
    check_rows = [[_e(a), _e(c), _e(s), _status(p, s), f"<code>{_e(o)}</code>", f"<code>{_e(x)}</code>", f,
                   f"<code>{_e(json.loads(sample) if sample else '')}</code>" if not p else "", _e(t)]
                  for a, c, s, p, o, x, f, sample, t in results]
    headline_ok = results and not blocking_failed
    return [
        f"<h1>Data quality report</h1><p>Build <code>{_e(newest)}</code>, written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the audit schema of the build database.</p>",
        f'<p class="headline {"pass" if headline_ok else "fail"}">'
        + (f"All {len(results)} checks passed" + (f" ({len(warnings)} warnings)" if warnings else "")
           if headline_ok else f"{len(blocking_failed)} blocking check(s) failed: publishing was stopped")
        + "</p>",
        "<h2>Every check in this build</h2>",
        _table(["asset", "check", "severity", "result", "observed", "threshold", "failing rows", "sample", "checked at"],
               check_rows, raw_columns={3, 4, 5, 7}),
    ]


def _trends_section(con, builds: list[tuple], evaluation: list[tuple]) -> list[str]:
    quarantined = con.sql("""
        SELECT build_id, sum(rows) FROM audit.quarantine_summary GROUP BY 1 ORDER BY min(recorded_at)
    """).fetchall()
    return ["<h2>Trends over builds</h2>",
            _bars("checks run per build", [(b[0], b[2]) for b in builds]),
            _bars("checks failed per build", [(b[0], b[3]) for b in builds], "#b00020"),
            _bars("rows quarantined per build", [(b, float(n)) for b, n in quarantined], "#8a5a00"),
            _bars("identity recall against the truth, per evaluated build", [(r, v or 0) for r, _, v in evaluation])]


def _identity_section(con, evaluation: list[tuple]) -> list[str]:
    metrics = con.sql("""
        SELECT metric, value FROM audit.identity_metric
        WHERE run_id = (SELECT run_id FROM audit.identity_metric ORDER BY recorded_at DESC LIMIT 1)
          AND metric NOT LIKE 'seconds_%' ORDER BY metric
    """).fetchall()
    parts = ["<h2>Identity quality</h2>"]
    if metrics:
        parts.append(_table(["measure", "value"], [[m, f"{v:,.4f}".rstrip("0").rstrip(".")] for m, v in metrics]))
    if evaluation:
        run, precision, recall = evaluation[-1]
        parts.append(f"<p>Against the synthetic city's truth (run <code>{_e(run)}</code>): pairwise precision "
                     f"{precision:.5f}, recall {recall:.5f}.</p>")
    return parts


def _quarantine_section(con) -> list[str]:
    quarantine = con.sql("""
        SELECT system, rule, CASE severity WHEN 'hard' THEN 'row quarantined' ELSE 'value flagged, row kept' END,
               count(*) AS rows, count(DISTINCT (extract_date, file_name)) AS files
        FROM quarantine.issue GROUP BY ALL ORDER BY system, 3 DESC, rows DESC
    """).fetchall() if table_exists(con, "quarantine.issue") else []
    return ["<h2>Quarantine by system and rule</h2><p>Hard failures send the row to quarantine; "
            "soft failures keep the row and move the bad value to a flagged column.</p>",
            _table(["system", "rule", "outcome", "rows", "files"], [list(r) for r in quarantine])
            if quarantine else "<p>No row is in quarantine and no value was flagged.</p>"]


