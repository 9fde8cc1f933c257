"""Qwen3-Coder: ChatML with an XML tool list and ``<function=NAME><parameter=ARG>`` tool calls.

``qwen3-coder`` renders exactly what the chat template of Qwen/Qwen3-Coder-30B-A3B-Instruct (the same
text in Qwen/Qwen3-Coder-480B-A35B-Instruct) renders under transformers; ``qwen3-coder-next`` what
Qwen/Qwen3-Coder-Next's renders. Both are pinned to the published templates (``official/``):

- no default system prompt, except with tools and no system message:
  ``You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks.``;
- with tools, ``\\n\\n# Tools ... <tools>`` follows the system prompt, one ``<function>`` element per
  tool (``<name>``, ``<description>`` trimmed, ``<parameters>`` with one ``<parameter>`` per property:
  ``<name>``, ``<type>``, ``<description>``, then any other key of the property as ``<KEY>value</KEY>``;
  then the other keys of the parameters object and of the function the same way), then the
  instructions on the call syntax;
- an assistant message with tool calls is ``<|im_start|>assistant``, then ``\\n`` + its content
  trimmed + ``\\n`` when that is not empty, then per call ``\\n<tool_call>\\n<function=NAME>\\n`` +
  per argument ``<parameter=ARG>\\nVALUE\\n</parameter>\\n`` + ``</function>\\n</tool_call>``;
- argument values (and the extra keys of the tool list): strings as they are; objects and lists as
  ``tojson``; other values as Jinja's ``string`` filter writes them (``True``, ``None``, ``2.5``) in
  ``qwen3-coder``, as ``tojson`` (``true``, ``null``) in ``qwen3-coder-next``;
- tool results: consecutive results share one user turn; ``qwen3-coder`` writes
  ``<|im_start|>user\\n`` + per result ``<tool_response>\\nRESULT\\n</tool_response>\\n`` +
  ``<|im_end|>\\n``, ``qwen3-coder-next`` writes Qwen3's shape (``<|im_start|>user`` + per result
  ``\\n<tool_response>\\nRESULT\\n</tool_response>`` + ``<|im_end|>\\n``);
- the generation prompt is ``<|im_start|>assistant\\n``; the templates read no keyword argument.

Deliberate leniencies (the templates would raise): ``None`` content renders as ``""`` and a list of
content parts as its joined text (also in the trimmed content before tool calls).

Segments: message content is ``content``; everything else ``control``. An assistant message's
content, tool-call text and ``<|im_end|>`` are trained with it; its ``<|im_start|>assistant\\n`` header
(the generation prompt) and the newline after ``<|im_end|>`` are not. The default system prompt and the
tool list with no system message belong to no message.

The output parser ``qwen3-coder`` reads what these models generate: content, then ``<tool_call>``
blocks of ``<function=NAME>`` elements (a ``<function=NAME>`` element without the wrapper is accepted,
as vLLM's and Qwen's own parsers accept it; a ``<tool_call>`` holding Hermes JSON too). Argument values
are converted with the tool's JSON schema as Qwen's parser does: ``null`` is null; a string-typed (or
undeclared) parameter keeps its text; integer, number and boolean parameters are converted
(``True``/``true``), objects and arrays decoded as JSON or Python literals; a value that does not
convert keeps its text (Qwen's parser makes a non-boolean ``false``; here it keeps its text too,
and ``None``, which the Qwen3-Coder template writes for a null, is null unless the parameter is a
string). One newline after ``<parameter=ARG>`` and one before ``</parameter>`` are the
syntax's, not the value's.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ...toolcalls import bodies
from ...toolcalls.bodies import BodyError, Call
from ...toolcalls.families import ParserSpec
from ...toolcalls.parser import Block, Grammar
from ..family import Family, Pin
from ._chatml import (
    IM_END,
    QWEN_RESPONSES,
    QWEN_SPECIAL_TOKENS,
    ChatMLFormat,
    ToolResponses,
    assistant_turn,
    header,
    tojson,
    turn,
)
from ._info import eos_info

DEFAULT_SYSTEM = "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."

TOOLS_HEADER = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
TOOLS_FOOTER = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the "
    "specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> "
    "XML tags\n- Required parameters MUST be specified\n- You may provide optional reasoning for your function "
    "call in natural language BEFORE the function call, but NOT after\n- If there is no function call available, "
    "answer the question like normal with your current knowledge and do not tell the user about function calls\n"
    "</IMPORTANT>"
)

# -- how the templates write values ------------------------------------------------------------------


def jinja_str(value: Any) -> str:
    """Jinja's ``string`` filter (and ``~``): the text of a value, Python's ``str`` of any other."""
    return value if isinstance(value, str) else str(value)


def _is_json_container(value: Any) -> bool:
    # Jinja's ``is mapping or (is sequence and is not string)``
    return isinstance(value, (Mapping, list, tuple))


def value_text(value: Any) -> str:
    """An argument value (or an extra key of the tool list) as Qwen3-Coder's template writes it:
    objects and lists as ``tojson``, anything else with the ``string`` filter."""
    return tojson(value) if _is_json_container(value) else jinja_str(value)


def value_json(value: Any) -> str:
    """As Qwen3-Coder-Next's template writes a value: a string as it is, anything else as ``tojson``."""
    return value if isinstance(value, str) else tojson(value)


def _extra_keys(obj: Any, handled: tuple[str, ...], write: Callable[[Any], str]) -> str:
    """The template's ``render_extra_keys``: each key not handled, as ``\\n<KEY>value</KEY>``."""
    if not isinstance(obj, Mapping):
        return ""
    return "".join(f"\n<{jinja_str(k)}>{write(v)}</{jinja_str(k)}>" for k, v in obj.items() if k not in handled)


def tools_block(tools: list[Any], write: Callable[[Any], str] = value_text) -> str:
    """The tool list of the system turn (after the system prompt and a blank line, or the default one)."""
    parts = [TOOLS_HEADER]
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, Mapping) else {}
        fn = fn if isinstance(fn, Mapping) else {}
        parts.append("\n<function>\n<name>" + jinja_str(fn.get("name", "")) + "</name>")
        if "description" in fn:
            parts.append("\n<description>" + jinja_str(fn["description"]).strip() + "</description>")
        parts.append("\n<parameters>")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, Mapping) else None
        if isinstance(props, Mapping):
            for pname, fields in props.items():
                parts.append("\n<parameter>\n<name>" + jinja_str(pname) + "</name>")
                if isinstance(fields, Mapping):
                    if "type" in fields:
                        parts.append("\n<type>" + jinja_str(fields["type"]) + "</type>")
                    if "description" in fields:
                        parts.append("\n<description>" + jinja_str(fields["description"]).strip() + "</description>")
                parts.append(_extra_keys(fields, ("name", "type", "description"), write) + "\n</parameter>")
        parts.append(_extra_keys(params, ("type", "properties"), write) + "\n</parameters>")
        parts.append(_extra_keys(fn, ("type", "name", "description", "parameters"), write) + "\n</function>")
    parts.append(TOOLS_FOOTER)
    return "".join(parts)


# -- the format ----------------------------------------------------------------------------------------


class Qwen3Coder(ChatMLFormat):
    """Qwen3-Coder-*-Instruct: ChatML, an XML tool list, ``<function=...><parameter=...>`` calls."""

    info = replace(
        eos_info(
            "qwen3-coder", "qwen", "Qwen3-Coder: ChatML, <tools> as XML, <tool_call><function=NAME><parameter=ARG> calls",
            "the chat_template of Qwen/Qwen3-Coder-30B-A3B-Instruct (= Qwen3-Coder-480B-A35B-Instruct's), rendered by "
            "transformers",
            eos=IM_END, tokens={k: v for k, v in QWEN_SPECIAL_TOKENS.items() if not k.startswith("think")},
            supports_tools=True,
        ),
        stop=(IM_END, "<|endoftext|>"),
    )
    #: the default system prompt, before the tool list when there is no system message
    lone_tools_sep = DEFAULT_SYSTEM + "\n\n"
    #: the templates open the user turn of tool results only after a message in their loop
    responses = ToolResponses(header("user"), "<tool_response>\n", "\n</tool_response>\n", open_first=False)

    #: how argument values and extra keys of the tool list are written: ``tojson`` unless a string
    #: (Next), else with Jinja's ``string`` filter unless an object or a list
    json_values = False

    def write(self, value: Any) -> str:
        return value_json(value) if self.json_values else value_text(value)

    def jinja_variables(self) -> dict[str, object]:
        r = self.responses
        return {"json_values": self.json_values, "results_open": r.open, "results_before": r.before,
                "results_after": r.after}

    def tool_definitions(self, tools: list[Any]) -> str:
        return tools_block(tools, self.write)

    def call_text(self, call: ToolCall) -> str:
        args = call.arguments if isinstance(call.arguments, Mapping) else {}
        params = "".join(f"<parameter={k}>\n{self.write(v)}\n</parameter>\n" for k, v in args.items())
        return f"<tool_call>\n<function={call.name}>\n{params}</function>\n</tool_call>"

    def assistant(self, out: SegmentBuilder, conv: Conversation, i: int, m: Message, after_query: bool) -> None:
        if not m.tool_calls:
            return turn(out, i, m)  # the content as it is: no reasoning is read
        content = m.text.strip()  # the template writes "\n" + content|trim + "\n", then "\n" before each call
        calls = [self.call_text(c) for c in m.tool_calls]
        if content:
            calls[0] = "\n" + calls[0]
        assistant_turn(out, i, m, content, calls)


class Qwen3CoderNext(Qwen3Coder):
    """Qwen3-Coder-Next: Qwen3-Coder's format, non-string values as JSON, Qwen3's tool-result turns."""

    info = replace(
        Qwen3Coder.info,
        name="qwen3-coder-next",
        description="Qwen3-Coder-Next: Qwen3-Coder's XML tools and calls, JSON values, Qwen3's tool results",
        reference="the chat_template of Qwen/Qwen3-Coder-Next, rendered by transformers",
    )
    responses = replace(QWEN_RESPONSES, open_first=False)
    json_values = True


# -- the output parser -------------------------------------------------------------------------------

_PARAMETER = re.compile(r"<parameter=(.*?)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)
_STRING_TYPES = frozenset({"string", "str", "text", "varchar", "char", "enum"})
_INT_PREFIXES = ("int", "uint", "long", "short", "unsigned")


def tool_schemas(tools: list[Any] | None) -> dict[str, dict[str, Any]]:
    """Function name -> its parameters' JSON schemas (``properties``), from an OpenAI tool list."""
    schemas: dict[str, dict[str, Any]] = {}
    for tool in tools or ():
        fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            continue
        params = fn.get("parameters")
        props = params.get("properties", params) if isinstance(params, Mapping) else {}
        schemas[fn["name"]] = dict(props) if isinstance(props, Mapping) else {}
    return schemas


def _schema_type(schema: Any) -> str:
    """The (first non-null) JSON-schema type a parameter declares, lower case; ``string`` if none."""
    kind = schema.get("type", "string") if isinstance(schema, Mapping) else "string"
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return str(kind).strip().lower()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _literal(text: str) -> Any:
    """A JSON value, else a Python literal (``{'a': True}``), else ``text`` itself."""
    for load in (json.loads, ast.literal_eval):
        try:
            value = load(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if _jsonable(value):
            return value
    return text


def convert_value(text: str, schema: Any) -> Any:
    """A parameter's text as the value its schema types it (``schema`` None: not declared)."""
    if text.lower() == "null":
        return None
    if schema is None:
        return text
    kind = _schema_type(schema)
    if kind in _STRING_TYPES:
        return text
    if text == "None":  # the Qwen3-Coder template writes a None argument with Jinja's string filter
        return None
    if kind.startswith(_INT_PREFIXES):
        try:
            return int(text)
        except ValueError:
            return text
    if kind.startswith(("num", "float")):
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
        return int(number) if number.is_integer() else number
    if kind in ("boolean", "bool", "binary"):
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return _literal(text)


def _strip_newline(value: str) -> str:
    """The value between ``<parameter=ARG>`` and ``</parameter>``: one newline each side is syntax."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def function_call(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> Call:
    """The text after ``<function=`` (up to ``</function>``): ``NAME>`` + ``<parameter=ARG>``
    elements; whitespace between them is allowed, other text is not."""
    name, sep, rest = body.partition(">")
    if not sep:
        raise BodyError("<function= without '>' after the name")
    name = name.strip()
    props = schemas.get(name, {})
    args: dict[str, Any] = {}
    pos = 0
    for m in _PARAMETER.finditer(rest):
        if rest[pos : m.start()].strip():
            raise BodyError(f"text outside <parameter> elements in the call of {name!r}")
        arg = m.group(1).strip()
        if not arg:
            raise BodyError(f"a <parameter=> without a name in the call of {name!r}")
        args[arg] = convert_value(_strip_newline(m.group(2)), props.get(arg))
        pos = m.end()
    if rest[pos:].strip():
        raise BodyError(f"text outside <parameter> elements in the call of {name!r}")
    return bodies.call_from_object({"name": name, "arguments": args})


def tool_call_block(body: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The inside of ``<tool_call>...</tool_call>``: ``<function=...>...</function>`` elements (the
    last may lack its ``</function>``), or Hermes JSON when there is no ``<function=``."""
    if "<function=" not in body:
        return bodies.json_calls(body)
    head, *elements = body.split("<function=")
    if head.strip():
        raise BodyError("text before <function= in a <tool_call>")
    calls = []
    for element in elements:
        inner, closed, tail = element.partition("</function>")
        if closed and tail.strip():
            raise BodyError("text after </function> in a <tool_call>")
        calls.append(function_call(inner, schemas))
    return calls


def _grammar(tools: list[Any] | None) -> Grammar:
    schemas = tool_schemas(tools)
    markers = {
        "tool_call_start": "<tool_call>", "tool_call_end": "</tool_call>",
        "function": "<function=", "function_end": "</function>",
        "im_end": "<|im_end|>", "endoftext": "<|endoftext|>",
    }
    return Grammar(
        "qwen3-coder", markers,
        blocks=(
            Block("tool_call_start", ("tool_call_end",), partial(tool_call_block, schemas=schemas)),
            Block("function", ("function_end",), lambda body: [function_call(body, schemas)]),
        ),
        end=("im_end", "endoftext"),
    )


PARSERS = [
    ParserSpec(
        "qwen3-coder", _grammar, "<tool_call><function=NAME><parameter=ARG>value</parameter>, typed by the tools",
        template_markers=("<parameter=",), priority=35,
    ),
]


def _family(fmt: type[Qwen3Coder], aliases: tuple[str, ...], pin: Pin) -> Family:
    """A variant's declaration: all but its names and its pinned template are the family's."""
    return Family(
        fmt.info.name, make=fmt, aliases=aliases, parser="qwen3-coder", kwargs=(), pins=(pin,),
        export="qwen3-coder.jinja", reference=fmt.info.reference, group="qwen",
    )


FAMILIES = [
    _family(
        Qwen3Coder,
        ("qwen3-coder-instruct", "qwen3-coder-30b-a3b-instruct", "qwen3-coder-480b-a35b-instruct"),
        Pin("Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen--Qwen3-Coder-30B-A3B-Instruct.jinja"),
    ),
    _family(Qwen3CoderNext, ("qwen3-coder-next-base",), Pin("Qwen/Qwen3-Coder-Next", "Qwen--Qwen3-Coder-Next.jinja")),
]
