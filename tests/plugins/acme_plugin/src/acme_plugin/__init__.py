"""acme-plugin: what a third party adds to chatfmt without touching it, through entry points.

- ``chatfmt.formats``: ``acme-chat = "acme_plugin:make_format"``, a zero-argument callable returning a
  chatfmt ``ChatFormat`` (here a declarative one, from TOML text);
- ``chatfmt.parsers``: ``acme = "acme_plugin:PARSER"``, the grammar of what Acme models generate:
  tool calls as ``<acme:call>{"name": ..., "arguments": {...}}</acme:call>``, the turn ending at
  ``<acme:end>``;
- ``chatfmt.record_kinds``: ``acme_dialog = "acme_plugin:RECORD_KIND"``, Acme's dataset records
  ``{"acme": [{"who": "user" | "bot", "say": "...", "skip"?: true}], "sys"?: "..."}`` (a ``bot``
  line with ``skip`` is not trained), told apart by their ``acme`` key.
"""

from __future__ import annotations

from typing import Any

from chatfmt.formats.base import ChatFormat
from chatfmt.formats.spec_toml import parse_spec
from chatfmt.messages import Conversation, RecordKind, parse_openai
from chatfmt.toolcalls import Block, Grammar, ParserSpec
from chatfmt.toolcalls.bodies import json_calls

ACME_TOML = """\
name = "acme-chat"
description = "Acme Chat: <acme:ROLE> turns closed by <acme:end>, tool calls in <acme:call> (a plugin)"
parser = "acme"
end_of_turn = ["<acme:end>"]

[roles.system]
prefix = "<acme:system>\\n"
suffix = "<acme:end>\\n"

[roles.user]
prefix = "<acme:user>\\n"
suffix = "<acme:end>\\n"

[roles.assistant]
prefix = "<acme:bot>\\n"
suffix = "<acme:end>\\n"

[roles.tool]
prefix = "<acme:tool>\\n"
suffix = "<acme:end>\\n"

[tools]
preamble = "You can call these tools:\\n"

[tool_calls]
prefix = "<acme:call>"
suffix = "</acme:call>"
"""


def make_format() -> ChatFormat:
    """The acme-chat format (a fresh object each call)."""
    return parse_spec(ACME_TOML, source="acme-plugin")


def _acme_grammar(tools: list[Any] | None) -> Grammar:
    markers = {"call_start": "<acme:call>", "call_end": "</acme:call>", "end": "<acme:end>"}
    return Grammar("acme", markers, blocks=(Block("call_start", ("call_end",), json_calls),), end=("end",))


PARSER = ParserSpec(
    "acme", _acme_grammar, "<acme:call>{json}</acme:call>", formats=("acme-chat",), template_markers=("<acme:call>",)
)

_ROLES = {"user": "user", "bot": "assistant"}


def parse_acme(record: Any, *, strict_tools: bool = True) -> Conversation:
    """An Acme dialog record as a validated conversation (any malformed record is a ValidationError,
    as chatfmt asks of every record kind)."""
    from chatfmt.errors import ValidationError

    lines = record.get("acme") if isinstance(record, dict) else None
    if not isinstance(lines, list):
        raise ValidationError("an acme_dialog record needs an 'acme' list of lines", rule="acme")
    messages: list[dict[str, Any]] = []
    if record.get("sys"):
        messages.append({"role": "system", "content": record["sys"]})
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise ValidationError(f"acme line {i} is not an object", rule="acme")
        who = line.get("who")
        msg: dict[str, Any] = {"role": _ROLES.get(who, who) if isinstance(who, str) else who, "content": line.get("say")}
        if line.get("skip"):
            msg["loss"] = False
        messages.append(msg)
    return parse_openai({"messages": messages}, strict_tools=strict_tools)


RECORD_KIND = RecordKind("acme_dialog", parse_acme, detect=lambda obj: "acme" in obj, description="Acme dialog lines")
