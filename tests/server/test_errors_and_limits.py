"""Every malformed or refused request gets an OpenAI error body with the right 4xx, never a 500 and
never FastAPI's own 422 shape (in-process app, scripted engine)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.server import create_app

from .conftest import ScriptedEngine

OK_CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
#: the test client's address: the server answers only to IP addresses, localhost and the names it is told
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def engine(smol_tokenizer, qwen_format):
    return ScriptedEngine(smol_tokenizer, qwen_format, "Hello there.<|im_end|>", n_ctx=256)


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine, max_tokens_limit=64, max_body_bytes=20_000), base_url=LOCAL) as c:
        yield c


def assert_error(r, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def test_a_valid_request_is_answered(client):
    r = client.post("/v1/chat/completions", json=OK_CHAT)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello there."


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": "hi"}, "messages"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 17}, "n"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [1, 2]}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0]"),
    ],
)
def test_bad_chat_requests_get_400_naming_the_parameter(client, patch, param):
    assert_error(client.post("/v1/chat/completions", json={**OK_CHAT, **patch}), 400, param=param)


def test_named_tool_choice_must_be_among_the_tools(client):
    tools = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {}}}}]
    body = {**OK_CHAT, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "b"}}}
    assert_error(client.post("/v1/chat/completions", json=body), 400, param="tool_choice")


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(client):
    body = {**OK_CHAT, "messages": [{"role": "user", "content": "word " * 400}]}
    assert_error(client.post("/v1/chat/completions", json=body), 400, code="context_length_exceeded")


def test_invalid_json_and_missing_body_are_400(client):
    assert_error(client.post("/v1/chat/completions", content=b"{bad"), 400, code="invalid_json")
    assert_error(client.post("/v1/chat/completions"), 400)


def test_unknown_model_and_route_are_404_method_405(client):
    assert_error(client.post("/v1/chat/completions", json={**OK_CHAT, "model": "gpt-17"}), 404, param="model", code="model_not_found")
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_body_over_the_limit_is_413_declared_or_chunked(client):
    big = {**OK_CHAT, "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert_error(client.post("/v1/chat/completions", json=big), 413, code="request_too_large")

    def chunks():
        data = json.dumps(big).encode()
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    assert_error(client.post("/v1/chat/completions", content=chunks()), 413)


def test_completions_rejects_what_it_cannot_honour(client):
    for patch, param in (({"echo": True}, "echo"), ({"logprobs": 2}, "logprobs"), ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [10**7]}, "prompt")):
        assert_error(client.post("/v1/completions", json={"prompt": "hi", **patch}), 400, param=param)


def test_detokenize_rejects_ids_outside_the_vocabulary(client, smol_tokenizer):
    assert_error(client.post("/v1/detokenize", json={"tokens": [smol_tokenizer.vocab_size]}), 400, param="tokens")
    r = client.post("/v1/detokenize", json={"tokens": smol_tokenizer.encode_text("hello world")})
    assert r.json() == {"prompt": "hello world"}


def test_api_key_is_enforced_on_v1_only(engine):
    with TestClient(create_app(engine, api_key="s3cret"), base_url=LOCAL) as c:
        assert_error(c.post("/v1/chat/completions", json=OK_CHAT), 401, code="invalid_api_key")
        assert_error(c.post("/v1/chat/completions", json=OK_CHAT, headers={"Authorization": "Bearer nope"}), 401)
        assert c.get("/health").status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/v1/chat/completions", json=OK_CHAT, headers={"x-api-key": "s3cret"}).status_code == 200


def test_access_log_is_one_json_line_per_request(client, caplog):
    with caplog.at_level("INFO", logger="chatfmt.server.access"):
        r = client.get("/v1/models")
    recs = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "chatfmt.server.access"]
    assert recs and recs[-1]["path"] == "/v1/models" and recs[-1]["status"] == 200
    assert recs[-1]["request_id"] == r.headers["x-request-id"]


# -- fuzzing: any body, any endpoint, never a 5xx -----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "bogus"])
message = st.fixed_dictionaries(
    {"role": roles},
    optional={
        "content": st.none() | st.text(max_size=30) | json_values,
        "tool_calls": json_values,
        "tool_call_id": st.text(max_size=5) | json_values,
        "name": json_values,
    },
)
chat_body = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=4) | json_values},
    optional={
        "model": st.sampled_from(["scripted", "other"]) | json_values,
        "max_tokens": st.integers(-5, 100) | json_values,
        "temperature": st.floats(-1, 3, allow_nan=False) | json_values,
        "tools": json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "stop": json_values,
        "stream": st.booleans(),
        "n": st.integers(0, 3),
        "chat_template_kwargs": json_values,
        "seed": json_values,
    },
)
endpoint_body = st.one_of(
    st.tuples(st.just("/v1/chat/completions"), chat_body),
    st.tuples(st.just("/v1/render"), chat_body),
    st.tuples(st.sampled_from(["/v1/completions", "/v1/tokenize", "/v1/detokenize", "/v1/chat/completions"]), json_values),
    st.tuples(st.just("/v1/completions"), st.fixed_dictionaries({"prompt": json_values | st.text(max_size=10)}, optional={"max_tokens": json_values})),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(endpoint_body)
def test_no_request_body_gets_a_5xx(client, case):
    path, body = case
    r = client.post(path, content=json.dumps(body))
    assert r.status_code < 500, (path, body, r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error"}
