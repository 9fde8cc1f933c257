"""The Hugging Face side files of a tokenizer directory: ``tokenizer_config.json``,
``special_tokens_map.json``, ``added_tokens.json``. Only what the adapters need is read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import TokenizerError

_NAMED = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


@dataclass(frozen=True, slots=True)
class AddedSpec:
    """One added token as ``tokenizer_config.json`` / ``tokenizer.json`` describe it."""

    id: int
    content: str
    special: bool = False
    normalized: bool = False
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False


@dataclass(slots=True)
class HFConfig:
    """What the side files say; every field is None/empty when no file says it."""

    directory: Path | None = None
    tokenizer_class: str | None = None
    named: dict[str, str] = field(default_factory=dict)  # "bos_token" -> "<s>", ...
    add_bos_token: bool | None = None
    add_eos_token: bool | None = None
    add_prefix_space: bool | None = None
    additional_special_tokens: list[str] = field(default_factory=list)
    added: dict[int, AddedSpec] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def bos_token(self) -> str | None:
        return self.named.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self.named.get("eos_token")

    def special_texts(self) -> set[str]:
        """Texts the config names as special (BOS/EOS/UNK/PAD/..., additional_special_tokens)."""
        return set(self.named.values()) | set(self.additional_special_tokens)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    content = value.get("content") if isinstance(value, dict) else None
    return content if isinstance(content, str) else None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"cannot read {path.name}: {e}", source=str(path)) from None


def read_hf_config(directory: str | Path | None) -> HFConfig:
    """Read ``tokenizer_config.json``, ``special_tokens_map.json`` and ``added_tokens.json`` from a
    directory (missing files are fine)."""
    cfg = HFConfig()
    if directory is None:
        return cfg
    d = Path(directory)
    cfg.directory = d
    stm = d / "special_tokens_map.json"
    if stm.is_file():
        cfg.files.append(stm.name)
        data = _load_json(stm)
        if isinstance(data, dict):
            for key in _NAMED:
                text = _token_text(data.get(key))
                if text is not None:
                    cfg.named[key] = text
            extra = data.get("additional_special_tokens") or []
            cfg.additional_special_tokens = [t for t in (_token_text(x) for x in extra) if t]
    tc = d / "tokenizer_config.json"
    if tc.is_file():
        cfg.files.append(tc.name)
        data = _load_json(tc)
        if isinstance(data, dict):
            cls = data.get("tokenizer_class")
            cfg.tokenizer_class = cls if isinstance(cls, str) else None
            for key in _NAMED:
                if key in data:
                    text = _token_text(data[key])
                    if text is not None:
                        cfg.named[key] = text
                    elif data[key] is None:
                        cfg.named.pop(key, None)
            for key in ("add_bos_token", "add_eos_token", "add_prefix_space"):
                if isinstance(data.get(key), bool):
                    setattr(cfg, key, data[key])
            extra = data.get("additional_special_tokens")
            if isinstance(extra, list) and extra:
                cfg.additional_special_tokens = [t for t in (_token_text(x) for x in extra) if t]
            decoder = data.get("added_tokens_decoder")
            if isinstance(decoder, dict):
                for key, spec in decoder.items():
                    if not isinstance(spec, dict) or not isinstance(spec.get("content"), str):
                        continue
                    try:
                        idx = int(key)
                    except ValueError:
                        continue
                    cfg.added[idx] = AddedSpec(
                        id=idx,
                        content=spec["content"],
                        special=bool(spec.get("special", False)),
                        normalized=bool(spec.get("normalized", False)),
                        lstrip=bool(spec.get("lstrip", False)),
                        rstrip=bool(spec.get("rstrip", False)),
                        single_word=bool(spec.get("single_word", False)),
                    )
    at = d / "added_tokens.json"
    if at.is_file():
        cfg.files.append(at.name)
        data = _load_json(at)
        if isinstance(data, dict):
            specials = cfg.special_texts()
            for content, idx in data.items():
                if isinstance(idx, int) and idx not in cfg.added:
                    cfg.added[idx] = AddedSpec(id=idx, content=content, special=content in specials)
    return cfg
