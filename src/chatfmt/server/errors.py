"""OpenAI-shaped error bodies: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

Every error the server answers goes through :class:`APIError`; FastAPI's own 422 validation body and
Starlette's HTML-less 404/405 are converted to this shape so that a client never sees another one.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import APIError as APIError


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, *, param: str | None = None, code: str = "not_found") -> APIError:
    return APIError(404, message, param=param, code=code)


def unauthorized(message: str = "invalid or missing API key (send 'Authorization: Bearer <key>')") -> APIError:
    return APIError(401, message, type="authentication_error", code="invalid_api_key")


def too_large(limit: int) -> APIError:
    return APIError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")


def queue_full(size: int, retry_after: int = 1) -> APIError:
    return APIError(
        429,
        f"the server is busy: {size} request(s) already waiting for the model; retry in about {retry_after} s",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def forbidden(message: str, code: str) -> APIError:
    """A request refused for where it comes from (a browser page of another origin, a Host name the
    server does not answer to)."""
    return APIError(403, message, type="permission_error", code=code)


def unsupported_media_type(given: str) -> APIError:
    return APIError(
        415,
        f"Content-Type {given!r} is not accepted: send the body as JSON with 'Content-Type: application/json'",
        code="unsupported_media_type",
    )


def request_timeout(seconds: float, received: int) -> APIError:
    return APIError(
        408,
        f"the request body did not arrive within {seconds:g} s ({received} bytes received); the connection is closed",
        code="request_timeout",
        headers={"Connection": "close"},
    )


def upstream_error(message: str, status: int = 502) -> APIError:
    return APIError(status, message, type="upstream_error", code="upstream_error")


_TYPE_TAG = re.compile(r"^(str|int|float|bool|none|[A-Z]\w*|[\w-]+\[.*\])$")


def loc_to_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"`` (OpenAI's ``param`` spelling;
    pydantic's union-member tags such as ``str`` or ``list[str]`` are left out)."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header") and not (isinstance(p, str) and _TYPE_TAG.match(p))]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or None
