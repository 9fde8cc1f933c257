"""SSE keep-alive: a streamed request waiting in the queue behind a real in-flight generation (the
default model on llama.cpp, one slot) gets ``: keep-alive`` comment lines until its turn, and the
official ``openai`` client still parses the stream. No timing is asserted: the waiting request
must see at least one comment line, with an interval far below the time the first request takes."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatfmt.server import create_app
from chatfmt.server.scheduler import KEEPALIVE

from .conftest import uvicorn_thread

#: seconds between comment lines: tiny, so that the wait behind a 48-token generation spans many
INTERVAL = 0.02
#: a prompt the model continues for all of max_tokens (counting) rather than stopping early
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


@pytest.fixture(scope="module")
def engine(smollm2_gguf) -> Iterator[Any]:
    pytest.importorskip("llama_cpp")
    from chatfmt.inference.backends import load_backend
    from chatfmt.server.engines import LocalEngine

    be = load_backend(smollm2_gguf, "llama.cpp", threads=1, n_ctx=1024)
    try:
        yield LocalEngine(be)
    finally:
        be.close()


class InFlight:
    """A streamed text completion that holds the only slot: started in a thread, ``started`` once
    its first chunk is in (the slot is taken), ``chunks`` its data lines."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.started = threading.Event()
        self.chunks: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(120), self.error

    def _run(self) -> None:
        try:
            body = {"prompt": COUNTING, "max_tokens": 48, "temperature": 0, "stream": True}
            for line in sse_lines(self.base, "/v1/completions", body):
                if line.startswith("data: "):
                    self.chunks.append(line)
                    self.started.set()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.started.set()

    def join(self) -> None:
        self.thread.join(120)
        assert self.error is None, self.error


def sse_lines(base: str, path: str, body: dict[str, Any]) -> Iterator[str]:
    """The raw lines of a streamed response (comments included)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        while raw := r.readline():
            yield raw.decode().rstrip("\n")
    finally:
        conn.close()


def test_a_queued_stream_gets_keepalive_comments_then_its_answer(engine):
    app = create_app(engine, sse_keepalive=INTERVAL)
    with uvicorn_thread(app) as base:
        first = InFlight(base)
        lines = list(
            sse_lines(
                base,
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "stream": True},
            )
        )
        first.join()
    comment = KEEPALIVE.strip("\n")
    assert comment == ": keep-alive"
    data = [k for k, line in enumerate(lines) if line.startswith("data: ")]
    pings = [k for k, line in enumerate(lines) if line == comment]
    assert pings and pings[0] < data[0]  # it waited in the queue, and said so
    assert lines[data[-1]] == "data: [DONE]"
    # every other line is a blank separator: the comments are whole SSE events
    assert all(line in ("", comment) or line.startswith("data: ") for line in lines)
    assert len(first.chunks) > 2 and first.chunks[-1] == "data: [DONE]"


def test_the_openai_client_parses_a_stream_with_keepalive_comments(engine):
    app = create_app(engine, sse_keepalive=INTERVAL)
    with uvicorn_thread(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        question = [{"role": "user", "content": "What is the capital of France?"}]
        alone = client.chat.completions.create(model=model, messages=question, max_tokens=8, temperature=0)
        first = InFlight(base)
        stream = client.chat.completions.create(
            model=model, messages=question, max_tokens=8, temperature=0, stream=True
        )
        chunks = list(stream)
        first.join()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [alone.choices[0].finish_reason]
    assert text == alone.choices[0].message.content  # greedy: the same answer, comments skipped


def test_keepalive_off_sends_no_comments(engine):
    app = create_app(engine, sse_keepalive=None)
    with uvicorn_thread(app) as base:
        first = InFlight(base)
        lines = list(
            sse_lines(
                base,
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "stream": True},
            )
        )
        first.join()
    assert not [line for line in lines if line.startswith(":")]
    assert lines[[k for k, x in enumerate(lines) if x.startswith("data: ")][-1]] == "data: [DONE]"
