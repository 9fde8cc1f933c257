"""The web page at ``/``: chat with the served model and see, for every turn, exactly the prompt it
was given (token by token: control tokens marked, roles coloured, trained and untrained tokens).

The page is three static files shipped in the package (``static/``: no build step, nothing fetched
from elsewhere); everything it shows comes from the server's own endpoints: the prompt from
``POST /v1/render/tokens`` (the same rendering ``/v1/render`` and the chat route do, with each token's
text, role, message and training label), the reply from ``POST /v1/chat/completions`` streamed.
A strict Content-Security-Policy (scripts, styles and requests from this origin only, no framing)
keeps the page inert anywhere else; the API itself keeps its own origin and host checks.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .errors import not_found
from .wire import RenderRequest

if TYPE_CHECKING:
    from .app import ServerState

#: the files under ``static/`` the page is made of, and their media types
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_file(name: str) -> bytes:
    """One of the page's files, from the installed package."""
    return (resources.files("chatfmt.server") / "static" / name).read_bytes()


def prompt_tokens(state: ServerState, req: RenderRequest) -> dict[str, Any]:
    """What ``/v1/render`` says of a chat request, plus every prompt token: its id, the text it adds,
    whether it is a control token, the message it belongs to (and that message's role) and whether
    it is trained (its label is not ignored)."""
    from ..encode import encode_rendered
    from ..train.inspect import decode_pieces

    r = state.render(req, add_generation_prompt=req.add_generation_prompt)
    tok = state.engine.tokenizer
    pieces = decode_pieces(tok, r.ids)
    control = tok.control_ids
    labels: list[int] | None = None
    owners: list[int | None] | None = None
    warnings = list(r.warnings)
    if r.rendered is not None:
        ids, labels, owners = encode_rendered(r.rendered, tok)
        if ids != r.ids:  # the incremental encoder is an optimisation of this: never expected
            labels = owners = None
            warnings.append("the token view could not attribute tokens to messages (encodings differ)")
    messages = r.messages
    tokens = []
    for k, tid in enumerate(r.ids):
        owner = owners[k] if owners is not None else None
        role = messages[owner].get("role") if owner is not None and 0 <= owner < len(messages) else None
        tokens.append(
            {
                "id": tid,
                "text": pieces[k][0],
                "partial": pieces[k][1],
                "control": tid in control,
                "message": owner,
                "role": role,
                "trained": labels is not None and labels[k] >= 0,
            }
        )
    return {
        "model": state.engine.model_id,
        "format": state.engine.format.info.name,
        "prompt": r.text,
        "prompt_token_ids": r.ids,
        "num_tokens": len(r.ids),
        "num_trained": sum(1 for t in tokens if t["trained"]),
        "labels_known": labels is not None,
        "tools_rendered": r.tools_rendered,
        "not_rendered": list(r.not_rendered),
        "warnings": warnings,
        "roles": [m.get("role") for m in messages],
        "tokens": tokens,
    }


def add_web_page(app: FastAPI, state: ServerState) -> None:
    """``GET /`` (the page), ``GET /static/{name}`` (its script and style) and
    ``POST /v1/render/tokens`` (its prompt view)."""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(static_file("index.html"), media_type=FILES["index.html"], headers=HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in FILES or name == "index.html":
            raise not_found(f"no such file: /static/{name}", code="not_found")
        return Response(static_file(name), media_type=FILES[name], headers=HEADERS)

    @app.post("/v1/render/tokens", response_model=None)
    async def render_tokens(req: RenderRequest) -> Any:
        state.check_model(req.model)
        body = await run_in_threadpool(prompt_tokens, state, req)
        from .app import warning_headers

        return JSONResponse(body, headers=warning_headers(body["warnings"]))
