"""Over real HTTP (uvicorn on loopback) with the official ``openai`` client: tool calls and reasoning
parsed and streamed in OpenAI's shapes, the FIFO queue (429 when full, arrival order), and a client
that leaves mid-stream cancelling its generation and freeing the slot. The engine replays a fixed
output with the real SmolLM2 tokenizer, so the shapes are checked exactly."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import openai
import pytest

from chatfmt.server import Scheduler, create_app
from chatfmt.server.errors import APIError

from .conftest import ScriptedEngine, get_json, post_json, uvicorn_thread

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL_SCRIPT = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'


@pytest.fixture(scope="module")
def tool_server(smol_tokenizer, qwen_format):
    with uvicorn_thread(create_app(ScriptedEngine(smol_tokenizer, qwen_format, CALL_SCRIPT))) as base:
        yield base


def test_tool_call_is_parsed_into_tool_calls(tool_server):
    c = openai.OpenAI(base_url=tool_server + "/v1", api_key="none")
    r = c.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.content == "Let me check."
    (call,) = ch.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0


def test_tool_call_streams_as_deltas_and_usage_comes_last(tool_server):
    c = openai.OpenAI(base_url=tool_server + "/v1", api_key="none")
    chunks = list(
        c.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert content == "Let me check."
    assert calls[0].index == 0 and calls[0].function.name == "get_weather" and calls[0].id
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_tool_choice_none_renders_no_tools_and_parses_no_calls(tool_server):
    status, body = post_json(tool_server, "/v1/render", {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": "none"})
    assert status == 200 and body["tools_rendered"] == 0 and "get_weather" not in body["prompt"]
    status, body = post_json(tool_server, "/v1/render", {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS})
    assert "get_weather" in body["prompt"]
    status, body = post_json(
        tool_server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS, "tool_choice": "none"}
    )
    msg = body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "stop" and "tool_calls" not in msg
    assert "get_weather" in msg["content"]


def test_named_tool_choice_renders_that_tool_and_tells_the_model(tool_server):
    other = {"type": "function", "function": {"name": "other_tool", "parameters": {"type": "object", "properties": {}}}}
    req = {"messages": [{"role": "user", "content": "x"}], "tools": [*TOOLS, other], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    status, body = post_json(tool_server, "/v1/render", req)
    assert status == 200 and body["tools_rendered"] == 1
    assert "other_tool" not in body["prompt"] and "You must answer by calling the tool get_weather." in body["prompt"]


def test_reasoning_is_split_into_reasoning_content(smol_tokenizer):
    from chatfmt.formats.loader import load_format

    fmt = load_format("qwen3")
    eng = ScriptedEngine(smol_tokenizer, fmt, "<think>\nsum it\n</think>\n\nIt is 4.<|im_end|>")
    with uvicorn_thread(create_app(eng)) as base:
        c = openai.OpenAI(base_url=base + "/v1", api_key="none")
        r = c.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "2+2?"}])
        msg = r.choices[0].message.model_dump()
        assert msg["content"] == "It is 4." and msg["reasoning_content"].strip() == "sum it"
        chunks = list(c.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "2+2?"}], stream=True))
        reasoning = "".join((ch.choices[0].delta.model_dump().get("reasoning_content") or "") for ch in chunks if ch.choices)
        assert reasoning.strip() == "sum it"


def _open_stream(base: str, body: dict) -> http.client.HTTPConnection:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**body, "stream": True}), headers={"Content-Type": "application/json"})
    return conn


def test_a_client_leaving_mid_stream_cancels_and_frees_the_slot(smol_tokenizer, qwen_format):
    eng = ScriptedEngine(smol_tokenizer, qwen_format, "la ", endless=True, delay=0.005, n_ctx=200_000)
    with uvicorn_thread(create_app(eng, max_tokens_limit=100_000)) as base:
        conn = _open_stream(base, {"messages": [{"role": "user", "content": "sing"}], "max_tokens": 100_000})
        resp = conn.getresponse()
        assert resp.status == 200
        got = b""
        while got.count(b"data:") < 5:
            got += resp.read1(4096)
        conn.sock.shutdown(2)
        conn.close()
        assert eng.cancelled.wait(10), "the generation was not cancelled after the client left"
        deadline = time.monotonic() + 10
        while get_json(base, "/health")[1]["queue"]["running"] != 0:
            assert time.monotonic() < deadline, "the slot was not freed"
            time.sleep(0.05)
        status, body = post_json(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": "again"}], "max_tokens": 3})
        assert status == 200 and body["usage"]["completion_tokens"] == 3


def test_queue_full_is_429_and_waiting_requests_are_served(smol_tokenizer, qwen_format):
    eng = ScriptedEngine(smol_tokenizer, qwen_format, "la ", endless=True, delay=0.002)
    eng.gate = threading.Event()  # the first request holds its slot until the 429 was seen: no race with its end
    with uvicorn_thread(create_app(eng, max_queue=1)) as base:
        results: dict[str, int] = {}

        def call(name: str, n: int) -> None:
            results[name] = post_json(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": name}], "max_tokens": n})[0]

        first = threading.Thread(target=call, args=("first", 400))
        first.start()
        assert eng.started.wait(10)
        second = threading.Thread(target=call, args=("second", 2))
        second.start()
        deadline = time.monotonic() + 60  # a liveness bound only: the first request is held by the gate
        while get_json(base, "/health")[1]["queue"]["waiting"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, body = post_json(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": "third"}], "max_tokens": 2})
        eng.gate.set()
        assert status == 429 and body["error"]["code"] == "queue_full" and body["error"]["type"] == "rate_limit_error"
        first.join(60)
        second.join(60)
        assert results == {"first": 200, "second": 200}


def test_scheduler_serves_in_arrival_order_and_skips_those_who_left():
    async def run() -> list[int]:
        s = Scheduler(slots=1, max_queue=5)
        order: list[int] = []
        first = s.reserve()
        assert first.done()
        waiters = [s.reserve() for _ in range(4)]
        s.cancel(waiters[1])  # leaves the line
        with pytest.raises(APIError) as e:
            for _ in range(3):
                s.reserve()
        assert e.value.status == 429

        async def worker(k: int, fut: asyncio.Future[None]) -> None:
            await fut
            order.append(k)
            await asyncio.sleep(0)
            s.release()

        tasks = [asyncio.create_task(worker(k, f)) for k, f in enumerate(waiters) if k != 1]
        await asyncio.sleep(0)
        s.release()  # the first request finishes
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(run())
    assert order[:3] == [0, 2, 3]
