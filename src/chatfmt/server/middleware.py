"""Pure ASGI middleware (streaming-safe): JSON access logs; where a request may come from (the
``Host`` it names, the browser ``Origin`` it carries, CORS for the origins allowed); the API key,
the body's ``Content-Type``, its size limit and its read deadline."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ServerConfigError
from .errors import APIError, forbidden, request_timeout, too_large, unauthorized, unsupported_media_type

ACCESS_LOGGER = "chatfmt.server.access"


def log_event(event: str, **fields: Any) -> None:
    """A JSON line on the access logger at WARNING (shown with ``--quiet`` too): connections closed
    for a timeout, refused for the connection limit, and the like."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    logging.getLogger(ACCESS_LOGGER).warning(json.dumps(record))


async def send_error(send: Send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class AccessLog:
    """One JSON line per request on the ``chatfmt.server.access`` logger: time, client, method, path,
    status, bytes sent, duration, request id (also sent back as ``x-request-id``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        info: dict[str, Any] = {"status": None, "bytes": 0}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body":
                info["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            if self.log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                record = {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "event": "access",
                    "request_id": rid,
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": info["status"],
                    "bytes": info["bytes"],
                    "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
                }
                self.log.info(json.dumps(record))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == name:
            return bytes(v).decode("latin-1")
    return None


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``"Example.com:8000"`` -> ``("example.com", 8000)``, ``"[::1]"`` -> ``("::1", None)``; None if
    it is not a host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = value.partition(":")
    host = host.rstrip(".")
    if not host or any(c in host for c in "/?#@ \t"):
        return None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return host, int(port_text)
    return host, None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_DEFAULT_PORT = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """``"HTTP://Example.com:80"`` -> ``"http://example.com"`` (scheme and host lowercase, a default
    port dropped); None if it is not a ``scheme://host[:port]`` origin."""
    scheme, sep, rest = origin.strip().partition("://")
    scheme = scheme.lower()
    rest = rest[:-1] if rest.endswith("/") else rest  # "http://localhost:3000/" as written in a flag
    if not sep or scheme not in _DEFAULT_PORT or not rest:
        return None
    parts = _split_host(rest)
    if parts is None:
        return None
    host, port = parts
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORT[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def check_origins(origins: Iterable[str]) -> set[str]:
    """The normalized origins (``*`` left out); :class:`ServerConfigError` names the first that is
    not ``scheme://host[:port]``."""
    out: set[str] = set()
    for o in origins:
        if o.strip() == "*":
            continue
        n = normalize_origin(o)
        if n is None:
            raise ServerConfigError(f"--cors-allow-origin {o!r} is not an origin: write scheme://host[:port], e.g. http://localhost:3000")
        out.add(n)
    return out


class OriginGuard:
    """Who may talk to the server, checked before anything else:

    - ``Host`` (DNS rebinding: a page on an attacker's name that resolves to this machine): an IP
      address, ``localhost`` and ``*.localhost`` are always accepted (a rebinding needs a name the
      attacker owns); any other name only if listed in ``allowed_hosts`` (``.example.com`` covers the
      domain and its subdomains, ``*`` turns the check off). Otherwise 403 ``host_not_allowed``.
    - ``Origin`` (a web page open in the user's browser POSTing here; browsers send it on every
      cross-origin request and on every POST): accepted when it is the server's own origin (its host
      and port are the request's ``Host``) or listed in ``cors_allow_origins`` (``*``: any); otherwise
      403 ``origin_not_allowed``, ``Origin: null`` included, before the body is read. For the origins
      listed, CORS preflights are answered and responses carry ``Access-Control-Allow-Origin``.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (), cors_allow_origins: Iterable[str] = ()) -> None:
        self.app = app
        hosts = [h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()]
        self.any_host = "*" in hosts
        self.host_names = {h for h in hosts if not h.startswith(".")}
        self.host_suffixes = tuple(h for h in hosts if h.startswith("."))
        origins = [o.strip() for o in cors_allow_origins if o.strip()]
        self.any_origin = "*" in origins
        self.origins = check_origins(origins)

    def host_allowed(self, host: str) -> bool:
        if self.any_host or _is_ip(host) or host == "localhost" or host.endswith(".localhost"):
            return True
        return host in self.host_names or any(host.endswith(s) or host == s[1:] for s in self.host_suffixes)

    def _own_origin(self, origin: str, host_header: str | None) -> bool:
        if host_header is None:
            return False
        parts = _split_host(host_header)
        if parts is None:
            return False
        scheme = origin.split("://", 1)[0]
        host, port = parts
        shown = f"[{host}]" if ":" in host else host
        own = f"{scheme}://{shown}" if port is None or port == _DEFAULT_PORT[scheme] else f"{scheme}://{shown}:{port}"
        return origin == own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host_header = _header(scope, b"host")
        if host_header is not None:
            parts = _split_host(host_header)
            if parts is None or not self.host_allowed(parts[0]):
                shown = host_header[:100]
                await send_error(send, forbidden(
                    f"the Host {shown!r} is not one this server answers to (DNS rebinding protection); "
                    f"start it with --allowed-hosts {parts[0] if parts else shown} if that name is really this server",
                    "host_not_allowed",
                ))
                return
        origin_header = _header(scope, b"origin")
        if origin_header is None:
            await self.app(scope, receive, send)
            return
        origin = normalize_origin(origin_header)
        own = origin is not None and self._own_origin(origin, host_header)
        listed = origin is not None and (self.any_origin or origin in self.origins)
        if not (own or listed):
            shown = origin_header[:200]
            await send_error(send, forbidden(
                f"cross-origin request from {shown!r} refused (a web page may not use this server); "
                f"start it with --cors-allow-origin {origin or shown} to allow that origin",
                "origin_not_allowed",
            ))
            return
        if own:
            await self.app(scope, receive, send)
            return
        assert origin is not None
        cors = [(b"access-control-allow-origin", origin_header.strip().encode("latin-1")), (b"vary", b"Origin")]
        if scope.get("method") == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            requested = _header(scope, b"access-control-request-headers") or ""
            headers = [
                *cors,
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ]
            if requested.strip():
                headers.append((b"access-control-allow-headers", requested.strip().encode("latin-1")))
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        async def send_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                expose = (b"access-control-expose-headers", b"x-request-id, retry-after, x-chatfmt-warning")
                message = {**message, "headers": [*message.get("headers", []), *cors, expose]}
            await send(message)

        await self.app(scope, receive, send_cors)


class Guard:
    """The API key (``Authorization: Bearer KEY`` or ``x-api-key``) on ``/v1/*``; on POST a JSON
    ``Content-Type`` (``application/json``, charset UTF-8 if one is named; none at all is read as
    JSON; anything else is a 415, so that no form or text/plain body a browser can send without a
    CORS preflight is ever read); the body limit (413 before the body reaches the app; the body is
    read here, so a chunked upload is counted too) and its read deadline (408 and the connection
    closed when the whole body has not arrived ``body_timeout`` seconds after the headers)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, body_timeout: float | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    @staticmethod
    def _json_content_type(value: str) -> bool:
        media, *params = value.split(";")
        if media.strip().lower() != "application/json":
            return False
        for p in params:
            name, _, v = p.partition("=")
            if name.strip().lower() == "charset" and v.strip().strip('"').lower() not in ("utf-8", "utf8"):
                return False
        return True

    def _authorized(self, scope: Scope) -> bool:
        if not self.api_key or not scope.get("path", "").startswith("/v1"):
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        if given.lower().startswith("bearer "):
            given = given[7:].strip()
        else:
            given = headers.get(b"x-api-key", b"").decode("latin-1")
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await send_error(send, unauthorized())
            return
        limit = self.max_body_bytes
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await send_error(send, too_large(limit))
                    return
        if scope.get("method") == "POST":
            given = _header(scope, b"content-type")
            if given is not None and not self._json_content_type(given):
                await send_error(send, unsupported_media_type(given[:100]))
                return
            # the API speaks JSON only: a body sent without the header is read as JSON
            headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        chunks: list[bytes] = []
        size = 0
        deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout
        while True:
            if deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    client = scope.get("client")
                    log_event(
                        "timeout", phase="body", client=f"{client[0]}:{client[1]}" if client else None,
                        method=scope.get("method"), path=scope.get("path"), received_bytes=size, timeout_s=self.body_timeout,
                    )
                    await send_error(send, request_timeout(self.body_timeout or 0, size))
                    return
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await send_error(send, too_large(limit))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect

        await self.app(scope, replay, send)
