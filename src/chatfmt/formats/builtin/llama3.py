"""Llama 3 Instruct (3, 3.1, 3.2, 3.3): ``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``.

Each format renders exactly what its model's own Hugging Face ``chat_template`` renders under
transformers, with no Jinja at run time.

``llama-3`` (Meta-Llama-3-8B/70B-Instruct; ollama's ``23-llama3-instruct.jinja``): ``<|begin_of_text|>``,
then per message ``<|start_header_id|>{role}<|end_header_id|>\\n\\n`` + the content ``.strip()``-ed +
``<|eot_id|>``; the generation prompt is the assistant header. No tool syntax: a tool list goes into the
system message as JSON, tool calls are rejected (``ValidationError``, rule ``tool_call``; the template
would silently drop them). The first release of that template (``../shared/testdata/llama3/
tokenizer_config.json``) always appended the generation prompt; Meta fixed it to honour
``add_generation_prompt``, which is what this format follows.

``llama-3.1`` (Llama-3.1-8B-Instruct; llama.cpp ``meta-llama-Llama-3.1-8B-Instruct.jinja``; the
Llama-3.3-70B-Instruct template is byte-identical, so ``llama-3.3`` is an alias) and ``llama-3.2``
(Llama-3.2-3B-Instruct):

- a system turn is always written: ``Environment: ipython\\n`` when there are tools (3.1: or
  ``builtin_tools``), 3.1 only: ``Tools: <builtin tools except code_interpreter>\\n\\n``, then
  ``Cutting Knowledge Date: December 2023\\nToday Date: {date_string}\\n\\n`` and the system message
  ``.strip()``-ed. ``date_string`` (a keyword argument, as for the template) defaults to
  ``"26 Jul 2024"`` (3.1) or today's date as ``strftime("%d %b %Y")`` (3.2, the template's
  ``strftime_now``);
- tools (``tools=`` or the template's ``custom_tools=`` keyword) go into the first user message by
  default: the instructions, then each tool as ``json.dumps(tool, indent=4, ensure_ascii=False)`` +
  ``\\n\\n``, then the user's ``.strip()``-ed text; with ``tools_in_user_message=False`` they go into
  the system turn instead (before the system message);
- an assistant message with a tool call renders ``{"name": "<name>", "parameters": <arguments JSON>}``
  + ``<|eot_id|>`` and **not its content** (the template drops it); only one call per message (the
  template raises "This model only supports single tool-calls at once!"; chatfmt raises
  ``ValidationError``, rule ``tool_call``). 3.1 with ``builtin_tools=[...]``: a call of a built-in tool
  renders ``<|python_tag|>name.call(key="value", ...)`` (values must be strings, as the template's
  string concatenation requires), and every tool-call turn ends with ``<|eom_id|>``;
- a tool result renders under the ``ipython`` header as its ``tojson``: a string content becomes a
  JSON string (quotes and escapes included, e.g. ``"sunny"``), a list of parts the JSON of the list.

Segments: message content is ``content``; everything else ``control``. For a tool result the quotes
of the JSON string are control and the escaped text is content (equal to the message content when
nothing needed escaping); a list content is one JSON content segment. The system turn belongs to
message 0 when there is a system message, else to no message (``None``), like BOS and the generation
prompt; the tool instructions in the first user turn belong to that user message. An assistant's
content (or tool-call text) and its ``<|eot_id|>``/``<|eom_id|>`` are trained per
:attr:`~chatfmt.messages.Message.trained`; its header is not.

Deliberate differences from the templates (none for well-formed input):

- leniencies where the template raises or renders garbage: ``None`` content is ``""`` (a tool
  result with ``None`` content renders ``""``), a list of text parts outside tool results is its text
  joined with newlines (the template would render the Python ``repr`` of the list), ``date_string=None``
  and ``builtin_tools=None`` mean "not given", an empty tool list is no tools (the template would
  write the tool instructions with no tools in them);
- with tools in the first user message, the first message after the system message must be a user
  message (``ValidationError``, rule ``roles``): the template would put whatever message comes first
  under the user header, dropping an assistant's tool calls;
- an assistant message with an empty ``tool_calls`` list is an ordinary message (the template raises).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from . import _jinja

BOS = "<|begin_of_text|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"
PYTHON_TAG = "<|python_tag|>"
DEFAULT_DATE = "26 Jul 2024"
KNOWLEDGE_CUTOFF = "Cutting Knowledge Date: December 2023\n"

TOOLS_IN_SYSTEM = (
    "You have access to the following functions. To call a function, please respond with JSON for a "
    'function call.Respond in the format {"name": function name, "parameters": dictionary of argument '
    'name and its value}.Do not use variables.\n\n'
)
TOOLS_IN_USER = (
    "Given the following functions, please respond with a JSON for a function call with its proper "
    'arguments that best answers the given prompt.\n\nRespond in the format {"name": function name, '
    '"parameters": dictionary of argument name and its value}.Do not use variables.\n\n'
)


def tojson(value: Any, indent: int | None = None) -> str:
    """transformers' ``tojson`` filter: ``json.dumps`` with non-ASCII kept and default separators."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def tool_list_text(tools: list[Any]) -> str:
    """Each tool as ``tojson(indent=4)`` followed by a blank line."""
    return "".join(tojson(t, indent=4) + "\n\n" for t in tools)


def json_call(call: ToolCall) -> str:
    """``{"name": "<name>", "parameters": <arguments JSON>}`` (name spliced in verbatim, as the template does)."""
    return '{"name": "' + call.name + '", "parameters": ' + tojson(call.arguments) + "}"


def tool_result(out: SegmentBuilder, m: Message, i: int, trained: bool) -> None:
    """A tool result as the Llama templates render it: ``message.content | tojson``."""
    if isinstance(m.content, list):
        out.content(tojson(m.content), i, trained)
        return
    dumped = tojson(m.content or "")
    out.control('"', i, trained)
    out.content(dumped[1:-1], i, trained)
    out.control('"', i, trained)


def no_tool_calls(conv: Conversation, format_name: str) -> None:
    """Reject tool calls for a format without tool syntax (tool results cannot occur without them)."""
    for i, m in enumerate(conv.messages):
        if m.tool_calls:
            raise ValidationError(
                f"{format_name} has no tool-call syntax (its template would drop the tool calls)",
                index=i,
                rule="tool_call",
            )


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


class Llama3(NativeFormat):
    """Meta-Llama-3-Instruct: header, stripped content, ``<|eot_id|>``; no tool syntax."""

    info = FormatInfo(
        name="llama-3",
        family="llama",
        description="Meta-Llama-3-Instruct: <|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>",
        stop=(EOT, "<|end_of_text|>"),
        end_of_turn=(EOT,),
        bos_token=BOS,
        eos_token=EOT,
        reference=(
            "the chat_template of meta-llama/Meta-Llama-3-8B-Instruct (fixed add_generation_prompt "
            "revision) = ollama template/index.json entry ../shared/testdata/templates/"
            "ollama-template-index/extracted/23-llama3-instruct.jinja, rendered by transformers"
        ),
        special_tokens={"bos": BOS, "start_header": "<|start_header_id|>", "end_header": "<|end_header_id|>", "eot": EOT},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        no_tool_calls(conv, self.info.name)
        out.control(BOS)
        for i, m in enumerate(conv.messages):
            trained = m.trained
            out.control(_header(m.role), i)
            out.content(m.text.strip(), i, trained)
            out.control(EOT, i, trained)
        if add_generation_prompt:
            out.control(_header("assistant"))


class Llama31(NativeFormat):
    """Llama-3.1-Instruct (and 3.3): date lines, JSON tool calls, ``ipython`` tool results, built-in tools."""

    extra_template_kwargs = ("custom_tools", "builtin_tools", "tools_in_user_message", "date_string")

    info = FormatInfo(
        name="llama-3.1",
        family="llama",
        description=(
            "Llama-3.1/3.3-Instruct: Llama 3 headers, 'Cutting Knowledge Date' system turn, tools in the "
            "first user message, JSON tool calls, <|python_tag|> built-in tools, ipython tool results"
        ),
        stop=(EOT, EOM, "<|end_of_text|>"),
        end_of_turn=(EOT, EOM),
        bos_token=BOS,
        eos_token=EOT,
        supports_tools=True,
        reference=(
            "the chat_template of meta-llama/Llama-3.1-8B-Instruct = ../shared/testdata/templates/"
            "llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja (byte-identical to "
            "meta-llama-Llama-3.3-70B-Instruct.jinja and ollama's 24-llama3-instruct.jinja), rendered by transformers"
        ),
        special_tokens={
            "bos": BOS,
            "start_header": "<|start_header_id|>",
            "end_header": "<|end_header_id|>",
            "eot": EOT,
            "eom": EOM,
            "python_tag": PYTHON_TAG,
        },
    )

    #: whether ``builtin_tools=[...]`` is understood (3.1/3.3; the 3.2 template ignores it)
    builtin_tools_supported = True

    def default_date(self) -> str:
        return DEFAULT_DATE

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        tools = kwargs.get("custom_tools", conv.tools)
        tools = list(tools) if tools else None
        builtin = kwargs.get("builtin_tools") if self.builtin_tools_supported else None
        builtin = None if builtin is None else list(builtin)
        in_user = bool(kwargs.get("tools_in_user_message", True))
        date = kwargs.get("date_string")
        date = self.default_date() if date is None else str(date)

        out.control(BOS)
        start = 0
        system = None
        if msgs and msgs[0].role == "system":
            system, start = msgs[0], 1
        sys_index = 0 if system is not None else None
        head = _header("system")
        if builtin is not None or tools is not None:
            head += "Environment: ipython\n"
        if builtin is not None:
            head += "Tools: " + ", ".join(str(t) for t in builtin if t != "code_interpreter") + "\n\n"
        head += KNOWLEDGE_CUTOFF + "Today Date: " + date + "\n\n"
        if tools is not None and not in_user:
            head += TOOLS_IN_SYSTEM + tool_list_text(tools)
        out.control(head, sys_index)
        if system is not None:
            out.content(system.text.strip(), 0, system.trained)
        out.control(EOT, sys_index, system is not None and system.trained)

        if tools is not None and in_user:
            if start == len(msgs):
                raise ValidationError(
                    f"{self.info.name}: tools go into the first user message, but there is no message after "
                    "the system message (the template raises: \"Cannot put tools in the first user message "
                    "when there's no first user message!\")",
                    index=len(msgs) - 1,
                    rule="tools",
                )
            first = msgs[start]
            if first.role != "user":
                raise ValidationError(
                    f"{self.info.name}: tools go into the first user message, so the first message after the "
                    f"system message must be a user message, not {first.role!r}",
                    index=start,
                    rule="roles",
                )
            out.control(_header("user") + TOOLS_IN_USER + tool_list_text(tools), start)
            out.content(first.text.strip(), start, first.trained)
            out.control(EOT, start, first.trained)
            start += 1

        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if m.role == "tool":
                out.control(_header("ipython"), i)
                tool_result(out, m, i, trained)
                out.control(EOT, i, trained)
            elif m.tool_calls:
                if len(m.tool_calls) != 1:
                    raise ValidationError(
                        f"{self.info.name} supports one tool call per assistant message, got "
                        f"{len(m.tool_calls)} (the template raises: \"This model only supports single "
                        'tool-calls at once!")',
                        index=i,
                        rule="tool_call",
                    )
                call = m.tool_calls[0]
                out.control(_header("assistant"), i)
                if builtin is not None and call.name in builtin:
                    out.control(self._builtin_call(call, i), i, trained)
                else:
                    out.control(json_call(call), i, trained)
                out.control(EOM if builtin is not None else EOT, i, trained)
            else:
                out.control(_header(m.role), i)
                out.content(m.text.strip(), i, trained)
                out.control(EOT, i, trained)
        if add_generation_prompt:
            out.control(_header("assistant"))

    def _builtin_call(self, call: ToolCall, index: int) -> str:
        args = call.arguments if isinstance(call.arguments, dict) else {}
        parts = []
        for key, value in args.items():
            if not isinstance(value, str):
                raise ValidationError(
                    f"{self.info.name}: the built-in tool call {call.name!r} needs string argument values "
                    f"(the template concatenates them), got {type(value).__name__} for {key!r}",
                    index=index,
                    rule="tool_call",
                )
            parts.append(f'{key}="{value}"')
        return PYTHON_TAG + call.name + ".call(" + ", ".join(parts) + ")"

    def jinja_template(self) -> str:
        """An equivalent chat template (keywords ``date_string``, ``tools_in_user_message``,
        ``custom_tools`` and, 3.1, ``builtin_tools`` as here)."""
        date = None if type(self).default_date is not Llama31.default_date else DEFAULT_DATE
        return _jinja.template(
            self.info.name, "llama-3.1", builtin_tools_supported=self.builtin_tools_supported, default_date=date
        )


class Llama32(Llama31):
    """Llama-3.2-Instruct: the 3.1 format without built-in tools; the date defaults to today."""

    info = FormatInfo(
        name="llama-3.2",
        family="llama",
        description=(
            "Llama-3.2-Instruct: Llama 3.1's format with today's date, no built-in tools "
            "(tools in the first user message, JSON tool calls, ipython tool results)"
        ),
        stop=(EOT, EOM, "<|end_of_text|>"),
        end_of_turn=(EOT,),
        bos_token=BOS,
        eos_token=EOT,
        supports_tools=True,
        reference=(
            "the chat_template of meta-llama/Llama-3.2-3B-Instruct = ../shared/testdata/templates/"
            "llama.cpp-c392e50/meta-llama-Llama-3.2-3B-Instruct.jinja, rendered by transformers"
        ),
        special_tokens={"bos": BOS, "start_header": "<|start_header_id|>", "end_header": "<|end_header_id|>", "eot": EOT},
    )

    builtin_tools_supported = False

    def default_date(self) -> str:
        """Today, as the template's ``strftime_now("%d %b %Y")`` gives it."""
        return datetime.now().strftime("%d %b %Y")


FORMATS = [
    ("llama-3", Llama3, ("llama3", "llama-3-instruct", "llama3-instruct", "meta-llama-3-instruct")),
    (
        "llama-3.1",
        Llama31,
        ("llama3.1", "llama-3.1-instruct", "llama-3.3", "llama3.3", "llama-3.3-instruct"),
    ),
    ("llama-3.2", Llama32, ("llama3.2", "llama-3.2-instruct")),
]
