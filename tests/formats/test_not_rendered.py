"""Tools, documents and template keyword arguments a format leaves out of the prompt are said, never
dropped in silence: a NotRenderedWarning from render/render_segments, and what render_checked,
unrendered and renders report (on the real Llama-2, SmolLM2 and Qwen2.5 templates and every template
in the shared test data)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from chatfmt import load_format
from chatfmt.errors import ChatfmtWarning, NotRenderedWarning
from chatfmt.formats.base import not_rendered_warnings_off
from chatfmt.formats.loader import from_template

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
DOCUMENTS = [{"title": "Paris", "text": "Paris is the capital of France."}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", ChatfmtWarning)
    return ctx


@pytest.fixture(scope="module")
def llama2(testdata):
    return load_format(testdata("llama2"))


@pytest.fixture(scope="module")
def qwen(testdata):
    return load_format(testdata("qwen2.5", "tokenizer_config.json"))


def test_llama2_template_leaves_tools_out_and_says_so(llama2):
    assert llama2.renders("tools") is False
    rendered, missing = llama2.render_checked(ASK, tools=TOOLS, add_generation_prompt=True)
    assert missing == ("tools",)
    assert "get_weather" not in rendered.text
    with pytest.warns(NotRenderedWarning, match=r"does not render tools") as record:
        text = llama2.render(ASK, tools=TOOLS, add_generation_prompt=True)
    assert text == rendered.text
    assert record[0].message.names == ("tools",)
    with pytest.warns(NotRenderedWarning, match=r"does not render tools"):
        llama2.render_segments(ASK, tools=TOOLS)


def test_smollm2_gguf_template_leaves_tools_out_and_says_so(smollm2_gguf):
    fmt = load_format(smollm2_gguf)
    assert fmt.renders("tools") is False
    assert fmt.unrendered(ASK, tools=TOOLS, add_generation_prompt=True) == ("tools",)
    with pytest.warns(NotRenderedWarning, match=r"SmolLM2.*does not render tools"):
        fmt.render(ASK, tools=TOOLS, add_generation_prompt=True)


def test_smollm2_tools_in_a_conversation_object_count_too(smollm2_gguf):
    from chatfmt.messages import as_conversation

    fmt = load_format(smollm2_gguf)
    conv = as_conversation(ASK, TOOLS)
    assert fmt.unrendered(conv) == ("tools",)
    assert fmt.unrendered({"messages": ASK, "tools": TOOLS}) == ("tools",)


def test_qwen_template_renders_tools_without_a_warning(qwen):
    assert qwen.renders("tools") is True
    ctx = no_warnings()
    try:
        rendered, missing = qwen.render_checked(ASK, tools=TOOLS, add_generation_prompt=True)
        qwen.render(ASK, tools=TOOLS, add_generation_prompt=True)
    finally:
        ctx.__exit__(None, None, None)
    assert missing == ()
    assert "get_weather" in rendered.text


def test_no_tools_empty_tools_and_plain_chats_report_nothing(llama2, qwen):
    for fmt in (llama2, qwen):
        assert fmt.unrendered(ASK) == ()
        assert fmt.unrendered(ASK, tools=[]) == ()
        assert fmt.unrendered(ASK, tools=None, documents=None) == ()


def test_documents_a_template_never_reads_are_reported(qwen, testdata):
    assert qwen.renders("documents") is False
    assert qwen.unrendered(ASK, documents=DOCUMENTS, add_generation_prompt=True) == ("documents",)
    with pytest.warns(NotRenderedWarning, match="does not render documents"):
        qwen.render(ASK, documents=DOCUMENTS, add_generation_prompt=True)
    granite = load_format(testdata("templates", "llama.cpp-0c1e570", "ibm-granite-granite-3.3-2B-Instruct.jinja"))
    rendered, missing = granite.render_checked(ASK, documents=DOCUMENTS, add_generation_prompt=True)
    assert missing == ()
    assert "Paris is the capital of France." in rendered.text


def test_template_keywords_the_template_does_not_read_are_reported(qwen, testdata):
    qwen3 = load_format(testdata("templates", "llama.cpp-0c1e570", "Qwen-Qwen3-0.6B.jinja"))
    assert qwen3.unrendered(ASK, add_generation_prompt=True, enable_thinking=False) == ()
    assert qwen3.unrendered(ASK, add_generation_prompt=True, enable_thinkin=False) == ("enable_thinkin",)
    assert qwen.unrendered(ASK, enable_thinking=False) == ("enable_thinking",)
    with pytest.warns(NotRenderedWarning, match="does not read the template keyword argument 'enable_thinking'"):
        qwen.render(ASK, enable_thinking=False)
    # a special token given as a keyword is read when the template reads it
    assert qwen.unrendered(ASK, eos_token="</s>") == ("eos_token",)


def test_builtin_formats_know_their_keywords():
    qwen3 = load_format("qwen3")
    assert qwen3.unrendered(ASK, enable_thinking=False) == ()
    assert load_format("llama-3.1").unrendered(ASK, date_string="26 Jul 2024", tools_in_user_message=False) == ()
    assert load_format("granite-3.3").unrendered(ASK, documents=[{"doc_id": 1, "text": "x"}]) == ()
    assert load_format("qwen2.5").unrendered(ASK, enable_thinking=False, documents=DOCUMENTS) == (
        "enable_thinking",
        "documents",
    )
    with pytest.warns(NotRenderedWarning, match="'chatml' does not read the template keyword argument 'foo'"):
        load_format("chatml").render_segments(ASK, foo=1)


def test_builtins_without_tool_syntax_still_render_tools():
    # a built-in with no tool syntax of its own puts the tool list into the system message
    chatml = load_format("chatml")
    rendered, missing = chatml.render_checked(ASK, tools=TOOLS)
    assert missing == ()
    assert "get_weather" in rendered.text


def test_a_template_that_renders_tools_only_sometimes_is_checked_per_call():
    fmt = from_template(
        "{% if messages[0].role == 'system' and tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
    )
    assert fmt.renders("tools") is None
    assert fmt.unrendered([{"role": "system", "content": "s"}, *ASK], tools=TOOLS) == ()
    assert fmt.unrendered(ASK, tools=TOOLS) == ("tools",)


def test_warnings_off_block_neither_checks_nor_warns(llama2):
    ctx = no_warnings()
    try:
        with not_rendered_warnings_off():
            llama2.render(ASK, tools=TOOLS)
            llama2.render_segments(ASK, tools=TOOLS, foo=1)
            load_format("chatml").render(ASK, foo=1)
    finally:
        ctx.__exit__(None, None, None)


def test_the_tool_use_template_of_a_model_is_the_one_checked(testdata):
    # Hermes-style configs carry a 'tool_use' template; with tools it is the one rendered and checked
    fmt = from_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert fmt.renders("tools") is False
    from chatfmt.formats.jinja import JinjaFormat

    both = JinjaFormat(
        "{% for m in messages %}{{ m.content }}{% endfor %}",
        tool_use_template="{{ tools | tojson }}{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    assert both.renders("tools") is True
    assert both.unrendered(ASK, tools=TOOLS) == ()


CONVERSATIONS = (
    (ASK, True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], False),
)


@pytest.mark.slow
def test_the_per_format_verdict_holds_on_every_shared_template(testdata):
    """renders("tools") False: no conversation's prompt changes with tools; True: every one does."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import discover_templates

    cases = discover_templates(testdata())
    assert len(cases) > 100
    wrong = []
    for case in cases:
        try:
            fmt = from_template(case.source, bos_token="<s>", eos_token="</s>")
            verdict = fmt.renders("tools")
        except Exception:  # a template that does not compile is another test's business
            continue
        if verdict is None:
            continue
        for msgs, agp in CONVERSATIONS:
            try:
                a = fmt._render_text(msgs, TOOLS, agp, False, None, {})[0]
                b = fmt._render_text(msgs, None, agp, False, None, {})[0]
            except Exception:
                continue
            if (a != b) != verdict:
                wrong.append((case.id, verdict, len(msgs)))
    assert not wrong
