"""Gemma 4: ``<|turn>ROLE\n ... <turn|>\n`` turns, ``<|channel>thought`` reasoning, ``<|tool_call>call:NAME{...}`` calls.

``gemma-4`` renders exactly what the chat template of google/gemma-4-26B-A4B-it renders under
transformers (the same text is published for gemma-4-31B-it and gemma-4-12B-it); ``gemma-4-e4b`` what
google/gemma-4-E4B-it's renders (also E2B's); ``diffusiongemma`` what google/diffusiongemma-26B-A4B-it's
renders; ``gemma-4-otel`` what farbodtavakkoli/OTel-LLM-E4B-IT's renders (an earlier revision of
Google's E4B template, 6.3M downloads, shipped by many E2B/E4B fine-tunes); ``gemma-4-31b-llamacpp``
what the gemma-4-31B-it template llama.cpp ships renders (an earlier revision of google/gemma-4-31B-it's,
found in GGUFs). All five are pinned to those templates (``official/``); they differ only where noted
below.

- ``<bos>`` first. A system turn ``<|turn>system\\n`` ... ``<turn|>\\n`` is written when there is a
  system message, a tool list or ``enable_thinking``: ``<|think|>\\n`` first with thinking, then the
  system text trimmed, then per tool ``<|tool>declaration:NAME{description:<|"|>...<|"|>,parameters:{...}}<tool|>``
  (the JSON schema in Gemma's own notation: keys sorted, strings between ``<|"|>``, types upper case);
- a user turn is ``<|turn>user\\n`` + its content trimmed + ``<turn|>\\n``; an assistant turn
  ``<|turn>model\\n``, then its reasoning as ``<|channel>thought\\nREASONING\\n<channel|>`` when it comes
  after the last user message (or, with ``preserve_thinking``, when the message has tool calls), then its
  calls ``<|tool_call>call:NAME{key:value,...}<tool_call|>`` (keys sorted, values in the same notation),
  then the results of the tool messages that follow it, each
  ``<|tool_response>response:NAME{value:<|"|>RESULT<|"|>}<tool_response|>`` (NAME: the call whose id the
  result answers, else the message's ``name``, else ``unknown``), then its content with any
  ``<|channel>...<channel|>`` removed and trimmed, then ``<turn|>\\n``. Exceptions, as the template has
  them: calls without results end the turn with ``<|tool_response>`` (the model's stop); a turn whose
  results are followed by another assistant message stays open and that message continues it without
  a header (``diffusiongemma`` writes the header again, its template forgets the turn across tool
  messages); a last turn of results without content stays open;
- the generation prompt is ``<|turn>model\\n`` + (``gemma-4`` only, without thinking)
  ``<|channel>thought\\n<channel|>``; after calls nothing, after results ``<|channel>thought\\n`` with
  thinking, else nothing;
- keyword arguments: ``enable_thinking`` and ``preserve_thinking`` (default false);
- ``gemma-4-otel`` (the earlier template) writes a null value as ``None``, keeps reasoning only on an
  assistant message with tool calls after the last user message (no ``preserve_thinking``), never
  closes a turn of results without content (the next assistant message continues it, any other
  message opens its own turn after it), writes no thought opener after results, counts only
  ``image``/``audio``/``video`` parts as media, and raises (so does this format: ``ValidationError``)
  on a tool result with neither a ``name`` nor its call's id; its generation prompt is
  ``gemma-4-e4b``'s;
- ``gemma-4-31b-llamacpp`` is ``gemma-4-otel`` with ``gemma-4``'s generation prompt, except that
  properties named like a schema's own keys (``type``, ``description``, ``properties``, ``required``,
  ``nullable``) are left out of every ``properties``, a system message given as parts is the trimmed
  Python text of the list (as its template writes it), a tool result's media parts write nothing, and
  whether a turn of results ends depends on the message's ``content`` as given, not trimmed. It has no
  Jinja export.

Content parts: text parts are trimmed (a model message's thinking removed) and written back to back,
``image``/``image_url`` parts as ``<|image|>``, ``audio``/``input_audio`` as ``<|audio|>``, ``video`` as
``<|video|>``; a system message's parts are each trimmed and followed by a space; a tool result's
text parts are joined as they are and its media tokens follow the response block.

Deliberate differences from the templates, each where the template raises or silently loses text:
tool-call arguments must be an object (given as JSON text they are parsed first; anything else is a
``ValidationError``, as the template raises; ``gemma-4-otel``'s template writes a string as it is);
a tool message that does not follow an assistant
message with tool calls (through other tool messages) is a ``ValidationError`` (the template drops it);
Gemma's legacy ``tool_responses`` key on an assistant message is a ``ValidationError`` (not rendered).
Reasoning given as ``thinking`` (chatfmt's alias) is rendered as ``reasoning_content`` is.

Segments: message content (and reasoning text) is ``content``; everything else ``control``. An
assistant message trains on its reasoning block, calls, content and its ``<turn|>`` (or the
``<|tool_response>`` that ends its calls), not its header nor the newline after ``<turn|>``. A tool
result (``response:NAME{value:...}<tool_response|>`` and the ``<|tool_response>`` of results after the
first) belongs to its tool message and is not trained. The content of an assistant message with tool
calls follows its results, so the segments of that message are not contiguous there. BOS, the system
turn without a system message and the generation prompt belong to no message.

Ids: no Gemma 4 tokenizer ships in a registry package or in the shared test data, so the text is
pinned and the ids are not (text only); the markers above are declared as the format's special tokens
(``info.special_tokens``), which a test checks against every marker the templates write.

The output parser ``gemma-4`` reads what these models generate: a ``<|channel>thought`` reasoning block
(opened by the prompt after results with thinking), content, ``<|tool_call>call:NAME{...}<tool_call|>``
blocks (several ``call:`` in one block too), ending at ``<turn|>``, ``<|tool_response>`` or ``<eos>``.
Argument values are Gemma's notation: ``<|"|>`` strings (raw), numbers, ``true``/``false``/``null``,
objects and arrays; as vLLM's and SGLang's Gemma 4 parsers do, keys may be quoted, JSON strings,
Python's ``True``/``False``/``None`` and whitespace between items are accepted; an empty
``<|channel>thought\\n<channel|>`` the model echoes with thinking off is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ...errors import ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls.bodies import BodyError, Call, dump_arguments
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin, TemplateKwarg

BOS = "<bos>"
EOS = "<eos>"
TURN_OPEN = "<|turn>"
TURN_END = "<turn|>"
THINK = "<|think|>"
CHANNEL_OPEN = "<|channel>"
CHANNEL_CLOSE = "<channel|>"
TOOL_OPEN = "<|tool>"
TOOL_CLOSE = "<tool|>"
CALL_OPEN = "<|tool_call>"
CALL_CLOSE = "<tool_call|>"
RESPONSE_OPEN = "<|tool_response>"
RESPONSE_CLOSE = "<tool_response|>"
Q = '<|"|>'
IMAGE, AUDIO, VIDEO = "<|image|>", "<|audio|>", "<|video|>"
THOUGHT_OPEN = CHANNEL_OPEN + "thought\n"
EMPTY_THOUGHT = THOUGHT_OPEN + CHANNEL_CLOSE

SPECIAL_TOKENS = {
    "bos": BOS,
    "eos": EOS,
    "turn_start": TURN_OPEN,
    "turn_end": TURN_END,
    "think": THINK,
    "channel_start": CHANNEL_OPEN,
    "channel_end": CHANNEL_CLOSE,
    "tool_start": TOOL_OPEN,
    "tool_end": TOOL_CLOSE,
    "tool_call_start": CALL_OPEN,
    "tool_call_end": CALL_CLOSE,
    "tool_response_start": RESPONSE_OPEN,
    "tool_response_end": RESPONSE_CLOSE,
    "string_delimiter": Q,
    "image": IMAGE,
    "audio": AUDIO,
    "video": VIDEO,
}

# -- Gemma's notation, as the templates' macros write it ------------------------------------------------


class _Missing:
    """A key the template reads that is not there (Jinja's undefined: falsy, renders as nothing)."""

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` as Jinja reads it: undefined for a missing key or a non-mapping."""
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    return MISSING


def _str(value: Any) -> str:
    """``{{ value }}``: nothing for undefined, Python's ``str`` otherwise."""
    return "" if value is MISSING else value if isinstance(value, str) else str(value)


def _upper(value: Any) -> str:
    """Jinja's ``upper`` filter."""
    return _str(value).upper()


def dictsort(obj: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Jinja's ``dictsort``: items by key, case-insensitively (a stable sort)."""
    return sorted(obj.items(), key=lambda kv: kv[0].lower() if isinstance(kv[0], str) else kv[0])


def _is_sequence(value: Any) -> bool:
    # Jinja's ``is sequence`` for the values a conversation holds (a string is handled before)
    return isinstance(value, (list, tuple))


def format_argument(value: Any, escape_keys: bool = True, null: str = "null") -> str:
    """A value in Gemma's notation (the templates' ``format_argument``): ``<|"|>text<|"|>``, ``true``,
    ``null``, numbers as Python writes them, ``{key:value}`` with sorted keys (quoted with
    ``escape_keys``), ``[a,b]``."""
    if value is None:
        return null
    if isinstance(value, str):
        return Q + value + Q
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Mapping):
        items = (
            (Q + _str(k) + Q if escape_keys else _str(k)) + ":" + format_argument(v, escape_keys, null)
            for k, v in dictsort(value)
        )
        return "{" + ",".join(items) + "}"
    if _is_sequence(value):
        return "[" + ",".join(format_argument(v, escape_keys, null) for v in value) + "]"
    return _str(value)


def _quoted_list(items: Any) -> str:
    return ",".join(Q + _str(item) + Q for item in items)


_STANDARD_KEYS = ("description", "type", "properties", "required", "nullable")


def format_parameters(
    properties: Mapping[Any, Any], filter_keys: bool = False, null: str = "null", filter_all: bool = False
) -> str:
    """The properties of a JSON schema in Gemma's notation (the templates' ``format_parameters``)."""
    out: list[str] = []
    for key, value in dictsort(properties):
        if (filter_keys or filter_all) and key in _STANDARD_KEYS:
            continue
        parts: list[str] = []
        kind = _upper(_get(value, "type"))
        if _get(value, "description"):
            parts.append("description:" + Q + _str(value["description"]) + Q)
        if kind == "STRING":
            if _get(value, "enum"):
                parts.append("enum:" + format_argument(value["enum"], null=null))
        elif kind == "ARRAY":
            items = _get(value, "items")
            if isinstance(items, Mapping) and items:
                parts.append("items:{" + _items(items, null, filter_all) + "}")
        if _get(value, "nullable"):
            parts.append("nullable:true")
        if kind == "OBJECT":
            props = _get(value, "properties")
            if isinstance(props, Mapping):
                parts.append(
                    "properties:{" + format_parameters(props, null=null, filter_all=filter_all) + "}"
                )
            elif isinstance(value, Mapping):
                parts.append(
                    "properties:{"
                    + format_parameters(value, filter_keys=True, null=null, filter_all=filter_all)
                    + "}"
                )
            if _get(value, "required"):
                parts.append("required:[" + _quoted_list(value["required"]) + "]")
        parts.append("type:" + Q + kind + Q + "}")
        out.append(_str(key) + ":{" + ",".join(parts))
    return ",".join(out)


def _items(items: Mapping[Any, Any], null: str, filter_all: bool = False) -> str:
    """The ``items`` schema of an array property."""
    out: list[str] = []
    for key, value in dictsort(items):
        if value is None:
            continue
        if key == "properties":
            out.append(
                "properties:{"
                + (
                    format_parameters(value, null=null, filter_all=filter_all)
                    if isinstance(value, Mapping)
                    else ""
                )
                + "}"
            )
        elif key == "required":
            out.append("required:[" + _quoted_list(value) + "]")
        elif key == "type":
            if isinstance(value, str):
                out.append("type:" + format_argument(value.upper(), null=null))
            else:
                out.append("type:" + format_argument([_upper(v) for v in value], null=null))
        else:
            out.append(_str(key) + ":" + format_argument(value, null=null))
    return ",".join(out)


def declaration(tool: Any, null: str = "null", filter_all: bool = False) -> str:
    """One tool of the system turn, between ``<|tool>`` and ``<tool|>`` (``format_function_declaration``)."""
    fn = _get(tool, "function")
    text = "declaration:" + _str(_get(fn, "name")) + "{description:" + Q + _str(_get(fn, "description")) + Q
    params = _get(fn, "parameters")
    if params:
        text += ",parameters:{"
        if _get(params, "properties"):
            text += (
                "properties:{"
                + format_parameters(params["properties"], null=null, filter_all=filter_all)
                + "},"
            )
        if _get(params, "required"):
            text += "required:[" + _quoted_list(params["required"]) + "],"
        if _get(params, "type"):
            text += "type:" + Q + _upper(params["type"]) + Q + "}"
    if isinstance(fn, Mapping) and "response" in fn:
        response = fn["response"]
        text += ",response:{"
        if _get(response, "description"):
            text += "description:" + Q + _str(response["description"]) + Q + ","
        if _upper(_get(response, "type")) == "OBJECT":
            text += "type:" + Q + _upper(response["type"]) + Q + "}"
    return (text + "}").strip()


def call_text(call: ToolCall, index: int, null: str = "null") -> str:
    """``<|tool_call>call:NAME{key:value,...}<tool_call|>``."""
    args = call.arguments
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValidationError(
            f"gemma-4: tool-call arguments must be a JSON object, got {type(args).__name__} (the template raises)",
            index=index,
            rule="tool_call",
        )
    body = ",".join(
        _str(k) + ":" + format_argument(v, escape_keys=False, null=null) for k, v in dictsort(args)
    )
    return CALL_OPEN + "call:" + call.name + "{" + body + "}" + CALL_CLOSE


def strip_thinking(text: str) -> str:
    """A model message's text without its ``<|channel>...<channel|>`` pieces, trimmed."""
    return "".join(p.split(CHANNEL_OPEN)[0] for p in text.split(CHANNEL_CLOSE)).strip()


def _media(part: Mapping[str, Any]) -> str:
    kind = part.get("type")
    if kind in ("image", "image_url"):
        return IMAGE
    if kind in ("audio", "input_audio"):
        return AUDIO
    if kind == "video":
        return VIDEO
    return ""


# -- the format ------------------------------------------------------------------------------------------


class Gemma4(NativeFormat):
    """Gemma 4 -it (google/gemma-4-26B-A4B-it's template)."""

    info = FormatInfo(
        name="gemma-4",
        family="gemma",
        description="Gemma 4: <|turn>user|model\\n...<turn|>, <|channel>thought reasoning, <|tool_call>call:NAME{...} calls",
        stop=(TURN_END, RESPONSE_OPEN, EOS),
        end_of_turn=(TURN_END,),
        bos_token=BOS,
        eos_token=TURN_END,
        supports_tools=True,
        supports_reasoning=True,
        reference="the chat_template of google/gemma-4-26B-A4B-it (= gemma-4-31B-it's, gemma-4-12B-it's), rendered by transformers",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    #: the generation prompt without thinking holds an empty thought channel
    empty_thought_prompt = True
    #: a tool message ends the model turn for the next assistant message (diffusiongemma's template)
    tool_breaks_continuation = False
    #: how a null value is written in Gemma's notation (the earlier template: Python's ``None``)
    null = "null"
    #: the earlier template's turns: reasoning kept only with tool calls, a turn of results without
    #: content never closed, no thought opener after results, media parts change the turn's end
    legacy = False
    #: ``image_url`` and ``input_audio`` parts count as media (not in the earlier template)
    openai_media = True
    #: llama.cpp's gemma-4-31B-it template: schema keys named like the standard ones (``type``,
    #: ``description``, ...) are dropped from every ``properties``, a system message is its string
    #: trimmed, a tool result's media parts write nothing, and a turn of results ends when the message's
    #: ``content`` is truthy as given (not trimmed)
    filter_all_keys = False
    plain_system = False
    tool_result_media = True
    raw_content_truth = False

    def jinja_variables(self) -> dict[str, object]:
        """The export (``templates/gemma-4.jinja``, one body for the four variants) is written with
        these: how the variants differ."""
        return {
            "empty_thought_prompt": self.empty_thought_prompt,
            "tool_breaks_continuation": self.tool_breaks_continuation,
            "null_text": self.null,
            "legacy": self.legacy,
            "openai_media": self.openai_media,
        }

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        enable_thinking: Any = False,
        preserve_thinking: Any = False,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        think = bool(enable_thinking)
        has_system = bool(msgs) and msgs[0].role == "system"
        prev_type: str | None = None
        out.control(BOS)
        if think or conv.tools or has_system:
            owner = 0 if has_system else None
            out.control(TURN_OPEN + "system\n", owner)
            if think:
                out.control(THINK + "\n", owner)
                prev_type = "think"
            if has_system:
                self._system_content(out, msgs[0])
            if conv.tools:
                out.control(
                    "".join(
                        TOOL_OPEN + declaration(t, self.null, self.filter_all_keys) + TOOL_CLOSE
                        for t in conv.tools
                    ),
                    owner,
                )
                prev_type = "tool"
            out.control(TURN_END + "\n", owner)
        start = 1 if has_system else 0
        last_user = max((i for i in range(start, len(msgs)) if msgs[i].role == "user"), default=-1)
        answered: set[int] = set()
        prev_role: str | None = None
        for i in range(start, len(msgs)):
            m = msgs[i]
            if m.role == "tool":
                if i not in answered:
                    raise ValidationError(
                        f"{self.info.name}: a tool result must follow an assistant message with tool calls "
                        "(the template drops it)",
                        index=i,
                        rule="roles",
                    )
                if self.tool_breaks_continuation:
                    prev_role = "tool"
                continue
            if "tool_responses" in m.extra:
                raise ValidationError(
                    f"{self.info.name}: 'tool_responses' on a message is not rendered; give tool messages",
                    index=i,
                    rule="content",
                )
            prev_type = None
            trained = m.trained
            role = "model" if m.role == "assistant" else m.role
            if not (role == "model" and prev_role == "assistant"):
                out.control(TURN_OPEN + role + "\n", i)
            reasoning = m.reasoning_content
            if self.legacy:
                keep = bool(i > last_user and m.tool_calls)
            else:
                keep = bool(i > last_user or (preserve_thinking and m.tool_calls))
            if reasoning and keep:
                out.control(THOUGHT_OPEN, i, trained)
                out.content(reasoning, i, trained)
                out.control("\n" + CHANNEL_CLOSE, i, trained)
            responded = False
            if m.tool_calls:
                out.control("".join(call_text(c, i, self.null) for c in m.tool_calls), i, trained)
                prev_type = "tool_call"
                k = i + 1
                while k < len(msgs) and msgs[k].role == "tool":
                    self._response(out, m, msgs[k], k, first=not responded, owner_trained=trained, owner=i)
                    answered.add(k)
                    responded = True
                    prev_type = "tool_response"
                    k += 1
            captured, media = self._content(out, i, m, role)
            has_content = bool(m.content) if self.raw_content_truth else bool(captured.strip())
            if self.legacy and media:
                prev_type = media
            next_role = next((msgs[j].role for j in range(i + 1, len(msgs)) if msgs[j].role != "tool"), None)
            continues = role == "model" and next_role == "assistant" and (not m.tool_calls or responded)
            if prev_type == "tool_call" and not responded:
                out.control(RESPONSE_OPEN, i, trained)
            elif self.legacy:
                if not (responded and not has_content):
                    out.control(TURN_END, i, trained)
                    out.control("\n", i)
            elif continues:
                pass
            elif not (responded and not has_content and next_role is None):
                out.control(TURN_END, i, trained)
                out.control("\n", i)
            prev_role = m.role
        if add_generation_prompt:
            if prev_type not in ("tool_response", "tool_call"):
                out.control(TURN_OPEN + "model\n")
                if not think and self.empty_thought_prompt:
                    out.control(EMPTY_THOUGHT)
            elif prev_type == "tool_response" and think and not self.legacy:
                out.control(THOUGHT_OPEN)

    def _system_content(self, out: SegmentBuilder, m: Message) -> None:
        c = m.content
        if self.plain_system and isinstance(c, list):
            out.content(str(c).strip(), 0, m.trained)  # the template trims the list's Python text
        elif isinstance(c, str):
            out.content(c.strip(), 0, m.trained)
        elif isinstance(c, list):
            for part in c:
                text = part.get("text") if isinstance(part, Mapping) else None
                out.content(_str(MISSING if text is None else text).strip(), 0, m.trained)
                out.control(" ", 0)

    def _content(self, out: SegmentBuilder, i: int, m: Message, role: str) -> tuple[str, str]:
        """Writes the message's content; returns it (what the template captures) and the kind of
        its last media part (``image``, ``audio``, ``video``) if any."""
        trim = strip_thinking if role == "model" else str.strip
        trained = m.trained
        c = m.content
        if isinstance(c, str):
            text = trim(c)
            out.content(text, i, trained)
            return text, ""
        captured = last_media = ""
        if isinstance(c, list):
            for part in c:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "text":
                    text = trim(_str(part.get("text", "")))
                    out.content(text, i, trained)
                    captured += text
                else:
                    media = self._media(part)
                    out.control(media, i)
                    captured += media
                    last_media = media[2:-2] if media else last_media
        return captured, last_media

    def _media(self, part: Mapping[str, Any]) -> str:
        if self.openai_media:
            return _media(part)
        return {"image": IMAGE, "audio": AUDIO, "video": VIDEO}.get(part.get("type") or "", "")

    def _response(
        self,
        out: SegmentBuilder,
        call_message: Message,
        m: Message,
        k: int,
        *,
        first: bool,
        owner_trained: bool,
        owner: int,
    ) -> None:
        name = m.name if self.legacy else m.name or "unknown"
        for tc in call_message.tool_calls or ():
            if tc.id == m.tool_call_id:
                name = tc.name
        if name is None:
            raise ValidationError(
                f"{self.info.name}: a tool result needs a name or the id of its call (the template raises)",
                index=k,
                rule="tool_call_id",
            )
        if first:
            out.control(RESPONSE_OPEN, owner, owner_trained)  # what the model emits after its calls
        else:
            out.control(RESPONSE_OPEN, k)
        c = m.content
        head = "response:" + name + "{value:"
        if isinstance(c, str):
            out.control(head + Q, k)
            out.content(c, k, m.trained)
            out.control(Q + "}" + RESPONSE_CLOSE, k)
        elif isinstance(c, list):
            out.control(head + Q, k)
            out.content(
                "".join(
                    _str(p.get("text", "")) for p in c if isinstance(p, Mapping) and p.get("type") == "text"
                ),
                k,
                m.trained,
            )
            out.control(Q + "}" + RESPONSE_CLOSE, k)
            for p in c:
                if isinstance(p, Mapping) and self.tool_result_media:
                    out.control(self._media(p), k)
        else:
            out.control(
                head + format_argument(c, escape_keys=False, null=self.null) + "}" + RESPONSE_CLOSE, k
            )


class Gemma4E(Gemma4):
    """Gemma 4 E2B/E4B -it: ``gemma-4`` without the empty thought channel in the generation prompt."""

    info = replace(
        Gemma4.info,
        name="gemma-4-e4b",
        description="Gemma 4 E2B/E4B: gemma-4 without the empty thought channel in the generation prompt",
        reference="the chat_template of google/gemma-4-E4B-it (= gemma-4-E2B-it's), rendered by transformers",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    empty_thought_prompt = False


class DiffusionGemma(Gemma4E):
    """DiffusionGemma -it: ``gemma-4-e4b``, and a model turn after tool results opens with its header again."""

    info = replace(
        Gemma4.info,
        name="diffusiongemma",
        description="DiffusionGemma: gemma-4-e4b, with a new <|turn>model header after tool results",
        reference="the chat_template of google/diffusiongemma-26B-A4B-it, rendered by transformers",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    tool_breaks_continuation = True


class Gemma4OTel(Gemma4E):
    """An earlier revision of Google's Gemma 4 E4B template, as farbodtavakkoli/OTel-LLM-E4B-IT (and many
    E2B/E4B fine-tunes) ship it."""

    info = replace(
        Gemma4.info,
        name="gemma-4-otel",
        description="Gemma 4 E4B's earlier template (OTel-LLM-E4B-IT): None for null, reasoning only with calls",
        reference="the chat_template of farbodtavakkoli/OTel-LLM-E4B-IT, rendered by transformers",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    null = "None"
    legacy = True
    openai_media = False


class Gemma4LlamaCpp31B(Gemma4OTel):
    """The gemma-4-31B-it template llama.cpp ships (models/templates): ``gemma-4-otel``'s turns with
    ``gemma-4``'s generation prompt, and the differences of :attr:`Gemma4.filter_all_keys` and after."""

    info = replace(
        Gemma4.info,
        name="gemma-4-31b-llamacpp",
        description="the gemma-4-31B-it template of llama.cpp: gemma-4-otel's turns, gemma-4's generation prompt",
        reference="llama.cpp's models/templates/google-gemma-4-31B-it.jinja, rendered by transformers",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    empty_thought_prompt = True
    filter_all_keys = True
    plain_system = True
    tool_result_media = False
    raw_content_truth = True


# -- the output parser -----------------------------------------------------------------------------------


class _Reader:
    """Reads Gemma's value notation (leniently: JSON and Python literals too) from ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def expect(self, s: str) -> None:
        self.skip()
        if not self.peek(s):
            raise BodyError(f"expected {s!r} at {self.text[self.pos : self.pos + 12]!r}")
        self.pos += len(s)

    def string(self) -> str:
        """A ``<|"|>``-delimited string (raw) or a JSON string."""
        if self.peek(Q):
            end = self.text.find(Q, self.pos + len(Q))
            if end < 0:
                raise BodyError('unterminated <|"|> string')
            value = self.text[self.pos + len(Q) : end]
            self.pos = end + len(Q)
            return value
        m = _JSON_STRING.match(self.text, self.pos)
        if not m:
            raise BodyError("unterminated string")
        self.pos = m.end()
        value = json.loads(m.group(0))
        assert isinstance(value, str)
        return value

    def key(self) -> str:
        self.skip()
        if self.peek(Q) or self.peek('"'):
            return self.string()
        end = self.text.find(":", self.pos)
        if end < 0:
            raise BodyError("a key without ':'")
        key = self.text[self.pos : end].strip()
        if not key or any(ch in key for ch in "{}[],"):
            raise BodyError(f"not a key: {key!r}")
        self.pos = end
        return key

    def obj(self) -> dict[str, Any]:
        """After ``{``: ``key:value`` pairs up to ``}``."""
        out: dict[str, Any] = {}
        self.skip()
        if self.peek("}"):
            self.pos += 1
            return out
        while True:
            key = self.key()
            self.expect(":")
            out[key] = self.value()
            self.skip()
            if self.peek(","):
                self.pos += 1
                self.skip()
                if self.peek("}"):  # a trailing comma
                    self.pos += 1
                    return out
                continue
            self.expect("}")
            return out

    def array(self) -> list[Any]:
        out: list[Any] = []
        self.skip()
        if self.peek("]"):
            self.pos += 1
            return out
        while True:
            out.append(self.value())
            self.skip()
            if self.peek(","):
                self.pos += 1
                self.skip()
                if self.peek("]"):
                    self.pos += 1
                    return out
                continue
            self.expect("]")
            return out

    def value(self) -> Any:
        self.skip()
        if self.peek(Q) or self.peek('"'):
            return self.string()
        if self.peek("{"):
            self.pos += 1
            return self.obj()
        if self.peek("["):
            self.pos += 1
            return self.array()
        m = _SCALAR.match(self.text, self.pos)
        word = m.group(0).strip() if m else ""
        if not word:
            raise BodyError(f"no value at {self.text[self.pos : self.pos + 12]!r}")
        self.pos = m.end() if m else self.pos
        return scalar(word)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(r"[^,}\]]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORDS = {"true": True, "false": False, "null": None, "none": None, "nil": None}


def scalar(word: str) -> Any:
    """A bare value: ``true``/``false``/``null`` (any case, ``None`` and ``nil`` too), a number, else its text."""
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    if _NUMBER.fullmatch(word):
        number = float(word)
        if "." not in word and "e" not in word.lower():
            return int(word)
        return number if number == number and abs(number) != float("inf") else word
    return word


_CALL = re.compile(r"\s*call\s*:\s*([^{\s][^{]*?)\s*\{")


def tool_call_block(body: str) -> list[Call]:
    """The inside of ``<|tool_call>...<tool_call|>``: one or more ``call:NAME{...}``."""
    calls: list[Call] = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        m = _CALL.match(body, pos)
        if not m:
            raise BodyError(f"expected call:NAME{{...}}, got {body[pos : pos + 20]!r}")
        reader = _Reader(body)
        reader.pos = m.end()
        args = reader.obj()
        calls.append(Call(m.group(1).strip(), dump_arguments(args)))
        pos = reader.pos
        while pos < len(body) and body[pos] in " \t\r\n,":
            pos += 1
    if not calls:
        raise BodyError("an empty <|tool_call> block")
    return calls


def _grammar(tools: list[Any] | None) -> Grammar:
    markers = {
        "think_start": CHANNEL_OPEN + "thought",
        "think_end": CHANNEL_CLOSE,
        "tool_call_start": CALL_OPEN,
        "tool_call_end": CALL_CLOSE,
        "turn_end": TURN_END,
        "tool_response": RESPONSE_OPEN,
        "eos": EOS,
    }
    return Grammar(
        "gemma-4",
        markers,
        think=("think_start", "think_end"),
        blocks=(Block("tool_call_start", ("tool_call_end",), tool_call_block),),
        end=("turn_end", "tool_response", "eos"),
    )


PARSERS = [
    ParserSpec(
        "gemma-4",
        _grammar,
        '<|channel>thought...<channel|> reasoning, <|tool_call>call:NAME{key:<|"|>value<|"|>}<tool_call|>',
        template_markers=("<|tool_call>call:",),
        priority=30,
    ),
]

_THINKING = TemplateKwarg(
    "enable_thinking",
    "bool",
    False,
    "True: <|think|> opens the system turn and the model reasons before answering",
)
_PRESERVE = TemplateKwarg(
    "preserve_thinking",
    "bool",
    False,
    "True: the reasoning of assistant messages with tool calls is kept in history",
)


def _family(
    fmt: type[Gemma4],
    aliases: tuple[str, ...],
    pin: Pin,
    kwargs: tuple[TemplateKwarg, ...] = (_THINKING, _PRESERVE),
    export: str | None = "gemma-4.jinja",
) -> Family:
    return Family(
        fmt.info.name,
        make=fmt,
        aliases=aliases,
        parser="gemma-4",
        kwargs=kwargs,
        pins=(pin,),
        export=export,
        reference=fmt.info.reference,
        group="gemma",
    )


FAMILIES = [
    _family(
        Gemma4,
        ("gemma-4-it", "gemma-4-26b-a4b-it", "gemma-4-31b-it", "gemma-4-12b-it", "gemma4"),
        Pin("google/gemma-4-26B-A4B-it", "google--gemma-4-26B-A4B-it.jinja"),
    ),
    _family(
        Gemma4E,
        ("gemma-4-e4b-it", "gemma-4-e2b-it", "gemma-4-e2b"),
        Pin("google/gemma-4-E4B-it", "google--gemma-4-E4B-it.jinja"),
    ),
    _family(
        DiffusionGemma,
        ("diffusiongemma-26b-a4b-it", "diffusion-gemma"),
        Pin("google/diffusiongemma-26B-A4B-it", "google--diffusiongemma-26B-A4B-it.jinja"),
    ),
    _family(
        Gemma4OTel,
        ("otel-llm-e4b-it",),
        Pin("farbodtavakkoli/OTel-LLM-E4B-IT", "farbodtavakkoli--OTel-LLM-E4B-IT.jinja"),
        kwargs=(_THINKING,),
    ),
    _family(
        Gemma4LlamaCpp31B,
        (),
        Pin("google/gemma-4-31B-it", "google--gemma-4-31B-it-llama.cpp.jinja"),
        kwargs=(_THINKING,),
        export=None,
    ),
]

__all__ = [
    "FAMILIES",
    "PARSERS",
    "DiffusionGemma",
    "Gemma4",
    "Gemma4E",
    "Gemma4LlamaCpp31B",
    "Gemma4OTel",
    "declaration",
    "format_argument",
    "format_parameters",
    "scalar",
    "strip_thinking",
    "tool_call_block",
]
