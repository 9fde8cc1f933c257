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
