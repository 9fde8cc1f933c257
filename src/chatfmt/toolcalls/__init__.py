"""Tool calls: schemas from Python functions, and parsing generated output back into an assistant
message (``content``, ``reasoning_content``, ``tool_calls``), streaming-safe, per model family.

    parser = parser_for_format(fmt, tokenizer, prompt=prompt, tools=tools)
    for piece, token_id in stream:
        for delta in parser.feed(piece, token_id):
            ...
    last, message = parser.finish()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..toolschema import function_schema
from .bodies import BodyError, Call
from .families import (
    OUTPUT_PARSERS,
    ParserSpec,
    get_parser,
    list_parsers,
    parser_for_format,
    parser_name_for_format,
    parser_spec,
    register_parser,
)
from .parser import Block, Grammar, OutputParser, ParserError, Segments, ToolCallWarning
from .types import Delta, ParsedOutput, ToolCallDelta, merge_deltas


def function_to_tool(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{"type": "function", "function": {"name", "description", "parameters"}}`` for a Python function
    (JSON schema from its type hints, descriptions from its Google-style docstring)."""
    return function_schema(fn)


__all__ = [
    "OUTPUT_PARSERS",
    "Block",
    "BodyError",
    "Call",
    "Delta",
    "Grammar",
    "OutputParser",
    "ParsedOutput",
    "ParserError",
    "ParserSpec",
    "Segments",
    "ToolCallDelta",
    "ToolCallWarning",
    "function_to_tool",
    "get_parser",
    "list_parsers",
    "merge_deltas",
    "parser_for_format",
    "parser_name_for_format",
    "parser_spec",
    "register_parser",
]
