"""Header-based turns, written once: ``{open}{role}{close}`` + content + end of turn (+ what follows it).

Llama 3.x (``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``), Llama 4
(``<|header_start|>``), Functionary (Llama-3 headers), Granite (``<|start_of_role|>role<|end_of_role|>``),
Phi-3 (``<|role|>\\n ... <|end|>\\n``) and Gemma (``<start_of_turn>role\\n ... <end_of_turn>\\n``) differ
only in these four strings: :class:`Headers` holds them and writes a turn through
:meth:`~chatfmt.segments.SegmentBuilder.turn` (header untrained, content trained as the message is, end
of turn trained with it, what follows untrained).

The Llama tool conventions shared by Llama 3.1/3.2/3.3 and Llama 4 live here too: the tool
instructions, tools in the first user message (:func:`first_user_with_tools`), bare JSON tool calls
(:func:`json_call`) and ``ipython`` tool results (:func:`tool_result`), and :class:`LlamaToolsFormat`,
the turn loop both families run with their own system turn, content and tool-call hooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin, TemplateKwarg


@dataclass(frozen=True)
class Headers:
    """How one header-based family writes a turn: ``open + role + close``, the content, ``end`` (the
    end-of-turn token, trained with the message) and ``after`` (untrained, e.g. a newline)."""

    open: str
    close: str
    end: str
    after: str = ""

    def header(self, role: str) -> str:
        return self.open + role + self.close

    def turn(self, out: SegmentBuilder, i: int, role: str, text: str, trained: bool, end: str | None = None) -> None:
        """Message ``i``'s turn under ``role``'s header; ``end`` replaces the end of turn (e.g. tool
        calls and their end token)."""
        out.turn(i, self.open + role + self.close, text, self.end if end is None else end, trained, self.after)

    def turns(self, out: SegmentBuilder, msgs: list[Message], start: int = 0, strip: bool = False) -> None:
        """A turn for each message from ``start`` on (its content ``.strip()``-ed with ``strip``)."""
        for i in range(start, len(msgs)):
            m = msgs[i]
            self.turn(out, i, m.role, m.text.strip() if strip else m.text, m.trained)


LLAMA3 = Headers("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>")
LLAMA4 = Headers("<|header_start|>", "<|header_end|>\n\n", "<|eot|>")
GRANITE = Headers("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "\n")
PHI3 = Headers("<|", "|>\n", "<|end|>", "\n")
GEMMA = Headers("<start_of_turn>", "\n", "<end_of_turn>", "\n")

#: Llama 3 and 4 start every conversation with it
BEGIN_OF_TEXT = "<|begin_of_text|>"


def header_info(
    name: str,
    group: str,
    description: str,
    headers: Headers,
    *,
    reference: str,
    stop: tuple[str, ...] = (),
    end_of_turn: tuple[str, ...] = (),
    tokens: dict[str, str] | None = None,
    **changes: Any,
) -> FormatInfo:
    """The :class:`FormatInfo` of a header-based format: ``headers.end`` ends turns and generation
    (before ``stop``); ``end_of_turn`` defaults to it alone."""
    return FormatInfo(
        name=name,
        family=group,
        description=description,
        stop=tuple(dict.fromkeys((headers.end, *stop))),
        end_of_turn=end_of_turn or (headers.end,),
        reference=reference,
        special_tokens=dict(tokens or {}),
        **changes,
    )


def pinned(repo: str, tools: bool) -> tuple[Pin, ...]:
    """The pin on ``repo``'s official template, shipped as ``official/<owner>--<name>.jinja``."""
    return (Pin(repo, repo.replace("/", "--") + ".jinja", tools=tools),)


def native_family(
    cls: type[NativeFormat],
    aliases: tuple[str, ...],
    *,
    parser: str,
    pins: tuple[Pin, ...] = (),
    export: str | None = None,
    kwargs: tuple[TemplateKwarg, ...] = (),
) -> Family:
    """The family of a built-in implemented by ``cls``: its name, group and reference are those of
    ``cls.info``; the rest is declared here (``export``: the body file in ``templates/``)."""
    info = cls.info
    return Family(
        info.name,
        make=cls,
        aliases=aliases,
        parser=parser,
        kwargs=kwargs,
        pins=pins,
        export=export,
        reference=info.reference,
        group=info.family,
    )


def no_tool_calls(conv: Conversation, format_name: str) -> None:
    """Reject tool calls for a format without tool syntax (tool results cannot occur without them)."""
    for i, m in enumerate(conv.messages):
        if m.tool_calls:
            raise ValidationError(
                f"{format_name} has no tool-call syntax (its template would drop the tool calls)",
                index=i,
                rule="tool_call",
            )


# -- the Llama tool conventions (3.1/3.2/3.3 and 4) -----------------------------------------------

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

#: the template keywords both Llama tool families read
CUSTOM_TOOLS = TemplateKwarg(
    "custom_tools", "list[dict] | None", None, "the tool list (wins over tools=), as the template's custom_tools"
)
TOOLS_IN_USER_MESSAGE = TemplateKwarg(
    "tools_in_user_message",
    "bool",
    True,
    "tools go into the first user message (True) or into the system turn (False)",
)


#: the keywords the shared Llama tool loop reads
TOOL_KWARGS = (CUSTOM_TOOLS, TOOLS_IN_USER_MESSAGE)


def tojson(value: Any, indent: int | None = None) -> str:
    """transformers' ``tojson`` filter: ``json.dumps`` with non-ASCII kept and default separators."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def tool_list_text(tools: list[Any]) -> str:
    """Each tool as ``tojson(indent=4)`` followed by a blank line."""
    return "".join(tojson(t, indent=4) + "\n\n" for t in tools)


def system_tools_text(tools: list[Any]) -> str:
    """The tool instructions and list as the system turn carries them (``tools_in_user_message=False``)."""
    return TOOLS_IN_SYSTEM + tool_list_text(tools)


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


def first_user_with_tools(msgs: list[Message], start: int, format_name: str) -> Message:
    """The message that carries the tools in the first user turn; raises where the template would
    (no message after the system message) or would write something else (not a user message)."""
    if start == len(msgs):
        raise ValidationError(
            f"{format_name}: tools go into the first user message, but there is no message after "
            "the system message (the template raises: \"Cannot put tools in the first user message "
            "when there's no first user message!\")",
            index=len(msgs) - 1,
            rule="tools",
        )
    first = msgs[start]
    if first.role != "user":
        raise ValidationError(
            f"{format_name}: tools go into the first user message, so the first message after the "
            f"system message must be a user message, not {first.role!r}",
            index=start,
            rule="roles",
        )
    return first


class LlamaToolsFormat(NativeFormat):
    """The Llama 3.1/4 turn loop: BOS, the system turn (:meth:`system_turn`), the tools in the first
    user message (by default), then each message: a tool result under the ``ipython`` header, an
    assistant's tool calls (:meth:`calls`), any other message as header + content (:meth:`content`) +
    end of turn; the generation prompt is the assistant header."""

    headers: Headers
    #: the keywords this loop reads (subclasses add theirs)
    extra_template_kwargs: tuple[str, ...] = tuple(k.name for k in TOOL_KWARGS)

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        h = self.headers
        msgs = conv.messages
        tools = kwargs.get("custom_tools", conv.tools)
        tools = list(tools) if tools else None
        in_user = bool(kwargs.get("tools_in_user_message", True))

        out.control(BEGIN_OF_TEXT)
        start = self.system_turn(out, msgs, tools, in_user, kwargs)
        if tools is not None and in_user:
            first = first_user_with_tools(msgs, start, self.info.name)
            out.control(h.header("user") + TOOLS_IN_USER + tool_list_text(tools), start)
            self.content(out, first, start, first=True)
            out.control(h.end, start, first.trained)
            start += 1

        for i in range(start, len(msgs)):
            m = msgs[i]
            trained = m.trained
            if m.role == "tool":
                out.control(h.header("ipython"), i)
                tool_result(out, m, i, trained)
                out.control(h.end, i, trained)
            elif m.tool_calls:
                out.control(h.header("assistant"), i)
                self.calls(out, m, i, kwargs)
            else:
                out.control(h.header(m.role), i)
                self.content(out, m, i, first=False)
                out.control(h.end, i, trained)
        if add_generation_prompt:
            out.control(h.header("assistant"))

    def system_turn(
        self, out: SegmentBuilder, msgs: list[Message], tools: list[Any] | None, in_user: bool, kwargs: dict[str, Any]
    ) -> int:
        """Write the system turn; returns the index of the first message after it."""
        raise NotImplementedError

    def content(self, out: SegmentBuilder, m: Message, i: int, *, first: bool) -> None:
        """Write a message's content (``first``: the first user message, after the tools)."""
        raise NotImplementedError

    def calls(self, out: SegmentBuilder, m: Message, i: int, kwargs: dict[str, Any]) -> None:
        """Write an assistant message with tool calls, after its header, through its end of turn."""
        raise NotImplementedError


def llama_tools_info(
    name: str,
    description: str,
    headers: Headers,
    *,
    eom: str,
    reference: str,
    tokens: dict[str, str],
    end_of_turn: tuple[str, ...] = (),
) -> FormatInfo:
    """The :class:`FormatInfo` of a Llama tool format: BOS ``<|begin_of_text|>``, the end of turn as
    EOS, generation stops at it, at ``eom`` (end of a tool-call message) and at ``<|end_of_text|>``."""
    return header_info(
        name,
        "llama",
        description,
        headers,
        stop=(eom, "<|end_of_text|>"),
        end_of_turn=end_of_turn,
        bos_token=BEGIN_OF_TEXT,
        eos_token=headers.end,
        supports_tools=True,
        reference=reference,
        tokens=tokens,
    )


__all__ = [
    "GEMMA",
    "GRANITE",
    "LLAMA3",
    "LLAMA4",
    "PHI3",
    "TOOL_KWARGS",
    "Headers",
    "LlamaToolsFormat",
    "first_user_with_tools",
    "header_info",
    "json_call",
    "llama_tools_info",
    "native_family",
    "no_tool_calls",
    "pinned",
    "system_tools_text",
    "tool_list_text",
    "tool_result",
    "tojson",
]
