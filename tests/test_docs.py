"""The README is the door and docs/ holds the rest: the README stays short, every relative link in
them points at a file of the repository, both format tables list every built-in, and no file of the
package points at ../shared (a wheel has no such folder). `make docs` builds the site strictly
(anchors, API pages); these checks need no mkdocs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from chatfmt.formats import registry

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def _builtins() -> list[str]:
    return [n for n in registry.names() if registry.FAMILIES.origin(n).builtin]


def _table_names(text: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def test_readme_is_at_most_24000_characters() -> None:
    # the door: a tour, the formats, serving, performance and testing tables; the rest is in docs/
    assert len(README.read_text(encoding="utf-8")) <= 24_000


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files_of_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z]+:", path):
            continue
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == []


def _formats_table():
    name = "chatfmt_scripts_formats_table"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "formats_table.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_the_format_tables_list_every_builtin() -> None:
    names = set(_builtins())
    assert names <= _table_names((DOCS / "formats.md").read_text(encoding="utf-8"))
    assert names <= _table_names(README.read_text(encoding="utf-8"))
    assert f"{len(names)} built-in formats" in README.read_text(encoding="utf-8")


def test_the_format_tables_are_the_ones_generated_from_the_registry() -> None:
    """README's and docs/formats.md's tables are what scripts/formats_table.py makes of the registry
    (fix: ``python scripts/formats_table.py --write``)."""
    ft = _formats_table()
    data = ft.rows()
    assert [r["format"].strip("`") for r in data] == sorted(_builtins())
    assert ft.current(README.read_text(encoding="utf-8")) == ft.block(ft.readme_table(data))
    assert ft.current((DOCS / "formats.md").read_text(encoding="utf-8")) == ft.block(ft.docs_table(data))


def test_the_formats_table_cells_follow_the_declarations() -> None:
    ft = _formats_table()
    by_name = {r["format"].strip("`"): r for r in ft.rows()}
    for name in _builtins():
        info, fam = registry.get(name).info, registry.family(name)
        row = by_name[name]
        assert (row["system"], row["tools"], row["reasoning"]) == tuple(
            "yes" if flag else "-"
            for flag in (info.supports_system, info.supports_tools, info.supports_reasoning)
        )
        if fam.parser:
            assert row["parser"] == f"`{fam.parser}`"
        assert row["pins"] == (str(len(fam.pins)) if fam.pins else "-")
    assert (
        ft.ids_cell("mistral-common 1.13 InstructTokenizerV3; ids compared with sentencepiece")
        == "mistral-common"
    )
    assert ft.ids_cell("the chat_template of X, rendered by transformers") == "text"
    assert ft.ids_cell("anything", "tiktoken o200k") == "tiktoken o200k"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert {p for p in pages if f" {p}\n" not in nav and f"- {p}\n" not in nav} == set()


def test_no_file_of_the_package_points_at_the_shared_folder() -> None:
    src = REPO / "src" / "chatfmt"
    hits = [
        str(p.relative_to(REPO))
        for p in sorted(src.rglob("*"))
        if p.is_file()
        and p.suffix in {".py", ".jinja", ".json", ".md", ".toml"}
        and "../shared" in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert hits == []
