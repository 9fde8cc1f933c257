"""``chatfmt encode``: token ids and labels of a conversation, as JSON or highlighted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.text import Text

from ..compat import check_tokenizer
from ..encode import IGNORE_INDEX, encode
from ..formats.loader import load_format, with_tokenizer_tokens
from ..tokenizers import load_tokenizer
from ..train.inspect import legend_text, row_view, tokens_text
from .common import (
    TemplateKwargOption,
    chatfmt_warnings,
    fail,
    read_json_input,
    template_kwargs_option,
    user_errors,
)
from .render import _example, conversation_input, own_template_kwargs

if TYPE_CHECKING:
    from ..encode import Compat, TrainOn, Truncation


def encode_cmd(
    file: str = typer.Argument(None, help="A JSON file with one conversation (any record kind), or - for stdin."),
    format: str = typer.Option(..., "--format", "-f", help="Built-in name, .jinja, tokenizer_config.json, model dir, .gguf or Hub id ORG/NAME[@REV][:FILE.gguf]."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="tokenizer.json, tokenizer.model, a model dir, a .gguf, a Hub id ORG/NAME[@REV], ..."),
    tools: str = typer.Option(None, "--tools", help="A JSON file with a list of tool definitions."),
    generation_prompt: bool = typer.Option(False, "--generation-prompt", "-g", help="Append the assistant header."),
    max_length: int = typer.Option(None, "--max-length", help="Token limit."),
    truncation: str = typer.Option("error", "--truncation", help="error | right | drop_oldest_turns"),
    train_on: str = typer.Option("all_assistant", "--train-on", help="all_assistant | last_assistant | all"),
    compat: str = typer.Option(None, "--compat", help="transformers: reproduce transformers' ids (sentencepiece runs)"),
    template: str = typer.Option(None, "--template", help="Pick a named template (e.g. tool_use)."),
    input_kind: str = typer.Option(None, "--input-kind", help="Force the record kind."),
    as_json: bool = typer.Option(False, "--json", help='Print {"input_ids": [...], "labels": [...]}.'),
    example: bool = typer.Option(False, "--example", help="Encode the bundled example conversation."),
    allow_missing_tokens: bool = typer.Option(
        False, "--allow-missing-tokens", help="Encode even if the tokenizer lacks a token the format relies on (refused by default)."
    ),
    template_kwarg: TemplateKwargOption = None,
) -> None:
    """Encode a conversation into token ids and loss labels (-100 = not trained)."""
    template_kwargs = template_kwargs_option(template_kwarg)
    with user_errors(), chatfmt_warnings():
        tok = load_tokenizer(tokenizer)
        fmt = with_tokenizer_tokens(load_format(format, template=template), tok)
        check_tokenizer(fmt, tok, allow_missing_tokens=allow_missing_tokens)  # before reading any input
        if example:
            data, name = _example(), "<example>"
        else:
            data, name = read_json_input(file)
        try:
            messages, record_tools = conversation_input(data, fmt, input_kind)
        except Exception as e:  # ValidationError: add where it came from
            if hasattr(e, "located"):
                raise e.located(source=name) from None
            raise
        if tools is not None:
            record_tools, _ = read_json_input(tools)
            if not isinstance(record_tools, list):
                fail(f"{tools}: expected a JSON list of tool definitions")
        enc = encode(
            fmt,
            messages,
            tok,
            tools=record_tools,
            add_generation_prompt=generation_prompt,
            max_length=max_length,
            # the option strings as typer gives them: encode refuses another truncation or train_on, and
            # encodes any compat but "transformers" as the vendor does
            truncation=cast("Truncation", truncation),
            train_on=cast("TrainOn", train_on),
            compat=cast("Compat", compat),
            allow_missing_tokens=allow_missing_tokens,
            template_kwargs=own_template_kwargs(data, template_kwargs),
        )
    if as_json:
        out: dict[str, Any] = {"input_ids": enc.input_ids, "labels": enc.labels}
        typer.echo(json.dumps(out))
        return
    # the same token view as ``chatfmt inspect``: whitespace visible, a character split over byte
    # tokens shown once (on the token that completes it), nothing read as Rich markup
    view = row_view({"input_ids": enc.input_ids, "labels": enc.labels}, 0, tok)
    console = Console(highlight=False)
    console.print(legend_text())
    console.print(tokens_text(view.sequences[0].tokens, True))
    trained = sum(1 for x in enc.labels if x != IGNORE_INDEX)
    console.print(
        Text(f"\n{len(enc.input_ids)} tokens, {trained} trained (green), control tokens in magenta"
             + (", truncated" if enc.truncated else ""), style="dim")
    )
