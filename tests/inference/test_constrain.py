"""Constrained decoding (chatfmt.inference.constrain) on the real SmolLM2 vocabulary, without a model:
documents valid against a schema pass the token masks and complete the grammar, invalid ones are
refused at some token, random walks through the masks always end in JSON that ``jsonschema``
validates, unsupported schema features are named, and forced tool calls follow each format's own
syntax (read back by that format's own output parser). The real model runs in
tests/server/test_structured_outputs.py."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

import chatfmt
from chatfmt.errors import ConstraintError
from chatfmt.inference import constrain as C
from chatfmt.toolcalls import parser_for_format

pytest.importorskip("llguidance")

EOT = 2  # <|im_end|> in SmolLM2's vocabulary


@pytest.fixture(scope="module")
def tok(smollm2_gguf: Path, shared_tokenizer: Any) -> Any:
    return shared_tokenizer(smollm2_gguf)


def rf(schema: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": strict}}


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "role", "tags", "address"],
}
MEASURE = {
    "type": "object",
    "properties": {
        "value": {"type": "number", "minimum": -5, "maximum": 5},
        "ok": {"type": "boolean"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 8}]},
    },
    "required": ["value", "ok", "note"],
}
LIST = {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 1, "maxItems": 4}

VALID = [
    (
        PERSON,
        {
            "name": "Ada",
            "age": 36,
            "role": "admin",
            "tags": ["x", "yy"],
            "address": {"city": "Paris", "zip": "75001"},
        },
    ),
    (MEASURE, {"value": -2.5, "ok": True, "note": None}),
    (MEASURE, {"value": 5, "ok": False, "note": "fine"}),
    (LIST, [3, 1, 2]),
]
INVALID = [
    (
        PERSON,
        {"name": "Ada", "age": 121, "role": "admin", "tags": [], "address": {"city": "P", "zip": "75001"}},
    ),  # age > max
    (
        PERSON,
        {"name": "Ada", "age": 3, "role": "root", "tags": [], "address": {"city": "P", "zip": "75001"}},
    ),  # enum
    (
        PERSON,
        {"name": "Ada", "age": 3, "role": "user", "tags": [], "address": {"city": "P", "zip": "7500"}},
    ),  # pattern
    (
        PERSON,
        {
            "name": "Ada",
            "age": 3,
            "role": "user",
            "tags": [],
            "address": {"city": "P", "zip": "75001"},
            "x": 1,
        },
    ),  # closed
    (PERSON, {"name": "Ada", "age": 3, "role": "user", "tags": []}),  # a required property missing
    (MEASURE, {"value": 7, "ok": True, "note": None}),
    (LIST, []),
    (LIST, [1, 2, 3, 1, 2]),
]


def walk(constraint: C.GrammarConstraint, ids: list[int]) -> int | None:
    """Feed ``ids``; the index of the first one the mask does not allow, or None."""
    for k, i in enumerate(ids):
        row = np.zeros(constraint.vocab, dtype=np.float32)
        constraint.mask_logits(row)
        if row[i] == -np.inf:
            return k
        constraint.advance(i)
    return None


@pytest.mark.parametrize(("schema", "doc"), VALID, ids=[f"valid{i}" for i in range(len(VALID))])
def test_a_valid_document_passes_every_mask_and_completes_the_grammar(tok, schema, doc):
    jsonschema.validate(doc, schema)  # the example itself is valid
    factory = C.response_format_constraint(rf(schema), tok, {EOT})
    c = factory.new()
    assert walk(c, tok.encode_text(json.dumps(doc))) is None
    assert c.done()  # nothing but the end of turn may follow


@pytest.mark.parametrize(("schema", "doc"), INVALID, ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_an_invalid_document_is_refused_at_some_token(tok, schema, doc):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, C.close_objects(schema))
    c = C.response_format_constraint(rf(schema), tok, {EOT}).new()
    ids = tok.encode_text(json.dumps(doc))
    stuck = walk(c, ids)
    # refused at a token, or every token passed but the grammar is not complete (more is required)
    assert stuck is not None or not c.done()


@pytest.mark.parametrize("schema", [PERSON, MEASURE, LIST], ids=["person", "measure", "list"])
def test_random_walks_through_the_masks_end_in_valid_json(tok, schema):
    """Whatever a model would sample (here: random scores), the masked choice ends in JSON that
    validates (strict: objects closed)."""
    factory = C.response_format_constraint(rf(schema), tok, {EOT})
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(12):
        c = factory.new()
        out: list[int] = []
        for _step in range(400):
            if c.done():
                break
            row = rng.gumbel(size=c.vocab).astype(np.float32)
            c.mask_logits(row)
            t = int(np.argmax(row))
            if t == EOT:
                break
            out.append(t)
            c.advance(t)
        else:
            continue  # no end in 400 tokens (a long number or string): nothing to check
        finished += 1
        jsonschema.validate(json.loads(tok.decode(out)), C.close_objects(schema))
    assert finished >= 6


def test_strict_closes_objects_and_non_strict_enforces_the_schema_as_written(tok):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    extra = tok.encode_text(json.dumps({"a": 1, "b": 2}))
    assert walk(C.response_format_constraint(rf(schema, strict=True), tok, {EOT}).new(), extra) is not None
    loose = C.response_format_constraint(rf(schema, strict=False), tok, {EOT}).new()
    assert walk(loose, extra) is None and loose.done()
    wrong = C.response_format_constraint(rf(schema, strict=False), tok, {EOT}).new()
    assert walk(wrong, tok.encode_text(json.dumps({"a": "one"}))) is not None


def test_json_object_is_any_object_and_only_an_object(tok):
    f = C.response_format_constraint({"type": "json_object"}, tok, {EOT})
    assert f is not None and f.kind == "json_object"
    assert walk(f.new(), tok.encode_text("[1, 2]")) == 0
    c = f.new()
    assert walk(c, tok.encode_text('{"k": [1, "two", {"t": true}]}')) is None and c.done()
    assert C.response_format_constraint({"type": "text"}, tok, {EOT}) is None
    assert C.response_format_constraint(None, tok, {EOT}) is None


@pytest.mark.parametrize(
    ("schema", "feature"),
    [
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
        ({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
        ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
    ],
)
def test_an_unsupported_schema_feature_is_named(tok, schema, feature):
    with pytest.raises(ConstraintError) as e:
        C.response_format_constraint(rf(schema, strict=False), tok, {EOT})
    assert feature in str(e.value)
    assert e.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
        ({"type": "yaml"}, "response_format"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_malformed_response_formats_name_the_field(tok, response_format, param):
    with pytest.raises(ConstraintError) as e:
        C.response_format_constraint(response_format, tok, {EOT})
    assert e.value.param == param


def test_masks_on_numpy_and_torch_rows_agree_and_padding_is_masked(tok):
    torch = pytest.importorskip("torch")
    f = C.response_format_constraint(rf(MEASURE), tok, {EOT})
    a, b = f.new(), f.new()
    for t in tok.encode_text('{"value": 1'):
        x = np.random.default_rng(t).normal(size=a.vocab + 64).astype(np.float32)
        y = torch.from_numpy(x.copy())
        a.mask_logits(x)
        b.mask_logits(y)
        assert np.array_equal(np.isinf(x), np.isinf(y.numpy()))
        assert np.isinf(x[a.vocab :]).all() and not np.isinf(x).all()
        a.advance(t)
        b.advance(t)


# -- tool calls --------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
#: formats whose call syntax is enforced (JSON bodies, or a name then a JSON object of arguments)
CONSTRAINED = [
    "qwen2.5",
    "hermes-2-pro",
    "smollm3",
    "qwen3",
    "llama-3.1",
    "llama-3.2",
    "llama-4",
    "mistral-v3",
    "mistral-v7",
    "ministral-3",
    "functionary-v3.1",
    "functionary-v3.2",
    "gpt-oss",
    "command-r7b",
]


def _parsed(fmt: Any, tok: Any, text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parser = parser_for_format(fmt, tok, tools=tools)
    ids, _, _ = C._encode(text, tok)
    for i in ids:
        parser.feed(tok.decode([i]), i)
    _, out = parser.finish()
    return out.tool_calls


@pytest.mark.parametrize("name", CONSTRAINED)
def test_a_forced_call_in_the_formats_syntax_is_accepted_and_parsed_back(tok, name):
    fmt = chatfmt.load_format(name)
    tools = [WEATHER, TIME]
    factory = C.tool_choice_constraint(fmt, tok, tools, {EOT})
    args = {"city": "Paris", "unit": "c"}
    text = C.sample_call(fmt, WEATHER, args)
    c = factory.new()
    ids, _, _ = C._encode(text, tok)
    assert walk(c, ids) is None and c.done()
    # the format's own parser returns exactly that call
    calls = _parsed(fmt, tok, text, tools)
    assert [(x["function"]["name"], json.loads(x["function"]["arguments"])) for x in calls] == [
        ("get_weather", args)
    ]


@pytest.mark.parametrize("name", ["qwen2.5", "llama-3.1", "ministral-3", "gpt-oss"])
def test_a_call_of_another_tool_or_with_invalid_arguments_is_refused(tok, name):
    fmt = chatfmt.load_format(name)
    only_weather = C.tool_choice_constraint(fmt, tok, [WEATHER], {EOT})
    for tool, args in [
        (TIME, {"tz": "UTC"}),
        (WEATHER, {"city": "Paris", "unit": "kelvin"}),
        (WEATHER, {"city": 3, "unit": "c"}),
    ]:
        c = only_weather.new()
        ids, _, _ = C._encode(C.sample_call(fmt, tool, args), tok)
        assert walk(c, ids) is not None or not c.done(), (tool["function"]["name"], args)
    c = only_weather.new()
    ids, _, _ = C._encode(C.sample_call(fmt, WEATHER, {"city": "Paris"}), tok)  # "unit" is required
    assert walk(c, ids) is not None or not c.done()


@pytest.mark.parametrize("name", ["qwen3-coder", "glm-4.5", "granite-3.3", "kimi-k2", "falcon3"])
def test_a_format_whose_call_syntax_cannot_be_constrained_is_refused_by_name(tok, name):
    with pytest.raises(ConstraintError) as e:
        C.tool_choice_constraint(chatfmt.load_format(name), tok, [WEATHER], {EOT})
    assert repr(name) in str(e.value) and e.value.param == "tool_choice"


def test_the_default_models_own_format_has_no_call_syntax_and_is_refused(tok, smollm2_gguf):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = chatfmt.load_format(smollm2_gguf)
    with pytest.raises(ConstraintError) as e:
        C.tool_choice_constraint(fmt, tok, [WEATHER], {EOT})
    assert fmt.info.name in str(e.value)


def test_a_marker_that_is_one_token_is_forced_as_that_token(testdata, shared_tokenizer):
    """In Qwen2.5's vocabulary ``<tool_call>`` is token 151657: the grammar allows that id, not the
    same characters spelled in text tokens (which the parser would leave as content)."""
    qtok = shared_tokenizer(testdata("qwen2.5"))
    fmt = chatfmt.load_format("qwen2.5")
    marker = qtok.token_to_id("<tool_call>")
    assert marker is not None
    eot = qtok.token_to_id("<|im_end|>")
    f = C.tool_choice_constraint(fmt, qtok, [WEATHER], {eot})
    assert f"<[{marker}]>" in f.grammar
    c = f.new()
    row = np.zeros(c.vocab, dtype=np.float32)
    c.mask_logits(row)
    assert np.flatnonzero(row != -np.inf).tolist() == [marker]
    ids, _, _ = C._encode(C.sample_call(fmt, WEATHER, {"city": "Oslo", "unit": "f"}), qtok)
    assert ids[0] == marker and walk(c, ids) is None and c.done()


def test_a_strict_function_closes_its_argument_objects(tok):
    fmt = chatfmt.load_format("qwen2.5")
    loose = {"type": "function", "function": {**WEATHER["function"]}}
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    extra = {"city": "Rome", "unit": "c", "note": "x"}
    ids, _, _ = C._encode(C.sample_call(fmt, loose, extra), tok)
    c = C.tool_choice_constraint(fmt, tok, [loose], {EOT}).new()
    assert walk(c, ids) is None and c.done()  # the schema as written allows more properties
    c = C.tool_choice_constraint(fmt, tok, [strict], {EOT}).new()
    assert walk(c, ids) is not None


# -- Chat.send with the real model (both backends; slow: each loads the model) --------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["transformers", "llama.cpp"])
def test_chat_send_with_response_format_validates_on_both_backends(backend, smollm2_gguf):
    if backend == "llama.cpp":
        pytest.importorskip("llama_cpp")
    chat = chatfmt.Chat(smollm2_gguf, backend=backend, temperature=0.8, seed=1, max_new_tokens=120)
    rf_ = rf(PERSON)
    for k, q in enumerate(["Invent a person.", "Who is the admin?", "Describe a guest from Paris."]):
        reply = chat.send(q, response_format=rf_, seed=k)
        assert reply.finish_reason == "stop", reply.content
        jsonschema.validate(json.loads(reply.content), C.close_objects(PERSON))
    chat.response_format = {"type": "json_object"}
    out = chat.generate([{"role": "user", "content": "A JSON object about dogs, please."}], max_new_tokens=60)
    assert out.content.startswith("{")
