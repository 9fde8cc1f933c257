"""Llama 4 Instruct (Scout, Maverick): ``<|header_start|>role<|header_end|>\\n\\n ... <|eot|>``.

Renders exactly what the Llama-4 instruct ``chat_template`` renders under transformers, with no Jinja
at run time. The reference is the template transformers (5.23) ships for Llama 4: ``chat_template`` in
``transformers/models/llama4/processing_llama4.py`` (the ``Llama4Processor`` default), the same string
its ``convert_llama4_weights_to_hf.py`` writes into the instruct checkpoints
(meta-llama/Llama-4-Scout-17B-16E-Instruct, Llama-4-Maverick-17B-128E-Instruct at release). chatfmt's
tests hold no copy of the Hub's ``tokenizer_config.json`` / ``chat_template.json``.

What the template does (and this format with it):

- ``<|begin_of_text|>``; a system turn **only if there is a system message**:
  ``<|header_start|>system<|header_end|>\\n\\n`` + ``Environment: ipython\\n`` when there are tools +
  (with ``tools_in_user_message=False``) the tool instructions and each tool as
  ``json.dumps(tool, indent=4, ensure_ascii=False)`` + ``\\n\\n`` + the system text ``.strip()``-ed
  (for a list of parts: the first part's text) + ``<|eot|>``. There is no date line (the template
  computes ``date_string`` and never uses it). Without a system message and with
  ``tools_in_user_message=False`` the tools are not rendered at all;
- tools (``tools=`` or ``custom_tools=``) go into the first user message by default, as in Llama 3.1
  (instructions, tools, then the user's text ``.strip()``-ed, ``<|eot|>``);
- every other message: header + content **as given** (not stripped; a list of parts renders its
  ``text`` parts back to back and ``<|image|>`` for each ``image`` part; other parts are skipped) +
  ``<|eot|>``;
- an assistant message with tool calls: header + ``<|python_start|>`` + its content + ``<|python_end|>``
  + each call as ``{"name": "<name>", "parameters": <arguments JSON>}``, back to back + ``<|eot|>``;
- a tool result: ``<|header_start|>ipython<|header_end|>\\n\\n`` + the content's ``tojson`` (a string
  becomes a JSON string, quotes included; a list of parts the JSON of the list) + ``<|eot|>``;
- the generation prompt is ``<|header_start|>assistant<|header_end|>\\n\\n``.

Segments: message content is ``content`` (``<|image|>`` is control); the system turn belongs to
message 0, the tool instructions in the first user turn to that user message, BOS and the generation
prompt to no message. An assistant's content, its ``<|python_start|>``/``<|python_end|>``/tool-call
text and ``<|eot|>`` are trained per :attr:`~chatfmt.messages.Message.trained`; its header is not. A
tool result's JSON quotes are control, its escaped text content.

Deliberate differences from the template (none for well-formed input):

- leniencies where the template raises or renders garbage: ``None`` content of a system message or
  tool result is ``""`` (elsewhere the template already renders nothing), the first user message with
  tools given as a list of parts renders its parts (the template would ``trim`` the Python ``repr`` of
  the list), an empty tool list is no tools;
- with tools in the first user message, that message must be a user message (``ValidationError``,
  rule ``roles``), and a system message given as an empty list of parts is rejected (rule
  ``content``; the template raises);
- an assistant message with an empty ``tool_calls`` list is an ordinary message (the template would
  drop the message).
"""

from __future__ import annotations

from typing import Any

from ...errors import ValidationError
from ...messages import Message
from ...segments import SegmentBuilder
from ._headers import (
    BEGIN_OF_TEXT,
    LLAMA4,
    TOOL_KWARGS,
    LlamaToolsFormat,
    json_call,
    llama_tools_info,
    native_family,
    system_tools_text,
)

BOS = BEGIN_OF_TEXT
EOT = LLAMA4.end
EOM = "<|eom|>"
IMAGE = "<|image|>"
PYTHON_START = "<|python_start|>"
PYTHON_END = "<|python_end|>"


def content_pieces(m: Message) -> list[tuple[bool, str]]:
    """``(is_text, text)`` pieces of a message's content as the template renders it: a string as is,
    a list of parts as its ``text`` parts and ``<|image|>`` for ``image`` parts (others skipped)."""
    c = m.content
    if c is None:
        return []
    if isinstance(c, str):
        return [(True, c)]
    pieces: list[tuple[bool, str]] = []
    for part in c:
        kind = part.get("type")
        if kind == "image":
            pieces.append((False, IMAGE))
        elif kind == "text":
            pieces.append((True, str(part.get("text", ""))))
    return pieces


def _strip_pieces(pieces: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    """``trim`` applied to the concatenation of ``pieces`` (image tokens are not whitespace)."""
    out = list(pieces)
    while out and out[0][0]:
        text = out[0][1].lstrip()
        if text:
            out[0] = (True, text)
            break
        out.pop(0)
    while out and out[-1][0]:
        text = out[-1][1].rstrip()
        if text:
            out[-1] = (True, text)
            break
        out.pop()
    return out


def _emit(out: SegmentBuilder, pieces: list[tuple[bool, str]], i: int, trained: bool) -> None:
    for is_text, text in pieces:
        if is_text:
            out.content(text, i, trained)
        else:
            out.control(text, i, False)


class Llama4(LlamaToolsFormat):
    """Llama-4-Instruct (Scout / Maverick)."""

    headers = LLAMA4

    info = llama_tools_info(
        "llama-4",
        "Llama-4-Instruct (Scout/Maverick): <|header_start|>role<|header_end|>\\n\\n...<|eot|>, tools in the "
        "first user message, <|python_start|> tool calls, ipython tool results",
        LLAMA4,
        eom=EOM,
        reference=(
            "the Llama-4 instruct chat_template shipped in transformers (models/llama4/processing_llama4.py "
            "chat_template = what convert_llama4_weights_to_hf.py writes into meta-llama/Llama-4-Scout-17B-16E-"
            "Instruct and Llama-4-Maverick-17B-128E-Instruct), rendered by transformers"
        ),
        tokens={
            "bos": BOS,
            "header_start": LLAMA4.open,
            "header_end": "<|header_end|>",
            "eot": EOT,
            "python_start": PYTHON_START,
            "python_end": PYTHON_END,
            "image": IMAGE,
        },
    )

    def system_turn(
        self, out: SegmentBuilder, msgs: list[Message], tools: list[Any] | None, in_user: bool, kwargs: dict[str, Any]
    ) -> int:
        if not msgs or msgs[0].role != "system":
            return 0
        system = msgs[0]
        head = LLAMA4.header("system")
        if tools is not None:
            head += "Environment: ipython\n"
            if not in_user:
                head += system_tools_text(tools)
        out.turn(0, head, self._system_text(system), EOT, system.trained)
        return 1

    def content(self, out: SegmentBuilder, m: Message, i: int, *, first: bool) -> None:
        pieces = content_pieces(m)
        _emit(out, _strip_pieces(pieces) if first else pieces, i, m.trained)

    def calls(self, out: SegmentBuilder, m: Message, i: int, kwargs: dict[str, Any]) -> None:
        trained = m.trained
        out.control(PYTHON_START, i, trained)
        _emit(out, content_pieces(m), i, trained)
        out.control(PYTHON_END + "".join(json_call(tc) for tc in m.tool_calls or ()) + EOT, i, trained)

    def _system_text(self, system: Message) -> str:
        c = system.content
        if c is None:
            return ""
        if isinstance(c, str):
            return c.strip()
        if not c:
            raise ValidationError(
                f"{self.info.name}: a system message given as a list of parts needs at least one part",
                index=0,
                rule="content",
            )
        return str(c[0].get("text", "")).strip()


FAMILIES = [
    native_family(
        Llama4,
        ("llama4", "llama-4-instruct", "llama-4-scout", "llama-4-maverick", "llama-4-scout-17b-16e-instruct",
         "llama-4-maverick-17b-128e-instruct"),
        parser="llama4", kwargs=TOOL_KWARGS, export="llama-4.jinja",
    )
]
