"""A request body with a lone surrogate anywhere (a string value or a key, at any depth) is refused,
and one without is not: ``wire.lone_surrogate_at``'s quick walk (no paths, ASCII strings told in
constant time) says what encoding every string to UTF-8 says, and the path it names is the first
string that does not encode, in the walk's order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatfmt.server.wire import ChatCompletionRequest, lone_surrogate_at

# strings of ASCII, CJK, emoji and (sometimes) a surrogate code point
text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126),
        st.sampled_from(["你", "好", "é", "🦙", "\u200d"]),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    ),
    max_size=12,
)
values = st.recursive(
    st.one_of(text, st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=30,
)


def _encodes(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (_strings(k) + _strings(x))]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


@given(values)
def test_refused_exactly_when_a_string_does_not_encode(v: Any) -> None:
    where = lone_surrogate_at(v)
    assert (where is None) == all(_encodes(s) for s in _strings(v))


@given(st.lists(text, min_size=1, max_size=6))
def test_the_path_names_the_message(contents: list[str]) -> None:
    body = {"messages": [{"role": "user", "content": c} for c in contents]}
    bad = [k for k, c in enumerate(contents) if not _encodes(c)]
    where = lone_surrogate_at(body)
    if not bad:
        assert where is None
    else:
        assert where is not None and where.startswith("messages[") and where.endswith("].content")
        assert int(where[len("messages[") : -len("].content")]) in bad


def test_a_request_with_a_lone_surrogate_key_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi", "x\ud800": 1}]})
    ok = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "你好 🦙"}]})
    assert ok.messages[0].content == "你好 🦙"
