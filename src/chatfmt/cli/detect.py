"""``chatfmt detect``: which built-in format a chat template is, decided by rendering probe conversations."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formats.base import ChatFormat
from ..formats.detect import DetectResult, detect
from ..formats.loader import from_template, load_format
from .common import chatfmt_warnings, fail, user_errors


def load_target(path: str, template: str | None = None) -> ChatFormat:
    """A format from a path or built-in name (anything ``load_format`` accepts), or ``-``: a template on stdin."""
    if path == "-":
        text = sys.stdin.read()
        if not text.strip():
            fail("<stdin>: no template given")
        return from_template(text, name="<stdin>")
    return load_format(path, template=template)


def print_result(result: DetectResult, console: Console) -> None:
    style = {
        "identical": "bold green",
        "equivalent": "bold yellow",
        "closest": "yellow",
        "unknown": "bold red",
    }[result.verdict]
    console.print(
        Text.assemble((result.verdict, style), "  ", result.summary(), "  ", (f"[{result.source}]", "dim"))
    )
    # every cell, header and title is a Text: template and message text (``[/INST]``, ``[bold]``) is
    # never read as Rich markup
    if result.differences:
        table = Table(title=Text(f"probes rendered differently from {result.format}"), title_justify="left")
        table.add_column(Text("probe"))
        table.add_column(Text("char"), justify="right")
        table.add_column(Text("template"))
        table.add_column(Text(result.format or "built-in"))
        for d in result.differences:
            table.add_row(
                Text(d.probe),
                Text("" if d.offset is None else str(d.offset)),
                Text(d.excerpt("a")),
                Text(d.excerpt("b")),
            )
        console.print(table)
    if result.verdict != "identical" and result.candidates:
        table = Table(title=Text("closest built-ins"), title_justify="left")
        table.add_column(Text("format"))
        table.add_column(Text("probes the same"), justify="right")
        closeness = result.verdict in ("closest", "unknown")
        if closeness:
            table.add_column(Text("markup similarity"), justify="right")
        table.add_column(Text("differing probes"))
        for c in result.candidates:
            cells = [Text(c.format), Text(f"{c.matches}/{c.total}")]
            if closeness:
                cells.append(Text(f"{c.similarity:.0%}"))
            table.add_row(*cells, Text(", ".join(d.probe for d in c.differences)))
        console.print(table)


def detect_cmd(
    path: str = typer.Argument(
        ...,
        help="A .jinja, tokenizer_config.json, model dir, .gguf, Hub id ORG/NAME[@REV], or - for a template on stdin.",
    ),
    template: str = typer.Option(None, "--template", help="Pick a named template (e.g. tool_use)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Tell which built-in format a chat template is, by rendering probe conversations with it and with
    every built-in: identical, equivalent except some cases, closest (the same turn markup or nearly, the
    differences listed), or unknown (the closest built-ins still listed)."""
    with user_errors(), chatfmt_warnings():
        fmt = load_target(path, template)
        result = detect(fmt)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_result(result, Console(highlight=False, soft_wrap=False))
