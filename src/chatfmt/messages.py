"""Conversation model, dataset-record parsers and validation.

A :class:`Conversation` is a list of :class:`Message` plus an optional list of tool definitions.
Roles are ``system``, ``user``, ``assistant`` and ``tool`` (``observation`` is accepted as
ChatGLM3's name for a tool result).

Record kinds (:func:`parse_record` detects the kind with :func:`detect_kind` and dispatches through
:data:`RECORD_KINDS`, a :class:`~chatfmt.plugins.Registry` of :class:`RecordKind`: the built-ins
below, then the ``chatfmt.record_kinds`` entry points; :data:`PARSERS` is its kind -> parser view;
every parser returns a validated conversation):

- ``openai``: ``{"messages": [...], "tools": [...]}`` or a bare list of messages;
- ``conversations``: the ChatGLM3 fine-tuning format ``{"conversations": [{"role", "content",
  "loss"?}], "tools": [...]}``; a ``tool`` message with ``name``/``parameters``/``observation``
  becomes an assistant tool call plus a tool result;
- ``sharegpt``: ``{"conversations": [{"from", "value"}], "system"?, "tools"?}`` (LLaMA-Factory);
- ``alpaca``: ``instruction``/``input``/``output`` with optional ``system`` and ``history``;
- ``prompt_response``: ``prompt``/``response`` with optional ``system`` and ``history``;
- ``prompt_completion``: TRL's conversational prompt-completion, ``prompt`` and ``completion``
  message lists (+ ``tools``); only the completion is trained;
- ``text``: a plain text record, refused (``not_conversational``): nothing for a chat format to render.

Tool definitions in records are validated and normalised to the OpenAI shape
``{"type": "function", "function": {"name", "description"?, "parameters"?}}`` (the bare
``{"name", "description", "parameters"}`` form ChatGLM3 data uses is wrapped, not rewritten); the
list exactly as the record gave it stays on :attr:`Conversation.raw_tools` for formats whose
reference dumps the record's tools verbatim. :func:`as_conversation`, the rendering entry point,
passes tools through untouched, as ``transformers`` does.

Errors are :class:`~chatfmt.errors.ValidationError` with ``rule`` (a short rule name) and ``index``:
for record kinds with a message list (openai, conversations, sharegpt) the position in that list,
otherwise the position in the built conversation; a bad tool definition sets ``tool`` instead.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .errors import PluginError, ValidationError
from .plugins import Origin, Registry

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"observation": "tool"}


@dataclass(slots=True)
class ToolCall:
    """A tool call in OpenAI shape; ``arguments`` is an object (parsed if given as a JSON string)."""

    name: str
    arguments: Any = field(default_factory=dict)
    id: str | None = None
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.id is not None:
            d["id"] = self.id
        d["type"] = self.type
        d["function"] = {"name": self.name, "arguments": self.arguments}
        return d

    @property
    def arguments_json(self) -> str:
        """The arguments as compact-ish JSON text (``json.dumps``, non-ASCII kept)."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(slots=True)
class Message:
    """One chat message.

    ``content`` is a string, a list of OpenAI content parts, or ``None``; :attr:`text` gives the
    plain text. ``loss`` is the per-message training flag (``None``: the role's default).
    """

    role: str
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    loss: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: character spans of the content that are trained or not (axolotl's ``train_detail``), as
    #: ``(start, end, trained)`` with ``end`` exclusive; characters in no span are not trained
    train_detail: tuple[tuple[int, int, bool], ...] | None = None

    @property
    def text(self) -> str:
        """The content as one string: text parts joined by newlines (as vLLM does), ``None`` as ``""``."""
        c = self.content
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        return "\n".join(
            p.get("text", "") for p in c if isinstance(p, dict) and p.get("type", "text") == "text"
        )

    @property
    def trained(self) -> bool:
        """Whether this message's tokens are trained: ``loss`` if set, else assistants only."""
        if self.loss is not None:
            return self.loss
        return self.role == "assistant"

    def to_dict(self, *, normalize: bool = False) -> dict[str, Any]:
        """OpenAI-shaped dict, as chat templates expect (plus ``loss`` when set, so that records
        round-trip). ``normalize`` joins text parts and maps ``None`` content to ``""``."""
        d: dict[str, Any] = {"role": self.role}
        if normalize:
            d["content"] = self.text
        else:
            d["content"] = self.content
        if self.name is not None:
            d["name"] = self.name
        if self.tool_calls:
            d["tool_calls"] = [tc.to_dict() for tc in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.reasoning_content is not None:
            d["reasoning_content"] = self.reasoning_content
        if self.loss is not None:
            d["loss"] = self.loss
        if self.train_detail is not None:
            d["train_detail"] = [
                {"begin_offset": a, "end_offset": b - 1, "train": t} for a, b, t in self.train_detail
            ]
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d


@dataclass(slots=True)
class Conversation:
    """Messages plus tool definitions.

    ``tools`` are OpenAI ``{"type": "function", "function": {...}}`` specs when they came through a
    record parser (validated), or whatever the caller passed to :func:`as_conversation`.
    ``raw_tools`` is the record's tool list exactly as given (a JSON string parsed), or ``None``.
    ``template_kwargs`` are the record's own template keyword arguments (TRL's per-example
    ``chat_template_kwargs``), rendered over the run's (the record's win per key).
    """

    messages: list[Message] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    raw_tools: list[Any] | None = None
    template_kwargs: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __getitem__(self, i: int) -> Message:
        return self.messages[i]

    def to_dicts(self, *, normalize: bool = False) -> list[dict[str, Any]]:
        return [m.to_dict(normalize=normalize) for m in self.messages]

    def to_dict(self, *, normalize: bool = False) -> dict[str, Any]:
        """The OpenAI record ``{"messages": [...], "tools"?: [...]}``; :func:`parse_openai` reads it back."""
        d: dict[str, Any] = {"messages": self.to_dicts(normalize=normalize)}
        if self.tools:
            d["tools"] = self.tools
        if self.template_kwargs:
            d["chat_template_kwargs"] = dict(self.template_kwargs)
        return d

    @property
    def system(self) -> Message | None:
        if self.messages and self.messages[0].role == "system":
            return self.messages[0]
        return None


# --------------------------------------------------------------------------------------------------
# small checks shared by the parsers


def _kind_of(value: Any) -> str:
    """A JSON-flavoured type name for error messages."""
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def _json_loads(text: str) -> Any:
    """``json.loads`` raising ``ValueError`` with a short reason (also for absurd nesting)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
        raise ValueError(f"{e.msg} at {where}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _opt_str(obj: dict[str, Any], key: str, index: int | None, rule: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{key!r} must be a string, got {_kind_of(value)}", index=index, rule=rule)
    return value


#: per-message keys that say whether a message is trained, as the tools that define them mean them:
#: ``loss`` (chatfmt, ChatGLM3's fine-tuning data): true/false; ``weight`` (OpenAI fine-tuning, on
#: assistant messages): 1 trained, 0 not; ``training`` / ``train`` (axolotl's
#: ``message_field_training``): true/false; ``loss_weight`` (LLaMA-Factory v1): 1.0 trained, 0.0 not
LOSS_KEYS = ("loss", "weight", "training", "train", "loss_weight")
#: axolotl's ``message_field_training_detail``: character spans of the content, trained or not
DETAIL_KEYS = ("train_detail", "training_detail")
#: keys that look like a per-message loss flag but that no tool chatfmt knows defines (the meaning,
#: train or skip, cannot be told): a message carrying one is rejected rather than silently trained
UNKNOWN_LOSS_KEYS = frozenset({
    "mask", "loss_mask", "masked", "train_mask", "label_mask", "no_loss", "ignore_loss", "trainable",
    "is_trainable", "do_train", "loss_weights", "weights",
})
#: record-level keys that change what a record means for training (checked by :func:`parse_record`)
PREFERENCE_KEYS = ("chosen", "rejected", "kto_tag")
MEDIA_KEYS = ("images", "videos", "audios")
RECORD_LOSS_KEYS = ("loss", "weight", "loss_weight", "sample_weight", "training", "train", "mask", "loss_mask")
_ANY_LOSS_KEY = frozenset((*LOSS_KEYS, *DETAIL_KEYS, *UNKNOWN_LOSS_KEYS))
_LOSS_ONLY = frozenset(("loss",))
_ANY_RECORD_KEY = frozenset((*PREFERENCE_KEYS, *MEDIA_KEYS, *RECORD_LOSS_KEYS, "functions"))


def _zero_one(key: str, value: Any, index: int | None, *, integer: bool) -> bool:
    """OpenAI's ``weight`` (the integer 0 or 1) or LLaMA-Factory's ``loss_weight`` (0.0 or 1.0)."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value not in (0, 1):
        what = "0 or 1" if integer else "0.0 or 1.0"
        raise ValidationError(
            f"{key!r} must be {what} (trained or not; chatfmt writes no fractional loss weights), got {value!r}",
            index=index,
            rule="weight",
        )
    return bool(value == 1)


def _loss_flags(
    obj: dict[str, Any], role: str, content: Any, index: int | None
) -> tuple[bool | None, tuple[tuple[int, int, bool], ...] | None]:
    """``(loss, train_detail)`` of a message from the loss keys of every tool chatfmt knows (see
    :data:`LOSS_KEYS`). Keys that disagree, a value a tool does not define, and keys no tool
    defines (:data:`UNKNOWN_LOSS_KEYS`) are rejected: nothing is trained against what a record says."""
    present = obj.keys() & _ANY_LOSS_KEY
    if not present:  # the common case: no loss key at all
        return None, None
    if present == _LOSS_ONLY:  # chatfmt's own
        loss = obj["loss"]
        if loss is not None and not isinstance(loss, bool):
            raise ValidationError(f"'loss' must be true or false, got {loss!r}", index=index, rule="loss")
        return loss, None
    unknown = sorted(k for k in obj if k in UNKNOWN_LOSS_KEYS and obj[k] is not None)
    if unknown:
        raise ValidationError(
            f"{unknown[0]!r} is not a loss key chatfmt knows (train or skip cannot be told); mark the message "
            "with 'loss': true|false (or OpenAI's 'weight': 0|1), or ignore the key with --ignore-key "
            f"{unknown[0]}",
            index=index,
            rule="loss_key",
        )
    votes: list[tuple[str, Any, bool]] = []
    for key in LOSS_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if key == "weight":
            if role != "assistant":
                raise ValidationError(
                    f"'weight' (OpenAI fine-tuning) applies to assistant messages only, not {role}; "
                    "use 'loss': true|false",
                    index=index,
                    rule="weight",
                )
            votes.append((key, value, _zero_one(key, value, index, integer=True)))
        elif key == "loss_weight":
            votes.append((key, value, _zero_one(key, value, index, integer=False)))
        elif not isinstance(value, bool):
            raise ValidationError(f"{key!r} must be true or false, got {value!r}", index=index, rule="loss")
        else:
            votes.append((key, value, value))
    if len({v for _, _, v in votes}) > 1:
        said = ", ".join(f"{k}: {json.dumps(v)}" for k, v, _ in votes)
        raise ValidationError(
            f"the message's loss keys disagree ({said}): is it trained or not?", index=index, rule="loss_conflict"
        )
    loss = votes[0][2] if votes else None
    detail_keys = [k for k in DETAIL_KEYS if obj.get(k) is not None]
    if not detail_keys:
        return loss, None
    if len(detail_keys) > 1:
        raise ValidationError(
            "the message has both 'train_detail' and 'training_detail'", index=index, rule="train_detail"
        )
    detail = _train_detail(obj[detail_keys[0]], content, index)
    keys = f"{votes[0][0]}: {json.dumps(votes[0][1])}" if votes else ""
    if loss is False and any(t for _, _, t in detail):
        raise ValidationError(
            f"the message's loss keys disagree ({keys}, but train_detail trains some of it)",
            index=index,
            rule="loss_conflict",
        )
    if loss is True and not detail:
        raise ValidationError(
            f"the message's loss keys disagree ({keys}, but train_detail is empty)", index=index, rule="loss_conflict"
        )
    if loss is False:
        return False, None
    # as axolotl: a non-empty train_detail makes the turn trained (its end-of-turn token too), the
    # content only where a span says so; an empty one trains nothing of the message
    return bool(detail), (detail or None)


def _train_detail(value: Any, content: Any, index: int | None) -> tuple[tuple[int, int, bool], ...]:
    """axolotl's ``train_detail``: ``[{"begin_offset", "end_offset", "train"}]``, offsets in characters
    of the content, ``end_offset`` inclusive; returned as sorted ``(start, end_exclusive, train)``."""
    def bad(why: str) -> ValidationError:
        return ValidationError(f"train_detail: {why}", index=index, rule="train_detail")

    if not isinstance(content, str):
        raise bad(f"needs the content as a string, got {_kind_of(content)}")
    if not isinstance(value, list):
        raise bad(f"must be a list of {{begin_offset, end_offset, train}} objects, got {_kind_of(value)}")
    spans = []
    for j, d in enumerate(value):
        if not isinstance(d, dict):
            raise bad(f"item {j} must be an object, got {_kind_of(d)}")
        extra = sorted(set(d) - {"begin_offset", "end_offset", "train"})
        if extra:
            raise bad(f"item {j} has unknown key {extra[0]!r} (expected begin_offset, end_offset, train)")
        a, b, t = d.get("begin_offset"), d.get("end_offset"), d.get("train")
        if not (type(a) is int and type(b) is int and isinstance(t, bool)):
            raise bad(f"item {j} needs integer begin_offset and end_offset and a boolean train, got {d!r:.100}")
        if not 0 <= a <= b < len(content):
            raise bad(
                f"item {j} spans characters {a}..{b} (end inclusive), outside the content's {len(content)} characters"
            )
        spans.append((a, b + 1, t))
    spans.sort()
    for (a1, b1, _), (a2, _, _) in zip(spans, spans[1:]):
        if a2 < b1:
            raise bad(f"spans starting at characters {a1} and {a2} overlap")
    return tuple(spans)


def _parse_tool_call(obj: Any, index: int) -> ToolCall:
    """An OpenAI tool call, or the bare ``{"name", "arguments"}`` form; arguments must be an object."""
    if not isinstance(obj, dict):
        raise ValidationError(
            f"a tool call must be an object, got {_kind_of(obj)}", index=index, rule="tool_call"
        )
    fn = obj.get("function", obj)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ValidationError("a tool call needs a non-empty function name", index=index, rule="tool_call")
    type_ = obj.get("type", "function")
    if type_ != "function":
        raise ValidationError(
            f"tool call type must be 'function', got {type_!r}", index=index, rule="tool_call"
        )
    call_id = _opt_str(obj, "id", index, "tool_call")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = _json_loads(args) if args.strip() else {}
        except ValueError as e:
            raise ValidationError(
                f"arguments of tool call {fn['name']!r} are not valid JSON: {e}",
                index=index,
                rule="tool_call",
            ) from None
    if not isinstance(args, dict):
        raise ValidationError(
            f"arguments of tool call {fn['name']!r} must be a JSON object, got {_kind_of(args)}",
            index=index,
            rule="tool_call",
        )
    return ToolCall(name=fn["name"], arguments=args, id=call_id)


_KNOWN_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content", *LOSS_KEYS, *DETAIL_KEYS}
_PLAIN_KEYS = frozenset({"role", "content"})
_PLAIN_ROLES = frozenset(ROLES)
_REASONING_ALIASES = ("reasoning", "thinking")


def parse_message(obj: Any, index: int = 0) -> Message:
    """Parse one OpenAI-style message dict (``reasoning``/``thinking`` accepted too).

    Whether it is trained comes from ``loss`` or the loss keys other tools write (OpenAI's
    ``weight``, axolotl's ``training``/``train``/``train_detail``, LLaMA-Factory's ``loss_weight``;
    see :data:`LOSS_KEYS`); keys that disagree or that no known tool defines are rejected."""
    if type(obj) is dict and obj.keys() <= _PLAIN_KEYS:
        # the hot path of training data: {"role": ..., "content": "..."}
        role = obj.get("role")
        content = obj.get("content", "")
        if type(content) is str and type(role) is str and role in _PLAIN_ROLES:
            return Message(role, content)
    if isinstance(obj, Message):
        return obj
    if not isinstance(obj, dict):
        raise ValidationError(f"a message must be an object, got {_kind_of(obj)}", index=index, rule="type")
    role = obj.get("role")
    if not isinstance(role, str):
        raise ValidationError("message has no string 'role'", index=index, rule="role")
    role = ROLE_ALIASES.get(role, role)
    if role not in ROLES:
        raise ValidationError(
            f"unknown role {obj['role']!r} (expected one of {', '.join(ROLES)}, or observation)",
            index=index,
            rule="role",
        )
    content = obj.get("content", "")
    if content is not None and not isinstance(content, (str, list)):
        raise ValidationError(
            f"content must be a string, a list of parts or null, got {_kind_of(content)}",
            index=index,
            rule="content",
        )
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type", "text"), str):
                raise ValidationError(
                    f"content part {j} must be an object with a type", index=index, rule="content"
                )
            if part.get("type", "text") == "text" and not isinstance(part.get("text"), str):
                raise ValidationError(
                    f"text content part {j} has no string 'text'", index=index, rule="content"
                )
    tcs = obj.get("tool_calls")
    tool_calls = None
    if tcs is not None:
        if not isinstance(tcs, list):
            raise ValidationError(
                f"tool_calls must be a list, got {_kind_of(tcs)}", index=index, rule="tool_call"
            )
        if role != "assistant" and tcs:
            raise ValidationError(
                f"only assistant messages may carry tool_calls, not {role}", index=index, rule="tool_call"
            )
        tool_calls = [_parse_tool_call(tc, index) for tc in tcs] or None
    reasoning = obj.get("reasoning_content")
    if reasoning is None:
        reasoning = next((obj[k] for k in _REASONING_ALIASES if obj.get(k) is not None), None)
    if reasoning is not None and not isinstance(reasoning, str):
        raise ValidationError(
            f"reasoning must be a string, got {_kind_of(reasoning)}", index=index, rule="reasoning"
        )
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS and k not in _REASONING_ALIASES}
    loss, detail = _loss_flags(obj, role, content, index)
    return Message(
        role=role,
        content=content,
        name=_opt_str(obj, "name", index, "name"),
        tool_calls=tool_calls,
        tool_call_id=_opt_str(obj, "tool_call_id", index, "tool_call_id"),
        reasoning_content=reasoning,
        loss=loss,
        extra=extra,
        train_detail=detail,
    )


def _record_message(obj: Any, index: int) -> Message:
    """:func:`parse_message` for a dataset record, which must say what each message is: a system,
    user or tool message needs ``content`` (a string or parts; ``null`` or missing is an error, as
    in the OpenAI API, not an empty turn), an assistant message content or tool calls. OpenAI's
    legacy ``function_call`` is refused (rule ``tool_call``) rather than dropped."""
    if type(obj) is dict and obj.keys() <= _PLAIN_KEYS:  # the hot path, as in parse_message
        role, content = obj.get("role"), obj.get("content")
        if type(content) is str and type(role) is str and role in _PLAIN_ROLES:
            return Message(role, content)
    if isinstance(obj, dict) and obj.get("function_call") is not None:
        raise ValidationError(
            "OpenAI's legacy 'function_call' is not read (the call would be dropped); write it as "
            "'tool_calls': [{\"type\": \"function\", \"function\": {\"name\", \"arguments\"}}]",
            index=index,
            rule="tool_call",
        )
    if isinstance(obj, dict) and obj.get("content") is None:
        role = obj.get("role")
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role in ("system", "user", "tool") or (role == "assistant" and not obj.get("tool_calls")):
            what = "is null" if "content" in obj else "is missing"
            needs = "content or tool_calls" if role == "assistant" else "content"
            raise ValidationError(
                f"a {role} message needs {needs}; its content {what} (it would be trained or rendered as an empty turn)",
                index=index,
                rule="content",
            )
    return parse_message(obj, index)


def as_conversation(
    messages: Any, tools: list[dict[str, Any]] | None = None, *, validate: bool = True
) -> Conversation:
    """Coerce a :class:`Conversation`, a list of message dicts or an OpenAI ``{"messages", "tools"}``
    object into a :class:`Conversation`; ``tools`` given here override the object's own.

    This is the rendering entry point: tools are passed through as given (not normalised), as
    ``transformers`` hands them to a template. Use :func:`parse_openai` for dataset records.
    """
    if isinstance(messages, Conversation):
        conv = messages
        if tools is not None:
            conv = Conversation(conv.messages, _tool_list(tools, from_json=False) or None)
    else:
        if isinstance(messages, dict):
            if "messages" not in messages:
                raise ValidationError("object has no 'messages' list", rule="shape")
            tools = tools if tools is not None else messages.get("tools")
            messages = messages["messages"]
        if not isinstance(messages, (list, tuple)):
            raise ValidationError(f"messages must be a list, got {_kind_of(messages)}", rule="shape")
        conv = Conversation(
            [parse_message(m, i) for i, m in enumerate(messages)], _tool_list(tools, from_json=False) or None
        )
    if validate:
        validate_conversation(conv)
    return conv


def _tool_list(tools: Any, *, from_json: bool = True) -> list[Any]:
    """The tools as a list: ``None`` is empty, JSON text is parsed (if ``from_json``)."""
    if tools is None:
        return []
    if from_json and isinstance(tools, str):
        try:
            tools = _json_loads(tools) if tools.strip() else []
        except ValueError as e:
            raise ValidationError(f"tools are not valid JSON: {e}", rule="tools") from None
    if not isinstance(tools, (list, tuple)):
        raise ValidationError(f"tools must be a list, got {_kind_of(tools)}", rule="tools")
    return list(tools)


# --------------------------------------------------------------------------------------------------
# validation


def validate_conversation(conv: Conversation) -> None:
    """Check the structural rules; raises :class:`ValidationError` naming the message index.

    Rules: ``empty`` (no messages), ``role`` (unknown role), ``system`` (at most one system message,
    and only first), ``tool_call`` (tool calls on a non-assistant message), ``tool_result`` (a tool
    result must follow an assistant message with tool calls, or another tool result after one).
    Tool definitions are checked by :func:`validate_tools`, which the record parsers call.
    """
    msgs = conv.messages
    if not msgs:
        raise ValidationError("conversation is empty", rule="empty")
    for i, m in enumerate(msgs):
        if m.role not in ROLES:
            raise ValidationError(
                f"unknown role {m.role!r} (expected one of {', '.join(ROLES)})", index=i, rule="role"
            )
        if m.role == "system" and i != 0:
            what = (
                "a second system message"
                if msgs[0].role == "system"
                else "a system message after the first message"
            )
            raise ValidationError(
                f"{what}: a conversation has at most one system message, and it comes first",
                index=i,
                rule="system",
            )
        if m.tool_calls and m.role != "assistant":
            raise ValidationError(
                f"only assistant messages may carry tool_calls, not {m.role}", index=i, rule="tool_call"
            )
    pending = False
    for i, m in enumerate(msgs):
        if m.role == "assistant":
            pending = bool(m.tool_calls)
        elif m.role == "tool":
            if not pending:
                before = (
                    "it is the first message" if i == 0 else f"message {i - 1} is {_describe(msgs[i - 1])}"
                )
                raise ValidationError(
                    f"a tool result must follow an assistant tool call (or another tool result after one); {before}",
                    index=i,
                    rule="tool_result",
                )
        else:
            pending = False


def _describe(m: Message) -> str:
    if m.role == "assistant":
        return "an assistant message without tool calls"
    return f"a {m.role} message"


def validate_tools(tools: Any) -> list[dict[str, Any]]:
    """Validate tool definitions and return them in OpenAI shape.

    ``tools`` is a list (or its JSON text, as ShareGPT records store it). Each item is either
    ``{"type": "function", "function": {...}}`` (``type`` may be omitted) or the bare function
    ``{"name", "description"?, "parameters"?}`` that ChatGLM3 data uses, which is wrapped as
    ``{"type": "function", "function": item}`` (the same object, so unwrapping gives it back
    exactly). The function needs a non-empty string ``name``; ``description``, if given, is a string;
    ``parameters``, if given, is an object schema with ``"type": "object"`` (``properties`` an object,
    ``required`` a list of strings). Names must be unique. Errors carry ``rule="tools"`` and the
    tool's position as ``tool``.
    """
    out = []
    seen: dict[str, int] = {}
    for j, tool in enumerate(_tool_list(tools)):
        spec = _normalize_tool(tool, j)
        name = spec["function"]["name"]
        if name in seen:
            raise ValidationError(
                f"duplicate tool name {name!r} (also tool {seen[name]})", tool=j, rule="tools"
            )
        seen[name] = j
        out.append(spec)
    return out


def _normalize_tool(tool: Any, j: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise ValidationError(
            f"a tool definition must be an object, got {_kind_of(tool)} "
            "(free-form tool descriptions need strict_tools=False)",
            tool=j,
            rule="tools",
        )
    if "function" in tool or "type" in tool:
        if tool.get("type", "function") != "function":
            raise ValidationError(f"tool type must be 'function', got {tool['type']!r}", tool=j, rule="tools")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise ValidationError(f"'function' must be an object, got {_kind_of(fn)}", tool=j, rule="tools")
        _check_function(fn, j)
        return tool if "type" in tool else {"type": "function", **tool}
    _check_function(tool, j)
    return {"type": "function", "function": tool}


def _check_function(fn: dict[str, Any], j: int) -> None:
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a tool needs a non-empty string 'name', got {name!r}", tool=j, rule="tools")
    desc = fn.get("description")
    if desc is not None and not isinstance(desc, str):
        raise ValidationError(
            f"description of {name!r} must be a string, got {_kind_of(desc)}", tool=j, rule="tools"
        )
    if "parameters" not in fn:
        return
    params = fn["parameters"]
    if not isinstance(params, dict) or params.get("type") != "object":
        got = _kind_of(params) if not isinstance(params, dict) else f"type {params.get('type')!r}"
        raise ValidationError(
            f'parameters of {name!r} must be a JSON schema with "type": "object", got {got}',
            tool=j,
            rule="tools",
        )
    props = params.get("properties")
    if props is not None and not isinstance(props, dict):
        raise ValidationError(f"parameters.properties of {name!r} must be an object", tool=j, rule="tools")
    req = params.get("required")
    if req is not None and not (isinstance(req, list) and all(isinstance(r, str) for r in req)):
        raise ValidationError(
            f"parameters.required of {name!r} must be a list of strings", tool=j, rule="tools"
        )


def _record_tools(value: Any, strict: bool) -> tuple[list[dict[str, Any]] | None, list[Any] | None]:
    """``(tools, raw_tools)`` of a record's ``tools`` value; empty means none."""
    raw = _tool_list(value)
    if not raw:
        return None, None
    return (validate_tools(raw) if strict else raw), raw


# --------------------------------------------------------------------------------------------------
# record parsers


class _Builder:
    """Collects messages with the record position each came from; finishes into a validated
    conversation whose errors name record positions."""

    __slots__ = ("messages", "origin")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.origin: list[int] = []

    def add(self, message: Message, origin: int | None = None) -> None:
        """Append ``message``; ``origin`` is its record position (``None``: its own position)."""
        self.origin.append(len(self.messages) if origin is None else origin)
        self.messages.append(message)

    def finish(self, tools: Any, strict_tools: bool) -> Conversation:
        conv = Conversation(self.messages)
        try:
            validate_conversation(conv)
        except ValidationError as e:
            if e.index is not None:
                e.index = self.origin[e.index]
            raise
        conv.tools, conv.raw_tools = _record_tools(tools, strict_tools)
        return conv


def _record(obj: Any, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValidationError(f"a {kind} record must be an object, got {_kind_of(obj)}", rule="shape")
    return obj


def _message_list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        got = "it is missing" if value is None else f"got {_kind_of(value)}"
        raise ValidationError(f"the record needs a {key!r} list; {got}", rule="shape")
    return value


def parse_openai(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """An OpenAI chat record, ``{"messages": [...], "tools"?: [...]}`` or a bare message list."""
    if isinstance(obj, list):
        messages, tools = obj, None
    else:
        rec = _record(obj, "openai")
        messages, tools = _message_list(rec, "messages"), rec.get("tools")
    b = _Builder()
    for i, m in enumerate(messages):
        b.add(_record_message(m, i))
    conv = b.finish(tools, strict_tools)
    if not isinstance(obj, list):
        conv.template_kwargs = record_template_kwargs(obj)
    return conv


#: the record kinds whose records may carry their own ``chat_template_kwargs`` (TRL's)
TEMPLATE_KWARGS_KINDS = ("openai", "prompt_completion")


def record_template_kwargs(rec: dict[str, Any]) -> dict[str, Any] | None:
    """A record's ``chat_template_kwargs`` (TRL): an object of keyword names, or absent."""
    value = rec.get("chat_template_kwargs")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise ValidationError(
            f"'chat_template_kwargs' must be an object of keyword names, got {_kind_of(value)}",
            rule="chat_template_kwargs",
        )
    reserved = sorted(set(value) & _RESERVED_KWARGS)
    if reserved:
        raise ValidationError(
            f"'chat_template_kwargs' sets {reserved[0]!r}, which is not a template keyword but a rendering option",
            rule="chat_template_kwargs",
        )
    return dict(value) or None


_RESERVED_KWARGS = frozenset({
    "messages", "conversation", "tools", "documents", "add_generation_prompt", "continue_final_message",
    "template_kwargs", "chat_template", "tokenize", "return_dict", "return_assistant_tokens_mask",
})


def parse_conversations(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """The ChatGLM3 fine-tuning format ``{"conversations": [...], "tools"?: [...]}``.

    Messages are ``{"role", "content", "loss"?}`` with roles system/user/assistant/tool/observation.
    A tool message carrying ``name``, ``parameters`` and ``observation`` expands into an assistant
    message with that tool call (its ``loss`` applies here; trained by default) and a tool result
    (``name`` set, content the observation, JSON-dumped unless a string; not trained). A tool or
    observation message without those keys is a plain tool result. ``strict_tools=False`` keeps
    tools unvalidated (the reference accepts any JSON, e.g. ToolAlpaca's description strings).
    """
    rec = _record(obj, "conversations")
    b = _Builder()
    for i, m in enumerate(_message_list(rec, "conversations")):
        if isinstance(m, dict) and m.get("role") == "tool" and m.keys() & _EXPANDED_KEYS:
            call, result = _expand_tool_message(m, i)
            b.add(call, i)
            b.add(result, i)
        else:
            b.add(_record_message(m, i), i)
    return b.finish(rec.get("tools"), strict_tools)


_EXPANDED_KEYS = frozenset(("parameters", "observation"))


def _expand_tool_message(m: dict[str, Any], index: int) -> tuple[Message, Message]:
    name = m.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(
            f"a tool message with parameters/observation needs a non-empty string 'name', got {name!r}",
            index=index,
            rule="tool_message",
        )
    for key in ("parameters", "observation"):
        if key not in m:
            raise ValidationError(f"tool message {name!r} has no {key!r}", index=index, rule="tool_message")
    params = m["parameters"]
    if isinstance(params, str):
        try:
            params = _json_loads(params)
        except ValueError as e:
            raise ValidationError(
                f"parameters of {name!r} are not valid JSON: {e}", index=index, rule="tool_message"
            ) from None
    if not isinstance(params, dict):
        raise ValidationError(
            f"parameters of {name!r} must be an object, got {_kind_of(params)}",
            index=index,
            rule="tool_message",
        )
    if m.get("content"):
        raise ValidationError(
            f"tool message {name!r} has both 'content' and parameters/observation; the content would be lost",
            index=index,
            rule="tool_message",
        )
    observation = m["observation"]
    if not isinstance(observation, str):
        observation = json.dumps(observation, ensure_ascii=False)
    loss, _ = _loss_flags({k: v for k, v in m.items() if k not in DETAIL_KEYS}, "assistant", "", index)
    if any(m.get(k) is not None for k in DETAIL_KEYS):
        raise ValidationError(
            f"tool message {name!r}: train_detail needs text content, and this message is a tool call",
            index=index,
            rule="train_detail",
        )
    call = Message(role="assistant", content="", tool_calls=[ToolCall(name, params)], loss=loss)
    return call, Message(role="tool", content=observation, name=name)


_SHAREGPT_PLAIN_KEYS = frozenset(("from", "value"))
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "function_call",
    "observation": "tool",
    "tool": "tool",
}


def parse_sharegpt(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """A ShareGPT record as LLaMA-Factory reads it.

    ``{"conversations": [{"from", "value"}], "system"?: str, "tools"?: list or JSON text}``
    (``messages`` is accepted for ``conversations``). ``from`` is human, gpt, system, function_call
    or observation (user, assistant and tool are accepted as aliases). A ``function_call`` value is
    JSON ``{"name", "arguments"}`` (or a list of them, for parallel calls) and becomes an assistant
    message with tool calls; an ``observation`` becomes a tool result. The system prompt is the
    ``system`` key or a first ``system`` message, not both.
    """
    rec = _record(obj, "sharegpt")
    key = "conversations" if "conversations" in rec else "messages"
    turns = _message_list(rec, key)
    b = _Builder()
    system = _opt_str(rec, "system", None, "shape")
    if system:
        if turns and isinstance(turns[0], dict) and turns[0].get("from") == "system":
            raise ValidationError(
                "the system prompt is given twice: as the 'system' key and as a first 'system' message",
                index=0,
                rule="system",
            )
        b.add(Message(role="system", content=system))
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise ValidationError(
                f"a ShareGPT turn must be an object, got {_kind_of(t)}", index=i, rule="type"
            )
        src = t.get("from")
        role = _SHAREGPT_ROLES.get(src) if isinstance(src, str) else None
        if role is None:
            raise ValidationError(
                f"unknown 'from' value {src!r} (expected human, gpt, system, function_call or observation)",
                index=i,
                rule="role",
            )
        value = t.get("value")
        if not isinstance(value, str):
            raise ValidationError(f"'value' must be a string, got {_kind_of(value)}", index=i, rule="content")
        # per-turn loss keys (axolotl's chat_template reads ShareGPT turns with train/train_detail)
        if role != "function_call" and t.keys() <= _SHAREGPT_PLAIN_KEYS:  # the hot path
            b.add(Message(role, value), i)
        elif role == "function_call":
            loss, detail = _loss_flags(t, "assistant", value, i)
            if detail is not None:
                raise ValidationError(
                    "train_detail on a function_call turn: its value is a tool call, not trained text",
                    index=i,
                    rule="train_detail",
                )
            b.add(Message(role="assistant", content="", tool_calls=_function_call(value, i), loss=loss), i)
        else:
            loss, detail = _loss_flags(t, role, value, i)
            b.add(Message(role=role, content=value, loss=loss, train_detail=detail), i)
    return b.finish(rec.get("tools"), strict_tools)


def _function_call(value: str, index: int) -> list[ToolCall]:
    try:
        calls = _json_loads(value)
    except ValueError as e:
        raise ValidationError(
            f"function_call value is not valid JSON: {e}", index=index, rule="tool_call"
        ) from None
    if not isinstance(calls, list):
        calls = [calls]
    if not calls:
        raise ValidationError("function_call value is an empty list", index=index, rule="tool_call")
    return [_parse_tool_call(c, index) for c in calls]


def _system_and_history(rec: dict[str, Any], b: _Builder) -> None:
    """Add the optional ``system`` and ``history`` ([[prompt, response], ...]) of a single-turn record."""
    system = _opt_str(rec, "system", None, "shape")
    if system:
        b.add(Message(role="system", content=system))
    history = rec.get("history")
    if history is None:
        return
    if not isinstance(history, list):
        raise ValidationError(
            f"'history' must be a list of [prompt, response] pairs, got {_kind_of(history)}", rule="shape"
        )
    for k, pair in enumerate(history):
        index = len(b.messages)
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise ValidationError(
                f"history[{k}] must be a [prompt, response] pair of strings, got {pair!r:.80}",
                index=index,
                rule="history",
            )
        b.add(Message(role="user", content=pair[0]))
        b.add(Message(role="assistant", content=pair[1]))


def _required_str(rec: dict[str, Any], key: str, kind: str, index: int) -> str:
    value = rec.get(key)
    if not isinstance(value, str):
        got = "it is missing" if key not in rec else f"got {_kind_of(value)}"
        raise ValidationError(f"{kind} record needs a string {key!r}; {got}", index=index, rule="content")
    return value


def parse_prompt_response(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """A single-turn record ``{"prompt", "response", "system"?, "history"?, "tools"?}`` (ChatGLM
    p-tuning / LLaMA-Factory style); ``history`` is ``[[prompt, response], ...]`` before the turn."""
    rec = _record(obj, "prompt_response")
    b = _Builder()
    _system_and_history(rec, b)
    n = len(b.messages)
    b.add(Message(role="user", content=_required_str(rec, "prompt", "prompt_response", n)))
    b.add(Message(role="assistant", content=_required_str(rec, "response", "prompt_response", n + 1)))
    return b.finish(rec.get("tools"), strict_tools)


def parse_alpaca(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """An Alpaca record ``{"instruction", "input"?, "output", "system"?, "history"?, "tools"?}``.

    The user text is the non-empty ones of instruction and input joined by ``"\\n"``, as
    LLaMA-Factory does (so an empty instruction gives just the input).
    """
    rec = _record(obj, "alpaca")
    b = _Builder()
    _system_and_history(rec, b)
    n = len(b.messages)
    instruction = _required_str(rec, "instruction", "alpaca", n)
    extra_input = _opt_str(rec, "input", n, "content")
    user = "\n".join(s for s in (instruction, extra_input) if s)
    b.add(Message(role="user", content=user))
    b.add(Message(role="assistant", content=_required_str(rec, "output", "alpaca", n + 1)))
    return b.finish(rec.get("tools"), strict_tools)


def parse_prompt_completion(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """TRL's conversational prompt-completion record ``{"prompt": [messages], "completion":
    [messages], "tools"?: list or JSON text}``: the conversation is the prompt's messages then the
    completion's, and as TRL trains only the completion, the prompt's messages are not trained (a
    loss flag that would train one is refused, rule ``loss_key``) and the completion's are, each
    one (tool results and all, as TRL's completion mask covers them), unless its own loss flag says
    otherwise. Message indices in errors count the prompt's messages, then the completion's.

    Refused: TRL's *standard* form (``prompt`` and ``completion`` strings: plain text language
    modelling, no chat template; rule ``not_conversational``), an unpaired preference (KTO) record
    (a ``label``; rule ``preference``), an empty completion (rule ``empty``)."""
    rec = _record(obj, "prompt_completion")
    if rec.get("label") is not None:
        raise ValidationError(
            "an unpaired preference (KTO) record ('label'): supervised fine-tuning would train the completion "
            "whatever its label says; use a KTO trainer, or --ignore-key label",
            rule="preference",
        )
    prompt, completion = rec.get("prompt"), rec.get("completion")
    if isinstance(prompt, str) or isinstance(completion, str):
        raise ValidationError(
            "TRL's standard prompt/completion (strings) is plain text language modelling, which no chat format "
            "renders; give the prompt and the completion as lists of messages (TRL's conversational form), or the "
            "turn as 'prompt'/'response' to render it as a user/assistant exchange",
            rule="not_conversational",
        )
    for key, value in (("prompt", prompt), ("completion", completion)):
        if not isinstance(value, list):
            got = "it is missing" if value is None else f"got {_kind_of(value)}"
            raise ValidationError(f"a prompt/completion record needs a {key!r} list of messages; {got}", rule="shape")
    assert isinstance(prompt, list) and isinstance(completion, list)  # (checked just above)
    if not completion:
        raise ValidationError("the completion is empty: nothing would be trained", index=len(prompt), rule="empty")
    b = _Builder()
    for i, m in enumerate(prompt):
        msg = _record_message(m, i)
        if msg.loss is True or msg.train_detail is not None:
            raise ValidationError(
                "a loss flag trains this prompt message, but TRL trains only the completion; move the message to "
                "the completion, or drop the flag",
                index=i,
                rule="loss_key",
            )
        msg.loss = False
        b.add(msg, i)
    for j, m in enumerate(completion, len(prompt)):
        msg = _record_message(m, j)
        if msg.loss is None and msg.train_detail is None:
            msg.loss = True
        b.add(msg, j)
    conv = b.finish(rec.get("tools"), strict_tools)
    conv.template_kwargs = record_template_kwargs(rec)
    return conv


def parse_text(obj: Any, *, strict_tools: bool = True) -> Conversation:
    """A plain text record ``{"text": ...}`` (TRL's standard language modelling, LLaMA-Factory's
    pre-training data) has no messages for a chat format to render: refused, rule
    ``not_conversational``."""
    raise ValidationError(
        "a plain text record ('text') is language modelling without a chat format; chatfmt renders conversations "
        "('messages', 'conversations', 'prompt'/'completion' message lists, ...)",
        rule="not_conversational",
    )


RecordParser = Callable[..., Conversation]
RecordDetector = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class RecordKind:
    """A record kind: ``parse(record, strict_tools=...)`` returns a validated conversation;
    ``detect(record_object)``, if given, tells a record of this kind by its keys (a plugin's is
    consulted before the built-in rules)."""

    name: str
    parse: RecordParser
    detect: RecordDetector | None = None
    description: str = ""


def _first_turn(obj: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("conversations", "messages"):
        turns = obj.get(key)
        if isinstance(turns, list):
            return next((t for t in turns if isinstance(t, dict)), None)
    return None


def _is_sharegpt(obj: dict[str, Any]) -> bool:
    first = _first_turn(obj)
    return first is not None and ("from" in first or "value" in first) and "role" not in first


#: chatfmt's own record kinds, in the order they are listed
BUILTIN_KINDS: tuple[RecordKind, ...] = (
    RecordKind("openai", parse_openai, lambda o: "messages" in o, "OpenAI messages (+ tools)"),
    RecordKind("conversations", parse_conversations, lambda o: "conversations" in o,
               "ChatGLM3 fine-tuning conversations"),
    RecordKind("prompt_response", parse_prompt_response, lambda o: "prompt" in o and "response" in o,
               "prompt/response (+ system, history)"),
    RecordKind("sharegpt", parse_sharegpt, _is_sharegpt, "ShareGPT from/value turns (LLaMA-Factory)"),
    RecordKind("alpaca", parse_alpaca, lambda o: "instruction" in o, "instruction/input/output"),
    RecordKind("prompt_completion", parse_prompt_completion, lambda o: "prompt" in o and "completion" in o,
               "TRL conversational prompt/completion"),
    RecordKind("text", parse_text, lambda o: isinstance(o.get("text"), str), "plain text (refused)"),
)

#: the order in which the built-in kinds' ``detect`` rules are tried
_DETECT_ORDER = ("sharegpt", "openai", "conversations", "alpaca", "prompt_response", "prompt_completion", "text")


def _as_record_kind(name: str, obj: object) -> tuple[RecordKind, tuple[str, ...]]:
    """What a ``chatfmt.record_kinds`` entry point holds, as a :class:`RecordKind` named ``name``:
    a ``RecordKind`` or a parser callable ``parse(record, strict_tools=...)``."""
    if isinstance(obj, RecordKind):
        return (obj if obj.name == name else RecordKind(name, obj.parse, obj.detect, obj.description)), ()
    if callable(obj):
        return RecordKind(name, obj), ()
    raise PluginError(f"record kind plugin {name!r}: expected a RecordKind or a parser callable, got {type(obj).__name__}")


def _builtin_kinds(reg: Registry[RecordKind]) -> None:
    for kind in BUILTIN_KINDS:
        reg.add(kind.name, kind)


def _unknown_kind(kind: str, known: list[str]) -> Exception:
    return ValidationError(f"unknown record kind {kind!r} (known: {', '.join(PARSERS)})", rule="kind")


#: every record kind: the built-ins, then the ``chatfmt.record_kinds`` entry points
RECORD_KINDS: Registry[RecordKind] = Registry(
    "record_kinds", builtins=_builtin_kinds, adapt=_as_record_kind, unknown=_unknown_kind, normalize_names=False
)


class _KindParsers(MutableMapping[str, RecordParser]):
    """record kind -> its parser, a live view of :data:`RECORD_KINDS` (setting a key registers a kind)."""

    def __getitem__(self, kind: str) -> RecordParser:
        if kind not in RECORD_KINDS:
            raise KeyError(kind)
        return RECORD_KINDS.get(kind).parse

    def __setitem__(self, kind: str, parser: RecordParser) -> None:
        register_record_kind(kind, parser)

    def __delitem__(self, kind: str) -> None:
        if RECORD_KINDS.pop(kind) is None:
            raise KeyError(kind)

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, _ in RECORD_KINDS.items()])

    def __len__(self) -> int:
        return len(RECORD_KINDS.names())

    def __repr__(self) -> str:
        return f"PARSERS({list(self)})"


#: record kind -> parser; each parser takes the record and ``strict_tools=`` and returns a validated
#: conversation (a view of :data:`RECORD_KINDS`, plugins' kinds included)
PARSERS: MutableMapping[str, RecordParser] = _KindParsers()

#: ``(kind, predicate)`` in order: the first predicate that holds names the kind of a record object
#: (the built-in rules; kinds registered by plugins or :func:`register_record_kind` come first)
DETECTORS: list[tuple[str, RecordDetector]] = [
    (k.name, k.detect) for name in _DETECT_ORDER for k in BUILTIN_KINDS if k.name == name and k.detect is not None
]


_detectors_cache: tuple[tuple[int, tuple[tuple[str, RecordDetector], ...]], list[tuple[str, RecordDetector]]] | None = None


def _detectors() -> list[tuple[str, RecordDetector]]:
    """Plugins' detectors (the last registered first), then :data:`DETECTORS`; built once per change
    of either (a prepare asks for every record)."""
    global _detectors_cache
    RECORD_KINDS.ensure_loaded()
    key = (RECORD_KINDS.generation, tuple(DETECTORS))
    cached = _detectors_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    added = [(name, k.detect) for name, k in RECORD_KINDS.items()
             if k.detect is not None and not RECORD_KINDS.origin(name).builtin]
    out = [*reversed(added), *DETECTORS]
    _detectors_cache = (key, out)
    return out


def detect_kind(obj: Any) -> str:
    """The record kind of ``obj``: a list is ``openai``; an object is told by its keys (a
    ``conversations`` list of ``from``/``value`` turns is ShareGPT, of ``role``/``content``
    messages the fine-tuning format; a plugin's kinds are asked first)."""
    if isinstance(obj, list):
        return "openai"
    if isinstance(obj, dict):
        for kind, matches in _detectors():
            if matches(obj):
                return kind
        keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
        raise ValidationError(
            "cannot tell the record kind: expected 'messages', 'conversations', 'instruction' or "
            f"'prompt'+'response'; keys are {keys}",
            rule="kind",
        )
    raise ValidationError(
        f"a record must be an object or a list of messages, got {_kind_of(obj)}", rule="kind"
    )


def register_record_kind(
    kind: str, parser: RecordParser, detect: RecordDetector | None = None, *, description: str = ""
) -> None:
    """Add (or replace) a record kind in this process; ``detect``, if given, is consulted before the
    built-in rules. To reach every process (``prepare --workers``, Ray), declare a
    ``chatfmt.record_kinds`` entry point."""
    RECORD_KINDS.register(kind, RecordKind(kind, parser, detect, description), origin=Origin("runtime"))


def register_parser(
    kind: str, parser: RecordParser, detect: RecordDetector | None = None
) -> None:
    """Deprecated name of :func:`register_record_kind` (``chatfmt.toolcalls.register_parser``
    registers an output parser)."""
    warnings.warn(
        "chatfmt.messages.register_parser is deprecated: use register_record_kind", DeprecationWarning, stacklevel=2
    )
    register_record_kind(kind, parser, detect)


def check_record_keys(obj: dict[str, Any]) -> None:
    """Reject a record whose top-level keys make it something supervised training would get wrong:

    - ``preference``: ``chosen``/``rejected`` (a DPO / reward-model pair, LLaMA-Factory's and TRL's
      preference data) or ``kto_tag`` (KTO feedback; ``false`` marks an answer *not* to learn): SFT
      would train the wrong answer or none;
    - ``media``: non-empty ``images``/``videos``/``audios`` (LLaMA-Factory's multimodal columns):
      chatfmt encodes text only, so the media would be dropped and placeholders trained as text;
    - ``loss_key``: a record-level loss flag or weight (``weight``, ``loss``, ``mask``, ...): no tool
      chatfmt knows puts one there, and chatfmt does not weigh examples;
    - ``tools``: OpenAI's legacy ``functions`` list (its ``tools`` replaced it);
    - ``chat_template_kwargs``: TRL's per-record template keyword arguments, read on the kinds TRL
      reads them on (:data:`TEMPLATE_KWARGS_KINDS`) and refused on any other, where they would be ignored.

    ``--ignore-key KEY`` (``ignore_keys=`` in Python) drops a key before parsing, for data where it
    means something else."""
    if not obj.keys() & _ANY_RECORD_KEY:  # the common case
        return
    pref = [k for k in PREFERENCE_KEYS if obj.get(k) is not None]
    if pref:
        what = "KTO feedback record (kto_tag)" if pref == ["kto_tag"] else f"preference record ({'/'.join(pref)})"
        raise ValidationError(
            f"a {what}: prepare writes supervised fine-tuning rows, which would train the wrong answer or none; "
            "use a preference trainer, or --ignore-key to drop the key",
            rule="preference",
        )
    media = [k for k in MEDIA_KEYS if obj.get(k)]
    if media:
        raise ValidationError(
            f"the record has {media[0]}: chatfmt encodes text only, so they would be dropped (and any "
            "placeholder such as <image> trained as text)",
            rule="media",
        )
    if obj.get("functions"):
        raise ValidationError(
            "OpenAI's legacy 'functions' list is not read (the model would be trained without them); give "
            "the definitions as 'tools': [{\"type\": \"function\", \"function\": {...}}]",
            rule="tools",
        )
    loss = [k for k in RECORD_LOSS_KEYS if obj.get(k) is not None]
    if loss:
        raise ValidationError(
            f"a record-level {loss[0]!r}: chatfmt reads loss flags per message ('loss': true|false, "
            "OpenAI's 'weight': 0|1 on assistant messages) and does not weigh whole examples",
            rule="loss_key",
        )


def parse_record(obj: Any, kind: str | None = None, *, strict_tools: bool = True) -> Conversation:
    """Parse a dataset record of ``kind`` (detected when ``None``) into a validated conversation."""
    kind = kind or detect_kind(obj)
    if isinstance(obj, dict):
        check_record_keys(obj)
        if obj.get("chat_template_kwargs") and kind not in TEMPLATE_KWARGS_KINDS:
            raise ValidationError(
                f"'chat_template_kwargs' in a {kind} record are not read (it would render without them); give them "
                "for the whole run with --template-kwarg KEY=VALUE (template_kwargs= in Python)",
                rule="chat_template_kwargs",
            )
    parse = RECORD_KINDS.get(kind).parse  # an unknown kind: ValidationError (rule kind)
    return parse(obj, strict_tools=strict_tools)
