"""Declarative formats: the spec's rendering rules, the built-ins it expresses (pinned to render
exactly like the native ones, segments included), TOML loading with ``extends``, and errors that name
the file, the line and the key path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.errors import FormatError, SpecError, ValidationError
from chatfmt.formats import registry
from chatfmt.formats.builtin.alpaca import Alpaca
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
    spec_of,
)
from chatfmt.formats.spec_toml import key_lines, load_spec, parse_spec, spec_to_dict, spec_to_toml
from chatfmt.segments import CONTENT, CONTROL

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "formats"
CORPUS = json.loads((REPO / "tests" / "data" / "conversations.json").read_text(encoding="utf-8"))
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]

S, U, A, T = "system", "user", "assistant", "tool"


def msg(role, content, **kw):
    return {"role": role, "content": content, **kw}


def call(name="get_weather", **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def tags(**changes) -> FormatSpec:
    """A small tag format to vary one key at a time."""
    base = FormatSpec(
        name="tags",
        roles=Roles(
            system=RoleSpec("<s>", "</s>"),
            user=RoleSpec("<u>", "</u>"),
            assistant=RoleSpec("<a>", "</a>"),
            tool=RoleSpec("<t>", "</t>"),
        ),
    )
    return replace(base, **changes)


def render(spec: FormatSpec, messages, **kw) -> str:
    return SpecFormat(spec).render(messages, **kw)


def segs(spec: FormatSpec, messages, **kw):
    return [(s.text, s.kind, s.message, s.trained) for s in SpecFormat(spec).render_segments(messages, **kw)]


def corpus_cases():
    for case in CORPUS["conversations"]:
        kwargs = {
            "tools": CORPUS["tools"][case["tools"]] if "tools" in case else None,
            "add_generation_prompt": case.get("add_generation_prompt", False),
            "continue_final_message": case.get("continue_final_message", False),
        }
        yield pytest.param(case["messages"], kwargs, id=case["id"])


def outcome(fmt, messages, **kwargs):
    """The segments, or the error (type and text) when rendering raises."""
    try:
        return fmt.render_segments(messages, **kwargs).segments
    except (ValidationError, ValueError) as e:
        return (type(e).__name__, str(e))


# -- built-ins as specs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_SPECS))
@pytest.mark.parametrize(("messages", "kwargs"), list(corpus_cases()))
def test_builtin_spec_renders_the_same_segments_as_the_native_builtin(name, messages, kwargs):
    assert outcome(SpecFormat(BUILTIN_SPECS[name]), messages, **kwargs) == outcome(registry.get(name), messages, **kwargs)


_text = st.text(st.characters(codec="utf-8"), max_size=20)


@st.composite
def conversations(draw):
    """[system] user assistant ... with arbitrary contents and loss flags; sometimes tools, tool calls
    and tool results (which formats without tool syntax reject, natively and as specs alike)."""
    msgs = []
    if draw(st.booleans()):
        msgs.append(msg(S, draw(_text)))
    for k in range(draw(st.integers(1, 4))):
        msgs.append(msg(U, draw(_text)))
        if k % 2 and draw(st.booleans()):
            msgs.append(msg(A, draw(_text), tool_calls=[call(q=draw(_text))]))
            msgs += [msg(T, draw(_text)) for _ in range(draw(st.integers(1, 2)))]
        loss = draw(st.sampled_from([None, True, False]))
        msgs.append(msg(A, draw(_text), **({"loss": loss} if loss is not None else {})))
    if draw(st.booleans()):
        msgs.pop()
    kwargs = {"add_generation_prompt": draw(st.booleans()), "tools": TOOLS if draw(st.booleans()) else None}
    return msgs, kwargs


@pytest.mark.parametrize("name", sorted(BUILTIN_SPECS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conversations())
def test_builtin_spec_matches_native_for_arbitrary_contents(name, case):
    messages, kwargs = case
    assert outcome(SpecFormat(BUILTIN_SPECS[name]), messages, **kwargs) == outcome(registry.get(name), messages, **kwargs)


EXPORTABLE = ["alpaca", "chatml", "gemma", "internlm2", "llama-3", "openchat", "phi-4", "qwen2.5", "smollm2", "zephyr"]


def test_the_builtins_with_a_spec_are_exactly_these_and_each_is_its_builtins_spec():
    assert sorted(BUILTIN_SPECS) == EXPORTABLE
    for name in EXPORTABLE:
        assert spec_of(registry.get(name)) is BUILTIN_SPECS[name]


@pytest.mark.parametrize("name", ["phi-3", "phi-3.5", "gemma-3", "vicuna", "yi", "hermes-2-pro", "granite-4.0", "falcon3", "minicpm5"])
def test_builtins_the_spec_language_cannot_express_have_no_spec(name):
    with pytest.raises(FormatError, match="has no declarative spec"):
        spec_of(registry.get(name))


def test_a_tool_call_error_names_the_format_and_can_say_why():
    messages = [msg(U, "q"), msg(A, "", tool_calls=[call()])]
    with pytest.raises(ValidationError, match=r"^message 1: tags has no tool-call syntax$"):
        render(tags(), messages)
    spec = tags(tool_calls=ToolCallsSpec(mode="error", error="{name} cannot call tools ({name})"))
    with pytest.raises(ValidationError, match=r"^message 1: tags cannot call tools \(tags\)$") as e:
        render(spec, messages)
    assert e.value.rule == "tool_call"
    assert render(spec, [msg(U, "q")]) == render(tags(), [msg(U, "q")])  # otherwise as without the table
    # the native built-ins' own wording, kept by their specs
    with pytest.raises(ValidationError) as native:
        registry.get("llama-3").render(messages)
    with pytest.raises(ValidationError) as spec_error:
        SpecFormat(BUILTIN_SPECS["llama-3"]).render(messages)
    assert str(spec_error.value) == str(native.value) and "would drop the tool calls" in str(native.value)


def test_spec_of_gives_the_spec_of_a_builtin_and_of_a_spec_format():
    assert spec_of(chatfmt.load_format("qwen")) is BUILTIN_SPECS["qwen2.5"]
    fmt = SpecFormat(tags())
    assert spec_of(fmt) is fmt.spec


def test_spec_of_refuses_builtins_without_spec_and_gives_customised_instances_their_own():
    with pytest.raises(FormatError, match="'llama-2' has no declarative spec"):
        spec_of(chatfmt.load_format("llama-2"))
    # a customised built-in declared as a spec has a spec of its own (not the registered default's)
    custom = Alpaca(default_system=None)
    assert spec_of(custom) is custom.spec and custom.spec != BUILTIN_SPECS["alpaca"]
    messages = [msg(U, "q"), msg(A, "a")]
    assert SpecFormat(spec_of(custom)).render(messages) == custom.render(messages) != registry.get("alpaca").render(messages)
    with pytest.raises(FormatError, match="Jinja chat template"):
        spec_of(chatfmt.from_template("{{ messages[0].content }}", name="chatml"))


def test_spec_format_info_reflects_the_spec():
    info = SpecFormat(BUILTIN_SPECS["alpaca"]).info
    assert (info.bos_token, info.eos_token, info.end_of_turn) == ("<s>", "</s>", ("</s>",))
    assert info.family == "spec" and not info.supports_tools
    assert SpecFormat(BUILTIN_SPECS["qwen2.5"]).info.supports_tools


# -- rendering rules --------------------------------------------------------------------------------


def test_roles_wrap_their_content_and_the_generation_prompt_defaults_to_the_assistant_prefix():
    out = render(tags(), [msg(S, "s"), msg(U, "q"), msg(A, "a"), msg(U, "r")], add_generation_prompt=True)
    assert out == "<s>s</s><u>q</u><a>a</a><u>r</u><a>"
    assert render(tags(generation_prompt="GO"), [msg(U, "q")], add_generation_prompt=True) == "<u>q</u>GO"


def test_bos_is_written_once_at_the_start():
    assert render(tags(bos="[B]"), [msg(U, "q"), msg(A, "a"), msg(U, "r")]) == "[B]<u>q</u><a>a</a><u>r</u>"


def test_eos_after_each_assistant_content_before_its_suffix():
    spec = tags(eos="[E]", eos_placement="assistant")
    assert render(spec, [msg(U, "q"), msg(A, "a"), msg(U, "r"), msg(A, "b")]) == "<u>q</u><a>a[E]</a><u>r</u><a>b[E]</a>"


def test_eos_at_the_end_only_after_a_final_assistant_message():
    spec = tags(eos="[E]", eos_placement="end")
    assert render(spec, [msg(U, "q"), msg(A, "a"), msg(U, "r"), msg(A, "b")]) == "<u>q</u><a>a</a><u>r</u><a>b</a>[E]"
    assert render(spec, [msg(U, "q"), msg(A, "a"), msg(U, "r")]) == "<u>q</u><a>a</a><u>r</u>"
    # the final EOS is trained with the final answer
    assert segs(spec, [msg(U, "q"), msg(A, "b")])[-1] == ("</a>[E]", CONTROL, 1, True)


def test_eos_placement_none_declares_the_token_without_writing_it():
    spec = tags(eos="</a>", eos_placement="none")
    assert render(spec, [msg(U, "q"), msg(A, "a")]) == "<u>q</u><a>a</a>"
    assert SpecFormat(spec).info.eos_token == "</a>"


def test_separator_between_blocks_and_round_separator_before_a_new_round():
    spec = tags(separator=" | ", round_separator=" || ")
    out = render(spec, [msg(S, "s"), msg(U, "q"), msg(A, "a"), msg(U, "r")], add_generation_prompt=True)
    assert out == "<s>s</s> | <u>q</u> | <a>a</a> || <u>r</u> | <a>"
    assert render(tags(separator="\n"), [msg(U, "q"), msg(A, "a")]) == "<u>q</u>\n<a>a</a>"


def test_strip_applies_per_role_with_the_top_level_default():
    roles = replace(tags().roles, system=RoleSpec("<s>", "</s>", strip=False))
    spec = tags(strip=True, roles=roles)
    assert render(spec, [msg(S, " s "), msg(U, " q\n"), msg(A, "\ta ")]) == "<s> s </s><u>q</u><a>a</a>"


def test_default_system_prompt_only_when_the_conversation_has_none():
    spec = tags(system=SystemSpec(default="be nice"))
    assert render(spec, [msg(U, "q")]) == "<s>be nice</s><u>q</u>"
    assert render(spec, [msg(S, ""), msg(U, "q")]) == "<s></s><u>q</u>"
    # the default belongs to no message and is never trained
    assert segs(spec, [msg(U, "q")])[0] == ("<s>be nice</s>", CONTROL, None, False)


def test_system_merged_into_the_first_user_message():
    spec = tags(system=SystemSpec(placement="merge_first_user", merge_template="[{system}]\n{user}"))
    assert render(spec, [msg(S, "s"), msg(U, "q"), msg(A, "a"), msg(U, "r")]) == "<u>[s]\nq</u><a>a</a><u>r</u>"
    assert render(spec, [msg(U, "q")]) == "<u>q</u>"
    assert segs(spec, [msg(S, "s"), msg(U, "q")]) == [
        ("<u>", CONTROL, 1, False),
        ("[", CONTROL, 0, False),
        ("s", CONTENT, 0, False),
        ("]\n", CONTROL, 0, False),
        ("q", CONTENT, 1, False),
        ("</u>", CONTROL, 1, False),
    ]
    with_default = replace(spec, system=replace(spec.system, default="d"))
    assert render(with_default, [msg(U, "q")]) == "<u>[d]\nq</u>"


def test_merged_system_needs_a_user_message_to_merge_into():
    spec = tags(system=SystemSpec(placement="merge_first_user"))
    with pytest.raises(ValidationError, match="merges the system prompt into the first user message"):
        render(spec, [msg(S, "s"), msg(A, "a")])


def test_unsupported_system_prompt_is_a_validation_error():
    spec = tags(system=SystemSpec(placement="unsupported"))
    with pytest.raises(ValidationError, match="has no system prompt") as e:
        render(spec, [msg(S, "s"), msg(U, "q")])
    assert e.value.index == 0 and e.value.rule == "system"
    assert render(spec, [msg(U, "q")]) == "<u>q</u>"


def test_alternating_formats_reject_other_orders():
    spec = tags(alternating=True)
    with pytest.raises(ValidationError, match="alternating") as e:
        render(spec, [msg(U, "q"), msg(U, "r")])
    assert e.value.index == 1


def test_without_tools_table_the_tool_list_goes_into_the_system_message_as_json():
    dump = json.dumps(TOOLS, ensure_ascii=False)
    assert render(tags(), [msg(U, "q")], tools=TOOLS) == f"<s>{dump}</s><u>q</u>"
    assert render(tags(), [msg(S, "s"), msg(U, "q")], tools=TOOLS) == f"<s>s\n\n{dump}</s><u>q</u>"


def test_tool_list_as_lines_with_preamble_in_the_system_turn():
    tools = TOOLS * 2
    spec = tags(tools=ToolsSpec(style="lines", preamble="\nTOOLS:\n", postamble="\nEND"))
    line = json.dumps(TOOLS[0], ensure_ascii=False)
    assert render(spec, [msg(S, "s"), msg(U, "q")], tools=tools) == f"<s>s\nTOOLS:\n{line}\n{line}\nEND</s><u>q</u>"
    assert render(spec, [msg(U, "q")], tools=tools) == f"<s>\nTOOLS:\n{line}\n{line}\nEND</s><u>q</u>"
    assert render(spec, [msg(U, "q")]) == "<u>q</u>"


def test_tool_list_in_its_own_block_after_the_system_turn():
    spec = tags(tools=ToolsSpec(placement="own_block", preamble="<tools>", postamble="</tools>"), separator="\n")
    dump = json.dumps(TOOLS, ensure_ascii=False)
    assert render(spec, [msg(S, "s"), msg(U, "q")], tools=TOOLS) == f"<s>s</s>\n<tools>{dump}</tools>\n<u>q</u>"


def test_tool_calls_are_wrapped_and_trained_with_the_assistant_message():
    spec = tags(tool_calls=ToolCallsSpec(prefix="<call>", suffix="</call>", separator="|"))
    messages = [msg(U, "q"), msg(A, "let me see", tool_calls=[call(city="Paris"), call("f")]), msg(T, "r")]
    body = '<call>{"name": "get_weather", "arguments": {"city": "Paris"}}</call>|<call>{"name": "f", "arguments": {}}</call>'
    assert render(spec, messages) == f"<u>q</u><a>let me see|{body}</a><t>r</t>"
    # no separator before the first call when there is no content
    messages[1]["content"] = None
    assert render(spec, messages) == f"<u>q</u><a>{body}</a><t>r</t>"
    assert ("<a>", CONTROL, 1, False) in segs(spec, messages)
    assert (body + "</a>", CONTROL, 1, True) in segs(spec, messages)


def test_tool_call_template_fills_name_and_arguments():
    spec = tags(tool_calls=ToolCallsSpec(template="{name}({arguments})"))
    assert render(spec, [msg(U, "q"), msg(A, "", tool_calls=[call(x=1)])]) == '<u>q</u><a>get_weather({"x": 1})</a>'


def test_tool_calls_dropped_or_rejected_by_mode():
    messages = [msg(U, "q"), msg(A, "a", tool_calls=[call()])]
    assert render(tags(tool_calls=ToolCallsSpec(mode="drop")), messages) == "<u>q</u><a>a</a>"
    for spec in (tags(), tags(tool_calls=ToolCallsSpec(mode="error"))):
        with pytest.raises(ValidationError, match="no tool-call syntax"):
            render(spec, messages)


def test_tool_results_as_turns_of_their_own_with_wrappers():
    spec = tags(tool_calls=ToolCallsSpec(), tool_results=ToolResultsSpec(prefix="[", suffix="]"))
    out = render(spec, [msg(U, "q"), msg(A, "", tool_calls=[call(), call()]), msg(T, "1"), msg(T, "2")])
    assert out.endswith("<t>[1]</t><t>[2]</t>")


def test_tool_results_grouped_in_one_user_turn():
    spec = tags(
        tool_calls=ToolCallsSpec(),
        tool_results=ToolResultsSpec(style="user_block", prefix="<r>", suffix="</r>", separator=","),
        roles=replace(tags().roles, tool=None),
    )
    messages = [msg(U, "q"), msg(A, "", tool_calls=[call(), call()]), msg(T, "1"), msg(T, "2"), msg(A, "ok")]
    assert render(spec, messages).endswith("<u><r>1</r>,<r>2</r></u><a>ok</a>")


def test_tool_messages_need_tool_result_syntax():
    spec = tags(tool_calls=ToolCallsSpec(), roles=replace(tags().roles, tool=None))
    with pytest.raises(ValidationError, match="no tool-result syntax"):
        render(spec, [msg(U, "q"), msg(A, "", tool_calls=[call()]), msg(T, "r")])


def test_segments_content_vs_control_and_training_through_the_end_of_turn():
    spec = tags(roles=replace(tags().roles, assistant=RoleSpec("<a>", "<end>\n")), end_of_turn=("<end>",))
    assert segs(spec, [msg(U, "q"), msg(A, "a"), msg(U, "r", loss=True)]) == [
        ("<u>", CONTROL, 0, False),
        ("q", CONTENT, 0, False),
        ("</u>", CONTROL, 0, False),
        ("<a>", CONTROL, 1, False),
        ("a", CONTENT, 1, True),
        ("<end>", CONTROL, 1, True),
        ("\n", CONTROL, 1, False),
        ("<u>", CONTROL, 2, False),
        ("r", CONTENT, 2, True),
        ("</u>", CONTROL, 2, True),  # no end_of_turn in it: the whole closing text
    ]


def test_end_of_turn_defaults_to_eos_or_the_stripped_assistant_suffix():
    assert tags(eos="</s>").turn_ends == ("</s>",)
    assert tags(roles=replace(tags().roles, assistant=RoleSpec("", " <|end|>\n"))).turn_ends == ("<|end|>",)
    assert tags(eos="</s>").stop_strings == ("</s>",)
    assert tags().stop_strings == ("</a>",)


def test_continue_final_message_leaves_the_last_message_open():
    out = SpecFormat(tags(eos="[E]")).render([msg(U, "q"), msg(A, "half")], continue_final_message=True)
    assert out == "<u>q</u><a>half"


def test_a_spec_breaking_a_rule_across_keys_cannot_make_a_format():
    with pytest.raises(FormatError, match="system.default"):
        SpecFormat(tags(system=SystemSpec(default="x", placement="unsupported")))


# -- TOML ---------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_format_loads_and_renders(path):
    fmt = chatfmt.load_format(path)
    assert isinstance(fmt, SpecFormat)
    messages = [msg(S, "You are brief."), msg(U, "Hi"), msg(A, "Hello."), msg(U, "Bye")]
    text = fmt.render(messages, add_generation_prompt=True)
    assert "You are brief." in text and "Hello." in text and text.count("Bye") == 1


def test_example_chatml_assistant_is_chatml_with_a_default_system_prompt():
    fmt = load_spec(EXAMPLES / "chatml-assistant.toml")
    chatml = registry.get("chatml")
    assert fmt.name == "chatml-assistant"
    assert fmt.render([msg(U, "q")]) == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + chatml.render([msg(U, "q")])
    assert fmt.render([msg(S, "s"), msg(U, "q")]) == chatml.render([msg(S, "s"), msg(U, "q")])


def test_example_headings_renders_headings_with_bos_eos_and_blank_lines():
    fmt = load_spec(EXAMPLES / "headings.toml")
    out = fmt.render([msg(U, " Hi "), msg(A, "Hello.")], add_generation_prompt=True)
    assert out == (
        "<s>### System:\nBelow is a conversation between a user and a helpful assistant.\n\n"
        "### User:\nHi\n\n### Assistant:\nHello.</s>\n\n### Assistant:\n"
    )


def test_example_derived_from_another_toml_file_merges_it():
    fmt = load_spec(EXAMPLES / "headings-short.toml")
    assert fmt.render([msg(U, "Hi")], add_generation_prompt=True) == "<s>### User:\nHi\n\n### Assistant:"
    assert fmt.info.stop == ("</s>", "### User:")  # inherited
    assert fmt.info.description != load_spec(EXAMPLES / "headings.toml").info.description  # not inherited


def test_example_llama2_text_matches_the_builtin_text_for_clean_contents():
    fmt = load_spec(EXAMPLES / "llama2-text.toml")
    llama2 = registry.get("llama-2")
    for messages in ([msg(S, "s"), msg(U, "q"), msg(A, "a"), msg(U, "r")], [msg(U, "q"), msg(A, "a")]):
        assert fmt.render(messages) == llama2.render(messages)


def test_example_zephyr_tools_wraps_calls_and_results():
    fmt = load_spec(EXAMPLES / "zephyr-tools.toml")
    out = fmt.render([msg(U, "Weather?"), msg(A, None, tool_calls=[call(city="Oslo")]), msg(T, "-3 C")], tools=TOOLS)
    assert out.startswith("<|system|>\n\n\nYou can call these functions:\n<tools>\n{")
    assert '<|assistant|>\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call></s>\n' in out
    assert out.endswith("<|tool|>\n<tool_response>-3 C</tool_response></s>\n")


def test_load_format_accepts_a_toml_file_and_the_cli_renders_it(tmp_path):
    from typer.testing import CliRunner

    from chatfmt.cli import app

    path = write(tmp_path, "mine.toml", '[roles.user]\nprefix = "U: "\nsuffix = "\\n"\n[roles.assistant]\nprefix = "A: "\n')
    fmt = chatfmt.load_format(str(path))
    assert fmt.name == "mine"
    conv = write(tmp_path, "conv.json", json.dumps([msg(U, "hi")]))
    res = CliRunner().invoke(app, ["render", str(conv), "--format", str(path), "-g"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "U: hi\nA: "


def test_extends_a_builtin_by_name_or_alias(tmp_path):
    path = write(tmp_path, "q.toml", 'extends = "qwen"\n[system]\ndefault = "Hi."\n')
    fmt = load_spec(path)
    assert fmt.render([msg(U, "q")]) == "<|im_start|>system\nHi.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
    assert fmt.spec.tools == BUILTIN_SPECS["qwen2.5"].tools


def test_extends_deep_merges_tables_key_by_key(tmp_path):
    write(tmp_path, "base.toml", '[roles.user]\nprefix = "U"\nsuffix = "u"\n[roles.assistant]\nprefix = "A"\n')
    (tmp_path / "sub").mkdir()
    child = write(tmp_path, "sub/child.toml", 'extends = "../base.toml"\n[roles.user]\nsuffix = "!"\n')
    fmt = load_spec(child)
    assert fmt.spec.roles.user == RoleSpec("U", "!") and fmt.spec.roles.assistant.prefix == "A"
    assert fmt.name == "child"


def test_spec_round_trips_through_toml_for_every_builtin_and_example(tmp_path):
    specs = [*BUILTIN_SPECS.values(), *(load_spec(p).spec for p in EXAMPLES.glob("*.toml"))]
    for spec in specs:
        text = spec_to_toml(spec, header="a header\nof two lines")
        assert parse_spec(text).spec == spec, text


_tricky = st.text(st.characters(codec="utf-8"), max_size=12) | st.text(st.sampled_from('a"\'\\\n\r\t{}#=[] '), max_size=60)


@st.composite
def specs(draw):
    role = st.builds(RoleSpec, _tricky, _tricky, st.sampled_from([None, True, False]))
    return FormatSpec(
        name=draw(st.text(min_size=1, max_size=10).filter(str.strip)),
        description=draw(_tricky),
        bos=draw(_tricky),
        eos=draw(_tricky),
        eos_placement=draw(st.sampled_from(["assistant", "end", "none"])),
        separator=draw(_tricky),
        round_separator=draw(st.none() | _tricky),
        generation_prompt=draw(st.none() | _tricky),
        strip=draw(st.booleans()),
        end_of_turn=draw(st.none() | st.lists(_tricky.filter(bool), max_size=3).map(tuple)),
        roles=Roles(draw(role), draw(role), draw(role), draw(st.none() | role)),
        system=SystemSpec(default=draw(_tricky), merge_template=draw(_tricky) + "{system}" + draw(_tricky) + "{user}"),
        tools=draw(st.none() | st.builds(ToolsSpec, st.sampled_from(["json", "lines"]), _tricky, _tricky, _tricky)),
        tool_calls=draw(st.none() | st.builds(ToolCallsSpec, st.sampled_from(["wrap", "drop", "error"]), _tricky)),
    )


@settings(max_examples=200, deadline=None)
@given(spec=specs())
def test_any_spec_round_trips_through_toml(spec):
    assert parse_spec(spec_to_toml(spec)).spec == spec


def test_spec_to_dict_writes_only_what_differs_from_the_defaults():
    assert spec_to_dict(FormatSpec(name="x")) == {"name": "x"}
    assert spec_to_dict(FormatSpec(name="x", tools=ToolsSpec())) == {"name": "x", "tools": {}}


# -- key lines ----------------------------------------------------------------------------------------


def test_key_lines_finds_tables_dotted_quoted_and_inline_keys():
    text = (
        "# comment with key = 1\n"  # 1
        'name = "x"\n'  # 2
        'bos = """\n'  # 3
        'fake = "inside a string"\n'  # 4
        '"""\n'  # 5
        "stop = [\n"  # 6
        '  "a", # eos = 2\n'  # 7
        "]\n"  # 8
        "[roles.user]\n"  # 9
        'prefix = "<u>"\n'  # 10
        'roles.assistant.suffix = "x"\n'  # 11 (dotted under [roles.user]: roles.user.roles.assistant.suffix)
        "[ system ]\n"  # 12
        '"default" = "d"\n'  # 13
        "[tools]\n"  # 14
        "inline = { a = 1,\n"  # 15 - not valid TOML (newline in inline table); scanner is lenient
    )
    lines = key_lines(text)
    assert lines[("name",)] == 2
    assert lines[("bos",)] == 3 and ("fake",) not in lines
    assert lines[("stop",)] == 6 and ("eos",) not in lines
    assert lines[("roles",)] == 9 and lines[("roles", "user")] == 9 and lines[("roles", "user", "prefix")] == 10
    assert lines[("roles", "user", "roles", "assistant", "suffix")] == 11
    assert lines[("system",)] == 12 and lines[("system", "default")] == 13
    valid = 'roles = { user = { prefix = "a" }, assistant = { suffix = "b" } }\n'
    assert key_lines(valid)[("roles", "user", "prefix")] == 1


# -- errors -------------------------------------------------------------------------------------------


def load_error(tmp_path: Path, text: str, name: str = "f.toml") -> SpecError:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as e:
        chatfmt.load_format(path)
    return e.value


def test_unknown_key_names_file_line_key_path_and_suggests_the_closest(tmp_path):
    err = load_error(tmp_path, 'name = "x"\n\n[roles.user]\nprefix = "a"\nsufix = "b"\n')
    assert (err.source, err.line, err.key) == (str(tmp_path / "f.toml"), 5, "roles.user.sufix")
    assert str(err) == f"{tmp_path / 'f.toml'}:5: roles.user.sufix: unknown key (did you mean 'suffix'?)"


def test_unknown_top_level_key_and_unknown_role(tmp_path):
    assert "did you mean 'separator'" in str(load_error(tmp_path, 'seperator = "x"\n'))
    err = load_error(tmp_path, '[roles.admin]\nprefix = "x"\n')
    assert (err.key, err.line) == ("roles.admin", 1)
    assert err.message == "unknown key (known keys here: system, user, assistant, tool)"


def test_wrong_type_names_expected_and_got_with_key_path_and_line(tmp_path):
    err = load_error(tmp_path, "[roles]\nuser.prefix = 3\n")
    assert (err.line, err.key) == (2, "roles.user.prefix")
    assert err.message == "expected a string, got integer"
    err = load_error(tmp_path, 'strip = "yes"\n')
    assert (err.line, err.key, err.message) == (1, "strip", "expected a boolean, got string")
    err = load_error(tmp_path, '\nstop = ["a",\n  1]\n')
    assert (err.line, err.key, err.message) == (2, "stop[1]", "expected a string, got integer")
    err = load_error(tmp_path, 'roles = "chatml"\n')
    assert (err.key, err.message) == ("roles", "expected a table, got string")


def test_value_outside_its_choices(tmp_path):
    err = load_error(tmp_path, '[system]\nplacement = "first_user"\n')
    assert (err.line, err.key) == (2, "system.placement")
    assert "expected one of 'own_block', 'merge_first_user', 'unsupported'" in err.message


def test_rules_across_keys_are_reported_at_the_key(tmp_path):
    err = load_error(tmp_path, '[system]\nplacement = "unsupported"\ndefault = "hi"\n')
    assert (err.line, err.key) == (3, "system.default")
    err = load_error(tmp_path, '[system]\nplacement = "merge_first_user"\nmerge_template = "{user}"\n')
    assert (err.line, err.key) == (3, "system.merge_template")
    assert "{system} exactly once" in err.message
    err = load_error(tmp_path, 'end_of_turn = ["", "x"]\n')
    assert (err.line, err.key) == (1, "end_of_turn[0]")


def test_bad_extends_unknown_builtin_suggests_a_name(tmp_path):
    err = load_error(tmp_path, 'name = "x"\nextends = "chatlm"\n')
    assert (err.line, err.key) == (2, "extends")
    assert "unknown format 'chatlm' (did you mean 'chatml'?" in err.message


def test_bad_extends_builtin_without_spec_missing_file_and_wrong_type(tmp_path):
    err = load_error(tmp_path, 'extends = "llama-2"\n')
    assert (err.line, err.key) == (1, "extends") and "has no declarative spec" in err.message
    err = load_error(tmp_path, '\nextends = "nowhere.toml"\n')
    assert err.line == 2 and "no such file: nowhere.toml" in err.message
    err = load_error(tmp_path, "extends = 1\n")
    assert err.message == "expected a string, got integer"


def test_cycles_in_extends_are_reported(tmp_path):
    write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", '# b\nextends = "a.toml"\n')
    with pytest.raises(SpecError, match=r"extends cycle: a\.toml -> b\.toml -> a\.toml") as e:
        load_spec(tmp_path / "a.toml")
    assert (e.value.source, e.value.line) == (str((tmp_path / "b.toml").resolve()), 2)
    write(tmp_path, "self.toml", 'extends = "./self.toml"\n')
    with pytest.raises(SpecError, match="cycle: self.toml -> self.toml"):
        load_spec(tmp_path / "self.toml")


def test_an_error_in_a_parent_file_names_the_parent_and_its_line(tmp_path):
    write(tmp_path, "base.toml", '[roles.user]\n\nprefix = true\n')
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[roles.assistant]\nprefix = "A"\n')
    with pytest.raises(SpecError) as e:
        load_spec(child)
    assert e.value.source.endswith("base.toml") and e.value.line == 3 and e.value.key == "roles.user.prefix"


def test_toml_syntax_error_carries_the_line(tmp_path):
    err = load_error(tmp_path, 'name = "x"\n[roles.user]\nprefix = <u>\n')
    assert err.line == 3 and err.message.startswith("invalid TOML: Invalid value") and "(column 10)" in err.message
    assert str(err).startswith(f"{tmp_path / 'f.toml'}:3: invalid TOML")
    err = load_error(tmp_path, 'name = "x"\nbos = """\nunterminated\n')
    assert err.message.startswith("invalid TOML") and err.line is not None


def test_a_toml_format_has_no_named_templates(tmp_path):
    path = write(tmp_path, "f.toml", "")
    with pytest.raises(FormatError, match="no named templates"):
        chatfmt.load_format(path, template="tool_use")
