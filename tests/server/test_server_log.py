"""``chatfmt serve``'s log is JSON lines only: chatfmt's records, uvicorn's, the access log, Python
warnings and libraries' records; the startup line is an info record, not a warning; a generation
with the real model (transformers backend) logs no dependency warning."""

from __future__ import annotations

import json
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
