"""Message validation: every refusal names its rule, its message (or tool) and what was wrong, and
every accepted message keeps exactly what it said.

The loss keys follow the tools that define them (OpenAI's ``weight`` 0/1 on assistant messages,
axolotl's ``training``/``train``/``train_detail`` with an inclusive ``end_offset``, LLaMA-Factory's
``loss_weight`` 0.0/1.0); the messages are the user-facing text of each refusal (docs: errors carry
``rule`` and ``index`` or ``tool``).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from chatfmt.errors import ValidationError
from chatfmt.messages import (
    Conversation,
    Message,
    ToolCall,
    parse_message,
    validate_conversation,
    validate_tools,
)

U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "ok"}

BAD_MESSAGES: list[tuple[Any, str, str]] = [
    ("text", "type", "a message must be an object, got string"),
    ([1], "type", "a message must be an object, got array"),
    (None, "type", "a message must be an object, got null"),
    ({"content": "x"}, "role", "message has no string 'role'"),
    ({"role": 1, "content": "x"}, "role", "message has no string 'role'"),
    (
        {"role": "bot", "content": "x"},
        "role",
        "unknown role 'bot' (expected one of system, user, assistant, tool, or observation)",
    ),
    ({"role": "user", "content": 3}, "content", "content must be a string, a list of parts or null, got int"),
    (
        {"role": "user", "content": True},
        "content",
        "content must be a string, a list of parts or null, got boolean",
    ),
    (
        {"role": "user", "content": {"a": 1}},
        "content",
        "content must be a string, a list of parts or null, got object",
    ),
    ({"role": "user", "content": ["x"]}, "content", "content part 0 must be an object with a type"),
    (
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": 3}]},
        "content",
        "content part 1 must be an object with a type",
    ),
    ({"role": "user", "content": [{"type": "text"}]}, "content", "text content part 0 has no string 'text'"),
    ({"role": "user", "content": [{"text": 5}]}, "content", "text content part 0 has no string 'text'"),
    (
        {"role": "assistant", "content": "", "tool_calls": {}},
        "tool_call",
        "tool_calls must be a list, got object",
    ),
    (
        {"role": "user", "content": "", "tool_calls": [{"name": "f"}]},
        "tool_call",
        "only assistant messages may carry tool_calls, not user",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": ["f"]},
        "tool_call",
        "a tool call must be an object, got string",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": ""}}]},
        "tool_call",
        "a tool call needs a non-empty function name",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"function": "f"}]},
        "tool_call",
        "a tool call needs a non-empty function name",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": 3}}]},
        "tool_call",
        "a tool call needs a non-empty function name",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"type": "code", "function": {"name": "f"}}]},
        "tool_call",
        "tool call type must be 'function', got 'code'",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"id": 5, "function": {"name": "f"}}]},
        "tool_call",
        "'id' must be a string, got int",
    ),
    (
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}],
        },
        "tool_call",
        "arguments of tool call 'f' are not valid JSON: Expecting property name enclosed in double quotes at column 2",
    ),
    (
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": "{\n\n  x"}}],
        },
        "tool_call",
        "arguments of tool call 'f' are not valid JSON: Expecting property name enclosed in double quotes at line 3, column 3",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]},
        "tool_call",
        "arguments of tool call 'f' must be a JSON object, got array",
    ),
    (
        {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": 3}]},
        "tool_call",
        "arguments of tool call 'f' must be a JSON object, got int",
    ),
    (
        {"role": "assistant", "content": "", "reasoning_content": 1},
        "reasoning",
        "reasoning must be a string, got int",
    ),
    (
        {"role": "assistant", "content": "", "thinking": ["x"]},
        "reasoning",
        "reasoning must be a string, got array",
    ),
    ({"role": "user", "content": "", "name": 1}, "name", "'name' must be a string, got int"),
    (
        {"role": "tool", "content": "", "tool_call_id": 1},
        "tool_call_id",
        "'tool_call_id' must be a string, got int",
    ),
    ({"role": "user", "content": "x", "loss": "yes"}, "loss", "'loss' must be true or false, got 'yes'"),
    ({"role": "user", "content": "x", "loss": 1}, "loss", "'loss' must be true or false, got 1"),
    (
        {"role": "user", "content": "x", "train": 1, "loss": True},
        "loss",
        "'train' must be true or false, got 1",
    ),
    (
        {"role": "user", "content": "x", "training": "no"},
        "loss",
        "'training' must be true or false, got 'no'",
    ),
    (
        {"role": "user", "content": "x", "weight": 1},
        "weight",
        "'weight' (OpenAI fine-tuning) applies to assistant messages only, not user; use 'loss': true|false",
    ),
    (
        {"role": "assistant", "content": "x", "weight": 0.5},
        "weight",
        "'weight' must be 0 or 1 (trained or not; chatfmt writes no fractional loss weights), got 0.5",
    ),
    (
        {"role": "assistant", "content": "x", "weight": 1.0},
        "weight",
        "'weight' must be 0 or 1 (trained or not; chatfmt writes no fractional loss weights), got 1.0",
    ),
    (
        {"role": "assistant", "content": "x", "weight": True},
        "weight",
        "'weight' must be 0 or 1 (trained or not; chatfmt writes no fractional loss weights), got True",
    ),
    (
        {"role": "assistant", "content": "x", "weight": 2},
        "weight",
        "'weight' must be 0 or 1 (trained or not; chatfmt writes no fractional loss weights), got 2",
    ),
    (
        {"role": "user", "content": "x", "loss_weight": 0.5},
        "weight",
        "'loss_weight' must be 0.0 or 1.0 (trained or not; chatfmt writes no fractional loss weights), got 0.5",
    ),
    (
        {"role": "user", "content": "x", "loss_weight": "1"},
        "weight",
        "'loss_weight' must be 0.0 or 1.0 (trained or not; chatfmt writes no fractional loss weights), got '1'",
    ),
    (
        {"role": "user", "content": "x", "mask": 1, "loss_mask": 0},
        "loss_key",
        "'loss_mask' is not a loss key chatfmt knows (train or skip cannot be told); mark the message with 'loss': true|false (or OpenAI's 'weight': 0|1), or ignore the key with --ignore-key loss_mask",
    ),
    (
        {"role": "assistant", "content": "x", "loss": True, "weight": 0},
        "loss_conflict",
        "the message's loss keys disagree (loss: true, weight: 0): is it trained or not?",
    ),
    (
        {"role": "user", "content": "x", "train": False, "loss_weight": 1.0},
        "loss_conflict",
        "the message's loss keys disagree (train: false, loss_weight: 1.0): is it trained or not?",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train": False,
            "train_detail": [{"begin_offset": 0, "end_offset": 1, "train": True}],
        },
        "loss_conflict",
        "the message's loss keys disagree (train: false, but train_detail trains some of it)",
    ),
    (
        {"role": "user", "content": "abc", "loss": True, "train_detail": []},
        "loss_conflict",
        "the message's loss keys disagree (loss: true, but train_detail is empty)",
    ),
    (
        {"role": "user", "content": "abc", "train_detail": [], "training_detail": []},
        "train_detail",
        "the message has both 'train_detail' and 'training_detail'",
    ),
    (
        {"role": "user", "content": ["x"], "train_detail": []},
        "content",
        "content part 0 must be an object with a type",
    ),
    (
        {"role": "user", "content": [{"type": "text", "text": "a"}], "train_detail": []},
        "train_detail",
        "train_detail: needs the content as a string, got array",
    ),
    (
        {"role": "user", "content": "abc", "train_detail": {}},
        "train_detail",
        "train_detail: must be a list of {begin_offset, end_offset, train} objects, got object",
    ),
    (
        {"role": "user", "content": "abc", "train_detail": [1]},
        "train_detail",
        "train_detail: item 0 must be an object, got int",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": 0, "end_offset": 0, "train": True, "z": 1, "y": 2}],
        },
        "train_detail",
        "train_detail: item 0 has unknown key 'y' (expected begin_offset, end_offset, train)",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": 0, "end_offset": 0, "train": 1}],
        },
        "train_detail",
        "train_detail: item 0 needs integer begin_offset and end_offset and a boolean train, got {'begin_offset': 0, 'end_offset': 0, 'train': 1}",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": True, "end_offset": 0, "train": True}],
        },
        "train_detail",
        "train_detail: item 0 needs integer begin_offset and end_offset and a boolean train, got {'begin_offset': True, 'end_offset': 0, 'train': True}",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": 0, "end_offset": 3, "train": True}],
        },
        "train_detail",
        "train_detail: item 0 spans characters 0..3 (end inclusive), outside the content's 3 characters",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": 2, "end_offset": 1, "train": True}],
        },
        "train_detail",
        "train_detail: item 0 spans characters 2..1 (end inclusive), outside the content's 3 characters",
    ),
    (
        {
            "role": "user",
            "content": "abc",
            "train_detail": [{"begin_offset": -1, "end_offset": 1, "train": True}],
        },
        "train_detail",
        "train_detail: item 0 spans characters -1..1 (end inclusive), outside the content's 3 characters",
    ),
    (
        {
            "role": "user",
            "content": "abcd",
            "train_detail": [
                {"begin_offset": 2, "end_offset": 3, "train": True},
                {"begin_offset": 0, "end_offset": 2, "train": False},
            ],
        },
        "train_detail",
        "train_detail: spans starting at characters 0 and 2 overlap",
    ),
]


@pytest.mark.parametrize(
    ("obj", "rule", "message"), BAD_MESSAGES, ids=[f"{r}-{k}" for k, (_, r, _) in enumerate(BAD_MESSAGES)]
)
def test_a_bad_message_is_refused_by_rule_index_and_reason(obj: Any, rule: str, message: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_message(obj, 7)
    assert (e.value.rule, e.value.index) == (rule, 7)
    assert e.value.message == message if hasattr(e.value, "message") else str(e.value).endswith(message)


def test_accepted_messages_keep_what_they_said() -> None:
    m = parse_message(
        {"role": "observation", "content": None, "name": "n", "tool_call_id": "c1", "extra_key": 1}
    )
    assert (m.role, m.content, m.name, m.tool_call_id, m.extra) == ("tool", None, "n", "c1", {"extra_key": 1})
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"text": "b"}]
    assert parse_message({"role": "user", "content": parts}).content == parts
    assert parse_message({"role": "user"}).content == ""
    m = parse_message({"role": "assistant", "content": "", "thinking": None, "reasoning": "r"})
    assert m.reasoning_content == "r"
    assert (
        parse_message({"role": "assistant", "reasoning_content": "a", "thinking": "b"}).reasoning_content
        == "a"
    )
    assert parse_message({"role": "assistant", "thinking": "t"}).reasoning_content == "t"
    m = parse_message(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": [1, 2]}'}},
                {"name": "g", "arguments": " "},
                {"function": {"name": "h"}},
                {"name": "k", "arguments": {"y": 1}},
            ],
        }
    )
    assert m.tool_calls == [
        ToolCall("f", {"x": [1, 2]}, "c1"),
        ToolCall("g", {}, None),
        ToolCall("h", {}, None),
        ToolCall("k", {"y": 1}, None),
    ]
    assert parse_message({"role": "assistant", "content": "", "tool_calls": []}).tool_calls is None
    assert parse_message({"role": "user", "content": "", "tool_calls": []}).tool_calls is None
    assert parse_message({"role": "user", "content": "", "tool_calls": None}).tool_calls is None
    msg = Message("user", "x")
    assert parse_message(msg) is msg
    plain = parse_message({"role": "user", "content": "x"})
    assert (plain.role, plain.content, plain.loss, plain.train_detail, plain.extra) == (
        "user",
        "x",
        None,
        None,
        {},
    )


@pytest.mark.parametrize(
    ("keys", "loss"),
    [
        ({}, None),
        ({"loss": None}, None),
        ({"loss": True}, True),
        ({"loss": False}, False),
        ({"weight": 1}, True),
        ({"weight": 0}, False),
        ({"training": True}, True),
        ({"train": False}, False),
        ({"loss_weight": 1.0}, True),
        ({"loss_weight": 0}, False),
        ({"loss": True, "weight": 1, "train": True, "loss_weight": 1.0}, True),
        ({"loss": None, "weight": None, "mask": None, "train": False}, False),
    ],
)
def test_loss_keys_of_every_tool(keys: dict[str, Any], loss: bool | None) -> None:
    m = parse_message({"role": "assistant", "content": "abc", **keys})
    assert m.loss is loss and m.train_detail is None


def test_train_detail_spans_are_sorted_exclusive_and_train_the_turn() -> None:
    d = [
        {"begin_offset": 3, "end_offset": 3, "train": False},
        {"begin_offset": 0, "end_offset": 2, "train": True},
    ]
    m = parse_message({"role": "assistant", "content": "abcd", "train_detail": d})
    assert m.train_detail == ((0, 3, True), (3, 4, False)) and m.loss is True
    m = parse_message({"role": "assistant", "content": "abcd", "training_detail": d, "train": True})
    assert m.train_detail == ((0, 3, True), (3, 4, False)) and m.loss is True
    m = parse_message({"role": "assistant", "content": "abcd", "train_detail": []})
    assert m.train_detail is None and m.loss is False
    off = [{"begin_offset": 0, "end_offset": 3, "train": False}]
    m = parse_message({"role": "assistant", "content": "abcd", "train_detail": off, "loss": False})
    assert m.train_detail is None and m.loss is False
    m = parse_message({"role": "assistant", "content": "abcd", "train_detail": off})
    assert m.train_detail == ((0, 4, False),) and m.loss is True
    adjacent = [
        {"begin_offset": 0, "end_offset": 1, "train": True},
        {"begin_offset": 2, "end_offset": 3, "train": False},
    ]
    assert parse_message({"role": "user", "content": "abcd", "train_detail": adjacent}).train_detail == (
        (0, 2, True),
        (2, 4, False),
    )


def _conv(*msgs: dict[str, Any]) -> Conversation:
    return Conversation([parse_message(m, i) for i, m in enumerate(msgs)])


CALL = {"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}
TOOL = {"role": "tool", "content": "r"}


@pytest.mark.parametrize(
    ("msgs", "rule", "index", "message"),
    [
        ((), "empty", None, "conversation is empty"),
        (
            (U, {"role": "system", "content": "s"}),
            "system",
            1,
            "a system message after the first message: a conversation has at most one system message, and it comes first",
        ),
        (
            ({"role": "system", "content": "s"}, U, {"role": "system", "content": "s"}),
            "system",
            2,
            "a second system message: a conversation has at most one system message, and it comes first",
        ),
        (
            (TOOL,),
            "tool_result",
            0,
            "a tool result must follow an assistant tool call (or another tool result after one); it is the first message",
        ),
        (
            (U, TOOL),
            "tool_result",
            1,
            "a tool result must follow an assistant tool call (or another tool result after one); message 0 is a user message",
        ),
        (
            (U, A, TOOL),
            "tool_result",
            2,
            "a tool result must follow an assistant tool call (or another tool result after one); message 1 is an assistant message without tool calls",
        ),
        (
            (U, CALL, TOOL, U, TOOL),
            "tool_result",
            4,
            "a tool result must follow an assistant tool call (or another tool result after one); message 3 is a user message",
        ),
    ],
)
def test_conversation_rules(
    msgs: tuple[dict[str, Any], ...], rule: str, index: int | None, message: str
) -> None:
    with pytest.raises(ValidationError) as e:
        validate_conversation(_conv(*msgs))
    assert (e.value.rule, e.value.index, e.value.message) == (rule, index, message)


def test_conversation_rules_on_messages_built_directly() -> None:
    with pytest.raises(ValidationError) as e:
        validate_conversation(Conversation([Message("user", "x"), Message("robot", "y")]))
    assert (e.value.rule, e.value.index) == ("role", 1)
    assert e.value.message == "unknown role 'robot' (expected one of system, user, assistant, tool)"
    with pytest.raises(ValidationError) as e:
        validate_conversation(Conversation([Message("user", "x", tool_calls=[ToolCall("f")])]))
    assert (e.value.rule, e.value.index) == ("tool_call", 0)
    assert e.value.message == "only assistant messages may carry tool_calls, not user"


def test_valid_conversations_pass() -> None:
    validate_conversation(_conv({"role": "system", "content": "s"}, U, CALL, TOOL, TOOL, A, U, CALL, TOOL))
    validate_conversation(_conv(U))


FN = {
    "name": "f",
    "description": "d",
    "parameters": {"type": "object", "properties": {"x": {}}, "required": ["x"]},
}


@pytest.mark.parametrize(
    ("tools", "index", "message"),
    [
        (
            ["f"],
            0,
            "a tool definition must be an object, got string (free-form tool descriptions need strict_tools=False)",
        ),
        ([FN, {"type": "code", "function": FN}], 1, "tool type must be 'function', got 'code'"),
        ([{"type": "function"}], 0, "'function' must be an object, got null"),
        ([{"function": "f"}], 0, "'function' must be an object, got string"),
        ([{"name": ""}], 0, "a tool needs a non-empty string 'name', got ''"),
        ([{"description": "d"}], 0, "a tool needs a non-empty string 'name', got None"),
        ([{"name": "f", "description": 3}], 0, "description of 'f' must be a string, got int"),
        (
            [{"name": "f", "parameters": None}],
            0,
            'parameters of \'f\' must be a JSON schema with "type": "object", got null',
        ),
        (
            [{"name": "f", "parameters": {"type": "array"}}],
            0,
            "parameters of 'f' must be a JSON schema with \"type\": \"object\", got type 'array'",
        ),
        (
            [{"name": "f", "parameters": {"type": "object", "properties": []}}],
            0,
            "parameters.properties of 'f' must be an object",
        ),
        (
            [{"name": "f", "parameters": {"type": "object", "required": "x"}}],
            0,
            "parameters.required of 'f' must be a list of strings",
        ),
        (
            [{"name": "f", "parameters": {"type": "object", "required": ["x", 1]}}],
            0,
            "parameters.required of 'f' must be a list of strings",
        ),
        (
            [FN, {"type": "function", "function": {"name": "g"}}, {"function": FN}],
            2,
            "duplicate tool name 'f' (also tool 0)",
        ),
    ],
)
def test_bad_tool_definitions(tools: list[Any], index: int, message: str) -> None:
    with pytest.raises(ValidationError) as e:
        validate_tools(tools)
    assert (e.value.rule, e.value.tool, e.value.message) == ("tools", index, message)


def test_tool_definitions_are_returned_in_openai_shape() -> None:
    wrapped = {"type": "function", "function": FN}
    no_type = {"function": {"name": "g"}}
    bare = {"name": "h", "parameters": {"type": "object"}}
    out = validate_tools([wrapped, no_type, bare])
    assert out[0] is wrapped
    assert out[1] == {"type": "function", "function": {"name": "g"}}
    assert out[2] == {"type": "function", "function": bare} and out[2]["function"] is bare
    assert validate_tools([]) == []
    assert re.fullmatch(r"\[\]", str(validate_tools("[]")))
