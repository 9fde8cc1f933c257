"""Recorded (hand-written, realistic) model outputs per family: parsed whole, and streamed at every
fixed chunk size from 1 to 8 characters with the concatenated deltas equal to the one-shot result."""

from __future__ import annotations

import pytest

from chatfmt.toolcalls import get_parser

from ._streaming import assert_deltas_match, calls_of, chunks, stream

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

# (id, parser name, options, output, content, reasoning, calls, has warning)
RECORDED = [
    (
        "hermes-one",
        "hermes",
        {},
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "",
        None,
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "hermes-text-then-two",
        "hermes",
        {},
        'Let me look that up.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}\n'
        '</tool_call>\n<tool_call>\n{"name":"get_time","arguments":"{\\"tz\\": \\"CET\\"}"}\n</tool_call>',
        "Let me look that up.",
        None,
        [("get_weather", {"city": "Paris", "unit": "°C"}), ("get_time", {"tz": "CET"})],
        False,
    ),
    (
        "hermes-plain",
        "hermes",
        {},
        "Paris is sunny, 24 °C.<|im_end|>\n",
        "Paris is sunny, 24 °C.",
        None,
        [],
        False,
    ),
    (
        "hermes-bad-json",
        "hermes",
        {},
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>',
        None,
        [],
        True,
    ),
    (
        "hermes-unclosed",
        "hermes",
        {},
        'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
        'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
        None,
        [],
        True,
    ),
    (
        "hermes-near-marker",
        "hermes",
        {},
        "Use <tool_cal or <tool_call_x> in text.",
        "Use <tool_cal or <tool_call_x> in text.",
        None,
        [],
        False,
    ),
    (
        "qwen3-think-call",
        "qwen3",
        {},
        "<think>\nThe user wants the weather.\nI should call get_weather.\n</think>\n\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "",
        "The user wants the weather.\nI should call get_weather.",
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "qwen3-think-answer",
        "qwen3",
        {},
        "<think>\n\n</think>\n\nHello! How can I help?",
        "Hello! How can I help?",
        None,
        [],
        False,
    ),
    (
        "qwq-prompt-open",
        "qwq",
        {"prompt": "<|im_start|>assistant\n<think>\n"},
        "Two plus two is four.\n</think>\n\nThe answer is **4**.",
        "The answer is **4**.",
        "Two plus two is four.",
        [],
        False,
    ),
    (
        "deepseek-r1",
        "deepseek-r1",
        {"prompt": "<｜User｜>hi<｜Assistant｜><think>\n"},
        "Greeting; reply politely.\n</think>\n\nHello! How can I assist you today?<｜end▁of▁sentence｜>",
        "Hello! How can I assist you today?",
        "Greeting; reply politely.",
        [],
        False,
    ),
    (
        "deepseek-r1-call",
        "deepseek-r1",
        {"prompt": "<｜Assistant｜><think>\n"},
        "Need weather.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        "",
        "Need weather.",
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "deepseek-r1-unclosed-think",
        "deepseek-r1",
        {},
        "Still thinking about",
        "",
        "Still thinking about",
        [],
        True,
    ),
    (
        "deepseek-v3.1",
        "deepseek-v3.1",
        {"prompt": "<｜Assistant｜></think>"},
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>'
        "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
        "",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
        False,
    ),
    (
        "llama3-json",
        "llama3",
        {"tools": TOOLS},
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        "",
        None,
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "llama3-json-no-tools",
        "llama3",
        {},
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        None,
        [],
        False,
    ),
    (
        "llama3-json-content",
        "llama3",
        {"tools": TOOLS},
        '{"answer": 42} is the JSON you asked for.',
        '{"answer": 42} is the JSON you asked for.',
        None,
        [],
        False,
    ),
    (
        "llama3-builtin",
        "llama3",
        {},
        '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>',
        "",
        None,
        [("brave_search", {"query": "weather in Paris"})],
        False,
    ),
    (
        "llama3-code",
        "llama3",
        {},
        "<|python_tag|>import math\nprint(math.sqrt(2))<|eom_id|>",
        "",
        None,
        [("python", {"code": "import math\nprint(math.sqrt(2))"})],
        False,
    ),
    (
        "llama4-pythonic",
        "llama4",
        {"tools": TOOLS},
        '[get_weather(city="Paris"), get_time(tz="CET")]<|eot|>',
        "",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
        False,
    ),
    (
        "mistral-v3",
        "mistral",
        {},
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}]</s>',
        "",
        None,
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "mistral-v11",
        "mistral",
        {},
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}</s>',
        "",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
        False,
    ),
    (
        "mistral-bad",
        "mistral",
        {},
        "[TOOL_CALLS] [{name: get_weather}]</s>",
        "[TOOL_CALLS] [{name: get_weather}]",
        None,
        [],
        True,
    ),
    (
        "mistral-python-literal",
        "mistral",
        {},
        "[TOOL_CALLS] [{'name': 'get_weather', 'arguments': {'metric': True}}]</s>",
        "",
        None,
        [("get_weather", {"metric": True})],
        False,
    ),
    (
        "chatglm3-call",
        "chatglm3",
        {},
        " get_weather\n ```python\ntool_call(city='北京', days=3)\n```<|observation|>",
        "",
        None,
        [("get_weather", {"city": "北京", "days": 3})],
        False,
    ),
    (
        "chatglm3-text",
        "chatglm3",
        {},
        " \n 你好👋！我是人工智能助手 ChatGLM3-6B。</s>",
        "你好👋！我是人工智能助手 ChatGLM3-6B。",
        None,
        [],
        False,
    ),
    (
        "glm4-call",
        "glm4",
        {},
        'get_weather\n{"city": "Beijing"}<|observation|>',
        "",
        None,
        [("get_weather", {"city": "Beijing"})],
        False,
    ),
    (
        "glm4-text",
        "glm4",
        {},
        "\nBeijing is sunny today.<|user|>",
        "Beijing is sunny today.",
        None,
        [],
        False,
    ),
    (
        "functionary-v3.1",
        "functionary-v3.1",
        {},
        'I will check.<function=get_weather>{"city": "Paris"}</function><function=get_time>{}</function><|eom_id|>',
        "I will check.",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
        False,
    ),
    (
        "functionary-v3.2",
        "functionary-v3.2",
        {},
        'all\nChecking both.>>>get_weather\n{"city": "Paris"}>>>get_time\n{"tz": "CET"}<|eot_id|>',
        "Checking both.",
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
        False,
    ),
    ("functionary-v3.2-text", "functionary-v3.2", {}, "all\nHello!<|eot_id|>", "Hello!", None, [], False),
    (
        "granite-3.3",
        "granite-3.3",
        {},
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|end_of_text|>',
        "",
        None,
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "command-r7b",
        "command-r7b",
        {},
        "<|START_THINKING|>I will look up the weather.<|END_THINKING|><|START_ACTION|>[\n"
        '    {"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}\n]<|END_ACTION|><|END_OF_TURN_TOKEN|>',
        "",
        "I will look up the weather.",
        [("get_weather", {"city": "Paris"})],
        False,
    ),
    (
        "command-r7b-answer",
        "command-r7b",
        {},
        "<|START_RESPONSE|>It is sunny.<|END_RESPONSE|><|END_OF_TURN_TOKEN|>",
        "It is sunny.",
        None,
        [],
        False,
    ),
    (
        "minicpm5",
        "minicpm5",
        {},
        '<think>\nWeather needed.\n</think>\n\n<function name="get_weather"><param name="city">Paris</param>'
        '<param name="days">3</param></function><|im_end|>',
        "",
        "Weather needed.",
        [("get_weather", {"city": "Paris", "days": 3})],
        False,
    ),
    (
        "plain",
        "plain",
        {},
        "Just text with <tool_call> inside.",
        "Just text with <tool_call> inside.",
        None,
        [],
        False,
    ),
]


@pytest.mark.parametrize(
    "name,options,output,content,reasoning,calls,warned",
    [r[1:] for r in RECORDED],
    ids=[r[0] for r in RECORDED],
)
def test_recorded_output_parses_the_same_at_every_chunking(
    name, options, output, content, reasoning, calls, warned
):
    parser = get_parser(name, seed=7, **options)
    whole = parser.parse(output)
    assert whole.content == content
    assert whole.reasoning_content == reasoning
    assert calls_of(whole) == calls
    assert bool(whole.warnings) == warned, whole.warnings
    for size in range(1, 9):
        deltas, result = stream(parser, chunks(output, size))
        assert result == whole, size
        assert_deltas_match(deltas, result)


def test_ids_are_deterministic_with_a_seed_and_kept_when_the_model_gives_one():
    out = '[TOOL_CALLS] [{"name": "f", "arguments": {}, "id": "a1B2c3D4e"}, {"name": "g", "arguments": {}}]'
    a = get_parser("mistral", seed=3).parse(out)
    b = get_parser("mistral", seed=3).parse(out)
    assert a.tool_calls == b.tool_calls
    assert a.tool_calls[0]["id"] == "a1B2c3D4e"
    assert a.tool_calls[1]["id"].startswith("call_") and len(a.tool_calls[1]["id"]) == 29
    ids = iter(["x1", "x2"])
    c = get_parser("hermes", id_factory=lambda: next(ids)).parse(
        '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    )
    assert c.tool_calls[0]["id"] == "x1"


def test_to_message_is_an_openai_assistant_message():
    r = get_parser("qwen3", seed=1).parse(
        '<think>hm</think><tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    )
    msg = r.to_message()
    assert msg == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "hm",
        "tool_calls": [
            {
                "id": r.tool_calls[0]["id"],
                "type": "function",
                "function": {"name": "f", "arguments": '{"a": 1}'},
            }
        ],
    }
    assert get_parser("plain").parse("hi").to_message() == {"role": "assistant", "content": "hi"}


def test_no_partial_marker_leaks_into_content_while_streaming():
    parser = get_parser("hermes")
    seen = ""
    for ch in 'ok <tool_call>{"name": "f", "arguments": {}}</tool_call>':
        for d in parser.feed(ch):
            seen += d.content
            assert "<" not in seen
    assert seen == "ok"


def test_malformed_output_warns_when_asked():
    from chatfmt.toolcalls import ToolCallWarning

    with pytest.warns(ToolCallWarning, match="malformed"):
        get_parser("hermes", warn=True).parse("<tool_call>{bad}</tool_call>")


def test_feed_after_finish_is_an_error_until_reset():
    from chatfmt.toolcalls import ParserError

    p = get_parser("plain")
    p.feed("a")
    p.finish()
    with pytest.raises(ParserError):
        p.feed("b")
    p.reset()
    p.feed("b")
    assert p.finish()[1].content == "b"
