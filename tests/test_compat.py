"""A format paired with a tokenizer that lacks a token it relies on is refused before any work, at
every entry point, in one line naming the format, the tokenizer and the first missing token; the
opt-out (``allow_missing_tokens=True`` / ``--allow-missing-tokens``) encodes anyway; a model's own
format with its own tokenizer always passes.

Real tokenizers: the shared test data (skipped without it), and -- so that this runs anywhere --
the SmolLM2 GGUF (``smollm2_gguf``) and the tokenizers mistral-common ships in its package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.compat import OPT_OUT, check_tokenizer, missing_tokens, required_tokens
from chatfmt.encode import encode, encode_batch
from chatfmt.errors import ChatfmtError, TokenizerMismatchError
from chatfmt.inference import IncrementalEncoder, bridge_ids

runner = CliRunner()
#: the shared test data (as tests/conftest.py finds it); tests that need a file of it skip without it
T = Path(
    os.environ.get("CHATFMT_TESTDATA") or Path(__file__).resolve().parents[1].parent / "shared" / "testdata"
)
CONV = [{"role": "user", "content": "Hi"}]


def _mistral_common(name: str) -> Path:
    """A tokenizer file mistral-common ships inside its package (skips when it is not installed)."""
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mistral-common is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        pytest.skip(f"mistral-common ships no {name}")
    return path


_TOKENIZERS: dict[str, Any] = {}


def tok(where: str | Path) -> Any:
    """A tokenizer by shared-data path (``"qwen2.5"``), ``mc:<file>`` (mistral-common) or a path,
    loaded once per session."""
    key = str(where)
    if key not in _TOKENIZERS:
        if key.startswith("mc:"):
            path = _mistral_common(key[3:])
        elif Path(key).is_absolute():
            path = Path(key)
        else:
            path = T / key
            if not path.exists():
                pytest.skip(f"{path} is not in the shared test data")
        _TOKENIZERS[key] = chatfmt.load_tokenizer(path)
    return _TOKENIZERS[key]


@pytest.fixture(scope="session")
def llama31_tokenizer(tmp_path_factory) -> Any:
    """Meta's Llama 3 ``tokenizer.model`` (3 and 3.1 share the file) without the Llama-3.0
    ``tokenizer_config.json`` beside it: the special tokens get their Llama 3.1 names
    (``<|eom_id|>`` is id 128008)."""
    src = T / "llama3" / "tokenizer.model"
    if not src.is_file():
        pytest.skip(f"{src} is not in the shared test data")
    d = tmp_path_factory.mktemp("llama31")
    shutil.copy(src, d / "tokenizer.model")
    return chatfmt.load_tokenizer(d / "tokenizer.model")


# -- a format with its own tokenizer passes -------------------------------------------------------

#: every built-in whose model's tokenizer is in the test data or in mistral-common's package
BUILTIN_PAIRS = [
    ("qwen2.5", "qwen2.5"),
    ("llama-2", "llama2/tokenizer.model"),
    ("llama-2", "llama2/tokenizer.json"),
    ("vicuna", "llama2/tokenizer.model"),
    ("alpaca", "llama2/tokenizer.model"),
    ("mistral-v1", "mc:tokenizer.model.v1"),
    ("zephyr", "mc:tokenizer.model.v1"),
    ("mistral-v2", "mc:mistral_instruct_tokenizer_240216.model.v2"),
    ("mistral-v3", "mistral-7b-instruct-v0.3"),
    ("mistral-v3", "mc:mistral_instruct_tokenizer_240323.model.v3"),
    ("mistral-v7", "mc:mistral_instruct_tokenizer_241114.model.v7"),
    ("mistral-tekken", "mc:tekken_240911.json"),
    ("llama-3", "llama3/tokenizer.model"),
    ("llama-3.1", "llama3/tokenizer.model"),
    ("llama-3.2", "llama3/tokenizer.model"),
    ("functionary-v3.2", "llama3/tokenizer.model"),
    ("llama-4", "llama4/tokenizer.model"),
    ("baichuan2", "baichuan2"),
    ("chatglm3", "chatglm3"),
    ("phi-3", "phi-3-mini"),
    ("phi-3.5", "phi-3-mini"),
]


@pytest.mark.parametrize(("fmt_name", "tok_where"), BUILTIN_PAIRS)
def test_builtin_with_its_models_tokenizer_passes(fmt_name, tok_where):
    fmt = chatfmt.load_format(fmt_name)
    assert missing_tokens(fmt, tok(tok_where)) == []
    check_tokenizer(fmt, tok(tok_where))
    assert required_tokens(fmt), f"{fmt_name} relies on no token at all?"


def test_llama31_based_builtins_pass_with_the_llama31_names(llama31_tokenizer):
    for name in ("functionary-v3.1", "llama-3.1", "llama-3.2", "llama-3"):
        assert missing_tokens(chatfmt.load_format(name), llama31_tokenizer) == [], name


def test_smollm2_builtins_pass_with_the_default_models_vocabulary(smollm2_gguf):
    t = tok(smollm2_gguf)
    for name in ("smollm2", "chatml"):
        check_tokenizer(chatfmt.load_format(name), t)
    check_tokenizer(chatfmt.load_format(smollm2_gguf), t)  # the GGUF's own template


#: (template, tokenizer) pairs of the test data that belong together: model directories and configs
#: with their own tokenizer, official templates with their model's tokenizer
TEMPLATE_PAIRS = [
    ("qwen2.5", "qwen2.5"),
    ("qwen2.5/tokenizer_config.json", "qwen2.5"),
    ("llama2", "llama2/tokenizer.model"),
    ("llama2/chat_template.jinja", "llama2/tokenizer.json"),
    ("llama3/tokenizer_config.json", "llama3/tokenizer.model"),
    ("mistral-7b-instruct-v0.3", "mistral-7b-instruct-v0.3"),
    ("chatglm3/alt-chatglm3-6b-32k/tokenizer_config.json", "chatglm3"),
    ("phi-3-mini", "phi-3-mini"),
    ("templates/llama.cpp-c392e50/Qwen-Qwen2.5-7B-Instruct.jinja", "qwen2.5"),
    ("templates/llama.cpp-0c1e570/Qwen-Qwen2.5-7B-Instruct.jinja", "qwen2.5"),
    ("templates/llama.cpp-c392e50/microsoft-Phi-3.5-mini-instruct.jinja", "phi-3-mini"),
    ("templates/llama.cpp-c392e50/fireworks-ai-llama-3-firefunction-v2.jinja", "llama3/tokenizer.model"),
    ("templates/llama.cpp-c392e50/mistralai-Mistral-Nemo-Instruct-2407.jinja", "mc:tekken_240718.json"),
    ("templates/chujiezheng-chat_templates/chat_templates/llama-2-chat.jinja", "llama2/tokenizer.model"),
    ("templates/chujiezheng-chat_templates/chat_templates/llama-3-instruct.jinja", "llama3/tokenizer.model"),
    ("templates/chujiezheng-chat_templates/chat_templates/mistral-instruct.jinja", "mc:tokenizer.model.v1"),
    ("templates/chujiezheng-chat_templates/chat_templates/qwen2.5-instruct.jinja", "qwen2.5"),
    ("templates/chujiezheng-chat_templates/chat_templates/phi-3.jinja", "phi-3-mini"),
    ("templates/chujiezheng-chat_templates/chat_templates/zephyr.jinja", "mc:tokenizer.model.v1"),
    ("templates/chujiezheng-chat_templates/chat_templates/vicuna.jinja", "llama2/tokenizer.model"),
    ("templates/chujiezheng-chat_templates/chat_templates/alpaca.jinja", "llama2/tokenizer.model"),
    ("templates/mistral-common-tests-chat_templates/v1.jinja", "mc:tokenizer.model.v1"),
    ("templates/mistral-common-tests-chat_templates/v1_spm.jinja", "mc:tokenizer.model.v1"),
    (
        "templates/mistral-common-tests-chat_templates/v2.jinja",
        "mc:mistral_instruct_tokenizer_240216.model.v2",
    ),
    (
        "templates/mistral-common-tests-chat_templates/v2_spm.jinja",
        "mc:mistral_instruct_tokenizer_240216.model.v2",
    ),
    ("templates/mistral-common-tests-chat_templates/v3.jinja", "mc:tekken_240718.json"),
    (
        "templates/mistral-common-tests-chat_templates/v3_spm.jinja",
        "mc:mistral_instruct_tokenizer_240323.model.v3",
    ),
    ("templates/mistral-common-tests-chat_templates/v7.jinja", "mc:tekken_240911.json"),
    (
        "templates/mistral-common-tests-chat_templates/v7_spm.jinja",
        "mc:mistral_instruct_tokenizer_241114.model.v7",
    ),
]

#: Llama 3.1-family templates: with the 3.1 names of the same tokenizer file
LLAMA31_TEMPLATES = [
    "templates/llama.cpp-c392e50/meta-llama-Llama-3.1-8B-Instruct.jinja",
    "templates/llama.cpp-c392e50/meta-llama-Llama-3.2-3B-Instruct.jinja",
    "templates/llama.cpp-c392e50/meta-llama-Llama-3.3-70B-Instruct.jinja",
    "templates/llama.cpp-c392e50/meetkai-functionary-medium-v3.1.jinja",
    "templates/llama.cpp-c392e50/meetkai-functionary-medium-v3.2.jinja",
]


def _format_at(rel: str) -> Any:
    path = T / rel
    if not path.exists():
        pytest.skip(f"{path} is not in the shared test data")
    return chatfmt.load_format(path)


@pytest.mark.parametrize(("template", "tok_where"), TEMPLATE_PAIRS)
def test_models_own_template_with_its_own_tokenizer_passes(template, tok_where):
    assert missing_tokens(_format_at(template), tok(tok_where)) == []


@pytest.mark.parametrize("template", LLAMA31_TEMPLATES)
def test_llama31_templates_pass_with_the_llama31_tokenizer(template, llama31_tokenizer):
    assert missing_tokens(_format_at(template), llama31_tokenizer) == []


def test_a_directorys_template_relies_on_its_own_added_tokens():
    """Mistral v0.3's template writes [INST] as text; its tokenizer_config declares it a control token,
    so the template relies on it (and on <s>/</s>) -- not on Llama-2's plain-text [INST]."""
    fmt = _format_at("mistral-7b-instruct-v0.3")
    texts = [r.text for r in required_tokens(fmt)]
    assert texts[:3] == ["<s>", "[INST]", "[/INST]"] and "[TOOL_CALLS]" in texts
    assert [r.text for r in required_tokens(_format_at("llama2"))] == ["<s>", "</s>"]


# -- mismatches are refused, in one line ------------------------------------------------------------

#: (format, tokenizer, first missing token, words the message must contain)
MISMATCHES = [
    ("baichuan2", "qwen2.5", "<reserved_106>", "as token id 195, which is 'ć' in this tokenizer"),
    ("chatglm3", "qwen2.5", "[gMASK]", "as token id 64790, which is 'Ġunst' in this tokenizer"),
    ("chatglm3", "baichuan2", "[gMASK]", "as token id 64790"),
    ("qwen2.5", "baichuan2", "<|im_start|>", "as one token, which this tokenizer does not have"),
    ("llama-2", "llama3/tokenizer.model", "<s>", "as token id 1, which is '\"' in this tokenizer"),
    ("mistral-v3", "llama2/tokenizer.model", "[INST]", "as token id 3, which is '<0x00>' in this tokenizer"),
    ("alpaca", "llama3/tokenizer.model", "<s>", "as one token"),
    ("llama-3", "phi-3-mini", "<|begin_of_text|>", "as one token"),
    (
        "functionary-v3.1",
        "llama3/tokenizer.model",
        "<|eom_id|>",
        "as one token",
    ),  # 128008 is reserved in Llama 3.0
    (T / "qwen2.5", "baichuan2", "<|im_start|>", "as one token"),
    (T / "mistral-7b-instruct-v0.3", "qwen2.5", "<s>", "as one token"),
    (T / "llama3" / "tokenizer_config.json", "qwen2.5", "<|begin_of_text|>", "as one token"),
    (
        T / "chatglm3" / "alt-chatglm3-6b-32k" / "tokenizer_config.json",
        "qwen2.5",
        "<|assistant|>",
        "as one token",
    ),
    (T / "mistral-7b-instruct-v0.3", "llama2/tokenizer.model", "[INST]", "as one token"),  # text in Llama-2
]


@pytest.mark.parametrize(
    ("fmt_where", "tok_where", "token", "words"), MISMATCHES, ids=lambda v: Path(str(v)).name
)
def test_mismatched_pair_is_refused_naming_format_tokenizer_and_first_missing_token(
    fmt_where, tok_where, token, words
):
    if isinstance(fmt_where, Path) and not fmt_where.exists():
        pytest.skip(f"{fmt_where} is not in the shared test data")
    fmt, t = chatfmt.load_format(fmt_where), tok(tok_where)
    with pytest.raises(TokenizerMismatchError) as err:
        check_tokenizer(fmt, t)
    e = err.value
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"format '{fmt.info.name}'") and f"the tokenizer {t.source}" in msg
    assert repr(token) in msg and words in msg and OPT_OUT in msg
    assert (e.format, e.tokenizer, e.token) == (fmt.info.name, t.source, token)
    assert isinstance(e, ChatfmtError) and isinstance(e, ValueError)
    # the first missing token is the first in render order
    assert missing_tokens(fmt, t)[0].token.text == token


def test_chatglm3s_literal_ids_must_be_those_tokens(smollm2_gguf):
    """Every literal id ChatGLM3 writes exists in its own vocabulary with the text it stands for;
    a vocabulary of 49k ids lacks them (ids 64790... are beyond it)."""
    fmt = chatfmt.load_format("chatglm3")
    reqs = {r.text: r.ids for r in required_tokens(fmt)}
    assert reqs["[gMASK]"] == (64790,) and reqs["sop"] == (64792,) and reqs["<|user|>"] == (64795,)
    assert reqs[" \n "] == (30910, 13)  # the empty metadata line: several ids, each must exist
    miss = missing_tokens(fmt, tok(smollm2_gguf))
    assert miss[0].token.text == "[gMASK]" and "outside this tokenizer's vocabulary" in miss[0].reason


def test_bare_template_relies_on_the_token_shaped_literals_it_writes():
    """A template string with no token files: the control-token-shaped literals it writes are relied
    on; a role marker it builds from the role name (``<|{{ role }}|>``) is not known to be a token."""
    t = tok("llama2/tokenizer.model")
    zephyr_like = chatfmt.from_template(
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
    )
    assert [r.text for r in required_tokens(zephyr_like)] == ["</s>"]
    check_tokenizer(zephyr_like, t)
    chatml_like = chatfmt.from_template(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    with pytest.raises(TokenizerMismatchError, match="'<|im_start|>' as one token"):
        check_tokenizer(chatml_like, t)


# -- runs without the shared test data: SmolLM2's GGUF and mistral-common's tokenizers ------------


def test_without_shared_data_baichuan2_on_the_default_models_vocabulary_is_refused(smollm2_gguf):
    t = tok(smollm2_gguf)
    with pytest.raises(
        TokenizerMismatchError, match=r"it writes '<reserved_106>' as token id 195, which is 'ć'"
    ):
        chatfmt.load_format("baichuan2").encode(CONV, t)
    ids = chatfmt.load_format("baichuan2").encode(CONV, t, allow_missing_tokens=True).input_ids
    assert ids[0] == 195  # the opt-out writes the literal id, whatever it means here


def test_without_shared_data_mistral_formats_and_mistral_commons_tokenizers(smollm2_gguf):
    v1, v3 = tok("mc:tokenizer.model.v1"), tok("mc:mistral_instruct_tokenizer_240323.model.v3")
    for name, t in (("mistral-v1", v1), ("llama-2", v1), ("zephyr", v1), ("mistral-v3", v3)):
        check_tokenizer(chatfmt.load_format(name), t)
    with pytest.raises(TokenizerMismatchError, match=r"'<s>' as token id 1, which is '<\|im_start\|>'"):
        check_tokenizer(chatfmt.load_format("mistral-v3"), tok(smollm2_gguf))
    with pytest.raises(TokenizerMismatchError, match="'<|im_start|>' as one token"):
        check_tokenizer(chatfmt.load_format("chatml"), v1)


# -- every entry point refuses before any work; the opt-out works; a matching pair passes ---------


@pytest.fixture(scope="module")
def smol(smollm2_gguf) -> Any:
    return tok(smollm2_gguf)


def test_encode_entry_points_refuse_and_the_opt_out_encodes(smol):
    bad, good = chatfmt.load_format("baichuan2"), chatfmt.load_format("smollm2")
    for call in (
        lambda **k: encode(bad, CONV, smol, **k),
        lambda **k: encode_batch(bad, [CONV, CONV], smol, **k),
        lambda **k: bad.encode(CONV, smol, **k),
    ):
        with pytest.raises(TokenizerMismatchError):
            call()
        assert call(allow_missing_tokens=True)
    assert encode(good, CONV, smol).input_ids == good.encode(CONV, smol).input_ids


def test_incremental_encoder_and_bridge_ids_refuse_and_the_opt_out_encodes(smol):
    bad = chatfmt.load_format("baichuan2")
    with pytest.raises(TokenizerMismatchError):
        IncrementalEncoder(bad, smol)
    assert IncrementalEncoder(bad, smol, allow_missing_tokens=True).encode(CONV) == [
        195,
        *smol.encode_text("Hi"),
        196,
    ]
    with pytest.raises(TokenizerMismatchError):
        bridge_ids(bad, smol, [195], [], CONV, {"role": "assistant", "content": "x"}, CONV)
    good = chatfmt.load_format("smollm2")
    enc = IncrementalEncoder(good, smol)
    assert enc.encode(CONV) == good.encode(CONV, smol, add_generation_prompt=True).input_ids


def test_prepare_refuses_before_reading_any_record_and_writes_nothing(smollm2_gguf, tmp_path):
    out = tmp_path / "out.jsonl"
    missing_input = tmp_path / "no-such-input.jsonl"  # the mismatch is reported first: nothing was read
    for workers in (1, 2):
        with pytest.raises(TokenizerMismatchError, match="format 'baichuan2' does not fit"):
            chatfmt.prepare(missing_input, "baichuan2", smollm2_gguf, out, workers=workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_prepare_opt_out_and_matching_pair_write_rows_in_workers_too(smollm2_gguf, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [*CONV, {"role": "assistant", "content": f"Hello {k}"}]}) + "\n"
            for k in range(3)
        )
    )
    for fmt_name, allow in (("baichuan2", True), ("smollm2", False)):
        for workers in (1, 2):
            out = tmp_path / f"{fmt_name}-{workers}.jsonl"
            report = chatfmt.prepare(
                data, fmt_name, str(smollm2_gguf), out, workers=workers, allow_missing_tokens=allow
            )
            assert report.written == 3
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            if fmt_name == "baichuan2":
                assert all(r["input_ids"][0] == 195 for r in rows)


def test_chat_refuses_before_the_model_loads(smollm2_gguf):
    # the backend named here does not exist: reaching it would be a BackendError, not the mismatch
    with pytest.raises(TokenizerMismatchError, match="format 'baichuan2' does not fit the tokenizer"):
        chatfmt.Chat(smollm2_gguf, backend="no-such-backend", format="baichuan2")
    with pytest.raises(TokenizerMismatchError, match="format 'llama-3' does not fit"):
        chatfmt.Chat(smollm2_gguf, backend="no-such-backend", format="llama-3")
    with pytest.raises(ChatfmtError, match="unknown backend"):  # a pair that fits gets as far as the backend
        chatfmt.Chat(smollm2_gguf, backend="no-such-backend", format="chatml")
    with pytest.raises(ChatfmtError, match="unknown backend"):  # ... and so does the opt-out
        chatfmt.Chat(smollm2_gguf, backend="no-such-backend", format="baichuan2", allow_missing_tokens=True)


def test_serve_engine_refuses_before_the_model_loads(smollm2_gguf):
    from chatfmt.cli.serve import build_engine

    opts = dict(
        model=str(smollm2_gguf),
        backend="no-such-backend",
        tokenizer=None,
        model_name=None,
        upstream=None,
        upstream_kind="llama.cpp",
        upstream_model=None,
        upstream_prompt="ids",
        upstream_api_key=None,
        upstream_concurrency=1,
        n_ctx=None,
    )
    with pytest.raises(TokenizerMismatchError, match="format 'baichuan2' does not fit"):
        build_engine(chat_format="baichuan2", **opts)
    with pytest.raises(ChatfmtError, match="unknown backend"):
        build_engine(chat_format="baichuan2", allow_missing_tokens=True, **opts)
    # proxy mode: the upstream's tokenizer and the format are checked before the engine exists
    up = {**opts, "upstream": "http://127.0.0.1:9", "tokenizer": str(smollm2_gguf)}
    with pytest.raises(TokenizerMismatchError):
        build_engine(chat_format="baichuan2", **up)
    assert build_engine(chat_format="chatml", **up).format.info.name == "chatml"


def test_server_app_refuses_a_mismatched_engine_unless_allowed(smollm2_gguf):
    pytest.importorskip("fastapi")
    from chatfmt.server import create_app
    from chatfmt.server.engines import UpstreamEngine

    def engine(fmt_name: str) -> Any:
        return UpstreamEngine(
            "http://127.0.0.1:9",
            kind="llama.cpp",
            tokenizer=tok(smollm2_gguf),
            format=chatfmt.load_format(fmt_name),
        )

    with pytest.raises(TokenizerMismatchError):
        create_app(engine("baichuan2"))
    assert create_app(engine("baichuan2"), allow_missing_tokens=True) is not None
    assert create_app(engine("smollm2")) is not None


# -- the CLI: exit 2, one line -------------------------------------------------------------------


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("chatfmt: error: format ")
    return lines[0]


def test_cli_encode_refuses_with_exit_2_and_one_line(smollm2_gguf, tmp_path):
    conv = tmp_path / "c.json"
    conv.write_text(json.dumps(CONV))
    res = runner.invoke(app, ["encode", str(conv), "-f", "baichuan2", "-t", str(smollm2_gguf), "--json"])
    assert res.exit_code == 2
    line = _one_error_line(res.output)
    assert "'<reserved_106>' as token id 195" in line and "--allow-missing-tokens" in line
    # refused before the input is read: a missing input file is not what is reported
    res = runner.invoke(
        app, ["encode", str(tmp_path / "missing.json"), "-f", "baichuan2", "-t", str(smollm2_gguf)]
    )
    assert res.exit_code == 2 and "does not fit" in res.output
    res = runner.invoke(
        app,
        ["encode", str(conv), "-f", "baichuan2", "-t", str(smollm2_gguf), "--json", "--allow-missing-tokens"],
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["input_ids"][0] == 195
    res = runner.invoke(app, ["encode", str(conv), "-f", "smollm2", "-t", str(smollm2_gguf), "--json"])
    assert res.exit_code == 0, res.output


def test_cli_prepare_refuses_with_exit_2_and_one_line(smollm2_gguf, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"messages": [*CONV, {"role": "assistant", "content": "Hello"}]}) + "\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(
        app,
        ["prepare", str(data), "-f", "baichuan2", "-t", str(smollm2_gguf), "-o", str(out), "-q", "-w", "1"],
    )
    assert res.exit_code == 2
    _one_error_line(res.output)
    assert not out.exists()
    res = runner.invoke(
        app,
        [
            "prepare",
            str(data),
            "-f",
            "baichuan2",
            "-t",
            str(smollm2_gguf),
            "-o",
            str(out),
            "-q",
            "-w",
            "1",
            "--allow-missing-tokens",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["input_ids"][0] == 195


def test_cli_chat_refuses_the_wrong_format_for_the_default_model_before_loading_it(smollm2_gguf):
    res = runner.invoke(
        app,
        ["chat", "--model", str(smollm2_gguf), "--backend", "no-such-backend", "-f", "baichuan2", "-p", "Hi"],
    )
    assert res.exit_code == 2
    line = _one_error_line(res.output.replace("loading the model ...", ""))
    assert "format 'baichuan2' does not fit the tokenizer" in line and str(smollm2_gguf) in line


def test_cli_serve_refuses_with_exit_2_and_one_line(smollm2_gguf):
    pytest.importorskip("uvicorn")
    res = runner.invoke(
        app, ["serve", "--model", str(smollm2_gguf), "--backend", "no-such-backend", "-f", "baichuan2"]
    )
    assert res.exit_code == 2
    assert "format 'baichuan2' does not fit" in res.output


# -- the cost: once per format, once per pair -------------------------------------------------------


def test_the_check_is_computed_once_per_format_and_per_pair(smol):
    fmt = chatfmt.load_format("llama-3")
    assert required_tokens(fmt) is required_tokens(fmt)
    from chatfmt import compat

    check_tokenizer(fmt, smol, allow_missing_tokens=True)  # the opt-out does not even look
    assert compat._pairs.get(fmt) is None
    with pytest.raises(TokenizerMismatchError):
        check_tokenizer(fmt, smol)
    cached = compat._pairs.get(fmt)[id(smol)]
    with pytest.raises(TokenizerMismatchError):
        check_tokenizer(fmt, smol)
    assert compat._pairs.get(fmt)[id(smol)] is cached


# -- tags vocabularies keep as plain added tokens are not required ---------------------------------


def test_plain_added_tags_are_not_required(smol):
    """Qwen2.5's <tool_call> and Qwen3's <think> are ordinary (non-special) added tokens in the
    vocabularies that have them: the ChatML markers are what these formats rely on."""
    check_tokenizer(chatfmt.load_format("qwen2.5"), smol)
    assert [r.text for r in required_tokens(chatfmt.load_format("qwen3"))] == ["<|im_start|>", "<|im_end|>"]
    check_tokenizer(chatfmt.load_format("qwen3"), tok("qwen2.5"))


@pytest.mark.slow
def test_chat_set_format_refuses_and_keeps_the_format_it_had(smollm2_gguf):
    """A loaded model: switching to a format its vocabulary cannot hold is refused and changes
    nothing (the REPL's /format shows the error line); the opt-out chats in that format anyway."""
    from chatfmt.inference.backends import load_backend

    # llama.cpp: a loaded model without transformers' GGUF dequantization (nothing is generated here)
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')"
    )
    backend = load_backend(smollm2_gguf, "llama.cpp", n_ctx=256)
    chat = chatfmt.Chat(backend=backend)
    before, encoder = chat.format, chat.encoder
    with pytest.raises(TokenizerMismatchError, match="format 'baichuan2' does not fit"):
        chat.set_format("baichuan2")
    assert chat.format is before and chat.encoder is encoder
    with pytest.raises(TokenizerMismatchError):
        chatfmt.Chat(backend=backend, format="baichuan2")
    forced = chatfmt.Chat(backend=backend, format="baichuan2", allow_missing_tokens=True, max_new_tokens=8)
    forced.messages.append({"role": "user", "content": "Hi"})
    assert forced.prompt_ids()[0] == 195
    chat.set_format("chatml")
    assert chat.format.name == "chatml"


def test_dataset_map_function_refuses_and_the_opt_out_encodes(smollm2_gguf, smol):
    from chatfmt.train import dataset_map_function

    batch = {"messages": [[*CONV, {"role": "assistant", "content": "Hello"}]]}
    with pytest.raises(TokenizerMismatchError):  # objects: at once
        dataset_map_function(chatfmt.load_format("baichuan2"), smol)
    fn = dataset_map_function("baichuan2", str(smollm2_gguf))  # names: on first use
    with pytest.raises(TokenizerMismatchError):
        fn(batch)
    out = dataset_map_function("baichuan2", str(smollm2_gguf), allow_missing_tokens=True)(batch)
    assert out["error"] == [None] and out["input_ids"][0][0] == 195
    assert dataset_map_function("smollm2", smol)(batch)["error"] == [None]


# -- a pair that passes encodes every token it relies on as that one token -------------------------

_BUILTINS = [f.name for f in chatfmt.list_formats()]
_SHIPPED = [
    "mc:tokenizer.model.v1",
    "mc:mistral_instruct_tokenizer_240323.model.v3",
    "mc:mistral_instruct_tokenizer_241114.model.v7",
    "mc:tekken_240911.json",
]
_TEXT = st.text(st.sampled_from(list("abc xyz\n你好é🙂")), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt_name=st.sampled_from(_BUILTINS),
    tok_where=st.sampled_from(["smol", *_SHIPPED]),
    system=st.none() | _TEXT,
    turns=st.lists(_TEXT, min_size=1, max_size=4),
)
def test_a_pair_that_passes_writes_every_required_token_as_that_one_token(
    smollm2_gguf, fmt_name, tok_where, system, turns
):
    from chatfmt.compat import _text_id

    t = tok(smollm2_gguf) if tok_where == "smol" else tok(tok_where)
    fmt = chatfmt.load_format(fmt_name)
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user" if k % 2 == 0 else "assistant", "content": x} for k, x in enumerate(turns)
    ]
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "?"})
    if missing_tokens(fmt, t):
        with pytest.raises(TokenizerMismatchError):
            fmt.encode(msgs, t, add_generation_prompt=True)
        return
    try:
        rendered = fmt.render_segments(msgs, add_generation_prompt=True)
    except ChatfmtError:
        return  # the format refuses this conversation
    ids = fmt.encode(msgs, t, add_generation_prompt=True).input_ids
    for seg in rendered.segments:
        if seg.token_ids is not None and len(seg.token_ids) == 1:
            assert t.id_to_token(seg.token_ids[0]) == seg.text or _text_id(t, seg.text) == seg.token_ids[0]
    control = "".join(s.text for s in rendered.segments if s.kind == "control" and s.token_ids is None)
    for req in required_tokens(fmt):
        if req.ids is None and req.text in control:
            assert ids.count(_text_id(t, req.text)) >= control.count(req.text), req.text
