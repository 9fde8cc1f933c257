"""``IncrementalEncoder.encode`` gives exactly ``fmt.encode(..., add_generation_prompt=True).input_ids``
for every built-in format and real tokenizers, over a conversation that grows turn by turn, is edited
in the middle, changes its system prompt and gains tools; and it re-tokenizes only what changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import ChatfmtError
from chatfmt.inference import IncrementalEncoder

from .conftest import TOKENIZER_PATHS, get_tokenizer

FORMATS = [f.name for f in chatfmt.list_formats()]
TOKENIZERS = list(TOKENIZER_PATHS)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}

#: the turns appended one by one; texts with multi-byte characters, whitespace runs and newlines
TURNS = [
    {"role": "user", "content": "Hello! What is 2 + 2?"},
    {"role": "assistant", "content": "2 + 2 = 4."},
    {"role": "user", "content": "Und auf Deutsch? 你好 🦙 naïve café\n\n  indented"},
    {"role": "assistant", "content": "Vier. 四。\nDone."},
    {"role": "user", "content": "Thanks.   Now write `x = 1` as code:\n```py\nx = 1\n```"},
    {"role": "assistant", "content": "```python\nx = 1\n```"},
    {"role": "user", "content": "One more: the end."},
]
SYSTEM = {"role": "system", "content": "You are a terse assistant."}


def _reference(fmt: Any, tok: Any, messages: list[dict], tools: list | None) -> list[int] | type[Exception]:
    try:
        # every format with every tokenizer: the pairs that do not fit are encoded anyway on purpose
        return fmt.encode(messages, tok, tools=tools, add_generation_prompt=True, allow_missing_tokens=True).input_ids
    except ChatfmtError as e:
        return type(e)


def _incremental(enc: IncrementalEncoder, messages: list[dict], tools: list | None) -> list[int] | type[Exception]:
    try:
        return enc.encode(messages, tools=tools)
    except ChatfmtError as e:
        return type(e)


def _check(fmt: Any, tok: Any, enc: IncrementalEncoder, messages: list[dict], tools: list | None = None) -> bool:
    """Assert equality; True when the conversation encoded (False when both raised)."""
    want = _reference(fmt, tok, messages, tools)
    got = _incremental(enc, messages, tools)
    assert got == want, f"{fmt.name}: {len(messages)} messages, tools={bool(tools)}"
    if isinstance(want, list):
        s = enc.stats
        assert s.reused_tokens + s.encoded_tokens == len(want)
        return True
    return False


@pytest.mark.parametrize("tok_name", TOKENIZERS)
@pytest.mark.parametrize("fmt_name", FORMATS)
def test_growing_edited_conversation_equals_fmt_encode(fmt_name: str, tok_name: str) -> None:
    tok = get_tokenizer(tok_name)
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok, allow_missing_tokens=True)
    encoded = 0
    # grow: system + one turn at a time
    msgs = [SYSTEM]
    for turn in TURNS:
        msgs = [*msgs, turn]
        encoded += _check(fmt, tok, enc, msgs)
    # an edit in the middle (the second user message), then the original again
    edited = copy.deepcopy(msgs)
    edited[3]["content"] = "An edited question <|im_end|> </s> [INST]"
    encoded += _check(fmt, tok, enc, edited)
    encoded += _check(fmt, tok, enc, msgs)
    # a changed system prompt, then no system prompt at all
    encoded += _check(fmt, tok, enc, [{"role": "system", "content": "Answer in French."}, *msgs[1:]])
    encoded += _check(fmt, tok, enc, msgs[1:])
    # tools offered, then a tool call and its result
    encoded += _check(fmt, tok, enc, msgs, tools=[WEATHER_TOOL])
    call = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    }
    result = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp_c": 21}'}
    encoded += _check(fmt, tok, enc, [*msgs, {"role": "assistant", "content": "Let me check."}, {"role": "user", "content": "Weather in Paris?"}, call, result], tools=[WEATHER_TOOL])
    assert encoded > 0, f"{fmt_name} encoded none of the conversations"


#: (format, tokenizer) pairs where the format's control tokens are the tokenizer's special tokens, so
#: the rendered text splits into many units and appending a turn re-encodes only the tail
NATIVE = [
    ("qwen2.5", "qwen2.5"),
    ("chatml", "qwen2.5"),
    ("llama-2", "llama-2"),
    ("llama-3.1", "llama-3"),
    ("mistral-v3", "mistral-v3"),
    ("smollm2", "smollm2-gguf"),
]

LONG_TEXT = "The quick brown fox jumps over the lazy dog; " * 8
SLACK = 140


@pytest.mark.parametrize(("fmt_name", "tok_name"), NATIVE)
def test_appending_a_turn_reencodes_only_the_tail(fmt_name: str, tok_name: str) -> None:
    tok = get_tokenizer(tok_name)
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok)
    # (Mistral renders the system prompt into the *last* user turn, so it would move on every turn)
    msgs: list[dict] = [] if fmt_name in ("llama-2", "mistral-v3") else [{"role": "system", "content": "Be brief."}]
    prev_len = 0
    for k in range(11):  # ends with a user turn
        msgs.append({"role": "user" if k % 2 == 0 else "assistant", "content": f"turn {k}: {LONG_TEXT}"})
        if msgs[-1]["role"] != "user":
            continue
        ids = enc.encode(msgs)
        assert ids == fmt.encode(msgs, tok, add_generation_prompt=True).input_ids
        s = enc.stats
        if prev_len:
            # the new round is ~2 x 100 tokens; everything before it comes from the cache except the
            # last unit of the previous prompt (its generation prompt; for Llama-2 and Mistral, whose
            # [INST] markers are plain text, the whole previous user turn: ~100 tokens)
            assert s.reused_units > 0
            assert s.reused_tokens >= prev_len - SLACK, (s, prev_len)
            assert s.encoded_tokens <= len(ids) - prev_len + SLACK, (s, prev_len, len(ids))
        prev_len = len(ids)
    # a repeated call reuses everything
    again = enc.encode(msgs)
    assert again == ids and enc.stats.encoded_tokens == 0 and enc.stats.reused_units == enc.stats.units


@pytest.mark.parametrize(("fmt_name", "tok_name"), NATIVE)
def test_an_edit_in_the_middle_reencodes_from_the_edit_on(fmt_name: str, tok_name: str) -> None:
    tok = get_tokenizer(tok_name)
    fmt = chatfmt.load_format(fmt_name)
    msgs = [{"role": "user" if k % 2 == 0 else "assistant", "content": f"turn {k}: {LONG_TEXT}"} for k in range(9)]
    enc = IncrementalEncoder(fmt, tok)
    full = enc.encode(msgs)
    edited = copy.deepcopy(msgs)
    edited[4]["content"] = "edited"
    ids = enc.encode(edited)
    assert ids == fmt.encode(edited, tok, add_generation_prompt=True).input_ids
    s = enc.stats
    assert 0 < s.reused_tokens < len(full) // 2 + 40
    # everything from message 4 on was encoded again: at least messages 5..8
    assert s.encoded_tokens >= 4 * 80
    # a new encoder (no cache) gives the same ids
    assert IncrementalEncoder(fmt, tok).encode(edited) == ids


# -- hypothesis: any contents, including control-token strings --------------------------------------

CONTROL_STRINGS = [
    "<|im_start|>",
    "<|im_end|>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|endoftext|>",
    "<tool_call>",
    "<think>",
    "<<SYS>>",
]
text_st = st.lists(
    st.one_of(
        st.sampled_from(CONTROL_STRINGS),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
        st.sampled_from([" ", "\n", "  ", "你好", "🦙", "é", "\t"]),
    ),
    max_size=6,
).map("".join)

#: an operation on the conversation: append a turn, edit message i, set the system prompt
op_st = st.one_of(
    st.tuples(st.just("append"), text_st, text_st),
    st.tuples(st.just("edit"), st.integers(0, 20), text_st),
    st.tuples(st.just("system"), st.one_of(st.none(), text_st), st.just("")),
)

HYPO_PAIRS = [
    ("qwen2.5", "qwen2.5"),
    ("llama-2", "llama-2"),
    ("llama-3.1", "llama-3"),
    ("mistral-v3", "mistral-v3"),
    ("smollm2", "smollm2-gguf"),
    ("zephyr", "llama-2"),
]


@pytest.mark.parametrize(("fmt_name", "tok_name"), HYPO_PAIRS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, min_size=1, max_size=8))
def test_any_edit_sequence_equals_fmt_encode(fmt_name: str, tok_name: str, ops: list[tuple]) -> None:
    tok = get_tokenizer(tok_name)
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok)
    system: str | None = None
    turns: list[dict] = []
    for op, a, b in ops:
        if op == "append":
            turns += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        elif op == "edit" and turns:
            turns[a % len(turns)] = {**turns[a % len(turns)], "content": b}
        elif op == "system":
            system = a
        msgs = ([{"role": "system", "content": system}] if system is not None else []) + turns
        # ask for the next reply: end with a user message
        msgs = [*msgs, {"role": "user", "content": "next?"}]
        _check(fmt, tok, enc, msgs)


def test_a_text_run_counts_as_the_start_only_once() -> None:
    """With ``compat="transformers"`` a sentencepiece run after the first one gets no prefix space;
    an empty id segment between two runs must not make the second run look like the start."""
    from chatfmt.encode import encode_rendered
    from chatfmt.segments import Rendered, Segment

    tok = get_tokenizer("llama-2")
    enc = IncrementalEncoder(chatfmt.load_format("llama-2"), tok, compat="transformers")
    for segs in (
        [Segment("Hello"), Segment("", token_ids=()), Segment("world", kind="content", message=0)],
        [Segment("Hello"), Segment("<s>", token_ids=(1,)), Segment("world", kind="content", message=0)],
        [Segment("", token_ids=()), Segment("Hello"), Segment("", token_ids=()), Segment("world")],
    ):
        r = Rendered(segs)
        assert enc.encode_rendered(r) == encode_rendered(r, tok, compat="transformers")[0]


@pytest.mark.parametrize("fmt_name", ["llama-2", "mistral-v3", "zephyr", "chatml", "gemma"])
def test_compat_transformers_equals_fmt_encode(fmt_name: str) -> None:
    """The transformers-compatible sentencepiece mode (no prefix space after a control token)."""
    tok = get_tokenizer("llama-2" if fmt_name != "mistral-v3" else "mistral-v3")
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok, compat="transformers", allow_missing_tokens=True)
    msgs: list[dict] = []
    for turn in TURNS:
        msgs = [*msgs, turn]
        want = fmt.encode(msgs, tok, add_generation_prompt=True, compat="transformers", allow_missing_tokens=True).input_ids
        assert enc.encode(msgs) == want
