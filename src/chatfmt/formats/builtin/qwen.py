"""Qwen2.5-Instruct: ChatML with a default system prompt, a ``# Tools`` block and ``<tool_call>`` JSON.

Renders exactly what Qwen2.5's own chat template (``tokenizer_config.json`` of Qwen/Qwen2.5-*-Instruct)
renders under transformers, with no Jinja at run time:

- the first message, if it is a system message, becomes the system turn; otherwise the default
  ``You are Qwen, created by Alibaba Cloud. You are a helpful assistant.`` is used;
- with tools, the system turn is followed by ``\\n\\n# Tools ... <tools>`` and one line per tool,
  ``json.dumps(tool, ensure_ascii=False)`` (transformers' ``tojson``: default separators, key order
  kept), then the ``<tool_call>`` instructions;
- an assistant message with tool calls renders ``<|im_start|>assistant`` + (``\\n`` + content if any)
  + per call ``\\n<tool_call>\\n{"name": "<name>", "arguments": <json>}\\n</tool_call>`` + ``<|im_end|>\\n``;
- consecutive tool results share one ``<|im_start|>user`` turn, each wrapped in
  ``\\n<tool_response>\\n ... \\n</tool_response>``.

Segments: message content is ``content``; everything else ``control``. The tool-call text of an
assistant message is control, belongs to that message and is trained with it, as are the assistant's
content and its ``<|im_end|>``; the ``<|im_start|>assistant\\n`` header (the generation prompt) and the
newline after ``<|im_end|>`` are not. The default system prompt and a tool block with no system message
belong to no message (``message=None``).

Deliberate leniencies (the template would raise): ``None`` content renders as ``""`` and a list of
content parts as its joined text.
"""

from __future__ import annotations

from ..family import Pin
from ..spec import (
    SpecFamily,
    SpecFormat,
    SystemSpec,
    ToolCallsSpec,
    ToolResultsSpec,
    ToolsSpec,
    chatml_roles,
    closed_turns,
)
from ._chatml import CHATML_TOKENS, IM_END, TOOLS_HEAD, TOOLS_TAIL, tojson

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_HEADER = "\n\n" + TOOLS_HEAD
TOOLS_FOOTER = TOOLS_TAIL

DESCRIPTION = "Qwen2.5-Instruct: ChatML, default system prompt, <tools>/<tool_call>/<tool_response>"
SPEC = closed_turns(
    "qwen2.5", DESCRIPTION, IM_END, "<|endoftext|>",
    roles=chatml_roles(tool=False),
    system=SystemSpec(default=DEFAULT_SYSTEM),
    tools=ToolsSpec(style="lines", separator="\n", preamble=TOOLS_HEADER + "\n", postamble=TOOLS_FOOTER),
    tool_calls=ToolCallsSpec(prefix="<tool_call>\n", suffix="\n</tool_call>", separator="\n"),
    tool_results=ToolResultsSpec(style="user_block", prefix="<tool_response>\n", suffix="\n</tool_response>", separator="\n"),
)
FAMILY = SpecFamily(
    SPEC.name, spec=SPEC, aliases=("qwen2", "qwen"), parser="hermes", group="qwen",
    special_tokens={**CHATML_TOKENS, "endoftext": "<|endoftext|>", "tool_call_start": "<tool_call>", "tool_call_end": "</tool_call>"},
    reference=(
        "the chat_template of Qwen/Qwen2.5-7B-Instruct tokenizer_config.json "
        "(= llama.cpp models/templates/Qwen-Qwen2.5-7B-Instruct.jinja), rendered by transformers"
    ),
    pins=(Pin("Qwen/Qwen2.5-7B-Instruct", "Qwen--Qwen2.5-7B-Instruct.jinja"),),
)
FAMILIES = [FAMILY]


def Qwen25(*, default_system: str = DEFAULT_SYSTEM) -> SpecFormat:
    """Qwen2.5-Instruct (ChatML + default system prompt + Hermes-style ``<tool_call>`` tools)."""
    return FAMILY.with_default_system(default_system)


__all__ = ["DEFAULT_SYSTEM", "FAMILIES", "Qwen25", "tojson"]
