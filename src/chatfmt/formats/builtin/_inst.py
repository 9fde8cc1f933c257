"""The ``[INST]`` family, written once: the instruct encoding of mistral-common, parameterised by
:class:`Protocol` (its ``InstructTokenizerV1/V2/V3/V7`` as data: version, the tokenizer's control
ids, whether the tokenizer has a dummy prefix), and the ``[INST]``/``[/INST]``, ``<s>``/``</s>``
tokens Llama-2-chat shares with it.

:class:`InstFormat` is mistral-common's ``MistralTokenizer.encode_chat_completion`` for text-only
conversations (see :mod:`chatfmt.formats.builtin.mistral` for the versions, the models and what
the vendor code does); Llama-2-chat (:mod:`chatfmt.formats.builtin.llama2`) is Meta's own per-pair
encoding with the same tokens and ids.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall, as_conversation
from ...segments import CONTENT, CONTROL, SegmentBuilder, SegmentKind
from ..base import NativeFormat

BOS, EOS = "<s>", "</s>"
INST, END_INST = "[INST]", "[/INST]"
TOOLS, END_TOOLS = "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"
TOOL_RESULTS, END_TOOL_RESULTS = "[TOOL_RESULTS]", "[/TOOL_RESULTS]"
TOOL_CALLS = "[TOOL_CALLS]"
SYSTEM, END_SYSTEM = "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"
TOOL_CONTENT = "[TOOL_CONTENT]"

#: tool call ids as mistral-common's validator (v3+) and the Hugging Face templates require them
CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")

#: how mistral-common joins the text of merged messages and of text chunks (``_DEFAULT_JOIN_STR``)
JOIN = "\n\n"

#: one piece of an ``encode`` call: (kind, text, message index, trained)
Piece = tuple[SegmentKind, str, int | None, bool]

#: ``<s>`` and ``</s>`` in the 32000-piece sentencepiece models of Llama-2 and Mistral v1 (their only
#: control pieces besides ``<unk>``)
SPM_BOS_EOS: dict[str, int] = {BOS: 1, EOS: 2}


#: the ``InstructTokenizer`` version from which each behaviour holds
SINCE: dict[str, int] = {
    # [AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS] (v1 ignores the tool list and refuses calls)
    "tool_syntax": 2,
    # ``content.rstrip(" ")`` before encoding an assistant answer
    "strips_assistant": 2,
    # call ids in tool calls, ``{"content", "call_id"}`` tool results, ids validated
    "call_ids": 3,
    # the system prompt is its own ``[SYSTEM_PROMPT]`` block where it stands; tool results are
    # ``[TOOL_RESULTS] id [TOOL_CONTENT] content [/TOOL_RESULTS]``
    "system_tokens": 7,
    # an assistant message may carry both content and tool calls
    "content_with_tool_calls": 7,
}


@dataclass(frozen=True)
class Protocol:
    """One mistral-common instruct version, as data.

    ``version`` is the ``InstructTokenizerV<n>`` number (1, 2, 3, 7); ``ids`` the control token ids of
    the tokenizer (a token missing here is written as text); ``dummy_prefix``: the tokenizer is a
    sentencepiece model whose ``encode`` starts every string with ``▁`` (shown as a space in the text).
    """

    version: int
    ids: dict[str, int] = field(default_factory=dict)
    dummy_prefix: bool = True

    def has(self, behaviour: str) -> bool:
        """Whether this version has ``behaviour`` (a key of :data:`SINCE`)."""
        return self.version >= SINCE[behaviour]


# ------------------------------------------------------------------------------------------------
# normalization (mistral-common's InstructRequestNormalizer, for text-only conversations)


@dataclass
class _Turn:
    """A normalized message: consecutive user (or assistant) messages merged, as mistral-common does."""

    role: str
    members: list[int] = field(default_factory=list)
    #: (message index, text) of every non-empty text part, in order
    parts: list[tuple[int, str]] = field(default_factory=list)
    calls: list[tuple[int, ToolCall]] = field(default_factory=list)


def _text_parts(m: Message, index: int) -> list[str]:
    """The non-empty text parts of a message (a string is one part); other parts are rejected."""
    c = m.content
    if c is None or c == "":
        return []
    if isinstance(c, str):
        return [c]
    parts = []
    for j, p in enumerate(c):
        kind = p.get("type", "text")
        if kind != "text":
            raise ValidationError(
                f"content part {j} is {kind!r}: the Mistral text formats take text parts only",
                index=index,
                rule="content",
            )
        if p.get("text"):
            parts.append(p["text"])
    return parts


def _turns(conv: Conversation, protocol: Protocol) -> tuple[str | None, list[_Turn]]:
    """``(system prompt, turns)``: mistral-common's normalization of the conversation.

    v1-v3 take the system prompt out (``None`` when empty) and put an empty user turn first when the
    first turn is not a user's; v7 keeps the system message as a turn.
    """
    system: str | None = None
    turns: list[_Turn] = []
    for i, m in enumerate(conv.messages):
        if m.role == "system":
            if protocol.has("system_tokens"):
                turns.append(_Turn("system", [i], [(i, t) for t in _text_parts(m, i)]))
            else:
                system = JOIN.join(_text_parts(m, i)) or None
            continue
        if m.role == "tool":
            turns.append(_Turn("tool", [i]))
            continue
        if not turns or turns[-1].role != m.role:
            turns.append(_Turn(m.role))
        turn = turns[-1]
        turn.members.append(i)
        turn.parts += [(i, t) for t in _text_parts(m, i)]
        turn.calls += [(i, tc) for tc in m.tool_calls or ()]
    if not protocol.has("system_tokens") and (not turns or turns[0].role != "user"):
        turns.insert(0, _Turn("user"))
    return system, turns


def _json_value(text: str) -> Any:
    """mistral-common's ``_normalize_json_content`` then ``_parse_json_content``: empty text is ``{}``,
    JSON text its value, anything else stays the string."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _arguments(call: ToolCall) -> Any:
    args = call.arguments
    if isinstance(args, str):
        return _json_value(args)
    return {} if args is None else args


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def tools_json(tools: list[dict[str, Any]]) -> str:
    """The ``[AVAILABLE_TOOLS]`` payload: mistral-common's ``Tool.model_dump`` (``description`` ``""``
    and ``parameters`` ``{}`` when absent, other keys dropped) in a ``json.dumps`` list."""
    out = []
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValidationError(f"tool {tool!r:.60} has no function name", rule="tools")
        out.append(
            {
                "type": "function",
                "function": {
                    "name": fn["name"],
                    "description": fn.get("description") or "",
                    "parameters": fn.get("parameters") or {},
                },
            }
        )
    return _dumps(out)


# ------------------------------------------------------------------------------------------------
# the format


class InstFormat(NativeFormat):
    """An ``[INST]`` instruct format as mistral-common encodes it; subclasses set :attr:`protocol` and
    :attr:`info`."""

    protocol: Protocol

    #: why ``chatfmt export --to jinja`` refuses (see :func:`chatfmt.formats.export.to_jinja`)
    jinja_unsupported = (
        "mistral-common encodes every string with its own tokenizer.encode call (with sentencepiece, each "
        "one's dummy-prefix space is an id-less segment here, so the same text in one template string "
        "tokenizes differently), and v2/v3 re-serialise tool results and arguments as parsed JSON values, "
        "which a template cannot parse; use mistral-common's own generated templates for text"
    )

    def prepare(self, messages: Any, tools: list[dict[str, Any]] | None) -> Conversation:
        # v1 has no tool syntax and mistral-common ignores the tool list there (no system injection)
        return as_conversation(messages, tools)

    # -- emitting

    def _token(self, out: SegmentBuilder, text: str, message: int | None, trained: bool = False) -> None:
        """A control token: its id when the tokenizer has it as a special token, else control text."""
        token_id = self.protocol.ids.get(text)
        if token_id is None:
            out.control(text, message, trained)
        else:
            out.ids(text, (token_id,), message, trained)

    def _encode(self, out: SegmentBuilder, pieces: list[Piece]) -> None:
        """One ``tokenizer.encode(...)`` call of mistral-common: its pieces (kind, text, message,
        trained) as one run. With sentencepiece the run's dummy prefix ``▁`` is an id-less segment
        ``" "`` in front: it shows the space the ids decode to and keeps the run apart from the one
        before (a separate ``encode`` call)."""
        pieces = [p for p in pieces if p[1]]
        if not pieces:
            return
        if self.protocol.dummy_prefix:
            out.ids(" ", (), pieces[0][2], pieces[0][3])
        for kind, text, message, trained in pieces:
            out.add(text, kind, message, trained)

    @staticmethod
    def _joined(turn: _Turn, msgs: list[Message]) -> list[Piece]:
        """The turn's text parts joined by ``"\\n\\n"`` (the joiner belongs to the part after it)."""
        pieces: list[Piece] = []
        for k, (i, text) in enumerate(turn.parts):
            trained = msgs[i].trained
            if k:
                pieces.append((CONTROL, JOIN, i, trained))
            pieces.append((CONTENT, text, i, trained))
        return pieces

    @staticmethod
    def _rstrip_spaces(
        pieces: list[Piece],
    ) -> list[Piece]:
        """``"".join(texts).rstrip(" ")``, cut back into the pieces."""
        out = list(pieces)
        while out:
            kind, text, message, trained = out[-1]
            stripped = text.rstrip(" ")
            if stripped:
                out[-1] = (kind, stripped, message, trained)
                break
            out.pop()
        return out

    # -- building

    def build(
        self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any
    ) -> None:
        p = self.protocol
        msgs = conv.messages
        self._check(conv)
        system, turns = _turns(conv, p)
        users = [k for k, t in enumerate(turns) if t.role == "user"]
        first_user = users[0] if users else -1
        last_user = users[-1] if users else -1
        for turn in turns:
            if turn.role == "assistant":
                self._check_answer(turn)
        if p.version == 2:
            self._check_v2_tool_results(turns, last_user)
        tools = conv.tools if p.has("tool_syntax") else None
        out.ids(BOS, (p.ids[BOS],))
        for k, turn in enumerate(turns):
            if turn.role == "system":
                self._system(out, turn, msgs)
            elif turn.role == "user":
                place_system = k == (first_user if p.version == 1 else last_user)
                self._user(
                    out, turn, msgs, system if place_system else None, tools if k == last_user else None
                )
            elif turn.role == "assistant":
                if p.version == 2 and turn.calls and k < last_user:
                    continue  # v2 drops tool calls before the last user message
                self._assistant(out, turn, msgs)
            elif not (p.version == 2 and k < last_user):  # v2 drops tool results there too
                self._tool(out, turn.members[0], msgs[turn.members[0]])

    def _system(self, out: SegmentBuilder, turn: _Turn, msgs: list[Message]) -> None:
        i = turn.members[0]
        trained = msgs[i].trained
        self._token(out, SYSTEM, i, trained)
        self._encode(out, self._joined(turn, msgs))
        self._token(out, END_SYSTEM, i, trained)

    def _user(
        self,
        out: SegmentBuilder,
        turn: _Turn,
        msgs: list[Message],
        system: str | None,
        tools: list[dict[str, Any]] | None,
    ) -> None:
        first = turn.members[0] if turn.members else None
        last = turn.members[-1] if turn.members else None
        trained = msgs[first].trained if first is not None else False
        pieces = self._joined(turn, msgs)
        if system:
            s = msgs[0].trained
            pieces = [(CONTENT, system, 0, s), (CONTROL, JOIN, 0, s), *pieces]
        if self.protocol.version == 1:
            # the whole "[INST] {content} [/INST]" is one string for the tokenizer
            end_trained = msgs[last].trained if last is not None else False
            self._encode(
                out,
                [
                    (CONTROL, f"{INST} ", first, trained),
                    *pieces,
                    (CONTROL, f" {END_INST}", last, end_trained),
                ],
            )
            return
        if tools:
            self._token(out, TOOLS, first)
            self._encode(out, [(CONTENT, tools_json(tools), None, False)])
            self._token(out, END_TOOLS, first)
        self._token(out, INST, first, trained)
        self._encode(out, pieces)
        self._token(out, END_INST, last, msgs[last].trained if last is not None else False)

    def _assistant(self, out: SegmentBuilder, turn: _Turn, msgs: list[Message]) -> None:
        p = self.protocol
        last = turn.members[-1]
        trained = msgs[last].trained
        pieces = self._joined(turn, msgs)
        if p.has("strips_assistant"):
            pieces = self._rstrip_spaces(pieces)
        if turn.parts:
            self._encode(out, pieces)
        if turn.calls:
            i = turn.calls[0][0]
            call_trained = msgs[i].trained
            self._token(out, TOOL_CALLS, i, call_trained)
            calls = []
            for _, call in turn.calls:
                d: dict[str, Any] = {"name": call.name, "arguments": _arguments(call)}
                if p.has("call_ids") and call.id and call.id != "null":
                    d["id"] = call.id
                calls.append(d)
            self._encode(out, [(CONTENT, _dumps(calls), i, call_trained)])
        out.ids(EOS, (p.ids[EOS],), last, trained)

    def _tool(self, out: SegmentBuilder, i: int, m: Message) -> None:
        p = self.protocol
        text = JOIN.join(_text_parts(m, i))
        trained = m.trained
        self._token(out, TOOL_RESULTS, i, trained)
        if p.has("system_tokens"):
            self._encode(out, [(CONTENT, m.tool_call_id or "", i, trained)])
            self._token(out, TOOL_CONTENT, i, trained)
            self._encode(out, [(CONTENT, text, i, trained)])
        else:
            value = _json_value(text)
            payload: Any = (
                {"content": value, "call_id": m.tool_call_id}
                if p.has("call_ids")
                else [{"name": m.name, "content": value}]
            )
            self._encode(out, [(CONTENT, _dumps(payload), i, trained)])
        self._token(out, END_TOOL_RESULTS, i, trained)

    # -- checks mistral-common makes (its validator and encoder), as ValidationError

    def _check(self, conv: Conversation) -> None:
        p = self.protocol
        for i, m in enumerate(conv.messages):
            if not p.has("tool_syntax") and (m.role == "tool" or m.tool_calls):
                raise ValidationError(
                    f"{self.name} has no tool syntax (mistral-common: 'Tools not implemented for tokenizer V1')",
                    index=i,
                    rule="tool_call",
                )
            if p.has("call_ids"):
                self._check_call_ids(m, i, last=i == len(conv.messages) - 1)
            if (
                m.role == "assistant"
                and not p.has("content_with_tool_calls")
                and not m.tool_calls
                and not _text_parts(m, i)
            ):
                # mistral-common's validator (v1-v3) checks every message before merging them
                raise ValidationError(
                    f"{self.name}: an assistant message needs content or tool calls", index=i, rule="content"
                )

    def _check_call_ids(self, m: Message, i: int, *, last: bool) -> None:
        """v3+: ids of 9 letters or digits; a call without one only in the final message (mistral-finetune
        trains the last call without its id; mistral-common's finetuning mode accepts that)."""
        hint = "Mistral tool call ids are 9 letters or digits (mistral-common's validator), e.g. 'a1B2c3D4e'"

        def invalid(what: str, value: str) -> ValidationError:
            return ValidationError(f"{self.name}: {what} {value!r} is not valid; {hint}", index=i, rule="tool_call_id")

        if m.role == "tool":
            if not m.tool_call_id:
                raise ValidationError(
                    f"{self.name}: a tool result needs the tool_call_id of its call", index=i, rule="tool_result"
                )
            if not CALL_ID.fullmatch(m.tool_call_id):
                raise invalid("tool_call_id", m.tool_call_id)
        for tc in m.tool_calls or ():
            if tc.id is None or tc.id == "null":
                if not last:
                    raise ValidationError(
                        f"{self.name}: tool call {tc.name!r} has no id (only the final message may omit it)",
                        index=i,
                        rule="tool_call_id",
                    )
            elif not CALL_ID.fullmatch(tc.id):
                raise invalid("tool call id", tc.id)

    def _check_answer(self, turn: _Turn) -> None:
        last = turn.members[-1]
        if not turn.parts and not turn.calls:
            raise ValidationError(
                f"{self.name}: an assistant message needs content or tool calls", index=last, rule="content"
            )
        if turn.calls and turn.parts and not self.protocol.has("content_with_tool_calls"):
            raise ValidationError(
                f"{self.name}: an assistant message cannot carry both content and tool calls "
                "(mistral-common v1-v3); split them or use a v7 format",
                index=last,
                rule="tool_call",
            )

    def _check_v2_tool_results(self, turns: list[_Turn], last_user: int) -> None:
        count = 0
        for k, turn in enumerate(turns):
            if turn.role == "tool":
                count += 1
                if k > last_user and count > 1:
                    raise ValidationError(
                        f"{self.name}: one tool result per assistant turn after the last user message "
                        "(mistral-common v2 has no call ids to pair several)",
                        index=turn.members[0],
                        rule="tool_result",
                    )
            else:
                count = 0

