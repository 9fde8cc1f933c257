"""``chatfmt serve``'s flags for who may connect: ``--allowed-hosts`` (repeatable, comma-separated),
``--host NAME`` answering to that name, ``--cors-allow-origin`` (repeatable); a malformed origin or
a timeout that cannot work is one line and exit 2 before anything loads (a real subprocess in proxy
mode: no model)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from chatfmt.cli import app

from .conftest import REPO, ServerProcess

RENDER = {"messages": [{"role": "user", "content": "hi"}]}


def status(srv: ServerProcess, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("POST", "/v1/render", body=json.dumps(RENDER), headers={"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_allowed_hosts_host_name_and_cors_origins_from_the_command_line(smollm2_gguf):
    srv = ServerProcess(
        ["--upstream", "http://127.0.0.1:9", "--tokenizer", str(smollm2_gguf), "--host", "localhost",
         "--allowed-hosts", "gpu-box.lan,.corp.example", "--allowed-hosts", "other.lan",
         "--cors-allow-origin", "http://localhost:3000", "--cors-allow-origin", "https://ui.example"],
        startup=120,
    )
    try:
        for host in ("gpu-box.lan:8000", "llm.corp.example", "other.lan", "localhost", "127.0.0.1"):
            assert status(srv, {"Host": host})[0] == 200, host
        assert status(srv, {"Host": "evil.example"})[0] == 403
        code, headers = status(srv, {"Origin": "http://localhost:3000"})
        assert code == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"
        assert status(srv, {"Origin": "https://ui.example"})[0] == 200
        assert status(srv, {"Origin": "http://localhost:3001"})[0] == 403
    finally:
        srv.stop()


REFUSED_FLAGS = [
    (["--cors-allow-origin", "localhost:3000"], "--cors-allow-origin 'localhost:3000' is not an origin"),
    (["--body-timeout", "-1"], "--body-timeout must be more than 0 seconds"),
    (["--max-connections", "0"], "--max-connections must be at least 1"),
]


@pytest.mark.parametrize(("flags", "message"), REFUSED_FLAGS)
def test_a_flag_that_cannot_work_is_one_line_and_exit_2_before_loading(flags, message):
    # the model named does not exist: the flags are refused before anything is loaded (the CLI in
    # this process; the subprocess test below runs one of them through a real ``python -m``)
    res = CliRunner().invoke(app, ["serve", "--model", "/nonexistent/model.gguf", *flags])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert res.stdout == ""


def test_a_refused_flag_in_a_real_process_is_one_line_and_exit_2():
    flags, message = REFUSED_FLAGS[0]
    proc = subprocess.run(
        [sys.executable, "-m", "chatfmt.cli", "serve", "--model", "/nonexistent/model.gguf", *flags],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
