"""``chatfmt lint``: flag common faults of a chat template, one line each, with stable rule ids."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.text import Text

from ..formats.lint import lint
from .common import chatfmt_warnings, user_errors
from .detect import load_target


def lint_cmd(
    path: str = typer.Argument(
        ..., help="A .jinja, tokenizer_config.json, model dir, .gguf, built-in name, Hub id ORG/NAME[@REV], or - for stdin."
    ),
    template: str = typer.Option(None, "--template", help="Pick a named template (e.g. tool_use)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    no_reference: bool = typer.Option(
        False, "--no-reference", help="Skip the comparison with the built-in formats."
    ),
) -> None:
    """Lint a chat template: crashes, ignored generation prompt, dropped system message, double BOS,
    prefix instability, Python repr leaks, OpenAI-payload crashes, differences from the closest built-in,
    date dependence. Exit code 1 if any finding is an error, 2 on bad input."""
    with user_errors(), chatfmt_warnings():
        fmt = load_target(path, template)
        report = lint(fmt, reference=not no_reference)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        console = Console(highlight=False)
        for f in report.findings:
            style = "bold red" if f.severity == "error" else "bold yellow"
            console.print(Text.assemble((f"{f.severity}[{f.rule}]", style), ": ", f.message))
        n_err = len(report.errors)
        n_warn = len(report.findings) - n_err
        summary = "no findings" if not report.findings else f"{n_err} error(s), {n_warn} warning(s)"
        console.print(Text.assemble((report.source, "dim"), ": ", summary))
    raise typer.Exit(0 if report.ok else 1)
