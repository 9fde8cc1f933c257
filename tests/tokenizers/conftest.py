"""Fixtures for the tokenizer adapters: the shared test data (``<repo>/../shared/testdata``, or
``$CHATFMT_TESTDATA``), a text corpus, and every adapter loaded once per session by name."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from chatfmt.tokenizers import Tokenizer

from ..conftest import require_reference

REPO = Path(__file__).resolve().parents[2]


def testdata_root() -> Path:
    env = os.environ.get("CHATFMT_TESTDATA")
    return Path(env) if env else REPO.parent / "shared" / "testdata"


TESTDATA = testdata_root()
GGML_VOCAB = TESTDATA / "ggml-vocab"


def data(*parts: str) -> Path:
    """A path in the shared test data; skips the test (saying which) when it is absent."""
    if not TESTDATA.is_dir():
        require_reference(f"shared test data not found at {TESTDATA}", "set CHATFMT_TESTDATA to its location")
    p = TESTDATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not in the shared test data")  # a file the shared data lacks: a skip (conftest)
    return p


def need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        require_reference(f"the {module!r} package is not installed", f"pip install {module}")


#: plain texts every adapter is compared on: English, Chinese, emoji, whitespace runs, code, numbers
CORPUS = [
    "Hello world",
    "Hello, world! How are you today?",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "tabs\tand\t\tnew\nlines\n\n\n",
    "\n\nstarts with newlines",
    "你好，世界！今天天气怎么样？",
    "日本語のテキストと한국어 텍스트",
    "🦙 llamas 🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "3.14159 1234567 1,000,000 2024-01-15 0x1F 1e-9",
    "Cửa Việt, Führer, naïve café, Ñandú",
    "нещо на Български",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it",
    "<html><body><p>tags &amp; entities</p></body></html>",
    "non\u00a0breaking\u00a0spaces\u00a0\u00a0here",
    "combining e\u0301 and precomposed é",
    "!!!!!!?????? ......------=======",
    "a" * 50 + " " + "b" * 50,
    "",
    " ",
    "\n",
]

# name -> loader(root) ; every adapter the contract tests run over
_LOADERS: dict[str, Callable[[], Tokenizer]] = {}


def _register(name: str):
    def deco(fn: Callable[[], Tokenizer]) -> Callable[[], Tokenizer]:
        _LOADERS[name] = fn
        return fn

    return deco


@_register("spm:llama2")
def _spm_llama2() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("llama2", "tokenizer.model"))


@_register("spm:mistral-v3")
def _spm_mistral3() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("mistral-7b-instruct-v0.3", "tokenizer.model"))


@_register("spm:mistral-v1")
def _spm_mistral1() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("mistral-common", "tokenizer.model.v1"))


@_register("spm:mistral-v7")
def _spm_mistral7() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("mistral-common", "mistral_instruct_tokenizer_241114.model.v7"))


@_register("spm:baichuan2")
def _spm_baichuan2() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("baichuan2", "tokenizer.model"))


@_register("spm:chatglm3")
def _spm_chatglm3() -> Tokenizer:
    from chatfmt.tokenizers import load_sentencepiece

    return load_sentencepiece(data("chatglm3", "tokenizer.model"))


@_register("json:llama2")
def _json_llama2() -> Tokenizer:
    from chatfmt.tokenizers import load_tokenizer_json

    return load_tokenizer_json(data("llama2", "tokenizer.json"))


@_register("json:phi3")
def _json_phi3() -> Tokenizer:
    from chatfmt.tokenizers import load_tokenizer_json

    return load_tokenizer_json(data("phi-3-mini", "tokenizer.json"))


@_register("json:mistral-v3")
def _json_mistral3() -> Tokenizer:
    from chatfmt.tokenizers import load_tokenizer_json

    return load_tokenizer_json(data("mistral-7b-instruct-v0.3", "tokenizer.json"))


@_register("vm:qwen2.5")
def _vm_qwen() -> Tokenizer:
    from chatfmt.tokenizers import load_vocab_merges

    return load_vocab_merges(data("qwen2.5"))


@_register("tiktoken:llama3")
def _tt_llama3() -> Tokenizer:
    need("tiktoken")
    from chatfmt.tokenizers import load_tiktoken

    return load_tiktoken(data("llama3", "tokenizer.model"))


@_register("tiktoken:llama4")
def _tt_llama4() -> Tokenizer:
    need("tiktoken")
    from chatfmt.tokenizers import load_tiktoken

    return load_tiktoken(data("llama4", "tokenizer.model"))


def _gguf_loader(name: str) -> Callable[[], Tokenizer]:
    def load() -> Tokenizer:
        from chatfmt.tokenizers import load_gguf_tokenizer

        return load_gguf_tokenizer(data("ggml-vocab", f"ggml-vocab-{name}.gguf"))

    return load


GGUF_NAMES = sorted(p.name[len("ggml-vocab-") : -len(".gguf")] for p in GGML_VOCAB.glob("ggml-vocab-*.gguf"))
for _name in GGUF_NAMES:
    _LOADERS[f"gguf:{_name}"] = _gguf_loader(_name)


@_register("hf:phi3-fast")
def _hf_phi3() -> Tokenizer:
    need("transformers")
    from transformers import PreTrainedTokenizerFast

    from chatfmt.tokenizers import load_tokenizer

    return load_tokenizer(PreTrainedTokenizerFast(tokenizer_file=str(data("phi-3-mini", "tokenizer.json"))))


@_register("hf:qwen2.5")
def _hf_qwen() -> Tokenizer:
    need("transformers")
    from transformers import AutoTokenizer

    from chatfmt.tokenizers import load_tokenizer

    return load_tokenizer(AutoTokenizer.from_pretrained(str(data("qwen2.5"))))


def baichuan_vendor_tokenizer():
    """Baichuan2's own (slow) tokenizer class from its model code in the test data."""
    need("transformers")
    path = data("baichuan2", "tokenization_baichuan.py")
    spec = importlib.util.spec_from_file_location("chatfmt_test_tokenization_baichuan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BaichuanTokenizer(vocab_file=str(data("baichuan2", "tokenizer.model")), add_bos_token=False)


@_register("hf:baichuan2-slow")
def _hf_baichuan() -> Tokenizer:
    from chatfmt.tokenizers import load_tokenizer

    return load_tokenizer(baichuan_vendor_tokenizer())


ADAPTER_NAMES = list(_LOADERS)

_cache: dict[str, Tokenizer] = {}


def get_tokenizer(name: str) -> Tokenizer:
    """The adapter registered under ``name``, loaded once per session (skips when data is absent)."""
    if name not in _cache:
        loader = _LOADERS.get(name)
        if loader is None and name.startswith("gguf:"):
            loader = _gguf_loader(name[len("gguf:") :])  # skips when the file is absent
        assert loader is not None, f"no adapter registered as {name!r}"
        _cache[name] = loader()
    return _cache[name]


@pytest.fixture(params=ADAPTER_NAMES)
def adapter(request) -> Tokenizer:
    return get_tokenizer(request.param)
