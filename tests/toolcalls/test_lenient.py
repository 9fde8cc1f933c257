"""Lenient parsing of real, messy model output per family: what the families' serving stacks accept
(vLLM's tool parsers, SGLang's function-call detectors, llama.cpp's chat parsers) is read as calls;
what is not a call stays content, nothing is dropped, and a malformed call falls back to content with
a warning. Every case also parses the same in every chunking (fixed sizes and hypothesis cut points).
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatfmt.toolcalls import ToolCallWarning, get_parser

from ._streaming import assert_deltas_match, calls_of, chunks, stream

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
W = "get_weather"
PARIS = {"city": "Paris"}
DS_BEGIN, DS_SEP, DS_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
DS_CALLS, DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"

# behaviour -> (parser, generated text, calls, content, warned)
CASES: dict[str, tuple[str, str, list, str, bool]] = {
    # hermes / qwen <tool_call> JSON
    "hermes_prose_before_and_after_the_call_stays_content": (
        "hermes",
        f'I will check.\n<tool_call>\n{{"name": "{W}", "arguments": {{"city": "Paris"}}}}\n</tool_call>\nOne moment.',
        [(W, PARIS)],
        "I will check.\n\nOne moment.",
        False,
    ),
    "hermes_collapsed_whitespace_inside_the_tags": (
        "hermes",
        f'<tool_call>{{"name":"{W}","arguments":{{"city":"Paris"}}}}</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_extra_newlines_and_spaces_inside_the_tags": (
        "hermes",
        f'<tool_call>\n\n   {{ "name" : "{W}" ,\n "arguments" : {{ "city" : "Paris" }} }}  \n\n\n</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_byte_level_bpe_markers_leaked_into_the_body": (
        "hermes",
        f'<tool_call>Ċ{{"name":Ġ"{W}",Ġ"arguments":Ġ{{"city":Ġ"Paris"}}}}Ċ</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_double_encoded_arguments_string": (
        "hermes",
        f'<tool_call>\n{{"name": "{W}", "arguments": "{{\\"city\\": \\"Paris\\"}}"}}\n</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_python_literal_arguments": (
        "hermes",
        f"<tool_call>\n{{'name': '{W}', 'arguments': {{'city': 'Paris', 'metric': True, 'unit': None}}}}\n</tool_call>",
        [(W, {"city": "Paris", "metric": True, "unit": None})],
        "",
        False,
    ),
    "hermes_python_literal_arguments_in_a_json_call": (
        "hermes",
        f'<tool_call>\n{{"name": "{W}", "arguments": {{\'city\': \'Paris\'}}}}\n</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_parameters_key_instead_of_arguments": (
        "hermes",
        f'<tool_call>\n{{"name": "{W}", "parameters": {{"city": "Paris"}}}}\n</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_trailing_text_after_the_json_inside_the_block_stays_content": (
        "hermes",
        f'<tool_call>\n{{"name": "{W}", "arguments": {{"city": "Paris"}}}} (checking)\n</tool_call>',
        [(W, PARIS)],
        "(checking)",
        False,
    ),
    "hermes_name_line_and_fenced_json_arguments": (
        "hermes",
        f'<tool_call>{W}\n```json\n{{"city": "Paris"}}\n```</tool_call>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hermes_malformed_call_falls_back_to_content_with_a_warning": (
        "hermes",
        f'<tool_call>\n{{"name": "{W}", "arguments": {{city: Paris}}}}\n</tool_call>',
        [],
        f'<tool_call>\n{{"name": "{W}", "arguments": {{city: Paris}}}}\n</tool_call>',
        True,
    ),
    "qwen3_reasoning_then_a_python_literal_call": (
        "qwen3",
        f"<think>\nNeed weather.\n</think>\n\n<tool_call>\n{{'name': '{W}', 'arguments': {{'city': 'Paris'}}}}\n</tool_call>",
        [(W, PARIS)],
        "",
        False,
    ),
    # llama 3.x: bare JSON (with tools), <|python_tag|>
    "llama3_bare_json_with_parameters": (
        "llama3",
        f'{{"name": "{W}", "parameters": {{"city": "Paris"}}}}',
        [(W, PARIS)],
        "",
        False,
    ),
    "llama3_bare_json_with_arguments_key_and_type_function": (
        "llama3",
        f'{{"type": "function", "name": "{W}", "arguments": {{"city": "Paris"}}}}',
        [(W, PARIS)],
        "",
        False,
    ),
    "llama3_bare_json_then_prose_keeps_the_prose": (
        "llama3",
        f'{{"name": "{W}", "parameters": {{"city": "Paris"}}}}\nI asked for the forecast.',
        [(W, PARIS)],
        "I asked for the forecast.",
        False,
    ),
    "llama3_bare_json_calls_separated_by_semicolons": (
        "llama3",
        f'{{"name": "{W}", "parameters": {{"city": "Paris"}}}}; {{"name": "{W}", "parameters": {{"city": "Lyon"}}}}',
        [(W, PARIS), (W, {"city": "Lyon"})],
        "",
        False,
    ),
    "llama3_bare_python_literal_call": (
        "llama3",
        f"{{'name': '{W}', 'parameters': {{'city': 'Paris', 'metric': False}}}}",
        [(W, {"city": "Paris", "metric": False})],
        "",
        False,
    ),
    "llama3_parameters_as_a_json_string": (
        "llama3",
        f'{{"name": "{W}", "parameters": "{{\\"city\\": \\"Paris\\"}}"}}',
        [(W, PARIS)],
        "",
        False,
    ),
    "llama3_prose_before_a_bare_json_call_stays_content": (
        "llama3",
        f'Sure! Let me check the weather {{"name": "{W}", "parameters": {{"city": "Paris"}}}} for you.',
        [(W, PARIS)],
        "Sure! Let me check the weather for you.",
        False,
    ),
    "llama3_braces_in_prose_that_open_no_call_stay_content": (
        "llama3",
        'Use {x} or {"a": 1} or { "nam in a template; {',
        [],
        'Use {x} or {"a": 1} or { "nam in a template; {',
        False,
    ),
    "llama3_prose_then_a_malformed_call_stays_content_with_a_warning": (
        "llama3",
        f'Calling: {{"name": "{W}", "parameters": {{"city": Paris}}}}',
        [],
        f'Calling: {{"name": "{W}", "parameters": {{"city": Paris}}}}',
        True,
    ),
    "llama3_python_tag_json_call": (
        "llama3",
        f'<|python_tag|>{{"name": "{W}", "parameters": {{"city": "Paris"}}}}<|eom_id|>',
        [(W, PARIS)],
        "",
        False,
    ),
    "llama3_json_that_is_not_a_call_stays_content": (
        "llama3",
        '{"answer": 42} is the JSON you asked for.',
        [],
        '{"answer": 42} is the JSON you asked for.',
        False,
    ),
    "llama3_malformed_bare_call_stays_content_with_a_warning": (
        "llama3",
        f'{{"name": "{W}", "parameters": {{"city": "Par',
        [],
        f'{{"name": "{W}", "parameters": {{"city": "Par',
        True,
    ),
    "llama4_pythonic_call_with_json_literals": (
        "llama4",
        f'[{W}(city="Paris", metric=true, unit=null)]',
        [(W, {"city": "Paris", "metric": True, "unit": None})],
        "",
        False,
    ),
    # mistral [TOOL_CALLS]
    "mistral_json_list_then_prose_keeps_the_prose": (
        "mistral",
        f'[TOOL_CALLS] [{{"name": "{W}", "arguments": {{"city": "Paris"}}}}] Let me know.</s>',
        [(W, PARIS)],
        "Let me know.",
        False,
    ),
    "mistral_python_literal_list": (
        "mistral",
        f"[TOOL_CALLS][{{'name': '{W}', 'arguments': {{'city': 'Paris'}}}}]",
        [(W, PARIS)],
        "",
        False,
    ),
    "mistral_v11_args_then_prose_keeps_the_prose": (
        "mistral",
        f'[TOOL_CALLS]{W}[ARGS]{{"city": "Paris"}} and then I answer.',
        [(W, PARIS)],
        "and then I answer.",
        False,
    ),
    "mistral_v11_two_calls_in_a_row": (
        "mistral",
        f'[TOOL_CALLS]{W}[ARGS]{{"city": "Paris"}}[TOOL_CALLS]{W}[ARGS]{{"city": "Lyon"}}</s>',
        [(W, PARIS), (W, {"city": "Lyon"})],
        "",
        False,
    ),
    "mistral_prose_before_the_calls_stays_content": (
        "mistral",
        f'Checking.[TOOL_CALLS][{{"name": "{W}", "arguments": {{"city": "Paris"}}}}]',
        [(W, PARIS)],
        "Checking.",
        False,
    ),
    # deepseek
    "deepseek_v31_reads_the_r1_call_form": (
        "deepseek-v3.1",
        f'{DS_CALLS}{DS_BEGIN}function{DS_SEP}{W}\n```json\n{{"city": "Paris"}}\n```{DS_END}{DS_CALLS_END}',
        [(W, PARIS)],
        "",
        False,
    ),
    "deepseek_r1_reads_the_v31_call_form": (
        "deepseek-r1",
        f'</think>{DS_CALLS}{DS_BEGIN}{W}{DS_SEP}{{"city": "Paris"}}{DS_END}{DS_CALLS_END}',
        [(W, PARIS)],
        "",
        False,
    ),
    "deepseek_r1_python_literal_arguments": (
        "deepseek-r1",
        f"</think>{DS_CALLS}{DS_BEGIN}function{DS_SEP}{W}\n```json\n{{'city': 'Paris'}}\n```{DS_END}{DS_CALLS_END}",
        [(W, PARIS)],
        "",
        False,
    ),
    # functionary
    "functionary_v31_bpe_space_before_the_name_and_prose_after": (
        "functionary-v3.1",
        f'<function=Ġ{W}>{{"city": "Paris"}}</function> Checking now.',
        [(W, PARIS)],
        "Checking now.",
        False,
    ),
    "functionary_v31_python_literal_arguments": (
        "functionary-v3.1",
        f"<function={W}>{{'city': 'Paris'}}</function>",
        [(W, PARIS)],
        "",
        False,
    ),
    "functionary_v32_prose_after_the_arguments_stays_content": (
        "functionary-v3.2",
        f'{W}\n{{"city": "Paris"}}\nThat is the call.',
        [(W, PARIS)],
        "That is the call.",
        False,
    ),
    # granite, command-r7b, glm-4
    "granite33_prose_after_the_call_list_stays_content": (
        "granite-3.3",
        f'<|tool_call|>[{{"name": "{W}", "arguments": {{"city": "Paris"}}}}]\nDone.',
        [(W, PARIS)],
        "Done.",
        False,
    ),
    "granite33_stray_closing_tag_after_the_call_stays_content": (
        "granite-3.3",
        f'<|tool_call|>\n{{"name": "{W}", "arguments": {{"city": "Paris"}}}}\n<|tool_call_end|>',
        [(W, PARIS)],
        "<|tool_call_end|>",
        False,
    ),
    "command_r7b_python_literal_parameters": (
        "command-r7b",
        f"<|START_ACTION|>[{{'tool_call_id': '0', 'tool_name': '{W}', 'parameters': {{'city': 'Paris'}}}}]<|END_ACTION|>",
        [(W, PARIS)],
        "",
        False,
    ),
    "glm4_python_literal_arguments": ("glm4", f"{W}\n{{'city': 'Paris'}}", [(W, PARIS)], "", False),
    # Hub syntaxes chosen by template markers
    "olmo3_one_python_call_a_line": (
        "olmo3",
        f'<function_calls>{W}(city="Paris")\n{W}(city="Lyon")</function_calls>',
        [(W, PARIS), (W, {"city": "Lyon"})],
        "",
        False,
    ),
    "lfm2_pythonic_list_with_prose_before": (
        "lfm2",
        f"Checking.<|tool_call_start|>[{W}(city='Paris')]<|tool_call_end|>",
        [(W, PARIS)],
        "Checking.",
        False,
    ),
    "tool_calls_list_python_literal_arguments": (
        "tool-calls-list",
        f'<tool_calls>[{{"name": "{W}", "arguments": {{\'city\': \'Paris\'}}}}]</tool_calls>',
        [(W, PARIS)],
        "",
        False,
    ),
    "tool_calls_list_of_named_fenced_items": (
        "tool-calls-list",
        f'<tool_calls><tool_call>{W}\n```json\n{{"city": "Paris"}}\n```</tool_call></tool_calls>',
        [(W, PARIS)],
        "",
        False,
    ),
    "nemotron_toolcall_list": (
        "nemotron",
        f'<TOOLCALL>[{{"name": "{W}", "arguments": {{"city": "Paris"}}}}]</TOOLCALL>',
        [(W, PARIS)],
        "",
        False,
    ),
    "step_audio_function_name_and_arguments": (
        "step-audio",
        f'<|CALL_START|>function\n{W}\n{{"city": "Paris"}}<|CALL_END|>',
        [(W, PARIS)],
        "",
        False,
    ),
    "apertus_name_keyed_call_list": (
        "apertus",
        f'<|tools_prefix|>[{{"{W}": {{"city": "Paris"}}}}]<|tools_suffix|>',
        [(W, PARIS)],
        "",
        False,
    ),
    "solar_id_name_and_arguments": (
        "solar",
        f'<|tool_calls|><|tool_call:begin|>a1<|tool_call:name|>{W}<|tool_call:args|>{{"city": "Paris"}}<|tool_call:end|><|calls|>',
        [(W, PARIS)],
        "",
        False,
    ),
    "hyperclovax_call_list_after_its_role_line": (
        "hyperclovax",
        f' -> tool/function_call\n[{{"name": "{W}", "arguments": {{"city": "Paris"}}}}]',
        [(W, PARIS)],
        "",
        False,
    ),
    "command_r_action_in_a_json_fence_ends_at_the_next_turn": (
        "command-r",
        f'Action:\n```json\n[{{"tool_name": "{W}", "parameters": {{"city": "Paris"}}}}]\n```<|END_OF_TURN_TOKEN|>ignored',
        [(W, PARIS)],
        "",
        False,
    ),
    "bare_json_list_for_a_template_without_markers": (
        "json",
        f'[{{"name": "{W}", "arguments": {{"city": "Paris"}}}}]',
        [(W, PARIS)],
        "",
        False,
    ),
}


def _check(name: str, result) -> None:
    _parser, _text, calls, content, warned = CASES[name]
    assert calls_of(result) == calls
    assert result.content == content
    assert bool(result.warnings) == warned, result.warnings


@pytest.mark.parametrize("name", sorted(CASES))
def test_messy_output_parses_whole_and_at_every_chunk_size(name):
    parser_name, text, *_ = CASES[name]
    parser = get_parser(parser_name, tools=TOOLS, seed=0)
    whole = parser.parse(text)
    _check(name, whole)
    for size in range(1, 9):
        deltas, streamed = stream(parser, chunks(text, size))
        assert streamed == whole
        assert_deltas_match(deltas, streamed)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(CASES)), data=st.data())
def test_messy_output_parses_the_same_at_any_cut_points(name, data):
    parser_name, text, *_ = CASES[name]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=15)))
    bounds = [0, *cuts, len(text)]
    parser = get_parser(parser_name, tools=TOOLS, seed=0)
    deltas, streamed = stream(parser, [text[a:b] for a, b in zip(bounds, bounds[1:])])
    _check(name, streamed)
    assert_deltas_match(deltas, streamed)


def test_a_malformed_call_warns_with_the_tool_call_warning_class():
    parser = get_parser("hermes", tools=TOOLS, warn=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = parser.parse('<tool_call>\n{"name": "f", "arguments": {oops}}\n</tool_call>')
    assert result.tool_calls == []
    assert [w.category for w in caught] == [ToolCallWarning]
