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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..errors import FormatError, ValidationError
from ..messages import Conversation, Message, ToolCall, as_conversation
from ..segments import CONTENT, CONTROL, Rendered, Segment, SegmentBuilder
from .base import ChatFormat, FormatInfo, NativeFormat, inject_tools_as_system
from .builtin._turns import check_alternating
from .family import Family

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
    """The ``[system]`` table: the default system prompt and where a system prompt goes."""

    default: str = _key("", "string")
    placement: str = _key("own_block", "string", SYSTEM_PLACEMENTS)
    merge_template: str = _key(DEFAULT_MERGE_TEMPLATE, "string")
    error: str = _key(DEFAULT_SYSTEM_ERROR, "string")


@dataclass(frozen=True)
class ToolsSpec:
    """The ``[tools]`` table: how the tool list is written."""

    style: str = _key("json", "string", TOOLS_STYLES)
    separator: str = _key("\n", "string")
    preamble: str = _key("", "string")
    postamble: str = _key("", "string")
    placement: str = _key("system", "string", TOOLS_PLACEMENTS)


@dataclass(frozen=True)
class ToolCallsSpec:
    """The ``[tool_calls]`` table: how an assistant's tool calls are written."""

    mode: str = _key("wrap", "string", TOOL_CALL_MODES)
    template: str = _key(DEFAULT_CALL_TEMPLATE, "string")
    prefix: str = _key("", "string")
    suffix: str = _key("", "string")
    separator: str = _key("\n", "string")
    error: str = _key(DEFAULT_TOOL_CALL_ERROR, "string")


@dataclass(frozen=True)
class ToolResultsSpec:
    """The ``[tool_results]`` table: how tool results are written."""

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
        rs: RoleSpec | None = getattr(self.roles, role, None)
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


#: every block a separator can follow (``None``: nothing yet)
_PREVIOUS: tuple[str | None, ...] = (None, "system", "tools", "user", "assistant", "tool")


class SpecFormat(NativeFormat):
    """A format rendered from a :class:`FormatSpec` (see the module docstring for the rules).

    The spec is compiled at construction into the text of every turn (per role, and per the block
    before it for the separators), so a render does no option work: each ordinary message is one
    :meth:`~chatfmt.segments.SegmentBuilder.turn`. ``family``, ``reference`` and ``special_tokens``
    go into the format's :class:`~chatfmt.formats.base.FormatInfo` (a built-in declared as a spec
    names its own; a TOML format is of family ``spec``).
    """

    def __init__(
        self,
        spec: FormatSpec,
        *,
        source: str | None = None,
        family: str = "spec",
        reference: str = "",
        special_tokens: Mapping[str, str] | None = None,
    ) -> None:
        problems = spec.problems()
        if problems:
            key, msg = problems[0]
            raise FormatError(f"{key}: {msg}", source=source)
        info = spec.info(source)
        if family != info.family or reference or special_tokens:
            info = replace(info, family=family, reference=reference, special_tokens=dict(special_tokens or {}))
        super().__init__(info)
        self._compile(spec)

    def _compile(self, spec: FormatSpec) -> None:
        self.spec = spec
        s = spec
        ends = s.turn_ends
        roles = s.roles

        def headers(role: str, prefix: str) -> dict[str | None, str]:
            return {prev: s.separator_before(role, prev) + prefix for prev in _PREVIOUS}

        self._sys_head = roles.system.prefix
        self._sys_end = split_closing(roles.system.suffix, ends)
        self._user = (headers("user", roles.user.prefix), s.strips("user"), *split_closing(roles.user.suffix, ends))
        eos = s.eos if s.eos_placement == "assistant" else ""
        self._assistant = (
            headers("assistant", roles.assistant.prefix),
            s.strips("assistant"),
            *split_closing(eos + roles.assistant.suffix, ends),
        )
        self._final_eos = s.eos if s.eos_placement == "end" else ""
        trs = s.tool_results
        self._tool_strip = s.strips("tool")
        self._tool_group = trs.style == "user_block"
        self._tool_between = trs.separator + trs.prefix
        self._tool_after = trs.suffix
        tool_role = roles.user if self._tool_group else roles.tool
        self._tool_end = split_closing(tool_role.suffix, ends) if tool_role is not None else ("", "")
        self._tool = (
            headers("tool", tool_role.prefix + trs.prefix) if tool_role is not None else None,
            self._tool_strip,
            *self._tool_end,
        )
        placement = s.system.placement
        self._own_system = placement == "own_block"
        self._merge_system = placement == "merge_first_user"
        self._no_system = placement == "unsupported"
        self._tools_in_system = s.tools is not None and s.tools.placement == "system"
        self._tools_own_block = s.tools is not None and s.tools.placement == "own_block"
        self._generation = {prev: s.separator_before("assistant", prev) + s.generation_prompt_text for prev in _PREVIOUS}
        tc = s.tool_calls
        self._call_mode = "error" if tc is None else tc.mode
        self._call_format = _call_pattern(tc) if tc is not None else ""
        self._tools_error = s.tools_error
        self._plain = _plain_plan(self, s) if type(self) is SpecFormat else None

    def _plain_text(self, messages: Any, add_generation_prompt: bool) -> str | None:
        plan = self._plain
        if plan is None or type(messages) is not list or not messages:
            return None
        roles, system, default_text, bos, final_eos, generation = plan[:6]
        parts: list[str] = [bos]
        append = parts.append
        start = 0
        prev: str | None = None
        try:
            m = messages[0]
            if type(m) is dict and m.get("role") == "system":
                if len(m) != 2 or type(c := m["content"]) is not str:
                    return None
                head, strip, tail, _ = system
                append(head[None])
                append(c.strip() if strip else c)
                append(tail)
                start, prev = 1, "system"
            elif default_text:
                append(default_text)
                prev = "system"
            role = ""
            for m in messages[start:] if start else messages:
                if type(m) is not dict or len(m) != 2:
                    return None
                role = m["role"]
                c = m["content"]
                if type(c) is not str or type(role) is not str:
                    return None
                head, strip, tail, _ = roles[role]
                append(head[prev])
                append(c.strip() if strip else c)
                append(tail)
                prev = role
        except KeyError:  # no role or content, or a role without a plain turn (tool, a later system)
            return None
        if final_eos and role == "assistant":
            append(final_eos)
        if add_generation_prompt:
            append(generation[prev])
        return "".join(parts)

    def _plain_rendered(self, messages: Any, add_generation_prompt: bool) -> Rendered | None:
        segs: list[Segment] = []
        state = self._plain_open(messages, 0, None, segs)
        if state is None:
            return None
        self._plain_close(segs, state, len(messages), add_generation_prompt)
        return Rendered(segs)

    def _plain_open(self, messages: Any, start: int, prev: str | None, segs: list[Segment]) -> tuple[str | None, str] | None:
        """Append the segments of the plain messages ``messages[start:]`` to ``segs`` (with the opening
        when ``start`` is 0; ``prev``: the role of ``messages[start - 1]``), without what only the
        end of a conversation gets (a final EOS, the generation prompt): ``(the last block, the last
        role)``, or ``None`` when a message is not plain (``segs`` is then left part-filled).

        A plain message's segments depend only on its role, its content, its index and the role
        before it, so the segments of ``messages[:k]`` are those of any conversation that starts
        with them: what :class:`~chatfmt.inference.IncrementalEncoder` renders only the new messages by."""
        plan = self._plain
        if plan is None or type(messages) is not list or not messages:
            return None
        roles, system, _, _, _, _, opening, default_opening = plan
        append = segs.append
        role = ""
        try:
            if start == 0:
                m = messages[0]
                if type(m) is dict and m.get("role") == "system":
                    if len(m) != 2 or type(c := m["content"]) is not str:
                        return None
                    if opening is not None:
                        append(opening)
                    head, strip, _, shapes = system
                    if strip:
                        c = c.strip()
                    for text, kind, trained in shapes[None, not c]:
                        append(_new_segment(Segment, (c if text is None else text, kind, 0, trained, None, None)))
                    start, prev = 1, "system"
                elif default_opening is not None:
                    append(default_opening)
                    prev = "system"
                elif opening is not None:
                    append(opening)
            i = start
            for m in messages[start:] if start else messages:
                if type(m) is not dict or len(m) != 2:
                    return None
                role = m["role"]
                c = m["content"]
                if type(c) is not str or type(role) is not str:
                    return None
                head, strip, _, shapes = roles[role]
                if strip:
                    c = c.strip()
                for text, kind, trained in shapes[prev, not c]:
                    append(_new_segment(Segment, (c if text is None else text, kind, i, trained, None, None)))
                prev = role
                i += 1
        except KeyError:  # no role or content, or a role without a plain turn (tool, a later system)
            return None
        return prev, role

    def _plain_close(self, segs: list[Segment], state: tuple[str | None, str], n: int, add_generation_prompt: bool) -> None:
        """What ends a plain conversation of ``n`` messages (after :meth:`_plain_open`): a final EOS
        after a final assistant message (merged into its last segment as the builder merges), the
        generation prompt."""
        assert self._plain is not None
        final_eos, generation = self._plain[4:6]
        prev, role = state
        if final_eos and role == "assistant":
            last = segs[-1]
            if last.kind == CONTROL and last.message == n - 1 and last.trained and last.token_ids is None:
                segs[-1] = last._replace(text=last.text + final_eos)
            else:
                segs.append(Segment(final_eos, CONTROL, n - 1, True))
        if add_generation_prompt and generation[prev]:
            segs.append(Segment(generation[prev]))

    def with_info(self, **changes: Any) -> SpecFormat:
        """A copy with its :class:`~chatfmt.formats.base.FormatInfo` changed; a new ``bos_token`` or
        ``eos_token`` is also what the copy writes (in place of the spec's BOS, and of its EOS
        wherever the spec writes it)."""
        clone = super().with_info(**changes)
        assert isinstance(clone, SpecFormat)
        spec = self.spec
        if "bos_token" in changes and spec.bos:
            spec = replace(spec, bos=changes["bos_token"] or "")
        if "eos_token" in changes and spec.eos:
            spec = _replace_text(spec, spec.eos, changes["eos_token"] or "")
        if spec is not self.spec:
            clone._compile(spec)
        return clone

    def prepare(self, messages: Any, tools: list[dict[str, Any]] | None) -> Conversation:
        conv = as_conversation(messages, tools)
        if conv.tools:
            if self._tools_error:
                raise ValidationError(self._tools_error, rule="tools")
            if not self.info.supports_tools:
                conv = inject_tools_as_system(conv)
        return conv

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
        return self._call_format.format(call.name, call.arguments_json)

    def _text(self, m: Message) -> str:
        text = m.text
        return text.strip() if self.spec.strips(m.role) else text

    # -- rendering -------------------------------------------------------------------------------

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        msgs = conv.messages
        n = len(msgs)
        prev, first, merge, sys_msg, in_system = self._opening(conv, out)
        user_headers, user_strip, user_head, user_rest = self._user
        bot_headers, bot_strip, bot_head, bot_rest = self._assistant
        tool_headers, tool_strip, tool_head, tool_rest = self._tool
        i = first
        while i < n:
            m = msgs[i]
            role = m.role
            if role == "user":
                if merge and i == first:
                    self._merged_user(out, user_headers[prev], i, m, sys_msg, in_system)
                else:
                    text = m.text
                    out.turn(i, user_headers[prev], text.strip() if user_strip else text, user_head, m.trained, user_rest)
            elif role == "assistant":
                text = m.text
                if bot_strip:
                    text = text.strip()
                if m.tool_calls and self._call_mode != "drop":
                    out.turn(i, bot_headers[prev], text, self._calls_text(i, m, text) + bot_head, m.trained, bot_rest)
                else:
                    out.turn(i, bot_headers[prev], text, bot_head, m.trained, bot_rest)
                if self._final_eos and i == n - 1:
                    out.control(self._final_eos, i, m.trained)
            elif role == "tool":
                if tool_headers is None:
                    raise ValidationError(
                        f"{self.info.name} has no tool-result syntax (it needs a [roles.tool] table or "
                        'tool_results.style = "user_block")',
                        index=i,
                        rule="tool_result",
                    )
                if self._tool_group or self._tool_after:
                    i = self._tool_block(out, tool_headers[prev], msgs, i)
                    prev = role
                    continue
                text = m.text
                out.turn(i, tool_headers[prev], text.strip() if tool_strip else text, tool_head, m.trained, tool_rest)
            else:  # a system message after the first; validation rejects it before this
                raise ValidationError(f"{self.info.name}: unexpected {m.role} message", index=i, rule="system")
            prev = role
            i += 1
        if add_generation_prompt:
            out.control(self._generation[prev])

    def _opening(self, conv: Conversation, out: SegmentBuilder) -> tuple[str | None, int, bool, Message | None, str]:
        """BOS, the system block and the tool block: ``(the last block, the first message of the
        loop, whether it merges the system prompt, the system message, the tool text in it)``."""
        s = self.spec
        msgs = conv.messages
        n = len(msgs)
        sys_msg = msgs[0] if n and msgs[0].role == "system" else None
        first = 1 if sys_msg is not None else 0
        if sys_msg is not None and self._no_system:
            raise ValidationError(s.system_error, index=0, rule="system")
        if s.alternating:
            check_alternating(conv, self.info.name)
        tools_text = self.tools_text(conv.tools) if conv.tools and s.tools is not None else ""
        in_system = tools_text if self._tools_in_system else ""
        default = s.system.default
        has_system = sys_msg is not None or bool(default) or bool(in_system)
        merge = has_system and self._merge_system
        if merge and (first == n or msgs[first].role != "user"):
            what = f"message {first} is {msgs[first].role!r}" if first < n else "there is none"
            raise ValidationError(
                f"{self.info.name} merges the system prompt into the first user message, but {what}",
                index=min(first, n - 1),
                rule="system",
            )
        if s.bos:
            out.control(s.bos)
        if not (has_system and self._own_system):
            prev: str | None = None
        elif sys_msg is None:
            out.control(self._sys_head + default + in_system + "".join(self._sys_end))
            prev = "system"
        else:
            head, rest = self._sys_end
            trained = sys_msg.trained
            if in_system:
                out.turn(0, self._sys_head, self._text(sys_msg), "", trained, in_system)
                out.turn(0, "", "", head, trained, rest)
            else:
                out.turn(0, self._sys_head, self._text(sys_msg), head, trained, rest)
            prev = "system"
        if tools_text and self._tools_own_block:
            out.control(s.separator_before("tools", prev) + tools_text)
            prev = "tools"
        return prev, first, merge, sys_msg, in_system

    def _calls_text(self, i: int, m: Message, text: str) -> str:
        """The tool calls of an assistant message, with the separator before the first when there is content."""
        tc = self.spec.tool_calls
        if tc is None or self._call_mode == "error":
            raise ValidationError(self.spec.tool_call_error, index=i, rule="tool_call")
        calls = tc.separator.join([self.call_text(call) for call in m.tool_calls or ()])
        return tc.separator + calls if text else calls

    def _tool_block(self, out: SegmentBuilder, header: str, msgs: list[Message], i: int) -> int:
        """The tool result at ``i`` (a turn of its own), or with ``tool_results.style = "user_block"``
        the results from ``i`` on that share one user turn; the index after them."""
        strip, between, after = self._tool_strip, self._tool_between, self._tool_after
        end = len(msgs) if self._tool_group else i + 1
        j = i
        while j < end and msgs[j].role == "tool":
            m = msgs[j]
            text = m.text
            out.turn(j, header if j == i else between, text.strip() if strip else text, "", m.trained, after)
            j += 1
        head, rest = self._tool_end
        out.turn(j - 1, "", "", head, msgs[j - 1].trained, rest)
        return j

    def _merged_user(
        self, out: SegmentBuilder, header: str, i: int, m: Message, sys_msg: Message | None, in_system: str
    ) -> None:
        s = self.spec
        sys_index = 0 if sys_msg is not None else None
        out.control(header, i)
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
        head, rest = self._user[2:]
        out.control(head, i, m.trained)
        out.control(rest, i)


_new_segment = tuple.__new__

#: how a plain message's turn renders: its header by the block before it, whether its content is
#: stripped, its closing text (end of turn and what follows), and its merged segment shapes by
#: ``(previous block, content empty)``: ``(text, kind, trained)`` with ``None`` for the content
_PlainRole = tuple[dict[str | None, str], bool, str, dict[tuple[str | None, bool], tuple[tuple[str | None, str, bool], ...]]]


def _turn_shape(header: str, empty: bool, end: str, after: str, trained: bool) -> tuple[tuple[str | None, str, bool], ...]:
    """The segments :meth:`SegmentBuilder.turn` gives (merged as ``build`` merges them), the content
    as ``None``."""
    items: list[tuple[str | None, str, bool]] = []
    for text, kind, t in ((header, CONTROL, False), (None, CONTENT, trained), (end, CONTROL, trained), (after, CONTROL, False)):
        if text is None and empty or text == "":
            continue
        if items and text is not None and items[-1][0] is not None and items[-1][1:] == (kind, t):
            items[-1] = (items[-1][0] + text, kind, t)
        else:
            items.append((text, kind, t))
    return tuple(items)


def _plain_plan(fmt: SpecFormat, s: FormatSpec) -> tuple[Any, ...] | None:
    """What :meth:`SpecFormat._plain_text` and ``_plain_rendered`` need, compiled once: the turns of
    plain messages (no tool calls, ``loss`` or other keys), or ``None`` when the spec renders them
    with more than turns (a merged or refused system prompt, alternation checks)."""
    if s.system.placement != "own_block" or s.alternating:
        return None

    def role(headers: dict[str | None, str], strip: bool, end: str, after: str, trained: bool) -> _PlainRole:
        shapes = {(prev, empty): _turn_shape(h, empty, end, after, trained) for prev, h in headers.items() for empty in (False, True)}
        return headers, strip, end + after, shapes

    user_headers, user_strip, user_end, user_after = fmt._user
    bot_headers, bot_strip, bot_end, bot_after = fmt._assistant
    roles = {
        "user": role(user_headers, user_strip, user_end, user_after, False),
        "assistant": role(bot_headers, bot_strip, bot_end, bot_after, True),
    }
    sys_end, sys_after = fmt._sys_end
    system = role({None: fmt._sys_head}, s.strips("system"), sys_end, sys_after, False)
    default_text = fmt._sys_head + s.system.default + "".join(fmt._sys_end) if s.system.default else ""
    opening = Segment(s.bos) if s.bos else None
    default_opening = Segment(s.bos + default_text) if s.bos or default_text else None
    if not default_text:
        default_opening = None
    return roles, system, default_text, s.bos, fmt._final_eos, fmt._generation, opening, default_opening


_CALL_FIELDS = ("{name}", "{arguments}")


def _call_pattern(tc: ToolCallsSpec) -> str:
    """One call as a :meth:`str.format` pattern (``{0}`` the name, ``{1}`` the arguments JSON): the
    template between the prefix and the suffix, literal braces doubled."""
    pieces = split_placeholders(tc.template, _CALL_FIELDS)
    pieces[0] = tc.prefix + pieces[0]
    pieces[-1] = pieces[-1] + tc.suffix
    return "".join(
        f"{{{_CALL_FIELDS.index(p)}}}" if k % 2 else p.replace("{", "{{").replace("}", "}}") for k, p in enumerate(pieces)
    )


def _replace_text(value: Any, old: str, new: str) -> Any:
    """``value`` (a spec, one of its tables, a string or a tuple of strings) with ``old`` written as
    ``new`` in every string but names and descriptions; strings that become empty leave their tuple."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, tuple):
        return tuple(x for x in (_replace_text(v, old, new) for v in value) if x)
    if is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _replace_text(getattr(value, f.name), old, new)
            for f in fields(value)
            if f.name not in ("name", "description")
        }
        return replace(value, **changes)
    return value


# --------------------------------------------------------------------------------------------------
# built-ins declared as specs


@dataclass(frozen=True)
class SpecFamily(Family):
    """A family declared as a spec (``spec=``): its formats are :class:`SpecFormat` s whose
    :class:`~chatfmt.formats.base.FormatInfo` also carries the family's ``group`` (as
    ``info.family``), ``reference`` and ``special_tokens`` (the control tokens its tokenizer has
    beyond what the spec writes)."""

    special_tokens: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def create(self, **changes: Any) -> SpecFormat:
        """A fresh format of this family; ``changes`` replace fields of its spec (a customised
        variant, e.g. ``system=SystemSpec(default="...")``)."""
        spec = self.spec
        assert spec is not None
        if changes:
            spec = replace(spec, **changes)
        return SpecFormat(
            spec, family=self.group or self.name, reference=self.reference, special_tokens=self.special_tokens
        )

    def with_default_system(self, default: str) -> SpecFormat:
        """A format of this family with ``default`` as its default system prompt (``""``: none)."""
        assert self.spec is not None
        system = self.spec.system
        return self.create() if default == system.default else self.create(system=replace(system, default=default))


def role_tables(prefix: str, suffix: str, roles: tuple[str, ...] = ("system", "user", "assistant", "tool")) -> Roles:
    """Role tables written alike: ``prefix`` and ``suffix`` with ``{role}`` filled in, for ``roles``
    (a role left out has no table; tool messages are then errors)."""
    made = {r: RoleSpec(prefix.replace("{role}", r), suffix.replace("{role}", r)) for r in roles}
    return Roles(made.get("system", RoleSpec()), made.get("user", RoleSpec()), made.get("assistant", RoleSpec()), made.get("tool"))


def chatml_roles(sep: str = "\n", end: str = "<|im_end|>\n", tool: bool = True) -> Roles:
    """ChatML's role tables: ``<|im_start|>{role}{sep}`` ... ``{end}`` for every role (``tool``: also
    for tool messages)."""
    return role_tables("<|im_start|>{role}" + sep, end, ("system", "user", "assistant", "tool")[: 4 if tool else 3])


#: the error of formats whose template has no tool-call syntax (and would drop the calls)
DROPS_CALLS = ToolCallsSpec(mode="error", error="{name} has no tool-call syntax (its template would drop the calls)")


def closed_turns(name: str, description: str, end: str, *stop: str, eos: str | None = None, **fields: Any) -> FormatSpec:
    """A spec whose role suffixes close every turn with ``end`` (trained with the message, as the end
    of turn); ``eos`` (default ``end``) is declared, not written; generation stops at ``end`` and
    ``stop``. Roles default to ChatML's, tool calls to an error (:data:`DROPS_CALLS`); ``fields``
    set any other key."""
    fields.setdefault("roles", chatml_roles())
    fields.setdefault("tool_calls", DROPS_CALLS)
    return FormatSpec(
        name=name,
        description=description,
        eos=end if eos is None else eos,
        eos_placement="none",
        end_of_turn=(end,),
        stop=(end, *stop),
        **fields,
    )

class _BuiltinSpecs(Mapping[str, FormatSpec]):
    """The built-in formats a spec expresses, by canonical name: every built-in family declared with
    ``spec=`` (read from the registry when asked)."""

    def _specs(self) -> dict[str, FormatSpec]:
        from . import registry

        specs: dict[str, FormatSpec] = {}
        for key, fam in registry.FAMILIES.items():
            if fam.spec is not None and registry.FAMILIES.origin(key).builtin:
                specs[fam.name] = fam.spec
        return specs

    def __getitem__(self, name: str) -> FormatSpec:
        return self._specs()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._specs())

    def __repr__(self) -> str:
        return f"BUILTIN_SPECS({sorted(self)})"


#: built-in formats a spec renders (text and segments), by canonical name
BUILTIN_SPECS: Mapping[str, FormatSpec] = _BuiltinSpecs()

def spec_of(fmt: ChatFormat) -> FormatSpec:
    """The spec of a :class:`SpecFormat`: every built-in declared as a spec (customised or not) and
    every TOML format. Raises :class:`FormatError` for a format implemented in Python or a Jinja
    template (a family renders from one source: its spec or its builder)."""
    if isinstance(fmt, SpecFormat):
        return fmt.spec
    kind = "a Jinja chat template" if not isinstance(fmt, NativeFormat) else "implemented in Python"
    raise FormatError(
        f"format {fmt.info.name!r} has no declarative spec (it is {kind}); "
        f"formats with one: {', '.join(sorted(BUILTIN_SPECS))} and TOML formats"
    )


def load_spec(path: Any) -> SpecFormat:
    """Load a TOML format file (see :func:`chatfmt.formats.spec_toml.load_spec`)."""
    from .spec_toml import load_spec as _load

    return _load(path)


__all__ = [
    "BUILTIN_SPECS",
    "DROPS_CALLS",
    "FormatSpec",
    "RoleSpec",
    "Roles",
    "SpecFamily",
    "SpecFormat",
    "SystemSpec",
    "ToolCallsSpec",
    "ToolResultsSpec",
    "ToolsSpec",
    "chatml_roles",
    "closed_turns",
    "load_spec",
    "role_tables",
    "spec_of",
]
