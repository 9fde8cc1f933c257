"""The whole-text path's labels and message spans (``encode_rendered_many`` / ``encode_batch``) against
two references: the run-by-run encoding, and the definition itself, applied token by token to the
tokenizer's own offsets (a token is trained when any of its characters comes from a trained segment;
a message's span runs from its first to its last token holding one of its characters).

Conversations are long and many-turned (the range lookups search from the previous one, so a bug in
that search shows on long texts), in scripts whose characters split into several byte tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.encode import IGNORE_INDEX, _labels_from_encoding, _spans, encode_rendered, encode_rendered_many

REPO = Path(__file__).resolve().parents[1]
TD = REPO.parent / "shared" / "testdata"


@pytest.fixture(scope="module")
def qwen_tok(shared_tokenizer: Any) -> Any:
    path = TD / "qwen2.5"
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives in <repo>/../shared/testdata)")
    return shared_tokenizer(path)


def by_definition(rendered: Any, tok: Any) -> tuple[list[int], list[int], dict[int, tuple[int, int]]]:
    """Ids, labels and spans from the definition, per token and per character, on the offsets of
    one whole-text encoding (no range search, no grouping)."""
    text = rendered.text
    trained = [False] * len(text)
    owner: list[int | None] = [None] * len(text)
    pos = 0
    for seg in rendered.segments:
        for k in range(pos, pos + len(seg.text)):
            trained[k] = seg.trained
            owner[k] = seg.message
        pos += len(seg.text)
    enc = tok.whole_text_backend().encode(text, add_special_tokens=False)
    labels, spans = [], {}
    for t, (s, e) in enumerate(enc.offsets):
        labels.append(enc.ids[t] if any(trained[s:e]) else IGNORE_INDEX)
        for m in {owner[k] for k in range(s, e)} - {None}:
            a, _ = spans.get(m, (t, t))
            spans[m] = (a, t + 1)
    return enc.ids, labels, spans


# text that splits into byte tokens (CJK, emoji with joiners, combining marks), spaces and newlines
PIECES = [
    "hello",
    " world",
    "  ",
    "\n",
    "\n\n",
    "你好",
    "，世界。",
    "🦙",
    "😶‍🌫️",
    "é",
    "e\u0301",
    "x" * 30,
    " 123",
    "\t",
    ".",
    "```py\nx = 1\n```",
]
content = st.lists(st.sampled_from(PIECES), min_size=0, max_size=25).map("".join)


@pytest.mark.parametrize("lookup", ["char_to_token", "galloping"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(content, min_size=1, max_size=24), st.booleans(), st.sampled_from(["qwen2.5", "chatml"]))
def test_whole_text_labels_and_spans_equal_run_by_run_and_the_definition(
    qwen_tok: Any, monkeypatch: pytest.MonkeyPatch, lookup: str, texts: list[str], system: bool, name: str
) -> None:
    monkeypatch.setattr(chatfmt.encode, "LINEAR_LOOKUP", 10**9 if lookup == "char_to_token" else -1)
    fmt = chatfmt.load_format(name)
    roles = ["user", "assistant"]
    msgs = ([{"role": "system", "content": "Be brief. 简短。"}] if system else []) + [
        {"role": roles[k % 2], "content": t} for k, t in enumerate(texts)
    ]
    rendered = fmt.render_segments(msgs)
    fast = encode_rendered_many([rendered], qwen_tok)[0]
    # the whole-text path itself, not a fallback to run by run
    whole = _labels_from_encoding(
        qwen_tok.whole_text_backend().encode(rendered.text, add_special_tokens=False), rendered
    )
    assert whole == fast
    ids, labels, owners = encode_rendered(rendered, qwen_tok)
    assert fast == (ids, labels, _spans(owners))
    assert fast == by_definition(rendered, qwen_tok)


def test_long_many_turn_conversations_in_one_batch(qwen_tok: Any) -> None:
    """A batch of conversations up to 120 turns and ~9 k tokens, each labelled as the definition
    says; ``encode_batch`` gives the same ids and labels as encoding each alone, run by run."""
    fmt = chatfmt.load_format("qwen2.5")
    convs = []
    for n in (1, 7, 40, 120):
        msgs = []
        for k in range(n):
            body = PIECES[k % len(PIECES)] * (1 + (k * 7) % 23) + f" turn {k} 第{k}轮"
            msgs += [{"role": "user", "content": body}, {"role": "assistant", "content": body[::-1]}]
        convs.append(msgs)
    batch = chatfmt.encode_batch(fmt, convs, qwen_tok)
    for conv, enc in zip(convs, batch):
        rendered = fmt.render_segments(conv)
        ids, labels, spans = by_definition(rendered, qwen_tok)
        assert (enc.input_ids, enc.labels, enc.message_spans) == (ids, labels, spans)
        r_ids, r_labels, owners = encode_rendered(rendered, qwen_tok)
        assert (r_ids, r_labels, _spans(owners)) == (ids, labels, spans)
    assert max(len(e.input_ids) for e in batch) > 5_000


# hand-built renders: any split of the text into segments, any message index (or none), any trained
# flag, control tokens between them: range edges fall inside BPE merges and inside multi-byte
# characters' byte tokens, and ranges of no message sit between others
segment = st.tuples(
    st.one_of(content.filter(bool), st.sampled_from(["<|im_start|>", "<|im_end|>", "<|im_end|>\n"])),
    st.sampled_from([None, 0, 1, 2, 3]),
    st.booleans(),
)


@pytest.mark.parametrize("lookup", ["char_to_token", "galloping"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(segment, min_size=1, max_size=40))
def test_any_segmentation_is_labelled_as_the_definition_says(
    qwen_tok: Any, monkeypatch: pytest.MonkeyPatch, lookup: str, parts: list[tuple[str, int | None, bool]]
) -> None:
    """Both range searches (``char_to_token`` up to ``LINEAR_LOOKUP`` tokens, galloping beyond)."""
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    monkeypatch.setattr(chatfmt.encode, "LINEAR_LOOKUP", 10**9 if lookup == "char_to_token" else -1)

    rendered = Rendered(
        [
            Segment(text, CONTROL if text.startswith("<|") else CONTENT, m, trained)
            for text, m, trained in parts
        ]
    )
    want = by_definition(rendered, qwen_tok)
    enc = qwen_tok.whole_text_backend().encode(rendered.text, add_special_tokens=False)
    assert _labels_from_encoding(enc, rendered) == want
    assert encode_rendered_many([rendered], qwen_tok)[0] == want


# -- encode_batch in overlapping chunks -------------------------------------------------------------


def _conversations(n: int) -> list[list[dict[str, str]]]:
    out = []
    for k in range(n):
        turns = 1 + k % 6
        msgs = [{"role": "system", "content": f"system {k}"}] if k % 3 == 0 else []
        for t in range(turns):
            msgs += [
                {"role": "user", "content": PIECES[(k + t) % len(PIECES)] * (1 + t)},
                {"role": "assistant", "content": f"reply {k}.{t} 回答"},
            ]
        out.append(msgs)
    return out


def test_encode_batch_in_chunks_equals_one_call(qwen_tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many conversations go through encode_batch in overlapping chunks (threads); every result
    equals the conversation encoded on its own, in order, whatever the train_on mode."""
    import chatfmt.encode as em

    monkeypatch.setattr(em, "PIPELINE_CHUNK", 5)
    seen: list[int] = []
    chunk = em._encode_chunk
    monkeypatch.setattr(
        em, "_encode_chunk", lambda fmt, convs, *a: (seen.append(len(convs)), chunk(fmt, convs, *a))[1]
    )
    fmt = chatfmt.load_format("qwen2.5")
    convs = _conversations(37)
    for train_on in ("all_assistant", "last_assistant"):
        seen.clear()
        batch = chatfmt.encode_batch(fmt, convs, qwen_tok, train_on=train_on)
        assert seen == [5] * 7 + [2]  # it did run in chunks
        for conv, enc in zip(convs, batch, strict=True):
            alone = em.encode(fmt, conv, qwen_tok, train_on=train_on)
            assert (enc.input_ids, enc.labels, enc.message_spans) == (
                alone.input_ids,
                alone.labels,
                alone.message_spans,
            )
    with em.sequential():
        seen.clear()
        chatfmt.encode_batch(fmt, convs, qwen_tok)
        assert seen == [37]


def test_encode_batch_in_chunks_raises_the_first_error_in_order(
    qwen_tok: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chatfmt.encode as em
    from chatfmt.errors import ValidationError

    monkeypatch.setattr(em, "PIPELINE_CHUNK", 4)
    fmt = chatfmt.load_format("qwen2.5")
    convs = _conversations(30)
    convs[9] = [{"role": "user", "content": 9}]  # not text: refused
    convs[25] = [{"role": "wizard", "content": "x"}]
    with pytest.raises(ValidationError) as err:
        chatfmt.encode_batch(fmt, convs, qwen_tok)
    with pytest.raises(ValidationError) as alone:
        em.encode(fmt, convs[9], qwen_tok)
    assert str(err.value) == str(alone.value)
