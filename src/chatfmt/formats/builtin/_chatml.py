"""The ChatML family's turns, written once: ``<|im_start|>{role}\\n{content}<|im_end|>\\n``.

The native ChatML built-ins (Qwen3, QwQ, MiniCPM5, Hermes-2-Pro/3; Yi's user turns) differ from one
another only in data and in a few hooks of :class:`ChatMLFormat`:

- the system turn: a first system message, then (with tools) the tool definitions after
  ``tools_sep`` (or alone, after ``lone_tools_sep``, when there is no system message);
- assistant turns: an optional ``<think>`` block (:func:`split_reasoning` semantics), the content,
  the tool calls (:meth:`ChatMLFormat.call_text`, a newline before each but the first when there is
  no content), ``<|im_end|>`` (trained) and a newline (not trained);
- consecutive tool results grouped in one turn (:class:`ToolResponses`);
- the generation prompt ``<|im_start|>assistant\\n`` and what ``enable_thinking`` adds to it.

The declarative ChatML built-ins (chatml, smollm2, internlm2, phi-4, qwen2.5) are specs
(:func:`chatfmt.formats.spec.chatml_roles`); the Hermes-style tool text the Qwen family shares
(``# Tools`` block, ``<tool_call>`` JSON) lives here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ._reasoning import split_reasoning

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"
EMPTY_THINK = THINK_OPEN + THINK_CLOSE

#: the Qwen tool block (Qwen2.5, Qwen3, QwQ): one ``json.dumps(tool)`` line per tool between these
TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>"
)

CHATML_TOKENS = {"im_start": IM_START, "im_end": IM_END}
#: the special tokens of the Qwen family's reasoning and tool syntax
QWEN_SPECIAL_TOKENS = {
    **CHATML_TOKENS,
    "endoftext": "<|endoftext|>",
    "think_start": "<think>",
    "think_end": "</think>",
    "tool_call_start": "<tool_call>",
    "tool_call_end": "</tool_call>",
    "tool_response_start": "<tool_response>",
    "tool_response_end": "</tool_response>",
}


def chatml_info(name: str, family: str, description: str, reference: str, **fields: Any) -> FormatInfo:
    """The :class:`~chatfmt.formats.base.FormatInfo` of a ChatML format: ``<|im_end|>`` ends a turn and
    is its EOS; generation also stops at ``<|endoftext|>`` unless ``stop`` says otherwise."""
    fields.setdefault("stop", (IM_END, "<|endoftext|>"))
    return FormatInfo(
        name=name, family=family, description=description, reference=reference, end_of_turn=(IM_END,), eos_token=IM_END, **fields
    )


def tojson(value: Any) -> str:
    """transformers' ``tojson`` filter: ``json.dumps`` with non-ASCII kept and default separators."""
    return json.dumps(value, ensure_ascii=False)


def tool_lines(head: str, tools: Sequence[Any], tail: str) -> str:
    """``head``, one ``tojson(tool)`` line per tool, ``tail``."""
    return head + "".join("\n" + tojson(t) for t in tools) + tail


def hermes_call(call: ToolCall) -> str:
    """One Hermes-style call: ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``."""
    return '<tool_call>\n{"name": "' + call.name + '", "arguments": ' + tojson(call.arguments) + "}\n</tool_call>"


def header(role: str) -> str:
    return f"{IM_START}{role}\n"


ASSISTANT_HEADER = header("assistant")


def turn(out: SegmentBuilder, i: int, m: Message) -> None:
    """Message ``i`` as a plain ChatML turn."""
    out.turn(i, IM_START + m.role + "\n", m.text, IM_END, m.trained, "\n")


def reject_tool_calls(conv: Conversation, format_name: str) -> None:
    """Raise :class:`ValidationError` (rule ``tool_call``) for the first assistant message with tool
    calls, for a format whose template has no tool syntax (it would drop them)."""
    for i, m in enumerate(conv.messages):
        if m.tool_calls:
            raise ValidationError(
                f"{format_name} has no tool-call syntax (its template would drop the calls)", index=i, rule="tool_call"
            )


def is_tool_response(text: str) -> bool:
    """A user message that only wraps a tool result (``<tool_response>...</tool_response>``)."""
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def last_query_index(conv: Conversation, *, string_content: bool = False) -> int:
    """The index of the last user message that is not a wrapped tool response (else the last index);
    ``string_content``: only a message whose content is a string counts (MiniCPM5's template)."""
    msgs = conv.messages
    for i in range(len(msgs) - 1, -1, -1):
        m = msgs[i]
        if m.role != "user":
            continue
        if string_content:
            if isinstance(m.content, str) and not is_tool_response(m.content):
                return i
        elif not is_tool_response(m.text):
            return i
    return len(msgs) - 1


def assistant_turn(
    out: SegmentBuilder,
    i: int,
    m: Message,
    content: str,
    calls: Sequence[str] = (),
    *,
    reasoning: str | None = None,
    calls_after_text: bool | None = None,
) -> None:
    """An assistant turn: header (not trained), a ``<think>`` block when ``reasoning`` is given (its
    content then written without leading newlines), the content, the ``calls`` (a newline before
    each, but before the first only after text: ``calls_after_text``, default: the content is not
    empty), ``<|im_end|>`` (all trained as the message is) and a newline (not trained)."""
    trained = m.trained
    out.control(ASSISTANT_HEADER, i)
    if reasoning is not None:
        out.control(THINK_OPEN, i, trained)
        out.content(reasoning.strip("\n"), i, trained)
        out.control(THINK_CLOSE, i, trained)
        out.content(content.lstrip("\n"), i, trained)
    else:
        out.content(content, i, trained)
    end = IM_END
    if calls:
        lead = "\n" if (bool(content) if calls_after_text is None else calls_after_text) else ""
        end = lead + "\n".join(calls) + IM_END
    out.turn(i, "", "", end, trained, "\n")


@dataclass(frozen=True)
class ToolResponses:
    """How consecutive tool results share one turn: ``open`` before the first of them, each result as
    ``before + content + after`` (+ ``between`` unless it is the conversation's last message), then
    ``<|im_end|>`` (trained with the last result) and ``close``."""

    open: str
    before: str
    after: str
    between: str = ""
    close: str = "\n"
    #: whether a group at the very start of the conversation opens its turn (Hermes' template does not)
    open_first: bool = True

    def write(self, out: SegmentBuilder, msgs: Sequence[Message], i: int) -> None:
        m = msgs[i]
        last = len(msgs) - 1
        if (msgs[i - 1].role != "tool") if i else self.open_first:
            out.control(self.open, i)
        out.control(self.before, i)
        out.content(m.text, i, m.trained)
        out.control(self.after + (self.between if i != last else ""), i)
        if i == last or msgs[i + 1].role != "tool":
            out.turn(i, "", "", IM_END, m.trained, self.close)


#: Qwen's: one ``<|im_start|>user`` turn of ``\\n<tool_response>\\n...\\n</tool_response>`` blocks
QWEN_RESPONSES = ToolResponses(IM_START + "user", "\n<tool_response>\n", "\n</tool_response>")


class ChatMLFormat(NativeFormat):
    """A ChatML built-in: BOS (``info.bos_token``, if any), the system turn, one turn per message, the
    generation prompt. Subclasses set the data and override the hooks where their template differs."""

    #: between the system content and the tool definitions; before them without a system message
    tools_sep = "\n\n"
    lone_tools_sep = ""
    #: consecutive tool results
    responses = QWEN_RESPONSES
    #: ``<think>`` blocks of assistant messages after the last user query: ``"final"`` also writes
    #: one (empty if need be) for the final message (Qwen3); ``"given"`` only where there is
    #: reasoning (MiniCPM5); ``None``: the format writes no reasoning
    think: str | None = None

    def tool_definitions(self, tools: list[Any]) -> str:
        """The tool block of the system turn."""
        return tool_lines(TOOLS_HEAD, tools, TOOLS_TAIL)

    def call_text(self, call: ToolCall) -> str:
        return hermes_call(call)

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        out.control(self.info.bos_token or "")
        start = self.system_turn(conv, out)
        last_query = last_query_index(conv, string_content=self.think == "given") if self.think else len(msgs)
        for i in range(start, len(msgs)):
            m = msgs[i]
            if m.role == "assistant":
                self.assistant(out, conv, i, m, i > last_query)
            elif m.role == "tool":
                self.tool_result(out, conv, i)
            else:
                turn(out, i, m)
        if add_generation_prompt:
            out.control(self.generation_prompt(kwargs.get("enable_thinking")))

    def system_turn(self, conv: Conversation, out: SegmentBuilder) -> int:
        """The system turn (with the tool definitions, if tools are given); the index of the first
        message after it."""
        msgs = conv.messages
        has_system = msgs[0].role == "system"
        if conv.tools:
            defs = self.tool_definitions(conv.tools)
            if not has_system:
                out.control(header("system") + self.lone_tools_sep + defs + IM_END + "\n")
                return 0
            m = msgs[0]
            out.control(header("system"), 0)
            self.system_content(out, m, defs)
            out.turn(0, "", "", IM_END, m.trained, "\n")
        elif has_system:
            turn(out, 0, msgs[0])
        return 1 if has_system else 0

    def system_content(self, out: SegmentBuilder, m: Message, defs: str) -> None:
        """The system message's content and the tool definitions after it."""
        out.content(m.text, 0, m.trained)
        out.control(self.tools_sep + defs, 0)

    def assistant(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool) -> None:
        reasoning, content = split_reasoning(m)
        think = after_query and (bool(reasoning) or (self.think == "final" and i == len(conv.messages) - 1))
        calls = [self.call_text(c) for c in m.tool_calls or ()]
        assistant_turn(out, i, m, content, calls, reasoning=reasoning if think else None)

    def tool_result(self, out: SegmentBuilder, conv: Conversation, i: int) -> None:
        self.responses.write(out, conv.messages, i)

    def generation_prompt(self, enable_thinking: Any) -> str:
        return ASSISTANT_HEADER


__all__ = [
    "ASSISTANT_HEADER",
    "ChatMLFormat",
    "IM_END",
    "IM_START",
    "QWEN_RESPONSES",
    "TOOLS_HEAD",
    "TOOLS_TAIL",
    "ToolResponses",
    "assistant_turn",
    "chatml_info",
    "hermes_call",
    "last_query_index",
    "reject_tool_calls",
    "tojson",
    "tool_lines",
    "turn",
]
