"""``chatfmt chat --json-schema FILE`` / ``--json-object``: the real default model's answer is JSON
that ``jsonschema`` validates; an unsupported schema, a malformed file or both flags at once are one
line on stderr and exit 2, before any model is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from chatfmt.cli import app

pytest.importorskip("llguidance")

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "country": {"enum": ["France", "Italy", "Spain", "Germany"]},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 40},
    },
    "required": ["city", "country", "population_millions"],
    "additionalProperties": False,
}


def _chat(*args: str, backend: str = "transformers") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "chatfmt.cli", "chat", "--backend", backend, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )


def test_the_answer_validates_against_the_schema_file(tmp_path, smollm2_gguf):
    schema_file = tmp_path / "city.json"
    schema_file.write_text(json.dumps(SCHEMA))
    r = _chat(
        "-m",
        str(smollm2_gguf),
        "-p",
        "Tell me about the capital of France.",
        "--json-schema",
        str(schema_file),
        "--json",
        "--temperature",
        "0",
    )
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["finish_reason"] == "stop"
    jsonschema.validate(json.loads(reply["content"]), SCHEMA)


@pytest.mark.slow
def test_an_openai_json_schema_object_with_strict_closes_objects(tmp_path, smollm2_gguf):
    """The file may hold OpenAI's ``json_schema`` object; ``strict: true`` closes the open object.
    On llama.cpp (the default run's test above takes transformers; llama.cpp reads the GGUF without
    transformers' dequantization): with this seed and ``strict: false`` it adds properties the closed
    schema refuses, so the check can fail."""
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')"
    )
    open_schema = {k: v for k, v in SCHEMA.items() if k != "additionalProperties"}
    f = tmp_path / "rf.json"
    f.write_text(json.dumps({"name": "city", "schema": open_schema, "strict": True}))
    r = _chat(
        "-m",
        str(smollm2_gguf),
        "-p",
        "Describe Rome.",
        "--json-schema",
        str(f),
        "--temperature",
        "0.8",
        "--seed",
        "4",
        backend="llama.cpp",
    )
    assert r.returncode == 0, r.stderr
    jsonschema.validate(json.loads(r.stdout), SCHEMA)  # SCHEMA is the closed one


@pytest.mark.parametrize(
    ("schema", "feature"),
    [
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
        ({"type": "object", "not": {"required": ["a"]}}, "not"),
        ({"type": "string", "pattern": "(?<=a)b"}, "look-around"),
    ],
)
def test_an_unsupported_schema_is_one_line_naming_the_file_and_feature(tmp_path, schema, feature):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(schema))
    # a model that does not exist: the schema is refused before any model is looked for
    r = runner.invoke(app, ["chat", "-m", str(tmp_path / "absent.gguf"), "-p", "hi", "--json-schema", str(f)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(f) in lines[0] and feature in lines[0], r.output


def test_flag_misuse_is_refused(tmp_path):
    f = tmp_path / "s.json"
    f.write_text("[1, 2]")
    r = runner.invoke(app, ["chat", "-m", str(tmp_path / "absent.gguf"), "-p", "hi", "--json-schema", str(f)])
    assert r.exit_code == 2 and "expected a JSON Schema" in r.output
    f.write_text(json.dumps(SCHEMA))
    r = runner.invoke(
        app,
        ["chat", "-m", str(tmp_path / "absent.gguf"), "-p", "hi", "--json-schema", str(f), "--json-object"],
    )
    assert r.exit_code == 2 and "exclude each other" in r.output
