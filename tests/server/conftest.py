"""Server fixtures: a scripted engine (real tokenizer and format, a fixed output replayed token by
token: the wire shapes of tool calls and streaming do not depend on what a 135M model happens to say),
uvicorn in a thread on a free loopback port, and ``chatfmt serve`` as a subprocess with the real
default model (transformers backend)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from chatfmt.inference.stream import IncrementalDecoder
from chatfmt.server.engines import Engine, PieceSource, Sampling

REPO = Path(__file__).resolve().parents[2]


class _ScriptSource(PieceSource):
    def __init__(self, engine: ScriptedEngine, prompt_ids: Sequence[int], sampling: Sampling) -> None:
        super().__init__()
        self.engine = engine
        self.prompt_ids = list(prompt_ids)
        self.sampling = sampling

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        eng = self.engine
        res = self.result
        res.prompt_tokens = len(self.prompt_ids)
        eng.started.set()
        if eng.gate is not None:
            eng.gate.wait(120)
        script = eng.script_ids
        dec = IncrementalDecoder(eng.tokenizer)
        k = 0
        while True:
            if self.cancel_event.is_set():
                res.finish_reason = "cancelled"
                eng.cancelled.set()
                return
            if len(self.ids) >= self.sampling.max_tokens:
                res.finish_reason = "length"
                return
            if eng.endless:
                tid = script[k % len(script)]
            elif k >= len(script):
                res.finish_reason = "stop"
                return
            else:
                tid = script[k]
            k += 1
            if tid in self.sampling.stop_ids:
                res.finish_reason = "stop"
                res.stop_id = tid
                return
            if eng.delay:
                time.sleep(eng.delay)
            self.ids.append(tid)
            res.completion_tokens = len(self.ids)
            piece = dec.add(tid)
            if piece:
                yield piece, tid


class ScriptedEngine(Engine):
    """Generates ``script`` (text, control tokens recognised) whatever the prompt; ``endless``
    repeats it until cancelled; ``delay`` seconds per token."""

    def __init__(self, tokenizer: Any, fmt: Any, script: str, *, delay: float = 0.0, endless: bool = False, n_ctx: int = 2048) -> None:
        from chatfmt.encode import encode_rendered
        from chatfmt.segments import Rendered, Segment

        self.tokenizer = tokenizer
        self.format = fmt
        self.model_id = "scripted"
        self.script_ids, _, _ = encode_rendered(Rendered([Segment(script)]), tokenizer)
        self.delay = delay
        self.endless = endless
        self._n_ctx = n_ctx
        self.started = threading.Event()
        self.cancelled = threading.Event()
        #: when set to an Event, a generation holds after ``started`` until it is set (tests that need a
        #: request provably still running, without sleeping)
        self.gate: threading.Event | None = None

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def source(self, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> PieceSource:
        return _ScriptSource(self, prompt_ids, sampling)


@pytest.fixture(scope="session")
def smol_tokenizer(smollm2_gguf: Path, shared_tokenizer: Any) -> Any:
    return shared_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def qwen_format() -> Any:
    from chatfmt.formats.loader import load_format

    return load_format("qwen2.5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def get_json(base: str, path: str, timeout: float = 10) -> tuple[int, Any]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def post_json(base: str, path: str, body: Any, timeout: float = 300, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


class ServerProcess:
    """``chatfmt serve`` in a subprocess on a free port, stopped by its pid."""

    def __init__(self, args: list[str], *, startup: float = 300) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"chatfmt-serve-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "chatfmt.cli", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + startup
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatfmt serve exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                status, _ = get_json(self.base, "/health", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chatfmt serve did not come up in {startup} s: {self.log()[-2000:]}")
            time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="session")
def real_server(smollm2_gguf: Path) -> Iterator[ServerProcess]:
    """The real default model behind ``chatfmt serve`` (transformers backend), qwen2.5's format
    (ChatML + hermes tool calls; SmolLM2's own format has no tool syntax), API key ``test-key``."""
    srv = ServerProcess(
        ["--model", str(smollm2_gguf), "--backend", "transformers", "--chat-format", "qwen2.5", "--api-key", "test-key", "--max-queue", "32"]
    )
    try:
        yield srv
    finally:
        srv.stop()
