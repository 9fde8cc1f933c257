"""The server's format layer keeps, per format and tokenizer, what does not depend on the request
(the output parser, built once per tool list and copied per request; the stop ids and texts, per stop
list) and turns pydantic messages into dicts without ``model_dump`` when they hold only a role and a
content. These tests pin that each request still gets what it would get without them: the real
SmolLM2 tokenizer and the qwen2.5 format, requests parsed from JSON as the server parses them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatfmt.server import create_app
from chatfmt.server.app import _messages
from chatfmt.server.wire import ChatCompletionRequest

from .conftest import ScriptedEngine

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OTHER = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture()
def state(smol_tokenizer: Any, qwen_format: Any) -> Any:
    return create_app(ScriptedEngine(smol_tokenizer, qwen_format, "x", n_ctx=8192)).state.chatfmt


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], **fields}
    return ChatCompletionRequest.model_validate_json(json.dumps(body))


def parse(prep: Any, text: str) -> Any:
    parser = prep.parser
    parser.feed(text)
    return parser.finish().output


def test_each_request_gets_its_own_parser_and_the_kept_one_is_never_fed(state: Any) -> None:
    first = state.prepare_chat(request(tools=[TOOL]))
    second = state.prepare_chat(request(tools=[TOOL]))
    assert first.parser is not second.parser
    first.parser.feed(CALL_TEXT)  # half-way through one request ...
    out = parse(second, "plain answer")  # ... another is parsed from nothing
    assert (out.content, out.tool_calls) == ("plain answer", [])
    out = first.parser.finish().output
    assert [c["function"]["name"] for c in out.tool_calls] == ["get_weather"]
    kept = [entry[2] for entry in state._parsers.values()]
    assert len(kept) == 1
    fin = kept[0].finish().output
    assert (fin.content, fin.tool_calls) == ("", [])


def test_tool_choice_none_and_other_tool_lists_get_their_own_parser(state: Any) -> None:
    auto = parse(state.prepare_chat(request(tools=[TOOL])), CALL_TEXT)
    assert [c["function"]["name"] for c in auto.tool_calls] == ["get_weather"] and auto.content == ""
    none = parse(state.prepare_chat(request(tools=[TOOL], tool_choice="none")), CALL_TEXT)
    assert none.tool_calls == [] and none.content == CALL_TEXT  # call syntax stays text
    again = parse(state.prepare_chat(request(tools=[TOOL])), CALL_TEXT)
    assert [c["function"]["name"] for c in again.tool_calls] == ["get_weather"]
    state.prepare_chat(request(tools=[TOOL, OTHER]))
    assert len(state._parsers) == 3


def test_stops_follow_each_requests_own_stop_list(state: Any) -> None:
    with_stop = state.prepare_chat(request(stop=["END", "<|im_end|>"]))
    without = state.prepare_chat(request())
    assert "END" in with_stop.sampling.stop_texts and "END" not in without.sampling.stop_texts
    assert with_stop.sampling.stop_ids == without.sampling.stop_ids  # <|im_end|> stops either way
    assert state.prepare_chat(request(stop="END")).sampling.stop_texts == with_stop.sampling.stop_texts


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "hi", "name": None},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "developer", "content": "be brief"},
        {"role": "assistant", "content": "ok", "reasoning_content": "think"},
        {"role": "user", "content": "hi", "extra_field": 1},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
    ],
)
def test_messages_become_what_model_dump_gives(message: dict[str, Any]) -> None:
    req = ChatCompletionRequest.model_validate_json(json.dumps({"model": "m", "messages": [message]}))
    want = req.messages[0].model_dump(exclude_none=True)
    if want["role"] == "developer":
        want["role"] = "system"
    if want.get("content") is None:
        want["content"] = None if want.get("tool_calls") else ""
    assert _messages(req) == [want]
