"""``GET /metrics``: real requests through the official ``openai`` client to the real default model
(llama.cpp backend, in-process app on loopback), then the exposition parsed with prometheus_client's
own text parser; the counts and token sums equal what the client sent and was told."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatfmt.server import create_app

from .conftest import get_json, uvicorn_thread

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

KEY = "metrics-key"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
QUESTIONS = ["Say hello.", "What is 2 + 2?", "Name a colour."]


@pytest.fixture(scope="module")
def engine(smollm2_gguf) -> Iterator[Any]:
    pytest.importorskip("llama_cpp")
    from chatfmt.inference.backends import load_backend
    from chatfmt.server.engines import LocalEngine

    be = load_backend(smollm2_gguf, "llama.cpp", threads=1, n_ctx=1024)
    try:
        yield LocalEngine(be)
    finally:
        be.close()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}, parsed by prometheus_client."""
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_the_openai_client_sent(engine):
    app = create_app(engine, api_key=KEY)
    with uvicorn_thread(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
        model = client.models.list().data[0].id
        prompt = completion = cached = 0
        for q in QUESTIONS:
            r = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": q}], max_tokens=5, temperature=0
            )
            prompt += r.usage.prompt_tokens
            completion += r.usage.completion_tokens
            cached += r.usage.prompt_tokens_details.cached_tokens
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Tell me a joke."}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [c.usage for c in stream if c.usage is not None]
        assert len(usage) == 1
        prompt += usage[0].prompt_tokens
        completion += usage[0].completion_tokens
        cached += usage[0].prompt_tokens_details.cached_tokens
        text = client.completions.create(model=model, prompt="The sky is", max_tokens=4, temperature=0)
        # errors: an unknown model (404), a context overflow (400), a wrong key (401)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=10**6
            )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
        assert get_json(base, "/no/such/route")[0] == 404
        m = scrape(base)

    chat_ok = len(QUESTIONS) + 1
    assert value(m, "chatfmt_requests_total", route=CHAT, method="POST", status="200") == chat_ok
    assert value(m, "chatfmt_requests_total", route=CHAT, method="POST", status="404") == 1
    assert value(m, "chatfmt_requests_total", route=CHAT, method="POST", status="400") == 1
    assert value(m, "chatfmt_requests_total", route=COMPLETIONS, method="POST", status="200") == 1
    assert value(m, "chatfmt_requests_total", route="/v1/models", method="GET", status="200") == 1
    assert value(m, "chatfmt_requests_total", route="/v1/models", method="GET", status="401") == 1
    assert value(m, "chatfmt_requests_total", route="other", method="GET", status="404") == 1
    total = sum(v for (name, _), v in m.items() if name == "chatfmt_requests_total")
    assert total == chat_ok + 2 + 1 + 2 + 1  # nothing else was counted (the scrape counts after it answers)

    # latency: one observation per request, per route
    assert value(m, "chatfmt_request_duration_seconds_count", route=CHAT) == chat_ok + 2
    assert value(m, "chatfmt_request_duration_seconds_count", route=COMPLETIONS) == 1
    assert value(m, "chatfmt_request_duration_seconds_sum", route=CHAT) > 0
    # the first token of every generation that ran (none for the refused ones)
    assert value(m, "chatfmt_time_to_first_token_seconds_count", route=CHAT) == chat_ok
    assert value(m, "chatfmt_time_to_first_token_seconds_count", route=COMPLETIONS) == 1
    # the format layer: every chat request whose prompt was rendered and encoded
    assert (
        value(m, "chatfmt_format_seconds_count", route=CHAT) == chat_ok
    )  # not the 404 (before) nor the 400 (during)
    assert value(m, "chatfmt_format_seconds_count", route=COMPLETIONS) == 1
    # tokens: exactly the usage the client was told
    assert value(m, "chatfmt_prompt_tokens_total", route=CHAT) == prompt
    assert value(m, "chatfmt_completion_tokens_total", route=CHAT) == completion
    assert value(m, "chatfmt_cached_prompt_tokens_total", route=CHAT) == cached
    assert value(m, "chatfmt_prompt_tokens_total", route=COMPLETIONS) == text.usage.prompt_tokens
    assert value(m, "chatfmt_completion_tokens_total", route=COMPLETIONS) == text.usage.completion_tokens
    # nothing queued or running once every response is in
    assert value(m, "chatfmt_queue_waiting") == 0
    assert value(m, "chatfmt_queue_running") == 0
    # the histogram buckets are cumulative and end at the count
    inf = value(m, "chatfmt_request_duration_seconds_bucket", route=CHAT, le="+Inf")
    assert inf == chat_ok + 2


def test_two_apps_in_one_process_count_apart(engine):
    first, second = create_app(engine), create_app(engine)
    with uvicorn_thread(first) as a, uvicorn_thread(second) as b:
        for _ in range(2):
            assert get_json(a, "/health")[0] == 200
        assert get_json(b, "/health")[0] == 200
        ma, mb = scrape(a), scrape(b)
    assert value(ma, "chatfmt_requests_total", route="/health", method="GET", status="200") == 2
    assert value(mb, "chatfmt_requests_total", route="/health", method="GET", status="200") == 1
