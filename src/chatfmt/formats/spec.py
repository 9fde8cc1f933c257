"""Declarative chat formats: role prefixes and suffixes, placements and wrappers, no code, no Jinja.

A :class:`FormatSpec` describes a format; :class:`SpecFormat` renders it into segments like any
built-in. Specs are usually written in TOML (``chatfmt.load_format("my.toml")``, see
:mod:`chatfmt.formats.spec_toml` and ``docs/custom-formats.md``) and export to an equivalent Hugging
Face Jinja chat template (:mod:`chatfmt.formats.export`).

Keys (TOML spelling; every key is optional except where noted, unknown keys are errors)::

    name               format name (default: the file name without .toml)
    description        one line shown by tools
    extends            a built-in with a spec (chatml, alpaca, qwen2.5, smollm2, zephyr, llama-3, gemma,
                       phi-4, internlm2, openchat) or a path to another TOML file, relative to this one; tables are deep-merged, this file wins;
                       name and description are not inherited
    bos                text written once, at the very start ("")
    eos                end-of-sequence text ("")
    eos_placement      "assistant": right after each assistant message's content (and tool calls),
                       before roles.assistant.suffix (default); "end": once after the final message,
                       if it is an assistant message, after its suffix; "none": never written (the
                       token is declared only, e.g. when a suffix already contains it)
    separator          text between two consecutive blocks (system block, tool block, turns,
                       generation prompt); not before the first one ("")
    round_separator    instead of `separator` before a user turn that follows an assistant turn or
                       a tool result (default: same as `separator`)
    generation_prompt  what add_generation_prompt appends (default: roles.assistant.prefix)
    strip              strip whitespace around every message's content (false)
    alternating        require [system] user assistant user ...; tool messages and tool calls are
                       then errors (false)
    end_of_turn        strings that end a turn; a message's closing text is trained with it up to
                       and including the first of them (default: [eos] when eos is written, else the
                       assistant suffix without surrounding whitespace, if any)
    stop               stop strings for generation (default: end_of_turn plus eos)
    parser             the registered output parser for what its models generate ("hermes"; default:
                       chosen from the [tool_calls] syntax by the parsers' template markers)

    [roles.system] [roles.user] [roles.assistant] [roles.tool]
    prefix             text before the message's content ("")
    suffix             text after it (""); the "closing text" of the turn
    strip              overrides the top-level `strip` for this role
                       (no [roles.tool] table and tool_results.style = "role": tool messages are errors)

    [system]
    default            system prompt used when the conversation has none ("": none)
    placement          "own_block": a turn of its own with roles.system (default);
                       "merge_first_user": merged into the first user message by merge_template;
                       "unsupported": a system message is a ValidationError
    merge_template     how a merged system prompt and the first user message combine; must contain
                       {system} and {user} once each ("{system}\\n\\n{user}")
    error              placement "unsupported": the ValidationError message for a system message;
                       {name} is the format's name ("{name} has no system prompt"). Such a format
                       without [tools] rejects a tool list (it has nowhere to put it)

    [tools]            present: the format has tool-list syntax; absent: a tool list is given to the
                       model as JSON in the system message, as for every format without tool syntax
    style              "json": json.dumps(tools) (default); "lines": one JSON object a tool,
                       joined by `separator`
    separator          between tools, for style "lines" ("\\n")
    preamble           text before the list (""); postamble: text after it ("")
    placement          "system": appended to the system prompt (after its content, before
                       roles.system.suffix; a system turn is opened if there is none) (default);
                       "own_block": a block of its own after the system turn, before the first message

    [tool_calls]       present: assistant tool calls are rendered; absent: they are errors
    mode               "wrap" (default), "drop" (not rendered, like plain ChatML) or "error"
    template           one call; {name} is the function name, {arguments} its arguments as JSON
                       ('{"name": "{name}", "arguments": {arguments}}')
    prefix / suffix    around each call ("" / "")
    separator          between the content (if not empty) and the first call, and between calls ("\\n")
    error              the ValidationError message for a tool call when mode = "error" (or the table
                       is absent); {name} is the format's name ("{name} has no tool-call syntax")

    [tool_results]
    style              "role": each tool message is a turn with roles.tool (default);
                       "user_block": consecutive tool messages share one user turn (roles.user)
    prefix / suffix    around each result's content, in both styles ("" / "")
    separator          between results in one user block ("")

Segments (what is trained and what belongs to which message):

- message content is ``content``; everything else is ``control``;
- a message's content is trained per :attr:`~chatfmt.messages.Message.trained` (assistants by
  default, ``loss`` overrides); so is the tool-call text of an assistant message;
- the closing text of a turn (EOS when written there, then the role suffix; for a user block of tool
  results, roles.user.suffix) is trained with the message up to and including the first
  ``end_of_turn`` string in it, or entirely if it contains none; what follows is not (ChatML:
  ``<|im_end|>`` trained, the ``\\n`` after it not); an EOS written at the end is trained with the
  final assistant message;
- prefixes, result wrappers and separators belong to the message they introduce or wrap; BOS, a
  default system prompt, a tool block of no message and the generation prompt to none; the literal
  text of a merge template to the system message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError, ValidationError
from ..messages import Conversation, Message, ToolCall, as_conversation
from ..segments import SegmentBuilder
from .base import ChatFormat, FormatInfo, NativeFormat
from .builtin._turns import check_alternating

EOS_PLACEMENTS = ("assistant", "end", "none")
SYSTEM_PLACEMENTS = ("own_block", "merge_first_user", "unsupported")
TOOLS_STYLES = ("json", "lines")
TOOLS_PLACEMENTS = ("system", "own_block")
TOOL_CALL_MODES = ("wrap", "drop", "error")
TOOL_RESULT_STYLES = ("role", "user_block")

DEFAULT_MERGE_TEMPLATE = "{system}\n\n{user}"
DEFAULT_CALL_TEMPLATE = '{"name": "{name}", "arguments": {arguments}}'
DEFAULT_TOOL_CALL_ERROR = "{name} has no tool-call syntax"
DEFAULT_SYSTEM_ERROR = "{name} has no system prompt"


def _key(default: Any, kind: str, choices: tuple[str, ...] = ()) -> Any:
    """A spec field: its TOML kind (``string``, ``boolean``, ``strings``) and allowed values."""
    return field(default=default, metadata={"kind": kind, "choices": choices})


def _table(cls: type, *, optional: bool = False) -> Any:
    """A nested table; ``optional`` tables are ``None`` when absent (their presence means something)."""
    meta = {"kind": "table", "cls": cls, "optional": optional}
    if optional:
        return field(default=None, metadata=meta)
    return field(default_factory=cls, metadata=meta)


@dataclass(frozen=True)
class RoleSpec:
    """How one role's turn is written around its content."""

    prefix: str = _key("", "string")
    suffix: str = _key("", "string")
    strip: bool | None = _key(None, "boolean")


@dataclass(frozen=True)
class Roles:
    system: RoleSpec = _table(RoleSpec)
    user: RoleSpec = _table(RoleSpec)
    assistant: RoleSpec = _table(RoleSpec)
    #: ``None``: tool messages have no turn of their own (an error, unless tool_results.style is user_block)
    tool: RoleSpec | None = _table(RoleSpec, optional=True)


@dataclass(frozen=True)
class SystemSpec:
    default: str = _key("", "string")
    placement: str = _key("own_block", "string", SYSTEM_PLACEMENTS)
    merge_template: str = _key(DEFAULT_MERGE_TEMPLATE, "string")
    error: str = _key(DEFAULT_SYSTEM_ERROR, "string")


@dataclass(frozen=True)
class ToolsSpec:
    style: str = _key("json", "string", TOOLS_STYLES)
    separator: str = _key("\n", "string")
    preamble: str = _key("", "string")
    postamble: str = _key("", "string")
    placement: str = _key("system", "string", TOOLS_PLACEMENTS)


@dataclass(frozen=True)
class ToolCallsSpec:
    mode: str = _key("wrap", "string", TOOL_CALL_MODES)
    template: str = _key(DEFAULT_CALL_TEMPLATE, "string")
    prefix: str = _key("", "string")
    suffix: str = _key("", "string")
    separator: str = _key("\n", "string")
    error: str = _key(DEFAULT_TOOL_CALL_ERROR, "string")


@dataclass(frozen=True)
class ToolResultsSpec:
    style: str = _key("role", "string", TOOL_RESULT_STYLES)
    prefix: str = _key("", "string")
    suffix: str = _key("", "string")
    separator: str = _key("", "string")


@dataclass(frozen=True)
class FormatSpec:
    """A declarative chat format; see the module docstring for every key."""

    name: str = _key("custom", "string")
    description: str = _key("", "string")
    bos: str = _key("", "string")
    eos: str = _key("", "string")
    eos_placement: str = _key("assistant", "string", EOS_PLACEMENTS)
    separator: str = _key("", "string")
    round_separator: str | None = _key(None, "string")
    generation_prompt: str | None = _key(None, "string")
    strip: bool = _key(False, "boolean")
    alternating: bool = _key(False, "boolean")
    end_of_turn: tuple[str, ...] | None = _key(None, "strings")
    stop: tuple[str, ...] | None = _key(None, "strings")
    parser: str | None = _key(None, "string")
    roles: Roles = _table(Roles)
    system: SystemSpec = _table(SystemSpec)
    tools: ToolsSpec | None = _table(ToolsSpec, optional=True)
    tool_calls: ToolCallsSpec | None = _table(ToolCallsSpec, optional=True)
    tool_results: ToolResultsSpec = _table(ToolResultsSpec)

    # -- effective values ------------------------------------------------------------------------

    @property
    def turn_ends(self) -> tuple[str, ...]:
        """``end_of_turn``, or its default."""
        if self.end_of_turn is not None:
            return self.end_of_turn
        if self.eos and self.eos_placement != "none":
            return (self.eos,)
        closing = self.roles.assistant.suffix.strip()
        if closing:
            return (closing,)
        return (self.eos,) if self.eos else ()

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """``stop``, or its default: the turn ends plus EOS."""
        if self.stop is not None:
            return self.stop
        return tuple(dict.fromkeys((*self.turn_ends, *((self.eos,) if self.eos else ()))))

    @property
    def generation_prompt_text(self) -> str:
        if self.generation_prompt is not None:
            return self.generation_prompt
        return self.roles.assistant.prefix

    @property
    def tool_call_error(self) -> str:
        """The message of the error for a tool call the format cannot write (``tool_calls.error``)."""
        template = self.tool_calls.error if self.tool_calls is not None else DEFAULT_TOOL_CALL_ERROR
        return template.replace("{name}", self.name)

    @property
    def system_error(self) -> str:
        """The message of the error for a system message when the format has none (``system.error``)."""
        return self.system.error.replace("{name}", self.name)

    @property
    def tools_error(self) -> str | None:
        """The message of the error for a tool list, for a format with neither tool syntax nor a system
        prompt to put the list in (else ``None``)."""
        if self.tools is None and self.system.placement == "unsupported":
            return f"{self.name} has no tool syntax and no system role to put a tool list in"
        return None

    def separator_before(self, role: str, previous: str | None) -> str:
        """The separator written before a block of ``role`` (``previous``: the last block's role)."""
        if previous is None:
            return ""
        if role == "user" and previous in ("assistant", "tool") and self.round_separator is not None:
            return self.round_separator
        return self.separator

    def strips(self, role: str) -> bool:
        rs = getattr(self.roles, role, None)
        if rs is not None and rs.strip is not None:
            return rs.strip
        return self.strip

    def problems(self) -> list[tuple[str, str]]:
        """Rules across keys, as ``(key path, message)`` pairs; empty when the spec is valid."""
        out: list[tuple[str, str]] = []
        if not self.name.strip():
            out.append(("name", "must not be empty"))
        sysp = self.system
        if sysp.placement == "unsupported" and sysp.default:
            out.append(("system.default", 'a default system prompt needs a placement other than "unsupported"'))
        if self.tools is not None and self.tools.placement == "system" and sysp.placement == "unsupported":
            out.append(
                (
                    "tools.placement",
                    'tools cannot go into the system prompt when system.placement is "unsupported"; '
                    'use placement = "own_block"',
                )
            )
        for ph in ("{system}", "{user}"):
            count = sysp.merge_template.count(ph)
            if count != 1:
                out.append(("system.merge_template", f"must contain {ph} exactly once (found {count})"))
        for key in ("end_of_turn", "stop"):
            for k, s in enumerate(getattr(self, key) or ()):
                if not s:
                    out.append((f"{key}[{k}]", "must not be empty"))
        return out

    def info(self, source: str | None = None) -> FormatInfo:
        return FormatInfo(
            name=self.name,
            description=self.description or f"declarative format {self.name!r}",
            family="spec",
            stop=self.stop_strings,
            end_of_turn=self.turn_ends,
            bos_token=self.bos or None,
            eos_token=self.eos or None,
            supports_system=self.system.placement != "unsupported",
            supports_tools=self.tools is not None,
            source=source,
        )


def split_placeholders(template: str, names: tuple[str, ...]) -> list[str]:
    """Split ``template`` into literal text and the placeholders ``names`` (kept as items):
    ``"{system}\\n\\n{user}"`` -> ``["", "{system}", "\\n\\n", "{user}", ""]`` (odd items are placeholders)."""
    pieces: list[str] = []
    rest = template
    while True:
        hits = [(rest.find(n), n) for n in names if n in rest]
        if not hits:
            pieces.append(rest)
            return pieces
        at, name = min(hits)
        pieces += [rest[:at], name]
        rest = rest[at + len(name) :]


def split_closing(text: str, ends: tuple[str, ...]) -> tuple[str, str]:
    """``(trained, rest)`` of a closing text: through the first end-of-turn string, or all of it."""
    best: tuple[int, int] | None = None
    for end in ends:
        at = text.find(end) if end else -1
        if at >= 0 and (best is None or (at, -len(end)) < (best[0], -best[1])):
            best = (at, len(end))
    if best is None:
        return text, ""
    cut = best[0] + best[1]
    return text[:cut], text[cut:]


class _Blocks:
    """Separator bookkeeping: which block came last."""

    __slots__ = ("out", "spec", "previous")

    def __init__(self, out: SegmentBuilder, spec: FormatSpec) -> None:
        self.out = out
        self.spec = spec
        self.previous: str | None = None

    def start(self, role: str, message: int | None) -> None:
        self.out.control(self.spec.separator_before(role, self.previous), message)
        self.previous = role


class SpecFormat(NativeFormat):
    """A format rendered from a :class:`FormatSpec` (see the module docstring for the rules)."""

    def __init__(self, spec: FormatSpec, *, source: str | None = None) -> None:
        problems = spec.problems()
        if problems:
            key, msg = problems[0]
            raise FormatError(f"{key}: {msg}", source=source)
        self.spec = spec
        super().__init__(spec.info(source))

    def prepare(self, messages: Any, tools: list[dict[str, Any]] | None) -> Conversation:
        conv = as_conversation(messages, tools)
        if conv.tools and self.spec.tools_error:
            raise ValidationError(self.spec.tools_error, rule="tools")
        return super().prepare(conv, None)

    # -- pieces ----------------------------------------------------------------------------------

    def tools_text(self, tools: list[Any]) -> str:
        """The tool list as this format writes it (preamble, JSON, postamble)."""
        t = self.spec.tools
        assert t is not None
        if t.style == "json":
            body = json.dumps(tools, ensure_ascii=False)
        else:
            body = t.separator.join(json.dumps(x, ensure_ascii=False) for x in tools)
        return t.preamble + body + t.postamble

    def call_text(self, call: ToolCall) -> str:
        """One tool call: the template with ``{name}`` and ``{arguments}`` filled in, wrapped."""
        tc = self.spec.tool_calls
        assert tc is not None
        values = {"{name}": call.name, "{arguments}": call.arguments_json}
        body = "".join(values.get(p, p) if k % 2 else p for k, p in enumerate(split_placeholders(tc.template, tuple(values))))
        return tc.prefix + body + tc.suffix

    def _text(self, m: Message) -> str:
        text = m.text
        return text.strip() if self.spec.strips(m.role) else text

    def _closing(self, out: SegmentBuilder, text: str, message: int | None, trained: bool) -> None:
        head, rest = split_closing(text, self.spec.turn_ends)
        out.control(head, message, trained)
        out.control(rest, message)

    # -- rendering -------------------------------------------------------------------------------

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        s = self.spec
        name = self.info.name
        msgs = conv.messages
        sys_msg = msgs[0] if msgs and msgs[0].role == "system" else None
        first = 1 if sys_msg is not None else 0
        placement = s.system.placement
        if sys_msg is not None and placement == "unsupported":
            raise ValidationError(s.system_error, index=0, rule="system")
        if s.alternating:
            check_alternating(conv, name)
        tools_text = self.tools_text(conv.tools) if s.tools is not None and conv.tools else ""
        in_system = tools_text if s.tools is not None and s.tools.placement == "system" else ""
        has_system = sys_msg is not None or bool(s.system.default) or bool(in_system)
        merge = has_system and placement == "merge_first_user"
        if merge and (first == len(msgs) or msgs[first].role != "user"):
            what = f"message {first} is {msgs[first].role!r}" if first < len(msgs) else "there is none"
            raise ValidationError(
                f"{name} merges the system prompt into the first user message, but {what}",
                index=min(first, len(msgs) - 1),
                rule="system",
            )

        blocks = _Blocks(out, s)
        out.control(s.bos)
        if has_system and placement == "own_block":
            blocks.start("system", 0 if sys_msg is not None else None)
            rs = s.roles.system
            if sys_msg is not None:
                out.control(rs.prefix, 0)
                out.content(self._text(sys_msg), 0, sys_msg.trained)
                out.control(in_system, 0)
                self._closing(out, rs.suffix, 0, sys_msg.trained)
            else:
                out.control(rs.prefix + s.system.default + in_system + rs.suffix)
        if tools_text and s.tools is not None and s.tools.placement == "own_block":
            blocks.start("tools", None)
            out.control(tools_text)

        n = len(msgs)
        i = first
        while i < n:
            m = msgs[i]
            if m.role == "user":
                blocks.start("user", i)
                if merge and i == first:
                    self._merged_user(out, i, m, sys_msg, in_system)
                else:
                    self._turn(out, s.roles.user, i, m)
            elif m.role == "assistant":
                blocks.start("assistant", i)
                self._assistant(out, i, m, last=i == n - 1)
            elif m.role == "tool" and s.tool_results.style == "user_block":
                j = i
                while j < n and msgs[j].role == "tool":
                    j += 1
                blocks.start("tool", i)
                self._tool_group(out, msgs, i, j)
                i = j
                continue
            elif m.role == "tool":
                if s.roles.tool is None:
                    raise ValidationError(
                        f"{name} has no tool-result syntax (it needs a [roles.tool] table or "
                        'tool_results.style = "user_block")',
                        index=i,
                        rule="tool_result",
                    )
                blocks.start("tool", i)
                trs = s.tool_results
                out.control(s.roles.tool.prefix + trs.prefix, i)
                out.content(self._text(m), i, m.trained)
                out.control(trs.suffix, i)
                self._closing(out, s.roles.tool.suffix, i, m.trained)
            else:  # a system message after the first; validation rejects it before this
                raise ValidationError(f"{name}: unexpected {m.role} message", index=i, rule="system")
            i += 1
        if add_generation_prompt:
            blocks.start("assistant", None)
            out.control(s.generation_prompt_text)

    def _turn(self, out: SegmentBuilder, rs: RoleSpec, i: int, m: Message) -> None:
        out.control(rs.prefix, i)
        out.content(self._text(m), i, m.trained)
        self._closing(out, rs.suffix, i, m.trained)

    def _merged_user(self, out: SegmentBuilder, i: int, m: Message, sys_msg: Message | None, in_system: str) -> None:
        s = self.spec
        sys_index = 0 if sys_msg is not None else None
        out.control(s.roles.user.prefix, i)
        for piece in split_placeholders(s.system.merge_template, ("{system}", "{user}")):
            if piece == "{user}":
                out.content(self._text(m), i, m.trained)
            elif piece == "{system}":
                if sys_msg is not None:
                    out.content(self._text(sys_msg), 0, sys_msg.trained)
                    out.control(in_system, 0)
                else:
                    out.control(s.system.default + in_system)
            else:
                out.control(piece, sys_index)
        self._closing(out, s.roles.user.suffix, i, m.trained)

    def _assistant(self, out: SegmentBuilder, i: int, m: Message, *, last: bool) -> None:
        s = self.spec
        tc = s.tool_calls
        trained = m.trained
        if m.tool_calls and (tc is None or tc.mode == "error"):
            raise ValidationError(s.tool_call_error, index=i, rule="tool_call")
        out.control(s.roles.assistant.prefix, i)
        text = self._text(m)
        if m.tool_calls and tc is not None and tc.mode == "wrap":
            items = 0
            if text:
                out.content(text, i, trained)
                items = 1
            for call in m.tool_calls:
                if items:
                    out.control(tc.separator, i, trained)
                out.control(self.call_text(call), i, trained)
                items += 1
        else:
            out.content(text, i, trained)
        eos = s.eos if s.eos_placement == "assistant" else ""
        self._closing(out, eos + s.roles.assistant.suffix, i, trained)
        if s.eos_placement == "end" and last:
            out.control(s.eos, i, trained)

    def _tool_group(self, out: SegmentBuilder, msgs: list[Message], i: int, j: int) -> None:
        s = self.spec
        trs = s.tool_results
        out.control(s.roles.user.prefix, i)
        for k in range(i, j):
            if k > i:
                out.control(trs.separator, k)
            out.control(trs.prefix, k)
            out.content(self._text(msgs[k]), k, msgs[k].trained)
            out.control(trs.suffix, k)
        self._closing(out, s.roles.user.suffix, j - 1, msgs[j - 1].trained)


# --------------------------------------------------------------------------------------------------
# built-ins expressed as specs


def _builtin_specs() -> dict[str, FormatSpec]:
    from dataclasses import replace

    from .builtin import alpaca, openchat, qwen, smollm

    chatml = FormatSpec(
        name="chatml",
        description="ChatML <|im_start|>role ... <|im_end|> (OpenAI, SmolLM2, many fine-tunes)",
        eos="<|im_end|>",
        eos_placement="none",
        end_of_turn=("<|im_end|>",),
        stop=("<|im_end|>",),
        roles=Roles(
            system=RoleSpec("<|im_start|>system\n", "<|im_end|>\n"),
            user=RoleSpec("<|im_start|>user\n", "<|im_end|>\n"),
            assistant=RoleSpec("<|im_start|>assistant\n", "<|im_end|>\n"),
            tool=RoleSpec("<|im_start|>tool\n", "<|im_end|>\n"),
        ),
        tool_calls=ToolCallsSpec(mode="drop"),
    )
    alpaca_spec = FormatSpec(
        name="alpaca",
        description="Stanford Alpaca: preamble, ### Instruction:\\n ... ### Response:\\n ... </s>",
        bos="<s>",
        eos="</s>",
        eos_placement="assistant",
        strip=True,
        alternating=True,
        end_of_turn=("</s>",),
        stop=("</s>", "### Instruction:", "### Response:"),
        roles=Roles(
            system=RoleSpec("", alpaca.SEP),
            user=RoleSpec(alpaca.INSTRUCTION, alpaca.SEP),
            assistant=RoleSpec(alpaca.RESPONSE, alpaca.SEP),
        ),
        system=SystemSpec(default=alpaca.PREAMBLE),
    )
    qwen_spec = FormatSpec(
        name="qwen2.5",
        description="Qwen2.5-Instruct: ChatML, default system prompt, <tools>/<tool_call>/<tool_response>",
        eos="<|im_end|>",
        eos_placement="none",
        end_of_turn=("<|im_end|>",),
        stop=("<|im_end|>", "<|endoftext|>"),
        roles=Roles(
            system=RoleSpec("<|im_start|>system\n", "<|im_end|>\n"),
            user=RoleSpec("<|im_start|>user\n", "<|im_end|>\n"),
            assistant=RoleSpec("<|im_start|>assistant\n", "<|im_end|>\n"),
        ),
        system=SystemSpec(default=qwen.DEFAULT_SYSTEM),
        tools=ToolsSpec(style="lines", separator="\n", preamble=qwen.TOOLS_HEADER + "\n", postamble=qwen.TOOLS_FOOTER),
        tool_calls=ToolCallsSpec(prefix="<tool_call>\n", suffix="\n</tool_call>", separator="\n"),
        tool_results=ToolResultsSpec(
            style="user_block", prefix="<tool_response>\n", suffix="\n</tool_response>", separator="\n"
        ),
    )

    # formats without tool syntax whose native error for a tool call explains why (the templates drop them)
    drops_calls = ToolCallsSpec(mode="error", error="{name} has no tool-call syntax (its template would drop the calls)")
    drops_tool_calls = replace(drops_calls, error="{name} has no tool-call syntax (its template would drop the tool calls)")

    def chatml_roles(sep: str = "\n", end: str = "<|im_end|>\n") -> Roles:
        return Roles(*(RoleSpec(f"<|im_start|>{r}{sep}", end) for r in ("system", "user", "assistant", "tool")))

    smollm2 = FormatSpec(
        name="smollm2",
        description="SmolLM2-Instruct: ChatML with the default system prompt 'You are a helpful AI assistant named SmolLM'",
        eos="<|im_end|>",
        eos_placement="none",
        end_of_turn=("<|im_end|>",),
        stop=("<|im_end|>",),
        roles=chatml_roles(),
        system=SystemSpec(default=smollm.SMOLLM2_DEFAULT_SYSTEM),
        tool_calls=drops_calls,
    )
    internlm2 = FormatSpec(
        name="internlm2",
        description="InternLM2/2.5-Chat: <s> then ChatML <|im_start|>role\\n ... <|im_end|>\\n",
        bos="<s>",
        eos="</s>",
        eos_placement="none",
        end_of_turn=("<|im_end|>",),
        stop=("<|im_end|>", "</s>"),
        roles=chatml_roles(),
        tool_calls=drops_calls,
    )
    phi4 = FormatSpec(
        name="phi-4",
        description="Phi-4: <|im_start|>role<|im_sep|> ... <|im_end|>, no newlines between turns",
        eos="<|im_end|>",
        eos_placement="none",
        end_of_turn=("<|im_end|>",),
        stop=("<|im_end|>", "<|endoftext|>"),
        roles=replace(chatml_roles("<|im_sep|>", "<|im_end|>"), tool=None),
        tool_calls=drops_calls,
    )
    zephyr = FormatSpec(
        name="zephyr",
        description="Zephyr-7B-beta: <|system|>/<|user|>/<|assistant|>\\n ... </s>\\n",
        eos="</s>",
        eos_placement="none",
        end_of_turn=("</s>",),
        stop=("</s>", "<|user|>"),
        roles=Roles(*(RoleSpec(f"<|{r}|>\n", "</s>\n") for r in ("system", "user", "assistant"))),
        tool_calls=drops_calls,
    )
    llama3 = FormatSpec(
        name="llama-3",
        description="Meta-Llama-3-Instruct: <|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        eos_placement="none",
        strip=True,
        end_of_turn=("<|eot_id|>",),
        stop=("<|eot_id|>", "<|end_of_text|>"),
        roles=Roles(
            *(
                RoleSpec(f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>")
                for r in ("system", "user", "assistant", "tool")
            )
        ),
        tool_calls=drops_tool_calls,
    )
    eot = openchat.END_OF_TURN
    openchat_spec = FormatSpec(
        name="openchat",
        description="OpenChat 3.5: <s>GPT4 Correct User: ...<|end_of_turn|>GPT4 Correct Assistant: ...",
        bos="<s>",
        eos=eot,
        eos_placement="none",
        end_of_turn=(eot,),
        stop=(eot, "</s>"),
        generation_prompt=f"{openchat.CONDITION} Assistant:",
        roles=Roles(
            system=RoleSpec("", eot),
            user=RoleSpec(f"{openchat.CONDITION} User: ", eot),
            assistant=RoleSpec(f"{openchat.CONDITION} Assistant: ", eot),
            tool=RoleSpec(f"{openchat.CONDITION} Tool: ", eot),
        ),
        tool_calls=drops_calls,
    )
    gemma_spec = FormatSpec(
        name="gemma",
        description="Gemma / Gemma 2 -it: <start_of_turn>user|model\\n...<end_of_turn>\\n, no system role",
        bos="<bos>",
        eos="<eos>",
        eos_placement="none",
        strip=True,
        alternating=True,
        end_of_turn=("<end_of_turn>",),
        stop=("<end_of_turn>", "<eos>"),
        roles=Roles(
            system=RoleSpec(),
            user=RoleSpec("<start_of_turn>user\n", "<end_of_turn>\n"),
            assistant=RoleSpec("<start_of_turn>model\n", "<end_of_turn>\n"),
            tool=None,
        ),
        system=SystemSpec(
            placement="unsupported",
            error="{name} does not support a system message (the template raises: 'System role not supported')",
        ),
        tool_calls=drops_calls,
    )
    return {
        s.name: s
        for s in (chatml, alpaca_spec, qwen_spec, smollm2, internlm2, phi4, zephyr, llama3, openchat_spec, gemma_spec)
    }


#: built-in formats that a spec renders identically (text and segments), by canonical name; each is
#: pinned by tests against the native built-in
BUILTIN_SPECS: dict[str, FormatSpec] = _builtin_specs()

# conversations on which a native built-in and its spec must agree before a spec stands for it
_PROBE_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
_PROBES: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
    ([{"role": "user", "content": " q "}], {"add_generation_prompt": True}),
    (
        [
            {"role": "system", "content": "s "},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": " a\n"},
            {"role": "user", "content": "r", "loss": True},
            {"role": "assistant", "content": "b", "loss": False},
        ],
        {},
    ),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], {"tools": _PROBE_TOOLS}),
    (
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "r"},
            {"role": "tool", "content": "t"},
        ],
        {"add_generation_prompt": True},
    ),
)


def _same_render(a: ChatFormat, b: ChatFormat) -> bool:
    for messages, kwargs in _PROBES:
        try:
            ra = a.render_segments(messages, **kwargs).segments
        except (ValidationError, ValueError):
            ra = None
        try:
            rb = b.render_segments(messages, **kwargs).segments
        except (ValidationError, ValueError):
            rb = None
        if ra != rb:
            return False
    return True


def spec_of(fmt: ChatFormat) -> FormatSpec:
    """The spec of a :class:`SpecFormat`, or of a built-in that :data:`BUILTIN_SPECS` expresses.

    A built-in instance counts only if it renders as its registered default does (a customised
    ``Alpaca(default_system=None)`` has no spec). Raises :class:`FormatError` otherwise.
    """
    if isinstance(fmt, SpecFormat):
        return fmt.spec
    from . import registry

    key = registry.resolve(fmt.info.name) if isinstance(fmt, NativeFormat) else None
    spec = BUILTIN_SPECS.get(key) if key else None
    if spec is None or type(registry.get(key)) is not type(fmt) or not _same_render(SpecFormat(spec), fmt):
        kind = "a Jinja chat template" if not isinstance(fmt, NativeFormat) else "implemented in Python"
        raise FormatError(
            f"format {fmt.info.name!r} has no declarative spec (it is {kind}); "
            f"formats with one: {', '.join(sorted(BUILTIN_SPECS))} and TOML formats"
        )
    return spec


def load_spec(path: Any) -> SpecFormat:
    """Load a TOML format file (see :func:`chatfmt.formats.spec_toml.load_spec`)."""
    from .spec_toml import load_spec as _load

    return _load(path)


__all__ = [
    "BUILTIN_SPECS",
    "FormatSpec",
    "RoleSpec",
    "Roles",
    "SpecFormat",
    "SystemSpec",
    "ToolCallsSpec",
    "ToolResultsSpec",
    "ToolsSpec",
    "load_spec",
    "spec_of",
]
