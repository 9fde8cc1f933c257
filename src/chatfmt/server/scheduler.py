"""A bounded FIFO queue in front of the model: ``slots`` generations run at once (one for a local
model), at most ``max_queue`` requests wait, in arrival order; one more gets a 429 whose
``Retry-After`` is the queue's expected wait. A streamed response that waits has
:func:`with_keepalive` send comment lines meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from .errors import queue_full

#: how many recent generations the mean service time is taken over
SERVICE_WINDOW = 16
#: bounds of the ``Retry-After`` a refused request is given, in seconds
RETRY_AFTER_MIN = 1
RETRY_AFTER_MAX = 300


class Scheduler:
    """Hands out generation slots first come, first served, and keeps the recent service times (slot
    held from grant to release) that :meth:`expected_wait` estimates a new request's wait from."""

    def __init__(self, slots: int = 1, max_queue: int = 16, *, clock: Callable[[], float] = time.monotonic) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.slots = slots
        self.max_queue = max_queue
        self.clock = clock
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: grant time (monotonic) of every slot held now
        self._granted: dict[asyncio.Future[None], float] = {}
        self._service: deque[float] = deque(maxlen=SERVICE_WINDOW)
        #: requests served since start (for /health)
        self.served = 0

    @property
    def running(self) -> int:
        return self.slots - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def mean_service_time(self) -> float | None:
        """Mean seconds a slot was held over the last :data:`SERVICE_WINDOW` generations (None before
        the first one ends)."""
        return sum(self._service) / len(self._service) if self._service else None

    def expected_wait(self) -> float:
        """Seconds until a request arriving now would get a slot: everything running or waiting
        drained at the recent mean service time, ``slots`` at a time. Before any generation has ended,
        the longest-running current one stands in for the mean."""
        mean = self.mean_service_time()
        if mean is None:
            now = self.clock()
            mean = max((now - t for t in self._granted.values()), default=0.0)
        return (self.running + self.waiting) * mean / self.slots

    def retry_after(self) -> int:
        """:meth:`expected_wait` as whole seconds for a ``Retry-After`` header, rounded up and clamped
        to [:data:`RETRY_AFTER_MIN`, :data:`RETRY_AFTER_MAX`]."""
        return min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, math.ceil(self.expected_wait())))

    def _grant(self, fut: asyncio.Future[None]) -> None:
        self._granted[fut] = self.clock()
        fut.set_result(None)

    def reserve(self) -> asyncio.Future[None]:
        """Take a place in line now (raises the 429 :class:`APIError` when the queue is full); await
        the returned future for the slot. A place that is given up must be :meth:`cancel`-ed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._free > 0 and not self._waiters:
            self._free -= 1
            self._grant(fut)
            return fut
        if self.waiting >= self.max_queue:
            raise queue_full(self.waiting, self.retry_after())
        self._waiters.append(fut)
        return fut

    def cancel(self, fut: asyncio.Future[None]) -> None:
        """Give up a place: leave the line, or hand the slot on if it was already granted."""
        if fut.done() and not fut.cancelled():
            self.release(fut)
            return
        fut.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)

    def release(self, ticket: asyncio.Future[None] | None = None) -> None:
        """Free a slot (``ticket``: the future :meth:`reserve` gave its holder, whose service time is
        then recorded): the longest waiting request gets it."""
        self.served += 1
        granted = self._granted.pop(ticket, None) if ticket is not None else None
        if granted is not None:
            self._service.append(self.clock() - granted)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self._grant(fut)
                return
        self._free += 1


#: the SSE comment line a waiting stream sends (clients skip lines that start with ``:``)
KEEPALIVE = ": keep-alive\n\n"


async def with_keepalive(content: AsyncIterator[str], interval: float | None) -> AsyncIterator[str]:
    """``content``'s chunks, and :data:`KEEPALIVE` whenever it has sent nothing for ``interval``
    seconds (a request waiting in the queue, a long prompt evaluation), so that proxies and clients
    with a read timeout keep the connection. ``interval`` None or 0: ``content`` as it is."""
    if not interval or interval <= 0:
        async for chunk in content:
            yield chunk
        return
    pending: asyncio.Task[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(content.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield KEEPALIVE
                continue
            task, pending = pending, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        if pending is not None:  # the client left (or the server stops) while the content waited
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()
