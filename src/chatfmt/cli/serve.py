"""``chatfmt serve``: an OpenAI-compatible server for a local model, or a proxy in front of a raw
completion endpoint, with any chat format."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer

from .common import (
    BackendOption,
    DeviceOption,
    DtypeOption,
    FormatOption,
    NCtxOption,
    NGpuLayersOption,
    TemplateKwargOption,
    ThreadsOption,
    fail,
    machine_options,
    template_kwargs_option,
    user_errors,
)

if TYPE_CHECKING:
    from ..formats.base import ChatFormat
    from ..tokenizers.base import Tokenizer


def build_engine(
    *,
    model: str | Path | None,
    backend: str,
    chat_format: str | None,
    tokenizer: str | None,
    model_name: str | None,
    upstream: str | None,
    upstream_kind: str,
    upstream_model: str | None,
    upstream_prompt: str,
    upstream_api_key: str | None,
    upstream_concurrency: int,
    n_ctx: int | None,
    allow_missing_tokens: bool = False,
    machine: dict[str, Any] | None = None,
) -> Any:
    """The engine a ``chatfmt serve`` command line describes. A format and tokenizer that do not fit
    each other (see :mod:`chatfmt.compat`) are refused before any model is loaded, unless
    ``allow_missing_tokens``. ``machine``: ``load_backend``'s ``threads``, ``device``, ``dtype`` and
    ``n_gpu_layers`` (refused in proxy mode, where no model runs here)."""
    from ..compat import check_tokenizer
    from ..formats.loader import load_format, with_tokenizer_tokens
    from ..hub import hub_ref
    from ..server.engines import LocalEngine, UpstreamEngine

    if any(hub_ref(x) is not None for x in (model, chat_format, tokenizer)):
        # the log is JSON lines: huggingface_hub's progress bars would break it
        try:
            from huggingface_hub.utils.tqdm import disable_progress_bars

            disable_progress_bars()
        except ImportError:
            pass  # resolving says what to install
    if upstream:
        if machine:
            flags = ", ".join("--" + k.replace("_", "-") for k in machine)
            fail(f"{flags}: no model runs here with --upstream (set them on the upstream engine)")
        if not tokenizer:
            fail("--upstream needs --tokenizer (the upstream model's tokenizer: a file, a model dir, a .gguf or a Hub id)")
        from ..tokenizers import load_tokenizer

        tok = load_tokenizer(tokenizer)
        fmt = with_tokenizer_tokens(load_format(chat_format or tokenizer), tok)
        check_tokenizer(fmt, tok, allow_missing_tokens=allow_missing_tokens)
        return UpstreamEngine(
            upstream,
            kind=upstream_kind,
            tokenizer=tok,
            format=fmt,
            n_ctx=n_ctx or 4096,
            model_id=model_name,
            upstream_model=upstream_model,
            prompt_mode=upstream_prompt,
            api_key=upstream_api_key,
            slots=upstream_concurrency,
        )
    from ..hub import local
    from ..inference.backends import load_backend

    if hub_ref(model) is not None:
        # a Hub id: its files are fetched once, here, and the model, its format and tokenizer all
        # come from that snapshot
        logging.getLogger("chatfmt.server").info("fetching %s from the Hub (or its cache)", model)
        model = str(local(model, "model", backend=backend))
    options: dict[str, Any] = {}
    # the format and tokenizer given (names or paths), replaced by the loaded and checked objects
    fmt_arg: str | ChatFormat | None = chat_format
    tok_arg: str | Tokenizer | None = tokenizer
    if n_ctx:
        options["n_ctx"] = n_ctx
    if chat_format or tokenizer:
        # the caller's format or tokenizer: load both (the model's own for the other) and check them
        # before the model loads; the loaded objects are used below
        from ..models import default_model_path
        from ..tokenizers import load_tokenizer

        own = model if model is not None else default_model_path()
        loaded_tok = load_tokenizer(tokenizer or own)
        checked = load_format(chat_format or own)
        check_tokenizer(checked, loaded_tok, allow_missing_tokens=allow_missing_tokens)
        fmt_arg = checked if chat_format else None
        tok_arg = loaded_tok
    be = load_backend(model, backend, **options, **(machine or {}))
    local_tok: Tokenizer | None = None
    if tok_arg:
        from ..tokenizers import load_tokenizer

        local_tok = load_tokenizer(tok_arg)
    local_fmt = with_tokenizer_tokens(load_format(fmt_arg), local_tok or be.tokenizer) if fmt_arg else None
    return LocalEngine(be, format=local_fmt, tokenizer=local_tok, model_id=model_name)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _JSONLines(logging.Formatter):
    """Access records are JSON already; other records become ``{"level", "logger", "message"}``
    (a Python warning also has ``category`` and ``where``, its file and line)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        if record.name == "chatfmt.server.access":
            return record.getMessage()
        out = {"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        for key in ("category", "where"):
            if hasattr(record, f"warning_{key}"):
                out[key] = getattr(record, f"warning_{key}")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a record comes (not as it was when the handler was
    made), so a replaced or closed stream (an in-process CLI run) is never written to."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _log_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """``warnings.showwarning`` for the server: a record on ``py.warnings`` (Python's filters still
    decide what is shown: by default once per place)."""
    logging.getLogger("py.warnings").warning(
        "%s", message, extra={"warning_category": category.__name__, "warning_where": f"{filename}:{lineno}"}
    )


#: loggers whose records the server log shows (the root catches everything else that propagates)
_LOGGERS = ("chatfmt.server", "uvicorn", "uvicorn.error", "uvicorn.access", "py.warnings")


def _setup_logging(quiet: bool) -> logging.Handler:
    """Every line on stderr is one JSON object: chatfmt's, uvicorn's, Python warnings and libraries'
    log records. ``quiet`` drops the access log only."""
    import warnings

    handler = _StderrHandler()
    handler.setFormatter(_JSONLines())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(logging.INFO)
        lg.propagate = False
    logging.getLogger("chatfmt.server.access").setLevel(logging.WARNING if quiet else logging.INFO)
    warnings.showwarning = _log_warning
    _route_library_logs(handler)
    return handler


def _route_library_logs(handler: logging.Handler) -> None:
    """Libraries that attach a stderr handler of their own (transformers, when installed: its
    logging module is light, the models are not imported) log through ``handler`` instead."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
    except (ImportError, AttributeError):  # pragma: no cover - an older transformers
        return
    lg = logging.getLogger("transformers")
    lg.handlers = [handler]
    lg.propagate = False


# repeatable options (module-level: a list default is mutable)
_CORS_ALLOW_ORIGIN = typer.Option(
    None, "--cors-allow-origin", help="A browser origin (scheme://host[:port], or *) allowed to call the API besides the server's own; repeatable."
)
_ALLOWED_HOSTS = typer.Option(
    None, "--allowed-hosts",
    help="Host names accepted besides IP addresses, localhost and --host (.example.com: with subdomains; *: any); repeatable, comma-separated.",
)


def serve_cmd(
    model: str = typer.Option(
        None, "--model", "-m", help="A GGUF file, a model dir or a Hub id ORG/NAME[@REV][:FILE.gguf] (default: SmolLM2-135M-Instruct)."
    ),
    gguf_file: str = typer.Option(None, "--gguf-file", help="The GGUF file to run in --model's directory or Hub repository."),
    backend: BackendOption = "auto",
    chat_format: FormatOption = None,
    tokenizer: str = typer.Option(None, "--tokenizer", "-t", help="Tokenizer: a file, model dir, .gguf or Hub id (required with --upstream; default: the model's)."),
    model_name: str = typer.Option(None, "--model-name", help="The model id clients send (default: the model file's name, or the Hub repo id)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    api_key: str = typer.Option(None, "--api-key", envvar="CHATFMT_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1/*."),
    max_queue: int = typer.Option(16, "--max-queue", help="Requests that may wait for the model; one more gets a 429."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", help="Largest request body (413 above)."),
    max_tokens_limit: int = typer.Option(4096, "--max-tokens-limit", help="Largest max_tokens a request may ask for."),
    n_ctx: NCtxOption = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    n_gpu_layers: NGpuLayersOption = None,
    upstream: str = typer.Option(None, "--upstream", help="Proxy mode: base URL of a raw completion server."),
    upstream_kind: str = typer.Option("llama.cpp", "--upstream-kind", help="llama.cpp (/completion), openai-completions (/v1/completions) or llama-cpp-python (its server's /v1/completions)."),
    upstream_model: str = typer.Option(None, "--upstream-model", help="The model name to send upstream (openai-completions)."),
    upstream_prompt: str = typer.Option("ids", "--upstream-prompt", help="Send the prompt as token 'ids' (exact) or as 'text'."),
    upstream_api_key: str = typer.Option(None, "--upstream-api-key", envvar="CHATFMT_UPSTREAM_API_KEY", help="Bearer key for the upstream."),
    upstream_concurrency: int = typer.Option(4, "--upstream-concurrency", help="Requests sent upstream at once."),
    allow_missing_tokens: bool = typer.Option(
        False, "--allow-missing-tokens", help="Serve even if the tokenizer lacks a token the format relies on (refused by default)."
    ),
    header_timeout: float = typer.Option(30.0, "--header-timeout", help="Seconds a request's headers may take to arrive (408 and closed after)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds a request body may take to arrive after its headers (408 and closed after)."),
    max_connections: int = typer.Option(256, "--max-connections", help="Open connections at most; one more is answered 503 and closed."),
    cors_allow_origin: list[str] = _CORS_ALLOW_ORIGIN,
    allowed_hosts: list[str] = _ALLOWED_HOSTS,
    sse_keepalive: float = typer.Option(
        15.0, "--sse-keepalive", help="Seconds between ': keep-alive' comment lines on a stream that has nothing to send yet (queued); 0: none."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No access log (the startup line, warnings and errors stay)."),
    template_kwarg: TemplateKwargOption = None,
) -> None:
    """Serve the OpenAI API (chat and text completions, models, health) plus /v1/render, /v1/tokenize
    and /v1/detokenize, rendering every prompt in the exact chat format and parsing replies into
    content, reasoning_content and tool_calls. With --upstream, proxy to a running engine's raw
    completion endpoint instead of loading a model."""
    try:
        import uvicorn
    except ImportError:
        fail("chatfmt serve needs the serve extra: pip install 'chatfmt[serve]'")
    from ..server import create_app

    template_kwargs = template_kwargs_option(template_kwarg)  # defaults; a request's chat_template_kwargs win
    _setup_logging(quiet)
    with user_errors():
        from ..server.middleware import check_origins
        from ..server.transport import check_options

        check_options(header_timeout=header_timeout, body_timeout=body_timeout, max_connections=max_connections)
        if sse_keepalive < 0:
            fail(f"--sse-keepalive must be >= 0 seconds (0: none), got {sse_keepalive}")
        check_origins(cors_allow_origin or ())  # before the model loads
        model_ref: str | Path | None = model
        if gguf_file is not None:
            from ..hub import with_gguf_file

            model_ref = with_gguf_file(model, gguf_file)
        try:
            engine = build_engine(
                model=model_ref,
                backend=backend,
                chat_format=chat_format,
                tokenizer=tokenizer,
                model_name=model_name,
                upstream=upstream,
                upstream_kind=upstream_kind,
                upstream_model=upstream_model,
                upstream_prompt=upstream_prompt,
                upstream_api_key=upstream_api_key,
                upstream_concurrency=upstream_concurrency,
                n_ctx=n_ctx,
                allow_missing_tokens=allow_missing_tokens,
                machine=machine_options(threads, device, dtype, n_gpu_layers),
            )
        except ValueError as e:
            fail(str(e))
        hosts = tuple(h.strip() for value in allowed_hosts or () for h in value.split(",") if h.strip())
        if host not in ("", "0.0.0.0", "::") and not _is_ip(host):
            hosts += (host,)  # --host names this machine: it answers to that name
        app = create_app(
            engine, api_key=api_key, max_queue=max_queue, max_body_bytes=max_body_bytes, max_tokens_limit=max_tokens_limit,
            allow_missing_tokens=allow_missing_tokens,
            allowed_hosts=hosts, cors_allow_origins=tuple(cors_allow_origin or ()), body_timeout=body_timeout,
            template_kwargs=template_kwargs, sse_keepalive=sse_keepalive or None,
        )
        from ..server.transport import uvicorn_config

        config = uvicorn_config(app, host=host, port=port, header_timeout=header_timeout, max_connections=max_connections,
                                timeout_graceful_shutdown=5)
    logging.getLogger("chatfmt.server").info(
        "serving %s (%s) on http://%s:%d", engine.model_id, engine.format.info.name, host, port
    )
    uvicorn.Server(config).run()
