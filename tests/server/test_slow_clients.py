"""Stalled clients against a real ``chatfmt serve`` (subprocess, proxy mode: no model to load, the
HTTP layer is the real one): a slowloris of a few hundred loopback connections that stop before,
in the middle of, or trickling their headers, in the middle of their body, halfway through a
second request, or trickle a body the server refused unread, is closed within the configured
timeouts (2 s here) with one JSON log line each, while a normal client is served all along; a
connection past ``--max-connections`` is answered 503 at once."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import ServerProcess, get_json, post_json

TIMEOUT = 2
#: how long past the timeout a stalled connection may stay open (a loaded 2-core machine)
MARGIN = 20
RENDER = {"messages": [{"role": "user", "content": "hi"}]}


def proxy_server(smollm2_gguf: Path, *extra: str, timeout: float = TIMEOUT) -> ServerProcess:
    # nothing listens on the upstream: only routes that do not generate are used here
    return ServerProcess(
        ["--upstream", "http://127.0.0.1:9", "--tokenizer", str(smollm2_gguf),  # the model's own template
         "--header-timeout", str(timeout), "--body-timeout", str(timeout), *extra],
        startup=120,
    )


@pytest.fixture
def server(smollm2_gguf) -> Iterator[ServerProcess]:
    srv = proxy_server(smollm2_gguf, "--max-connections", "1000")
    try:
        yield srv
    finally:
        srv.stop()


def server_side_connections(srv: ServerProcess) -> int:
    return sum(1 for c in psutil.Process(srv.proc.pid).net_connections(kind="tcp")
               if c.laddr and c.laddr.port == srv.port and c.status == psutil.CONN_ESTABLISHED)


def log_events(srv: ServerProcess, event: str) -> list[dict]:
    out = []
    for line in srv.log().splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict) and rec.get("event") == event:
                out.append(rec)
    return out


def read_until_closed(socks: dict[socket.socket, str], deadline: float, closed_at: dict[socket.socket, float] | None = None) -> dict[str, list[bytes]]:
    """Read every socket until the server closes it (or the deadline); what each kind received
    (``closed_at``: filled with when each was seen closed)."""
    closed_at = {} if closed_at is None else closed_at
    got: dict[socket.socket, bytes] = {s: b"" for s in socks}
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_), [], [], 0.5)
        for s in ready:
            try:
                chunk = s.recv(65536)
            except OSError:  # reset: closed too
                chunk = b""
            if chunk:
                got[s] += chunk
            else:
                open_.discard(s)
                closed_at[s] = time.monotonic()
    out: dict[str, list[bytes]] = {}
    for s, kind in socks.items():
        out.setdefault(kind, []).append(got[s] if s not in open_ else b"<still open>")
    return out


def request_head(srv: ServerProcess, length: int) -> bytes:
    return (b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (srv.port, length))


#: how the stalled connections stop; 50 of each
KINDS = ("silent", "mid-headers", "mid-body", "trickle", "second-request", "refused-then-trickle")


def read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += s.recv(65536)
    return head + b"\r\n\r\n" + rest


def test_a_slowloris_is_closed_within_the_timeouts_while_others_are_served(server):
    n = 300
    socks: dict[socket.socket, str] = {}
    body = json.dumps(RENDER).encode()
    served: list[int] = []
    done = threading.Event()

    def normal_client() -> None:  # a well-behaved client all along
        while not done.is_set():
            status, rendered = post_json(server.base, "/v1/render", RENDER, timeout=10)
            served.append(status if rendered.get("num_tokens") else -status)
            time.sleep(0.1)

    client = threading.Thread(target=normal_client)
    client.start()
    opened_at: dict[socket.socket, float] = {}
    for k in range(n):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        opened_at[s] = time.monotonic()
        kind = KINDS[k % len(KINDS)]
        if kind == "mid-headers":
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow")
        elif kind == "mid-body":
            s.sendall(request_head(server, 1000) + b'{"messages": [')
        elif kind == "trickle":
            s.sendall(b"G")
        elif kind == "refused-then-trickle":  # refused before its body is read, then trickles the body
            s.sendall(request_head(server, 100_000).replace(b"\r\n\r\n", b"\r\nOrigin: https://evil.example\r\n\r\n", 1))
        elif kind == "second-request":  # a complete request, then half of the next one on the same connection
            s.sendall(request_head(server, len(body)) + body)
            first = read_response(s)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            opened_at[s] = time.monotonic()  # the deadline starts with the second request
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks[s] = kind
    opened = time.monotonic()
    header_bytes = b"ET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: " + b"a" * 1000
    trickling = {s: header_bytes if kind == "trickle" else b"x" * 1000 for s, kind in socks.items() if kind.endswith("trickle")}
    stop = threading.Event()

    def trickle() -> None:  # a byte every 0.3 s: never idle, never done
        i = 0
        while not stop.is_set() and i < 1000:
            for s, msg in trickling.items():
                with contextlib.suppress(OSError):
                    s.send(msg[i : i + 1])
            i += 1
            time.sleep(0.3)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        status, _ = get_json(server.base, "/health", timeout=10)
        assert status == 200
        closed_at: dict[socket.socket, float] = {}
        got = read_until_closed(socks, opened + TIMEOUT + MARGIN, closed_at)
    finally:
        stop.set()
        done.set()
        t.join(10)
        client.join(20)
        for s in socks:
            s.close()
    assert len(served) >= 3 and set(served) == {200}, served
    for kind, answers in got.items():
        assert all(a != b"<still open>" for a in answers), (kind, sum(a == b"<still open>" for a in answers))
    latest = max(closed_at[s] - opened_at[s] for s in socks)
    print(f"slowloris: {n} stalled connections, each closed at most {latest:.2f} s after it opened (timeout {TIMEOUT} s)")
    assert set(got["silent"]) == {b""}  # nothing asked, nothing answered: just closed
    for kind in ("mid-headers", "trickle", "second-request", "mid-body"):
        for a in got[kind]:
            assert a.startswith(b"HTTP/1.1 408"), (kind, a[:200])
            assert json.loads(a.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    for a in got["refused-then-trickle"]:  # its answer was the 403; then closed at the deadline
        assert a.startswith(b"HTTP/1.1 403") and a.count(b"HTTP/1.1") == 1, a[:300]
    # one JSON line each, saying which phase stalled
    deadline = time.monotonic() + 10
    while len(log_events(server, "timeout")) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    events = log_events(server, "timeout")
    phases = {p: sum(e["phase"] == p for e in events) for p in ("headers", "body")}
    per_kind = n // len(KINDS)
    assert phases == {"headers": 4 * per_kind, "body": 2 * per_kind}, phases
    assert all(e["timeout_s"] == TIMEOUT and e["client"].startswith("127.0.0.1:") for e in events)
    # and the server is still there, holding nothing
    status, _ = post_json(server.base, "/v1/render", RENDER, timeout=10)
    assert status == 200
    deadline = time.monotonic() + 10
    while server_side_connections(server) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_side_connections(server) == 0


def test_connections_past_the_limit_are_answered_503_at_once(smollm2_gguf):
    held_for = 5  # long enough for the 21st to arrive while the 20 are still held, on a busy machine
    srv = proxy_server(smollm2_gguf, "--max-connections", "20", timeout=held_for)
    held: list[socket.socket] = []
    try:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(20)]
        deadline = time.monotonic() + 10
        while server_side_connections(srv) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"\r\nRetry-After: " in head
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        refused = log_events(srv, "connection_refused")
        assert refused and refused[0]["limit"] == 20
        # the held ones time out (silently: they sent nothing), then others are served again
        got = read_until_closed({s: "silent" for s in held}, time.monotonic() + held_for + MARGIN)
        assert set(got["silent"]) == {b""}
        status, _ = post_json(srv.base, "/v1/render", RENDER, timeout=10)
        assert status == 200
    finally:
        for s in held:
            s.close()
        srv.stop()
