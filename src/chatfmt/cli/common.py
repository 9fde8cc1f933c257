"""Shared CLI helpers: reading inputs and reporting user errors as one line on stderr."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..errors import ChatfmtError, ChatfmtWarning

EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print one clear line to stderr and exit with code 2 (no traceback)."""
    typer.echo(f"chatfmt: error: {message}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn chatfmt's own errors (bad input, bad format) into one-line messages, exit 2."""
    try:
        yield
    except ChatfmtError as e:
        fail(str(e))
    except (OSError, UnicodeDecodeError) as e:
        fail(str(e))


def warn(message: str) -> None:
    """One ``chatfmt: warning: ...`` line on stderr."""
    typer.echo(f"chatfmt: warning: {message}", err=True)


@contextmanager
def chatfmt_warnings() -> Iterator[None]:
    """Show chatfmt's own warnings (:class:`~chatfmt.errors.ChatfmtWarning`: a template rendered
    after normalising its input, tools or documents a format leaves out, ...) as one
    ``chatfmt: warning:`` line each on stderr, each distinct line once; other warnings as Python
    shows them."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.simplefilter("always", ChatfmtWarning)

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if isinstance(category, type) and issubclass(category, ChatfmtWarning):
                text = str(message)
                if text not in seen:
                    seen.add(text)
                    warn(text)
                return
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


#: help of ``--template-kwarg`` (render, encode, prepare, chat, serve)
TEMPLATE_KWARG_HELP = (
    "A template keyword argument KEY=VALUE (repeatable); VALUE is read as JSON when it parses "
    "(false, 3, \"x\", [1]), else taken as a string: --template-kwarg enable_thinking=false."
)
#: the ``--template-kwarg`` option of a command (values for :func:`template_kwargs_option`)
TemplateKwargOption = Annotated[list[str] | None, typer.Option("--template-kwarg", help=TEMPLATE_KWARG_HELP)]


def template_kwargs_option(values: list[str] | None, option: str = "--template-kwarg") -> dict[str, Any]:
    """``KEY=VALUE`` strings -> ``{KEY: VALUE}``, VALUE parsed as JSON when it parses (``false``,
    ``0.5``, ``[\"a\"]``, ``null``), else kept as the string; a malformed item or a key given twice
    with different values is one line, exit 2."""
    out: dict[str, Any] = {}
    for item in values or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"{option} takes KEY=VALUE (e.g. enable_thinking=false), got {item!r}")
        if not key.isidentifier():
            fail(f"{option}: {key!r} is not a keyword name (letters, digits and _, not starting with a digit)")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if key in out and out[key] != value:
            fail(f"{option}: {key!r} is given twice, with different values")
        out[key] = value
    return out


def read_json_input(path: str | None) -> tuple[Any, str]:
    """Read one JSON value from a file or ``-`` (stdin); errors name the file and line."""
    if path in (None, "-"):
        name = "<stdin>"
        text = sys.stdin.read()
    else:
        name = path
        p = Path(path)
        if not p.is_file():
            fail(f"{path}: no such file")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            fail(f"{path}: not valid UTF-8 (byte {e.start})")
    try:
        return json.loads(text), name
    except json.JSONDecodeError as e:
        fail(f"{name}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})")


# -- the options ``chat`` and ``serve`` share: the same names (old spellings kept as aliases), the same help

#: ``--backend`` of chat and serve
BackendOption = Annotated[
    str, typer.Option("--backend", "-b", help="auto, transformers or llama.cpp (auto: llama.cpp for a GGUF when it works here).")
]
#: ``--format`` of chat and serve (``--chat-format``: serve's old spelling)
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format", "--chat-format", "-f",
        help="Chat format: built-in name, .toml, .jinja, tokenizer_config.json, model dir, .gguf or Hub id (default: the model's own).",
    ),
]
#: ``--n-ctx`` of chat and serve (``--ctx``: chat's old spelling)
NCtxOption = Annotated[
    int | None, typer.Option("--n-ctx", "--ctx", help="Context length in tokens (default: the model's; 4096 for serve --upstream).")
]
THREADS_HELP = (
    "CPU threads for the model (torch intra-op threads; llama.cpp n_threads and n_threads_batch). "
    "Default: the usable cores minus one (half of them from 5 up), fewer when other work keeps "
    "cores busy at start; 0: the library's own default."
)
DEVICE_HELP = "transformers: cpu, cuda, cuda:N, mps or auto (cuda when available, else cpu). llama.cpp: cpu or auto only."
DTYPE_HELP = "transformers: auto (the library's default), float32, bfloat16 or float16. Not for llama.cpp (a GGUF runs in its own types)."
N_GPU_LAYERS_HELP = "llama.cpp: layers to offload to the GPU (-1: all; needs a GPU build of llama-cpp-python). Not for transformers."
#: ``--threads`` of chat and serve
ThreadsOption = Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)]
#: ``--device`` of chat and serve
DeviceOption = Annotated[str | None, typer.Option("--device", help=DEVICE_HELP)]
#: ``--dtype`` of chat and serve
DtypeOption = Annotated[str | None, typer.Option("--dtype", help=DTYPE_HELP)]
#: ``--n-gpu-layers`` of chat and serve
NGpuLayersOption = Annotated[int | None, typer.Option("--n-gpu-layers", help=N_GPU_LAYERS_HELP)]


def machine_options(threads: int | None, device: str | None, dtype: str | None, n_gpu_layers: int | None) -> dict[str, Any]:
    """``load_backend``'s keywords for ``--threads``, ``--device``, ``--dtype``, ``--n-gpu-layers``
    (only those given: the defaults are ``load_backend``'s)."""
    given = {"threads": threads, "device": device, "dtype": dtype, "n_gpu_layers": n_gpu_layers}
    return {k: v for k, v in given.items() if v is not None}
