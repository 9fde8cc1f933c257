"""Structured outputs and forced tool calls with the real default model (SmolLM2-135M) through the
official ``openai`` client: ``response_format`` json_schema / json_object outputs always parse and
validate (``jsonschema``), ``tool_choice`` required / named always yields a call in the format's own
syntax that its parser returns as ``tool_calls`` with valid arguments, streamed or not; what cannot
be enforced is a 400 naming the field. transformers in the default run (a short set), llama.cpp and
the bigger set in the slow run."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from .conftest import ScriptedEngine, ServerProcess, post_json, uvicorn_thread

pytest.importorskip("llguidance")

KEY = "test-key"

PROMPTS = [
    "Describe a city you like.",
    "Give me a product for my online shop.",
    "Who wrote Hamlet?",
    "Plan a short trip for next weekend.",
    "What is 17 times 3?",
    "Recommend a book about the sea.",
    "Tell me about your favourite animal.",
    "Summarise the weather today in one word.",
    "Create a user profile for a new employee.",
    "List three colours of the rainbow.",
    "Quelle est la capitale de l'Italie ?",
    "Write a haiku about autumn.",
]

SCHEMAS: dict[str, dict[str, Any]] = {
    # nested objects, a required nested field
    "nested": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "location": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 16},
                    "country": {"type": "string", "maxLength": 16},
                },
                "required": ["city", "country"],
            },
        },
        "required": ["name", "location"],
    },
    # enums and an array of enums with bounds
    "enums": {
        "type": "object",
        "properties": {
            "mood": {"enum": ["happy", "sad", "neutral"]},
            "colours": {
                "type": "array",
                "items": {"enum": ["red", "green", "blue"]},
                "minItems": 1,
                "maxItems": 3,
            },
            "certain": {"type": "boolean"},
        },
        "required": ["mood", "colours", "certain"],
    },
    # numbers with bounds, an optional field, null
    "numbers": {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": 10},
            "score": {"type": "integer", "minimum": -100, "maximum": 100},
            "comment": {"type": ["string", "null"], "maxLength": 20},
        },
        "required": ["count", "score"],
    },
    # an array of objects
    "items": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string", "maxLength": 12},
                        "qty": {"type": "integer", "minimum": 0, "maximum": 99},
                    },
                    "required": ["title", "qty"],
                },
                "minItems": 1,
                "maxItems": 2,
            }
        },
        "required": ["items"],
    },
}

WEATHER = {  # strict: objects without additionalProperties are closed (OpenAI's strict function calling)
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
BOOK = {
    "type": "function",
    "function": {
        "name": "book_table",
        "description": "Book a table at a restaurant",
        "parameters": {
            "type": "object",
            "properties": {
                "people": {"type": "integer", "minimum": 1, "maximum": 12},
                "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            },
            "required": ["people", "time"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, BOOK]
PARAMS = {"get_weather": None, "book_table": BOOK["function"]["parameters"]}  # filled in below


def closed(schema: Any) -> Any:
    """What ``strict: true`` enforces (objects without additionalProperties closed), written out
    independently of chatfmt for the validator."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: (
            {p: closed(v) for p, v in val.items()}
            if k == "properties"
            else closed(val)
            if k == "items"
            else val
        )
        for k, val in schema.items()
    }
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


PARAMS["get_weather"] = closed(WEATHER["function"]["parameters"])


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)


def model_of(c: openai.OpenAI) -> str:
    return c.models.list().data[0].id


def json_format(name: str, strict: bool = True) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": strict}}


def check_json_answers(base: str, cases: list[tuple[str, str]], *, stream_every: int = 0) -> None:
    c = client(base)
    model = model_of(c)
    for k, (prompt, name) in enumerate(cases):
        kwargs: dict[str, Any] = dict(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            response_format=json_format(name),
            max_tokens=160,
            temperature=0.7,
            seed=k,
        )
        if stream_every and k % stream_every == 0:
            chunks = list(c.chat.completions.create(stream=True, **kwargs))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            finish = [
                ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason
            ]
            assert finish == ["stop"], (prompt, name, text)
        else:
            r = c.chat.completions.create(**kwargs)
            text = r.choices[0].message.content or ""
            assert r.choices[0].finish_reason == "stop", (prompt, name, text)
            assert not r.choices[0].message.tool_calls
        jsonschema.validate(json.loads(text), closed(SCHEMAS[name]))


def check_forced_calls(base: str, prompts: list[str], *, stream_every: int = 0, start: int = 0) -> None:
    """``start``: the index of ``prompts[0]`` in the whole set (each prompt's tool choice, seed and
    streaming follow its index)."""
    c = client(base)
    model = model_of(c)
    for k, prompt in enumerate(prompts, start):
        choice: Any = (
            "required"
            if k % 2 == 0
            else {"type": "function", "function": {"name": TOOLS[k % 4 // 2]["function"]["name"]}}
        )
        kwargs: dict[str, Any] = dict(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            tools=TOOLS,
            tool_choice=choice,
            max_tokens=120,
            temperature=0.7,
            seed=k,
        )
        if stream_every and k % stream_every == 0:
            chunks = list(c.chat.completions.create(stream=True, **kwargs))
            calls: dict[int, dict[str, str]] = {}
            for ch in chunks:
                for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                    cur = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                    cur["name"] += tc.function.name or ""
                    cur["arguments"] += tc.function.arguments or ""
            finish = [
                ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason
            ]
            got = [(v["name"], v["arguments"]) for _, v in sorted(calls.items())]
            content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        else:
            r = c.chat.completions.create(**kwargs)
            finish = [r.choices[0].finish_reason]
            got = [(tc.function.name, tc.function.arguments) for tc in r.choices[0].message.tool_calls or []]
            content = r.choices[0].message.content or ""
        assert finish == ["tool_calls"] and len(got) == 1, (prompt, choice, got, content)
        assert not content.strip()
        name, arguments = got[0]
        if choice != "required":
            assert name == choice["function"]["name"]
        jsonschema.validate(json.loads(arguments), PARAMS[name])


# -- the default run: transformers ---------------------------------------------------------------------


#: the (prompt, schema) pairs of the default run: 10 prompts, each with one of the schemas (every schema
#: used); the forced calls: the first FORCED_SAMPLE prompts
JSON_SAMPLE = [(p, list(SCHEMAS)[k % len(SCHEMAS)]) for k, p in enumerate(PROMPTS[:10])]
FORCED_SAMPLE = 4


def test_json_schema_answers_validate_on_varied_prompts(real_server):
    """10 prompts, each with one of the schemas (every schema used), two of them streamed."""
    check_json_answers(real_server.base, JSON_SAMPLE, stream_every=5)


def test_json_object_answer_is_an_object(real_server):
    c = client(real_server.base)
    r = c.chat.completions.create(
        model=model_of(c),
        messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
        response_format={"type": "json_object"},
        max_tokens=100,
        temperature=0,
    )
    # greedy with any object allowed may run to max_tokens inside a long string; only a finished
    # answer can be checked as a whole
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        assert r.choices[0].message.content.startswith("{")


def test_forced_tool_calls_are_valid_calls_in_the_formats_syntax(real_server):
    """qwen2.5's syntax (Hermes ``<tool_call>{...}</tool_call>``, a JSON body) on the default model:
    ``required`` and a named tool, streamed and not."""
    check_forced_calls(real_server.base, PROMPTS[:FORCED_SAMPLE], stream_every=3)


def test_unsupported_schema_feature_is_a_400_naming_it(real_server):
    c = client(real_server.base)
    schema = {
        "type": "object",
        "properties": {"ids": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}},
    }
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model=model_of(c),
            messages=[{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema, "strict": False},
            },
            max_tokens=5,
        )
    err = e.value.body
    assert err["param"] == "response_format.json_schema.schema" and "uniqueItems" in err["message"]
    assert err["code"] == "unsupported_response_format"


def test_response_format_with_a_forced_tool_choice_is_a_400(real_server):
    status, body = post_json(
        real_server.base,
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS,
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
        },
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert status == 400 and body["error"]["param"] == "response_format"


# -- refusals without a model (the real tokenizer and format, a scripted engine) ------------------------


@pytest.fixture(scope="module")
def smol_format(smollm2_gguf: Path) -> Any:
    from chatfmt.formats.loader import load_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_format(smollm2_gguf)


@pytest.fixture
def scripted(smol_tokenizer: Any, smol_format: Any) -> Iterator[str]:
    from chatfmt.server import create_app

    engine = ScriptedEngine(smol_tokenizer, smol_format, "{}")
    with uvicorn_thread(create_app(engine, api_key=KEY)) as base:
        yield base


def test_tool_choice_with_the_default_models_own_format_is_a_400_naming_it(scripted, smol_format):
    """SmolLM2's own template has no tool-call syntax (its parser is plain): a forced call cannot be
    enforced, and the answer says so instead of returning prose."""
    c = client(scripted)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "hi"}],
            tools=TOOLS,
            tool_choice="required",
        )
    assert e.value.body["param"] == "tool_choice" and repr(smol_format.info.name) in e.value.body["message"]
    assert e.value.body["code"] == "unsupported_tool_choice"


def test_an_engine_that_cannot_constrain_refuses_instead_of_ignoring(scripted):
    c = client(scripted)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_object"},
        )
    assert (
        e.value.body["param"] == "response_format"
        and "not available from this engine" in e.value.body["message"]
    )


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
        ({"type": "xml"}, "response_format"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {}}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_bad_response_formats_are_400s_naming_the_field(scripted, response_format, param):
    status, body = post_json(
        scripted,
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert status == 400 and body["error"]["param"] == param, body


# -- the slow run: the bigger set, and llama.cpp ------------------------------------------------------


@pytest.mark.slow
def test_json_schema_every_prompt_with_every_schema_transformers(real_server):
    """With the default run's sample (same server, same backend), every prompt with every schema and
    every prompt forced to call: the pairs and the forced calls the sample sends are not sent again
    (the forced calls would be the very same requests)."""
    rest = [(p, n) for p in PROMPTS for n in SCHEMAS if (p, n) not in JSON_SAMPLE]
    assert len(rest) == len(PROMPTS) * len(SCHEMAS) - len(JSON_SAMPLE)
    check_json_answers(real_server.base, rest, stream_every=7)
    check_forced_calls(real_server.base, PROMPTS[FORCED_SAMPLE:], stream_every=3, start=FORCED_SAMPLE)


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
def test_json_schema_and_forced_calls_on_llama_cpp(llama_server):
    check_json_answers(llama_server.base, [(p, n) for p in PROMPTS for n in SCHEMAS], stream_every=7)
    check_forced_calls(llama_server.base, PROMPTS, stream_every=3)
