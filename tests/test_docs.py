"""The documents a reader trusts are generated from, or checked against, the tree: the
warehouse's table lists come from the SQL headers, and the README's layout table names
what each folder holds."""
import re
from pathlib import Path

from assets.dictionary import LISTS_BEGIN, LISTS_END, SPEC, declared_tables, table_lists

ROOT = Path(__file__).resolve().parents[1]
LAYOUT_FOLDERS = ("sources", "assets", "pipelines", "quality")


def test_warehouse_table_lists_are_generated_from_the_sql_headers():
    text = SPEC.read_text(encoding="utf-8")
    current = text[text.index(LISTS_BEGIN):text.index(LISTS_END) + len(LISTS_END)]
    assert current == table_lists(), "docs/warehouse.md is stale: run `make docs`"


def test_every_listed_table_declares_a_grain_and_a_meaning():
    tables = declared_tables()
    assert {s for s, _ in tables} == {"model", "marts", "features"}
    missing = [f"{s}.{t}" for (s, t), e in tables.items() if not (e["grain"] and e["description"])]
    assert not missing


def test_a_table_whose_header_changes_changes_the_generated_list(tmp_path):
    # the lists read the headers, not a copy: a new table in a SQL file appears in them
    from assets.dictionary import load_descriptions, load_sources
    root = tmp_path / "assets"
    (root / "marts").mkdir(parents=True)
    (root / "marts" / "new_mart.sql").write_text(
        "-- marts.new_mart: children seen per month. Grain: month_start.\n"
        "CREATE OR REPLACE TABLE marts.new_mart AS SELECT 1 AS month_start;\n")
    tables = declared_tables(sources=load_sources(root), descriptions=load_descriptions())
    assert tables[("marts", "new_mart")]["grain"] == "month_start"
    assert tables[("marts", "new_mart")]["description"] == "children seen per month."


def _layout_rows() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout"):]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)/` \| (.*) \|$", section, re.M)}


def test_the_readme_layout_names_every_module_and_folder():
    rows = _layout_rows()
    for folder in LAYOUT_FOLDERS:
        entries = {p.name + ("/" if p.is_dir() else "") for p in (ROOT / folder).iterdir()
                   if p.name not in ("__init__.py", "__pycache__") and not p.name.startswith(".")}
        unnamed = [e for e in sorted(entries) if f"`{e}`" not in rows[folder]]
        assert not unnamed, f"README layout, {folder}/: {unnamed} not described"


def test_every_path_the_readme_layout_names_exists():
    for folder, row in _layout_rows().items():
        if folder not in LAYOUT_FOLDERS:
            continue
        for name in re.findall(r"`([\w.]+/?)`", row):
            if re.fullmatch(r"[\w]+(\.(py|yaml|sql)|/)", name):
                assert (ROOT / folder / name.rstrip("/")).exists() or (ROOT / name.rstrip("/")).exists(), \
                    f"README layout names {folder}/{name}, which is not in the tree"
