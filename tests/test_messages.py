"""Conversation model, record parsers and validation (chatfmt.messages)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ValidationError
from chatfmt.messages import (
    PARSERS,
    Conversation,
    Message,
    ToolCall,
    as_conversation,
    detect_kind,
    parse_alpaca,
    parse_conversations,
    parse_message,
    parse_openai,
    parse_prompt_response,
    parse_record,
    parse_sharegpt,
    validate_conversation,
    validate_tools,
)

WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def roles(conv: Conversation) -> list[str]:
    return [m.role for m in conv]


@contextlib.contextmanager
def raises(rule: str, index: int | None = None, tool: int | None = None) -> Iterator[pytest.ExceptionInfo]:
    """Expect a ValidationError with exactly this rule, message index and tool index."""
    with pytest.raises(ValidationError) as info:
        yield info
    err = info.value
    assert (err.rule, err.index, err.tool) == (rule, index, tool), str(err)


# --- openai -------------------------------------------------------------------------------------


def test_openai_object_with_messages_and_tools_parses_and_normalises_tools():
    conv = parse_openai(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
            "tools": [WEATHER],
        }
    )
    assert roles(conv) == ["system", "user", "assistant", "tool", "assistant"]
    assert conv[2].tool_calls == [ToolCall("get_weather", {"city": "Paris"}, id="c1")]
    assert conv.tools == [{"type": "function", "function": WEATHER}]
    assert conv.raw_tools == [WEATHER]


def test_openai_bare_list_of_messages_parses():
    conv = parse_openai([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert roles(conv) == ["user", "assistant"] and conv.tools is None


def test_openai_record_without_messages_list_is_a_shape_error():
    with raises("shape"):
        parse_openai({"message": []})


def test_openai_error_names_the_index_of_the_bad_message():
    with raises("role", index=1):
        parse_openai([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])


def test_parse_message_reads_reasoning_aliases_and_keeps_unknown_keys_as_extra():
    m = parse_message({"role": "assistant", "content": "x", "thinking": "hmm", "id": "m7"})
    assert m.reasoning_content == "hmm" and m.extra == {"id": "m7"}


@pytest.mark.parametrize(
    ("message", "rule"),
    [
        ({"role": "user", "content": 3}, "content"),
        ({"role": "user", "content": [{"type": "text"}]}, "content"),
        ({"role": "user", "content": "x", "name": 1}, "name"),
        ({"role": "tool", "content": "x", "tool_call_id": 7}, "tool_call_id"),
        ({"role": "assistant", "content": "x", "reasoning_content": ["a"]}, "reasoning"),
        ({"role": "user", "content": "x", "loss": "yes"}, "loss"),
        ({"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}, "tool_call"),
        ({"role": "assistant", "tool_calls": {"name": "f"}}, "tool_call"),
        ({"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}, "tool_call"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
            "tool_call",
        ),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}, "tool_call"),
        (
            {"role": "assistant", "tool_calls": [{"type": "retrieval", "function": {"name": "f"}}]},
            "tool_call",
        ),
        ("just text", "type"),
        ({"content": "no role"}, "role"),
    ],
)
def test_parse_message_rejects_malformed_fields_with_their_rule(message, rule):
    with raises(rule, index=4):
        parse_message(message, 4)


def test_tool_call_arguments_given_as_json_text_are_parsed_and_empty_text_is_no_arguments():
    m = parse_message(
        {
            "role": "assistant",
            "tool_calls": [
                {"function": {"name": "f", "arguments": " "}},
                {"name": "g", "arguments": '{"a": 1}'},
            ],
        }
    )
    assert [(c.name, c.arguments) for c in m.tool_calls] == [("f", {}), ("g", {"a": 1})]


# --- conversations (ChatGLM3 fine-tuning format) ------------------------------------------------

CHATGLM_TOOL_RECORD = {
    "tools": [WEATHER],
    "conversations": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "北京天气?"},
        {"role": "assistant", "content": "I will look it up."},
        {
            "role": "tool",
            "name": "get_weather",
            "parameters": {"city": "北京"},
            "observation": {"temp": 20, "sky": "晴"},
        },
        {"role": "assistant", "content": "20 度，晴。"},
    ],
}


def test_conversations_tool_message_expands_into_a_call_and_its_result():
    conv = parse_conversations(CHATGLM_TOOL_RECORD)
    assert roles(conv) == ["system", "user", "assistant", "assistant", "tool", "assistant"]
    call, result = conv[3], conv[4]
    assert call.tool_calls == [ToolCall("get_weather", {"city": "北京"})] and call.content == ""
    assert (result.name, result.content) == ("get_weather", '{"temp": 20, "sky": "晴"}')


def test_conversations_string_observation_is_kept_verbatim():
    rec = {
        "conversations": [
            {"role": "user", "content": "q"},
            {"role": "tool", "name": "f", "parameters": {}, "observation": "  raw\n"},
        ]
    }
    assert parse_conversations(rec)[2].content == "  raw\n"


def test_conversations_default_loss_trains_assistant_and_tool_call_only():
    conv = parse_conversations(CHATGLM_TOOL_RECORD)
    assert [m.trained for m in conv] == [False, False, True, True, False, True]
    assert all(m.loss is None for m in conv)


def test_conversations_explicit_loss_overrides_default_and_applies_to_the_tool_call():
    rec = {
        "conversations": [
            {"role": "user", "content": "q", "loss": True},
            {"role": "assistant", "content": "a", "loss": False},
            {"role": "tool", "name": "f", "parameters": {"x": 1}, "observation": "r", "loss": False},
            {"role": "assistant", "content": "b"},
        ]
    }
    conv = parse_conversations(rec)
    assert [m.trained for m in conv] == [True, False, False, False, True]
    assert [m.loss for m in conv] == [True, False, False, None, None]


def test_conversations_observation_role_is_a_plain_tool_result():
    rec = {
        "conversations": [
            {"role": "user", "content": "q"},
            {"role": "tool", "name": "f", "parameters": {}, "observation": "first"},
            {"role": "observation", "content": "second"},
        ]
    }
    conv = parse_conversations(rec)
    assert roles(conv) == ["user", "assistant", "tool", "tool"] and conv[3].content == "second"


def test_conversations_keeps_tools_as_given_in_raw_tools():
    conv = parse_conversations(CHATGLM_TOOL_RECORD)
    assert conv.tools == [{"type": "function", "function": WEATHER}]
    assert conv.tools[0]["function"] is conv.raw_tools[0]


def test_conversations_free_form_tools_need_strict_tools_off():
    rec = {"tools": ["GET /weather?city=..."], "conversations": [{"role": "user", "content": "q"}]}
    with raises("tools", tool=0):
        parse_conversations(rec)
    conv = parse_conversations(rec, strict_tools=False)
    assert conv.tools == conv.raw_tools == ["GET /weather?city=..."]


@pytest.mark.parametrize(
    "tool_message",
    [
        {"role": "tool", "parameters": {}, "observation": "r"},
        {"role": "tool", "name": "f", "observation": "r"},
        {"role": "tool", "name": "f", "parameters": {}},
        {"role": "tool", "name": "f", "parameters": [1], "observation": "r"},
        {"role": "tool", "name": "f", "parameters": "{bad", "observation": "r"},
        {"role": "tool", "name": "f", "parameters": {}, "observation": "r", "content": "lost"},
    ],
)
def test_conversations_incomplete_tool_message_is_rejected_at_its_index(tool_message):
    rec = {"conversations": [{"role": "user", "content": "q"}, tool_message]}
    with raises("tool_message", index=1):
        parse_conversations(rec)


def test_conversations_tool_message_parameters_may_be_json_text():
    rec = {
        "conversations": [
            {"role": "user", "content": "q"},
            {"role": "tool", "name": "f", "parameters": '{"a": 1}', "observation": 1},
        ]
    }
    conv = parse_conversations(rec)
    assert conv[1].tool_calls[0].arguments == {"a": 1} and conv[2].content == "1"


def test_conversations_errors_name_record_positions_not_expanded_ones():
    rec = {
        "conversations": [
            {"role": "user", "content": "q"},
            {"role": "tool", "name": "f", "parameters": {}, "observation": "r"},
            {"role": "system", "content": "late"},
        ]
    }
    with raises("system", index=2):  # message 3 after expansion, record position 2
        parse_conversations(rec)


# --- sharegpt -------------------------------------------------------------------------------------


def test_sharegpt_maps_roles_function_calls_and_observations():
    rec = {
        "conversations": [
            {"from": "human", "value": "weather?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "Sunny."},
        ],
        "system": "be brief",
        "tools": json.dumps([WEATHER]),
    }
    conv = parse_sharegpt(rec)
    assert roles(conv) == ["system", "user", "assistant", "tool", "assistant"]
    assert conv[0].content == "be brief"
    assert conv[2].tool_calls == [ToolCall("get_weather", {"city": "Paris"})]
    assert conv.tools == [{"type": "function", "function": WEATHER}]


def test_sharegpt_function_call_list_gives_parallel_calls():
    rec = {
        "conversations": [
            {"from": "human", "value": "q"},
            {
                "from": "function_call",
                "value": '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]',
            },
            {"from": "observation", "value": "both"},
        ]
    }
    assert [c.name for c in parse_sharegpt(rec)[1].tool_calls] == ["a", "b"]


def test_sharegpt_system_turn_first_becomes_the_system_message():
    conv = parse_sharegpt(
        {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}]}
    )
    assert roles(conv) == ["system", "user"]


def test_sharegpt_system_given_as_key_and_first_turn_is_rejected():
    rec = {
        "system": "s",
        "conversations": [{"from": "system", "value": "s2"}, {"from": "human", "value": "q"}],
    }
    with raises("system", index=0):
        parse_sharegpt(rec)


def test_sharegpt_empty_tools_string_means_no_tools():
    conv = parse_sharegpt({"conversations": [{"from": "human", "value": "q"}], "tools": ""})
    assert conv.tools is None and conv.raw_tools is None


@pytest.mark.parametrize(
    ("turn", "rule"),
    [
        ({"from": "bot", "value": "x"}, "role"),
        ({"from": "gpt", "value": None}, "content"),
        ({"from": "function_call", "value": "get_weather(city=Paris)"}, "tool_call"),
        ({"from": "function_call", "value": "[]"}, "tool_call"),
        ({"from": "function_call", "value": '{"arguments": {}}'}, "tool_call"),
        ("gpt: hello", "type"),
    ],
)
def test_sharegpt_bad_turn_is_rejected_at_its_index(turn, rule):
    with raises(rule, index=1):
        parse_sharegpt({"conversations": [{"from": "human", "value": "q"}, turn]})


def test_sharegpt_observation_without_a_function_call_is_a_tool_result_error():
    rec = {
        "conversations": [
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
            {"from": "observation", "value": "r"},
        ]
    }
    with raises("tool_result", index=2):
        parse_sharegpt(rec)


def test_sharegpt_tools_that_are_not_json_are_rejected():
    with raises("tools"):
        parse_sharegpt({"conversations": [{"from": "human", "value": "q"}], "tools": "[{"})


# --- alpaca / prompt_response ----------------------------------------------------------------------


def test_alpaca_joins_instruction_and_input_with_a_newline():
    conv = parse_alpaca({"instruction": "Translate", "input": "bonjour", "output": "hello"})
    assert [(m.role, m.content) for m in conv] == [("user", "Translate\nbonjour"), ("assistant", "hello")]


@pytest.mark.parametrize(
    ("instruction", "input_", "user"), [("Say hi", "", "Say hi"), ("", "only input", "only input")]
)
def test_alpaca_leaves_out_empty_parts(instruction, input_, user):
    assert parse_alpaca({"instruction": instruction, "input": input_, "output": "o"})[0].content == user


def test_alpaca_system_and_history_come_before_the_turn():
    conv = parse_alpaca(
        {"instruction": "i", "output": "o", "system": "s", "history": [["q1", "a1"], ["q2", "a2"]]}
    )
    assert [(m.role, m.content) for m in conv] == [
        ("system", "s"),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "i"),
        ("assistant", "o"),
    ]


def test_alpaca_without_output_is_rejected_at_the_assistant_index():
    with raises("content", index=1):
        parse_alpaca({"instruction": "i", "input": ""})


def test_prompt_response_with_system_and_history():
    conv = parse_prompt_response({"prompt": "p", "response": "r", "system": "s", "history": [["q", "a"]]})
    assert [(m.role, m.content) for m in conv] == [
        ("system", "s"),
        ("user", "q"),
        ("assistant", "a"),
        ("user", "p"),
        ("assistant", "r"),
    ]
    assert [m.trained for m in conv] == [False, False, True, False, True]


def test_prompt_response_bad_history_pair_is_named_with_its_message_index():
    with raises("history", index=3) as info:
        parse_prompt_response(
            {"prompt": "p", "response": "r", "system": "s", "history": [["q", "a"], ["only one"]]}
        )
    assert "history[1]" in str(info.value)


def test_prompt_response_empty_system_adds_no_system_message():
    assert roles(parse_prompt_response({"prompt": "p", "response": "r", "system": ""})) == [
        "user",
        "assistant",
    ]


def test_prompt_response_missing_response_is_rejected():
    with raises("content", index=1):
        parse_prompt_response({"prompt": "p"})


# --- detection and dispatch --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        ([{"role": "user", "content": "q"}], "openai"),
        ({"messages": [{"role": "user", "content": "q"}]}, "openai"),
        ({"conversations": [{"role": "user", "content": "q"}]}, "conversations"),
        ({"conversations": [{"from": "human", "value": "q"}]}, "sharegpt"),
        ({"messages": [{"from": "human", "value": "q"}]}, "sharegpt"),
        ({"instruction": "i", "input": "", "output": "o"}, "alpaca"),
        ({"prompt": "p", "response": "r"}, "prompt_response"),
    ],
)
def test_detect_kind_tells_record_kinds_apart(record, kind):
    assert detect_kind(record) == kind
    assert parse_record(record) == PARSERS[kind](record)


@pytest.mark.parametrize("record", [{"body": "x"}, {"text": 3}, "plain", 3, None])
def test_detect_kind_rejects_unknown_shapes(record):
    with raises("kind"):
        detect_kind(record)


def test_a_plain_text_record_is_told_apart_and_refused_as_not_a_conversation():
    assert detect_kind({"text": "The sky is blue."}) == "text"
    with raises("not_conversational"):
        parse_record({"text": "The sky is blue."})


def test_parse_record_with_an_explicit_kind_skips_detection():
    conv = parse_record({"prompt": "p", "response": "r", "instruction": "ignored"}, "prompt_response")
    assert conv[0].content == "p"


def test_parse_record_unknown_kind_is_a_kind_error():
    with raises("kind"):
        parse_record({"prompt": "p", "response": "r"}, "yaml")


# --- validation --------------------------------------------------------------------------------


def _conv(*specs: tuple[str, bool]) -> Conversation:
    """Messages from (role, has_tool_calls) pairs."""
    return Conversation(
        [Message(r, "x", tool_calls=[ToolCall("f")] if calls else None) for r, calls in specs]
    )


def test_validation_rejects_an_empty_conversation():
    with raises("empty"):
        validate_conversation(Conversation([]))


def test_validation_rejects_a_second_system_message():
    with raises("system", index=2) as info:
        validate_conversation(_conv(("system", False), ("user", False), ("system", False)))
    assert "second system message" in str(info.value)


def test_validation_rejects_a_system_message_that_is_not_first():
    with raises("system", index=1) as info:
        validate_conversation(_conv(("user", False), ("system", False)))
    assert "after the first message" in str(info.value)


def test_validation_rejects_an_unknown_role_on_a_constructed_message():
    with raises("role", index=1):
        validate_conversation(_conv(("user", False), ("bot", False)))


def test_validation_rejects_tool_calls_on_a_user_message():
    with raises("tool_call", index=0):
        validate_conversation(_conv(("user", True)))


def test_validation_accepts_consecutive_tool_results_after_one_call():
    validate_conversation(
        _conv(("user", False), ("assistant", True), ("tool", False), ("tool", False), ("assistant", False))
    )


@pytest.mark.parametrize(
    ("specs", "index", "says"),
    [
        ((("tool", False),), 0, "it is the first message"),
        ((("user", False), ("tool", False)), 1, "message 0 is a user message"),
        ((("user", False), ("assistant", False), ("tool", False)), 2, "without tool calls"),
        (
            (("user", False), ("assistant", True), ("tool", False), ("user", False), ("tool", False)),
            4,
            "a user message",
        ),
    ],
)
def test_validation_rejects_a_tool_result_without_a_preceding_call(specs, index, says):
    with raises("tool_result", index=index) as info:
        validate_conversation(_conv(*specs))
    assert says in str(info.value) and f"message {index}:" in str(info.value)


def test_as_conversation_passes_tools_through_unnormalised():
    conv = as_conversation([{"role": "user", "content": "q"}], tools=[WEATHER])
    assert conv.tools == [WEATHER]


def test_as_conversation_rejects_tools_that_are_not_a_list():
    with raises("tools"):
        as_conversation([{"role": "user", "content": "q"}], tools=json.dumps([WEATHER]))


# --- tool definitions ----------------------------------------------------------------------------


def test_validate_tools_wraps_the_bare_form_and_keeps_the_openai_form():
    openai = {"type": "function", "function": {"name": "g"}}
    assert validate_tools([WEATHER, openai, {"function": {"name": "h"}}]) == [
        {"type": "function", "function": WEATHER},
        openai,
        {"type": "function", "function": {"name": "h"}},
    ]


def test_validate_tools_parses_json_text():
    assert validate_tools(json.dumps([WEATHER])) == [{"type": "function", "function": WEATHER}]
    assert validate_tools("") == []


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        ("a string", "must be an object"),
        ({"description": "no name"}, "'name'"),
        ({"type": "retrieval"}, "type must be 'function'"),
        ({"type": "function", "function": "f"}, "'function' must be an object"),
        ({"name": "f", "description": 3}, "description"),
        ({"name": "f", "parameters": {"properties": {}}}, '"type": "object"'),
        ({"name": "f", "parameters": []}, '"type": "object"'),
        ({"name": "f", "parameters": {"type": "object", "properties": []}}, "properties"),
        ({"name": "f", "parameters": {"type": "object", "required": "city"}}, "required"),
        ({"name": "get_weather"}, "duplicate tool name 'get_weather' (also tool 0)"),
    ],
)
def test_validate_tools_names_the_bad_tool_and_what_is_wrong(tool, says):
    with raises("tools", tool=1) as info:
        validate_tools([WEATHER, tool])
    assert says in str(info.value) and str(info.value).startswith("tool 1: ")


@pytest.mark.parametrize("tools", ["{not json", {"name": "f"}, 3])
def test_validate_tools_rejects_non_lists(tools):
    with raises("tools"):
        validate_tools(tools)


# --- round trips ---------------------------------------------------------------------------------


def test_conversation_to_dict_reads_back_with_parse_openai():
    conv = parse_conversations(CHATGLM_TOOL_RECORD)
    again = parse_openai(json.loads(json.dumps(conv.to_dict(), ensure_ascii=False)))
    assert again.messages == conv.messages and again.tools == conv.tools


def test_message_to_dict_keeps_an_explicit_loss():
    m = Message("user", "q", loss=True)
    assert m.to_dict()["loss"] is True and parse_message(m.to_dict()) == m
    assert "loss" not in Message("user", "q").to_dict()


# --- properties --------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "messages", "conversations", "tools", "role", "content", "from", "value", "name", "parameters",
        "observation", "loss", "tool_calls", "function", "arguments", "type", "system", "history",
        "instruction", "input", "output", "prompt", "response", "tool_call_id", "reasoning_content",
        "description", "properties", "required", "id",
    ]
)  # fmt: skip
_VALUES = st.sampled_from(
    [
        "user",
        "assistant",
        "system",
        "tool",
        "observation",
        "human",
        "gpt",
        "function_call",
        "function",
        "object",
    ]
)
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8) | _VALUES
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=25,
)
_JSON_TEXT = _JSONISH.map(lambda v: json.dumps(v))
_STR = st.text(max_size=6) | _VALUES


def _maybe(value):
    """Mostly well-typed values, sometimes anything."""
    return st.one_of(value, value, value, _JSONISH)


_FUNCTION = st.fixed_dictionaries(
    {"name": _maybe(_STR)},
    optional={
        "arguments": _maybe(st.dictionaries(_STR, _SCALARS, max_size=2) | _JSON_TEXT),
        "description": _maybe(_STR),
    },
)
_TOOL_DEF = _FUNCTION | st.fixed_dictionaries(
    {"type": _maybe(st.just("function")), "function": _maybe(_FUNCTION)}
)
_TOOLS = _maybe(st.lists(_maybe(_TOOL_DEF), max_size=3)) | st.lists(_TOOL_DEF, max_size=3).map(json.dumps)
_MESSAGE = st.fixed_dictionaries(
    {"role": _maybe(_VALUES)},
    optional={
        "content": _maybe(_STR),
        "name": _maybe(_STR),
        "tool_calls": _maybe(st.lists(_maybe(st.fixed_dictionaries({"function": _FUNCTION})), max_size=2)),
        "parameters": _maybe(st.dictionaries(_STR, _SCALARS, max_size=2)),
        "observation": _JSONISH,
        "loss": _maybe(st.booleans()),
    },
)
_TURN = st.fixed_dictionaries(
    {
        "from": _maybe(_VALUES),
        "value": _maybe(_STR | _FUNCTION.map(json.dumps) | st.lists(_FUNCTION).map(json.dumps)),
    }
)
_PAIRS = _maybe(st.lists(_maybe(st.tuples(_STR, _STR).map(list)), max_size=2))
#: records that are nearly right, so that the parsers' deeper paths see odd values
_NEAR_RECORDS = st.one_of(
    st.lists(_maybe(_MESSAGE), max_size=5),
    st.fixed_dictionaries({"messages": st.lists(_maybe(_MESSAGE), max_size=5)}, optional={"tools": _TOOLS}),
    st.fixed_dictionaries(
        {"conversations": st.lists(_maybe(_MESSAGE | _TURN), max_size=5)},
        optional={"tools": _TOOLS, "system": _maybe(_STR)},
    ),
    st.fixed_dictionaries(
        {"instruction": _maybe(_STR), "output": _maybe(_STR)},
        optional={"input": _maybe(_STR), "system": _maybe(_STR), "history": _PAIRS, "tools": _TOOLS},
    ),
    st.fixed_dictionaries(
        {"prompt": _maybe(_STR), "response": _maybe(_STR)},
        optional={"system": _maybe(_STR), "history": _PAIRS},
    ),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    record=_JSONISH | st.dictionaries(_KEYS, _JSONISH | _JSON_TEXT, max_size=6) | _NEAR_RECORDS,
    kind=st.none() | st.sampled_from(sorted(PARSERS)),
)
def test_parse_record_raises_only_validation_errors(record, kind):
    try:
        conv = parse_record(record, kind)
    except ValidationError:
        return
    validate_conversation(conv)


_TEXT = st.text(max_size=12)
_ARGS = st.dictionaries(st.text(max_size=5), st.none() | st.booleans() | st.integers() | _TEXT, max_size=3)


@st.composite
def openai_conversations(draw) -> list[dict]:
    """Valid OpenAI message dicts in canonical form (what ``Message.to_dict`` produces)."""
    msgs: list[dict] = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": draw(_TEXT)})
    for _ in range(draw(st.integers(1, 4))):
        msgs.append({"role": "user", "content": draw(_TEXT | st.just([{"type": "text", "text": "part"}]))})
        reply: dict = {"role": "assistant", "content": draw(_TEXT | st.none())}
        if draw(st.booleans()):
            reply["reasoning_content"] = draw(_TEXT)
        if draw(st.booleans()):
            reply["loss"] = draw(st.booleans())
        msgs.append(reply)
        n_calls = draw(st.integers(0, 2))
        if n_calls:
            reply["tool_calls"] = [
                {
                    "id": f"c{k}",
                    "type": "function",
                    "function": {"name": draw(st.text(min_size=1, max_size=6)), "arguments": draw(_ARGS)},
                }
                for k in range(n_calls)
            ]
            for k in range(n_calls):
                msgs.append({"role": "tool", "content": draw(_TEXT), "tool_call_id": f"c{k}", "name": "t"})
            msgs.append({"role": "assistant", "content": draw(_TEXT)})
        elif reply["content"] is None:  # null content is valid in a record only beside tool calls
            reply["content"] = ""
    return msgs


@given(openai_conversations())
def test_valid_openai_conversations_round_trip_through_to_dict_and_parse_message(dicts):
    conv = parse_openai(dicts)
    assert conv.to_dicts() == dicts
    assert [parse_message(m.to_dict(), i) for i, m in enumerate(conv)] == conv.messages
