"""The vocabulary of a GGUF file, rebuilt as an equivalent ``tokenizers`` tokenizer (no weights are
read, no llama.cpp needed). Behaviour follows llama.cpp's ``src/llama-vocab.cpp``:

* ``tokenizer.ggml.model = "llama"`` (SPM): llama.cpp merges the adjacent pair whose result has the
  highest score, leftmost first, and falls back to ``<0xXX>`` byte tokens. Built as a BPE whose merges
  are every split of every vocabulary piece into two pieces, ranked by the merged piece's score
  (then id); normalizer ``Prepend("▁")`` (when ``add_space_prefix``, default on) + spaces -> ``▁``,
  no pre-tokenizer, byte fallback.
* ``"gpt2"`` (byte-level BPE): the file's merges; the pre-tokenizer is the regex list llama.cpp uses
  for ``tokenizer.ggml.pre`` (table :data:`chatfmt.tokenizers._pretok.GGUF_PRE`, one isolated
  ``Split`` per regex, then ``ByteLevel``), ``ignore_merges`` for Llama-3-style vocabularies; a
  missing ``pre`` is llama.cpp's "default" (noted), an unknown one is an error, as in llama.cpp.
* ``"bert"`` (WPM): ``WordPiece`` over the vocabulary with llama.cpp's phantom-space pieces turned
  back into ``##`` continuations, BERT normalizer (lower-casing, accent stripping, CJK spacing)
  and pre-tokenizer. ``t5``/``rwkv`` vocabularies are not supported.

A model whose ``general.name`` contains ``phi-3``/``phi3`` gets llama.cpp's Phi-3 rule: its special
tokens (but ``<unk>``, ``<s>``, ``<|endoftext|>``) absorb the whitespace after them (``rstrip``).

Token types: CONTROL and UNKNOWN tokens are control tokens; USER_DEFINED tokens are matched in plain
text before tokenization (llama.cpp does so even with ``parse_special=false``) unless they look like
control tokens; tokens llama.cpp itself re-types to CONTROL by their text (``<|eot_id|>``,
``<end_of_turn>``, ``<EOT>``, FIM markers, ...) are control tokens too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _pretok
from ._gguf_kv import read_gguf_kv
from .base import TokenizerError, looks_like_control
from .hf_json import HFTokenizer

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

#: texts llama.cpp re-types to CONTROL (EOT/EOM/EOG and FIM detection in llama_vocab::load)
LLAMACPP_CONTROL_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<｜end▁of▁sentence｜>", "<|eom_id|>", "<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>",
        "<PRE>", "<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>", "<|fim_middle|>",
        "<fim-middle>", "<｜fim▁end｜>", "<MID>", "<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>",
        "<|repo_name|>", "<fim-repo>", "<REPO>", "<|file_sep|>",
    }
)  # fmt: skip

#: llama.cpp keys Phi-3's whitespace stripping on ``general.name`` (lower-cased) containing one of these
PHI3_NAMES = ("phi-3", "phi3")
#: ... and exempts these tokens
PHI3_KEEP_WHITESPACE = frozenset({"<unk>", "<s>", "<|endoftext|>"})

_SPECIAL_ID_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
}


class GGUFTokenizer(HFTokenizer):
    """A GGUF vocabulary rebuilt with ``tokenizers`` (``kind = "gguf"``)."""

    kind = "gguf"
    #: ``tokenizer.ggml.model`` ("llama", "gpt2", "bert") and ``tokenizer.ggml.pre``
    gguf_model: str = ""
    gguf_pre: str | None = None


def spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[list[str]]:
    """Merges reproducing llama.cpp's score-driven SPM tokenizer: every split of a piece into two
    pieces, ranked by the merged piece's score (highest first), then by its id."""
    index = {t: i for i, t in enumerate(tokens)}
    ranked: list[tuple[float, int, int, list[str]]] = []
    for i, (piece, typ) in enumerate(zip(tokens, types)):
        if typ in (CONTROL, UNKNOWN, BYTE) or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in index and right in index:
                ranked.append((-scores[i], i, k, [left, right]))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in ranked]


def _bert_vocab(tokens: list[str]) -> dict[str, int]:
    """Undo llama.cpp's phantom-space convention: ``▁word`` starts a word, ``word`` continues one."""
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t.startswith("[") and t.endswith("]"):
            w = t
        elif t.startswith("\u2581"):
            w = t[1:]
        else:
            w = "##" + t
        vocab.setdefault(w, i)
    return vocab


def load_gguf_tokenizer(path: str | Path) -> HFTokenizer:
    """Build the tokenizer described by a GGUF file's ``tokenizer.ggml.*`` metadata."""
    p = Path(path)
    kv = read_gguf_kv(p, keys_prefix=("tokenizer.", "general.name"))
    source = str(p)
    model_type = kv.get("tokenizer.ggml.model")
    tokens = kv.get("tokenizer.ggml.tokens")
    if not isinstance(model_type, str) or not isinstance(tokens, list):
        raise TokenizerError("GGUF file has no tokenizer (tokenizer.ggml.model / .tokens)", source=source)
    n = len(tokens)
    types: list[int] = kv.get("tokenizer.ggml.token_type") or [NORMAL] * n
    notes: list[str] = []
    for i, t in enumerate(tokens):
        if not t:
            tokens[i] = f"[EMPTY_{i}]"  # llama.cpp's name for an empty token
    ids: dict[str, int] = {}
    for k, key in _SPECIAL_ID_KEYS.items():
        v = kv.get(key)
        if isinstance(v, int) and 0 <= v < n:
            ids[k] = v

    control_idx: set[int] = set()
    plain_idx: set[int] = set()
    for i, (t, typ) in enumerate(zip(tokens, types)):
        if typ in (CONTROL, UNKNOWN) or t in LLAMACPP_CONTROL_TEXTS:
            control_idx.add(i)
        elif typ == USER_DEFINED:
            (control_idx if looks_like_control(t) else plain_idx).add(i)

    def added(idxs: set[int], special: bool) -> list[dict[str, Any]]:
        return [_pretok.added_token(i, tokens[i], special=special) for i in sorted(idxs)]

    add_bos_kv = kv.get("tokenizer.ggml.add_bos_token")
    bos = tokens[ids["bos"]] if "bos" in ids else None
    eos = tokens[ids["eos"]] if "eos" in ids else None
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            notes.append(f"duplicate token text {t!r} (ids {vocab[t]} and {i}); the first is used")
            continue
        vocab[t] = i

    if model_type == "llama":
        scores = kv.get("tokenizer.ggml.scores")
        if not isinstance(scores, list) or len(scores) != n:
            raise TokenizerError("SPM vocabulary without tokenizer.ggml.scores", source=source)
        prefix = kv.get("tokenizer.ggml.add_space_prefix", True)
        merges = spm_merges(tokens, scores, types)
        unk = tokens[ids["unk"]] if "unk" in ids else next((tokens[i] for i, t in enumerate(types) if t == UNKNOWN), None)
        norms: list[dict[str, Any]] = []
        if kv.get("tokenizer.ggml.remove_extra_whitespaces", False):
            norms += [
                {"type": "Strip", "strip_left": True, "strip_right": True},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ]
        if prefix:
            norms.append({"type": "Prepend", "prepend": "\u2581"})
        norms.append({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})
        decoders: list[dict[str, Any]] = [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
        ]
        if prefix:
            decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
        doc = _pretok.document(
            _pretok.bpe_model(vocab, merges, unk_token=unk, byte_fallback=True, fuse_unk=True),
            added_tokens=added(control_idx, True) + added(plain_idx, False),
            normalizer={"type": "Sequence", "normalizers": norms},
            pre_tokenizer=None,
            decoder={"type": "Sequence", "decoders": decoders},
        )
        add_bos = True if add_bos_kv is None else bool(add_bos_kv)
    elif model_type == "gpt2":
        pre_name = kv.get("tokenizer.ggml.pre")
        if not pre_name:
            notes.append("no tokenizer.ggml.pre: llama.cpp's 'default' pre-tokenizer (llama.cpp warns too)")
            pre_name = "default"
        pre = _pretok.GGUF_PRE.get(str(pre_name))
        if pre is None:
            raise TokenizerError(f"unknown pre-tokenizer type {pre_name!r} (tokenizer.ggml.pre)", source=source)
        raw_merges = kv.get("tokenizer.ggml.merges") or []
        merges = []
        dropped = 0
        for m in raw_merges:
            k = m.find(" ", 1)
            if k < 0:
                dropped += 1
                continue
            a, b = m[:k], m[k + 1 :]
            if a in vocab and b in vocab:
                merges.append([a, b])
            else:
                dropped += 1
        if dropped:
            notes.append(f"{dropped} merges with pieces outside the vocabulary skipped")
        doc = _pretok.document(
            _pretok.bpe_model(vocab, merges, ignore_merges=pre.ignore_merges),
            added_tokens=added(control_idx, True) + added(plain_idx, False),
            pre_tokenizer=_pretok.byte_level_pre(pre.regexes),
            decoder=_pretok.BYTE_LEVEL_DECODER,
        )
        add_bos = bool(add_bos_kv) if add_bos_kv is not None else pre_name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "tekken", "chameleon")
    elif model_type == "bert":
        wp_vocab = _bert_vocab(tokens)
        unk = tokens[ids["unk"]] if "unk" in ids else "[UNK]"
        doc = _pretok.document(
            {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": wp_vocab},
            added_tokens=added(control_idx, True) + added(plain_idx, False),
            normalizer={"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
            pre_tokenizer={"type": "BertPreTokenizer"},
            decoder={"type": "WordPiece", "prefix": "##", "cleanup": True},
        )
        add_bos = True if add_bos_kv is None else bool(add_bos_kv)
        cls_id = kv.get("tokenizer.ggml.cls_token_id")
        if bos is None and isinstance(cls_id, int) and 0 <= cls_id < n:
            bos = tokens[cls_id]
    else:
        raise TokenizerError(f"GGUF tokenizer model {model_type!r} is not supported (llama, gpt2, bert are)", source=source)

    name = kv.get("general.name")
    if isinstance(name, str) and any(k in name.lower() for k in PHI3_NAMES):
        # llama.cpp (llama_vocab::load): a model *named* phi-3 gets RSTRIP on its special tokens but
        # <unk>, <s>, <|endoftext|> - what Phi-3's tokenizer.json declares (rstrip on <|user|>, <|end|>,
        # ...); nothing else in the file says so
        n_strip = 0
        for a in doc["added_tokens"]:
            if a["content"] not in PHI3_KEEP_WHITESPACE:
                a["rstrip"] = True
                n_strip += 1
        notes.append(f"general.name {name!r}: llama.cpp's Phi-3 rule, {n_strip} special tokens strip the whitespace after them")
    tok = GGUFTokenizer(doc, source=source, bos_token=bos, eos_token=eos, add_bos=add_bos, notes=notes, kind="gguf")
    tok.gguf_model = model_type
    pre_kv = kv.get("tokenizer.ggml.pre")
    tok.gguf_pre = pre_kv if isinstance(pre_kv, str) else None
    return tok
