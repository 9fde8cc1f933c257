"""The shapes an output parser hands back: streaming deltas and the final parsed message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass
class ToolCallDelta:
    """A piece of one tool call of the message being generated."""

    #: 0-based position of the call in this message
    index: int
    #: set on the call's first delta only
    id: str | None = None
    #: set once, on the first delta of the call
    name: str | None = None
    #: a fragment of the JSON arguments string; all fragments of a call concatenate to the final string
    arguments: str = ""


@dataclass
class Delta:
    """What one :meth:`OutputParser.feed` call adds to the message."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning_content or self.tool_calls)


@dataclass
class ParsedOutput:
    """The assistant message recovered from generated text."""

    #: the visible answer ("" if none)
    content: str
    #: the reasoning (think block), or None when the model produced none
    reasoning_content: str | None
    #: OpenAI shape: ``{"id", "type": "function", "function": {"name", "arguments": <JSON string>}}``
    tool_calls: list[dict[str, Any]]
    #: what was malformed and kept as content, what was ignored
    warnings: list[str] = field(default_factory=list)

    def to_message(self) -> dict[str, Any]:
        """An OpenAI assistant message: ``content`` is None when empty and there are tool calls."""
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": None if (not self.content and self.tool_calls) else self.content,
        }
        if self.reasoning_content:
            msg["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": dict(c["function"])} for c in self.tool_calls
            ]
        return msg


class ParserFinish(NamedTuple):
    """What :meth:`~chatfmt.toolcalls.parser.OutputParser.finish` returns (unpacks as
    ``deltas, output``)."""

    #: the deltas that were still held back
    deltas: list[Delta]
    #: the whole message
    output: ParsedOutput


class MergedDeltas(NamedTuple):
    """What :func:`merge_deltas` returns (unpacks as ``content, reasoning, calls``)."""

    content: str
    reasoning: str
    #: ``{index: {"id", "name", "arguments"}}``
    calls: dict[int, dict[str, Any]]


def merge_deltas(deltas: list[Delta]) -> MergedDeltas:
    """Concatenate deltas: ``(content, reasoning, {index: {"id", "name", "arguments"}})`` (a helper for
    consumers and tests)."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        content.append(d.content)
        reasoning.append(d.reasoning_content)
        for tc in d.tool_calls:
            c = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id is not None:
                c["id"] = tc.id
            if tc.name is not None:
                c["name"] = tc.name
            c["arguments"] += tc.arguments
    return MergedDeltas("".join(content), "".join(reasoning), calls)
