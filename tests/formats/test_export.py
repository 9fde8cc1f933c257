"""Export: the Jinja template of a spec renders, under transformers' own renderer, exactly what the
spec renders (corpus, arbitrary contents, arbitrary specs); TOML export round-trips; formats that
cannot be exported say so."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import FormatError, TemplateError, ValidationError
from chatfmt.formats import registry
from chatfmt.formats.builtin.alpaca import Alpaca
from chatfmt.formats.export import export, jinja_str, spec_to_jinja, to_jinja, to_toml
from chatfmt.formats.jinja import JinjaFormat
from chatfmt.formats.spec import (
    BUILTIN_SPECS,
    FormatSpec,
    Roles,
    RoleSpec,
    SpecFormat,
    SystemSpec,
    ToolCallsSpec,
    ToolResultsSpec,
    ToolsSpec,
)
from chatfmt.formats.spec_toml import load_spec, parse_spec

pytest.importorskip("transformers")
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "formats"
CORPUS = json.loads((REPO / "tests" / "data" / "conversations.json").read_text(encoding="utf-8"))
TOOLS = CORPUS["tools"]["weather"]

S, U, A, T = "system", "user", "assistant", "tool"

#: the formats checked everywhere: the built-ins as specs, the examples, and a few that exercise what
#: those do not (merge with a default and tools, own-block tools, eos at the end, grouped results)
EXTRA = {
    "merge-tools": FormatSpec(
        name="merge-tools",
        bos="<s>",
        eos="</s>",
        eos_placement="end",
        round_separator="\n",
        strip=True,
        roles=Roles(user=RoleSpec("[U] ", " [/U]"), assistant=RoleSpec(" ", ""), tool=RoleSpec("[T]", "[/T]")),
        system=SystemSpec(default="Be kind.", placement="merge_first_user", merge_template="<<{system}>> {user}"),
        tools=ToolsSpec(style="lines", preamble="\nTools:\n", separator="\n---\n"),
        tool_calls=ToolCallsSpec(template="CALL {name} WITH {arguments}", prefix="<", suffix=">", separator=""),
        tool_results=ToolResultsSpec(prefix="'", suffix='"'),
    ),
    "own-block": FormatSpec(
        name="own-block",
        separator="\n\n",
        roles=Roles(
            system=RoleSpec("SYSTEM: ", strip=True),
            user=RoleSpec("USER: "),
            assistant=RoleSpec("ASSISTANT: ", "<|end|>"),
        ),
        system=SystemSpec(placement="unsupported"),
        tools=ToolsSpec(placement="own_block", preamble="TOOLS: "),
        tool_calls=ToolCallsSpec(mode="error"),
        tool_results=ToolResultsSpec(style="user_block", prefix="<r>", suffix="</r>", separator="\n"),
    ),
}


def all_specs() -> dict[str, FormatSpec]:
    specs = dict(BUILTIN_SPECS)
    specs.update({p.stem: load_spec(p).spec for p in sorted(EXAMPLES.glob("*.toml"))})
    specs.update(EXTRA)
    return specs


SPECS = all_specs()


def spec_outcome(spec: FormatSpec, messages, **kwargs) -> str | None:
    """The text, or ``None`` if the spec rejects the conversation."""
    try:
        return SpecFormat(spec).render(messages, **kwargs)
    except (ValidationError, ValueError):
        return None


def hf_outcome(template: str, messages, **kwargs) -> str | None:
    """transformers' rendering of ``template``, or ``None`` if it raises."""
    try:
        return render_jinja_template([messages], chat_template=template, **kwargs)[0][0]
    except Exception as e:  # noqa: BLE001 - only a documented refusal counts as one
        if is_refusal(e):
            return None
        raise


def is_refusal(e: BaseException) -> bool:
    """A template's refusal under transformers: its ``raise_exception`` (exactly
    ``jinja2.exceptions.TemplateError``) or transformers' own ``continue_final_message`` check
    (``ValueError``). Anything else (``UndefinedError``, ``TypeError``, a syntax error) is a crash of
    the exported template, which must fail the test, not pass as a refusal."""
    import jinja2

    return type(e) is jinja2.exceptions.TemplateError or type(e) is ValueError


def corpus_cases():
    for case in CORPUS["conversations"]:
        kwargs = {
            "tools": CORPUS["tools"][case["tools"]] if "tools" in case else None,
            "add_generation_prompt": case.get("add_generation_prompt", False),
            "continue_final_message": case.get("continue_final_message", False),
        }
        yield pytest.param(case["messages"], kwargs, id=case["id"])


def same_as_spec(got: str | None, expected: str | None, spec: FormatSpec, messages, kwargs) -> bool:
    """Equal, except for one documented difference of transformers' ``continue_final_message``: it
    appends its cut tag to the content *before* the template strips it, so when the format strips
    the final message, the content's trailing whitespace survives the cut (chatfmt cuts after the
    stripped content)."""
    if got == expected:
        return True
    final = messages[-1]
    if not (kwargs.get("continue_final_message") and spec.strips(final["role"]) and got and expected):
        return False
    text = final["content"] if isinstance(final["content"], str) else ""
    return got == expected + text[len(text.rstrip()) :]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(("messages", "kwargs"), list(corpus_cases()))
def test_exported_jinja_renders_exactly_like_the_spec_under_transformers(name, messages, kwargs):
    spec = SPECS[name]
    expected = spec_outcome(spec, messages, **kwargs)
    assert same_as_spec(hf_outcome(spec_to_jinja(spec), messages, **kwargs), expected, spec, messages, kwargs)
    assert same_as_spec(hf_outcome(spec_to_jinja(spec, generation=True), messages, **kwargs), expected, spec, messages, kwargs)


def test_continue_final_message_keeps_stripped_trailing_whitespace_under_transformers_only():
    spec = load_spec(EXAMPLES / "llama2-text.toml").spec
    messages = [{"role": "user", "content": "Start."}, {"role": "assistant", "content": "Once upon "}]
    assert spec_outcome(spec, messages, continue_final_message=True) == "<s>[INST] Start. [/INST] Once upon"
    assert hf_outcome(spec_to_jinja(spec), messages, continue_final_message=True) == "<s>[INST] Start. [/INST] Once upon "


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(("messages", "kwargs"), list(corpus_cases()))
def test_exported_jinja_renders_like_the_spec_in_chatfmts_own_jinja_engine(name, messages, kwargs):
    spec = SPECS[name]
    fmt = JinjaFormat(spec_to_jinja(spec), strict=True)
    try:
        got = fmt.render(messages, **kwargs)
    except (TemplateError, ValueError):
        got = None
    assert same_as_spec(got, spec_outcome(spec, messages, **kwargs), spec, messages, kwargs)


def test_the_corpus_exercises_each_format_and_the_format_rules_raise_in_the_template():
    """Guard against a vacuous equivalence: most pairs render, and the exported template refuses
    what the spec refuses."""
    rendered = sum(
        spec_outcome(spec, p.values[0], **p.values[1]) is not None for spec in SPECS.values() for p in corpus_cases()
    )
    assert rendered > 0.7 * len(SPECS) * len(list(corpus_cases()))
    with pytest.raises(Exception, match="alternating"):
        render_jinja_template([[{"role": "user", "content": "a"}] * 2], chat_template=spec_to_jinja(BUILTIN_SPECS["alpaca"]))
    with pytest.raises(Exception, match="has no system prompt"):
        render_jinja_template([[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]], chat_template=spec_to_jinja(EXTRA["own-block"]))


_text = st.text(st.characters(codec="utf-8"), max_size=30)
_args = st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers() | st.booleans(), max_size=2)


@st.composite
def conversations(draw):
    """[system] then rounds of user / assistant (some with tool calls and results), arbitrary text;
    contents as strings, text parts or null; sometimes a tool list and a generation prompt."""

    def content():
        kind = draw(st.sampled_from(["str", "str", "str", "parts", "none"]))
        if kind == "parts":
            return [{"type": "text", "text": t} for t in draw(st.lists(_text, min_size=1, max_size=2))]
        return None if kind == "none" else draw(_text)

    msgs = []
    if draw(st.booleans()):
        msgs.append({"role": S, "content": content()})
    for _ in range(draw(st.integers(1, 3))):
        msgs.append({"role": U, "content": content()})
        if draw(st.booleans()):
            calls = [
                {"type": "function", "function": {"name": draw(st.text(min_size=1, max_size=8)), "arguments": draw(_args)}}
                for _ in range(draw(st.integers(1, 2)))
            ]
            msgs.append({"role": A, "content": content(), "tool_calls": calls})
            msgs += [{"role": T, "content": content()} for _ in calls]
        msgs.append({"role": A, "content": content()})
    if draw(st.booleans()):
        msgs.pop()
    tools = [{"type": "function", "function": {"name": draw(_text), "description": draw(_text)}}]
    return msgs, {"add_generation_prompt": draw(st.booleans()), "tools": tools if draw(st.booleans()) else None}


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conversations())
def test_exported_jinja_equals_the_spec_for_arbitrary_message_contents(name, case):
    messages, kwargs = case
    spec = SPECS[name]
    assert hf_outcome(spec_to_jinja(spec), messages, **kwargs) == spec_outcome(spec, messages, **kwargs)


_tricky = st.text(st.characters(codec="utf-8"), max_size=6) | st.text(st.sampled_from("a'\"\\\n\t{}%#<|> "), max_size=8)


@st.composite
def specs(draw):
    role = st.builds(RoleSpec, _tricky, _tricky, st.sampled_from([None, True, False]))
    eos = draw(_tricky)
    return FormatSpec(
        name=draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        bos=draw(_tricky),
        eos=eos,
        eos_placement=draw(st.sampled_from(["assistant", "end", "none"])),
        separator=draw(_tricky),
        round_separator=draw(st.none() | _tricky),
        generation_prompt=draw(st.none() | _tricky),
        strip=draw(st.booleans()),
        alternating=draw(st.sampled_from([False, False, False, True])),
        end_of_turn=draw(st.none() | st.lists(_tricky.filter(bool), max_size=2).map(tuple)),
        roles=Roles(draw(role), draw(role), draw(role), draw(st.none() | role)),
        system=SystemSpec(
            default=draw(_tricky),
            placement=draw(st.sampled_from(["own_block", "merge_first_user"])),
            merge_template=draw(
                st.sampled_from(["{system}{user}", "{user}{system}"]).map(
                    lambda t: t.replace("{system}", draw(_tricky) + "{system}" + draw(_tricky))
                )
            ),
        ),
        tools=draw(
            st.none()
            | st.builds(ToolsSpec, st.sampled_from(["json", "lines"]), _tricky, _tricky, _tricky, st.sampled_from(["system", "own_block"]))
        ),
        tool_calls=draw(
            st.sampled_from([None, ToolCallsSpec(mode="drop")])
            | st.builds(
                ToolCallsSpec,
                st.sampled_from(["wrap", "drop", "error"]),
                st.tuples(_tricky, _tricky, _tricky).map(lambda t: f"{t[0]}{{name}}{t[1]}{{arguments}}{t[2]}"),
                _tricky,
                _tricky,
                _tricky,
            )
        ),
        tool_results=draw(st.builds(ToolResultsSpec, st.sampled_from(["role", "user_block"]), _tricky, _tricky, _tricky)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), case=conversations())
def test_exported_jinja_equals_the_spec_for_arbitrary_specs(spec, case):
    messages, kwargs = case
    assert hf_outcome(spec_to_jinja(spec), messages, **kwargs) == spec_outcome(spec, messages, **kwargs)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec="utf-8")))
def test_jinja_string_literals_give_back_any_text(text):
    assert hf_outcome("{{- " + jinja_str(text) + " -}}", [{"role": "user", "content": ""}]) == text


# -- generation blocks --------------------------------------------------------------------------------


def trained_spans(spec: FormatSpec, messages, **kwargs) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for start, end, seg in SpecFormat(spec).render_segments(messages, **kwargs).char_spans():
        if seg.trained and end > start:
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def merged(spans) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(("messages", "kwargs"), [p for p in corpus_cases() if not p.values[1]["continue_final_message"]])
def test_generation_blocks_mark_exactly_the_trained_assistant_text(name, messages, kwargs):
    spec = SPECS[name]
    template = spec_to_jinja(spec, generation=True)
    if spec_outcome(spec, messages, **kwargs) is None:  # the format rejects it; so does the template
        assert hf_outcome(template, messages, **kwargs) is None
        return
    _, indices = render_jinja_template(
        [messages], chat_template=template, return_assistant_tokens_mask=True, **kwargs
    )
    assert merged(indices[0]) == trained_spans(spec, messages, **kwargs)


def test_generation_blocks_are_optional():
    assert "{%- generation" not in spec_to_jinja(BUILTIN_SPECS["chatml"])
    assert "{%- generation -%}" in spec_to_jinja(BUILTIN_SPECS["chatml"], generation=True)


# -- to_jinja / to_toml on formats ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_SPECS))
def test_to_jinja_of_a_builtin_renders_like_the_builtin(name):
    fmt = registry.get(name)
    template = to_jinja(fmt)
    messages = [{"role": "system", "content": " s "}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    if not fmt.info.supports_system:  # gemma: a system message or a tool list is an error (tested below)
        messages = messages[1:]
    tools = TOOLS if BUILTIN_SPECS[name].tools_error is None else None
    assert hf_outcome(template, messages, tools=tools) == fmt.render(messages, tools=tools)


def test_a_format_without_system_prompt_or_tool_syntax_refuses_both_with_its_messages():
    """[system] placement = "unsupported" with an `error`: the spec, its TOML round trip and its
    exported template refuse a system message with that message, and a tool list (nowhere to put it)."""
    spec = BUILTIN_SPECS["gemma"]
    fmts = [registry.get("gemma"), SpecFormat(spec), parse_spec(to_toml(registry.get("gemma")))]
    system = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    for fmt in fmts:
        with pytest.raises(ValidationError, match=r"gemma does not support a system message \(the template raises: 'System role not supported'\)"):
            fmt.render(system)
        with pytest.raises(ValidationError, match="gemma has no tool syntax and no system role to put a tool list in"):
            fmt.render([{"role": "user", "content": "q"}], tools=TOOLS)
    template = spec_to_jinja(spec)
    with pytest.raises(Exception, match="System role not supported"):
        render_jinja_template([system], chat_template=template)
    with pytest.raises(Exception, match="no system role to put a tool list in"):
        render_jinja_template([[{"role": "user", "content": "q"}]], chat_template=template, tools=TOOLS)


@pytest.mark.parametrize("name", sorted(BUILTIN_SPECS))
@pytest.mark.parametrize(("messages", "kwargs"), list(corpus_cases()))
def test_to_jinja_of_a_builtin_renders_like_the_native_builtin_over_the_corpus(name, messages, kwargs):
    fmt = registry.get(name)
    try:
        expected = fmt.render(messages, **kwargs)
    except (ValidationError, ValueError):
        expected = None
    spec = BUILTIN_SPECS[name]
    assert same_as_spec(hf_outcome(to_jinja(fmt), messages, **kwargs), expected, spec, messages, kwargs)


def test_a_tool_call_error_message_reaches_the_exported_template():
    template = to_jinja(registry.get("zephyr"))
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]
    with pytest.raises(Exception, match=r"zephyr has no tool-call syntax \(its template would drop the calls\)"):
        render_jinja_template([messages], chat_template=template)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_to_toml_round_trips_to_a_format_that_renders_identically(name, tmp_path):
    fmt = SpecFormat(SPECS[name]) if name not in BUILTIN_SPECS else registry.get(name)
    path = tmp_path / "exported.toml"
    path.write_text(to_toml(fmt), encoding="utf-8")
    back = load_spec(path)
    assert back.spec == SPECS[name]
    for p in corpus_cases():
        messages, kwargs = p.values
        try:
            expected = fmt.render_segments(messages, **kwargs).segments
        except (ValidationError, ValueError):
            expected = None
        try:
            got = back.render_segments(messages, **kwargs).segments
        except (ValidationError, ValueError):
            got = None
        assert got == expected


def test_to_jinja_of_a_jinja_format_is_its_own_template():
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert to_jinja(chatfmt.from_template(template)) == template


def test_formats_without_a_spec_cannot_be_exported():
    with pytest.raises(FormatError, match="'llama-2' has no declarative spec"):
        to_toml(registry.get("llama-2"))
    with pytest.raises(FormatError, match="cannot be turned into a TOML spec"):
        to_toml(chatfmt.from_template("{{ messages }}"))
    # a customised built-in declared as a spec exports its own spec, not the registered default's
    custom = Alpaca(default_system=None)
    assert parse_spec(to_toml(custom)).spec == replace(custom.spec)
    messages = [{"role": "user", "content": "q"}]
    assert render_jinja_template([messages], chat_template=to_jinja(custom), bos_token="<s>")[0][0] == custom.render(messages)
    with pytest.raises(ValueError, match="unknown export target"):
        export(registry.get("chatml"), "yaml")


def test_exported_toml_starts_with_a_comment_and_parses():
    text = to_toml(registry.get("qwen2.5"))
    assert text.startswith("# chat format 'qwen2.5', exported by chatfmt")
    assert parse_spec(text).spec == BUILTIN_SPECS["qwen2.5"]


def test_a_derived_spec_exports_its_merged_form():
    spec = load_spec(EXAMPLES / "chatml-assistant.toml").spec
    text = to_toml(SpecFormat(spec))
    assert "extends" not in text and 'default = "You are a helpful assistant."' in text
    assert parse_spec(text).spec == replace(spec)
