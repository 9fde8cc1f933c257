"""``chatfmt export``: write a format as an equivalent Jinja chat template or as a TOML spec, or into
a model directory as its chat template."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..formats.export import TARGETS, export_into
from ..formats.export import export as export_format
from ..formats.loader import load_format
from .common import fail, user_errors, warn


def export(
    format: str = typer.Argument(..., help="Built-in name or .toml file (a .jinja, model dir or .gguf for --to jinja)."),
    to: str = typer.Option(None, "--to", help="jinja (an HF chat_template) or toml (a declarative spec)."),
    output: str = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    into: str = typer.Option(
        None, "--into", help="Write the Jinja template into this model directory as transformers saves it "
        "(chat_template.jinja; tokenizer_config.json's chat_template entry removed)."
    ),
    generation: bool = typer.Option(
        False, "--generation-blocks", help="Jinja: mark trained assistant text with {% generation %} blocks."
    ),
) -> None:
    """Export a format: as a Jinja chat template that renders exactly like it, or as TOML."""
    if into is not None:
        if to not in (None, "jinja"):
            fail(f"--into writes a Jinja chat template; --to {to} cannot go with it")
        if output is not None or generation:
            fail("--into cannot go with " + ("--output" if output is not None else "--generation-blocks"))
        with user_errors():
            written, notes = export_into(load_format(format), into)
        for note in notes:
            warn(note)
        typer.echo(f"{into}: wrote {', '.join(str(Path(p).relative_to(into)) for p in written)}", err=True)
        return
    if to is None:
        fail("give --to jinja|toml (or --into MODEL_DIR)")
    if to not in TARGETS:
        fail(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    with user_errors():
        fmt = load_format(format)
        text = export_format(fmt, to, **({"generation": True} if generation and to == "jinja" else {}))
        if output is not None:
            Path(output).write_text(text, encoding="utf-8")
            return
    sys.stdout.write(text)
    sys.stdout.flush()
