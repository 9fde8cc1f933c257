"""MiniCPM5: ChatML after a BOS, ``<think>`` reasoning and XML ``<function name=...>`` tool calls.

Renders exactly what openbmb/MiniCPM5-1B's own chat template (llama.cpp
``models/templates/openbmb-MiniCPM5-1B.jinja``, testdata ``templates/llama.cpp-0c1e570/``) renders
under transformers with ``bos_token="<s>"``, with no Jinja at run time:

- the text starts with the BOS;
- without tools, a first system message is ``<|im_start|>system\\n{content}<|im_end|>\\n``; there is
  no default system prompt;
- with tools, the system turn holds the tool definitions: ``# Tools ... <tools>`` with one
  ``json.dumps(tool, ensure_ascii=False)`` line per tool, then the tool-usage guidelines. With a
  system message they follow its content after ``\\n\\n`` -- or, if the content contains the
  placeholder ``<tool_def_sep>``, they replace every occurrence of it instead;
- user messages are ChatML turns;
- the *last query* is the last user message whose content is a string not wrapped in
  ``<tool_response>...</tool_response>``. An assistant message after it that has reasoning is written
  ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``; every other assistant message is written without
  its reasoning. Reasoning is ``reasoning_content`` (or its aliases ``reasoning``/``thinking``), else it
  is parsed out of the content: ``{reasoning}</think>{content}``, an optional ``<think>`` before it
  dropped (and the content is then what follows ``</think>``, leading newlines removed);
- tool calls follow the content as ``<function name="{name}"><param name="{key}">{value}</param>...
  </function>``, a newline before each call except the first when the content is empty; a string
  value containing ``<``, ``&`` or a newline is wrapped in ``<![CDATA[...]]>``; other values are
  written as Jinja prints them (Python's ``str``: ``True``, ``None``, ``{'k': 'v'}``);
- consecutive tool results share one ``<|im_start|>user`` turn of ``\\n<tool_response>\\n{content}\\n
  </tool_response>`` blocks;
- the generation prompt is ``<|im_start|>assistant\\n``, plus ``<think>\\n\\n</think>\\n\\n`` with
  ``enable_thinking=False`` or ``<think>\\n`` with ``enable_thinking=True`` (nothing when it is not
  given).

Segments: message content (and reasoning text) is ``content``; everything else ``control``. An
assistant message's think block, content, tool calls and ``<|im_end|>`` are trained with it; its
``<|im_start|>assistant\\n`` header (the generation prompt) and the newline after ``<|im_end|>`` are
not. Tool definitions belong to the system message when there is one, else to no message.

BOS: the template writes ``bos_token``; MiniCPM's tokenizer spells it ``<s>`` (``MiniCPM5(bos_token=...)``
changes it, ``""`` drops it).

Where chatfmt deliberately differs from the template:

- an assistant message with tool calls whose content contains ``<tool_sep>`` raises
  :class:`~chatfmt.errors.ValidationError` (rule ``content``): the template means to splice the calls
  in at those markers, but its ``set`` inside a ``for`` loop does not outlive the loop, so it keeps only
  the text before the first ``<tool_sep>`` and silently drops the rest;
- ``None`` content renders as ``""`` and a list of text parts as its joined text (the template writes
  ``""`` for a list, or its JSON for a tool result); tool-call arguments given as JSON text are parsed
  first (the template cannot iterate a string).
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ..base import FormatInfo
from ..family import Family, Pin, TemplateKwarg
from ._chatml import (
    ASSISTANT_HEADER,
    CHATML_TOKENS,
    EMPTY_THINK,
    IM_END,
    THINK_OPEN,
    ChatMLFormat,
    chatml_info,
    tool_lines,
)
from ._chatml import last_query_index as _last_query_index
from ._reasoning import split_reasoning

__all__ = ["FAMILIES", "MiniCPM5", "function_xml", "last_query_index", "split_reasoning", "tool_definitions"]

TOOLS_HEAD = "# Tools\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
TOOLS_TAIL = (
    "\n</tools>\n\nTool usage guidelines:\n- You may call zero or more functions. If no function calls are "
    "needed, just answer normally and do not include any <function ... </function>.\n- When calling a "
    "function, return an XML object within <function ... </function> using:\n<function "
    'name="function-name"><param name="param-name">param-value</param></function>\n- param-value may be '
    "multi-line. If it contains <, & or newline characters, wrap it in a CDATA block: <param "
    'name="param-name"><![CDATA[...multi-line value...]]></param>'
)
TOOL_DEF_SEP = "<tool_def_sep>"
TOOL_SEP = "<tool_sep>"


def last_query_index(conv: Conversation) -> int:
    """The last user message with string content not wrapped in ``<tool_response>`` (else the last index)."""
    return _last_query_index(conv, string_content=True)


def tool_definitions(tools: list[Any]) -> str:
    """The ``# Tools`` block of the system turn."""
    return tool_lines(TOOLS_HEAD, tools, TOOLS_TAIL)


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        if "<" in value or "&" in value or "\n" in value:
            return "<![CDATA[" + value + "]]>"
        return value
    return str(value)


def function_xml(name: str, arguments: Any) -> str:
    """One tool call: ``<function name="..."><param name="...">...</param></function>``."""
    params = ""
    if arguments:
        params = "".join(f'<param name="{k}">{_param_value(v)}</param>' for k, v in arguments.items())
    return f'<function name="{name}">{params}</function>'


class MiniCPM5(ChatMLFormat):
    """MiniCPM5 (openbmb): BOS + ChatML, ``<think>`` reasoning, ``<function name=...>`` XML tool calls."""

    info = chatml_info(
        "minicpm5", "minicpm", "MiniCPM5: <s> + ChatML, <think> reasoning (enable_thinking), <function name=...> XML tool calls",
        "the chat_template of openbmb/MiniCPM5-1B (llama.cpp models/templates/openbmb-MiniCPM5-1B.jinja, "
        "testdata templates/llama.cpp-0c1e570/), rendered by transformers with bos_token='<s>'",
        stop=(IM_END,), bos_token="<s>", supports_tools=True, supports_reasoning=True,
        special_tokens={
            "bos": "<s>", **CHATML_TOKENS, "think_start": "<think>", "think_end": "</think>",
            "tool_response_start": "<tool_response>", "tool_response_end": "</tool_response>",
        },
    )
    extra_template_kwargs = ("enable_thinking",)
    think = "given"

    def __init__(self, info: FormatInfo | None = None, *, bos_token: str | None = None) -> None:
        super().__init__(info)
        if bos_token is not None:
            self.info = self.with_info(bos_token=bos_token).info

    def tool_definitions(self, tools: list[Any]) -> str:
        return tool_definitions(tools)

    def call_text(self, call: ToolCall) -> str:
        return function_xml(call.name, call.arguments)

    def system_content(self, out: SegmentBuilder, m: Message, defs: str) -> None:
        text = m.text
        if TOOL_DEF_SEP not in text:
            super().system_content(out, m, defs)
            return
        for k, piece in enumerate(text.split(TOOL_DEF_SEP)):
            if k:
                out.control(defs, 0)
            out.content(piece, 0, m.trained)

    def assistant(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool) -> None:
        if m.tool_calls and TOOL_SEP in split_reasoning(m)[1]:
            raise ValidationError(
                f"{self.info.name}: assistant content with tool calls contains {TOOL_SEP!r}; the template "
                "would silently drop everything after the first one",
                index=i,
                rule="content",
            )
        super().assistant(out, conv, i, m, after_query)

    def generation_prompt(self, enable_thinking: Any) -> str:
        if enable_thinking is False:
            return ASSISTANT_HEADER + EMPTY_THINK
        return ASSISTANT_HEADER + (THINK_OPEN if enable_thinking is True else "")

    def jinja_variables(self) -> dict[str, object]:
        """The export parses tool-call arguments given as JSON text inside the template (the shared
        ``json_parse`` macro, ``json.loads`` semantics) so that each value is written as Python's
        ``str()`` of it, as here; it writes this instance's BOS."""
        return {"bos": self.info.bos_token or ""}


_THINKING = TemplateKwarg(
    "enable_thinking", "bool", None, "False: the generation prompt holds an empty think block; True: it opens one"
)
FAMILIES = [
    Family(
        "minicpm5", make=MiniCPM5, aliases=("minicpm", "minicpm-5"), parser="minicpm5", kwargs=(_THINKING,),
        pins=(Pin("openbmb/MiniCPM5-1B", "openbmb--MiniCPM5-1B.jinja"),), export="minicpm5.jinja",
        reference=MiniCPM5.info.reference, group="minicpm",
    )
]
