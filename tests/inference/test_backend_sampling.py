"""The backends' sampling hooks on the real default model: a :class:`TokenConstraint` (masking,
advance, done), ``logit_bias``, OpenAI's presence/frequency penalties and the per-token logprobs,
on transformers (default run) and llama.cpp (slow). The same GGUF weights feed both backends, so the
slow half also checks that their log-probabilities agree."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from chatfmt.inference.backends.base import GenerationParams, GenerationResult, TokenConstraint

N_CTX = 512
PROMPT = "The capital of France is"


def _llama_cpp_or_skip(model: Path) -> None:
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')"
    )
    from chatfmt.inference.backends import probe_backend

    result = probe_backend("llama.cpp", model)
    if not result.ok:
        pytest.skip(f"{result.build} {result.what()} in a test run on this machine")


def _load(name: str, path: Path) -> Any:
    from chatfmt.inference import load_backend

    if name == "llama.cpp":
        _llama_cpp_or_skip(path)
        return load_backend(path, "llama.cpp", n_ctx=N_CTX)
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return load_backend(path, "transformers", n_ctx=N_CTX, n_threads=1)


@pytest.fixture(scope="module", params=["transformers", pytest.param("llama.cpp", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest, smollm2_path: Path) -> Any:
    b = _load(request.param, smollm2_path)
    yield b
    b.close()


class Sequence_:
    """Allows exactly ``ids`` in order (then, if ``then_stop`` is given, only that stop id); records
    every call."""

    def __init__(self, ids: Sequence[int], then_stop: int | None = None) -> None:
        self.ids = list(ids)
        self.then_stop = then_stop
        self.pos = 0
        self.masks = 0
        self.advanced: list[int] = []

    def mask_logits(self, logits: Any) -> None:
        self.masks += 1
        keep = self.ids[self.pos] if self.pos < len(self.ids) else self.then_stop
        assert keep is not None, "mask_logits after done()"
        value = float(logits[keep])
        logits[:] = -math.inf
        logits[keep] = value

    def advance(self, token_id: int) -> None:
        assert token_id == self.ids[self.pos], (token_id, self.ids[self.pos])
        self.advanced.append(token_id)
        self.pos += 1

    def done(self) -> bool:
        return self.then_stop is None and self.pos >= len(self.ids)


def run(backend: Any, ids: list[int], **kw: Any) -> tuple[list[int], GenerationResult]:
    res = GenerationResult()
    out = list(backend.generate(ids, GenerationParams(**kw), result=res))
    return out, res


def test_the_toy_constraint_is_a_token_constraint() -> None:
    assert isinstance(Sequence_([1]), TokenConstraint)


def test_a_constraint_forces_its_tokens_and_ends_with_stop(backend: Any) -> None:
    tok = backend.tokenizer
    prompt = tok.encode_text(PROMPT)
    target = tok.encode_text(" a purple banana split")
    c = Sequence_(target)
    out, res = run(backend, prompt, max_tokens=20, temperature=1.0, seed=5, constraint=c, top_logprobs=3)
    assert out == target
    assert res.finish_reason == "stop" and res.stop_id is None
    assert c.advanced == target
    assert c.masks == len(target)  # no step after done()
    # the only allowed token has all the probability; forbidden ones are not alternatives
    assert [e.token for e in res.logprobs] == target
    for e in res.logprobs:
        assert e.logprob == pytest.approx(0.0, abs=1e-6)
        assert e.top == ((e.token, e.logprob),)


def test_a_stop_id_ends_a_constraint_without_advance(backend: Any) -> None:
    tok = backend.tokenizer
    prompt = tok.encode_text(PROMPT)
    target = tok.encode_text(" Paris")
    eos = tok.eos_id
    assert eos is not None
    c = Sequence_(target, then_stop=eos)
    out, res = run(backend, prompt, max_tokens=20, temperature=0.0, constraint=c, stop_ids=frozenset({eos}))
    assert out == target
    assert res.finish_reason == "stop" and res.stop_id == eos
    assert c.advanced == target  # never the stop id


def test_greedy_logprobs(backend: Any) -> None:
    prompt = backend.tokenizer.encode_text(PROMPT)
    out, res = run(backend, prompt, max_tokens=6, temperature=0.0, top_logprobs=5)
    assert [e.token for e in res.logprobs] == out
    for e in res.logprobs:
        assert len(e.top) == 5
        assert e.top[0][0] == e.token and e.top[0][1] == pytest.approx(e.logprob)
        assert [lp for _, lp in e.top] == sorted((lp for _, lp in e.top), reverse=True)
        assert sum(math.exp(lp) for _, lp in e.top) <= 1 + 1e-6
    # logprobs=True alone: the chosen token, no alternatives; without it: nothing collected
    _, only = run(backend, prompt, max_tokens=3, temperature=0.0, logprobs=True)
    assert [e.top for e in only.logprobs] == [(), (), ()]
    assert [e.logprob for e in only.logprobs] == pytest.approx(
        [e.logprob for e in res.logprobs[:3]], abs=1e-4
    )
    _, none = run(backend, prompt, max_tokens=3, temperature=0.0)
    assert none.logprobs == []


def test_logit_bias_bans_and_forces(backend: Any) -> None:
    prompt = backend.tokenizer.encode_text(PROMPT)
    plain, _ = run(backend, prompt, max_tokens=5, temperature=0.0)
    banned, _ = run(backend, prompt, max_tokens=5, temperature=0.0, logit_bias={plain[0]: -100.0})
    assert plain[0] not in banned
    forced_id = next(t for t in range(1000, 2000) if t not in plain)
    forced, _ = run(backend, prompt, max_tokens=3, temperature=0.7, seed=1, logit_bias={forced_id: 100.0})
    assert forced == [forced_id] * 3


def _check_penalty_shift(
    plain: GenerationResult,
    pen: GenerationResult,
    out_plain: list[int],
    out_pen: list[int],
    presence: float,
    frequency: float,
) -> int:
    """At every step where both runs have the same context, the penalized scores are the plain ones
    minus ``presence`` for each token generated so far and ``frequency`` per occurrence: compared as
    logprob differences to a reference token that was not generated (softmax cancels out).
    Returns how many penalized tokens were checked."""
    checked = 0
    k = 0
    while k < min(len(out_plain), len(out_pen)):
        counts = Counter(out_plain[:k])
        a = dict(plain.logprobs[k].top)
        b = dict(pen.logprobs[k].top)
        common = [t for t in a if t in b]
        refs = [t for t in common if t not in counts]
        assert refs, f"step {k}: no unpenalized token among both top lists"
        y = refs[0]
        for x in common:
            want = -(presence * (counts[x] > 0) + frequency * counts[x])
            got = (b[x] - b[y]) - (a[x] - a[y])
            assert got == pytest.approx(want, abs=2e-3), (k, x, counts[x])
            checked += counts[x] > 0
        if out_plain[k] != out_pen[k]:
            break
        k += 1
    return checked


def test_penalties_follow_openai_semantics(backend: Any) -> None:
    """presence_penalty subtracts once from every generated token's score, frequency_penalty once
    per occurrence; the prompt's tokens do not count."""
    tok = backend.tokenizer
    prompt = tok.encode_text("Monday\nTuesday\nMonday\nTuesday\nMonday\nTuesday\n")
    plain, res = run(backend, prompt, max_tokens=16, temperature=0.0, top_logprobs=20)
    pen, pres = run(backend, prompt, max_tokens=16, temperature=0.0, presence_penalty=1.5, top_logprobs=20)
    assert _check_penalty_shift(res, pres, plain, pen, 1.5, 0.0) > 0
    assert len(set(pen)) > len(set(plain))  # the repetition loop is broken
    freq, fres = run(backend, prompt, max_tokens=16, temperature=0.0, frequency_penalty=0.7, top_logprobs=20)
    assert _check_penalty_shift(res, fres, plain, freq, 0.0, 0.7) > 0
    assert freq != plain


def test_params_validate() -> None:
    for bad in (
        {"min_p": 1.5},
        {"presence_penalty": 2.5},
        {"top_logprobs": 21},
        {"logit_bias": {-1: 1.0}},
        {"logit_bias": {5: 101.0}},
    ):
        with pytest.raises(ValueError):
            GenerationParams(**bad)
    assert GenerationParams(top_logprobs=2).wants_logprobs


@pytest.mark.slow
def test_both_backends_give_the_same_logprobs(smollm2_path: Path) -> None:
    """The same Q4_1 weights (transformers dequantizes them): the first step's log-probabilities
    agree."""
    tf = _load("transformers", smollm2_path)
    ll = _load("llama.cpp", smollm2_path)
    try:
        prompt = tf.tokenizer.encode_text(PROMPT)
        _, a = run(tf, prompt, max_tokens=1, temperature=0.0, top_logprobs=5)
        _, b = run(ll, prompt, max_tokens=1, temperature=0.0, top_logprobs=5)
        ta, tb = dict(a.logprobs[0].top), dict(b.logprobs[0].top)
        # the most likely tokens in the same order (further down, near-equal values may swap)
        assert list(ta)[:3] == list(tb)[:3]
        common = set(ta) & set(tb)
        assert len(common) >= 4
        # llama.cpp multiplies Q4_1 weights by 8-bit-quantized activations, transformers dequantizes
        # to float32: the values differ by a few percent, more for unlikely tokens
        for t in common:
            assert ta[t] == pytest.approx(tb[t], abs=0.05 * (1 + abs(tb[t]))), t
    finally:
        tf.close()
        ll.close()


def test_chat_send_takes_the_sampling_params_and_exposes_logprobs(backend: Any) -> None:
    from chatfmt.inference import Chat

    chat = Chat(backend=backend)
    reply = chat.send(
        "What is the capital of France?", temperature=0.0, max_new_tokens=6, logprobs=True, top_logprobs=2
    )
    generated = [t for t in reply.completion_ids if t not in chat._params({}).stop_ids]
    assert [e.token for e in reply.logprobs] == generated
    assert all(len(e.top) == 2 and e.top[0][0] == e.token for e in reply.logprobs)
    chat.reset()
    banned = chat.send(
        "What is the capital of France?",
        temperature=0.0,
        max_new_tokens=6,
        logit_bias={generated[0]: -100.0},
        repetition_penalty=1.0,
    )
    assert banned.completion_ids[0] != generated[0]
