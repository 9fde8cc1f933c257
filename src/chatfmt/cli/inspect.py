"""``chatfmt inspect``: rows of a prepared dataset with trained tokens highlighted, in the terminal
or as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..tokenizers import load_tokenizer
from ..train.inspect import html_page, inspect_rows, legend_text, rich_view
from ..train.writers import read_metadata
from .common import fail, user_errors

DEFAULT_LIMIT = 5


def inspect_cmd(
    output: str = typer.Argument(..., help="A chatfmt prepare output: Parquet or JSONL, plain or packed."),
    index: int = typer.Option(None, "--index", "-i", help="First row to show (0-based); alone, shows that row only."),
    limit: int = typer.Option(None, "--limit", "-n", help=f"Rows to show (default {DEFAULT_LIMIT}, or 1 with --index)."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", "-t", help="The tokenizer the data was prepared with (a path or Hub id); without it, ids only."
    ),
    html: str = typer.Option(None, "--html", help="Write a self-contained HTML page to this file instead."),
) -> None:
    """Show prepared examples: trained tokens highlighted, control tokens marked, whitespace visible."""
    if index is not None and index < 0:
        fail("--index must be >= 0")
    if limit is not None and limit < 1:
        fail("--limit must be at least 1")
    if limit is None:
        limit = 1 if index is not None else DEFAULT_LIMIT
    start = index or 0
    with user_errors():
        if tokenizer is None:
            # a Parquet output records the tokenizer it was made with
            recorded = read_metadata(output).get("tokenizer")
            from ..hub import is_hub_id

            if recorded and (Path(recorded).exists() or is_hub_id(recorded)):
                tokenizer = recorded  # a path, or the Hub id it was made with (read from the Hub cache)
        tok = load_tokenizer(tokenizer) if tokenizer is not None else None
        views = inspect_rows(output, tok, start=start, limit=limit)
    if not views:
        fail(f"{output}: no row {start} (the file has fewer rows)" if start else f"{output}: no rows")
    if html is not None:
        page = html_page(views, title=f"chatfmt inspect {Path(output).name}")
        try:
            Path(html).write_text(page, encoding="utf-8")
        except OSError as e:
            fail(f"{html}: {e.strerror or e}")
        typer.echo(f"{html}: {len(views)} row(s) from {output}")
        return
    console = Console(highlight=False)
    if tok is None:
        console.print("no --tokenizer: token ids only", style="dim")
    console.print(legend_text())
    for view in views:
        console.print()
        console.print(rich_view(view))
