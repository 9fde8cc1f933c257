"""A request body that is not valid JSON is refused at its line and column."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from chatfmt import load_format
from chatfmt.server import create_app

from .conftest import ScriptedEngine


@pytest.mark.parametrize(
    "body",
    [
        '{\n "messages": [\n  {"role": "user", "content": "x"}\n  ]\n ,, }',
        '{"messages": [{"role": "user", "content": "x"}}',
        '{\n\n\n  "messages": [tru]}',
    ],
)
def test_bad_json_body_is_refused_at_its_line_and_column(smollm2_gguf, smol_tokenizer, body):
    with pytest.raises(json.JSONDecodeError) as where:
        json.loads(body)
    engine = ScriptedEngine(smol_tokenizer, load_format(smollm2_gguf), "ok<|im_end|>")
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        r = client.post("/v1/render", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].endswith(f"(line {where.value.lineno}, column {where.value.colno})")
