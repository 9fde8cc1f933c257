"""``chatfmt render``: print exactly the text a format renders for a conversation."""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import Any

import typer

from .. import messages as msgs
from ..errors import ValidationError
from ..formats.base import ChatFormat
from ..formats.jinja import JinjaFormat
from ..formats.loader import load_format, with_tokenizer_tokens
from .common import (
    TemplateKwargOption,
    chatfmt_warnings,
    fail,
    read_json_input,
    template_kwargs_option,
    user_errors,
)


def _example() -> Any:
    return json.loads(resources.files("chatfmt.examples").joinpath("conversation.json").read_text("utf-8"))


def conversation_input(data: Any, fmt: ChatFormat, kind: str | None = None) -> tuple[Any, Any]:
    """What to pass to ``fmt.render``: OpenAI-shaped input goes to Jinja templates as given (they see
    the payload exactly as a client sent it); every other record kind is parsed and validated."""
    detected = kind or msgs.detect_kind(data)
    if detected == "openai" and isinstance(fmt, JinjaFormat):
        if isinstance(data, dict):
            msgs.record_template_kwargs(data)  # checked as prepare checks them; see own_template_kwargs
            return data.get("messages"), data.get("tools")
        return data, None
    conv = msgs.parse_record(data, kind=detected)
    return conv, conv.tools


def own_template_kwargs(data: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (``--template-kwarg``) with the record's own ``chat_template_kwargs`` (TRL's) over
    them, as ``prepare`` renders the record."""
    own = data.get("chat_template_kwargs") if isinstance(data, dict) else None
    return {**given, **own} if isinstance(own, dict) and own else given


def render(
    file: str = typer.Argument(None, help="A JSON file with one conversation (any record kind), or - for stdin."),
    format: str = typer.Option(..., "--format", "-f", help="Built-in name, .jinja, tokenizer_config.json, model dir, .gguf or Hub id ORG/NAME[@REV][:FILE.gguf]."),
    tools: str = typer.Option(None, "--tools", help="A JSON file with a list of tool definitions."),
    generation_prompt: bool = typer.Option(False, "--generation-prompt", "-g", help="Append the assistant header."),
    continue_final: bool = typer.Option(False, "--continue", help="Leave the final message open to continue it."),
    template: str = typer.Option(None, "--template", help="Pick a named template (e.g. tool_use)."),
    input_kind: str = typer.Option(None, "--input-kind", help="Force the record kind: openai, conversations, prompt_response, prompt_completion, sharegpt, alpaca."),
    as_json: bool = typer.Option(False, "--json", help='Print {"text": ...} instead of the raw text.'),
    segments: bool = typer.Option(False, "--segments", help="With --json, include the segments."),
    example: bool = typer.Option(False, "--example", help="Render the bundled example conversation."),
    strict: bool = typer.Option(False, "--strict", help="Jinja: no retry with a normalised payload."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", "-t", help="Jinja: take the special tokens the template reads (bos_token, ...) from this tokenizer."
    ),
    template_kwarg: TemplateKwargOption = None,
) -> None:
    """Render a conversation into the exact prompt text of a chat format."""
    template_kwargs = template_kwargs_option(template_kwarg)
    with user_errors(), chatfmt_warnings():
        fmt = load_format(format, template=template, **({"strict": True} if strict else {}))
        if tokenizer is not None:
            from ..tokenizers import load_tokenizer

            fmt = with_tokenizer_tokens(fmt, load_tokenizer(tokenizer))
        if example:
            data, name = _example(), "<example>"
        elif file is None and sys.stdin.isatty():
            fail("give a conversation file, - for stdin, or --example")
        else:
            data, name = read_json_input(file)
        try:
            messages, record_tools = conversation_input(data, fmt, input_kind)
        except ValidationError as e:
            raise e.located(source=name) from None
        if tools is not None:
            record_tools, _ = read_json_input(tools)
            if not isinstance(record_tools, list):
                fail(f"{tools}: expected a JSON list of tool definitions")
        kwargs: dict[str, Any] = {
            "tools": record_tools,
            "add_generation_prompt": generation_prompt,
            "continue_final_message": continue_final,
            **own_template_kwargs(data, template_kwargs),
        }
        if as_json and segments:
            rendered = fmt.render_segments(messages, **kwargs)
            out: dict[str, Any] = {
                "text": rendered.text,
                "segments": [
                    {
                        "text": s.text,
                        "kind": s.kind,
                        "message": s.message,
                        "trained": s.trained,
                        **({"token_ids": list(s.token_ids)} if s.token_ids is not None else {}),
                    }
                    for s in rendered.segments
                ],
            }
            typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
            return
        text = fmt.render(messages, **kwargs)
    if as_json:
        typer.echo(json.dumps({"text": text}, ensure_ascii=False))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
