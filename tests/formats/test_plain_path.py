"""The one-pass path of plain conversations (``{"role", "content": str}`` dicts, nothing else given)
renders exactly what the general path renders (parse to ``Message`` objects, validate, build,
merge): text and segments, for every built-in format, on random conversations that are sometimes
not plain or not valid (those take the general path, so both raise the same error)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import ChatfmtError
from chatfmt.messages import as_conversation

FORMATS = sorted(f.name for f in chatfmt.list_formats())
#: the built-ins declared as specs: the formats with a one-pass plain path
SPEC_FORMATS = sorted(
    f.name for f in chatfmt.list_formats() if getattr(chatfmt.load_format(f.name), "_plain", None) is not None
)

text_st = st.lists(
    st.one_of(
        st.sampled_from(["", " ", "\n", "  \t", "<|im_end|>", "</s>", "<|eot_id|>", "你好", "🦙", "[INST]"]),
        st.text(max_size=8),
    ),
    max_size=4,
).map("".join)

plain_message_st = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": text_st})
#: what is not plain (or not valid): other roles, other keys, content that is not a string
odd_message_st = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "tool", "observation", "bogus"]), "content": text_st}
    ),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": text_st, "loss": st.booleans()}),
    st.fixed_dictionaries(
        {"role": st.just("user"), "content": st.one_of(st.none(), st.just([{"type": "text", "text": "hi"}]))}
    ),
    st.fixed_dictionaries({"role": st.just("user")}),
)
conversation_st = st.tuples(
    st.one_of(st.none(), text_st),  # a system prompt, or none
    st.lists(
        st.one_of(plain_message_st, plain_message_st, plain_message_st, odd_message_st),
        min_size=0,
        max_size=7,
    ),
).map(lambda t: ([{"role": "system", "content": t[0]}] if t[0] is not None else []) + t[1])


def _general(fmt: Any, messages: list[dict[str, Any]], agp: bool, what: str) -> Any:
    """The general path: the messages parsed into a ``Conversation`` first (never plain)."""
    try:
        conv = as_conversation(messages)
        out = (
            fmt.render(conv, add_generation_prompt=agp)
            if what == "text"
            else fmt.render_segments(conv, add_generation_prompt=agp).segments
        )
    except (ChatfmtError, TypeError, ValueError) as e:
        return type(e)
    return out


def _fast(fmt: Any, messages: list[dict[str, Any]], agp: bool, what: str) -> Any:
    try:
        return (
            fmt.render(messages, add_generation_prompt=agp)
            if what == "text"
            else fmt.render_segments(messages, add_generation_prompt=agp).segments
        )
    except (ChatfmtError, TypeError, ValueError) as e:
        return type(e)


def test_the_spec_built_ins_have_the_plain_path() -> None:
    assert {"qwen2.5", "chatml", "smollm2", "llama-3", "zephyr"} <= set(SPEC_FORMATS)


@pytest.mark.parametrize("fmt_name", FORMATS)
@settings(max_examples=30, deadline=None)
@given(messages=conversation_st, agp=st.booleans())
def test_plain_path_equals_general_path(fmt_name: str, messages: list[dict[str, Any]], agp: bool) -> None:
    fmt = chatfmt.load_format(fmt_name)
    for what in ("text", "segments"):
        assert _fast(fmt, messages, agp, what) == _general(fmt, messages, agp, what), what


@pytest.mark.parametrize("fmt_name", SPEC_FORMATS)
def test_plain_path_is_taken_and_declines_what_is_not_plain(fmt_name: str) -> None:
    """The one-pass path answers plain conversations and leaves everything else to the general path
    (``None``), so that errors and non-plain messages are never its business."""
    fmt = chatfmt.load_format(fmt_name)
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert fmt._plain_text(plain, True) == fmt.render(as_conversation(plain), add_generation_prompt=True)
    for odd in (
        [],
        [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "loss": False}],
        [{"role": "tool", "content": "r"}],
        [{"role": "user", "content": None}],
        ({"role": "user", "content": "a tuple"},),
    ):
        assert fmt._plain_text(odd, False) is None
        assert fmt._plain_rendered(odd, False) is None
