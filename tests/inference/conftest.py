"""Fixtures for the inference tests: real tokenizers from the shared test data (each loaded once per
session, skipped with the reason when absent) and the default SmolLM2 GGUF tokenizer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import require_reference

REPO = Path(__file__).resolve().parents[2]


def _testdata_root() -> Path:
    import os

    env = os.environ.get("CHATFMT_TESTDATA")
    return Path(env) if env else REPO.parent / "shared" / "testdata"


def data_path(*parts: str) -> Path:
    """A path in the shared test data; skips the calling test (saying which) when it is absent."""
    root = _testdata_root()
    if not root.is_dir():
        require_reference(f"shared test data not found at {root}", "set CHATFMT_TESTDATA to its location")
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not in the shared test data")  # a file the shared data lacks: a skip (conftest)
    return p


def _smollm2_path() -> Path:
    from chatfmt.models import cache_dir, cached_default_model

    path = cached_default_model()
    if path is None:
        require_reference(f"the default SmolLM2 GGUF is not in {cache_dir()}", "fetch it with `python -m chatfmt.models`")
    return path


#: tokenizer name -> path loader; these are the tokenizers the exactness tests run over
TOKENIZER_PATHS: dict[str, Callable[[], Path]] = {
    "qwen2.5": lambda: data_path("qwen2.5"),  # vocab.json + merges.txt (tokenizers backend)
    "llama-2": lambda: data_path("llama2", "tokenizer.model"),  # sentencepiece
    "llama-3": lambda: data_path("llama3", "tokenizer.model"),  # tiktoken
    "mistral-v3": lambda: data_path("mistral-7b-instruct-v0.3", "tokenizer.model"),  # sentencepiece
    "smollm2-gguf": _smollm2_path,  # the default model's GGUF vocabulary
}


@functools.cache
def _load(name: str) -> Any:
    from chatfmt import load_tokenizer

    if name == "llama-3":
        pytest.importorskip("tiktoken", reason="the Llama-3 tokenizer needs the tiktoken package")
    return load_tokenizer(TOKENIZER_PATHS[name]())


def get_tokenizer(name: str) -> Any:
    """The named tokenizer, loaded once per session (skips when its file is absent)."""
    TOKENIZER_PATHS[name]()  # skip before caching anything
    return _load(name)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _smollm2_path()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path: Path) -> Any:
    return get_tokenizer("smollm2-gguf")
