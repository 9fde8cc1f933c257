"""Sampling parameters, logprobs and ``n`` through the official ``openai`` client against ``chatfmt
serve`` with the real default model (transformers backend; llama.cpp in the slow half).

The values are checked against what must hold whatever the model says: a greedy token is the most
likely one, probabilities sum to at most 1, the log-probabilities equal an independent forward pass
of the same weights, a token's bytes spell the text, ``min_p=1`` or ``top_k=1`` sampling is greedy
decoding, a banned token never appears, a forced one always does."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .conftest import ServerProcess, post_json

KEY = "test-key"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LIST_PROMPT = [{"role": "user", "content": "List the days of the week, one per line, several times."}]


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)


def model_of(base: str) -> str:
    return client(base).models.list().data[0].id


def completion_ids(base: str, messages: list[dict[str, Any]], **kw: Any) -> tuple[list[int], dict[str, Any]]:
    """The prompt ids of ``messages`` (``/v1/render``) and a raw completion of them with its token ids."""
    status, rendered = post_json(
        base, "/v1/render", {"messages": messages}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert status == 200, rendered
    extra = {"return_token_ids": True, **kw.pop("extra_body", {})}
    r = client(base).completions.create(
        model=model_of(base), prompt=rendered["prompt_token_ids"], extra_body=extra, **kw
    )
    return rendered["prompt_token_ids"], r.model_dump()


# -- chat logprobs ---------------------------------------------------------------------------------


def check_chat_logprobs(content: list[Any], text: str, k: int, *, greedy: bool) -> None:
    assert content, "no logprobs came back"
    data = b"".join(bytes(e.bytes) for e in content)
    assert data.decode("utf-8") == text  # the tokens' bytes spell the answer exactly
    for e in content:
        assert e.logprob <= 0 and math.isfinite(e.logprob)
        assert len(e.top_logprobs) == k
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert sum(math.exp(x) for x in tops) <= 1 + 1e-6
        for t in e.top_logprobs:
            assert t.token == bytes(t.bytes).decode("utf-8", "replace")
        if greedy:  # the chosen token is the most likely one
            assert e.top_logprobs[0].token == e.token
            assert e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-9)
        else:  # the sampled token is among the alternatives or less likely than all of them
            assert e.token in [t.token for t in e.top_logprobs] or e.logprob <= tops[-1] + 1e-9


def test_chat_logprobs_shape_and_values(real_server):
    c = client(real_server.base)
    r = c.chat.completions.create(
        model=model_of(real_server.base),
        messages=QUESTION,
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    ch = r.choices[0]
    check_chat_logprobs(ch.logprobs.content, ch.message.content, 5, greedy=True)
    if ch.finish_reason == "length":
        assert len(ch.logprobs.content) == r.usage.completion_tokens == 8


def test_chat_logprobs_streamed_equal_the_plain_ones(real_server):
    c = client(real_server.base)
    body = dict(
        model=model_of(real_server.base),
        messages=QUESTION,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    plain = c.chat.completions.create(**body).choices[0]
    streamed: list[Any] = []
    text = ""
    for chunk in c.chat.completions.create(stream=True, **body):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.logprobs is not None:
                streamed.extend(ch.logprobs.content or [])
    assert text == plain.message.content
    assert [(e.token, e.bytes) for e in streamed] == [(e.token, e.bytes) for e in plain.logprobs.content]
    for a, b in zip(streamed, plain.logprobs.content):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_sampled_logprobs_are_consistent(real_server):
    c = client(real_server.base)
    r = c.chat.completions.create(
        model=model_of(real_server.base),
        messages=QUESTION,
        max_tokens=8,
        temperature=1.0,
        seed=3,
        logprobs=True,
        top_logprobs=4,
    )
    check_chat_logprobs(r.choices[0].logprobs.content, r.choices[0].message.content, 4, greedy=False)


@pytest.mark.slow  # loads the model a second time, in the test process
def test_logprobs_equal_an_independent_forward_pass(real_server, smollm2_gguf):
    """The completion's token_logprobs are log_softmax of the model's logits at each position,
    computed here by transformers on the same GGUF without chatfmt."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    prompt, r = completion_ids(real_server.base, QUESTION, max_tokens=5, temperature=0, logprobs=3)
    choice = r["choices"][0]
    gen = choice["token_ids"]
    assert len(gen) == len(choice["logprobs"]["token_logprobs"]) >= 1
    path = Path(smollm2_gguf)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + gen])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    for i, (tid, got) in enumerate(zip(gen, choice["logprobs"]["token_logprobs"])):
        row = logp[len(prompt) - 1 + i]
        assert got == pytest.approx(float(row[tid]), abs=2e-3), i
        assert int(row.argmax()) == tid  # greedy


# -- completions logprobs --------------------------------------------------------------------------


def test_completion_logprobs_shape(real_server):
    c = client(real_server.base)
    r = c.completions.create(
        model=model_of(real_server.base),
        prompt="The capital of France is",
        max_tokens=6,
        temperature=0,
        logprobs=3,
    )
    ch = r.choices[0]
    lp = ch.logprobs
    assert (
        len(lp.tokens)
        == len(lp.token_logprobs)
        == len(lp.top_logprobs)
        == len(lp.text_offset)
        == r.usage.completion_tokens
    )
    assert "".join(lp.tokens) == ch.text
    assert lp.text_offset[0] == 0
    for i in range(1, len(lp.tokens)):
        assert lp.text_offset[i] == lp.text_offset[i - 1] + len(lp.tokens[i - 1])
    for tok, val, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 3 <= len(top) <= 4 and top[tok] == val  # the sampled token is always there
        assert val == max(top.values())  # greedy
        assert sum(math.exp(x) for x in top.values()) <= 1 + 1e-6


def test_completion_logprobs_streamed(real_server):
    c = client(real_server.base)
    kw = dict(
        model=model_of(real_server.base),
        prompt="The capital of France is",
        max_tokens=5,
        temperature=0,
        logprobs=1,
    )
    plain = c.completions.create(**kw).choices[0].logprobs
    tokens: list[str] = []
    offsets: list[int] = []
    for chunk in c.completions.create(stream=True, **kw):
        for ch in chunk.choices:
            if ch.logprobs is not None:
                tokens += ch.logprobs.tokens
                offsets += ch.logprobs.text_offset
    assert tokens == plain.tokens and offsets == plain.text_offset


# -- n ---------------------------------------------------------------------------------------------


def test_n_choices_are_distinct_reproducible_and_counted(real_server):
    c = client(real_server.base)
    body = dict(
        model=model_of(real_server.base),
        messages=QUESTION,
        max_tokens=8,
        temperature=1.2,
        seed=11,
        n=3,
        logprobs=True,
    )
    r = c.chat.completions.create(**body)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    texts = [ch.message.content for ch in r.choices]
    assert len(set(texts)) >= 2, texts
    assert r.usage.completion_tokens == sum(len(ch.logprobs.content) for ch in r.choices)
    again = c.chat.completions.create(**body)
    assert [ch.message.content for ch in again.choices] == texts  # seed + index: reproducible
    # choice i is the single-choice request with seed + i
    single = c.chat.completions.create(**{**body, "n": 1, "seed": 12})
    assert single.choices[0].message.content == texts[1]


def test_streaming_n2_indexes(real_server):
    c = client(real_server.base)
    body = dict(
        model=model_of(real_server.base), messages=QUESTION, max_tokens=6, temperature=1.0, seed=4, n=2
    )
    plain = c.chat.completions.create(**body)
    texts = {0: "", 1: ""}
    roles: Counter[int] = Counter()
    finishes: dict[int, str] = {}
    usage = None
    for chunk in c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **body):
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            assert ch.index in (0, 1)
            assert ch.index not in finishes  # nothing after a choice's finish chunk
            if ch.delta.role:
                roles[ch.index] += 1
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert roles == {0: 1, 1: 1}
    assert set(finishes) == {0, 1}
    assert [texts[0], texts[1]] == [ch.message.content for ch in plain.choices]
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens


def test_completions_n(real_server):
    c = client(real_server.base)
    r = c.completions.create(
        model=model_of(real_server.base),
        prompt="Once upon a time",
        max_tokens=6,
        temperature=1.0,
        seed=2,
        n=2,
    )
    assert [ch.index for ch in r.choices] == [0, 1]
    assert r.choices[0].text != r.choices[1].text


# -- sampling parameters ---------------------------------------------------------------------------


def test_logit_bias_bans_and_forces_a_token(real_server):
    _, plain = completion_ids(real_server.base, QUESTION, max_tokens=6, temperature=0)
    first = plain["choices"][0]["token_ids"][0]
    _, banned = completion_ids(
        real_server.base, QUESTION, max_tokens=6, temperature=0, logit_bias={str(first): -100}
    )
    assert first not in banned["choices"][0]["token_ids"]
    # a token the greedy answer does not hold, forced at every step
    forced_id = next(t for t in range(1000, 2000) if t not in plain["choices"][0]["token_ids"])
    _, forced = completion_ids(
        real_server.base, QUESTION, max_tokens=4, temperature=0, logit_bias={str(forced_id): 100}
    )
    assert forced["choices"][0]["token_ids"] == [forced_id] * 4


def repeats(ids: list[int]) -> int:
    return sum(n - 1 for n in Counter(ids).values())


def test_presence_and_frequency_penalties_change_the_output(real_server):
    _, plain = completion_ids(real_server.base, LIST_PROMPT, max_tokens=30, temperature=0)
    ids = plain["choices"][0]["token_ids"]
    assert repeats(ids) > 0, "the prompt should make the model repeat itself"
    for field in ("presence_penalty", "frequency_penalty"):
        _, pen = completion_ids(real_server.base, LIST_PROMPT, max_tokens=30, temperature=0, **{field: 2.0})
        pids = pen["choices"][0]["token_ids"]
        assert pids != ids, field
        assert repeats(pids) < repeats(ids), field


def test_min_p_and_top_k_reach_the_sampler(real_server):
    """min_p=1 (only the most likely token survives) and top_k=1 turn sampling at temperature 1.5
    into greedy decoding; without them the same seed samples something else."""
    c = client(real_server.base)
    kw = dict(model=model_of(real_server.base), messages=LIST_PROMPT, max_tokens=12)
    greedy = c.chat.completions.create(temperature=0, **kw).choices[0].message.content
    hot = [
        c.chat.completions.create(temperature=1.5, seed=s, **kw).choices[0].message.content for s in (1, 2)
    ]
    assert any(h != greedy for h in hot)
    for s in (1, 2):
        assert (
            c.chat.completions.create(temperature=1.5, seed=s, extra_body={"min_p": 1.0}, **kw)
            .choices[0]
            .message.content
            == greedy
        )
        assert (
            c.chat.completions.create(temperature=1.5, seed=s, extra_body={"top_k": 1}, **kw)
            .choices[0]
            .message.content
            == greedy
        )


def test_repetition_penalty_changes_the_output(real_server):
    _, plain = completion_ids(real_server.base, LIST_PROMPT, max_tokens=30, temperature=0)
    _, pen = completion_ids(
        real_server.base, LIST_PROMPT, max_tokens=30, temperature=0, extra_body={"repetition_penalty": 1.8}
    )
    assert pen["choices"][0]["token_ids"] != plain["choices"][0]["token_ids"]


# -- the field audit -------------------------------------------------------------------------------

REFUSED_CHAT = [
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"reasoning_effort": "low"}, "reasoning_effort"),
    ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"n": 17}, "n"),
    ({"logit_bias": {"99999999": 5}}, "logit_bias"),
    ({"logit_bias": {"12": 101}}, "logit_bias"),
    ({"logit_bias": {"a": 1}}, "logit_bias"),
    ({"min_p": 1.5}, "min_p"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"temprature": 0.5}, "temprature"),  # a misspelt field is not silently ignored
    ({"best_of": 2}, "best_of"),  # a completions field
]


@pytest.mark.parametrize(("extra", "param"), REFUSED_CHAT, ids=[p for _, p in REFUSED_CHAT])
def test_refused_chat_fields_get_400_naming_them(real_server, extra, param):
    c = client(real_server.base)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model=model_of(real_server.base), messages=QUESTION, max_tokens=2, extra_body=extra
        )
    assert e.value.body["param"] == param, e.value.body
    assert param in e.value.body["message"]


REFUSED_COMPLETIONS = [
    ({"echo": True}, "echo"),
    ({"suffix": "x"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"logprobs": 21}, "logprobs"),
    ({"metadata": {"a": "b"}}, "metadata"),  # a chat field: not part of the completions API
    ({"logit_bias": {"-1": 1}}, "logit_bias"),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED_COMPLETIONS, ids=[p for _, p in REFUSED_COMPLETIONS])
def test_refused_completion_fields_get_400_naming_them(real_server, extra, param):
    c = client(real_server.base)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=model_of(real_server.base), prompt="Hi", max_tokens=2, extra_body=extra)
    assert e.value.body["param"] == param, e.value.body


def test_no_op_fields_are_accepted_and_change_nothing(real_server):
    c = client(real_server.base)
    kw = dict(model=model_of(real_server.base), messages=QUESTION, max_tokens=6, temperature=0)
    plain = c.chat.completions.create(**kw).choices[0].message.content
    with_noops = c.chat.completions.create(
        user="u-1",
        metadata={"team": "a"},
        store=False,
        service_tier="auto",
        parallel_tool_calls=True,
        extra_body={"prompt_cache_key": "k", "safety_identifier": "s", "modalities": ["text"]},
        **kw,
    )
    assert with_noops.choices[0].message.content == plain


# -- proxy mode ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(real_server: ServerProcess, smollm2_gguf: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        [
            "--upstream", real_server.base, "--upstream-kind", "openai-completions", "--upstream-api-key", KEY,
            "--upstream-model", model_of(real_server.base), "--tokenizer", str(smollm2_gguf), "--chat-format", "qwen2.5",
        ]
    )  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


def test_proxy_passes_penalties_and_bias_and_refuses_logprobs(real_server, proxy):
    direct = client(real_server.base)
    via = openai.OpenAI(base_url=proxy.base + "/v1", api_key="none", max_retries=0)
    kw: dict[str, Any] = dict(messages=LIST_PROMPT, max_tokens=12, temperature=0, presence_penalty=2.0)
    want = direct.chat.completions.create(model=model_of(real_server.base), **kw).choices[0].message.content
    got = via.chat.completions.create(model=model_of(proxy.base), **kw).choices[0].message.content
    assert got == want
    with pytest.raises(openai.BadRequestError) as e:
        via.chat.completions.create(
            model=model_of(proxy.base), messages=QUESTION, max_tokens=2, logprobs=True
        )
    assert e.value.body["param"] == "logprobs"


# -- llama.cpp -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf: Path) -> Iterator[ServerProcess]:
    pytest.importorskip("llama_cpp")
    srv = ServerProcess(
        ["--model", str(smollm2_gguf), "--backend", "llama.cpp", "--chat-format", "qwen2.5", "--api-key", KEY]
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_llama_cpp_logprobs_n_and_bias(llama_server):
    base = llama_server.base
    c = client(base)
    r = c.chat.completions.create(
        model=model_of(base), messages=QUESTION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5
    )
    check_chat_logprobs(r.choices[0].logprobs.content, r.choices[0].message.content, 5, greedy=True)
    body = dict(model=model_of(base), messages=QUESTION, max_tokens=8, temperature=1.2, seed=11, n=3)
    texts = [ch.message.content for ch in c.chat.completions.create(**body).choices]
    assert len(set(texts)) >= 2
    assert [ch.message.content for ch in c.chat.completions.create(**body).choices] == texts
    _, plain = completion_ids(base, QUESTION, max_tokens=6, temperature=0)
    first = plain["choices"][0]["token_ids"][0]
    _, banned = completion_ids(base, QUESTION, max_tokens=6, temperature=0, logit_bias={str(first): -100})
    assert first not in banned["choices"][0]["token_ids"]
    _, pen = completion_ids(base, LIST_PROMPT, max_tokens=30, temperature=0, presence_penalty=2.0)
    _, unpen = completion_ids(base, LIST_PROMPT, max_tokens=30, temperature=0)
    assert repeats(pen["choices"][0]["token_ids"]) < repeats(unpen["choices"][0]["token_ids"])
    kw = dict(model=model_of(base), messages=LIST_PROMPT, max_tokens=12)
    greedy = c.chat.completions.create(temperature=0, **kw).choices[0].message.content
    assert (
        c.chat.completions.create(temperature=1.5, seed=1, extra_body={"min_p": 1.0}, **kw)
        .choices[0]
        .message.content
        == greedy
    )
