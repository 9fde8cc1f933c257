"""The official ``openai`` client (sync, async, streaming, tools) against ``chatfmt serve`` running
the real default model in a subprocess on loopback; the proxy mode in front of it; a bounded load
test (slow)."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from .conftest import ServerProcess, get_json, post_json

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]


def model_id(base: str) -> str:
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY).models.list().data[0].id


def test_sync_plain_and_streamed_answers_agree(real_server):
    c = openai.OpenAI(base_url=real_server.base + "/v1", api_key=KEY)
    mid = model_id(real_server.base)
    r = c.chat.completions.create(model=mid, messages=QUESTION, max_tokens=6, temperature=0)
    text = r.choices[0].message.content
    assert text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 10
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(model=mid, messages=QUESTION, max_tokens=6, temperature=0, stream=True)
        if ch.choices
    )
    assert streamed == text  # greedy: the same tokens, streamed or not


def test_async_client_and_wrong_key(real_server):
    async def run() -> str:
        c = openai.AsyncOpenAI(base_url=real_server.base + "/v1", api_key=KEY)
        r = await c.chat.completions.create(model=model_id(real_server.base), messages=QUESTION, max_tokens=3, temperature=0)
        return r.choices[0].message.content

    assert asyncio.run(run())
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=real_server.base + "/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.slow
def test_tool_request_gets_a_well_formed_answer_from_the_real_model(real_server):
    """SmolLM2-135M rarely emits a call; whatever it does, the answer is a valid OpenAI message and a
    call, if any, names the forced tool with JSON arguments (see the scripted tests for exact shapes)."""
    c = openai.OpenAI(base_url=real_server.base + "/v1", api_key=KEY)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = c.chat.completions.create(
        model=model_id(real_server.base),
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=16,
        temperature=0,
    )
    ch = r.choices[0]
    if ch.message.tool_calls:
        assert ch.finish_reason == "tool_calls"
        assert all(tc.function.name == "get_weather" and isinstance(json.loads(tc.function.arguments), dict) for tc in ch.message.tool_calls)
    else:
        assert ch.finish_reason in ("stop", "length") and ch.message.content is not None


def test_render_and_raw_completion_continue_the_same_ids(real_server):
    mid = model_id(real_server.base)
    status, rendered = post_json(real_server.base, "/v1/render", {"messages": QUESTION}, headers=AUTH)
    assert status == 200 and rendered["prompt"].endswith("<|im_start|>assistant\n")
    status, tok = post_json(real_server.base, "/v1/tokenize", {"prompt": rendered["prompt"]}, headers=AUTH)
    assert tok["tokens"] == rendered["prompt_token_ids"]
    status, chat = post_json(real_server.base, "/v1/chat/completions", {"model": mid, "messages": QUESTION, "max_tokens": 5, "temperature": 0}, headers=AUTH)
    status, raw = post_json(real_server.base, "/v1/completions", {"model": mid, "prompt": rendered["prompt_token_ids"], "max_tokens": 5, "temperature": 0}, headers=AUTH)
    assert status == 200 and raw["choices"][0]["text"] == chat["choices"][0]["message"]["content"]


def test_proxy_to_chatfmt_completions_gives_the_direct_answer(real_server, smollm2_gguf):
    """chatfmt in proxy mode renders + encodes, sends ids to the real server's /v1/completions, parses
    what comes back: greedy, the answer is the one the server gives directly."""
    proxy = ServerProcess(
        [
            "--upstream", real_server.base, "--upstream-kind", "openai-completions", "--upstream-api-key", KEY,
            "--upstream-model", model_id(real_server.base), "--tokenizer", str(smollm2_gguf), "--chat-format", "qwen2.5",
        ],
        startup=120,
    )
    try:
        body = {"messages": QUESTION, "max_tokens": 6, "temperature": 0}
        s1, direct = post_json(real_server.base, "/v1/chat/completions", body, headers=AUTH)
        s2, proxied = post_json(proxy.base, "/v1/chat/completions", body)
        assert s1 == s2 == 200, proxied
        assert proxied["choices"][0]["message"] == direct["choices"][0]["message"]
        assert proxied["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
        c = openai.OpenAI(base_url=proxy.base + "/v1", api_key="none")
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model=proxy_model(proxy), stream=True, **body) if ch.choices)
        assert streamed == direct["choices"][0]["message"]["content"]
        s3, bad = post_json(proxy.base, "/v1/chat/completions", {**body, "messages": []})
        assert s3 == 400 and "error" in bad
    finally:
        proxy.stop()


def proxy_model(proxy: ServerProcess) -> str:
    return get_json(proxy.base, "/v1/models")[1]["data"][0]["id"]


@pytest.mark.slow
def test_load_200_requests_16_concurrent(real_server):
    """200 requests, 16 at a time, half render (checked against a sequential run) and half greedy
    2-token chats (checked against a sequential run): no 5xx, no answer mixed up, memory back near
    its baseline."""
    import psutil

    mid = model_id(real_server.base)
    proc = psutil.Process(real_server.proc.pid)

    def request(k: int) -> tuple[int, str]:
        msgs = [SYSTEM, {"role": "user", "content": f"Request number {k % 20}: say hello."}]
        if k % 2:
            status, body = post_json(real_server.base, "/v1/render", {"messages": msgs}, headers=AUTH, timeout=600)
            return status, body.get("prompt") if status == 200 else json.dumps(body)
        status, body = post_json(
            real_server.base, "/v1/chat/completions", {"model": mid, "messages": msgs, "max_tokens": 2, "temperature": 0}, headers=AUTH, timeout=600
        )
        return status, body["choices"][0]["message"]["content"] if status == 200 else json.dumps(body)

    expected = {k: request(k) for k in range(40)}  # sequential reference for every distinct request
    rss0 = proc.memory_info().rss
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(request, range(200)))
    elapsed = time.monotonic() - t0
    assert elapsed < 900
    assert all(s == 200 for s, _ in results), [r for r in results if r[0] != 200][:3]
    for k, r in enumerate(results):
        assert r == expected[k % 40], (k, r, expected[k % 40])
    time.sleep(1)
    rss1 = proc.memory_info().rss
    assert rss1 - rss0 < 300 * 2**20, (rss0, rss1)
    assert get_json(real_server.base, "/health")[1]["queue"] == {"running": 0, "waiting": 0, "max_queue": 32, "slots": 1,
                                                                "expected_wait_s": 0.0}
