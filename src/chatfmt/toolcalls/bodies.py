"""Parsers of tool-call bodies: the text between a family's markers -> calls.

Each raises :class:`BodyError` (with what is wrong) when the text is not a call; the output parser
then keeps the text as content and records a warning.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BodyError as BodyError


@dataclass(frozen=True)
class Call:
    """One parsed tool call; ``arguments`` is a JSON object text."""

    name: str
    arguments: str
    id: str | None = None


class Calls(list[Call]):
    """Calls a body parser found, followed by text that is not a call (``rest``: prose after the
    JSON, a stray closing tag) which the output parser keeps as content. A plain ``list`` of calls
    means the whole body was calls."""

    def __init__(self, calls: list[Call], rest: str = "") -> None:
        super().__init__(calls)
        self.rest = rest


#: byte-level BPE pieces that leak into decoded text when a tokenizer's decoder is missing:
#: GPT-2's space and newline (``Ġ``, ``Ċ``) and SentencePiece's space (``▁``)
_BPE_MARKS = str.maketrans({"Ġ": " ", "Ċ": "\n", "▁": " "})


def unmark_bpe(text: str) -> str:
    """``text`` with leaked byte-level BPE space/newline pieces turned back into whitespace."""
    return text.translate(_BPE_MARKS)


def python_literal(text: str) -> Any:
    """A Python literal (single quotes, ``True``/``False``/``None``) as the JSON value it means, or a
    :class:`BodyError`: models write arguments that way when their training data did (Apriel's
    templates, for one, render a call's arguments as a Python dict)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise BodyError("not JSON, nor a Python literal") from None


def dump_arguments(args: Any) -> str:
    """The arguments JSON string: an object is ``json.dumps(obj, ensure_ascii=False)``; a string must
    hold a JSON object and is normalised the same way."""
    if isinstance(args, str):
        args = _lenient_loads(args) if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BodyError(f"arguments must be a JSON object, got {type(args).__name__}")
    return _dumps(args)


def _loads(text: str) -> Any:
    """``json.loads`` whose every failure is a :class:`BodyError`: bad JSON, nesting past the
    recursion limit, an integer past Python's digit limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BodyError(f"arguments are not JSON: {e.msg} at {e.pos}") from None
    except (ValueError, RecursionError) as e:
        raise BodyError(f"arguments are not usable JSON: {type(e).__name__}: {str(e)[:80]}") from None


def _lenient_loads(text: str) -> Any:
    """JSON text (a double-encoded argument string), else a Python literal, else leaked BPE pieces
    undone; the JSON error when none of them reads."""
    try:
        return _loads(text)
    except BodyError as first:
        for attempt in (text, unmark_bpe(text)):
            try:
                value = python_literal(attempt)
            except BodyError:
                try:
                    value = _loads(unmark_bpe(attempt))
                except BodyError:
                    continue
            if isinstance(value, (dict, list)):
                return value
        raise first from None


def _dumps(value: Any) -> str:
    """Strict JSON text (RFC 8259: no NaN/Infinity) that encodes to UTF-8 (no lone surrogate from a
    ``\\ud800`` escape), or a :class:`BodyError`."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise BodyError(f"arguments are not valid JSON: {type(e).__name__}: {str(e)[:80]}") from None
    return text


def _name(value: Any) -> str:
    if isinstance(value, str):
        value = unmark_bpe(value)  # "Ġget_weather": a leaked BPE space before the name
    if not isinstance(value, str) or not value.strip():
        raise BodyError("a tool call needs a non-empty string name")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("a tool name with a lone surrogate is not valid Unicode") from None
    return value.strip()


def call_from_object(obj: Any) -> Call:
    """A call from any of the JSON shapes models emit: ``{"name", "arguments"|"parameters"}``,
    OpenAI's ``{"id", "function": {"name", "arguments"}}``, Cohere's ``{"tool_call_id", "tool_name",
    "parameters"}``; an ``id`` is kept when it is a string."""
    if not isinstance(obj, dict):
        raise BodyError(f"a tool call must be a JSON object, got {type(obj).__name__}")
    call_id = obj.get("id")
    if isinstance(obj.get("function"), dict):
        fn = obj["function"]
        name = _name(fn.get("name"))
        args = fn.get("arguments", fn.get("parameters"))
    elif "tool_name" in obj:
        name = _name(obj.get("tool_name"))
        args = obj.get("parameters", obj.get("arguments"))
        call_id = call_id if call_id is not None else obj.get("tool_call_id")
    else:
        name = _name(obj.get("name"))
        args = obj.get("arguments", obj.get("parameters"))
    return Call(name, dump_arguments(args), call_id if isinstance(call_id, str) and call_id else None)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```\s*$", re.S)


def strip_fence(text: str) -> str:
    """The inside of a Markdown code fence (```json ... ```), or the text unchanged."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def json_values(text: str, *, rest: list[str] | None = None) -> list[Any]:
    """One or more JSON values (see :func:`_json_values`); a body that fails and holds leaked BPE
    pieces (``Ċ{"name":Ġ"f"}``) is read again with them undone."""
    try:
        return _json_values(text, rest=rest)
    except BodyError:
        plain = unmark_bpe(text)
        if plain == text:
            raise
        return _json_values(plain, rest=rest)


def _json_values(text: str, *, rest: list[str] | None = None) -> list[Any]:
    """One or more JSON values, back to back or separated by ``;`` / ``,`` / whitespace.

    Lenient as the serving stacks are: a value that is not JSON but a Python literal (single quotes,
    ``True``) is read as one, and leaked BPE pieces (``Ġ``) are undone. With ``rest`` (a list), text
    after the last value that is neither (prose, a closing tag) is appended to it instead of failing
    the whole body."""
    dec = json.JSONDecoder()
    text = strip_fence(text).strip()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n;,":
            pos += 1
        if pos >= len(text):
            break
        try:
            value, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            found = _lenient_value(text, pos)
            if found is not None:
                value, pos = found
            elif values and rest is not None:
                rest.append(text[pos:])
                break
            else:
                raise BodyError(f"not valid JSON: {e.msg} at character {e.pos}") from None
        except (ValueError, RecursionError) as e:  # nesting past the recursion limit, huge integers
            raise BodyError(f"not usable JSON: {type(e).__name__}: {str(e)[:80]}") from None
        values.append(value)
    if not values:
        raise BodyError("empty tool call")
    return values


def _balanced_end(text: str, pos: int) -> int | None:
    """The end of the bracketed value that starts at ``pos`` (quotes of either kind respected)."""
    if pos >= len(text) or text[pos] not in "[{":
        return None
    depth = 0
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _lenient_value(text: str, pos: int) -> tuple[Any, int] | None:
    """A bracketed value at ``pos`` read as a Python literal or with leaked BPE pieces undone."""
    end = _balanced_end(text, pos)
    if end is None:
        return None
    chunk = text[pos:end]
    for attempt in (chunk, unmark_bpe(chunk)):
        try:
            return json.loads(attempt), end
        except (ValueError, RecursionError):
            pass
        try:
            value = python_literal(attempt)
        except BodyError:
            continue
        if isinstance(value, (dict, list)):
            return value, end
    return None


def json_calls(text: str) -> list[Call]:
    """Calls from JSON: an object, a list of objects, or several objects in a row; text after them
    that is not JSON (prose, a stray closing tag) is handed back as :attr:`Calls.rest`."""
    calls: list[Call] = []
    rest: list[str] = []
    for value in json_values(text, rest=rest):
        for obj in value if isinstance(value, list) else [value]:
            calls.append(call_from_object(obj))
    if not calls:
        raise BodyError("an empty list of tool calls")
    return Calls(calls, "".join(rest)) if rest else calls


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):  # Llama-3.1 built-ins: brave_search.call(query=...)
        if func.attr == "call" and isinstance(func.value, ast.Name):
            return func.value.id
        return _call_name(func.value) + "." + func.attr
    raise BodyError("not a function call")


_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}


def _pythonic_call(node: ast.expr) -> Call:
    if not isinstance(node, ast.Call):
        raise BodyError("not a function call")
    if node.args:
        raise BodyError("positional arguments in a tool call")
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise BodyError("**kwargs in a tool call")
        if isinstance(kw.value, ast.Name) and kw.value.id in _JSON_NAMES:
            args[kw.arg] = _JSON_NAMES[kw.value.id]  # f(flag=true): JSON's literals in a Python call
            continue
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise BodyError(f"argument {kw.arg!r} is not a literal") from None
    return Call(_call_name(node.func), _dumps(args))


def pythonic_calls(text: str) -> list[Call]:
    """``[f(a=1), g(b="x")]`` or ``f(a=1)`` (keyword arguments with literal values only)."""
    try:
        tree = ast.parse(strip_fence(text).strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # deep nesting: MemoryError/RecursionError
        raise BodyError("not a Python call expression") from None
    body = tree.body
    nodes = body.elts if isinstance(body, (ast.List, ast.Tuple)) else [body]
    if not nodes:
        raise BodyError("an empty list of tool calls")
    return [_pythonic_call(n) for n in nodes]


def json_or_pythonic_calls(text: str) -> list[Call]:
    """JSON calls, else Python-style calls."""
    try:
        return json_calls(text)
    except BodyError as first:
        try:
            return pythonic_calls(text)
        except BodyError:
            raise first from None


def code_or_calls(text: str, *, code_tool: str = "python") -> list[Call]:
    """After ``<|python_tag|>``: JSON calls, ``name.call(k="v")`` built-ins, else raw code as a call of
    ``code_tool`` with ``{"code": ...}``."""
    stripped = text.strip()
    if not stripped:
        raise BodyError("empty tool call")
    try:
        return json_or_pythonic_calls(stripped)
    except BodyError:
        return [Call(code_tool, json.dumps({"code": stripped}, ensure_ascii=False))]


def arguments_and_rest(text: str) -> tuple[str, str]:
    """The arguments JSON string of a body that is the arguments object, and the text after it: a
    JSON (or Python-literal) object followed by prose keeps the prose. The whole text must otherwise
    be the arguments (:func:`dump_arguments`)."""
    try:
        return dump_arguments(text), ""
    except BodyError as first:
        stripped = text.lstrip()
        if stripped[:1] != "{":
            raise
        rest: list[str] = []
        try:
            values = json_values(stripped, rest=rest)
        except BodyError:
            raise first from None
        if len(values) != 1 or not isinstance(values[0], dict) or not rest:
            raise first from None
        return _dumps(values[0]), "".join(rest)


def args_call(name: str, body: str) -> list[Call]:
    """A call whose name came from a header and whose body is the JSON arguments (GLM-4,
    Functionary v3.2; Functionary's ``python`` may take raw code); prose after the arguments stays
    content."""
    name = _name(name)
    text = strip_fence(body).strip()
    try:
        args, rest = arguments_and_rest(text)
    except BodyError:
        if name == "python" and text:
            return [Call(name, json.dumps({"code": text}, ensure_ascii=False))]
        raise
    return Calls([Call(name, args)], rest) if rest else [Call(name, args)]


def chatglm3_call(name: str, body: str) -> list[Call]:
    """ChatGLM3: the body is a fenced ``tool_call(key=value, ...)`` (its ``process_response`` evaluates
    the lines between the fences with ``tool_call`` returning the keyword arguments)."""
    name = _name(name)
    lines = body.strip().split("\n")
    inner = "\n".join(lines[1:-1]) if len(lines) >= 3 and lines[0].lstrip().startswith("```") else body
    try:
        tree = ast.parse(inner.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise BodyError("not a tool_call(...) expression") from None
    node = tree.body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "tool_call"):
        raise BodyError("not a tool_call(...) expression")
    return [Call(name, _pythonic_call(node).arguments)]


def function_tag_call(body: str) -> list[Call]:
    """Functionary v3.1: the text after ``<function=``: ``name>{json}``."""
    name, sep, args = body.partition(">")
    if not sep:
        raise BodyError("<function= without '>' after the name")
    return [Call(_name(name), dump_arguments(args.strip()))]  # prose after the call is outside the block


_PARAM = re.compile(r'<param name="([^"]*)">(?:<!\[CDATA\[(.*?)\]\]>|(.*?))</param>', re.S)


def xml_function_call(body: str) -> list[Call]:
    """MiniCPM: the text after ``<function name=``: ``"name"><param name="k">v</param>...``; values
    that are JSON (numbers, true, objects) are decoded, others kept as strings."""
    m = re.match(r'\s*"([^"]*)"\s*>', body)
    if not m:
        raise BodyError('<function name="..."> expected')
    rest = body[m.end() :]
    args: dict[str, Any] = {}
    pos = 0
    for pm in _PARAM.finditer(rest):
        if rest[pos : pm.start()].strip():
            raise BodyError("text between <param> elements")
        raw = pm.group(2) if pm.group(2) is not None else pm.group(3)
        try:
            args[pm.group(1)] = json.loads(raw) if pm.group(2) is None else raw
        except (ValueError, RecursionError):  # not JSON (or nested/huge past Python's limits): a string
            args[pm.group(1)] = raw
        pos = pm.end()
    if rest[pos:].strip():
        raise BodyError("unexpected text in <function>")
    return [Call(_name(m.group(1)), _dumps(args))]


def mistral_calls(body: str) -> list[Call]:
    """After ``[TOOL_CALLS]``: a JSON list (v2/v3/v7/tekken), or v11's ``name[ARGS]{...}`` with an
    optional ``[CALL_ID]id`` before ``[ARGS]``."""
    text = body.strip()
    if text[:1] in "[{":
        return json_calls(text)
    m = re.fullmatch(r"([^\[\]\s]+)(?:\[CALL_ID\]([A-Za-z0-9]+))?\[ARGS\](.*)", text, re.S)
    if not m:
        raise BodyError("neither a JSON list nor name[ARGS]{...}")
    args, rest = arguments_and_rest(m.group(3).strip())
    call = Call(_name(m.group(1)), args, m.group(2))
    return Calls([call], rest) if rest else [call]


def deepseek_r1_call(body: str, sep: str) -> list[Call]:
    """DeepSeek-R1: ``function<sep>name\\n```json\\n{...}\\n```` ``; V3.1's ``name<sep>{json}`` is
    read too (templates of either family are shared between checkpoints)."""
    kind, found, rest = body.partition(sep)
    if not found:
        raise BodyError(f"no {sep} in the tool call")
    if kind.strip() != "function" and rest.strip()[:1] == "{":
        return deepseek_v31_call(body, sep)
    name, nl, args = rest.partition("\n")
    if not nl:
        raise BodyError("no arguments after the tool name")
    return [Call(_name(name), dump_arguments(strip_fence(args).strip()))]


def deepseek_v31_call(body: str, sep: str) -> list[Call]:
    """DeepSeek-V3.1: ``name<sep>{json}``; R1's ``function<sep>name\\n```json ...```` is read too."""
    name, found, args = body.partition(sep)
    if not found:
        raise BodyError(f"no {sep} in the tool call")
    if name.strip() == "function" and args.strip()[:1] not in ("{", ""):
        return deepseek_r1_call(body, sep)
    return [Call(_name(name), dump_arguments(args.strip()))]


def named_json_call(body: str) -> list[Call]:
    """``name`` on the first line, then its JSON arguments (bare or in a code fence): Hunyuan's
    ``<tool_call>name\\n```json\\n{...}\\n```</tool_call>``, Step's ``function\\nname\\n{...}``."""
    text = body.strip()
    name, nl, args = text.partition("\n")
    if name.strip() == "function" and nl:
        name, nl, args = args.strip().partition("\n")
    if not nl or not _NAME.fullmatch(name.strip()):
        raise BodyError("neither JSON nor a tool name and its JSON arguments")
    return [Call(_name(name), dump_arguments(strip_fence(args).strip()))]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")


def json_or_named_calls(body: str) -> list[Call]:
    """JSON calls (Hermes), else a name line and its JSON arguments."""
    try:
        return json_calls(body)
    except BodyError as first:
        try:
            return named_json_call(body)
        except BodyError:
            raise first from None


_INNER_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


def tool_calls_list(body: str) -> list[Call]:
    """The inside of ``<tool_calls>...</tool_calls>``: a JSON list (Apriel, Jamba) or ``<tool_call>``
    items, each JSON or a name and its JSON arguments (Hunyuan)."""
    items = _INNER_CALL.findall(body)
    if not items:
        return json_calls(body)
    if _INNER_CALL.sub("", body).strip():
        raise BodyError("text between the <tool_call> items")
    return [c for item in items for c in json_or_named_calls(item)]


def json_or_pythonic_list(body: str) -> list[Call]:
    """A list of calls written as JSON or as Python calls ``[f(a=1)]`` (LFM2), or one Python call a
    line (Olmo 3's ``<function_calls>``)."""
    try:
        return json_or_pythonic_calls(body)
    except BodyError as first:
        lines = [line for line in body.strip().splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        try:
            return [c for line in lines for c in pythonic_calls(line)]
        except BodyError:
            raise first from None


def name_keyed_calls(body: str) -> list[Call]:
    """Calls written as ``[{"name": {arguments}}, ...]`` (Apertus's ``<|tools_prefix|>`` list)."""
    calls: list[Call] = []
    for value in json_values(body):
        for obj in value if isinstance(value, list) else [value]:
            if not isinstance(obj, dict) or len(obj) != 1:
                raise BodyError("expected {name: arguments} objects")
            ((name, args),) = obj.items()
            calls.append(Call(_name(name), dump_arguments(args)))
    if not calls:
        raise BodyError("an empty list of tool calls")
    return calls


def solar_call(body: str) -> list[Call]:
    """Solar Open: ``id<|tool_call:name|>name<|tool_call:args|>{json}`` (between ``<|tool_call:begin|>``
    and ``<|tool_call:end|>``)."""
    head, found, args = body.partition("<|tool_call:args|>")
    call_id, named, name = head.partition("<|tool_call:name|>")
    if not (found and named):
        raise BodyError("expected id<|tool_call:name|>name<|tool_call:args|>{...}")
    return [Call(_name(name), dump_arguments(args.strip()), call_id.strip() or None)]
