"""``chatfmt serve``: an OpenAI-compatible server that renders every prompt in an exact chat format
and parses every reply (content, reasoning, tool calls), for a local model or, in proxy mode, for a
raw completion endpoint of an engine already running.

    from chatfmt.server import create_app, LocalEngine
    app = create_app(LocalEngine(load_backend()), api_key="secret")   # any ASGI server runs it

    import uvicorn
    from chatfmt.server import uvicorn_config
    uvicorn.Server(uvicorn_config(app, port=8000)).run()   # as chatfmt serve: header deadline, connection cap
"""

from __future__ import annotations

from .app import ServerConfig, ServerState, create_app
from .engines import (
    UPSTREAM_KINDS,
    ChatGeneration,
    Engine,
    LocalEngine,
    PieceSource,
    Sampling,
    TextGeneration,
    UpstreamEngine,
    UpstreamKind,
    register_upstream_kind,
)
from .errors import APIError
from .scheduler import Scheduler
from .transport import uvicorn_config

__all__ = [
    "UPSTREAM_KINDS",
    "APIError",
    "ChatGeneration",
    "Engine",
    "LocalEngine",
    "PieceSource",
    "Sampling",
    "Scheduler",
    "ServerConfig",
    "ServerState",
    "TextGeneration",
    "UpstreamEngine",
    "UpstreamKind",
    "create_app",
    "register_upstream_kind",
    "uvicorn_config",
]
