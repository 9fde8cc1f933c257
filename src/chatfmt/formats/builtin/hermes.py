"""Hermes-2-Pro (Llama-3) and Hermes-3 (Llama-3.1): ChatML after ``<|begin_of_text|>``, Hermes tool calls.

NousResearch ships two templates, and transformers picks ``tool_use`` when tools are given, ``default``
otherwise; so does this format. Hermes-2-Pro-Llama-3-8B and Hermes-3-Llama-3.1-8B have byte-identical
``tool_use`` templates (llama.cpp ``models/templates/NousResearch-Hermes-{2-Pro-Llama-3-8B,3-Llama-3.1-8B}
-tool_use.jinja``).

- **default** (no tools): ``<|begin_of_text|>`` then ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per
  message; generation prompt ``<|im_start|>assistant\\n`` (the BOS + ChatML template, testdata
  ``ollama-template-index/extracted/05-chatml.jinja``).
- **tool_use**: ``<|begin_of_text|>``, a fixed system turn ``You are a function calling AI model ...
  <tools> {...} </tools>`` with the pydantic ``FunctionCall`` schema and the ``<tool_call>`` instructions;
  then every message, a system message as its own ChatML turn. Each tool is written as the template writes
  it: ``{"type": "function", "function": {"name": "...", "description": "name(p: type, ...) -> ret - desc
  \\n\\n    Args:\\n        p(type): desc...", "parameters": <json>}}`` — the description is not
  JSON-escaped and the ``Args`` lines are not separated (template quirks, reproduced), Python types from
  the template's ``json_to_python_type`` macro (``array`` is always ``list[Union[]]``; ``object`` is
  ``dict`` or ``dict[str, <additionalProperties>]``; a list of types ``Union[a,b]``; no type ``Union[]``).
  An assistant tool call is ``<|im_start|>assistant`` + ``\\n<tool_call>\\n{"name": "...", "arguments":
  {...}}\\n</tool_call>`` per call + ``<|im_end|>\\n``; **its content is dropped**, as the template drops
  it. Consecutive tool results share one ``<|im_start|>tool`` turn: ``<tool_response>\\n{result}\\n
  </tool_response>`` blocks separated by ``\\n``, and the template's odd ending, ``\\n<|im_end|>`` with no
  newline after it (``<|im_end|>`` alone after the last message).

Where the tool_use template fails on a tool (a tool without a name, a string description or
``parameters``; an unknown type name such as ``"null"``, on which its macro recurses forever), this
format raises :class:`~chatfmt.errors.ValidationError` (rule ``tools``).

Deliberate differences: without a tool list the default template renders an assistant's content and
drops its tool calls; this format raises :class:`~chatfmt.errors.ValidationError` (rule ``tool_call``)
asking for the tool list. ``content: None`` renders as ``""``; JSON-text tool-call arguments are parsed
and re-dumped.

Segments: BOS, the tool_use system turn and the generation prompt belong to no message. An assistant's
content, tool-call blocks and ``<|im_end|>`` are trained, its ``<|im_start|>assistant\\n`` header and the
newline after ``<|im_end|>`` are not.
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message
from ...segments import SegmentBuilder
from ..family import Family, Pin
from ._chatml import (
    CHATML_TOKENS,
    IM_END,
    ChatMLFormat,
    ToolResponses,
    assistant_turn,
    chatml_info,
    tojson,
    turn,
)
from ._tool_stubs import MISSING, TemplateFailure, attr, basic_type, function_of, render_tools, string

BOS = "<|begin_of_text|>"

SYSTEM_HEAD = (
    "<|im_start|>system\nYou are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make "
    "assumptions about what values to plug into functions. Here are the available tools: <tools> "
)
SYSTEM_TAIL = (
    " </tools>Use the following pydantic model json schema for each tool call you will make: "
    '{"properties": {"name": {"title": "Name", "type": "string"}, "arguments": {"title": "Arguments", '
    '"type": "object"}}, "required": ["name", "arguments"], "title": "FunctionCall", "type": "object"}}\n'
    "For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-dict>}\n</tool_call><|im_end|>\n'
)

def python_type(spec: Any, depth: int = 0) -> str:
    """The tool_use template's ``json_to_python_type`` macro."""
    if depth > 50:
        raise TemplateFailure("json_to_python_type recurses without end (an unknown type name)")
    t = attr(spec, "type")
    basic = basic_type(t)
    if basic is not None:
        return basic
    if t == "array":
        return "list[Union[]]"  # the macro recurses on `json_spec|items`, which has no type
    if t == "object":
        extra = attr(spec, "additionalProperties")
        return "dict" if extra is MISSING else "dict[str, " + python_type(extra, depth + 1) + "]"
    if t is MISSING:
        return "Union[]"  # jinja2's Undefined iterates as empty
    try:
        items = list(t)
    except TypeError:
        return "Any"
    return "Union[" + ",".join(python_type({"type": x}, depth + 1) for x in items) + "]"


def _tool(tool: Any) -> str:
    tool, name, params = function_of(tool)
    props = attr(params, "properties")
    if props is MISSING:
        props = {}
    if not isinstance(props, dict):
        raise TemplateFailure("'parameters.properties' must be an object")
    ret = attr(tool, "return")
    text = '{"type": "function", "function": {"name": "' + name + '", "description": "' + name + "("
    text += ", ".join(p + ": " + python_type(spec) for p, spec in props.items()) + ")"
    if ret is not MISSING:
        text += " -> " + python_type(ret)
    text += " - " + string(attr(tool, "description"), "the tool description") + "\n\n"
    for k, (p, spec) in enumerate(props.items()):
        desc = attr(spec, "description")
        desc = "" if desc is MISSING else str(desc).strip()
        text += ("    Args:\n" if k == 0 else "") + "        " + p + "(" + python_type(spec) + "): " + desc
    ret_desc = attr(ret, "description")
    if ret_desc is not MISSING:
        text += "\n    Returns:\n        " + string(ret_desc, "the return description")
    text += '", "parameters": ' + (tojson(params) if props else "{}") + "}"
    return text


def tools_text(tools: list[Any]) -> str:
    """The tool list inside ``<tools> ... </tools>``, one tool a line."""
    return render_tools(tools, _tool, "Hermes tool_use", "\n")


class Hermes(ChatMLFormat):
    """Hermes-2-Pro / Hermes-3: ChatML + ``<|begin_of_text|>``; with tools, the Hermes tool_use template."""

    info = chatml_info(
        "hermes-2-pro", "hermes", "NousResearch Hermes-2-Pro / Hermes-3 (Llama-3): ChatML, <tools>/<tool_call>/<tool_response>",
        "NousResearch/Hermes-2-Pro-Llama-3-8B and Hermes-3-Llama-3.1-8B chat templates rendered by transformers: "
        "'tool_use' = testdata templates/llama.cpp-0c1e570/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja "
        "(identical for Hermes-3), 'default' = BOS + ChatML (templates/ollama-template-index/extracted/05-chatml.jinja)",
        stop=(IM_END,), bos_token=BOS, supports_tools=True,
        special_tokens={
            "bos": BOS, **CHATML_TOKENS, "tool_call_start": "<tool_call>", "tool_call_end": "</tool_call>",
            "tool_response_start": "<tool_response>", "tool_response_end": "</tool_response>",
        },
    )
    responses = ToolResponses("<|im_start|>tool\n", "<tool_response>\n", "\n</tool_response>", "\n", "", open_first=False)

    def system_turn(self, conv: Conversation, out: SegmentBuilder) -> int:
        # the tool_use template's fixed system turn; every message (a system message too) is a turn of its own
        if conv.tools:
            out.control(SYSTEM_HEAD + tools_text(conv.tools) + SYSTEM_TAIL)
        return 0

    def assistant(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool) -> None:
        if not m.tool_calls:
            turn(out, i, m)
        elif not conv.tools:
            raise ValidationError(
                "hermes renders tool calls only with a tool list (its tool_use template); the default "
                "template would drop them",
                index=i,
                rule="tool_call",
            )
        else:  # the template drops the content of a message with tool calls
            assistant_turn(out, i, m, "", [self.call_text(c) for c in m.tool_calls])

    def tool_result(self, out: SegmentBuilder, conv: Conversation, i: int) -> None:
        if conv.tools:
            self.responses.write(out, conv.messages, i)
        else:
            turn(out, i, conv.messages[i])


_REPO = "NousResearch/Hermes-2-Pro-Llama-3-8B"
FAMILIES = [
    Family(
        "hermes-2-pro", make=Hermes, parser="hermes", export="hermes-2-pro.jinja", reference=Hermes.info.reference, group="hermes",
        aliases=("hermes-3", "hermes", "hermes-2-pro-llama-3", "hermes-3-llama-3.1", "hermes-2-pro-llama-3-8b", "hermes-3-llama-3.1-8b"),
        pins=(
            Pin(_REPO, "NousResearch--Hermes-2-Pro-Llama-3-8B-tool_use.jinja", tools=True),
            Pin(_REPO, "NousResearch--Hermes-2-Pro-Llama-3-8B-default.jinja", tools=False),
        ),
    )
]
