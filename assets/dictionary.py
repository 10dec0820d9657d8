"""The data dictionary: every published table and column described, in the warehouse
(``docs.tables``, ``docs.columns``) and as a static page (``reports/data_dictionary.html``).

Generic over whatever the build holds: it lists the tables of the published schemas from
the catalog and takes each description from the first source that has one:

1. a DuckDB ``COMMENT ON TABLE / COLUMN``;
2. the SQL file that creates the table (any ``.sql`` under ``assets/``): its leading
   ``--`` block, where a line ``schema.table: meaning`` opens that table's paragraph and
   ``Grain: ...`` gives the grain; a trailing ``-- comment`` on a select-list line, or a
   ``column: meaning`` line in the header, describes that column;
3. ``assets/descriptions.yaml``: tables by name (for tables no SQL file makes), columns
   by name or glob pattern;
4. inferred from the name and type, and then the column is listed as *undocumented*.

Each table's meaning and grain is written once, there; ``docs/warehouse.md``'s table lists
are generated from them (``make docs``, ``python -m assets.dictionary --write-docs``).
"""

from __future__ import annotations

import fnmatch
import html
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import yaml

from assets.home import DICTIONARY_PAGE

ROOT = Path(__file__).resolve().parents[1]
SQL_ROOT = ROOT / "assets"
SPEC = ROOT / "docs" / "warehouse.md"
DESCRIPTIONS = Path(__file__).with_name("descriptions.yaml")
SCHEMAS = ("identity", "model", "marts", "features", "audit", "docs")
DOCS_TABLES = {
    "tables": [("schema", "VARCHAR"), ("table_name", "VARCHAR"), ("grain", "VARCHAR"),
               ("description", "VARCHAR"), ("row_count", "BIGINT"), ("description_source", "VARCHAR"),
               ("source_file", "VARCHAR")],
    "columns": [("schema", "VARCHAR"), ("table_name", "VARCHAR"), ("column_name", "VARCHAR"),
                ("data_type", "VARCHAR"), ("description", "VARCHAR"), ("description_source", "VARCHAR"),
                ("ordinal", "INTEGER")],
}

_CREATE = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                     r"\"?(\w+)\"?\.\"?(\w+)\"?", re.I)
_SECTION = re.compile(r"^\s*(\w+)\.(\w+)\s*(?::|—|–|\s-\s)\s*(.*)$")
_GRAIN = re.compile(r"\bgrain\s*:\s*", re.I)
_HEADER_COLUMN = re.compile(r"^(\w+)\s*(?::|—|–|\s-\s)\s+(.+)$")
_ENTRY = re.compile(r"^(\w+(?:\s*,\s*\w+)*)(?::\s+|\s+)(\S.*)$")
_INLINE_COLUMN = re.compile(r"\"?(\w+)\"?\s*,?\s*--\s*(.+?)\s*$")


@dataclass
class Sources:
    """Descriptions found outside the database, by (schema, table) and column."""
    tables: dict = field(default_factory=dict)      # (s, t) -> {description, grain, source, file}
    columns: dict = field(default_factory=dict)     # (s, t, c) -> (description, source)


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Full-line comment blocks: (index of the line after the block, lines without '--')."""
    blocks, current = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("--"):
            current.append(re.sub(r"^--\s?", "", stripped))
        else:
            if current:
                blocks.append((i, current))
            current = []
    if current:
        blocks.append((len(lines), current))
    return blocks


def _grain(text: str) -> str | None:
    """The clause after 'Grain:', up to the end of its sentence or of the brackets it sits in."""
    m = _GRAIN.search(text)
    if not m:
        return None
    depth, out = 0, []
    rest = text[m.end():]
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        elif (ch == "." and depth == 0 and (i + 1 == len(rest) or rest[i + 1].isspace())
              and not rest[:i + 1].endswith(("e.g.", "i.e.", "etc."))):
            break
        out.append(ch)
    return "".join(out).strip() or None


def _sentence(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def _section(lines: list[str]) -> tuple[str, str | None, dict]:
    """(description, grain, {column: text}) from one table's comment lines.

    The description is the prose of the first paragraph; 'Grain: ...' gives the grain; an
    indented line 'name  text' or 'a, b  text' (or any 'name: text') describes columns,
    and lines indented deeper continue the text above them."""
    prose, entries, base, paragraph = [], [], None, 0
    for line in lines:
        if not line.strip():
            base, paragraph = None, paragraph + 1
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        entry = _ENTRY.match(text)
        colon = _HEADER_COLUMN.match(text)
        if base is not None and indent > base and entries:
            entries[-1][1] += " " + text
        elif entry and indent >= 2:
            base = indent
            entries.append([[n.strip().lower() for n in entry.group(1).split(",")], entry.group(2)])
        elif colon and colon.group(1).lower() != "grain":  # 'name: text' at the margin
            base = indent
            entries.append([[colon.group(1).lower()], colon.group(2)])
            if paragraph == 0:
                prose.append(text)
        else:
            base = None
            if paragraph == 0 and indent == 0:
                prose.append(text)
    whole = _sentence([l.strip() for l in lines])
    grain = _grain(whole)
    description = _sentence(prose)
    if grain:
        description = re.sub(r"(^|(?<=[.;?!] ))Grain:\s*" + re.escape(grain) + r"\)?\.?\s*", "", description).strip()
    columns = {}
    for names, text in entries:
        for name in names:
            columns.setdefault(name, _sentence([text]))
    return description or whole, grain, columns


def parse_sql_file(path: Path, sources: Sources, root: Path = ROOT) -> None:
    """Add what one .sql file says about the tables it creates to ``sources``: any comment
    block line 'schema.table: meaning' opens that table's section; a file creating one
    table may also describe it in its leading block without naming it; a block just above
    a CREATE describes that table when it names no other."""
    text = path.read_text(encoding="utf-8", errors="replace")
    created = [(s.lower(), t.lower()) for s, t in _CREATE.findall(text)]
    if not created:
        return
    try:
        rel = str(path.relative_to(root))
    except ValueError:
        rel = str(path)
    all_lines = text.splitlines()
    sections: dict[tuple, list[str]] = {}
    unnamed: dict[tuple, list[str]] = {}  # blocks that describe a table without naming it
    for n, (after, lines) in enumerate(_blocks(text)):
        current, loose = None, []
        for line in lines:
            m = _SECTION.match(line)
            if m and (m.group(1).lower(), m.group(2).lower()) in created:
                current = (m.group(1).lower(), m.group(2).lower())
                sections.setdefault(current, []).append(m.group(3))
            elif current is None:
                loose.append(line)
            else:
                sections[current].append(line)
        if current is None and loose:
            nxt = all_lines[after].strip() if after < len(all_lines) else ""
            follows = _CREATE.match(nxt)
            if follows:
                unnamed.setdefault((follows.group(1).lower(), follows.group(2).lower()), loose)
            elif n == 0 and len(set(created)) == 1 and not re.match(r"CREATE\s", nxt, re.I):
                unnamed.setdefault(created[0], loose)
    for key, lines in unnamed.items():
        sections.setdefault(key, lines)
    for key, lines in sections.items():
        description, grain, columns = _section(lines)
        if description and key not in sources.tables:
            sources.tables[key] = {"description": description, "grain": grain, "source": "sql", "file": rel}
        for name, text in columns.items():
            sources.columns.setdefault((*key, name), (text, "sql"))
    # Trailing comments in a CREATE's body describe the column named just before them.
    owner = None
    for line in all_lines:
        stripped = line.strip()
        m = _CREATE.search(line)
        if m:
            owner = (m.group(1).lower(), m.group(2).lower())
        elif re.match(r"CREATE\s", stripped, re.I):
            owner = None
        if owner and "--" in line and not stripped.startswith("--"):
            inline = _INLINE_COLUMN.search(line)
            if inline:
                sources.columns.setdefault((*owner, inline.group(1).lower()), (inline.group(2), "sql"))


def load_sources(sql_root: Path = SQL_ROOT) -> Sources:
    sources = Sources()
    for path in sorted(sql_root.rglob("*.sql")):
        parse_sql_file(path, sources, root=sql_root.parent)
    return sources


@cache
def repository_sources() -> Sources:
    """What the repository's SQL headers say, read once per process (the asset
    specs and the declared grains are made at import, from the same files). Read only."""
    return load_sources()


def load_descriptions(path: Path = DESCRIPTIONS) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {"tables": data.get("tables") or {}, "columns": data.get("columns") or {}}


def _humanise(name: str) -> str:
    return name.replace("_", " ").strip()


def _pattern_description(name: str, schema: str, table: str, columns: dict, globs: bool) -> str | None:
    """First matching entry of descriptions.yaml ``columns``: 'schema.table.column' or a
    column name, exact names (``globs=False``) or glob patterns (``globs=True``).
    ``{stem}`` in the text is the name without the part the * matched."""
    full = f"{schema}.{table}.{name}"
    for pattern, text in columns.items():
        pattern = pattern.lower()
        if any(ch in pattern for ch in "*?[") != globs:
            continue
        target = full if pattern.count(".") == 2 else name
        if fnmatch.fnmatchcase(target, pattern):
            stem = name
            if pattern.startswith("*") and name.endswith(pattern.lstrip("*")):
                stem = name[: len(name) - len(pattern.lstrip("*"))]
            elif pattern.endswith("*") and name.startswith(pattern.rstrip("*")):
                stem = name[len(pattern.rstrip("*")):]
            return str(text).replace("{stem}", _humanise(stem)).replace("{name}", _humanise(name))
    return None


def _inferred(name: str, data_type: str) -> str:
    return f"{_humanise(name).capitalize()} ({data_type.lower()})."


def collect(con: duckdb.DuckDBPyConnection, schemas=SCHEMAS, sources: Sources | None = None,
            descriptions: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Rows of docs.tables and docs.columns for every table and view of ``schemas``."""
    sources = sources or load_sources()
    descriptions = descriptions or load_descriptions()
    marks = ",".join("?" for _ in schemas)
    objects = con.execute(f"""
        SELECT schema_name, table_name, comment FROM duckdb_tables()
        WHERE database_name = current_database() AND schema_name IN ({marks})
        UNION ALL
        SELECT schema_name, view_name, comment FROM duckdb_views()
        WHERE database_name = current_database() AND schema_name IN ({marks}) AND NOT internal
        ORDER BY 1, 2""", [*schemas, *schemas]).fetchall()
    objects = [o for o in objects if not (o[0] == "docs" and o[1] in DOCS_TABLES)]
    columns = con.execute(f"""
        SELECT schema_name, table_name, column_name, data_type, comment, column_index
        FROM duckdb_columns() WHERE database_name = current_database() AND schema_name IN ({marks})
        ORDER BY schema_name, table_name, column_index""", list(schemas)).fetchall()
    by_table: dict[tuple, list] = {}
    for s, t, c, dtype, comment, idx in columns:
        by_table.setdefault((s, t), []).append((c, dtype, comment, idx))
    if "docs" in schemas:  # the dictionary describes itself
        for name, cols in DOCS_TABLES.items():
            objects.append(("docs", name, None))
            by_table[("docs", name)] = [(c, d, None, i + 1) for i, (c, d) in enumerate(cols)]
    table_rows, column_rows = [], []
    for schema, table, comment in objects:
        key = (schema.lower(), table.lower())
        found = sources.tables.get(key, {})
        yaml_table = descriptions["tables"].get(f"{schema}.{table}") or {}
        if isinstance(yaml_table, str):
            yaml_table = {"description": yaml_table}
        if comment:
            desc, source = comment, "comment"
        elif found.get("description"):
            desc, source = found["description"], found["source"]
        elif yaml_table.get("description"):
            desc, source = yaml_table["description"], "descriptions.yaml"
        else:
            desc, source = f"{_humanise(table).capitalize()} (table in schema {schema}).", "inferred"
        grain = found.get("grain") or yaml_table.get("grain")
        if (schema, table) == ("docs", "tables"):
            count = len(objects)
        elif (schema, table) == ("docs", "columns"):
            count = sum(len(by_table.get((s, t), [])) for s, t, _ in objects)
        else:
            count = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
        table_rows.append({"schema": schema, "table_name": table, "grain": grain, "description": desc,
                           "row_count": count, "description_source": source, "source_file": found.get("file")})
        for col, dtype, ccomment, idx in by_table.get((schema, table), []):
            lower = col.lower()
            found_col = sources.columns.get((key[0], key[1], lower))
            exact = _pattern_description(lower, key[0], key[1], descriptions["columns"], globs=False)
            pattern = _pattern_description(lower, key[0], key[1], descriptions["columns"], globs=True)
            if ccomment:
                cdesc, csource = ccomment, "comment"
            elif found_col and found_col[1] == "sql":
                cdesc, csource = found_col
            elif exact:
                cdesc, csource = exact, "descriptions.yaml"
            elif found_col:
                cdesc, csource = f"{_humanise(col).capitalize()} ({found_col[0]}).", found_col[1]
            elif pattern:
                cdesc, csource = pattern, "descriptions.yaml"
            else:
                cdesc, csource = _inferred(col, dtype), "inferred"
            column_rows.append({"schema": schema, "table_name": table, "column_name": col, "data_type": dtype,
                                "description": cdesc, "description_source": csource, "ordinal": idx})
    return table_rows, column_rows


def store(con: duckdb.DuckDBPyConnection, table_rows: list[dict], column_rows: list[dict]) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS docs")
    for name, rows in (("tables", table_rows), ("columns", column_rows)):
        cols = DOCS_TABLES[name]
        con.execute(f"CREATE OR REPLACE TABLE docs.{name} ("
                    + ", ".join(f'"{c}" {d}' for c, d in cols) + ")")
        if rows:
            con.executemany(f"INSERT INTO docs.{name} VALUES ({', '.join('?' for _ in cols)})",
                            [[r[c] for c, _ in cols] for r in rows])


def render_html(table_rows: list[dict], column_rows: list[dict], title: str = "earlyhelp data dictionary") -> str:
    e = html.escape
    cols_by_table: dict[tuple, list] = {}
    for c in column_rows:
        cols_by_table.setdefault((c["schema"], c["table_name"]), []).append(c)
    schemas = sorted({t["schema"] for t in table_rows}, key=lambda s: (SCHEMAS.index(s) if s in SCHEMAS else 99, s))
    undocumented = [c for c in column_rows if c["description_source"] == "inferred"]
    undocumented_tables = [t for t in table_rows if t["description_source"] == "inferred"]
    out = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
           "<style>body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
           "color:#222}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}"
           "th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}"
           "th{background:#f0f0f0}code{background:#f5f5f5;padding:0 .2rem}.meta{color:#555}"
           ".inferred{color:#a33}h3{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}</style>",
           "</head><body>", f"<h1>{e(title)}</h1>",
           f"<p class='meta'>{len(table_rows)} tables, {len(column_rows)} columns; "
           f"{len(undocumented)} columns and {len(undocumented_tables)} tables described only from their "
           "name and type (listed at the end).</p>", "<h2>Contents</h2><ul>"]
    for schema in schemas:
        tables = [t for t in table_rows if t["schema"] == schema]
        out.append(f"<li><a href='#{e(schema)}'>{e(schema)}</a>: "
                   + ", ".join(f"<a href='#{e(schema)}.{e(t['table_name'])}'>{e(t['table_name'])}</a>" for t in tables)
                   + "</li>")
    out.append("</ul>")
    for schema in schemas:
        out.append(f"<h2 id='{e(schema)}'>Schema <code>{e(schema)}</code></h2>")
        for t in (t for t in table_rows if t["schema"] == schema):
            name = f"{t['schema']}.{t['table_name']}"
            out.append(f"<h3 id='{e(name)}'><code>{e(name)}</code></h3>")
            out.append(f"<p>{e(t['description'])}</p>")
            meta = [f"rows: {t['row_count']:,}"]
            if t["grain"]:
                meta.insert(0, f"grain: {e(t['grain'])}")
            if t["source_file"]:
                meta.append(f"defined in <code>{e(t['source_file'])}</code>")
            out.append(f"<p class='meta'>{'; '.join(meta)}</p>")
            out.append("<table><tr><th>column</th><th>type</th><th>description</th></tr>")
            for c in cols_by_table.get((t["schema"], t["table_name"]), []):
                cls = " class='inferred'" if c["description_source"] == "inferred" else ""
                out.append(f"<tr><td><code>{e(c['column_name'])}</code></td><td>{e(c['data_type'])}</td>"
                           f"<td{cls}>{e(c['description'])}</td></tr>")
            out.append("</table>")
    out.append("<h2 id='undocumented'>Undocumented</h2>")
    if undocumented or undocumented_tables:
        out.append("<p>Described only from name and type; add a COMMENT, a header line in the SQL file "
                   "or an entry in <code>assets/descriptions.yaml</code>.</p><ul>")
        out += [f"<li><code>{e(t['schema'])}.{e(t['table_name'])}</code> (table)</li>" for t in undocumented_tables]
        out += [f"<li><code>{e(c['schema'])}.{e(c['table_name'])}.{e(c['column_name'])}</code></li>"
                for c in undocumented]
        out.append("</ul>")
    else:
        out.append("<p>None: every table and column has a written description.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def build_dictionary(con: duckdb.DuckDBPyConnection, reports_dir: Path, schemas=SCHEMAS,
                     sql_root: Path = SQL_ROOT, descriptions: Path = DESCRIPTIONS) -> Path:
    """Write docs.tables and docs.columns into the build database (``con``, the writer)
    and render ``reports_dir/data_dictionary.html``. Returns the page's path."""
    table_rows, column_rows = collect(con, schemas, load_sources(sql_root), load_descriptions(descriptions))
    store(con, table_rows, column_rows)
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    page = reports_dir / DICTIONARY_PAGE
    partial = page.with_name(f".{page.name}.partial")
    partial.write_text(render_html(table_rows, column_rows), encoding="utf-8")
    partial.replace(page)
    return page


# docs/warehouse.md: the table lists between these lines are written by write_table_lists
LISTS_BEGIN = "<!-- table lists: generated from each table's SQL header or assets/descriptions.yaml by `make docs`; edit those, not this -->"
LISTS_END = "<!-- end of generated table lists -->"
LISTED_SCHEMAS = ("model", "marts", "features")


def declared_tables(schemas=LISTED_SCHEMAS, sources: Sources | None = None,
                    descriptions: dict | None = None) -> dict[tuple, dict]:
    """(schema, table) -> {description, grain, file}: every table of ``schemas`` whose
    meaning the repository declares, in a SQL header or, for tables made in Python, in
    descriptions.yaml. Internal tables (names starting with _) are left out."""
    sources = sources or repository_sources()
    descriptions = descriptions or load_descriptions()
    tables = {key: {"description": entry.get("description"), "grain": entry.get("grain"), "file": entry.get("file")}
              for key, entry in sources.tables.items() if key[0] in schemas and not key[1].startswith("_")}
    for name, entry in descriptions["tables"].items():
        schema, _, table = name.partition(".")
        entry = {"description": entry} if isinstance(entry, str) else entry
        if schema in schemas and (schema, table) not in tables:
            tables[(schema, table)] = {"description": entry.get("description"), "grain": entry.get("grain"),
                                       "file": DESCRIPTIONS.name}
    return dict(sorted(tables.items(), key=lambda kv: (schemas.index(kv[0][0]), kv[0][1])))


def _cell(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "")).replace("|", "\\|").strip()


def table_lists(schemas=LISTED_SCHEMAS) -> str:
    """The markdown table lists of docs/warehouse.md: one list per schema, a row per table
    with its grain and meaning as declared, and where that is written."""
    out = [LISTS_BEGIN]
    tables = declared_tables(schemas)
    for schema in schemas:
        out += ["", f"### Schema `{schema}`", "", "| table | grain | meaning | declared in |", "|---|---|---|---|"]
        out += [f"| `{s}.{t}` | {_cell(e['grain'])} | {_cell(e['description'])} | `{e['file']}` |"
                for (s, t), e in tables.items() if s == schema]
    out += ["", LISTS_END]
    return "\n".join(out)


def write_table_lists(path: Path = SPEC) -> bool:
    """Replace the generated table lists in ``path``; True when its text changed."""
    text = path.read_text(encoding="utf-8")
    begin, end = text.index(LISTS_BEGIN), text.index(LISTS_END) + len(LISTS_END)
    new = text[:begin] + table_lists() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--write-docs"]:
        print(f"{SPEC.relative_to(ROOT)}: {'rewritten' if write_table_lists() else 'already current'}")
    else:
        sys.exit("usage: python -m assets.dictionary --write-docs")
