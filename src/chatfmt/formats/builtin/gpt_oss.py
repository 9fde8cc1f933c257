"""gpt-oss (openai/gpt-oss-20b, -120b; gpt-oss-safeguard): the harmony format.

``gpt-oss`` renders exactly what the chat template of openai/gpt-oss-120b (= openai/gpt-oss-20b's)
renders under transformers; ``gpt-oss-safeguard`` what openai/gpt-oss-safeguard-20b's (=
-120b's) renders. Both templates are pinned (``official/``). What they write:

- a system message ``<|start|>system<|message|>`` + ``model_identity`` (default ``You are ChatGPT, a
  large language model trained by OpenAI.``) + ``\\nKnowledge cutoff: 2024-06\\nCurrent date: `` + today
  (``%Y-%m-%d``, the template's ``strftime_now``) + ``\\n\\nReasoning: `` + ``reasoning_effort`` (default
  ``medium``) + ``\\n\\n``, then with ``builtin_tools`` (``browser`` and/or ``python``) ``# Tools\\n\\n`` and
  their fixed descriptions, then ``# Valid channels: analysis, commentary, final. Channel must be
  included for every message.``, with tools ``\\nCalls to these tools must go to the commentary
  channel: 'functions'.``, and ``<|end|>``;
- the conversation's system message (first) becomes the developer message
  ``<|start|>developer<|message|># Instructions\\n\\n`` + its content + ``\\n\\n`` (gpt-oss; gpt-oss-safeguard
  writes no ``\\n\\n`` after it, but ``\\n\\n`` before the tools), then with tools ``# Tools\\n\\n## functions
  \\n\\nnamespace functions {...} // namespace functions`` (each tool as a TypeScript-like type, its
  JSON schema rendered as the template's ``render_typescript_type`` does, quirks included), then
  ``<|end|>``; no developer message without a system message and tools;
- a user message ``<|start|>user<|message|>...<|end|>``;
- an assistant message ``<|start|>assistant<|channel|>final<|message|>...<|end|>``; the last message
  of a conversation rendered without generation prompt ends with ``<|return|>`` instead and its
  reasoning (``thinking``/``reasoning_content``) comes first as ``<|start|>assistant<|channel|>analysis
  <|message|>...<|end|>``; earlier reasoning is dropped;
- an assistant message with tool calls: its content (or else its reasoning) as an analysis message
  unless a later assistant message without tool calls follows, then ``<|start|>assistant
  to=functions.NAME<|channel|>commentary json<|message|>`` + the arguments as ``tojson`` + ``<|call|>``.
  One call per message: the template writes only the first and names every result after it, chatfmt
  refuses more than one (a ``ValidationError``: give parallel calls as consecutive assistant messages)
  rather than drop calls silently;
- a tool result ``<|start|>functions.NAME to=assistant<|channel|>commentary<|message|>`` + the
  content as ``tojson`` (a JSON string literal) + ``<|end|>``, NAME the last call's;
- the generation prompt ``<|start|>assistant``.

Where the templates differ from openai-harmony (the vendor renderer and encoder): harmony writes
``<|constrain|>json`` where the templates write ``json``, the tool result as it is where the templates
write it as a JSON string, gpt-oss's developer instructions without the ``\\n\\n`` after them
(gpt-oss-safeguard's template agrees with harmony there) and safeguard's tools without the ``\\n\\n``
before them, a parameter's default without the comma after it, ``nullable`` on any type, and a tool
whose parameters are an empty object as ``(_: any)``. chatfmt follows the templates. The ids are pinned to harmony's
(the ``o200k_harmony`` encoding) on conversations where both write the same text, the harmony
messages built to write the template's text where they do not (tests/formats/builtin/test_gpt_oss.py).
chatfmt has no ``developer`` role: the system message is the developer message, as in the templates.

Deliberate leniencies (the templates would raise): ``None`` content renders as ``""``, a list of
content parts as its joined text, a tool without description without its ``// `` line, a non-string
enum default with ``str``; content holding ``<|channel|>analysis<|message|>`` renders as it is; an
assistant message with tool calls and both content and reasoning writes the reasoning as the analysis
message (dropped as above) and the content as a ``commentary`` preamble. A call's ``content_type`` is not read:
chatfmt's tool calls have none, and the template's default is ``json``.

Segments: message content (and reasoning) is ``content``, a tool result's ``tojson`` text included;
everything else ``control``. An assistant message trains on everything but its first
``<|start|>assistant`` (the generation prompt); the system message and the tool list belong to no
message, the developer message to the conversation's system message.

The output parser ``gpt-oss`` reads harmony: generation starts after ``<|start|>assistant``; a message
is a header (``<|channel|>CHANNEL``, a recipient ``to=...`` before or after the channel, a content type
with or without ``<|constrain|>``) then ``<|message|>`` and its body, ended by ``<|end|>`` (another
message follows), ``<|call|>`` or ``<|return|>``. ``analysis`` is reasoning, ``final`` and
``commentary`` without recipient are content, a recipient ``functions.NAME`` makes the body the
arguments of a call of NAME (JSON, or a Python literal, trailing text ignored), another recipient
(``browser.search``, ``python``) a call of that name (``python`` may take raw code). Text after
``<|return|>`` is not part of the message; messages after ``<|call|>`` are (a backend that did not stop
there). A body that does not end before the output does is taken as it is (backends drop the stop
token). Two messages of one kind (two analysis messages, a preamble and a final answer) are joined with
a blank line. A header without ``<|message|>`` is dropped with a warning; text with no harmony marker at
all is content. The parser is :class:`HarmonyParser` (the grammar's ``parser_class``); without the
grammar's block (``tool_choice: "none"``) a call's body is content.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ...errors import BodyError, ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls import bodies
from ...toolcalls.bodies import Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar, OutputParser
from ..base import FormatInfo, NativeFormat
from ..family import Family, Pin, TemplateKwarg

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
CONSTRAIN, RETURN, CALL = "<|constrain|>", "<|return|>", "<|call|>"
SPECIAL_TOKENS = {
    "start": START,
    "end": END,
    "message": MESSAGE,
    "channel": CHANNEL,
    "constrain": CONSTRAIN,
    "return": RETURN,
    "call": CALL,
    "endoftext": "<|endoftext|>",
}

DEFAULT_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
CHANNELS = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
FUNCTIONS_NOTE = "\nCalls to these tools must go to the commentary channel: 'functions'."

BROWSER = (
    "## browser\n\n"
    "// Tool for browsing.\n"
    "// The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
    "// Cite information from the tool using the following format:\n"
    "// `【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.\n"
    "// Do not quote more than 10 words directly from the tool output.\n"
    "// sources=web (default: web)\n"
    "namespace browser {\n\n"
    "// Searches for information related to `query` and displays `topn` results.\n"
    "type search = (_: {\n"
    "query: string,\n"
    "topn?: number, // default: 10\n"
    "source?: string,\n"
    "}) => any;\n\n"
    "// Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing "
    "`num_lines` lines.\n"
    "// Valid link ids are displayed with the formatting: `【{id}†.*】`.\n"
    "// If `cursor` is not provided, the most recent page is implied.\n"
    "// If `id` is a string, it is treated as a fully qualified URL associated with `source`.\n"
    "// If `loc` is not provided, the viewport will be positioned at the beginning of the document or centered "
    "on the most relevant passage, if available.\n"
    "// Use this function without `id` to scroll to a new location of an opened page.\n"
    "type open = (_: {\n"
    "id?: number | string, // default: -1\n"
    "cursor?: number, // default: -1\n"
    "loc?: number, // default: -1\n"
    "num_lines?: number, // default: -1\n"
    "view_source?: boolean, // default: false\n"
    "source?: string,\n"
    "}) => any;\n\n"
    "// Finds exact matches of `pattern` in the current page, or the page given by `cursor`.\n"
    "type find = (_: {\n"
    "pattern: string,\n"
    "cursor?: number, // default: -1\n"
    "}) => any;\n\n"
    "} // namespace browser\n\n"
)
PYTHON = (
    "## python\n\n"
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. This "
    "tool should be used for internal reasoning, but not for code that is intended to be visible to the user (e.g. "
    "when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook "
    "environment. python will respond with the output of the execution or time out after 120.0 seconds. The drive "
    "at '/mnt/data' can be used to save and persist user files. Internet access for this session is UNKNOWN. "
    "Depends on the cluster.\n\n"
)

# -- how the templates write values and tool schemas ----------------------------------------------------


def tojson(value: Any) -> str:
    """transformers' ``tojson`` filter: ``json.dumps`` with non-ASCII kept and default separators."""
    return json.dumps(value, ensure_ascii=False)


def jinja_str(value: Any) -> str:
    """What ``{{ value }}`` (or ``~``) writes: the text of a string, Python's ``str`` of anything else."""
    return value if isinstance(value, str) else str(value)


def _get(obj: Any, key: str) -> Any:
    """``obj.key`` in the template: the item of a mapping, else undefined (``None`` here)."""
    return obj.get(key) if isinstance(obj, Mapping) else None


def _is_list(value: Any) -> bool:
    # Jinja's ``is iterable and is not string and is not mapping``, with an element ``[0]``
    return isinstance(value, (list, tuple)) and len(value) > 0


def _required(spec: Any) -> list[Any]:
    req = _get(spec, "required")
    return list(req) if isinstance(req, (list, tuple)) and req else []


def ts_type(spec: Any) -> str:
    """The template's ``render_typescript_type(param_spec, ...)``: a JSON schema as a TypeScript type."""
    kind = _get(spec, "type")
    if kind == "array":
        items = _get(spec, "items")
        if items:
            item_kind = _get(items, "type")
            if item_kind == "string":
                text = "string[]"
            elif item_kind in ("number", "integer"):
                text = "number[]"
            elif item_kind == "boolean":
                text = "boolean[]"
            else:
                inner = ts_type(items)
                text = "any[]" if inner == "object | object" or len(inner) > 50 else inner + "[]"
        else:
            text = "any[]"
        return text + (" | null" if _get(spec, "nullable") else "")
    if _is_list(kind):
        return " | ".join(jinja_str(k) for k in kind) if len(kind) > 1 else jinja_str(kind[0])
    variants = _get(spec, "oneOf")
    if variants:
        # the template's test for object variants sets a variable inside its loop, which Jinja scopes to
        # the loop: the test never holds, every variant is written
        parts = []
        for k, variant in enumerate(variants):
            part = ts_type(variant)
            description = _get(variant, "description")
            if description:
                part += "// " + jinja_str(description)
            if isinstance(variant, Mapping) and "default" in variant:
                part += " " * 20 + "// default: " + tojson(variant["default"])
            if k < len(variants) - 1:
                part += " | \n"
            parts.append(part)
        return "".join(parts)
    if kind == "string":
        enum = _get(spec, "enum")
        if enum:
            return '"' + '" | "'.join(jinja_str(e) for e in enum) + '"'
        return "string" + (" | null" if _get(spec, "nullable") else "")
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "object":
        props = _get(spec, "properties")
        if not props or not isinstance(props, Mapping):
            return "object"
        required = _required(spec)
        fields = [
            jinja_str(name) + ("" if name in required else "?") + ": \n" + " " * 16 + ts_type(prop)
            for name, prop in props.items()
        ]
        return "{\n" + ", ".join(fields) + "}"
    return "any"


def _default_text(spec: Mapping[str, Any]) -> str:
    default = spec["default"]
    if _get(spec, "enum"):
        return ", // default: " + jinja_str(default)
    if _get(spec, "oneOf"):
        return "// default: " + jinja_str(default)
    return ", // default: " + tojson(default)


def function_type(fn: Any) -> str:
    """One tool of the ``functions`` namespace: its description comment and ``type NAME = ...``."""
    description = _get(fn, "description")
    text = "" if description is None else "// " + jinja_str(description) + "\n"
    text += "type " + jinja_str(_get(fn, "name") or "") + " = "
    params = _get(fn, "parameters")
    props = _get(params, "properties")
    if not (params and props and isinstance(props, Mapping)):
        return text + "() => any;\n\n"
    required = _required(params)
    text += "(_: {\n"
    for name, spec in props.items():
        if _get(spec, "description"):
            text += "// " + jinja_str(spec["description"]) + "\n"
        text += jinja_str(name) + ("" if name in required else "?") + ": " + ts_type(spec)
        if isinstance(spec, Mapping) and "default" in spec:
            text += _default_text(spec)
        text += ",\n"
    return text + "}) => any;\n\n"


def functions_namespace(tools: Sequence[Any]) -> str:
    """``## functions\\n\\nnamespace functions {...} // namespace functions``."""
    body = "".join(
        function_type(tool["function"] if isinstance(tool, Mapping) and "function" in tool else tool)
        for tool in tools
    )
    return "## functions\n\nnamespace functions {\n\n" + body + "} // namespace functions"


# -- the format -------------------------------------------------------------------------------------------


def today() -> str:
    """Today's date as the templates write it (``strftime_now("%Y-%m-%d")``)."""
    return datetime.now().strftime("%Y-%m-%d")


def _only_call(i: int, m: Message) -> ToolCall:
    """The message's one tool call; more than one is refused (the template would drop all but the first)."""
    assert m.tool_calls
    if len(m.tool_calls) > 1:
        raise ValidationError(
            f"gpt-oss writes one tool call per assistant message ({len(m.tool_calls)} given; its template would "
            "drop all but the first): give each call its own assistant message",
            index=i,
            rule="tool_call",
        )
    return m.tool_calls[0]


class GptOss(NativeFormat):
    """gpt-oss-20b/120b: harmony (system, developer, channels, ``to=functions.NAME`` calls)."""

    info = FormatInfo(
        name="gpt-oss",
        family="gpt-oss",
        description="OpenAI gpt-oss: harmony, <|start|>role<|channel|>analysis|commentary|final<|message|>...<|end|>",
        stop=(RETURN, CALL),
        end_of_turn=(RETURN, CALL),
        eos_token=RETURN,
        supports_tools=True,
        supports_reasoning=True,
        reference="the chat_template of openai/gpt-oss-120b (= openai/gpt-oss-20b's), rendered by transformers; "
        "ids: openai-harmony's renderer on the o200k_harmony encoding",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    #: whether ``\\n\\n`` follows the developer instructions (gpt-oss) or precedes the tools (safeguard)
    instructions_tail = True

    def jinja_variables(self) -> dict[str, object]:
        return {"instructions_tail": self.instructions_tail}

    def system_text(self, tools: bool, reasoning_effort: Any, builtin_tools: Any, model_identity: Any) -> str:
        identity = DEFAULT_IDENTITY if model_identity is None else jinja_str(model_identity)
        effort = "medium" if reasoning_effort is None else jinja_str(reasoning_effort)
        text = (
            identity
            + "\nKnowledge cutoff: 2024-06\nCurrent date: "
            + today()
            + "\n\nReasoning: "
            + effort
            + "\n\n"
        )
        if builtin_tools:
            names = list(builtin_tools) if isinstance(builtin_tools, (list, tuple)) else [builtin_tools]
            text += (
                "# Tools\n\n"
                + (BROWSER if "browser" in names else "")
                + (PYTHON if "python" in names else "")
            )
        return text + CHANNELS + (FUNCTIONS_NOTE if tools else "")

    def developer(self, out: SegmentBuilder, system: Message | None, tools: list[Any] | None) -> None:
        instructions = system.text if system is not None else ""
        if not instructions and not tools:
            return
        i = 0 if system is not None else None
        trained = system.trained if system is not None else False
        out.control(START + "developer" + MESSAGE, i)
        tail = ""
        if instructions:
            out.control("# Instructions\n\n", i)
            out.content(instructions, i, trained)
            if self.instructions_tail:
                tail = "\n\n"
        if tools:
            tail += ("" if self.instructions_tail else "\n\n") + "# Tools\n\n" + functions_namespace(tools)
        out.control(tail + END, i, trained)

    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        reasoning_effort: str | None = None,
        builtin_tools: list[str] | None = None,
        model_identity: str | None = None,
        **kwargs: Any,
    ) -> None:
        msgs = conv.messages
        tools = conv.tools
        out.control(
            START
            + "system"
            + MESSAGE
            + self.system_text(bool(tools), reasoning_effort, builtin_tools, model_identity)
            + END
        )
        first = 1 if msgs and msgs[0].role == "system" else 0
        self.developer(out, msgs[0] if first else None, tools)
        last_call: str | None = None
        for i in range(first, len(msgs)):
            m = msgs[i]
            if m.role == "user":
                out.turn(i, START + "user" + MESSAGE, m.text, END, m.trained)
            elif m.role == "tool":
                name = last_call if last_call is not None else (m.name or "")
                result = tojson(m.content if isinstance(m.content, list) else m.text)
                out.turn(
                    i,
                    START + "functions." + name + " to=assistant" + CHANNEL + "commentary" + MESSAGE,
                    result,
                    END,
                    m.trained,
                )
            elif m.role == "assistant":
                later = msgs[i + 1 :]
                if m.tool_calls:
                    final_follows = any(n.role == "assistant" and not n.tool_calls for n in later)
                    last_call = self.tool_call_turn(out, i, m, final_follows)
                else:
                    last = i == len(msgs) - 1 and not add_generation_prompt
                    self.final_turn(out, i, m, last)
                    if not last:
                        last_call = None
        if add_generation_prompt:
            out.control(START + "assistant")

    def final_turn(self, out: SegmentBuilder, i: int, m: Message, last: bool) -> None:
        trained = m.trained
        out.control(START + "assistant", i)
        if last and m.reasoning_content is not None:
            out.control(CHANNEL + "analysis" + MESSAGE, i, trained)
            out.content(m.reasoning_content, i, trained)
            out.control(END + START + "assistant", i, trained)
        out.control(CHANNEL + "final" + MESSAGE, i, trained)
        out.content(m.text, i, trained)
        out.control(RETURN if last else END, i, trained)

    def tool_call_turn(self, out: SegmentBuilder, i: int, m: Message, final_follows: bool) -> str:
        trained = m.trained
        content, thinking = m.text, m.reasoning_content
        out.control(START + "assistant", i)
        analysis = thinking if content and thinking else (content or thinking)
        if analysis and not final_follows:
            out.control(CHANNEL + "analysis" + MESSAGE, i, trained)
            out.content(analysis, i, trained)
            out.control(END + START + "assistant", i, trained)
        if content and thinking:  # the template raises: the content goes as a commentary preamble
            out.control(CHANNEL + "commentary" + MESSAGE, i, trained)
            out.content(content, i, trained)
            out.control(END + START + "assistant", i, trained)
        call = _only_call(i, m)
        out.control(
            " to=functions."
            + call.name
            + CHANNEL
            + "commentary json"
            + MESSAGE
            + tojson(call.arguments)
            + CALL,
            i,
            trained,
        )
        return call.name


class GptOssSafeguard(GptOss):
    """gpt-oss-safeguard-20b/120b: gpt-oss's format, ``\\n\\n`` before the tools, not after the instructions."""

    info = replace(
        GptOss.info,
        name="gpt-oss-safeguard",
        description="OpenAI gpt-oss-safeguard: gpt-oss's harmony, developer instructions without a trailing blank line",
        reference="the chat_template of openai/gpt-oss-safeguard-20b (= -120b's), rendered by transformers; ids: "
        "openai-harmony's renderer on the o200k_harmony encoding",
        special_tokens=dict(SPECIAL_TOKENS),
    )
    instructions_tail = False


# -- the output parser ------------------------------------------------------------------------------------

_RECIPIENT = re.compile(r"\bto\s*=\s*([^\s<]+)")
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")


def harmony_call(recipient: str, body: str) -> Call:
    """A call to ``recipient`` (``functions.NAME``, or a built-in tool) whose body is the arguments:
    JSON (fenced or not, trailing text ignored) or a Python literal; ``python`` may take raw code."""
    name = recipient[len("functions.") :] if recipient.startswith("functions.") else recipient
    text = bodies.strip_fence(body).strip()
    if not text:
        return Call(bodies._name(name), "{}")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = None
    if isinstance(value, str):  # arguments as a JSON string holding the object
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            value = None
    if not isinstance(value, dict):
        if recipient == "python":
            return Call(name, tojson({"code": text}))
        raise BodyError(f"the arguments of {recipient!r} are not a JSON object")
    return Call(bodies._name(name), bodies.dump_arguments(value))


def _declared(body: str) -> list[Call]:
    # the Block below declares where a call's arguments are; HarmonyParser reads them with their header
    raise BodyError("a harmony call is named by its message header")


class HarmonyParser(OutputParser):
    """:class:`OutputParser` for harmony: messages of header + ``<|message|>`` + body, one mode per
    message (reasoning, content or a call's arguments) chosen by the header."""

    def reset(self) -> None:
        super().reset()
        self._mode = "header"
        self._recipient = ""
        self._marked = False  # a <|channel|> marker came in the header being read
        self._seen: set[str] = set()
        prompt = self.prompt or ""
        idx = prompt.rfind(START)
        tail = prompt[idx + len(START) :] if idx >= 0 else ""
        head, sep, rest = tail.partition(MESSAGE)
        if sep and not any(t in rest for t in (END, CALL, RETURN)):
            self._open(head)  # the prompt opened a message (continue_final_message): generation goes on in it

    def _open(self, header: str) -> None:
        recipient = _RECIPIENT.search(header)
        channel = _CHANNEL.search(header)
        name = channel.group(1) if channel else ""
        if recipient and recipient.group(1) != "assistant" and self.grammar.blocks:
            self._mode, self._recipient = "call", recipient.group(1)
            return
        self._mode = "reasoning" if name == "analysis" else "content"
        if self._mode in self._seen:  # a second message of the kind: a blank line between them
            (self._emit_reasoning if self._mode == "reasoning" else self._emit_content)("\n\n")
        self._seen.add(self._mode)

    def _on_text(self, text: str) -> None:
        if self._mode in ("header", "call"):
            self._buf += text
        elif self._mode == "reasoning":
            self._emit_reasoning(text)
        elif self._mode == "content":
            self._emit_content(text)

    def _on_marker(self, key: str, text: str) -> None:
        mode = self._mode
        if mode == "done":
            return
        if key in ("return", "endoftext") or key not in SPECIAL_TOKENS:
            self._close(at_end=True)
            return
        if mode == "header":
            if key in ("channel", "constrain"):
                self._buf += text
                self._marked = True
            elif key == "message":
                header, self._buf, self._marked = self._buf, "", False
                self._open(header)
            else:  # <|start|>, <|end|>, <|call|> before the header's <|message|>
                self._close(at_end=False)
            return
        if mode == "call":
            if key in ("call", "end", "start"):
                self._close(at_end=False)
            else:
                self._buf += text
            return
        # a reasoning or content message
        if key in ("end", "call", "start"):
            self._mode = "header"
        elif key == "channel":  # a new header without <|end|><|start|>assistant before it
            self._mode, self._buf, self._marked = "header", text, True
        else:
            self._on_text(text)

    def _close(self, *, at_end: bool, closing: str = "") -> None:
        mode, buf = self._mode, self._buf
        self._buf = ""
        if mode == "call":
            recipient = self._recipient
            self._try_calls(lambda: [harmony_call(recipient, buf)], buf, f"call of {recipient!r}")
            self._mode = "header"
        elif mode == "header" and buf.strip():
            if self._marked:
                self._warn(f"a message header without {MESSAGE} dropped: {buf[:40]!r}")
            else:  # plain text, no harmony around it
                self._emit_content(buf)
        self._marked = False
        if at_end:
            self._mode = "done"


def _grammar(tools: list[Any] | None) -> Grammar:
    markers = {**SPECIAL_TOKENS}
    return Grammar(
        "gpt-oss",
        markers,
        blocks=(Block("message", ("call",), _declared),),
        end=("return", "endoftext"),
        drop=("start", "end", "channel", "constrain"),
        parser_class=HarmonyParser,
    )


PARSERS = [
    ParserSpec(
        "gpt-oss",
        _grammar,
        "harmony: <|channel|>analysis/final, to=functions.NAME <|constrain|>json<|message|>{...}<|call|>",
        template_markers=("<|channel|>",),
        priority=5,
    ),
]

_KWARGS = (
    TemplateKwarg(
        "reasoning_effort", "str | None", None, "the system message's 'Reasoning:' (default: medium)"
    ),
    TemplateKwarg(
        "builtin_tools",
        "list[str] | None",
        None,
        "'browser' and/or 'python': their descriptions in the system message",
    ),
    TemplateKwarg(
        "model_identity",
        "str | None",
        None,
        "the system message's first line (default: You are ChatGPT, ...)",
    ),
)


FAMILIES = [
    Family(
        "gpt-oss",
        make=GptOss,
        aliases=("gpt-oss-20b", "gpt-oss-120b"),
        parser="gpt-oss",
        kwargs=_KWARGS,
        pins=(Pin("openai/gpt-oss-120b", "openai--gpt-oss-120b.jinja"),),
        export="gpt-oss.jinja",
        reference=GptOss.info.reference,
        group="openai",
    ),
    Family(
        "gpt-oss-safeguard",
        make=GptOssSafeguard,
        aliases=("gpt-oss-safeguard-20b", "gpt-oss-safeguard-120b"),
        parser="gpt-oss",
        kwargs=_KWARGS,
        pins=(Pin("openai/gpt-oss-safeguard-20b", "openai--gpt-oss-safeguard-20b.jinja"),),
        export="gpt-oss.jinja",
        reference=GptOssSafeguard.info.reference,
        group="openai",
    ),
]
