"""Every extension kind is a :class:`chatfmt.plugins.Registry` filled the same way (built-ins, then
entry points): output parsers, record kinds, backends, tokenizer kinds, upstream kinds; the older
registration functions still work. The choice of an output parser reads the format's declaration
(its Family, a TOML format's ``parser`` key, else its tool-call syntax)."""

from __future__ import annotations

import warnings

import pytest

import chatfmt
from chatfmt.errors import SpecError, ValidationError
from chatfmt.formats import registry
from chatfmt.formats.spec_toml import parse_spec, spec_to_toml
from chatfmt.messages import (
    DETECTORS,
    PARSERS,
    RECORD_KINDS,
    RecordKind,
    detect_kind,
    parse_openai,
    parse_record,
    register_parser,
    register_record_kind,
)
from chatfmt.plugins import Registry
from chatfmt.toolcalls import OUTPUT_PARSERS, Grammar, get_parser, list_parsers, parser_name_for_format
from chatfmt.toolcalls import register_parser as register_output_parser

USER = """
[roles.user]
prefix = "<u>"
suffix = "</u>"
[roles.assistant]
prefix = "<a>"
suffix = "</a>"
"""


# -- output parsers ----------------------------------------------------------------------------------


def test_output_parsers_are_a_registry_of_the_builtins():
    assert isinstance(OUTPUT_PARSERS, Registry) and OUTPUT_PARSERS.group == "chatfmt.parsers"
    assert {"plain", "think", "hermes", "mistral", "llama3"} <= set(list_parsers())
    assert all(OUTPUT_PARSERS.origin(n).dist == "chatfmt" for n in ("plain", "hermes"))


@pytest.mark.parametrize("name", registry.names())
def test_a_declared_family_parser_is_registered_and_chosen(name):
    fam = registry.family(name)
    chosen = parser_name_for_format(chatfmt.load_format(name))
    if fam.parser is None:  # plain or think by the format's info, unless a plugin parser serves it
        assert chosen in ("plain", "think") or name in OUTPUT_PARSERS.get(chosen).formats
    else:
        assert fam.parser in OUTPUT_PARSERS and chosen == fam.parser


def test_a_toml_format_names_its_parser_or_gets_one_from_its_tool_call_syntax():
    named = parse_spec('name = "mine"\nparser = "hermes"\n' + USER)
    assert parser_name_for_format(named) == "hermes"
    assert 'parser = "hermes"' in spec_to_toml(named.spec)
    bracket = parse_spec('name = "mine"\n' + USER + '[tool_calls]\nprefix = "[TOOL_CALLS]"\n')
    assert parser_name_for_format(bracket) == "mistral"
    wrapped = parse_spec('name = "mine"\n' + USER + '[tool_calls]\nprefix = "<tool_call>\\n"\nsuffix = "\\n</tool_call>"\n')
    assert parser_name_for_format(wrapped) == "hermes"
    text = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    assert [c["function"]["name"] for c in get_parser(parser_name_for_format(wrapped)).parse(text).tool_calls] == ["f"]
    assert parser_name_for_format(parse_spec('name = "mine"\n' + USER)) == "plain"


def test_a_toml_parser_key_naming_no_parser_is_an_error_on_its_line():
    with pytest.raises(SpecError, match=r"mine.toml:2: parser: unknown output parser \(did you mean 'hermes'\?\)"):
        parse_spec('name = "mine"\nparser = "hermez"\n' + USER, source="mine.toml")


def test_a_registered_parser_with_markers_is_tried_by_priority():
    register_output_parser("test-bang", Grammar("bang", {"end": "!!"}, end=("end",)), template_markers=("<bang>",),
                           priority=1)
    try:
        fmt = chatfmt.from_template("{% for m in messages %}<bang><tool_call>{{ m.content }}{% endfor %}")
        assert parser_name_for_format(fmt) == "test-bang"  # before hermes (priority 120)
        assert OUTPUT_PARSERS.origin("test-bang").dist == "runtime"
    finally:
        OUTPUT_PARSERS.pop("test-bang")
    assert parser_name_for_format(fmt) == "hermes"


# -- record kinds ------------------------------------------------------------------------------------


def test_record_kinds_are_a_registry_and_parsers_a_live_view():
    builtins = ["openai", "conversations", "prompt_response", "sharegpt", "alpaca", "prompt_completion", "text"]
    assert list(PARSERS)[: len(builtins)] == builtins  # the built-ins in their order, then plugins' kinds
    assert PARSERS["openai"] is parse_openai and "prompt_response" in PARSERS
    assert [k for k, _ in DETECTORS][:2] == ["sharegpt", "openai"]
    with pytest.raises(ValidationError, match="unknown record kind 'nope'"):
        parse_record({"messages": []}, "nope")


def _lines(record: dict[str, object], *, strict_tools: bool = True) -> chatfmt.Conversation:
    lines = record["lines"]
    assert isinstance(lines, list)
    msgs = [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(lines)]
    return parse_openai({"messages": msgs}, strict_tools=strict_tools)


def test_register_record_kind_detects_first_and_the_old_name_warns():
    record = {"lines": ["hi", "hello"]}
    register_record_kind("test_lines", _lines, lambda o: "lines" in o, description="alternating lines")
    try:
        assert detect_kind(record) == "test_lines"
        assert isinstance(RECORD_KINDS.get("test_lines"), RecordKind)
        assert parse_record(record) == parse_record({"messages": [{"role": "user", "content": "hi"},
                                                                    {"role": "assistant", "content": "hello"}]})
        assert "test_lines" in PARSERS and list(PARSERS)[-1] == "test_lines"
    finally:
        del PARSERS["test_lines"]
    assert "test_lines" not in RECORD_KINDS
    with pytest.warns(DeprecationWarning, match="register_record_kind"):
        register_parser("test_lines", _lines)
    try:
        assert parse_record(record, "test_lines").messages[1].content == "hello"
    finally:
        RECORD_KINDS.pop("test_lines")


# -- backends, tokenizer kinds, upstream kinds -------------------------------------------------------


def test_backends_tokenizer_kinds_and_upstreams_are_registries_of_the_builtins():
    from chatfmt.inference.backends import get_backend_spec, list_backends
    from chatfmt.inference.backends.base import BACKENDS
    from chatfmt.server.engines import UPSTREAM_KINDS, UPSTREAMS
    from chatfmt.tokenizers.auto import FORMATS, TOKENIZER_KINDS, tokenizer_kinds

    assert BACKENDS.group == "chatfmt.backends" and {"llama.cpp", "transformers"} <= set(list_backends())
    assert get_backend_spec("llama-cpp").name == "llama.cpp" and get_backend_spec("hf").name == "transformers"
    assert TOKENIZER_KINDS.group == "chatfmt.tokenizers"
    assert [f.name for f in tokenizer_kinds()][: len(FORMATS)] == [f.name for f in FORMATS]
    assert UPSTREAMS.group == "chatfmt.upstreams" and {"llama.cpp", "openai-completions"} <= set(UPSTREAM_KINDS)
    assert UPSTREAM_KINDS["llama.cpp"] is UPSTREAMS.get("llama.cpp")


def test_register_upstream_kind_still_adds_one():
    from chatfmt.server.engines import (
        UPSTREAM_KINDS,
        UPSTREAMS,
        OpenAICompletionsKind,
        register_upstream_kind,
    )

    class Mine(OpenAICompletionsKind):
        name = "test-mine"

    register_upstream_kind(Mine())
    try:
        assert isinstance(UPSTREAM_KINDS["test-mine"], Mine) and UPSTREAMS.origin("test-mine").dist == "runtime"
    finally:
        UPSTREAMS.pop("test-mine")
    assert "test-mine" not in UPSTREAM_KINDS


def test_no_warning_when_nothing_is_broken():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reg in (OUTPUT_PARSERS, RECORD_KINDS, registry.FAMILIES):
            assert reg.broken() == {}
