"""mkdocs hooks of chatfmt's docs site (named in mkdocs.yml).

The pages in docs/ are read on GitHub as well as on the site, so they link files of the repository
by relative path (``../SECURITY.md``, ``../examples/...``). On the site: SECURITY.md becomes the page
``security.md`` and links to it point there; a link to any other repository file points at the
repository (``repo_url``) when one is configured, else it is left as its text. A link to a path that
is not in the repository is a warning, so ``mkdocs build --strict`` fails on it. Sphinx roles in
docstrings (``:class:`...```) are shown as the names they point at.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.chatfmt")

ROOT = Path(__file__).resolve().parents[1]
#: repository files published as pages of the site: path in the repository -> page
PAGES_FROM_ROOT = {"SECURITY.md": "security.md"}
_LINK = re.compile(r"\[([^\]\n]*)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def on_files(files: Files, config: Any) -> Files:
    for src, dest in PAGES_FROM_ROOT.items():
        if files.get_file_from_path(dest) is None:
            files.append(File.generated(config, dest, abs_src_path=str(ROOT / src)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    src_uri: str = page.file.src_uri
    page_dir = (Path(config["docs_dir"]) / src_uri).parent

    def rewrite(m: re.Match[str]) -> str:
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ""
        path = (page_dir / target).resolve()
        try:
            rel = path.relative_to(ROOT).as_posix()
        except ValueError:
            rel = None
        if rel is None or not path.exists():
            log.warning("Doc file '%s' links to '%s', which is not in the repository", src_uri, target)
            return m.group(0)
        if rel in PAGES_FROM_ROOT:
            dest = os.path.relpath(PAGES_FROM_ROOT[rel], os.path.dirname(src_uri) or ".")
            return f"[{text}]({dest}{anchor})"
        repo_url = config.get("repo_url")
        if repo_url:
            kind = "tree" if path.is_dir() else "blob"
            return f"[{text}]({repo_url.rstrip('/')}/{kind}/main/{rel}{anchor})"
        return text

    return _LINK.sub(rewrite, markdown)


_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):<code>(~?)([^<]*)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Docstrings name objects with Sphinx roles (``:class:`~chatfmt.ChatFormat```); on the API pages
    show the name alone (the last part after ``~``), as Sphinx would."""

    def name(m: re.Match[str]) -> str:
        target = m.group(2)
        return f"<code>{target.rsplit('.', 1)[-1] if m.group(1) else target}</code>"

    return _ROLE.sub(name, html)
