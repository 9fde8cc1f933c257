"""Declarative formats in TOML: loading (with errors that name file, line and key path), ``extends``
and writing a spec back as TOML.

``parser = "hermes"`` names the registered output parser for what the format's models generate (tool
calls, reasoning); without it one is chosen from the ``[tool_calls]`` syntax.

``load_spec("my.toml")`` parses the file with :mod:`tomllib`, resolves ``extends`` (a built-in of
:data:`~chatfmt.formats.spec.BUILTIN_SPECS`, a built-in registered as a
:class:`~chatfmt.formats.spec.SpecFormat`, or another TOML file relative to this one) by a deep merge
of tables (the deriving file wins; ``name`` and ``description`` are not inherited), checks every key
against the schema of :class:`~chatfmt.formats.spec.FormatSpec` and returns a
:class:`~chatfmt.formats.spec.SpecFormat`.

Every error is a :class:`~chatfmt.errors.SpecError` naming the file that set the offending key, its
line and its key path, e.g. ``my.toml:7: roles.user.prefx: unknown key (did you mean 'prefix'?)``.
:mod:`tomllib` reports no positions for keys, so :func:`key_lines` scans the (already valid) TOML
text for key definitions: table headers, dotted keys, quoted keys and inline tables, skipping
strings, arrays and comments. Syntax errors carry the line :mod:`tomllib` reports.
"""

from __future__ import annotations

import bisect
import difflib
import re
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import SpecError
from .spec import BUILTIN_SPECS, FormatSpec, SpecFormat

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

KeyPath = tuple[str, ...]

# --------------------------------------------------------------------------------------------------
# where keys are defined: a small structural scanner for valid TOML

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}#\r\n]")


class _KeyScanner:
    """Walks valid TOML text and records the line of every key path it defines."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.newlines = [k for k, c in enumerate(text) if c == "\n"]
        self.lines: dict[KeyPath, int] = {}

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.i) + 1

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def blank(self, newlines: bool = False) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif newlines and c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def record(self, path: KeyPath, line: int) -> None:
        for k in range(1, len(path) + 1):
            self.lines.setdefault(path[:k], line)

    def key(self) -> KeyPath:
        parts = [self.key_part()]
        while True:
            self.blank()
            if self.s.startswith(".", self.i):
                self.i += 1
                self.blank()
                parts.append(self.key_part())
            else:
                return tuple(parts)

    def key_part(self) -> str:
        s = self.s
        if s.startswith('"', self.i):
            start = self.i
            self.skip_basic()
            key: str = tomllib.loads(f"k = {s[start:self.i]}")["k"]
            return key
        if s.startswith("'", self.i):
            end = s.index("'", self.i + 1)
            part = s[self.i + 1 : end]
            self.i = end + 1
            return part
        m = _BARE_KEY.match(s, self.i)
        if not m:
            raise ValueError(f"no key at {self.i}")
        self.i = m.end()
        return m.group()

    def skip_basic(self) -> None:
        s = self.s
        self.i += 1
        while s[self.i] != '"':
            self.i += 2 if s[self.i] == "\\" else 1
        self.i += 1

    def skip_multiline(self, quote: str) -> None:
        s = self.s
        self.i += 3
        while not s.startswith(quote * 3, self.i):
            self.i += 2 if quote == '"' and s[self.i] == "\\" else 1
        self.i += 3
        while self.i < len(s) and s[self.i] == quote:  # up to two quotes may end the content
            self.i += 1

    def value(self, path: KeyPath | None) -> None:
        s = self.s
        if s.startswith('"""', self.i):
            self.skip_multiline('"')
        elif s.startswith("'''", self.i):
            self.skip_multiline("'")
        elif s.startswith('"', self.i):
            self.skip_basic()
        elif s.startswith("'", self.i):
            self.i = s.index("'", self.i + 1) + 1
        elif s.startswith("[", self.i):
            self.i += 1
            while True:
                self.blank(newlines=True)
                if s.startswith("]", self.i):
                    self.i += 1
                    return
                self.value(None)
                self.blank(newlines=True)
                if s.startswith(",", self.i):
                    self.i += 1
        elif s.startswith("{", self.i):
            self.i += 1
            while True:
                self.blank()
                if s.startswith("}", self.i):
                    self.i += 1
                    return
                line = self.line()
                k = self.key()
                if path is not None:
                    self.record(path + k, line)
                self.blank()
                self.i += 1  # "="
                self.blank()
                self.value(path + k if path is not None else None)
                self.blank()
                if s.startswith(",", self.i):
                    self.i += 1
        else:
            m = _SCALAR_END.search(s, self.i)
            self.i = m.start() if m else len(s)

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        s = self.s
        try:
            while True:
                self.blank(newlines=True)
                if self.eof():
                    break
                line = self.line()
                if s.startswith("[", self.i):
                    double = s.startswith("[[", self.i)
                    self.i += 2 if double else 1
                    self.blank()
                    table = self.key()
                    self.blank()
                    self.i += 2 if double else 1
                    self.record(table, line)
                else:
                    k = self.key()
                    self.record(table + k, line)
                    self.blank()
                    self.i += 1  # "="
                    self.blank()
                    self.value(table + k)
        except (ValueError, IndexError, tomllib.TOMLDecodeError):
            pass  # not the TOML this scanner knows: keep what was found (lines are a courtesy)
        return self.lines


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line where each key path (and each table) of a valid TOML document is defined."""
    return _KeyScanner(text).scan()


# --------------------------------------------------------------------------------------------------
# layers: a parsed file (or built-in) and where its keys are


@dataclass
class _Layer:
    source: str
    data: dict[str, Any]
    lines: dict[KeyPath, int]


def _defines(data: Any, path: KeyPath) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _locate(layers: list[_Layer], path: KeyPath) -> tuple[str | None, int | None]:
    """The file and line that set ``path`` (the most derived layer wins), else of its nearest parent."""
    for k in range(len(path), 0, -1):
        sub = path[:k]
        for layer in layers:  # most derived first
            if _defines(layer.data, sub):
                return layer.source, layer.lines.get(sub)
    return (layers[0].source, None) if layers else (None, None)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if part.startswith("["):
            out += part
        else:
            out += ("." if out else "") + (part if _BARE_KEY.fullmatch(part) else f'"{part}"')
    return out


def _error(layers: list[_Layer], path: KeyPath, message: str) -> SpecError:
    source, line = _locate(layers, tuple(p for p in path if not p.startswith("[")))
    return SpecError(message, key=_dotted(path) or None, source=source, line=line)


# --------------------------------------------------------------------------------------------------
# dict <-> spec


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # datetime, date, time


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys here: {', '.join(known)})"


def _build(cls: type[_D], data: dict[str, Any], path: KeyPath, layers: list[_Layer], extra: tuple[str, ...] = ()) -> _D:
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known and key not in extra:
            raise _error(layers, (*path, key), "unknown key" + _suggest(key, [*known, *extra]))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        value, here = data[name], (*path, name)
        kind = f.metadata["kind"]
        if kind == "table":
            if not isinstance(value, dict):
                raise _error(layers, here, f"expected a table, got {_toml_type(value)}")
            kwargs[name] = _build(f.metadata["cls"], value, here, layers)
        elif kind == "strings":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise _error(layers, here, f"expected a string or an array of strings, got {_toml_type(value)}")
            for k, item in enumerate(value):
                if not isinstance(item, str):
                    raise _error(layers, (*here, f"[{k}]"), f"expected a string, got {_toml_type(item)}")
            kwargs[name] = tuple(value)
        else:
            if _toml_type(value) != kind:
                raise _error(layers, here, f"expected a {kind}, got {_toml_type(value)}")
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise _error(
                    layers, here, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}"
                )
            kwargs[name] = value
    return cls(**kwargs)


def spec_from_dict(data: dict[str, Any], *, source: str | None = None) -> FormatSpec:
    """A :class:`FormatSpec` from its TOML-shaped dict (no ``extends``); raises :class:`SpecError`."""
    return _spec_from_layers([_Layer(source or "<spec>", data, {})], data)


def _spec_from_layers(layers: list[_Layer], data: dict[str, Any]) -> FormatSpec:
    spec = _build(FormatSpec, data, (), layers)
    for key, message in spec.problems():
        path = tuple(re.findall(r"[^.\[]+|\[\d+\]", key))
        raise _error(layers, path, message)
    if spec.parser is not None:
        _check_parser(spec.parser, layers)
    return spec


def _check_parser(name: str, layers: list[_Layer]) -> None:
    """``parser`` must name a registered output parser (a built-in or an installed plugin's)."""
    from ..toolcalls.families import OUTPUT_PARSERS

    if name in OUTPUT_PARSERS:
        return
    known = OUTPUT_PARSERS.names()
    raise _error(layers, ("parser",), "unknown output parser" + _suggest(name, known).replace("known keys here", "known"))


def _default_of(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory()


def spec_to_dict(spec: Any, *, full: bool = False) -> dict[str, Any]:
    """The TOML-shaped dict of a spec (or of one of its tables): keys that differ from the defaults
    (all keys with ``full``); optional tables are written when present, even if empty."""
    out: dict[str, Any] = {}
    for f in fields(spec):
        value = getattr(spec, f.name)
        kind = f.metadata["kind"]
        if kind == "table":
            if value is None:
                continue
            sub = spec_to_dict(value, full=full)
            if sub or f.metadata["optional"] or full:
                out[f.name] = sub
        elif value is None:
            continue
        elif full or value != _default_of(f) or f.name == "name":
            out[f.name] = list(value) if kind == "strings" else value
    return out


# --------------------------------------------------------------------------------------------------
# TOML text


def _basic(s: str) -> str:
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _multiline(s: str) -> str:
    out = []
    for k, c in enumerate(s):
        if c == "\\":
            out.append("\\\\")
        elif c == '"' and (k == len(s) - 1 or s[k + 1] == '"'):
            out.append('\\"')  # never three quotes in a row, never one right before the closing ones
        elif c == "\r" or (ord(c) < 0x20 and c not in "\n\t") or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"""\n' + "".join(out) + '"""'


def toml_value(value: Any) -> str:
    """A TOML literal: strings with two or more line breaks as multi-line strings, else one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _multiline(value) if value.count("\n") >= 2 and len(value) > 40 else _basic(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(data: dict[str, Any], *, header: str = "") -> str:
    """Write a TOML-shaped spec dict: top-level keys, then one ``[table]`` each (nested as ``[a.b]``)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]

    def write(table: dict[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
        subs = [(k, v) for k, v in table.items() if isinstance(v, dict)]
        if path and (scalars or not subs):
            lines.append("")
            lines.append(f"[{'.'.join(path)}]")
        for k, v in scalars:
            lines.append(f"{k} = {toml_value(v)}")
        for k, v in subs:
            write(v, [*path, k])

    write(data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def spec_to_toml(spec: FormatSpec, *, header: str = "") -> str:
    """The TOML text of a spec; ``load_spec`` reads it back into an equal spec."""
    return dumps_toml(spec_to_dict(spec), header=header)


# --------------------------------------------------------------------------------------------------
# loading


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else in ``over`` replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _parse_text(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        if m:
            raise SpecError(
                f"invalid TOML: {msg[: m.start()]} (column {m.group(2)})", source=source, line=int(m.group(1))
            ) from None
        m = re.search(r"\s*\(at end of document\)$", msg)
        line = text.count("\n") + 1 if m else None
        raise SpecError(f"invalid TOML: {msg[: m.start()] if m else msg}", source=source, line=line) from None


def _extends_layers(
    value: Any, layer: _Layer, base_dir: Path | None, chain: list[str]
) -> list[_Layer]:
    """The layers (most derived first) that ``extends = value`` in ``layer`` brings in."""
    here = [layer]
    if not isinstance(value, str):
        raise _error(here, ("extends",), f"expected a string, got {_toml_type(value)}")
    if value.endswith(".toml") or "/" in value or "\\" in value:
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        path = path.resolve()
        if str(path) in chain:
            cycle = " -> ".join(Path(p).name for p in [*chain[chain.index(str(path)) :], str(path)])
            raise _error(here, ("extends",), f"extends cycle: {cycle}")
        if not path.is_file():
            raise _error(here, ("extends",), f"no such file: {value} (looked for {path})")
        return _load_layers(path, chain)
    from . import registry

    key = registry.resolve(value)
    spec = BUILTIN_SPECS.get(key) if key else None
    if spec is None and key is not None:
        fmt = registry.get(key)
        if isinstance(fmt, SpecFormat):
            spec = fmt.spec
        else:
            raise _error(
                here,
                ("extends",),
                f"built-in format {value!r} has no declarative spec to extend "
                f"(these do: {', '.join(sorted(BUILTIN_SPECS))}; or give a path to a .toml file)",
            )
    if spec is None:
        names = sorted(BUILTIN_SPECS)
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _error(
            here,
            ("extends",),
            f"unknown format {value!r} ({hint}extendable built-ins: {', '.join(names)}; "
            "or give a path to a .toml file)",
        )
    data = spec_to_dict(spec)
    return [_Layer(f"built-in {spec.name}", data, {})]


def _load_layers(path: Path, chain: list[str], source: str | None = None) -> list[_Layer]:
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read: {e}", source=source) from None
    return _layers_from_text(text, source, path.parent, [*chain, str(path.resolve())])


def _layers_from_text(text: str, source: str, base_dir: Path | None, chain: list[str]) -> list[_Layer]:
    data = _parse_text(text, source)
    layer = _Layer(source, data, key_lines(text))
    if "extends" not in data:
        return [layer]
    return [layer, *_extends_layers(data["extends"], layer, base_dir, chain)]


def _resolve(layers: list[_Layer], default_name: str) -> FormatSpec:
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        inherited = {k: v for k, v in layer.data.items() if k not in ("name", "description", "extends")}
        merged = _merge(merged, inherited if layer is not layers[0] else layer.data)
    merged.pop("extends", None)
    merged.setdefault("name", default_name)
    return _spec_from_layers(layers, merged)


def parse_spec(text: str, *, source: str = "<string>", name: str | None = None, base_dir: str | Path | None = None) -> SpecFormat:
    """A :class:`SpecFormat` from TOML text; ``base_dir`` resolves a relative ``extends`` path."""
    base = Path(base_dir) if base_dir is not None else None
    layers = _layers_from_text(text, source, base, [])
    return SpecFormat(_resolve(layers, name or "custom"), source=source)


def load_spec(path: str | Path) -> SpecFormat:
    """Load a TOML format file; errors are :class:`~chatfmt.errors.SpecError` (file, line, key path)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError("no such file", source=str(path))
    layers = _load_layers(p, [], source=str(path))
    return SpecFormat(_resolve(layers, p.stem), source=str(path))


__all__ = [
    "dumps_toml",
    "key_lines",
    "load_spec",
    "parse_spec",
    "spec_from_dict",
    "spec_to_dict",
    "spec_to_toml",
]
