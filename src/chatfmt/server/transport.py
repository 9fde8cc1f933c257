"""The HTTP connection layer under the app, for uvicorn: a deadline for a request's headers and a cap
on open connections, which an ASGI app cannot enforce itself (it is called only once the headers
are in). The body's deadline is the app's (:class:`~chatfmt.server.middleware.Guard`), so that it
holds under any ASGI server.

uvicorn's own options stop short of this: ``timeout_keep_alive`` closes a connection that is idle
*between* requests, and ``limit_concurrency`` answers 503 only to a request whose headers have
arrived, so a client that opens connections and sends half a request line keeps each of them (and a
file descriptor) open for ever.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import ServerConfigError
from .middleware import log_event

#: defaults of ``chatfmt serve``
HEADER_TIMEOUT = 30.0
BODY_TIMEOUT = 30.0
MAX_CONNECTIONS = 256
KEEP_ALIVE_TIMEOUT = 5


def _client(peer: Any) -> str | None:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None


def _raw_response(status: int, reason: str, error: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"error": error}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check_options(*, header_timeout: float | None = None, body_timeout: float | None = None, max_connections: int | None = None) -> None:
    """:class:`ServerConfigError` for a timeout or limit that cannot work (``None``: no limit)."""
    for flag, seconds in (("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if seconds is not None and not seconds > 0:
            raise ServerConfigError(f"{flag} must be more than 0 seconds, got {seconds:g}")
    if max_connections is not None and max_connections < 1:
        raise ServerConfigError(f"--max-connections must be at least 1, got {max_connections}")


def protocol_class(
    *, header_timeout: float | None = HEADER_TIMEOUT, max_connections: int | None = MAX_CONNECTIONS, retry_after: Callable[[], int] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with two more rules:

    - a request's headers must be complete ``header_timeout`` seconds after the connection opened
      (or, on a kept-alive connection, after the previous response); otherwise the connection is
      answered 408 (if it sent part of a request) and closed, with a ``timeout`` JSON log line. The
      same deadline holds for the rest of a body the app refused without reading (an early 4xx):
      a client trickling it is closed too;
    - a connection that would make more than ``max_connections`` open is answered 503 (with
      ``Retry-After`` from ``retry_after()``) and closed at once, before it can hold a descriptor.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    check_options(header_timeout=header_timeout, max_connections=max_connections)

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _received = 0
        _refused_logged = 0.0
        _refused_since_log = 0

        # uvicorn's H11Protocol narrows asyncio.BaseProtocol's BaseTransport parameter to Transport
        # (its own override carries the same ignore); this one follows uvicorn's signature
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if max_connections is not None and len(self.connections) > max_connections:
                self._refuse(transport)
                return
            self._sync()

        def _refuse(self, transport: asyncio.Transport) -> None:
            after = retry_after() if retry_after else 1
            transport.write(_raw_response(
                503, "Service Unavailable",
                {"message": f"too many open connections (the limit is {max_connections}); retry in about {after} s",
                 "type": "server_error", "param": None, "code": "too_many_connections"},
                {"Retry-After": str(after)},
            ))
            transport.close()
            cls = type(self)
            cls._refused_since_log += 1
            now = time.monotonic()
            if now - cls._refused_logged >= 1.0:  # one line a second under a flood
                log_event("connection_refused", reason="max_connections", limit=max_connections,
                          client=_client(self.client), refused=cls._refused_since_log)
                cls._refused_logged, cls._refused_since_log = now, 0

        def _waiting_on_client(self) -> bool:
            """Nothing for the app to do until the client sends more: no request begun or its head
            incomplete, or a body still coming for a request already answered (an early 4xx)."""
            import h11

            state = self.conn.their_state
            if state is h11.IDLE:
                return True
            return state is h11.SEND_BODY and (self.cycle is None or self.cycle.response_complete)

        def _sync(self) -> None:
            """Arm the deadline when the connection starts waiting on the client, drop it when the app
            has a whole request head (the body's own deadline is the app's)."""
            if self.transport is None or self.transport.is_closing():
                return
            if self._waiting_on_client():
                if header_timeout is not None and self._header_timer is None:
                    self._header_timer = self.loop.call_later(header_timeout, self._late)
            else:
                if self._header_timer is not None:
                    self._header_timer.cancel()
                    self._header_timer = None
                self._received = 0

        def data_received(self, data: bytes) -> None:
            import h11

            if self.conn.their_state is h11.IDLE:
                self._received += len(data)
            super().data_received(data)
            self._sync()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._received = 0
            self._sync()  # uvicorn's keep-alive timeout (shorter) still closes a silent connection first

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _late(self) -> None:
            import h11

            self._header_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            head = self.conn.their_state is h11.IDLE
            log_event("timeout", phase="headers" if head else "body", client=_client(self.client), received_bytes=self._received,
                      timeout_s=header_timeout)
            if head and self._received:  # a request begun and never finished: say why it is closed
                self.transport.write(_raw_response(
                    408, "Request Timeout",
                    {"message": f"the request headers did not arrive within {header_timeout:g} s; the connection is closed",
                     "type": "invalid_request_error", "param": None, "code": "request_timeout"},
                ))
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float | None = HEADER_TIMEOUT,
    max_connections: int | None = MAX_CONNECTIONS,
    keep_alive_timeout: int = KEEP_ALIVE_TIMEOUT,
    **options: Any,
) -> Any:
    """The ``uvicorn.Config`` ``chatfmt serve`` runs ``app`` with (``options``: more ``uvicorn.Config``
    arguments). A 503 for the connection limit carries the ``Retry-After`` of the app's queue."""
    import uvicorn

    state = getattr(getattr(app, "state", None), "chatfmt", None)
    retry_after = state.scheduler.retry_after if state is not None else None
    http = protocol_class(header_timeout=header_timeout, max_connections=max_connections, retry_after=retry_after)
    options.setdefault("log_config", None)
    options.setdefault("access_log", False)
    return uvicorn.Config(app, host=host, port=port, http=http, timeout_keep_alive=keep_alive_timeout, **options)
