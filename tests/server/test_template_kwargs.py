"""``serve``'s default template keyword arguments (``create_app(template_kwargs=...)``, ``chatfmt serve
--template-kwarg``): every prompt is rendered with them, a request's ``chat_template_kwargs`` win per
key, and a default the format never reads is said at start and in each response's warnings (Qwen3's
``enable_thinking`` on the built-in qwen3 format and on Qwen2.5's template, which does not read it)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatfmt import load_format
from chatfmt.errors import NotRenderedWarning
from chatfmt.server import create_app

from .conftest import ScriptedEngine

ASK = {"messages": [{"role": "user", "content": "What is 2+2?"}]}
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen_tok(testdata, shared_tokenizer):
    return shared_tokenizer(testdata("qwen2.5"))


def test_default_template_kwargs_render_every_prompt_and_a_request_overrides_them(qwen_tok):
    engine = ScriptedEngine(qwen_tok, load_format("qwen3"), "4.<|im_end|>")
    with TestClient(create_app(engine, template_kwargs={"enable_thinking": False}), base_url="http://127.0.0.1:8000") as c:
        r = c.post("/v1/render", json=ASK)
        assert r.status_code == 200, r.text
        assert r.json()["prompt"].endswith(EMPTY_THINK) and r.json()["warnings"] == []
        r = c.post("/v1/render", json={**ASK, "chat_template_kwargs": {"enable_thinking": True}})
        assert r.json()["prompt"].endswith("<|im_start|>assistant\n")
        r = c.post("/v1/chat/completions", json={**ASK, "max_tokens": 4})
        assert r.status_code == 200, r.text
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as c:
        assert c.post("/v1/render", json=ASK).json()["prompt"].endswith("<|im_start|>assistant\n")


def test_a_default_the_format_never_reads_is_said_at_start_and_per_response(qwen_tok, testdata):
    fmt = load_format(testdata("qwen2.5", "tokenizer_config.json"))
    engine = ScriptedEngine(qwen_tok, fmt, "4.<|im_end|>")
    with pytest.warns(NotRenderedWarning, match="does not read the template keyword argument 'enable_thinking'"):
        app = create_app(engine, template_kwargs={"enable_thinking": False})
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        r = c.post("/v1/render", json=ASK)
        assert r.json()["not_rendered"] == ["enable_thinking"]
        assert "'enable_thinking'" in r.headers["x-chatfmt-warning"]


def test_serve_refuses_a_malformed_template_kwarg_before_loading_a_model():
    from typer.testing import CliRunner

    from chatfmt.cli import app

    r = CliRunner().invoke(app, ["serve", "--model", "/nonexistent/model.gguf", "--template-kwarg", "enable_thinking"])
    assert r.exit_code == 2
    assert r.stderr == "chatfmt: error: --template-kwarg takes KEY=VALUE (e.g. enable_thinking=false), got 'enable_thinking'\n"
