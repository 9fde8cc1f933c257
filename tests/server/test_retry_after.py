"""``Retry-After`` on a 429 is the queue's expected wait: everything running or waiting, drained at
the recent mean service time, ``slots`` at a time, in whole seconds (at least 1, at most 300), not
a constant 1 s that sends every refused client back at once (the scheduler with a given clock, then
over HTTP with an engine whose generations take a known minimum time)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatfmt.server import Scheduler, create_app
from chatfmt.server.errors import APIError
from chatfmt.server.scheduler import RETRY_AFTER_MAX

from .conftest import ScriptedEngine, get_json, uvicorn_thread


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def refused_retry_after(s: Scheduler) -> int:
    with pytest.raises(APIError) as e:
        s.reserve()
    assert e.value.status == 429
    return int(e.value.headers["Retry-After"])


def test_retry_after_grows_with_the_queue_at_the_mean_service_time():
    async def run() -> list[int]:
        clock = Clock()
        seen = []
        for depth in (1, 3, 6):
            s = Scheduler(slots=1, max_queue=depth, clock=clock)
            for took in (3.0, 5.0):  # two generations served: mean 4 s
                t = s.reserve()
                clock.now += took
                s.release(t)
            s.reserve()  # running
            for _ in range(depth):
                s.reserve()  # waiting
            seen.append(refused_retry_after(s))
        return seen

    assert asyncio.run(run()) == [(1 + 1) * 4, (1 + 3) * 4, (1 + 6) * 4]


def test_more_slots_drain_the_queue_faster():
    async def run() -> int:
        clock = Clock()
        s = Scheduler(slots=4, max_queue=4, clock=clock)
        warm = [s.reserve() for _ in range(4)]
        clock.now += 10.0
        for t in warm:
            s.release(t)
        for _ in range(8):  # 4 running, 4 waiting
            s.reserve()
        return refused_retry_after(s)

    assert asyncio.run(run()) == 8 * 10 // 4


def test_before_any_generation_ends_the_longest_running_one_stands_in():
    async def run() -> tuple[int, float]:
        clock = Clock()
        s = Scheduler(slots=1, max_queue=2, clock=clock)
        s.reserve()
        clock.now += 7.5
        s.reserve()
        s.reserve()
        return refused_retry_after(s), s.expected_wait()

    retry, wait = asyncio.run(run())
    assert wait == 3 * 7.5 and retry == 23  # rounded up


@given(durations=st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=20), depth=st.integers(0, 30), slots=st.integers(1, 4))
def test_retry_after_is_a_whole_number_of_seconds_within_bounds(durations, depth, slots):
    async def run() -> tuple[int, int]:
        clock = Clock()
        s = Scheduler(slots=slots, max_queue=depth + 1, clock=clock)
        for d in durations:
            t = s.reserve()
            clock.now += d
            s.release(t)
        for _ in range(slots + depth):
            s.reserve()
        shallow = s.retry_after()
        s.reserve()
        return shallow, s.retry_after()

    shallow, deeper = asyncio.run(run())
    assert 1 <= shallow <= deeper <= RETRY_AFTER_MAX


def test_a_cancelled_place_is_not_a_service_time():
    async def run() -> float | None:
        clock = Clock()
        s = Scheduler(slots=1, max_queue=2, clock=clock)
        t = s.reserve()
        w = s.reserve()
        clock.now += 100.0
        s.cancel(w)  # left the line: never held the slot
        clock.now += 2.0
        s.release(t)
        return s.mean_service_time()

    assert asyncio.run(run()) == 102.0


# -- over HTTP -----------------------------------------------------------------------------------------------

TOKEN_DELAY = 0.05
TOKENS = 10


@pytest.fixture(scope="module")
def chatml_format():
    """ChatML: its control tokens are SmolLM2's own (these tests need no tool-call syntax)."""
    from chatfmt.formats.loader import load_format

    return load_format("chatml")


def test_a_429_says_when_the_queue_will_have_drained(smol_tokenizer, chatml_format):
    """Each generation sleeps at least TOKENS x TOKEN_DELAY = 0.5 s; with one running and four waiting,
    the refused client is told at least 5 x 0.5 s, and /health shows the same estimate."""
    eng = ScriptedEngine(smol_tokenizer, chatml_format, "la ", endless=True, delay=TOKEN_DELAY)
    with uvicorn_thread(create_app(eng, max_queue=4)) as base:
        host, port = base.removeprefix("http://").split(":")

        def chat() -> tuple[int, dict[str, str], dict]:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": TOKENS}
                conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
            finally:
                conn.close()

        assert chat()[0] == 200  # one served: the mean service time is known
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(chat()[0])) for _ in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while get_json(base, "/health")[1]["queue"]["waiting"] != 4:
            assert time.monotonic() < deadline, get_json(base, "/health")
            time.sleep(0.01)
        expected = get_json(base, "/health")[1]["queue"]["expected_wait_s"]
        status, headers, body = chat()
        for t in threads:
            t.join(60)
        assert status == 429 and body["error"]["code"] == "queue_full"
        retry = int(headers["retry-after"])
        assert retry >= 5 * TOKENS * TOKEN_DELAY and expected >= 5 * TOKENS * TOKEN_DELAY
        assert f"retry in about {retry} s" in body["error"]["message"]
        assert sorted(results) == [200] * 5
