"""Jinja export of built-in formats that have no declarative spec.

Each exportable built-in has a hand-written chat template of its own in ``templates/<name>.jinja``,
written from what the Python format does (not from a vendor's template text). :func:`template` puts
the shared macros of :data:`PRELUDE` in front of it, so every exported template reads message content
the way :attr:`chatfmt.messages.Message.text` does (a string as is, text parts joined with ``"\\n"``,
``None`` as ``""``) and tool-call arguments the way chatfmt does (an object dumped with ``tojson``; a
JSON string written as given, which agrees when the string is ``json.dumps`` output).

A family opts in by naming its body file (``Family(export="qwen3.jinja")``); :func:`export` is the
loader :func:`chatfmt.formats.export.to_jinja` and :attr:`~chatfmt.formats.family.Family.export_template`
use. What an instance renders with beyond the family's fixed text (a BOS token, a default system
prompt) comes from :meth:`~chatfmt.formats.base.ChatFormat.jinja_variables`. The shared macro files
``templates/_*.jinja`` a body calls into are put in front of it. A format that no template can
reproduce exactly sets ``jinja_unsupported`` to the reason instead.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..base import ChatFormat
    from ..family import Family

#: macros every exported built-in template starts with
PRELUDE = """\
{%- macro text_of(message) -%}
    {%- if message.content is string -%}
        {{- message.content -}}
    {%- elif message.content is iterable and message.content is not mapping -%}
        {%- set parts = namespace(text='', count=0) -%}
        {%- for part in message.content -%}
            {%- if part is mapping and (part.type is not defined or part.type == 'text') -%}
                {%- set parts.text = parts.text ~ ('\\n' if parts.count else '') ~ (part.text if part.text is defined else '') -%}
                {%- set parts.count = parts.count + 1 -%}
            {%- endif -%}
        {%- endfor -%}
        {{- parts.text -}}
    {%- endif -%}
{%- endmacro -%}
{%- macro arguments_json(arguments) -%}
    {%- if arguments is not defined or arguments is none -%}
        {{- '{}' -}}
    {%- elif arguments is string -%}
        {{- arguments if arguments | trim else '{}' -}}
    {%- else -%}
        {{- arguments | tojson -}}
    {%- endif -%}
{%- endmacro -%}
{%- macro reasoning_of(message) -%}
    {%- if message.reasoning_content is defined and message.reasoning_content is not none -%}
        {{- message.reasoning_content -}}
    {%- elif message.reasoning is defined and message.reasoning is not none -%}
        {{- message.reasoning -}}
    {%- elif message.thinking is defined and message.thinking is not none -%}
        {{- message.thinking -}}
    {%- endif -%}
{%- endmacro -%}
{%- macro has_reasoning(message) -%}
    {{- 'yes' if (message.reasoning_content is defined and message.reasoning_content is not none)
        or (message.reasoning is defined and message.reasoning is not none)
        or (message.thinking is defined and message.thinking is not none) else '' -}}
{%- endmacro -%}
"""


@cache
def _body(name: str) -> str:
    file = name if name.endswith(".jinja") else f"{name}.jinja"
    return resources.files(__package__).joinpath("templates", file).read_text(encoding="utf-8")


@cache
def _shared_macros() -> dict[str, frozenset[str]]:
    """Each shared macro file (``templates/_<name>.jinja``, by ``<name>``) and the macros it defines."""
    out: dict[str, frozenset[str]] = {}
    for entry in sorted(resources.files(__package__).joinpath("templates").iterdir(), key=lambda e: e.name):
        if entry.name.startswith("_") and entry.name.endswith(".jinja"):
            out[entry.name[1:-6]] = frozenset(re.findall(r"macro\s+(\w+)\s*\(", entry.read_text(encoding="utf-8")))
    return out


def _macros_called(body: str) -> tuple[str, ...]:
    """The shared macro files whose macros ``body`` calls."""
    return tuple(name for name, defined in _shared_macros().items() if any(f"{m}(" in body for m in defined))


def _literal(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "none"}[value]
    if isinstance(value, str):
        from ..export import jinja_str

        return jinja_str(value)
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"no Jinja literal for {value!r}")


def template(name: str, body: str | None = None, **variables: object) -> str:
    """The exported chat template of built-in ``name``: a header comment, :data:`PRELUDE`, the shared
    macro files ``templates/_<macro>.jinja`` whose macros the body calls, a ``set`` for each of
    ``variables`` (how a family's variants differ), then the body ``templates/<body>`` (default:
    ``name``; ``.jinja`` optional)."""
    text = _body(body or name)
    header = (
        f"{{#- {name}: chat template exported by chatfmt from its built-in format "
        f"(chatfmt export {name} --to jinja). -#}}\n"
    )
    sets = "".join(f"{{%- set {k} = {_literal(v)} -%}}\n" for k, v in variables.items())
    shared = "".join(_body("_" + m) for m in _macros_called(text))
    return header + PRELUDE + shared + sets + text


def export(family: Family, fmt: ChatFormat | None = None) -> str:
    """The Jinja export of ``family`` (its :attr:`~chatfmt.formats.family.Family.export` body),
    written with the variables of ``fmt`` (default: a fresh instance of the family)."""
    if family.export is None:
        raise ValueError(f"format {family.name!r} declares no Jinja export")
    fmt = fmt if fmt is not None else family.create()
    return template(fmt.info.name, family.export, **fmt.jinja_variables())


__all__ = ["PRELUDE", "export", "template"]
