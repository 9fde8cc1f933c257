"""``chatfmt formats``: list the formats (built-ins and installed plugins), their template keyword
arguments and where each comes from."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formats import registry
from ..formats.family import TemplateKwarg
from ..toolcalls import parser_name_for_format
from .common import chatfmt_warnings


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def formats(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    long: bool = typer.Option(
        False, "--long", "-l", help="Add the columns kwargs (the template keyword arguments: name: type = default) and origin."
    ),
) -> None:
    """List the chat formats (built-ins and installed plugins) and what each supports."""
    with chatfmt_warnings():  # a plugin that fails to load: one "chatfmt: warning:" line
        names = registry.names()
    fmts = [registry.get(n) for n in names]
    alias_map: dict[str, list[str]] = {}
    for alias, target in registry.aliases().items():
        alias_map.setdefault(target, []).append(alias)
    fams = {n: registry.family(n) for n in names}
    origins = {n: registry.FAMILIES.origin(n) for n in names}
    if as_json:
        records = [
            {
                "name": f.info.name,
                "aliases": sorted(alias_map.get(n, [])),
                "family": f.info.family,
                "system": f.info.supports_system,
                "tools": f.info.supports_tools,
                "reasoning": f.info.supports_reasoning,
                "stop": list(f.info.stop),
                "description": f.info.description,
                "reference": f.info.reference,
                "parser": parser_name_for_format(f),
                "kwargs": [_kwarg_json(k) for k in fams[n].kwargs],
                "origin": origins[n].dist,
                "entry_point": origins[n].entry_point or None,
            }
            for n, f in zip(names, fmts, strict=True)
        ]
        typer.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    rows: list[tuple[str, ...]] = [
        (
            f.info.name,
            ", ".join(sorted(alias_map.get(n, []))),
            _yes(f.info.supports_system),
            _yes(f.info.supports_tools),
            _yes(f.info.supports_reasoning),
            " ".join(_escaped(s) for s in f.info.stop),
            f.info.description + ("" if origins[n].builtin else f" [plugin: {origins[n].dist}]"),
        )
        for n, f in zip(names, fmts, strict=True)
    ]
    if long:
        columns = (*COLUMNS, "kwargs", "origin")
        longer = [(*r, ", ".join(str(k) for k in fams[n].kwargs), str(origins[n])) for n, r in zip(names, rows, strict=True)]
        typer.echo("\t".join(columns))
        for long_row in longer:
            typer.echo("\t".join(_plain_cell(c) for c in long_row))
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        # piped: one plain tab-separated row a format, never wrapped (cut -f, awk, grep friendly)
        typer.echo("\t".join(COLUMNS))
        for row in rows:
            typer.echo("\t".join(_plain_cell(c) for c in row))
        return
    # a terminal: fit its width; long cells end in an ellipsis rather than wrapping
    console.print(_table(rows, console.width))
    if console.width < WIDE:
        console.print(Text("(aliases and full cells: chatfmt formats | cat, or --json)", style="dim"))


#: from this terminal width on, the aliases column is shown
WIDE = 140


def _table(rows: list[tuple[str, ...]], width: int) -> Table:
    """The formats as a table exactly ``width`` columns wide at most: name, the yes/- columns and
    as much of stop, description (and aliases on a wide terminal) as fits, cut with an ellipsis."""
    wide = width >= WIDE
    heads = ["name", "aliases", "system", "tools", "reasoning", "stop", "description"]
    if not wide:
        heads[2], heads[4] = "sys", "think"
    keep = [i for i in range(len(heads)) if wide or heads[i] != "aliases"]
    fixed = {i: max(len(heads[i]), *(len(r[i]) for r in rows)) for i in (0, 2, 3, 4)}
    gaps = 3 * (len(keep) - 1)  # padding either side of each inner border, and the border
    room = max(0, width - gaps - sum(fixed.values()))
    flexible = [i for i in keep if i not in fixed]
    longest = {i: max(len(heads[i]), *(len(r[i]) for r in rows)) for i in flexible}
    shares = {1: 0.3, 5: 0.2, 6: 0.5} if wide else {5: 0.3, 6: 0.7}
    widths = dict(fixed)
    for i in flexible:
        widths[i] = max(4, min(longest[i], int(room * shares[i])))
    spare = room - sum(widths[i] for i in flexible)
    for i in sorted(flexible, key=lambda i: -shares[i]):  # what one column does not need, another gets
        extra = min(max(0, spare), longest[i] - widths[i])
        widths[i] += extra
        spare -= extra
    table = Table(title=Text("chatfmt built-in formats"), box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i in keep:
        table.add_column(Text(heads[i]), width=widths[i], no_wrap=True, overflow="ellipsis")
    for r in rows:
        table.add_row(*(Text(r[i], no_wrap=True, overflow="ellipsis") for i in keep))
    return table


COLUMNS = ("name", "aliases", "system", "tools", "reasoning", "stop", "description")


def _kwarg_json(k: TemplateKwarg) -> dict[str, object]:
    default = k.default if k.default is None or isinstance(k.default, (bool, int, float, str)) else repr(k.default)
    return {"name": k.name, "type": k.type, "default": default, "help": k.help}


def _escaped(stop: str) -> str:
    """A stop string on one line: newlines and tabs as ``\\n`` / ``\\t``."""
    return stop.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _plain_cell(text: str) -> str:
    """A cell of a tab-separated row: no tab or line break inside."""
    return " ".join(text.split()) if any(c in text for c in "\t\n\r") else text
