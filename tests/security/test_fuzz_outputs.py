"""Fuzzing what a model sends back and what a client sends in: every registered output / tool-call
parser on arbitrary and pathological output (streamed at random chunkings, with and without token
ids), and the server's HTTP request handling (bodies, headers, content types, invalid UTF-8, deep
JSON, huge numbers, NaN/Infinity literals, lone surrogates). Only documented errors may escape: a
parser raises nothing but :class:`~chatfmt.errors.ChatfmtError` subclasses from ``feed``/``finish``
(and keeps a malformed call as content, with a warning), the server answers 4xx with an OpenAI
error body, never a 5xx.

The HTTP part runs the real app in process (FastAPI TestClient) over a scripted engine with the real
SmolLM2 tokenizer (tests/server/conftest.py): what is fuzzed is the request handling, not the model.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatfmt.errors import ChatfmtError
from chatfmt.toolcalls import ParsedOutput, get_parser, list_parsers

from ..toolcalls._streaming import assert_deltas_match

PARSERS = list_parsers()
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


def _strict_json_object(text: str) -> dict:
    """Arguments must be RFC 8259 JSON (no NaN/Infinity) holding an object."""

    def no_constant(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name} in tool-call arguments {text[:80]!r}")

    value = json.loads(text, parse_constant=no_constant)
    assert isinstance(value, dict), text[:80]
    return value


def run_parser(parser, pieces) -> tuple[list, ParsedOutput]:
    """Feed ``pieces`` ((text, token_id) pairs); only ChatfmtError may escape (then the run ends)."""
    parser.reset()
    deltas = []
    for text, tid in pieces:
        deltas += parser.feed(text, tid)
    last, result = parser.finish()
    return deltas + last, result


def check_result(deltas, result: ParsedOutput) -> None:
    assert_deltas_match(deltas, result)
    for call in result.tool_calls:
        assert call["function"]["name"] and isinstance(call["function"]["name"], str)
        _strict_json_object(call["function"]["arguments"])
        # what the server sends must encode to UTF-8 (a "\ud800" escape decodes to a lone surrogate)
        json.dumps(call, ensure_ascii=False).encode("utf-8")


def _markers(name: str) -> list[str]:
    g = get_parser(name, tools=TOOLS).grammar
    return sorted(set(g.markers.values()))


ALL_MARKERS = sorted({m for n in PARSERS for m in _markers(n)})

# bodies that broke (or could break) the body parsers: nesting past the recursion limit, integers past
# Python's 4,300-digit conversion limit, NaN/Infinity, deep unary operators for ast, fences, NULs
NASTY_BODIES = [
    "[" * 5000,
    "[" * 5000 + "]" * 5000,
    '{"name": "f", "arguments": ' + '{"a":' * 3000 + "1" + "}" * 3000 + "}",
    '{"name": "f", "arguments": {"a": ' + "9" * 5000 + "}}",
    '{"name": "f", "parameters": {"a": ' + "9" * 5000 + "}}",
    '[{"name": "f", "arguments": {"a": 1e999999}}]',
    '{"name": "f", "arguments": {"a": NaN, "b": -Infinity}}',
    '{"name": "f", "arguments": "{\\"a\\": NaN}"}',
    '{"name": "' + "\\ud800" + '", "arguments": {}}',
    "f(a=" + "-" * 100_000 + "1)",
    "[f(a=" + "(" * 300 + "1" + ")" * 300 + ")]",
    "f(a=" + "[" * 180 + "]" * 180 + ")",
    "f(a=" + "9" * 5000 + ")",
    "brave_search.call(query=" + "+" * 50_000 + "1)",
    "```python\ntool_call(a=" + "-" * 100_000 + "1)\n```",
    "```json\n" + "[" * 5000 + "\n```",
    "\x00" * 100 + '{"name": "f\x00", "arguments": {"\x00": "\x00"}}',
    " \n\t" * 3000,
    '"name"' * 2000,
]


def wrappings(name: str, body: str) -> list[str]:
    """``body`` alone and in every place the grammar ``name`` parses a call body."""
    g = get_parser(name, tools=TOOLS).grammar
    m = g.markers
    out = [body]
    for b in g.blocks:
        start = m[b.start]
        out.append(start + body)
        for e in b.end:
            out.append(start + body + m[e])
        if b.start == "python_tag" or b.start == "function":
            out.append(start + "f>" + body + (m[b.end[0]] if b.end else ""))
    if g.segments is not None:
        out += ["f\n" + body, m[g.segments.sep] + "f\n" + body, "python\n" + body]
    if name == "deepseek-v3.2":
        d = "｜DSML｜"
        out.append(
            m["calls"] + f'<{d}invoke name="f"><{d}parameter name="a" string="false">' + body + m["calls_end"]
        )
        out.append(
            m["calls"]
            + f'<{d}invoke name="f"><{d}parameter name="a">'
            + body
            + f"</{d}parameter></{d}invoke>"
            + m["calls_end"]
        )
    elif name.startswith("deepseek"):
        sep = "<｜tool▁sep｜>"
        out += [
            m["call_begin"] + "function" + sep + "f\n" + body + m["call_end"],
            m["call_begin"] + "f" + sep + body + m["call_end"],
        ]
    if name == "minimax-m2":
        start, end = m["tool_call_start"], m["tool_call_end"]
        out.append(start + '<invoke name="f"><parameter name="a">' + body + end)
        out.append(start + '<invoke name="f"><parameter name="b">' + body + "</parameter></invoke>" + end)
    if name == "minicpm5":
        out.append('<function name="f"><param name="a">' + body + "</param></function>")
    if name == "mistral":
        out.append("[TOOL_CALLS]f[ARGS]" + body)
    return out


@pytest.mark.parametrize("name", PARSERS)
def test_pathological_call_bodies_are_content_or_calls_never_an_exception(name):
    """Every nasty body in every call position of every grammar, whole and streamed in 7-character
    pieces: parsed or kept as content, arguments strict JSON, no exception."""
    parser = get_parser(name, tools=TOOLS, seed=0)
    for body in NASTY_BODIES:
        for text in wrappings(name, body):
            whole = parser.parse(text)
            check_result(*run_parser(parser, [(text, None)]))
            deltas, streamed = run_parser(parser, [(text[i : i + 7], None) for i in range(0, len(text), 7)])
            assert streamed == whole
            check_result(deltas, streamed)


# -- random output, random chunking, random token ids ---------------------------------------------------

FRAGMENTS = [
    *ALL_MARKERS,
    '{"name": "f", "arguments": {"a": 1}}',
    '[{"name": "f", "parameters": {}}]',
    "f(a=1)",
    "[f(b='x')]",
    "tool_call(a=1)",
    "```",
    "```json\n",
    "f\n",
    "all\n",
    "python\n",
    "\n",
    " ",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    "|",
    '"',
    "\\",
    "NaN",
    "1e999",
    "9" * 4400,
    "[" * 1200,
    '{"a":' * 1100,
    "\ud800",
    "\x00",
]
output_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=16).map("".join)


@st.composite
def chunked_with_ids(draw, marker_ids: dict[str, int]):
    """The text cut at random places; each piece gets no id, a random id, or (for a piece that is a
    marker) the marker's id; and now and then a marker id arrives with text that does not match it."""
    text = draw(output_text)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    pieces = []
    ids = sorted(marker_ids.values())
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = text[a:b]
        if piece in marker_ids and draw(st.booleans()):
            tid: int | None = marker_ids[piece]
        else:
            tid = draw(st.none() | st.integers(0, 200_000) | (st.sampled_from(ids) if ids else st.none()))
        pieces.append((piece, tid))
    return pieces


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_any_output_any_chunking_without_token_ids(data):
    name = data.draw(st.sampled_from(PARSERS), label="parser")
    tools = data.draw(st.sampled_from([None, TOOLS]), label="tools")
    prompt = data.draw(st.sampled_from([None, "", "<think>\n", ">>>"]), label="prompt")
    text = data.draw(output_text, label="text")
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=20), label="cuts"))
    bounds = [0, *cuts, len(text)]
    parser = get_parser(name, tools=tools, prompt=prompt, seed=1)
    whole = parser.parse(text)
    deltas, streamed = run_parser(
        parser, [(text[a:b], None) for a, b in zip(bounds, bounds[1:], strict=False)]
    )
    assert streamed == whole
    check_result(deltas, streamed)


@pytest.fixture(scope="module")
def qwen_tok(testdata, shared_tokenizer):
    return shared_tokenizer(testdata("qwen2.5"))


def _run_with_ids(name: str, tok, pieces, *, well_formed: bool = False) -> None:
    parser = get_parser(name, tok, tools=TOOLS, seed=2)
    try:
        deltas, result = run_parser(parser, pieces)
    except ChatfmtError:  # documented for random output; a stream the model could emit must parse
        if well_formed:
            raise
        return
    check_result(deltas, result)
    with pytest.raises(ChatfmtError):  # documented: feed after finish
        parser.feed("x")


def test_any_output_any_chunking_with_token_ids(qwen_tok):
    """Every parser with the real Qwen2.5 tokenizer (``<tool_call>``, ``<|im_end|>``, ... are single
    tokens there): pieces with random ids, marker ids on their own text and on unrelated text."""
    marker_ids = {
        t: i
        for t, i in {**qwen_tok.special_tokens, **getattr(qwen_tok, "added_tokens", {})}.items()
        if t in ALL_MARKERS
    }
    assert "<tool_call>" in marker_ids and "<|im_end|>" in marker_ids

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(name=st.sampled_from(PARSERS), pieces=chunked_with_ids(marker_ids))
    def prop(name, pieces):
        _run_with_ids(name, qwen_tok, pieces)

    prop()


#: the default run's share of test_real_token_streams_of_nasty_output: every 4th body, in its first 2 wrappings
STREAM_SAMPLE = (4, 2)


@pytest.mark.parametrize(
    ("every_nth_body", "wrappings_each"),
    # the default run: every parser, a quarter of the bodies, each alone and in its first block; slow:
    # half of the bodies in up to three places, less the (body, wrapping) pairs the default run takes
    [pytest.param(*STREAM_SAMPLE, id="sample"), pytest.param(2, 3, id="wide", marks=pytest.mark.slow)],
)
def test_real_token_streams_of_nasty_output(qwen_tok, every_nth_body, wrappings_each):
    """The nasty bodies and every marker as a real model would stream them: token by token from the
    Qwen2.5 tokenizer, markers as their control ids, each piece decoded as the backend decodes it."""
    from chatfmt.inference.stream import IncrementalDecoder

    wide = (every_nth_body, wrappings_each) != STREAM_SAMPLE
    specials = {**qwen_tok.special_tokens, **getattr(qwen_tok, "added_tokens", {})}
    for name in PARSERS:
        for b, body in enumerate(NASTY_BODIES):
            if b % every_nth_body:
                continue
            for w, text in enumerate(wrappings(name, body)[:wrappings_each]):
                if wide and b % STREAM_SAMPLE[0] == 0 and w < STREAM_SAMPLE[1]:
                    continue  # the default run's
                ids: list[int] = []
                rest = text
                for marker in sorted(specials, key=len, reverse=True):
                    rest = rest.replace(marker, "\x01" + marker + "\x01")
                for part in rest.split("\x01"):
                    if part in specials:
                        ids.append(specials[part])
                    elif part:
                        ids += qwen_tok.encode_text(part)
                dec = IncrementalDecoder(qwen_tok)
                _run_with_ids(
                    name, qwen_tok, [(dec.add(i), i) for i in ids[:4000]], well_formed=len(ids) <= 4000
                )


# -- the HTTP request models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    import chatfmt

    from ..server.conftest import ScriptedEngine

    tok = chatfmt.load_tokenizer(smollm2_gguf)
    return ScriptedEngine(tok, chatfmt.load_format("qwen2.5"), "Hello there.<|im_end|>", n_ctx=512)


#: the test client's address: the server answers only to IP addresses, localhost and the names it is told
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module", params=["qwen2.5", "gguf-jinja"])
def client(request, engine, smollm2_gguf):
    """The app over the built-in qwen2.5 format, and over the model's own Jinja template (GGUF)."""
    from fastapi.testclient import TestClient

    import chatfmt
    from chatfmt.server import create_app

    if request.param == "gguf-jinja":
        engine = type(engine)(
            engine.tokenizer, chatfmt.load_format(smollm2_gguf), "Hello there.<|im_end|>", n_ctx=512
        )
    with TestClient(
        create_app(engine, max_tokens_limit=64, max_body_bytes=200_000, api_key="k3y"),
        raise_server_exceptions=False,
        base_url=LOCAL,
    ) as c:
        yield c


AUTH = {"Authorization": "Bearer k3y"}
ENDPOINTS = ["/v1/chat/completions", "/v1/render", "/v1/completions", "/v1/tokenize", "/v1/detokenize"]
VALID = {
    "/v1/chat/completions": {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 1,
    },
    "/v1/render": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi", "max_tokens": 4, "temperature": 0.5},
    "/v1/tokenize": {"prompt": "hi"},
    "/v1/detokenize": {"tokens": [1, 2]},
}


def assert_4xx_or_ok(r, what) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and body["error"]["message"], (what, body)


def _literal_variants(path: str) -> list[bytes]:
    """The valid body with each numeric field replaced by a nasty literal (raw JSON text)."""
    base = VALID[path]
    out = []
    numeric = [k for k, v in base.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for key in [*numeric, "max_tokens", "top_k", "n", "seed"]:
        for lit in (
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
            "9" * 5000,
            "9" * 100,
            "-" + "9" * 100,
            "1.0",
            "1e2",
            "0.0000001",
        ):
            body = json.dumps({**base, key: "@@"}).replace('"@@"', lit)
            out.append(body.encode())
    return out


@pytest.mark.parametrize("path", ENDPOINTS)
def test_nan_infinity_huge_numbers_in_every_numeric_field(client, path):
    for body in _literal_variants(path):
        assert_4xx_or_ok(client.post(path, content=body, headers=AUTH), body[:120])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_deep_nesting_everywhere_is_a_4xx(client, path):
    """Nesting past the JSON decoder's recursion limit, and just under it in every free-form field
    (``chat_template_kwargs``, extra message fields, tool parameters, call arguments)."""
    for raw in (
        b"[" * 100_000,
        b"{" + b'"a":{' * 60_000,
        b'{"messages":' + b"[" * 90_000,
        b'{"prompt":' + b"[" * 90_000,
    ):
        assert_4xx_or_ok(client.post(path, content=raw, headers=AUTH), raw[:20])
    for depth in (100, 900, 990):
        deep = "[" * depth + "]" * depth  # spliced in as text: json.dumps would recurse here too
        bodies = [
            {**VALID[path], "chat_template_kwargs": {"x": "@@"}},
            {**VALID[path], "messages": [{"role": "user", "content": "hi", "extra": "@@"}]},
            {
                **VALID[path],
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object", "p": "@@"}},
                    }
                ],
            },
            {
                **VALID[path],
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"a": "@@"}}}],
                    },
                ],
            },
            {**VALID[path], "prompt": "@@", "tokens": "@@", "stop": "@@"},
        ]
        for b in bodies:
            raw = json.dumps(b).replace('"@@"', deep)
            assert_4xx_or_ok(client.post(path, content=raw, headers=AUTH), (depth, list(b)))


@pytest.mark.parametrize("path", ENDPOINTS)
def test_invalid_utf8_and_lone_surrogates_are_400(client, path):
    valid = json.dumps(VALID[path]).encode()
    for raw in (
        valid.replace(b"hi", b"h\xff\xfei"),
        valid.replace(b"hi", b"caf\xe9"),
        valid.replace(b"hi", b"\xed\xa0\x80"),  # a surrogate encoded as UTF-8 (CESU): not UTF-8
        b"\xff\xfe" + valid,
        b"\x00" * 64,
    ):
        r = client.post(path, content=raw, headers=AUTH)
        assert_4xx_or_ok(r, raw[:40])
        if b"hi" in valid and raw != valid:
            assert r.status_code == 400, (path, raw[:60], r.text)
    if b'"hi"' in valid:
        for esc in ("\\ud800", "x\\udfff", "\\ud83d", "\\ude00\\ud83d"):
            r = client.post(path, content=valid.replace(b'"hi"', f'"{esc}"'.encode()), headers=AUTH)
            assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"], (path, esc, r.text)
        # a pair is one character, and fine
        r = client.post(path, content=valid.replace(b'"hi"', b'"\\ud83d\\ude00"'), headers=AUTH)
        assert r.status_code == 200, r.text


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    path=st.sampled_from(ENDPOINTS),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "",
            "*/*",
        ]
    )
    | header_text,
    auth=st.sampled_from(
        ["Bearer k3y", "bearer k3y", "Bearer  k3y ", "Bearer k3", "Bearer k3yy", "k3y", "Basic azN5", ""]
    )
    | header_text,
    extra=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True), header_text, max_size=4
    ),
    x_api_key=st.none() | st.sampled_from(["k3y", "K3Y"]) | header_text,
)
def test_any_headers_get_401_or_an_answer_never_a_5xx(client, path, content_type, auth, extra, x_api_key):
    headers = {
        k: v
        for k, v in extra.items()
        if k.lower()
        not in ("content-length", "transfer-encoding", "host", "authorization", "x-api-key", "origin")
    }
    headers["content-type"] = content_type
    if auth:
        headers["authorization"] = auth
    if x_api_key is not None:
        headers["x-api-key"] = x_api_key
    r = client.post(path, content=json.dumps(VALID[path]), headers=headers)
    assert_4xx_or_ok(r, headers)
    given_key = auth[7:].strip() if auth.lower().startswith("bearer ") else (x_api_key or "")
    if given_key != "k3y":
        assert r.status_code == 401, (headers, r.text)
    elif content_type.split(";")[0].strip().lower() != "application/json" or "latin-1" in content_type:
        assert r.status_code == 415, (
            headers,
            r.text,
        )  # only JSON is read: no form or text/plain a web page could send
    else:
        assert r.status_code in (200, 415), (headers, r.text)  # 415: a charset other than UTF-8


@st.composite
def mutated_body(draw):
    """A valid body's bytes with random bytes overwritten, inserted or cut."""
    path = draw(st.sampled_from(ENDPOINTS))
    data = bytearray(json.dumps(VALID[path]).encode())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "insert", "cut"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.binary(min_size=1, max_size=6)
                | st.sampled_from([b"NaN", b"1e999", b"[[[[", b"\\ud800", b'"\\u0000"'])
            )
        else:
            del data[pos : pos + draw(st.integers(1, 5))]
    return path, bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=mutated_body())
def test_mutated_bodies_never_get_a_5xx(client, case):
    path, raw = case
    assert_4xx_or_ok(client.post(path, content=raw, headers=AUTH), raw[:200])


@st.composite
def valid_body(draw):
    """A valid request: any message text, sampling parameters anywhere in their documented ranges."""
    path = draw(st.sampled_from(ENDPOINTS))
    body = copy.deepcopy(VALID[path])
    text = draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
    if "messages" in body:
        body["messages"][0]["content"] = text
    elif "prompt" in body:
        body["prompt"] = text
    if "temperature" in body:
        body["temperature"] = draw(st.floats(0, 2))
        body["max_tokens"] = draw(st.integers(1, 64))
    if "top_p" in body:
        body["top_p"] = draw(st.floats(0.01, 1))
        body["seed"] = draw(st.integers(0, 2**31 - 1))
    return path, body


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=valid_body())
def test_valid_bodies_are_answered(client, case):
    """What the fuzzing above may refuse, a valid request must not: 200 and the endpoint's answer."""
    path, body = case
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 200, (body, r.status_code, r.text[:300])
    answer = r.json()
    key = {
        "/v1/chat/completions": "choices",
        "/v1/completions": "choices",
        "/v1/render": None,
        "/v1/tokenize": "tokens",
        "/v1/detokenize": None,
    }[path]
    if key is not None:
        assert answer[key], answer
    if path == "/v1/chat/completions":
        content = answer["choices"][0]["message"]["content"]  # the scripted reply, cut at max_tokens
        assert content and "Hello there.".startswith(content), answer


def test_nan_literal_never_reaches_sampling(client, engine):
    """``temperature: NaN`` is refused, not turned into a NaN sampling temperature."""
    for lit in ("NaN", "Infinity"):
        body = json.dumps(VALID["/v1/chat/completions"]).replace("0.5", lit)
        r = client.post("/v1/chat/completions", content=body, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["param"] == "temperature", r.text
