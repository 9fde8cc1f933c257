"""Jinja export of the built-ins implemented in Python: each exported template, rendered by
transformers, gives exactly the text of the native format (probe conversations, the shared corpus,
family-specific tool/reasoning cases, arbitrary contents), and raises where the native format
refuses a conversation; built-ins no template can reproduce say why."""

from __future__ import annotations

import copy
import datetime as _dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ChatfmtError, FormatError
from chatfmt.formats import registry
from chatfmt.formats.export import exporting_family, to_jinja
from chatfmt.formats.probes import ALL_PROBES, FROZEN_NOW, PROBE_KWARGS, WEATHER_TOOL, frozen_clock

pytest.importorskip("transformers")
import transformers.utils.chat_template_utils as hf_chat  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CORPUS = json.loads((REPO / "tests" / "data" / "conversations.json").read_text(encoding="utf-8"))


def exportable() -> list[str]:
    """The built-ins whose family declares a hand-written Jinja export (``Family.export``)."""
    names = []
    for name in registry.names():
        fmt = registry.get(name)
        if exporting_family(fmt) is not None and not fmt.jinja_unsupported:
            names.append(name)
    return names


EXPORTED = exportable()
UNSUPPORTED = [n for n in registry.names() if registry.get(n).jinja_unsupported]


class _Frozen(_dt.datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return FROZEN_NOW if tz is None else FROZEN_NOW.replace(tzinfo=tz)


@pytest.fixture(autouse=True)
def _frozen(monkeypatch):
    monkeypatch.setattr(hf_chat, "datetime", _Frozen)
    registry.names()
    with frozen_clock(FROZEN_NOW):
        yield


def native(fmt, messages, **kwargs) -> str | None:
    try:
        return fmt.render(copy.deepcopy(messages), **kwargs)
    except (ValueError, ChatfmtError):  # ValidationError; TemplateError of a template's raise_exception (a TypeError is a crash)
        return None


def exported(template: str, messages, **kwargs) -> str | None:
    try:
        return render_jinja_template([copy.deepcopy(messages)], chat_template=template, **kwargs)[0][0]
    except Exception as e:  # noqa: BLE001 - only a documented refusal counts as one
        if is_refusal(e):
            return None
        raise


def is_refusal(e: BaseException) -> bool:
    """A template's refusal under transformers: its ``raise_exception`` (exactly
    ``jinja2.exceptions.TemplateError``) or transformers' own ``continue_final_message`` check
    (``ValueError``). Anything else (``UndefinedError``, ``TypeError``, a syntax error) is a crash of
    the exported template, which must fail the test, not pass as a refusal."""
    import jinja2

    return type(e) is jinja2.exceptions.TemplateError or type(e) is ValueError


def call(name, arguments, call_id="call12345"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CALENDAR_TOOL = {
    "type": "function",
    "function": {"name": "add_event", "description": "Add an event.", "parameters": {"type": "object", "properties": {"title": {"type": "string"}}}},
}
Q = {"role": "user", "content": "What is the weather in Paris and Lyon?"}
#: what the probes and the corpus miss: several calls in one turn, content with calls, reasoning with
#: calls, reasoning on the final turn with a generation prompt, a system prompt with tools
EXTRA_CASES = {
    "two-calls": (
        [
            {"role": "system", "content": "Use tools."},
            Q,
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Lyon"}, "call67890")]},
            {"role": "tool", "tool_call_id": "call12345", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call67890", "content": "rain"},
            {"role": "assistant", "content": "Sunny in Paris, rain in Lyon."},
        ],
        {"tools": [WEATHER_TOOL, CALENDAR_TOOL]},
    ),
    "content-and-call": (
        [Q, {"role": "assistant", "content": "Let me check.", "tool_calls": [call("get_weather", {"city": "Paris"})]}, {"role": "tool", "tool_call_id": "call12345", "content": "sunny"}],
        {"tools": [WEATHER_TOOL], "add_generation_prompt": True},
    ),
    "reasoning-and-call": (
        [Q, {"role": "assistant", "content": "", "reasoning_content": "I need the weather.", "tool_calls": [call("get_weather", {"city": "Paris"})]}, {"role": "tool", "tool_call_id": "call12345", "content": "sunny"}, {"role": "assistant", "content": "Sunny.", "reasoning_content": "It said sunny."}],
        {"tools": [WEATHER_TOOL]},
    ),
    "reasoning-gen": (
        [{"role": "system", "content": "Think."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning_content": "Easy."}, {"role": "user", "content": "3+3?"}],
        {"add_generation_prompt": True},
    ),
    "thinking-off": ([{"role": "user", "content": "Hi"}], {"add_generation_prompt": True, "enable_thinking": False}),
    "system-tools": (
        [{"role": "system", "content": "Be brief."}, Q],
        {"tools": [WEATHER_TOOL], "add_generation_prompt": True},
    ),
    "documents-controls": (
        [{"role": "user", "content": "Where is Paris?"}],
        {
            "documents": [{"doc_id": 1, "title": "Geo", "text": "Paris is in France."}, {"doc_id": "b", "text": "Lyon too."}],
            "controls": {"citations": True, "hallucinations": True, "length": "short"},
            "add_generation_prompt": True,
        },
    ),
    "documents-and-tools": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather where Paris is?"}],
        {"documents": [{"doc_id": 1, "text": "Paris is in France."}], "tools": [WEATHER_TOOL], "add_generation_prompt": True},
    ),
    "thinking-keyword": ([{"role": "user", "content": "Hi"}], {"add_generation_prompt": True, "thinking": True}),
    "available-tools": ([Q], {"available_tools": [CALENDAR_TOOL], "tools": [WEATHER_TOOL], "add_generation_prompt": True}),
    "code-interpreter": (
        [{"role": "user", "content": "Plot <x> & \"y\"."}, {"role": "assistant", "content": "", "tool_calls": [call("python", {"code": "print(1)"})]}, {"role": "tool", "tool_call_id": "call12345", "content": "1"}],
        {"tools": [{"type": "code_interpreter"}, WEATHER_TOOL], "add_generation_prompt": True},
    ),
    "unicode-args": (
        [{"role": "user", "content": "Météo à Zürich?"}, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Zürich", "unit": "celsius"})]}, {"role": "tool", "tool_call_id": "call12345", "content": "☀ 22°"}],
        {"tools": [WEATHER_TOOL], "add_generation_prompt": True},
    ),
}


def cases():
    for p in ALL_PROBES:
        kwargs = {"tools": p.tool_list(), "add_generation_prompt": p.add_generation_prompt, **PROBE_KWARGS}
        yield pytest.param(p.message_list(), kwargs, id=f"probe-{p.id}")
    for case in CORPUS["conversations"]:
        kwargs = {
            "tools": CORPUS["tools"][case["tools"]] if "tools" in case else None,
            "add_generation_prompt": case.get("add_generation_prompt", False),
            "continue_final_message": case.get("continue_final_message", False),
            **case.get("kwargs", {}),
        }
        yield pytest.param(case["messages"], kwargs, id=f"corpus-{case['id']}")
    for cid, (messages, kwargs) in EXTRA_CASES.items():
        yield pytest.param(messages, kwargs, id=f"extra-{cid}")


CASES = list(cases())


def continued_trailing_space(fmt, got, expected, messages, kwargs) -> bool:
    """transformers' ``continue_final_message`` cuts after the final content as written in the
    template *before* a strip: when a format strips the final message, its trailing whitespace
    survives the cut under transformers (a documented difference of transformers, not of the template)."""
    if not (kwargs.get("continue_final_message") and got and expected):
        return False
    final = messages[-1]
    text = final["content"] if isinstance(final["content"], str) else ""
    return got == expected + text[len(text.rstrip()) :]


@pytest.mark.parametrize("name", EXPORTED)
def test_every_case_renders_identically_under_transformers(name):
    fmt = registry.get(name)
    template = to_jinja(fmt)
    rendered = 0
    for p in CASES:
        messages, kwargs = p.values
        expected = native(fmt, messages, **kwargs)
        got = exported(template, messages, **kwargs)
        rendered += expected is not None
        assert got == expected or continued_trailing_space(fmt, got, expected, messages, kwargs), (
            f"{name} / {p.id}:\nnative:   {expected!r}\nexported: {got!r}"
        )
    assert rendered >= len(CASES) // 3  # the comparison is not vacuous


_text = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["", " ", "\n", " padded ", "<|im_end|>", "{{ x }}", "'\"\\", "</s>", "<think>x</think>y"]
)


@st.composite
def conversations(draw):
    """[system] then rounds of user / assistant (some with reasoning, some with tool calls and
    results); arbitrary texts as strings, text parts or null; sometimes tools and a generation prompt."""

    def content():
        kind = draw(st.sampled_from(["str", "str", "str", "parts", "none"]))
        if kind == "parts":
            return [{"type": "text", "text": t} for t in draw(st.lists(_text, min_size=1, max_size=2))]
        return None if kind == "none" else draw(_text)

    msgs = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": content()})
    for _ in range(draw(st.integers(1, 3))):
        msgs.append({"role": "user", "content": content()})
        if draw(st.booleans()):
            ids = [f"call{k}{draw(st.integers(1000, 9999))}" for k in range(draw(st.integers(1, 2)))]
            args = st.dictionaries(st.sampled_from(["city", "unit", "n"]), _text | st.integers(), max_size=2)
            # arguments as an object or as the JSON text a client sends (json.dumps, non-ASCII kept)
            as_text = draw(st.booleans())
            calls = [
                call(
                    draw(st.sampled_from(["get_weather", "add_event"])),
                    json.dumps(a, ensure_ascii=False) if as_text else a,
                    i,
                )
                for i, a in ((i, draw(args)) for i in ids)
            ]
            msgs.append({"role": "assistant", "content": content(), "tool_calls": calls})
            msgs += [{"role": "tool", "tool_call_id": i, "content": content()} for i in ids]
        answer = {"role": "assistant", "content": content()}
        if draw(st.booleans()):
            answer["reasoning_content"] = draw(_text)
        msgs.append(answer)
    if draw(st.booleans()):
        msgs.pop()
    return msgs, {
        "add_generation_prompt": draw(st.booleans()),
        "tools": [WEATHER_TOOL, CALENDAR_TOOL] if draw(st.booleans()) else None,
        "enable_thinking": draw(st.booleans()),
    }


@pytest.mark.parametrize("name", EXPORTED)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=conversations())
def test_arbitrary_contents_render_identically_under_transformers(name, case):
    messages, kwargs = case
    fmt = registry.get(name)
    assert exported(to_jinja(fmt), messages, **kwargs) == native(fmt, messages, **kwargs)


#: tool lists that exercise how families write schemas (Hermes' Python types, GLM's per-tool JSON,
#: Functionary's TypeScript namespace, ...): nested, typed lists, free-form objects, enums, no
#: parameters, return values, an unknown type name, non-ASCII text
ODD_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the catalogue.\nSecond line with \"quotes\".",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "  padded  "},
                    "limit": {"type": "integer", "description": "How many.", "default": 10},
                    "score": {"type": "number"},
                    "exact": {"type": "boolean", "description": "Exact match."},
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags."},
                    "filters": {"type": "object", "additionalProperties": {"type": "string"}},
                    "meta": {"type": "object", "properties": {"a": {"type": "integer"}}},
                    "either": {"type": ["string", "integer"], "description": "Zürich — 東京"},
                    "kind": {"type": "string", "enum": ["a", "b"]},
                    "untyped": {"description": "anything"},
                },
                "required": ["query"],
            },
            "return": {"type": "array", "description": "The hits."},
        },
    },
    {"type": "function", "function": {"name": "ping", "description": "No parameters.", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "now", "description": "Bare function, no parameters key."}},
]
ODD_TOOL_CASES = [
    [{"role": "user", "content": "Find shoes."}],
    [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Find shoes."},
        {"role": "assistant", "content": None, "tool_calls": [call("search", {"query": "shoes", "tags": ["red"], "filters": {"size": "42"}})]},
        {"role": "tool", "tool_call_id": "call12345", "content": '[{"id": 1}]'},
    ],
]


@pytest.mark.parametrize("name", EXPORTED)
@pytest.mark.parametrize("tools", [ODD_TOOLS[:1], ODD_TOOLS[1:], [{"function": WEATHER_TOOL["function"]}, {"name": "bare", "description": "A bare function.", "parameters": {"type": "object", "properties": {}}}], [ODD_TOOLS[0], {"type": "function", "function": {"name": "bad", "description": "x", "parameters": {"type": "object", "properties": {"v": {"type": "null"}}}}}]], ids=["schema", "no-params", "shapes", "null-type"])
def test_unusual_tool_schemas_render_identically_under_transformers(name, tools):
    fmt = registry.get(name)
    template = to_jinja(fmt)
    for messages in ODD_TOOL_CASES:
        for gen in (False, True):
            kwargs = {"tools": tools, "add_generation_prompt": gen, **PROBE_KWARGS}
            expected = native(fmt, messages, **kwargs)
            got = exported(template, messages, **kwargs)
            assert got == expected, f"{name}:\nnative:   {expected!r}\nexported: {got!r}"


JSON_VALUES = [
    {},
    [],
    {"a": 1},
    {"a": [1, {"b": []}, {}], "c": 'x,y:{z}"\\', "d": None, "e": True, "f": 1.5, "g": "Zürich 東京"},
    [[]],
    {"k": {"x": [{}]}},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
@pytest.mark.parametrize("level", [0, 3])
def test_json_indented_macro_equals_the_dump_of_the_parsed_value(value, level):
    """The shared ``json_indented`` macro (Falcon3's tool calls) writes an object, and its JSON text
    in any spacing, as ``json.dumps(indent=2)`` nested ``level`` deep."""
    from chatfmt.formats.builtin import _jinja

    template = _jinja.PRELUDE + _jinja._body("_json_indent") + "{{- json_indented(v, 2, level) -}}"
    want = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + "  " * level)
    for text in (value, json.dumps(value, ensure_ascii=False), json.dumps(value, ensure_ascii=False, separators=(",", ":")), json.dumps(value, ensure_ascii=False, indent=4)):
        got = render_jinja_template([[{"role": "user", "content": "x"}]], chat_template=template, v=text, level=level)[0][0]
        assert got == want, text


JSON_TEXTS_VALID = [
    "{}", "[]", '{"a": 1}', " [[]] ", '{"k" : {"x":[{}]}}', '{"a":1,"a":2,"b":3}', '"str"', "3", "true", "null",
    '{"a": [1, {"b": []}, {}], "c": "x,y:{z}\\"\\\\", "d": null, "e": true, "f": 1.5, "g": "Zürich 東京"}',
    '{"u": "\\u00e9\\ud83d\\ude00\\ud800x\\udc00\\ud800\\ud800\\udc00\\u00E9"}',
    '{"n": [-0, 0.0, 1e5, 1E-2, -12.5e+3, 123456789012345678901234567890, NaN, Infinity, -Infinity]}',
    '{"s": "\\b\\f\\n\\r\\t\\/"}',
]
JSON_TEXTS_INVALID = [
    '{"a":1,}', "[1,]", "{,}", "01", "1.", ".5", "+1", '{"a" 1}', '{"a":1', '"abc', '{"a":tru}', "[1 2]", "{1:2}",
    '"\\x"', '"\\u12"', '"a\nb"', "{} {}", "", "nul", "-", "1e", "[-]", '{"a":1}}', "]", "'a'",
]


def _json_parse_outcome(text: str, engine: str) -> str | None:
    from chatfmt.formats.builtin import _jinja

    template = _jinja.PRELUDE + _jinja._body("_json_parse") + (
        "{%- set out = namespace(value=none) -%}{{- json_parse(v, out, 'the text') -}}{{- out.value | string -}}"
    )
    try:
        if engine == "transformers":
            return render_jinja_template([[{"role": "user", "content": "x"}]], chat_template=template, v=text)[0][0]
        import chatfmt

        return chatfmt.from_template(template).render([{"role": "user", "content": "x"}], v=text)
    except Exception as e:  # noqa: BLE001 - the macro's raise_exception of invalid JSON, nothing else
        if is_refusal(e) or isinstance(e, ChatfmtError):
            return None
        raise


@pytest.mark.parametrize("engine", ["transformers", "chatfmt"])
def test_json_parse_macro_gives_the_value_json_loads_gives(engine):
    """The shared ``json_parse`` macro (MiniCPM5's JSON-text tool-call arguments) builds the value
    ``json.loads`` builds (printed with ``str()``: types, key order, repeated keys, escapes and surrogate
    pairs, number forms) and raises on what ``json.loads`` refuses."""
    for text in JSON_TEXTS_VALID:
        assert _json_parse_outcome(text, engine) == str(json.loads(text)), text
    for text in JSON_TEXTS_INVALID:
        with pytest.raises(ValueError):
            json.loads(text)
        assert _json_parse_outcome(text, engine) is None, text


@settings(max_examples=60, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
), ascii_only=st.booleans(), indent=st.sampled_from([None, 2]))
def test_json_parse_macro_reads_any_json_dump(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert _json_parse_outcome(text, "transformers") == str(json.loads(text))


MINICPM_ARGS = {"city": "Zürich <1> & 2", "n": 3, "ratio": 0.5, "ok": True, "none": None, "tags": ["a", "b's"], "meta": {"k": [1, {}]}}


@pytest.mark.parametrize(
    "arguments",
    [
        json.dumps(MINICPM_ARGS, ensure_ascii=False),
        json.dumps(MINICPM_ARGS),  # \\u escapes
        json.dumps(MINICPM_ARGS, indent=4),
        json.dumps(MINICPM_ARGS, separators=(",", ":")),
    ],
    ids=["dumps", "ascii", "indent", "compact"],
)
def test_minicpm5_template_writes_json_text_arguments_as_their_parsed_values(arguments):
    """MiniCPM5 writes each argument as Python's ``str()`` of the value; given as JSON text in any
    spacing or escaping, the exported template parses it and writes what the built-in writes."""
    fmt = registry.get("minicpm5")
    messages = [Q, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", arguments)]}]
    expected = native(fmt, messages, tools=[WEATHER_TOOL])
    assert expected is not None and "<param name=\"ok\">True</param>" in expected
    assert "<param name=\"meta\">{'k': [1, {}]}</param>" in expected
    assert exported(to_jinja(fmt), messages, tools=[WEATHER_TOOL]) == expected


@pytest.mark.parametrize("arguments", ['{"city": "Paris",}', "[1]", '"Paris"', "{"])
def test_minicpm5_template_refuses_arguments_the_builtin_refuses(arguments):
    fmt = registry.get("minicpm5")
    messages = [Q, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", arguments)]}]
    assert native(fmt, messages) is None
    with pytest.raises(Exception, match="arguments of tool call \"get_weather\""):
        render_jinja_template([messages], chat_template=to_jinja(fmt))


def _fn_tool(name, properties, required=None, description="Does things."):
    params = {"type": "object", "properties": properties}
    if required is not None:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


#: every branch of a schema writer (Functionary v3.2's TypeScript declarations): formats, zero
#: minimum (falsy), defaults of string and other types, examples, oneOf with formats and types equal
#: but for case, type lists, untyped and empty parameters, repeated enum values, nullable, nested
#: objects, arrays of strings, arrays, objects and enums, untyped and empty items, a non-object property
SCHEMA_TOOLS = [
    _fn_tool(
        "book",
        {
            "when": {"type": "string", "format": "date-time", "description": "When."},
            "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2, "examples": [3, "four", {"k": 'v"x'}]},
            "ratio": {"type": "float", "minimum": 0, "description": "zero minimum"},
            "name": {"type": "string", "minLength": 1, "maxLength": 64, "nullable": True, "default": "x"},
            "either": {"oneOf": [{"type": "string", "format": "email"}, {"type": "String"}, {"type": "integer", "format": "int32"}]},
            "either2": {"oneOf": [{"type": "string", "format": "uri"}, {"type": "null"}]},
            "oneof_plain": {"oneOf": [{"type": "string"}, "not an object"]},
            "multi": {"type": ["string", "null"]},
            "untyped": {"description": "no type at all"},
            "bare": {},
            "level": {"enum": [1, 2, 2, "x"], "description": "numbers"},
            "flag": {"type": "boolean", "default": False},
            "nested": {
                "type": "object",
                "description": "An object",
                "examples": [{"a": 1}],
                "properties": {
                    "a": {"type": "integer"},
                    "deep": {"type": "object", "properties": {"z": {"type": "string", "enum": ["p", "q"]}}, "required": ["z"]},
                },
                "required": ["a"],
            },
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "cube": {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "string", "enum": ["a"]}}}},
            "people": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]}},
            "choices": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "examples": [["a"]]},
            "anything": {"type": "array", "description": "untyped items"},
            "empty_items": {"type": "array", "items": {}},
            "listed_items": {"type": "array", "items": []},
            "not_a_mapping": "ignored",
        },
        ["when", "nested", "tags"],
    ),
    {"type": "function", "function": {"name": "ping", "description": "", "parameters": {}}},
    {"type": "function", "function": {"description": "no name: skipped"}},
    {"name": "bare", "description": "not wrapped", "parameters": {"type": "object", "properties": {}}},
    _fn_tool("req_string", {"ab": {"type": "string"}, "c": {"type": "string"}}, "abc"),
    _fn_tool("req_none", {"a": {"type": "string"}}, None),
    {"type": "code_interpreter"},
]
#: tools a schema writer's template cannot render (the built-in raises a ValidationError)
BAD_SCHEMA_TOOLS = [
    _fn_tool("f", {"p": {"type": "string", "description": 3}}),
    {"type": "function", "function": {"name": "f", "description": None}},
    {"type": "function", "function": {"name": 5, "description": "d"}},
    _fn_tool("f", {"p": {"type": "string", "examples": "not a list"}}),
    _fn_tool("f", {"p": {"type": "string", "enum": "ab"}}),
    _fn_tool("f", {"p": {"type": "array", "items": {"type": "array", "items": "x"}}}),
    _fn_tool("f", {"p": {"type": "object", "properties": ["x"]}}),
    _fn_tool("f", {"p": {"oneOf": [{"type": "string"}, "format"]}}),
    _fn_tool("f", {"p": {"oneOf": [{"type": ["a"]}]}}),
    _fn_tool("f", {"p": {"oneOf": [{"format": 1}, {"format": 2}]}}),
    "not a tool",
]
SCHEMA_WRITERS = ["functionary-v3.2"]


@pytest.mark.parametrize("name", SCHEMA_WRITERS)
def test_schema_writers_write_every_schema_branch_like_the_builtin(name):
    fmt = registry.get(name)
    template = to_jinja(fmt)
    for messages in ODD_TOOL_CASES:
        for k in range(len(SCHEMA_TOOLS)):
            kwargs = {"tools": SCHEMA_TOOLS[k:] + SCHEMA_TOOLS[:k], "add_generation_prompt": True, **PROBE_KWARGS}
            expected = native(fmt, messages, **kwargs)
            assert expected is not None
            assert exported(template, messages, **kwargs) == expected
    for bad in BAD_SCHEMA_TOOLS:
        kwargs = {"tools": [SCHEMA_TOOLS[1], bad]}
        assert native(fmt, ODD_TOOL_CASES[0], **kwargs) is None, bad
        assert exported(template, ODD_TOOL_CASES[0], **kwargs) is None, bad


_schema_texts = st.sampled_from(["", " ", "x.", "Zürich", "a'b\"c", "\n"]) | st.text(max_size=6)
_json_leaves = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=16) | st.text(max_size=4)
_json_values = st.recursive(_json_leaves, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=4)
_leaf_params = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["string", "integer", "number", "float", "boolean", "null", "object", "array", ["string", "null"]]),
        "description": _schema_texts,
        "default": _json_values,
        "format": st.sampled_from(["date", "email"]),
        "maximum": st.integers(-1, 1),
        "minLength": st.integers(0, 1),
        "enum": st.lists(st.integers(0, 2) | st.sampled_from(["a", "b", True]), max_size=4),
        "nullable": st.booleans(),
        "examples": st.lists(_json_values, max_size=2),
        "oneOf": st.lists(
            st.fixed_dictionaries({}, optional={"type": st.sampled_from(["string", "String", "integer"]), "format": st.sampled_from(["x", "y"])}),
            max_size=3,
        ),
        "items": st.just({}) | st.just([]),
    },
)
_params = st.recursive(
    _leaf_params,
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("object"), "properties": st.dictionaries(st.text(min_size=1, max_size=3), inner, max_size=3)},
        optional={"required": st.lists(st.text(max_size=3), max_size=2) | st.text(max_size=3), "description": _schema_texts},
    )
    | st.fixed_dictionaries({"type": st.just("array")}, optional={"items": inner, "description": _schema_texts, "examples": st.lists(_json_values, max_size=1)}),
    max_leaves=6,
)


@pytest.mark.parametrize("name", EXPORTED)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(properties=st.dictionaries(st.text(min_size=1, max_size=4), _params, max_size=3), required=st.none() | st.lists(st.text(max_size=3), max_size=2))
def test_arbitrary_tool_schemas_render_identically_under_transformers(name, properties, required):
    """Random JSON schemas (nested objects and arrays, enums, defaults, formats, oneOf, examples):
    every exported template writes the tool list as its built-in does, or both refuse it."""
    fmt = registry.get(name)
    kwargs = {"tools": [_fn_tool("f", properties, required)], "add_generation_prompt": True, **PROBE_KWARGS}
    assert exported(to_jinja(fmt), ODD_TOOL_CASES[1], **kwargs) == native(fmt, ODD_TOOL_CASES[1], **kwargs)


#: the exported templates that parse JSON-text tool-call arguments (json_parse), as their built-ins do
PARSES_ARGUMENTS = ["minicpm5", "functionary-v3.2", "command-r", "command-r7b"]


@pytest.mark.parametrize("name", PARSES_ARGUMENTS)
@pytest.mark.parametrize(
    "arguments",
    [json.dumps(MINICPM_ARGS), json.dumps(MINICPM_ARGS, indent=4), json.dumps(MINICPM_ARGS, separators=(",", ":"))],
    ids=["ascii", "indent", "compact"],
)
def test_templates_that_parse_arguments_write_any_json_spelling_as_the_builtin(name, arguments):
    """The built-in holds JSON-text arguments parsed; so does the exported template: any spacing or
    escaping of the same object renders as the object itself."""
    fmt = registry.get(name)
    messages = [Q, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", arguments)]}]
    as_object = [Q, {"role": "assistant", "content": None, "tool_calls": [call("get_weather", MINICPM_ARGS)]}]
    expected = native(fmt, messages, tools=[WEATHER_TOOL])
    assert expected is not None and expected == native(fmt, as_object, tools=[WEATHER_TOOL])
    assert exported(to_jinja(fmt), messages, tools=[WEATHER_TOOL]) == expected


def _r7b_call(name, call_id):
    c = call(name, {"city": name})
    if call_id is None:
        del c["id"]
    return c


def _tool_result(content, call_id):
    m = {"role": "tool", "content": content}
    if call_id is not None:
        m["tool_call_id"] = call_id
    return m


#: Command R7B's numbering and grouping of tool results (ids out of order, unknown, repeated, absent),
#: tool_plan, documents before the first call, citations, an empty system message
R7B_CASES = {
    "ids-out-of-order-and-unknown": [
        Q,
        {"role": "assistant", "content": "", "tool_calls": [_r7b_call("a", "t1"), _r7b_call("b", "t2")]},
        _tool_result("second", "t2"),
        _tool_result("first", "t1"),
        _tool_result("unknown", "zzz"),
    ],
    "repeated-ids-skipped": [
        Q,
        {"role": "assistant", "content": "", "tool_calls": [_r7b_call("a", "t1"), _r7b_call("b", "t2")]},
        _tool_result("a", "t1"),
        _tool_result("b", "t2"),
        {"role": "assistant", "content": "", "tool_calls": [_r7b_call("c", "t2")]},
        _tool_result("c", "t2"),
        _tool_result("d", "t1"),
    ],
    "no-ids": [Q, {"role": "assistant", "content": None, "tool_calls": [_r7b_call("a", None)]}, _tool_result("r", None), _tool_result("s", None)],
    "tool-plan": [
        {"role": "system", "content": "Use tools."},
        Q,
        {"role": "assistant", "content": "not written", "tool_plan": "Plan <b>.", "reasoning_content": "ignored", "tool_calls": [_r7b_call("a", "x")]},
        _tool_result("ok", "x"),
        {"role": "assistant", "content": "Done."},
    ],
    "empty-system": [{"role": "system", "content": ""}, Q, {"role": "assistant", "content": "A."}],
}
R7B_KWARGS = [
    {},
    {"documents": [{"title": "Paris", "text": "Sunny \"all\" week."}, {"text": "Lyon: rain."}], "enable_citations": True},
    {"documents": [{"text": "x"}], "tools": [WEATHER_TOOL]},
    {"enable_citations": True, "tools": [WEATHER_TOOL, CALENDAR_TOOL], "enable_thinking": False},
    {"tools": [WEATHER_TOOL], "enable_thinking": True},
]


@pytest.mark.parametrize("kwargs", R7B_KWARGS, ids=range(len(R7B_KWARGS)))
def test_command_r7b_template_numbers_and_groups_tool_results_like_the_builtin(kwargs):
    fmt = registry.get("command-r7b")
    template = to_jinja(fmt)
    for cid, messages in R7B_CASES.items():
        for gen in (False, True):
            expected = native(fmt, messages, add_generation_prompt=gen, **kwargs)
            assert expected is not None, cid
            assert exported(template, messages, add_generation_prompt=gen, **kwargs) == expected, cid


@st.composite
def _r7b_conversations(draw):
    ids = st.none() | st.sampled_from(["a", "b", "c"])
    msgs = [{"role": "system", "content": draw(_text)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        msgs.append({"role": "user", "content": draw(_text)})
        if draw(st.booleans()):
            calls = [_r7b_call(draw(st.sampled_from(["get_weather", "add_event"])), draw(ids)) for _ in range(draw(st.integers(1, 2)))]
            m = {"role": "assistant", "content": draw(_text), "tool_calls": calls}
            if draw(st.booleans()):
                m["tool_plan"] = draw(_text)
            msgs.append(m)
            msgs += [_tool_result(draw(_text), draw(ids)) for _ in range(draw(st.integers(0, 3)))]
        if draw(st.booleans()):
            msgs.append({"role": "assistant", "content": draw(_text)})
    return msgs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    messages=_r7b_conversations(),
    tools=st.none() | st.just([WEATHER_TOOL, CALENDAR_TOOL]),
    documents=st.none() | st.lists(st.dictionaries(st.sampled_from(["title", "text"]), _text, max_size=2), max_size=2),
    citations=st.booleans(),
)
def test_command_r7b_template_renders_random_tool_rounds_like_the_builtin(messages, tools, documents, citations):
    fmt = registry.get("command-r7b")
    kwargs = {"tools": tools, "documents": documents, "enable_citations": citations}
    assert exported(to_jinja(fmt), messages, **kwargs) == native(fmt, messages, **kwargs)


def _described(**specs):
    return {k: {"description": f"The {k}.", **v} for k, v in specs.items()}


#: Command-R's Python stubs: every type mapping (arrays always List[Union[]], objects by
#: additionalProperties, type lists, no type, a null or numeric type value, a mapping as type), required
#: as a string (a substring test), parameters that are not an object, a None description; and tools in
#: the older parameter_definitions shape
COMMAND_R_TOOLS = [
    [
        _fn_tool(
            "types",
            _described(
                s={"type": "string"}, n={"type": "number"}, i={"type": "integer"}, b={"type": "boolean"},
                a={"type": "array", "items": {"type": "string"}}, o={"type": "object", "additionalProperties": {"type": "integer"}},
                ot={"type": "object", "additionalProperties": True}, u={"type": ["string", "integer", "array"]},
                none={}, nt={"type": None}, num={"type": 5}, m={"type": {"string": 1, "boolean": 2}},
            ),
            ["s", "a", "u"],
        ),
        _fn_tool("substring", _described(ab={"type": "string"}, c={"type": "integer"}), "abc", description=None),
        {"type": "function", "function": {"name": "weird_params", "description": "x", "parameters": "not an object"}},
        {"name": "bare", "parameters": {"type": "object", "properties": {}}},
    ],
    [
        {"name": "old", "description": "Old shape.", "parameter_definitions": {"q": {"type": "str", "description": "Query.", "required": True}, "n": {"type": "int", "description": "N."}, "t": {"description": "no type", "required": True}}},
        {"name": "old_empty"},
    ],
]
COMMAND_R_BAD_TOOLS = [
    _fn_tool("f", _described(o={"type": "object"})),
    _fn_tool("f", _described(x={"type": "null"})),
    _fn_tool("f", {"x": {"type": "string"}}),
    _fn_tool("f", _described(x={"type": "string"}), required=5),
    {"type": "function", "function": {"name": "f", "description": "no parameters"}},
    {"type": "function", "function": {"description": "no name", "parameters": {}}},
    {"name": "old", "parameter_definitions": {"q": {"description": "Optional without a type."}}},
    {"name": "old", "parameter_definitions": {"q": {"type": "str", "required": True}}},
    {"name": "old", "parameter_definitions": {"q": "not an object"}},
]


@pytest.mark.parametrize("tools", COMMAND_R_TOOLS, ids=["json-schema", "parameter-definitions"])
def test_command_r_template_writes_python_stubs_like_the_builtin(tools):
    fmt = registry.get("command-r")
    template = to_jinja(fmt)
    for messages in [*ODD_TOOL_CASES, EXTRA_CASES["two-calls"][0]]:
        for gen in (False, True):
            expected = native(fmt, messages, tools=tools, add_generation_prompt=gen)
            assert expected is not None
            assert exported(template, messages, tools=tools, add_generation_prompt=gen) == expected
    for bad in COMMAND_R_BAD_TOOLS:
        assert native(fmt, ODD_TOOL_CASES[0], tools=[tools[0], bad]) is None, bad
        assert exported(template, ODD_TOOL_CASES[0], tools=[tools[0], bad]) is None, bad


def test_command_r_template_refuses_what_its_default_layout_cannot_write():
    """Without tools: roles must alternate, and tool calls or results need the tool list."""
    fmt = registry.get("command-r")
    template = to_jinja(fmt)
    for messages in (
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "assistant", "content": "a"}],
        EXTRA_CASES["content-and-call"][0],
    ):
        assert native(fmt, messages) is None
        with pytest.raises(Exception, match="command-r (needs|renders)"):
            render_jinja_template([messages], chat_template=template)


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_builtins_no_template_can_reproduce_say_why(name):
    with pytest.raises(FormatError, match="cannot be exported as a Jinja template exactly: .+"):
        to_jinja(registry.get(name))


def test_exported_templates_refuse_generation_blocks():
    if not EXPORTED:
        pytest.skip("no built-in exports a hand-written template")
    with pytest.raises(FormatError, match="generation"):
        to_jinja(registry.get(EXPORTED[0]), generation=True)


TESTDATA = REPO.parent / "shared" / "testdata"


@pytest.mark.parametrize(("name", "tokenizer"), [("llama-2", "llama2"), ("baichuan2", "baichuan2")])
def test_chatfmt_encodes_the_exported_template_to_the_vendor_ids(name, tokenizer):
    """Llama-2's per-pair <s>/</s> and Baichuan2's ids 195/196 are id segments natively; written out as
    text in the template, chatfmt's encoding of the template gives the same ids."""
    import chatfmt

    path = TESTDATA / tokenizer
    if not (path / "tokenizer.model").exists():
        pytest.skip(f"{path} is absent (the tokenizers live in <repo>/../shared/testdata)")
    tok = chatfmt.load_tokenizer(path)
    fmt = registry.get(name)
    template = chatfmt.from_template(to_jinja(fmt))
    compared = 0
    for p in ALL_PROBES:
        if "tools" in p.tags and any(m.get("tool_calls") for m in p.messages):
            continue  # no tool-call syntax: both refuse
        kwargs = {"tools": p.tool_list(), "add_generation_prompt": p.add_generation_prompt}
        want = fmt.encode(p.message_list(), tok, **kwargs).input_ids
        assert template.encode(p.message_list(), tok, **kwargs).input_ids == want, p.id
        compared += 1
    assert compared >= 10
    if name == "baichuan2":
        assert 195 in want and 196 in want


@pytest.mark.parametrize("name", EXPORTED)
def test_chatfmts_own_jinja_engine_renders_the_exported_template_like_the_builtin(name):
    import chatfmt

    fmt = registry.get(name)
    template = chatfmt.from_template(to_jinja(fmt))
    for p in ALL_PROBES:
        kwargs = {"tools": p.tool_list(), "add_generation_prompt": p.add_generation_prompt, **PROBE_KWARGS}
        # chatfmt's Jinja engine drops None-valued keys as apply_chat_template does; the native format
        # gets the same messages (deepseek-r1/-v3 tell `content: null` from no content, a template
        # under apply_chat_template cannot)
        messages = [{k: v for k, v in m.items() if v is not None} for m in p.message_list()]
        assert native(template, messages, **kwargs) == native(fmt, messages, **kwargs), p.id
