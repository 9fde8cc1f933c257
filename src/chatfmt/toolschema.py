"""JSON schemas for tools given as Python functions (type hints + Google-style docstring)."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _type_schema(hint: Any) -> dict[str, Any]:
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1 and len(args) == 2:
            inner = _type_schema(non_null[0])
            if "type" in inner and isinstance(inner["type"], str):
                return {**inner, "nullable": True}
            return inner
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin is Literal:
        vals = list(args)
        base = _SIMPLE.get(type(vals[0]), "string") if vals else "string"
        return {"type": base, "enum": vals}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set):
        schema: dict[str, Any] = {"type": "array"}
        if args and origin is not tuple:
            schema["items"] = _type_schema(args[0])
        return schema
    if origin is dict or hint is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _type_schema(args[1])
        return schema
    raise TypeError(f"cannot make a JSON schema for type {hint!r}")


_ARGS_RE = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$", re.M)
_SECTION_RE = re.compile(r"^\s*(Returns|Return|Raises|Yields|Examples?):\s*$", re.M)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    doc = inspect.cleandoc(doc or "")
    m = _ARGS_RE.search(doc)
    section = None if m else _SECTION_RE.search(doc)
    desc_end = m.start() if m else (section.start() if section else len(doc))
    description = doc[:desc_end].strip()
    params: dict[str, str] = {}
    if m:
        rest = doc[m.end() :]
        end = _SECTION_RE.search(rest)
        block = rest[: end.start()] if end else rest
        current = None
        for line in block.splitlines():
            pm = re.match(r"^\s*(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
            if pm:
                current = pm.group(1)
                params[current] = pm.group(3).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return description, params


def function_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """An OpenAI tool spec ``{"type": "function", "function": {...}}`` for a Python function."""
    if not callable(fn):
        raise TypeError("a tool must be a JSON schema dict or a callable")
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    description, param_docs = _parse_docstring(fn.__doc__ or "")
    props: dict[str, Any] = {}
    required = []
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("self", "cls"):
            continue
        schema = _type_schema(hints.get(name, p.annotation))
        if name in param_docs:
            schema["description"] = param_docs[name]
        props[name] = schema
        if p.default is inspect.Parameter.empty:
            required.append(name)
    spec: dict[str, Any] = {"name": fn.__name__, "description": description}
    params: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        params["required"] = required
    spec["parameters"] = params
    return {"type": "function", "function": spec}
