"""Abuse of a real ``chatfmt serve`` (subprocess, loopback, the default model on the transformers
backend): oversized bodies, deep JSON, invalid UTF-8, thousands of messages, ``max_tokens`` abuse,
wrong API keys, raw garbage, slow clients and a disconnect storm. Every answer is a 4xx (or a bounded
success), the server never crashes or stops serving others, and after the run its open file
descriptors and RSS are back near their baseline. The default bind is loopback.

Raw sockets are used where a client library would refuse to misbehave. The long runs are ``slow``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from ..server.conftest import ServerProcess, get_json

KEY = "abuse-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 200_000
MAX_TOKENS = 256
CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def server(smollm2_gguf) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        [
            "--model", str(smollm2_gguf), "--backend", "transformers", "--api-key", KEY, "--max-body-bytes", str(MAX_BODY),
            "--max-tokens-limit", str(MAX_TOKENS), "--max-queue", "64", "--quiet",
        ]
    )
    try:
        yield srv
    finally:
        srv.stop()
        # a crash would show as a non-zero status other than the SIGINT stop, or a traceback in the log
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


def request(srv: ServerProcess, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})
    finally:
        conn.close()


def post(srv: ServerProcess, path: str, body: object, **kw) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(srv, "POST", path, raw, {"Content-Type": "application/json"}, **kw)


def raw_exchange(srv: ServerProcess, data: bytes, *, timeout: float = 60) -> bytes:
    """Send ``data`` on a fresh connection, half-close, read the answer (b"" if the server closes).
    ``timeout`` only bounds the wait for a broken server (generous: the machine may be loaded)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def assert_error(status: int, body: dict, want: int, code: str | None = None) -> None:
    assert status == want, (status, body)
    assert set(body) == {"error"} and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


def alive(srv: ServerProcess) -> None:
    assert srv.proc.poll() is None, srv.log()[-3000:]
    status, health = get_json(srv.base, "/health", timeout=10)
    assert status == 200 and health["status"] == "ok"


def fds(srv: ServerProcess) -> int:
    return psutil.Process(srv.proc.pid).num_fds()


def rss(srv: ServerProcess) -> int:
    return psutil.Process(srv.proc.pid).memory_info().rss


# -- the bind, the key ------------------------------------------------------------------------------------


def test_the_default_bind_is_loopback_only(server):
    """``chatfmt serve`` without ``--host`` listens on 127.0.0.1 and nowhere else."""
    listening = [c for c in psutil.Process(server.proc.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"x-api-key": "nope"},
        {"Authorization": "Bearer "},
    ],
)
def test_a_wrong_or_missing_api_key_is_401_on_every_v1_route(server, headers):
    for method, path, body in (("POST", "/v1/chat/completions", CHAT), ("POST", "/v1/render", CHAT), ("GET", "/v1/models", None),
                               ("POST", "/v1/tokenize", {"prompt": "x"}), ("POST", "/v1/completions", {"prompt": "x"})):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request(method, path, body=json.dumps(body) if body else None, headers={"Content-Type": "application/json", **headers})
            r = conn.getresponse()
            assert_error(r.status, json.loads(r.read()), 401, "invalid_api_key")
        finally:
            conn.close()


def test_non_ascii_key_bytes_and_a_key_in_the_url_are_401(server):
    for auth in (b"Bearer \xff\xfe" + KEY.encode(), b"Bearer " + KEY.encode() + b"\x80", "Bearer ключ".encode()):
        raw = raw_exchange(server, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth + b"\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 401, raw[:200]
    raw = raw_exchange(server, f"GET /v1/models?api_key={KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert status_of(raw) == 401
    alive(server)


# -- bodies ------------------------------------------------------------------------------------------------


def test_an_oversized_body_is_413_declared_chunked_or_before_it_is_sent(server):
    status, body = post(server, "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "x" * MAX_BODY}]})
    assert_error(status, body, 413, "request_too_large")
    # declared 1 GB, nothing sent: refused from the header. The connection stays open and no body byte
    # is ever sent, so an answer at all proves the server did not wait for the body (no clock involved;
    # the socket timeout only bounds how long a broken server is waited for)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        raw = s.recv(65536)
    assert status_of(raw) == 413, raw[:200]
    # chunked, no length given: counted as it arrives
    chunk = b"x" * 50_000
    data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    raw = raw_exchange(server, b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                       + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + data)
    assert status_of(raw) == 413, raw[:200]
    alive(server)


def test_deep_json_is_400_not_a_recursion_error(server):
    for raw in (b"[" * 100_000, b'{"messages":' + b"[" * 150_000, b'{"messages":[{"role":"user","content":"x","x":' + b"{\"a\":" * 30_000 + b"1" + b"}" * 30_000 + b"}]}"):
        status, body = post(server, "/v1/chat/completions", raw)
        assert_error(status, body, 400)
    # nested just under the decoder's limit, in a free-form field that reaches the template
    deep = "[" * 900 + "]" * 900
    status, body = post(server, "/v1/render", json.dumps({**CHAT, "chat_template_kwargs": {"x": "@"}}).replace('"@"', deep).encode())
    assert status in (200, 400), body
    alive(server)


def test_invalid_utf8_and_lone_surrogates_are_400(server):
    good = json.dumps(CHAT).encode()
    for raw in (good.replace(b"hi", b"h\xff\xc0i"), good.replace(b"hi", b"\xed\xa0\x80"), b"\xff" * 100, good.replace(b'"Say hi."', b'"\\udc00"')):
        status, body = post(server, "/v1/chat/completions", raw)
        assert_error(status, body, 400)
    status, body = post(server, "/v1/tokenize", b'{"prompt": "\\ud800"}')
    assert_error(status, body, 400)
    alive(server)


def test_nan_infinity_and_huge_numbers_are_400(server):
    for field, lit in (("temperature", "NaN"), ("temperature", "Infinity"), ("top_p", "-Infinity"), ("max_tokens", "9" * 5000),
                       ("max_tokens", "1e999"), ("seed", "9" * 5000), ("top_k", "1e400")):
        raw = json.dumps({**CHAT, field: "@"}).replace('"@"', lit).encode()
        status, body = post(server, "/v1/chat/completions", raw)
        assert_error(status, body, 400)
    alive(server)


def test_thousands_of_messages_are_refused_in_bounded_time(server):
    many = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}] * 2_500
    # refused by the context check (its own error code); no wall-clock bound here: the request's time
    # is bounded by the client's timeout, and how long it takes is a benchmark's business
    status, body = post(server, "/v1/chat/completions", {**CHAT, "messages": [*many, {"role": "user", "content": "z"}]})
    assert_error(status, body, 400, "context_length_exceeded")
    status, body = post(server, "/v1/render", {"messages": many[:2000]})  # render has no context limit: bounded by the body limit
    assert status == 200 and body["num_tokens"] > 2000
    alive(server)


@pytest.mark.parametrize(
    "patch",
    [{"max_tokens": MAX_TOKENS + 1}, {"max_tokens": 10**30}, {"max_tokens": -1}, {"max_tokens": 0}, {"max_tokens": "1000"}, {"max_tokens": 1e9},
     {"max_completion_tokens": 10**6}, {"max_tokens": True}],
)
def test_max_tokens_abuse_is_400(server, patch):
    status, body = post(server, "/v1/chat/completions", {**CHAT, **patch})
    assert_error(status, body, 400)
    assert body["error"]["param"] in ("max_tokens", "max_completion_tokens"), body


def test_max_tokens_abuse_on_completions_is_400(server):
    status, body = post(server, "/v1/completions", {"prompt": "hi", "max_tokens": MAX_TOKENS + 1})
    assert_error(status, body, 400, "max_tokens_exceeded")


def test_raw_garbage_and_oversized_headers_do_not_hurt_the_server(server):
    for data in (b"\x00\xff" * 5000, b"GET /nowhere HTTP/9.9\r\n\r\n", b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
                 b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
                 b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"):
        raw = raw_exchange(server, data)
        assert status_of(raw) in (0, 400, 401, 404, 413, 431), raw[:200]  # 0: the server closed the connection
    alive(server)


# -- slow clients -----------------------------------------------------------------------------------------


def _slow_sockets(srv: ServerProcess, n: int) -> list[socket.socket]:
    """``n`` connections stuck mid-request: half sent headers only, half headers and part of a body."""
    socks = []
    for k in range(n):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        if k % 2:
            s.sendall(b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": [")
        else:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow")
        socks.append(s)
    return socks


def test_slow_clients_do_not_block_others(server):
    """100 connections stuck mid-headers or mid-body while a client trickles a body a byte every
    50 ms: other requests are answered at once, the trickled one in the end, and the stuck
    connections' descriptors are given back when they go."""
    base_fds = fds(server)
    socks = _slow_sockets(server, 100)
    body = json.dumps({"messages": [{"role": "user", "content": "slowly"}]}).encode()
    result: dict[str, object] = {}
    # the trickled body stops one byte short until the other requests have been answered: they are
    # answered while it is provably unfinished (events, not timing)
    half_sent, release = threading.Event(), threading.Event()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
            s.sendall(b"POST /v1/render HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
            for k, b in enumerate(body):
                if k == len(body) - 1:
                    half_sent.set()
                    release.wait(120)
                s.sendall(bytes([b]))
                time.sleep(0.05)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            result["status"] = status_of(out)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        assert half_sent.wait(120)
        for _ in range(3):
            status, rendered = post(server, "/v1/render", CHAT)
            assert status == 200
            alive(server)
        status, reply = post(server, "/v1/chat/completions", CHAT)
        assert status == 200 and reply["choices"][0]["message"]["content"] is not None
        assert "status" not in result  # the trickled request was still unfinished all along
        assert fds(server) >= base_fds + 100  # the stuck connections are open server-side
    finally:
        release.set()
        t.join(60)
        for s in socks:
            s.close()
    assert result.get("status") == 200
    deadline = time.monotonic() + 10
    while fds(server) > base_fds + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fds(server) <= base_fds + 2
    alive(server)


# -- the long runs -----------------------------------------------------------------------------------------


def _storm(srv: ServerProcess, n: int) -> int:
    """``n`` streaming chat requests, each cut right after its first chunk; returns how many streamed."""
    streamed = 0
    story = [{"role": "user", "content": "Write a very long story about a dragon, with many chapters."}]
    body = json.dumps({"messages": story, "max_tokens": MAX_TOKENS, "stream": True, "temperature": 1.0}).encode()

    def one() -> None:
        nonlocal streamed
        with socket.create_connection(("127.0.0.1", srv.port), timeout=120) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            got = s.recv(4096)
            if b"200 OK" in got:
                streamed += 1
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return streamed


def _queue_idle(srv: ServerProcess, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _, health = get_json(srv.base, "/health")
        if health["queue"]["running"] == 0 and health["queue"]["waiting"] == 0:
            return health
        assert time.monotonic() < deadline, health
        time.sleep(0.2)


@pytest.mark.slow
def test_a_disconnect_storm_frees_every_slot(server):
    """50 streaming requests for 256-token stories, cut after their first chunk: every generation is
    cancelled and its queue place given back within a minute (generating them all would take
    several); then the server still generates."""
    assert _storm(server, 50) == 50
    _queue_idle(server, timeout=60)
    status, reply = post(server, "/v1/chat/completions", CHAT)
    assert status == 200 and reply["choices"][0]["finish_reason"] in ("stop", "length")


ABUSE: list[tuple[str, bytes]] = [
    ("/v1/chat/completions", b"[" * 100_000),
    ("/v1/chat/completions", json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 1)}]}).encode()),
    ("/v1/chat/completions", json.dumps(CHAT).encode().replace(b"hi", b"\xff")),
    ("/v1/chat/completions", json.dumps({**CHAT, "max_tokens": 10**9}).encode()),
    ("/v1/chat/completions", json.dumps({**CHAT, "messages": [{"role": "user", "content": "x"}] * 4000}).encode()),
    ("/v1/render", json.dumps({"messages": [{"role": "user", "content": "<|im_end|>" * 2000}]}).encode()),
    ("/v1/tokenize", b'{"prompt": "\\ud800"}'),
    ("/v1/completions", b'{"prompt": [' + b"9" * 5000 + b"]}"),
    ("/v1/detokenize", b'{"tokens": [' + b"1," * 20_000 + b"1]}"),
]


@pytest.mark.slow
def test_after_an_abuse_run_fds_and_rss_are_back_near_baseline(server):
    """Warm up every path, take the baseline, then 20 rounds of the abusive requests, 100 stuck
    connections, a 50-request disconnect storm and 5 real generations: no 5xx, and afterwards the
    open descriptors are back to the baseline (+2) and RSS within 60 MB of it."""
    for path, raw in ABUSE:
        post(server, path, raw)
    _storm(server, 5)
    _queue_idle(server)
    post(server, "/v1/chat/completions", CHAT)
    time.sleep(1)
    base_fds, base_rss = fds(server), rss(server)
    statuses: dict[int, int] = {}
    for _ in range(20):
        for path, raw in ABUSE:
            status, _ = post(server, path, raw)
            statuses[status] = statuses.get(status, 0) + 1
    socks = _slow_sockets(server, 100)
    for s in socks:
        s.close()
    assert _storm(server, 50) == 50
    _queue_idle(server)
    for _ in range(5):
        status, _ = post(server, "/v1/chat/completions", CHAT)
        assert status == 200
    assert all(s < 500 for s in statuses), statuses
    deadline = time.monotonic() + 15
    while fds(server) > base_fds + 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    grown = (rss(server) - base_rss) / 2**20
    print(f"abuse run: {sum(statuses.values())} requests {statuses}, fds {base_fds} -> {fds(server)}, RSS {base_rss / 2**20:.0f} MB +{grown:.1f} MB")
    assert fds(server) <= base_fds + 2
    assert grown < 60, f"RSS grew by {grown:.1f} MB"
    alive(server)
