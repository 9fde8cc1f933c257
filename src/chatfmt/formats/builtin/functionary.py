"""MeetKai Functionary v3.1 and v3.2 (Llama-3 headers): function calling in their own syntaxes.

``functionary-v3.1`` (``meetkai/functionary-medium-v3.1``, template ``version=v3-llama3.1``):
``<|begin_of_text|>`` and a system turn ``Cutting Knowledge Date: December 2023``, with the tools
(``Use the function 'name' to 'description'`` + the function's JSON, all three HTML-escaped: the
template appends them to ``|safe`` strings, so markupsafe escapes ``& < > ' "``) and the ``<function=...>``
instructions when tools are given (``Environment: ipython`` when a ``code_interpreter`` tool is among
them, which is then removed from the list); messages as ``<|start_header_id|>{role}<|end_header_id|>
\\n\\n{content}<|eot_id|>`` (a tool result is an ``ipython`` turn); an assistant's tool calls follow its
content as ``<function={name}>{arguments}</function>`` (``<|python_tag|>{arguments}`` for ``python``)
and end with ``<|eom_id|>`` instead of ``<|eot_id|>``.

``functionary-v3.2`` (``meetkai/functionary-medium-v3.2``, template ``version=v3.llama3``): the system
turn declares the tools as a TypeScript namespace (``// description`` + ``type name = (_: {...}) =>
any;``), generated exactly as the template's macros do (parameter comments with ``Default=``,
``Format=``, ``Maximum=``..., examples, enums, nested objects and arrays, ``?`` for optional
parameters, and their quirks: a parameter with neither ``type`` nor ``oneOf`` gets an empty type, an
enum separator is skipped before any value equal to the last one, ``oneOf`` types are de-duplicated
case-insensitively); a second system turn about the Python sandbox when a ``code_interpreter`` tool is
given. An assistant turn is ``>>>all\\n{content}`` (when there is content) then ``>>>{name}\\n
{arguments}`` per call, ending ``<|eot_id|>``; the generation prompt is
``<|start_header_id|>assistant<|end_header_id|>\\n\\n>>>``.

References: the llama.cpp copies of both templates. For v3.2 (``c392e50`` = ``0c1e570``) and for v3.1's
``c392e50`` copy (verbatim from Hugging Face), ``arguments`` must be a JSON string, which they write
verbatim; llama.cpp's later v3.1 copy (``0c1e570``) writes ``arguments | tojson``. chatfmt holds
arguments as objects, so this format writes ``json.dumps(arguments, ensure_ascii=False)``: what the
official templates write for arguments given as that JSON text, and what the ``0c1e570`` copy writes
for the object. (Functionary's ``python`` tool takes raw code as its arguments; chatfmt needs a JSON
object, e.g. ``{"code": ...}``.)

Where a template fails on a tool (v3.1: a function without a string name or description; v3.2: a
non-string description or name, a parameter description that is not a string, ``items`` that is not
an object), this format raises :class:`~chatfmt.errors.ValidationError` (rule ``tools``).
``content: None`` renders as ``""`` (the templates raise on a user message without content).

Segments: BOS and the system turn(s) built from the tools belong to no message; a system message is
its own turn. An assistant's content, tool-call text and end token (``<|eot_id|>``/``<|eom_id|>``) are
trained; its header is not (for v3.2 the header includes the first ``>>>``, so that it equals the
generation prompt).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...errors import TemplateFailure, ValidationError
from ...messages import Conversation, Message, ToolCall
from ...segments import SegmentBuilder
from ..base import NativeFormat
from ._headers import BEGIN_OF_TEXT, LLAMA3, header_info, native_family, pinned, tojson

BOS = BEGIN_OF_TEXT
EOT, EOM = LLAMA3.end, "<|eom_id|>"
header = LLAMA3.header
TOKENS = {"bos": BOS, "start_header": LLAMA3.open, "end_header": "<|end_header_id|>", "eot": EOT}


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TemplateFailure(f"{what} must be a string")
    return value


def _jstr(value: Any) -> str:
    """Jinja's ``string`` filter / ``~`` operator for JSON data."""
    return str(value)


def _arguments(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _type_of(tool: Any) -> Any:
    return tool.get("type") if isinstance(tool, dict) else None


def _tools_error(e: TemplateFailure, k: int, name: str) -> ValidationError:
    return ValidationError(f"the {name} template cannot render this tool: {e}", tool=k, rule="tools")


def _each_tool(tools: list[Any], render: Callable[[Any], str], name: str) -> list[str]:
    """``render`` of each tool; where the template would fail on one, a ValidationError naming it."""
    parts = []
    for k, tool in enumerate(tools):
        try:
            parts.append(render(tool))
        except TemplateFailure as e:
            raise _tools_error(e, k, name) from None
        except RecursionError:
            raise _tools_error(TemplateFailure("the schema nests too deeply"), k, name) from None
    return parts


# --- v3.1 ------------------------------------------------------------------------------------------

V31_INSTRUCTIONS = (
    "\nThink very carefully before calling functions.\nIf a you choose to call a function ONLY reply in the "
    "following format:\n<{start_tag}={function_name}>{parameters}{end_tag}\nwhere\n\nstart_tag => `<function`\n"
    "parameters => a JSON dict with the function argument name as key and function argument value as value.\n"
    "end_tag => `</function>`\n\nHere is an example,\n<function=example_function_name>{\"example_name\": "
    "\"example_value\"}</function>\n\nReminder:\n- If looking for real time information use relevant functions "
    "before falling back to brave_search\n- Function calls MUST follow the specified format, start with "
    "<function= and end with </function>\n- Required parameters MUST be specified\n- Only call one function at "
    "a time\n- Put the entire function call reply on one line\n\n"
)


def _v31_tool(t: Any) -> str:
    if isinstance(t, dict) and "type" in t:
        fn = t.get("function")
        if not isinstance(fn, dict):
            raise TemplateFailure("'function' must be an object")
    elif isinstance(t, dict):
        fn = t
    else:
        raise TemplateFailure("a tool must be an object")
    name = _string(fn.get("name"), "the function name")
    desc = _string(fn.get("description"), "the function description")
    # the template adds them to `"..."|safe` strings: markupsafe HTML-escapes each plain operand
    return "Use the function '" + html_escape(name) + "' to '" + html_escape(desc) + "'\n" + html_escape(tojson(fn)) + "\n\n"


def _v31_call(tc: ToolCall) -> str:
    if tc.name == "python":
        return "<|python_tag|>" + _arguments(tc.arguments)
    return "<function=" + tc.name + ">" + _arguments(tc.arguments) + "</function>"


def html_escape(text: str) -> str:
    """markupsafe's ``escape``: what ``Markup + str`` does to the plain string."""
    return (
        text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;").replace('"', "&#34;")
    )


class FunctionaryV31(NativeFormat):
    """Functionary v3.1 (Llama-3.1): ``<function=name>{...}</function>`` calls ending in ``<|eom_id|>``."""

    info = header_info(
        "functionary-v3.1",
        "functionary",
        "MeetKai Functionary v3.1 (Llama-3.1 headers): <function=name>{args}</function>, ipython results",
        LLAMA3,
        stop=(EOM,),
        end_of_turn=(EOT, EOM),
        bos_token=BOS,
        eos_token=EOT,
        supports_tools=True,
        reference=(
            "the chat_template of meetkai/functionary-medium-v3.1 (llama.cpp's models/templates/"
            "meetkai-functionary-medium-v3.1.jinja at c392e50, verbatim; its 0c1e570 copy writes arguments | tojson), "
            "rendered by transformers"
        ),
        tokens={**TOKENS, "eom": EOM, "python_tag": "<|python_tag|>"},
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        tools = conv.tools or []
        code_interpreter = any(_type_of(t) == "code_interpreter" for t in tools)
        tools = [t for t in tools if _type_of(t) != "code_interpreter"]
        system = BOS + header("system") + ("Environment: ipython\n\n" if code_interpreter else "\n")
        system += "Cutting Knowledge Date: December 2023\n\n"
        if tools:
            parts = _each_tool(tools, _v31_tool, "functionary-v3.1")
            system += "\nYou have access to the following functions:\n\n" + "".join(parts) + V31_INSTRUCTIONS
        out.control(system + EOT)
        for i, m in enumerate(conv.messages):
            end = EOT
            if m.tool_calls and m.role not in ("user", "system", "tool"):
                end = "".join(_v31_call(tc) for tc in m.tool_calls) + EOM
            LLAMA3.turn(out, i, "ipython" if m.role == "tool" else m.role, m.text, m.trained, end)
        if add_generation_prompt:
            out.control(header("assistant"))


# --- v3.2: the TypeScript schema macros -----------------------------------------------------------

_NONE = "<|NONE|>"


def _offset(depth: int) -> str:
    return "    " * depth if depth >= 1 else ""


def _append_new_param_info(declaration: str, comment: str, examples: list[Any], depth: int) -> str:
    offset = _offset(depth)
    out = ""
    if comment != _NONE:
        out += "\n" + offset + comment
        for example in examples:
            out += "\n" + offset + "// " + _jstr(example).replace("'", '"')
    return out + "\n" + offset + declaration


def _convert_data_type(param_type: Any) -> str:
    return "number" if param_type in ("integer", "float") else _jstr(param_type)


def _get_param_type(param: dict[str, Any]) -> str:
    if "type" in param:
        raw = param["type"]
        if not isinstance(raw, str) and isinstance(raw, (list, tuple, dict)):
            return _convert_data_type(" | ".join(_jstr(x) for x in raw))
        return _convert_data_type(raw)
    if "oneOf" in param:
        types, seen = [], set()
        for item in param["oneOf"]:
            if isinstance(item, dict) and "type" in item:
                t = item["type"]
                key = t.lower() if isinstance(t, str) else t
                try:
                    if key in seen:
                        continue
                    seen.add(key)
                except TypeError:
                    raise TemplateFailure("'oneOf' types must be hashable") from None
                types.append(t)
        return _convert_data_type(" | ".join(_jstr(t) for t in types))
    return ""  # the macro prints nothing: the declared type is empty


def _get_format_param(param: dict[str, Any]) -> str:
    if "format" in param:
        return _jstr(param["format"])
    if "oneOf" in param:
        one_of = param["oneOf"]
        missing = object()  # jinja2's Undefined: equal to nothing
        last = one_of[-1].get("format", missing) if one_of and isinstance(one_of[-1], dict) else missing
        out = ""
        for item in one_of:
            if not isinstance(item, dict):
                if isinstance(item, str) and "format" in item:  # a substring test, then an undefined format
                    raise TemplateFailure("'oneOf' entries must be objects")
                continue
            if "format" in item:
                if item["format"] == last:
                    out += _jstr(item["format"])
                else:
                    out += _string(item["format"], "a format") + " or "
        return out
    return _NONE


def _get_param_info(param: dict[str, Any]) -> str:
    param_type = param.get("type", "any")
    format_param = _get_format_param(param)
    if not (
        "description" in param
        or "default" in param
        or format_param != _NONE
        or param.get("maximum")
        or param.get("minimum")
        or param.get("maxLength")
        or param.get("minLength")
    ):
        return _NONE
    out = "//"
    if "description" in param:
        desc = _string(param["description"], "a parameter description")
        out += " " + (desc if desc.endswith(".") else desc + ".")
    if "default" in param:
        value = param["default"]
        value = '"' + _jstr(value) + '"' if param_type == "string" else _jstr(value)
        out += " Default=" + value + "."
    if format_param != _NONE:
        out += " Format=" + format_param
    for field, field_name in (
        ("maximum", "Maximum"),
        ("minimum", "Minimum"),
        ("maxLength", "Maximum length"),
        ("minLength", "Minimum length"),
    ):
        if field in param:
            out += " " + field_name + "=" + _jstr(param[field])
    return out


def _get_enum_option_str(options: Any) -> str:
    if not isinstance(options, list):
        raise TemplateFailure("'enum' must be a list")
    out = ""
    for v in options:
        out += '"' + v + '"' if isinstance(v, str) else _jstr(v)
        if options and v != options[-1]:
            out += " | "
    return out


def _items(param: dict[str, Any]) -> dict[str, Any]:
    items = param.get("items", {})
    if isinstance(items, list) and not items:
        return {}
    if not isinstance(items, dict):
        raise TemplateFailure("'items' must be an object")
    return items


def _properties(param: dict[str, Any]) -> dict[str, Any]:
    props = param.get("properties", {})
    if not isinstance(props, dict):
        raise TemplateFailure("'properties' must be an object")
    return props


def _get_array_typescript(param_name: str | None, param: dict[str, Any], depth: int) -> str:
    offset = _offset(depth)
    items = _items(param)
    if not items:
        return "\n" + offset + (param_name + ": []" if param_name else "[]")
    array_type = _get_param_type(items)
    if array_type == "object":
        head = "\n" + offset + (param_name + ": {" if param_name else "{")
        body = _get_parameter_typescript(_properties(items), items.get("required", []), depth + 1)
        return head + body + "\n" + offset + "}[]"
    if array_type == "array":
        item_info = _get_array_typescript(None, items, depth + 1)
        if not param_name:
            return "\n" + item_info + "[]"
        return "\n" + offset + param_name + ": " + item_info.strip() + "[]"
    if "enum" in items:
        item_type = _get_enum_option_str(items["enum"])
        if param_name is None:
            return "(" + item_type + ")[]"
        return "\n" + offset + param_name + ": (" + item_type + ")[]"
    if param_name is None:
        return "\n" + array_type + "[]"
    return "\n" + offset + param_name + ": " + array_type + "[],"


def _is_iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _get_parameter_typescript(properties: dict[str, Any], required: Any, depth: int = 0) -> str:
    out = ""
    for name, param in properties.items():
        if not isinstance(param, dict):
            continue
        comment = _get_param_info(param)
        examples: list[Any] = []
        if "examples" in param:
            if not isinstance(param["examples"], list):
                raise TemplateFailure("'examples' must be a list")
            examples = ["Example " + name + ":", *param["examples"]]
        declaration = name
        if _is_iterable(required) and name not in required:
            declaration += "?"
        param_type = _get_param_type(param)
        offset = _offset(depth)
        if param_type == "object":
            if comment != _NONE:
                out += "\n" + offset + comment
            for example in examples:
                out += "\n" + offset + "// " + _jstr(example).replace("'", '"')
            out += "\n" + offset + declaration + ": {"
            out += _get_parameter_typescript(_properties(param), param.get("required", []), depth + 1)
            out += "\n" + offset + "},"
        elif param_type == "array":
            try:
                typed_items = "type" in param.get("items", {})
            except TypeError:
                raise TemplateFailure("'items' must be an object") from None
            if not typed_items:
                out += _append_new_param_info(declaration + ": [],", comment, examples, depth)
            else:
                if comment != _NONE:
                    out += "\n" + offset + comment
                for example in examples:
                    out += "\n" + offset + "// " + _jstr(example).replace("'", '"')
                array_declaration = _get_array_typescript(declaration, param, depth)
                out += array_declaration if array_declaration.endswith(",") else array_declaration + ","
        else:
            if "enum" in param:
                param_type = _get_enum_option_str(param["enum"])
            if param.get("nullable"):
                param_type += " | null"
            out += _append_new_param_info(declaration + ": " + param_type + ",", comment, examples, depth)
    return out


def _v32_function(function: Any) -> str:
    if not isinstance(function, dict):
        raise TemplateFailure("a tool must be an object")
    if function.get("function"):
        function = function["function"]
        if not isinstance(function, dict):
            raise TemplateFailure("'function' must be an object")
    name = function.get("name")
    if not name:
        return ""
    description = _string(function.get("description", ""), "the description")
    parameters = function.get("parameters", {})
    text = "// " + description + "\n" + "type " + _string(name, "the function name")
    if parameters and not isinstance(parameters, dict):
        raise TemplateFailure("'parameters' must be an object")
    props = parameters.get("properties") if parameters else None
    if parameters and props:
        if not isinstance(props, dict):
            raise TemplateFailure("'properties' must be an object")
        return text + " = (_: {" + _get_parameter_typescript(props, parameters.get("required", []), 0) + "\n}) => any;\n\n"
    return text + " = () => any;\n\n"


def typescript_schema(tools: list[Any]) -> str:
    """The template's ``generate_schema_from_functions(tools)``."""
    parts = _each_tool(tools, _v32_function, "functionary-v3.2")
    return (
        "// Supported function definitions that should be called when necessary.\nnamespace functions {\n\n"
        + "".join(parts)
        + "} // namespace functions"
    )


V32_SYSTEM = (
    "You are capable of executing available function(s) if required.\nOnly execute function(s) when absolutely "
    "necessary.\nAsk for the required input to:recipient==all\nUse JSON for function arguments.\nRespond in this "
    "format:\n>>>${recipient}\n${content}\nAvailable functions:\n"
)
V32_CODE_INTERPRETER = (
    "When you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook "
    "environment. python will respond with the output of the execution or time out after 60.0 seconds. The drive "
    "at '/mnt/data' can be used to save and persist user files."
)


def _v32_assistant(m: Message, i: int, out: SegmentBuilder) -> None:
    trained = m.trained
    text = m.text
    parts = [">>>" + tc.name + "\n" + _arguments(tc.arguments) for tc in m.tool_calls or ()]
    if text:
        out.control(header("assistant") + ">>>", i)
        out.control("all\n", i, trained)
        out.content(text, i, trained)
        out.control("".join(parts), i, trained)
    elif parts:
        out.control(header("assistant") + ">>>", i)
        out.control("".join(parts)[3:], i, trained)
    else:
        out.control(header("assistant"), i)
    out.control(EOT, i, trained)


class FunctionaryV32(NativeFormat):
    """Functionary v3.2 (Llama-3): TypeScript tool schema, ``>>>recipient\\n`` turns."""

    info = header_info(
        "functionary-v3.2",
        "functionary",
        "MeetKai Functionary v3.2 (Llama-3 headers): TypeScript tool namespace, >>>recipient turns",
        LLAMA3,
        bos_token=BOS,
        eos_token=EOT,
        supports_tools=True,
        reference=(
            "the chat_template of meetkai/functionary-medium-v3.2 (llama.cpp's models/templates/"
            "meetkai-functionary-medium-v3.2.jinja at c392e50 = at 0c1e570), rendered by transformers"
        ),
        tokens=TOKENS,
    )

    def build(self, conv: Conversation, out: SegmentBuilder, *, add_generation_prompt: bool, **kwargs: Any) -> None:
        tools = conv.tools or []
        out.control(BOS + header("system") + V32_SYSTEM + typescript_schema(tools) + EOT)
        if any(_type_of(t) == "code_interpreter" for t in tools):
            out.control(header("system") + V32_CODE_INTERPRETER + EOT)
        for i, m in enumerate(conv.messages):
            if m.role == "assistant":
                _v32_assistant(m, i, out)
            else:
                LLAMA3.turn(out, i, m.role, m.text, m.trained)
        if add_generation_prompt:
            out.control(header("assistant") + ">>>")


FAMILIES = [
    native_family(FunctionaryV31, ("functionary-medium-v3.1", "functionary-v3-llama3.1"), parser="functionary-v3.1",
                  pins=pinned("meetkai/functionary-medium-v3.1", tools=False), export="functionary-v3.1.jinja"),
    native_family(FunctionaryV32, ("functionary-medium-v3.2", "functionary-v3-llama3"), parser="functionary-v3.2",
                  pins=pinned("meetkai/functionary-medium-v3.2", tools=False), export="functionary-v3.2.jinja"),
]
