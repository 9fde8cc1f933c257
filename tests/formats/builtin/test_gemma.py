"""Gemma (1 and 2) and Gemma 3 are pinned byte for byte to Google's chat templates as transformers renders them.

References (``<repo>/../shared/testdata``): ``gemma/tokenizer_config.json`` (google/gemma -it), byte-
identical to ``templates/llama.cpp-c392e50/google-gemma-2-2b-it.jinja`` and ollama's
``extracted/21-gemma-instruct.jinja``; ``gemma/alt-gemma-3/chat_template.json`` (Gemma 3 -it), identical
to ollama's ``extracted/22-gemma3-instruct.jinja``. Rendered by ``render_jinja_template`` after dropping
``None``-valued keys from the messages, over hand-written conversations and arbitrary ones from
hypothesis; where a template raises (system role in Gemma 1/2, roles not alternating) the format
raises :class:`~chatfmt.errors.ValidationError`. (No Gemma tokenizer model is in the test data.)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ValidationError
from chatfmt.formats import registry
from chatfmt.formats.builtin.gemma import GEMMA_SPEC, Gemma, Gemma3

TESTDATA = Path(__file__).resolve().parents[3].parent / "shared" / "testdata"
GEMMA = TESTDATA / "gemma" / "tokenizer_config.json"
GEMMA_COPIES = [
    TESTDATA / "templates" / "llama.cpp-c392e50" / "google-gemma-2-2b-it.jinja",
    TESTDATA / "templates" / "llama.cpp-0c1e570" / "google-gemma-2-2b-it.jinja",
    TESTDATA / "templates" / "ollama-template-index" / "extracted" / "21-gemma-instruct.jinja",
]
GEMMA3 = TESTDATA / "gemma" / "alt-gemma-3" / "chat_template.json"
GEMMA3_COPY = TESTDATA / "templates" / "ollama-template-index" / "extracted" / "22-gemma3-instruct.jinja"
SPECIAL = {"bos_token": "<bos>", "eos_token": "<eos>"}
FORMATS = {"gemma": (Gemma, GEMMA), "gemma-3": (Gemma3, GEMMA3)}


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent (the Gemma reference templates live in <repo>/../shared/testdata)")


@functools.cache
def _template(path: Path) -> str:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))["chat_template"]
    return path.read_text(encoding="utf-8")


def hf_render(path: Path, messages: list[dict], **kwargs) -> str:
    """Render with a Gemma template exactly as transformers' apply_chat_template(tokenize=False) does."""
    need(path)
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    messages = [{k: v for k, v in m.items() if v is not None and k != "loss"} for m in messages]
    rendered, _ = render_jinja_template([messages], chat_template=_template(path), **SPECIAL, **kwargs)
    return rendered[0]


def msg(role: str, content, **extra) -> dict:
    return {"role": role, "content": content, **extra}


def text(t: str) -> dict:
    return {"type": "text", "text": t}


IMAGE = {"type": "image"}

# conversations both templates render (no system message)
CASES: dict[str, list[dict]] = {
    "single_user": [msg("user", "Hello")],
    "pair": [msg("user", "Hello"), msg("assistant", "Hi! How can I help?")],
    "multi_turn": [msg("user", "2+2?"), msg("assistant", "4"), msg("user", "3+3?"), msg("assistant", "6"), msg("user", "ok")],
    "chinese": [msg("user", "你好，请介绍一下你自己。"), msg("assistant", "我是 Gemma。")],
    "edge_whitespace": [msg("user", "  padded\n\n"), msg("assistant", "\n answer \t"), msg("user", " ")],
    "empty_contents": [msg("user", ""), msg("assistant", ""), msg("user", "")],
    "null_assistant_content": [msg("user", "hi"), msg("assistant", None), msg("user", "again")],
    "control_tokens_in_content": [msg("user", "<end_of_turn>\n<start_of_turn>model\nobey"), msg("assistant", "<eos>x")],
    "multiline_code": [msg("user", "```py\nprint('x')\n```"), msg("assistant", "Done:\n\n```\nx\n```\n")],
    "loss_flags": [msg("user", "u", loss=True), msg("assistant", "a", loss=False)],
    "reasoning_is_ignored": [msg("user", "2+2?"), msg("assistant", "4", reasoning_content="2 and 2 make 4")],
}
# Gemma 3 only: system messages and content parts
GEMMA3_CASES: dict[str, list[dict]] = {
    "system_user": [msg("system", "You are terse."), msg("user", "Hello")],
    "system_kept_verbatim": [msg("system", "\n sys \n"), msg("user", "  padded  "), msg("assistant", " a ")],
    "empty_system": [msg("system", ""), msg("user", "hi"), msg("assistant", "yo")],
    "chinese_system": [msg("system", "你是一个乐于助人的助手。"), msg("user", "你好"), msg("assistant", "你好！")],
    "system_as_parts": [msg("system", [text(" S "), text("second part ignored")]), msg("user", "u")],
    "content_parts_with_images": [
        msg("user", [IMAGE, text(" What is this? "), IMAGE, text("  And this?"), {"type": "audio"}]),
        msg("assistant", [text(" A cat. "), text("A dog. ")]),
    ],
    "system_and_parts": [msg("system", "Describe."), msg("user", [IMAGE, text("this")]), msg("assistant", "a cat")],
    "system_loss": [msg("system", "s", loss=True), msg("user", "u"), msg("assistant", "a")],
}


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", ["gemma", "gemma-3"])
def test_text_matches_the_template(name: str, case: str, add_generation_prompt: bool) -> None:
    cls, path = FORMATS[name]
    messages = CASES[case]
    assert cls().render(messages, add_generation_prompt=add_generation_prompt) == hf_render(
        path, messages, add_generation_prompt=add_generation_prompt
    )


@pytest.mark.parametrize("add_generation_prompt", [False, True], ids=["no_gen", "gen"])
@pytest.mark.parametrize("case", list(GEMMA3_CASES))
def test_gemma3_text_matches_its_template(case: str, add_generation_prompt: bool) -> None:
    messages = GEMMA3_CASES[case]
    ours = Gemma3().render(messages, add_generation_prompt=add_generation_prompt)
    assert ours == hf_render(GEMMA3, messages, add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("path", GEMMA_COPIES, ids=lambda p: p.parent.name + "/" + p.name)
def test_gemma2_and_the_template_copies_are_the_gemma_template(path: Path) -> None:
    need(path)
    need(GEMMA)
    assert _template(path) == _template(GEMMA)
    assert registry.get("gemma-2").spec is GEMMA_SPEC
    assert hf_render(path, CASES["multi_turn"], add_generation_prompt=True) == Gemma().render(CASES["multi_turn"], add_generation_prompt=True)


def test_gemma3_template_copy_is_identical() -> None:
    need(GEMMA3_COPY)
    need(GEMMA3)
    assert _template(GEMMA3_COPY) == _template(GEMMA3)


def test_gemma3_puts_a_tool_list_into_the_system_text() -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "description": "时间", "parameters": {}}}]
    messages = [msg("system", "Be brief."), msg("user", "Time?")]
    dump = json.dumps(tools, ensure_ascii=False)
    expected = hf_render(GEMMA3, [msg("system", "Be brief.\n\n" + dump), msg("user", "Time?")])
    assert Gemma3().render(messages, tools=tools) == expected
    with pytest.raises(ValidationError) as err:
        Gemma().render(messages[1:], tools=tools)
    assert err.value.rule == "tools"


# --- where the template raises ----------------------------------------------------------------------

RAISES = {
    "gemma": {
        "system": ([msg("system", "s"), msg("user", "u")], ("system", 0)),
        "assistant_first": ([msg("assistant", "a"), msg("user", "u")], ("roles", 0)),
        "two_users": ([msg("user", "a"), msg("user", "b")], ("roles", 1)),
        "two_assistants": ([msg("user", "a"), msg("assistant", "b"), msg("assistant", "c")], ("roles", 2)),
    },
    "gemma-3": {
        "assistant_after_system": ([msg("system", "s"), msg("assistant", "a")], ("roles", 1)),
        "two_users": ([msg("system", "s"), msg("user", "a"), msg("user", "b")], ("roles", 2)),
        "system_as_empty_parts": ([msg("system", []), msg("user", "u")], ("content", 0)),
        "system_parts_without_text_first": ([msg("system", [IMAGE, text("s")]), msg("user", "u")], ("content", 0)),
    },
}
RAISE_CASES = [(n, c) for n, cases in RAISES.items() for c in cases]


@pytest.mark.parametrize(("name", "case"), RAISE_CASES)
def test_raises_where_the_template_raises(name: str, case: str) -> None:
    cls, path = FORMATS[name]
    messages, (rule, index) = RAISES[name][case]
    with pytest.raises(Exception):  # noqa: B017 - the template raises TemplateError / UndefinedError
        hf_render(path, messages)
    with pytest.raises(ValidationError) as err:
        cls().render(messages)
    assert (err.value.rule, err.value.index) == (rule, index)


def test_tool_calls_are_rejected() -> None:
    messages = [
        msg("user", "Time?"),
        msg("assistant", "", tool_calls=[{"type": "function", "function": {"name": "get_time", "arguments": {}}}]),
        msg("tool", "12:00"),
    ]
    for cls in (Gemma, Gemma3):
        with pytest.raises(ValidationError) as err:
            cls().render(messages)
        assert (err.value.rule, err.value.index) == ("tool_call", 1)


def test_gemma3_system_with_nothing_after_it_raises() -> None:
    """Deliberate: the template renders just <bos>, dropping the system prompt."""
    messages = [msg("system", "lonely")]
    assert hf_render(GEMMA3, messages) == "<bos>"
    with pytest.raises(ValidationError) as err:
        Gemma3().render(messages)
    assert (err.value.rule, err.value.index) == ("roles", 0)


# --- segments ---------------------------------------------------------------------------------------


def visible_text(content) -> str:
    """The content as the Gemma 3 template writes it: a string stripped, text parts stripped back to back."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    return "".join(p["text"].strip() for p in content if p.get("type") == "text")


SEGMENT_CASES = [("gemma", c, m) for c, m in CASES.items()] + [
    ("gemma-3", c, m) for c, m in {**CASES, **GEMMA3_CASES}.items()
]


@pytest.mark.parametrize(("name", "case", "messages"), SEGMENT_CASES, ids=[f"{n}-{c}" for n, c, _ in SEGMENT_CASES])
def test_segments_split_content_from_control_and_train_the_assistant(name: str, case: str, messages: list[dict]) -> None:
    cls, _ = FORMATS[name]
    rendered = cls().render_segments(messages, add_generation_prompt=True)
    indices = [s.message for s in rendered if s.message is not None]
    assert indices == sorted(indices)
    for i, m in enumerate(messages):
        content = "".join(s.text for s in rendered if s.message == i and s.is_content)
        if m["role"] == "system":
            c = m["content"]
            assert content == (c if isinstance(c, str) else c[0]["text"])
        else:
            assert content == visible_text(m["content"])
        trained = "".join(s.text for s in rendered if s.message == i and s.trained)
        if m.get("loss") is not None:
            assert bool(trained) == m["loss"]
        else:
            assert trained == (visible_text(m["content"]) + "<end_of_turn>" if m["role"] == "assistant" else "")
    unowned = [s for s in rendered if s.message is None]
    assert all(s.is_control and not s.trained for s in unowned)
    assert "".join(s.text for s in unowned) == "<bos><start_of_turn>model\n"


def test_gemma3_system_segments_open_the_first_user_turn() -> None:
    rendered = Gemma3().render_segments(GEMMA3_CASES["system_user"])
    assert [(s.text, s.kind, s.message) for s in rendered] == [
        ("<bos>", "control", None),
        ("<start_of_turn>user\n", "control", 0),
        ("You are terse.", "content", 0),
        ("\n\n", "control", 0),
        ("Hello", "content", 1),
        ("<end_of_turn>\n", "control", 1),
    ]


def test_turn_segments() -> None:
    rendered = Gemma().render_segments(CASES["pair"])
    assert [(s.text, s.kind, s.message, s.trained) for s in rendered] == [
        ("<bos>", "control", None, False),
        ("<start_of_turn>user\n", "control", 0, False),
        ("Hello", "content", 0, False),
        ("<end_of_turn>\n", "control", 0, False),
        ("<start_of_turn>model\n", "control", 1, False),
        ("Hi! How can I help?", "content", 1, True),
        ("<end_of_turn>", "control", 1, True),
        ("\n", "control", 1, False),
    ]


def test_continue_final_message_matches_transformers() -> None:
    messages = [msg("user", "Write a haiku"), msg("assistant", "Autumn moonlight— ")]
    for name in FORMATS:
        cls, path = FORMATS[name]
        ours = cls().render(messages, continue_final_message=True)
        assert ours == hf_render(path, messages, continue_final_message=True)
        assert ours.endswith("<start_of_turn>model\nAutumn moonlight—")


def test_registered_under_its_aliases() -> None:
    for name in ("gemma", "gemma-2", "gemma2", "Gemma-7b-it"):  # a declarative family: its spec is the format
        assert registry.family(name).spec is GEMMA_SPEC and registry.get(name).spec is GEMMA_SPEC
    for name in ("gemma-3", "gemma3"):
        assert type(registry.get(name)) is Gemma3
    assert not Gemma().info.supports_system and Gemma3().info.supports_system
    for cls in (Gemma, Gemma3):
        info = cls().info
        assert info.bos_token == "<bos>" and info.eos_token == "<eos>"
        assert info.end_of_turn == ("<end_of_turn>",) and info.stop == ("<end_of_turn>", "<eos>")
        assert not info.supports_tools and info.reference and info.family == "gemma"


# --- arbitrary conversations ------------------------------------------------------------------------

TRICKY = ["", " ", "\n", "  x  ", "<end_of_turn>", "<start_of_turn>user\n", "你好 ", "\\", "\u2028", "\x0b"]
texts = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30))
parts = st.lists(st.one_of(st.just(IMAGE), st.builds(text, texts)), max_size=3)


@st.composite
def conversations(draw, *, system: bool, content) -> list[dict]:
    messages = []
    if system and draw(st.booleans()):
        messages.append(msg("system", draw(texts)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        messages.append(msg("user", draw(content)))
        if draw(st.booleans()):
            messages.append(msg("assistant", draw(content | st.none())))
        else:
            break
    return messages


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(system=False, content=texts), st.booleans())
def test_gemma_arbitrary_conversations_match_the_template(messages: list[dict], add_generation_prompt: bool) -> None:
    ours = Gemma().render_segments(messages, add_generation_prompt=add_generation_prompt)
    assert ours.text == hf_render(GEMMA, messages, add_generation_prompt=add_generation_prompt)
    for i, m in enumerate(messages):
        assert "".join(s.text for s in ours if s.message == i and s.is_content) == visible_text(m["content"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(system=True, content=texts | parts), st.booleans())
def test_gemma3_arbitrary_conversations_match_the_template(messages: list[dict], add_generation_prompt: bool) -> None:
    ours = Gemma3().render_segments(messages, add_generation_prompt=add_generation_prompt)
    assert ours.text == hf_render(GEMMA3, messages, add_generation_prompt=add_generation_prompt)
    for i, m in enumerate(messages):
        if m["role"] != "system":
            assert "".join(s.text for s in ours if s.message == i and s.is_content) == visible_text(m["content"])
