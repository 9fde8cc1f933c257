"""The server says what the chat format leaves out of the prompt: ``tools_rendered`` counts only tools
that are in the prompt, and ``/v1/render`` and chat completions carry an ``X-Chatfmt-Warning`` header
and a ``warnings`` field (SmolLM2's own template ignores tools; Qwen2.5's renders them)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from chatfmt import load_format
from chatfmt.server import create_app

from .conftest import ScriptedEngine

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
ASK = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}


@pytest.fixture(scope="module")
def smol_client(smollm2_gguf, smol_tokenizer):
    engine = ScriptedEngine(smol_tokenizer, load_format(smollm2_gguf), "It is sunny.<|im_end|>")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        yield client


@pytest.fixture(scope="module")
def qwen_client(testdata, qwen_format, shared_tokenizer):
    engine = ScriptedEngine(shared_tokenizer(testdata("qwen2.5")), qwen_format, "It is sunny.<|im_end|>")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_render_reports_tools_the_template_leaves_out(smol_client):
    r = smol_client.post("/v1/render", json={**ASK, "tools": TOOLS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tools_rendered"] == 0
    assert body["not_rendered"] == ["tools"]
    assert "get_weather" not in body["prompt"]
    assert len(body["warnings"]) == 1 and "does not render tools" in body["warnings"][0]
    assert "does not render tools" in r.headers["x-chatfmt-warning"]


def test_render_counts_tools_a_template_renders(qwen_client):
    r = qwen_client.post("/v1/render", json={**ASK, "tools": TOOLS})
    body = r.json()
    assert body["tools_rendered"] == 1
    assert body["not_rendered"] == [] and body["warnings"] == []
    assert "x-chatfmt-warning" not in r.headers
    assert "get_weather" in body["prompt"]


def test_render_reports_template_keywords_not_read(smol_client, qwen_client):
    r = smol_client.post("/v1/render", json={**ASK, "chat_template_kwargs": {"enable_thinking": False}})
    assert r.json()["not_rendered"] == ["enable_thinking"]
    assert "'enable_thinking'" in r.headers["x-chatfmt-warning"]
    r = qwen_client.post("/v1/render", json={**ASK, "chat_template_kwargs": {"enable_thinking": False}})
    assert r.json()["not_rendered"] == ["enable_thinking"]  # the built-in qwen2.5 reads no keywords


def test_chat_completion_carries_the_warning_in_header_and_body(smol_client, qwen_client):
    r = smol_client.post("/v1/chat/completions", json={**ASK, "tools": TOOLS, "max_tokens": 8})
    assert r.status_code == 200, r.text
    assert "does not render tools" in r.headers["x-chatfmt-warning"]
    assert any("does not render tools" in w for w in r.json()["warnings"])
    plain = qwen_client.post("/v1/chat/completions", json={**ASK, "tools": TOOLS, "max_tokens": 8})
    assert "x-chatfmt-warning" not in plain.headers
    assert "warnings" not in plain.json()  # the OpenAI shape is untouched when nothing is left out


def test_streamed_chat_completion_carries_the_warning_header(smol_client):
    with smol_client.stream("POST", "/v1/chat/completions", json={**ASK, "tools": TOOLS, "stream": True}) as r:
        assert r.status_code == 200
        assert "does not render tools" in r.headers["x-chatfmt-warning"]
        chunks = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert chunks[-1] == "data: [DONE]"
    assert json.loads(chunks[0][6:])["object"] == "chat.completion.chunk"


def test_warning_header_is_ascii_for_any_format_name(smol_tokenizer, smollm2_gguf):
    fmt = load_format(smollm2_gguf)
    fmt.info = type(fmt.info)(**{**fmt.info.__dict__, "name": "模板\n[/INST]"})
    engine = ScriptedEngine(smol_tokenizer, fmt, "ok<|im_end|>")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        r = client.post("/v1/render", json={**ASK, "tools": TOOLS})
    header = r.headers["x-chatfmt-warning"]
    assert header.isascii() and "\n" not in header
    assert "模板" in r.json()["warnings"][0]  # the body keeps the name as it is
