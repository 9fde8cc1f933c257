"""What the Python-stub ``tool_use`` templates (Command-R, Hermes-2-Pro) share: how Jinja sees a
JSON tool definition (a missing key is ``Undefined``, attribute access on a non-mapping too), and
where such a template raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import TemplateFailure, ValidationError

#: the JSON Schema types both templates' ``json_to_python_type`` macros map to a Python name
BASIC_TYPES = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"}
#: Jinja's ``Undefined``: what a missing key reads as
MISSING = object()


def attr(obj: Any, key: str) -> Any:
    """``obj.key`` in Jinja for JSON data: a mapping's key, else :data:`MISSING`."""
    return obj.get(key, MISSING) if isinstance(obj, dict) else MISSING


def basic_type(t: Any) -> str | None:
    """The Python name ``json_to_python_type`` gives a basic JSON Schema type name, else ``None``."""
    try:
        return BASIC_TYPES.get(t) if t is not MISSING else None
    except TypeError:  # an unhashable type value
        return None


def string(value: Any, what: str) -> str:
    """``value`` where the template concatenates it (``+``): anything but a string raises."""
    if not isinstance(value, str):
        raise TemplateFailure(f"{what} must be a string")
    return value


def function_of(tool: Any) -> tuple[Any, str, Any]:
    """A tool's function (``tool.function`` if given, else the tool), its name and its ``parameters``."""
    if isinstance(tool, dict) and "function" in tool:
        tool = tool["function"]
    name = string(attr(tool, "name"), "the tool name")
    params = attr(tool, "parameters")
    if params is MISSING:
        raise TemplateFailure("the tool has no 'parameters'")
    return tool, name, params


def render_tools(tools: list[Any], render: Callable[[Any], str], template: str, separator: str) -> str:
    """Each tool as ``render`` writes it, joined by ``separator``; where the template would raise, a
    :class:`~chatfmt.errors.ValidationError` (rule ``tools``) naming the tool."""
    parts = []
    for k, tool in enumerate(tools):
        try:
            parts.append(render(tool))
        except TemplateFailure as e:
            raise ValidationError(f"the {template} template cannot render this tool: {e}", tool=k, rule="tools") from None
    return separator.join(parts)


__all__ = ["BASIC_TYPES", "MISSING", "TemplateFailure", "attr", "basic_type", "function_of", "render_tools", "string"]
