"""``chatfmt diff A B``: render the probe conversations with two formats and show where they differ."""

from __future__ import annotations

import json
import re

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..formats.base import ChatFormat
from ..formats.detect import ProbeComparison, compare_formats
from ..formats.jinja import _TOKEN_LITERAL_RE
from .common import EXIT_USER_ERROR, chatfmt_warnings, user_errors
from .detect import load_target

#: characters of unchanged text shown before and after a differing region
CONTEXT = 80
TOKEN_STYLE = "bold cyan"


def token_pattern(*formats: ChatFormat) -> re.Pattern[str]:
    """Control-token-like strings: the formats' special tokens, stop and end-of-turn strings, and
    anything shaped like ``<|x|>``, ``<｜x｜>``, ``[INST]`` or ``<start_of_turn>``."""
    literals: set[str] = set()
    for f in formats:
        info = f.info
        literals |= {t for t in (info.bos_token, info.eos_token, *info.stop, *info.end_of_turn) if t}
        literals |= {t for t in info.special_tokens.values() if isinstance(t, str) and t.strip()}
    alts = [re.escape(t) for t in sorted(literals, key=len, reverse=True)] + [_TOKEN_LITERAL_RE.pattern]
    return re.compile("|".join(alts))


def _show(run: str, in_region: bool) -> str:
    out = run.replace("\t", "⇥").replace("\r", "␍").replace("\n", "↵\n")
    return out.replace(" ", "·") if in_region else out


def styled(
    text: str, start: int, end: int, tokens: re.Pattern[str], region_style: str, *, insertion: bool = True
) -> Text:
    """``text[start-CONTEXT : end+CONTEXT]`` as Rich text: newlines as ``↵`` (and a line break), the
    differing region ``[start, end)`` highlighted with spaces as ``·``, control tokens in bold."""
    lo, hi = max(0, start - CONTEXT), min(len(text), end + CONTEXT)
    token_at = [False] * (hi - lo)
    for m in tokens.finditer(text, lo, hi):
        for k in range(m.start(), min(m.end(), hi)):
            token_at[k - lo] = True
    out = Text("…" if lo > 0 else "", style="dim")
    k = lo
    marked = start != end or not insertion  # an empty region is shown as ∅ where the other side has text
    while k < hi or not marked:
        if not marked and (k >= start or k >= hi):  # nothing on this side: mark the insertion point
            out.append("∅", style=region_style)
            marked = True
            continue
        in_region, is_token = start <= k < end, token_at[k - lo]
        j = k
        while (
            j < hi
            and (start <= j < end) == in_region
            and token_at[j - lo] == is_token
            and (marked or j < start)
        ):
            j += 1
        style = " ".join(s for s in (TOKEN_STYLE if is_token else "", region_style if in_region else "") if s)
        out.append(_show(text[k:j], in_region), style=style or None)
        k = j
    if hi < len(text):
        out.append("…", style="dim")
    return out


def _side(c: ProbeComparison, which: str, tokens: re.Pattern[str], region_style: str) -> Text:
    out = c.a if which == "a" else c.b
    if out.text is None:
        return Text(f"raises {out.error}", style="bold red")
    if not (c.a.ok and c.b.ok):  # the other side raised: show the start of this one
        return styled(out.text, 0, 0, tokens, region_style, insertion=False)
    start, end_a, end_b = c.region()
    return styled(out.text, start, end_a if which == "a" else end_b, tokens, region_style)


def print_diff(
    name_a: str, name_b: str, comparisons: list[ProbeComparison], tokens: re.Pattern[str], console: Console
) -> None:
    same = [c.probe.id for c in comparisons if c.same]
    for c in comparisons:
        if c.same:
            continue
        # names, titles and cells are Text: nothing from a template or a path is read as Rich markup
        table = Table(expand=True, show_lines=False, box=None)
        table.add_column(Text(name_a), ratio=1, overflow="fold")
        table.add_column(Text(name_b), ratio=1, overflow="fold")
        table.add_row(_side(c, "a", tokens, "on dark_red"), _side(c, "b", tokens, "on dark_green"))
        where = f" — first difference at char {c.region()[0]}" if c.a.ok and c.b.ok else ""
        title = Text.assemble((c.probe.id, "bold"), f": {c.probe.description}{where}")
        console.print(Panel(Group(table), title=title, title_align="left"))
    n = len(comparisons)
    if len(same) == n:
        console.print(Text.assemble(("identical", "bold green"), f" on all {n} probes"))
    else:
        console.print(Text.assemble((f"{n - len(same)} of {n} probes differ", "bold"), f"; the same: {', '.join(same) or 'none'}"))


def diff(
    a: str = typer.Argument(
        ..., help="A built-in name, .jinja, tokenizer_config.json, model dir, .gguf, .toml or Hub id ORG/NAME[@REV] (- for stdin)."
    ),
    b: str = typer.Argument(..., help="The other format, same kinds."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Render the probe conversations with two formats and show, side by side, where they differ.
    Exit code 0 if they render every probe the same, 1 if not, 2 on errors (like diff(1))."""
    with user_errors(), chatfmt_warnings():
        if a == "-" and b == "-":
            typer.echo("chatfmt: error: only one of A and B can be read from stdin", err=True)
            raise typer.Exit(EXIT_USER_ERROR)
        fa, fb = load_target(a), load_target(b)
        comparisons = compare_formats(fa, fb)
    identical = all(c.same for c in comparisons)
    if as_json:
        payload = {"a": a, "b": b, "identical": identical, "probes": [c.to_dict() for c in comparisons]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print_diff(a, b, comparisons, token_pattern(fa, fb), Console(highlight=False))
    raise typer.Exit(0 if identical else 1)
