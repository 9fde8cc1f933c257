"""``chatfmt serve``'s log is JSON lines only: chatfmt's records, uvicorn's, the access log, Python
warnings and libraries' records; the startup line is an info record, not a warning; a generation
with the real model (transformers backend) logs no dependency warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerProcess, post_json

AUTH = {"Authorization": "Bearer test-key"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _records(log: str) -> list[dict]:
    records = []
    for n, line in enumerate(log.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line {n} is not JSON: {line!r}")
    return records


def test_every_log_line_is_json_and_the_startup_line_is_info(real_server: ServerProcess) -> None:
    for _ in range(2):  # the second reply continues the kept KV cache
        status, body = post_json(
            real_server.base, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 3, "temperature": 0}, headers=AUTH
        )
        assert status == 200, body
    records = _records(real_server.log())
    startup = [r for r in records if str(r.get("message", "")).startswith("serving ")]
    assert len(startup) == 1 and startup[0]["level"] == "info" and startup[0]["logger"] == "chatfmt.server"
    assert any(r.get("logger") == "uvicorn.error" for r in records)  # uvicorn's own lines are JSON too
    assert any(r.get("path") == "/v1/chat/completions" for r in records)  # the access log
    assert [r for r in records if r.get("level") == "warning"] == []


_LOGGING_SCRIPT = """
import logging, warnings
from chatfmt.cli.serve import _setup_logging
_setup_logging(quiet=False)
for _ in range(3):
    warnings.warn("a dependency's warning", FutureWarning)  # one place: shown once
from transformers.utils import logging as hf_logging
hf_logging.get_logger("transformers.generation.utils").warning("a transformers record")
logging.getLogger("some.library").warning("a library record with\\na second line")
logging.getLogger("uvicorn.error").info("uvicorn's line")
logging.getLogger("chatfmt.server").info("chatfmt's line")
"""


def test_warnings_and_library_records_are_json_lines() -> None:
    """The server's logging set-up on its own: a Python warning, transformers' logger (which has a
    stderr handler of its own), any library's and uvicorn's records each come out as one JSON line."""
    pytest.importorskip("transformers")
    proc = subprocess.run([sys.executable, "-c", _LOGGING_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stderr)
    assert [(r["logger"], r["level"], r["message"]) for r in records] == [
        ("py.warnings", "warning", "a dependency's warning"),
        ("transformers.generation.utils", "warning", "a transformers record"),
        ("some.library", "warning", "a library record with\na second line"),
        ("uvicorn.error", "info", "uvicorn's line"),
        ("chatfmt.server", "info", "chatfmt's line"),
    ]
    assert records[0]["category"] == "FutureWarning" and records[0]["where"] == "<string>:6"
    assert proc.stdout == ""


def test_serve_with_an_explicit_backend_that_crashes_exits_2_with_one_line(smollm2_gguf: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    env = {**os.environ, "CHATFMT_CACHE": str(tmp_path), "CHATFMT_TEST_PROBE_CRASH": "SIGILL"}
    proc = subprocess.run(
        [sys.executable, "-m", "chatfmt.cli", "serve", "--model", str(smollm2_gguf), "--backend", "llama.cpp", "--port", "9"],
        capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("chatfmt: error: llama.cpp (llama-cpp-python ") and "crashed with SIGILL (Illegal instruction)" in line
    assert "CMAKE_ARGS=" in line


@pytest.mark.slow
def test_a_warning_goes_to_the_log_as_one_json_record(smollm2_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` skipping a llama.cpp that crashes (really: the probe's child dies by SIGSEGV) is a
    Python warning; in the server it is a JSON record with level warning, and the server answers with
    transformers."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    monkeypatch.setenv("CHATFMT_CACHE", str(tmp_path))
    monkeypatch.setenv("CHATFMT_TEST_PROBE_CRASH", "SIGSEGV")
    srv = ServerProcess(["--model", str(smollm2_gguf), "--backend", "auto", "--chat-format", "chatml", "--quiet"])
    try:
        status, body = post_json(srv.base, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 2, "temperature": 0})
        assert status == 200, body
    finally:
        srv.stop()
    records = _records(srv.log())
    warnings = [r for r in records if r["level"] == "warning"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["logger"] == "py.warnings" and warnings[0]["category"] == "BackendFallbackWarning"
    assert warnings[0]["where"].rpartition(":")[2].isdigit()
    message = warnings[0]["message"]
    assert message.startswith("llama.cpp (llama-cpp-python ") and "crashed with SIGSEGV" in message
    assert "using transformers instead" in message and "\n" not in message
    assert not any("path" in r for r in records)  # --quiet: no access log
    assert any(str(r.get("message", "")).startswith("serving ") and r["level"] == "info" for r in records)  # but the startup line
