"""``IncrementalEncoder`` renders only the new messages of a plain conversation where the format's
turns are append-only (the built-ins declared as specs: a plain message's segments depend only on
its role, content, index and the role before it), and falls back to rendering everything
elsewhere. Either way its ids equal ``fmt.encode`` of the whole conversation, for every built-in,
on random sequences of appends, edits, truncations and system-prompt changes (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import ChatfmtError
from chatfmt.inference import IncrementalEncoder

from .conftest import get_tokenizer

FORMATS = sorted(f.name for f in chatfmt.list_formats())
#: the formats that render plain conversations message by message (the rest fall back)
APPEND_ONLY = sorted(n for n in FORMATS if getattr(chatfmt.load_format(n), "_plain", None) is not None)


def _tokenizer_for(fmt_name: str) -> str:
    """A real tokenizer whose control tokens the format writes where there is one, else Llama-2's
    sentencepiece (its prefix-space rule makes the split between runs matter)."""
    if fmt_name in ("qwen2.5", "chatml", "internlm2", "phi-4") or fmt_name.startswith(
        ("qwen", "hermes", "yi")
    ):
        return "qwen2.5"
    if fmt_name.startswith("llama-3"):
        return "llama-3"
    if fmt_name == "smollm2":
        return "smollm2-gguf"
    if fmt_name.startswith(("mistral", "ministral")):
        return "mistral-v3"
    return "llama-2"


text_st = st.lists(
    st.one_of(
        st.sampled_from(
            ["", " ", "\n", "  ", "<|im_end|>", "</s>", "<|eot_id|>", "[INST]", "你好", "🦙", "x y"]
        ),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
    ),
    max_size=4,
).map("".join)

op_st = st.one_of(
    st.tuples(st.just("append"), text_st, text_st),
    st.tuples(st.just("append"), text_st, text_st),
    st.tuples(st.just("edit"), st.integers(0, 30), text_st),
    st.tuples(st.just("truncate"), st.integers(0, 30), st.just("")),
    st.tuples(st.just("system"), st.one_of(st.none(), text_st), st.just("")),
    st.tuples(st.just("odd"), st.integers(0, 30), st.just("")),  # a message that is not plain
)


def _encode(call: Any) -> list[int] | type[Exception]:
    try:
        ids: list[int] = call()
        return ids
    except ChatfmtError as e:
        return type(e)


@pytest.mark.parametrize("fmt_name", FORMATS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, min_size=1, max_size=8), agp=st.booleans())
def test_incremental_equals_full_encode(fmt_name: str, ops: list[tuple[Any, Any, Any]], agp: bool) -> None:
    tok = get_tokenizer(_tokenizer_for(fmt_name))
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok, allow_missing_tokens=True)
    system: str | None = None
    turns: list[dict[str, Any]] = []
    for op, a, b in ops:
        if op == "append":
            turns += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        elif op == "edit" and turns:
            turns[a % len(turns)] = {**turns[a % len(turns)], "content": b}
        elif op == "truncate":
            turns = turns[: a % (len(turns) + 1)]
        elif op == "system":
            system = a
        elif op == "odd" and turns:
            turns[a % len(turns)] = {**turns[a % len(turns)], "loss": True}
        msgs = ([{"role": "system", "content": system}] if system is not None else []) + turns
        for m in (msgs, [*msgs, {"role": "user", "content": "next?"}]):
            want = _encode(
                lambda m=m: fmt.encode(m, tok, add_generation_prompt=agp, allow_missing_tokens=True).input_ids
            )
            got = _encode(lambda m=m: enc.encode(m, add_generation_prompt=agp))
            assert got == want, (fmt_name, len(m))
            if isinstance(want, list):
                assert enc.stats.reused_tokens + enc.stats.encoded_tokens == len(want)
                assert enc.last_text == fmt.render(m, add_generation_prompt=agp)


def test_append_only_formats() -> None:
    """Which built-ins render plain conversations message by message: the spec-declared ones."""
    assert {"chatml", "internlm2", "llama-3", "openchat", "phi-4", "qwen2.5", "smollm2", "zephyr"} <= set(
        APPEND_ONLY
    )
    # the system prompt merged into the first user turn (gemma), alternation checks (alpaca), reasoning
    # rules that look at later messages (qwen3): rendered in full
    assert not {"alpaca", "gemma", "qwen3"} & set(APPEND_ONLY)


@pytest.mark.parametrize("fmt_name", ["qwen2.5", "chatml", "llama-3"])
def test_appending_renders_only_the_new_messages(fmt_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first call, an appended turn is rendered alone: the earlier messages are neither
    rendered nor tokenized again (the format's general path is never entered)."""
    tok = get_tokenizer(_tokenizer_for(fmt_name))
    fmt = chatfmt.load_format(fmt_name)
    enc = IncrementalEncoder(fmt, tok, allow_missing_tokens=True)
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    rendered: list[int] = []
    prev_len = 0
    real_open = fmt._plain_open

    def spy(messages: Any, start: int, prev: Any, segs: Any) -> Any:
        rendered.append(len(messages) - start)
        return real_open(messages, start, prev, segs)

    monkeypatch.setattr(fmt, "_plain_open", spy)
    monkeypatch.setattr(fmt, "build", lambda *a, **k: pytest.fail("the general path was taken"))
    for k in range(12):
        msgs = [
            *msgs,
            {"role": "user", "content": f"question {k} " * 20},
            {"role": "assistant", "content": f"answer {k} " * 20},
        ]
        ids = enc.encode([*msgs, {"role": "user", "content": "and?"}])
        monkeypatch.undo()
        assert (
            ids
            == fmt.encode(
                [*msgs, {"role": "user", "content": "and?"}], tok, add_generation_prompt=True
            ).input_ids
        )
        monkeypatch.setattr(fmt, "_plain_open", spy)
        monkeypatch.setattr(fmt, "build", lambda *a, **k: pytest.fail("the general path was taken"))
        if k:
            # the previous call's last message ("and?") is replaced: it and the new turn are rendered,
            # and all the previous prompt's tokens but that message's and the generation prompt's reused
            assert rendered[-1] == 3, rendered
            assert enc.stats.reused_tokens >= prev_len - 12, (enc.stats, prev_len)
        prev_len = len(ids)
