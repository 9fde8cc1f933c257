"""User data that a format writes in its own (control) text, and the control tokens it must not become.

Message content is rendered as ``content`` segments and encoded without matching control tokens, so
content that spells ``<|im_end|>`` stays text. Other strings a user wrote are written by most formats
inside their control text: tool-call names and arguments, tool definitions (names, descriptions,
parameter schemas), a message's ``name`` and ``tool_call_id``. Encoding control text matches control
tokens, so such a string that spells one of the tokenizer's control tokens would silently become that
token. chatfmt refuses it instead, naming the message (or tool) and the token: it cannot yet write
it as text in that position and will not alter what the user wrote.

A render records where its user data came from (:attr:`chatfmt.segments.Rendered.source`); the
encoders call :func:`check_rendered` before they split control text on control tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import ValidationError
from .segments import CONTENT, Rendered

__all__ = ["DataSource", "check_rendered", "data_strings"]


class DataSource:
    """The user-written strings of a render, held lazily: the messages (chatfmt ``Message`` objects or
    OpenAI-shaped dicts) and the tool list the render was made from."""

    __slots__ = ("messages", "tools")

    def __init__(self, messages: Any, tools: Any) -> None:
        self.messages = messages
        self.tools = tools


def _leaves(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value: keys and values."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str):
                yield k
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)


def _arguments(args: Any) -> Iterator[str]:
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except ValueError:
            yield args
            return
        yield args if not isinstance(parsed, (dict, list)) else ""
        yield from _leaves(parsed)
    else:
        yield from _leaves(args)


def data_strings(source: DataSource) -> Iterator[tuple[str, int | None, int | None, str]]:
    """``(field, message index, tool index, string)`` for every user string a format may write in
    control text."""
    for i, m in enumerate(source.messages or ()):
        if isinstance(m, Mapping):
            get = m.get
        else:
            def get(key: str, default: Any = None, _m: Any = m) -> Any:
                return getattr(_m, key, default)
        for key in ("name", "tool_call_id"):
            v = get(key)
            if isinstance(v, str) and v:
                yield key, i, None, v
        for call in get("tool_calls") or ():
            if isinstance(call, Mapping):
                f = call.get("function")
                fn: Mapping[str, Any] = f if isinstance(f, Mapping) else call
                name, args, cid = fn.get("name"), fn.get("arguments"), call.get("id")
            else:
                name, args, cid = getattr(call, "name", None), getattr(call, "arguments", None), getattr(call, "id", None)
            if isinstance(name, str):
                yield "tool call name", i, None, name
            if isinstance(cid, str):
                yield "tool call id", i, None, cid
            for s in _arguments(args):
                if s:
                    yield "tool call arguments", i, None, s
    for k, tool in enumerate(source.tools or ()):
        for s in _leaves(tool):
            yield "tool definition", None, k, s


def _may_hold_data(source: DataSource) -> bool:
    if source.tools:
        return True
    for m in source.messages or ():
        if isinstance(m, Mapping):
            if m.get("tool_calls") or m.get("name") or m.get("tool_call_id"):
                return True
        elif getattr(m, "tool_calls", None) or getattr(m, "name", None) or getattr(m, "tool_call_id", None):
            return True
    return False


def check_rendered(rendered: Rendered, pattern: re.Pattern[str] | None) -> None:
    """Raise :class:`~chatfmt.errors.ValidationError` when a user string of ``rendered``'s source
    (not message content) spells a control token of the tokenizer (``pattern`` matches its control
    token strings) and that token appears in the render's control text, where encoding would turn
    it into the control id."""
    source = getattr(rendered, "source", None)
    if pattern is None or source is None or not _may_hold_data(source):
        return
    control_text: str | None = None
    for field, index, tool, s in data_strings(source):
        if pattern.search(s) is None:
            continue
        if control_text is None:
            control_text = "".join(seg.text for seg in rendered.segments if seg.kind != CONTENT and seg.token_ids is None)
        for hit in pattern.finditer(s):
            tok = hit.group(0)
            if tok in control_text:
                raise ValidationError(
                    f"a {field} string contains {tok!r}, a control token of this tokenizer; this format "
                    "writes that string in its own text, where it would become the control token, so "
                    "chatfmt refuses rather than change it (remove or escape the token)",
                    index=index,
                    tool=tool,
                    rule="control_token_in_data",
                )
