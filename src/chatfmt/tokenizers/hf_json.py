"""``tokenizer.json`` (the Hugging Face ``tokenizers`` format), and the adapter every
``tokenizers``-backed tokenizer shares (vocab+merges directories and GGUF vocabularies are built as
a ``tokenizer.json`` document and wrapped the same way).

What loading does to the document, so that :meth:`encode_text` keeps the contract:

* every control token (see :mod:`chatfmt.tokenizers.base`) is marked ``special`` (Phi-3 declares
  ``</s>`` non-special; llama.cpp-style ``<|...|>`` tokens may be non-special), and encoding runs
  with ``encode_special_tokens=True``, so special tokens are never matched in plain text; the
  remaining (non-special) added tokens are matched, as ``tokenizers`` does;
* BPE merges whose result is a control token's text are dropped (sentencepiece never merges into a
  control piece either), so a control id cannot be produced by merging;
* legacy string merges with more or fewer than one space are repaired (:func:`repair_merges`):
  a JSON rewriter turned U+00A0 into U+0020 in ``llama2/tokenizer.json``; in a sentencepiece-style
  tokenizer (spaces become ``▁`` before the model sees them) a literal space can never reach the
  model, so such pieces are restored to U+00A0 - verified piece by piece against Meta's
  ``tokenizer.model``;
* the post-processor is dropped (chatfmt adds BOS/EOS itself; this also keeps byte-level offsets
  untrimmed) and truncation/padding are switched off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._hfconfig import HFConfig, read_hf_config
from .base import TextEncoding, Tokenizer, TokenizerError, looks_like_control
from .normal_form import NormalFormSkip, normal_form

if TYPE_CHECKING:
    import tokenizers

    from ..types import WholeTextEncoder

SPIECE_UNDERLINE = "\u2581"
NBSP = "\u00a0"


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TokenizerError("this tokenizer needs the 'tokenizers' package: pip install tokenizers") from e
    return tokenizers


# --------------------------------------------------------------------------- document helpers


def _components(node: Any, list_key: str) -> list[dict[str, Any]]:
    """A normalizer/pre-tokenizer/decoder node flattened (Sequence unrolled)."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out: list[dict[str, Any]] = []
        for child in node.get(list_key) or []:
            out.extend(_components(child, list_key))
        return out
    return [node]


def is_spm_style(doc: dict[str, Any]) -> bool:
    """True when spaces become ``▁`` before the model sees the text (sentencepiece-converted)."""
    for n in _components(doc.get("normalizer"), "normalizers"):
        if n.get("type") == "Replace" and n.get("pattern", {}).get("String") == " " and n.get("content") == SPIECE_UNDERLINE:
            return True
    return any(p.get("type") == "Metaspace" for p in _components(doc.get("pre_tokenizer"), "pretokenizers"))


def has_prefix_space(doc: dict[str, Any]) -> bool:
    """Whether the document adds a dummy prefix (``Prepend("▁")``, Metaspace, ByteLevel prefix)."""
    for n in _components(doc.get("normalizer"), "normalizers"):
        if n.get("type") == "Prepend" and n.get("prepend") == SPIECE_UNDERLINE:
            return True
    for p in _components(doc.get("pre_tokenizer"), "pretokenizers"):
        if p.get("type") == "Metaspace":
            scheme = p.get("prepend_scheme")
            if scheme is None:
                return bool(p.get("add_prefix_space", True))
            return scheme in ("first", "always")
        if p.get("type") == "ByteLevel" and p.get("add_prefix_space"):
            return True
    return False


def without_prefix_space(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document that adds no dummy prefix (for ``prefix_space=False``)."""
    out = dict(doc)

    def strip_norm(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if node.get("type") == "Prepend" and node.get("prepend") == SPIECE_UNDERLINE:
            return None
        if node.get("type") == "Sequence":
            kids = [k for k in (strip_norm(c) for c in node.get("normalizers") or []) if k is not None]
            return {**node, "normalizers": kids}
        return node

    def strip_pre(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        t = node.get("type")
        if t == "Metaspace":
            new = dict(node)
            if "prepend_scheme" in new:
                new["prepend_scheme"] = "never"
            new["add_prefix_space"] = False
            if "prepend_scheme" not in node:
                new.pop("add_prefix_space", None)
                new["prepend_scheme"] = "never"
            return new
        if t == "ByteLevel":
            return {**node, "add_prefix_space": False}
        if t == "Sequence":
            return {**node, "pretokenizers": [strip_pre(c) for c in node.get("pretokenizers") or []]}
        return node

    out["normalizer"] = strip_norm(doc.get("normalizer"))
    out["pre_tokenizer"] = strip_pre(doc.get("pre_tokenizer"))
    return out


def repair_merges(model: dict[str, Any], *, spm_style: bool) -> list[str]:
    """Normalize BPE merges to ``[left, right]`` pairs, repairing legacy strings that do not split
    at exactly one space. Returns notes about what was changed (empty when nothing was)."""
    merges = model.get("merges")
    if not isinstance(merges, list):
        return []
    vocab: dict[str, int] = model.get("vocab") or {}
    bad = [m for m in merges if isinstance(m, str) and m.count(" ") != 1]
    if not bad:
        return []
    notes: list[str] = []
    if spm_style and any(" " in k for k in vocab):
        renamed = {}
        for k in [k for k in vocab if " " in k]:
            new = k.replace(" ", NBSP)
            if new in vocab:
                raise TokenizerError(f"cannot repair vocab piece {k!r}: {new!r} exists too")
            renamed[k] = new
        for k, new in renamed.items():
            vocab[new] = vocab.pop(k)
        notes.append(
            f"restored U+00A0 in {len(renamed)} vocab pieces that held a literal space "
            "(unreachable in a sentencepiece-style tokenizer; a JSON rewriter had replaced U+00A0)"
        )
    fixed = 0
    out: list[Any] = []
    for m in merges:
        if isinstance(m, str) and m.count(" ") != 1:
            cands = []
            for pos, ch in enumerate(m):
                if ch != " ":
                    continue
                left, right = m[:pos], m[pos + 1 :]
                if spm_style:
                    left, right = left.replace(" ", NBSP), right.replace(" ", NBSP)
                if left in vocab and right in vocab and left + right in vocab:
                    cands.append([left, right])
            if len(cands) != 1:
                raise TokenizerError(f"cannot repair merge {m!r}: {len(cands)} possible splits")
            out.append(cands[0])
            fixed += 1
        elif isinstance(m, str):
            a, b = m.split(" ")
            out.append([a, b])
        else:
            out.append(m)
    model["merges"] = out
    notes.append(f"repaired {fixed} legacy merges that did not split at exactly one space")
    return notes


def drop_control_merges(model: dict[str, Any], control_texts: Iterable[str]) -> int:
    """Remove BPE merges that would produce a control token's text. Returns how many."""
    merges = model.get("merges")
    texts = set(control_texts) & set(model.get("vocab") or {})
    if not isinstance(merges, list) or not texts:
        return 0
    kept = []
    dropped = 0
    for m in merges:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a + b in texts:
            dropped += 1
        else:
            kept.append(m)
    if dropped:
        model["merges"] = kept
    return dropped


def _post_processor_bos(doc: dict[str, Any]) -> str | None:
    """The special token a TemplateProcessing post-processor puts first for a single sequence."""
    pp = doc.get("post_processor")
    nodes = [pp] if not isinstance(pp, dict) or pp.get("type") != "Sequence" else pp.get("processors") or []
    for node in nodes:
        if isinstance(node, dict) and node.get("type") == "TemplateProcessing":
            single = node.get("single") or []
            if single and isinstance(single[0], dict) and "SpecialToken" in single[0]:
                token: str | None = single[0]["SpecialToken"].get("id")
                return token
    return None


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _ordinary_piece(text: str) -> bool:
    return len(text) == 1 or bool(_BYTE_PIECE.fullmatch(text))


def _producible_unk(doc: dict[str, Any]) -> int | None:
    """The id of the unknown token when the model can emit it for unknown input (no byte fallback)."""
    model = doc.get("model") or {}
    unk = model.get("unk_token")
    t = model.get("type")
    if t == "Unigram":
        unk_id = model.get("unk_id")
        return unk_id if isinstance(unk_id, int) else None
    if not isinstance(unk, str) or (t == "BPE" and model.get("byte_fallback")):
        return None
    vocab = model.get("vocab")
    if isinstance(vocab, dict) and unk in vocab:
        return int(vocab[unk])
    for a in doc.get("added_tokens") or []:
        if a.get("content") == unk:
            return int(a["id"])
    return None


# --------------------------------------------------------------------------- the adapter


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` under the chatfmt contract. Build it with :meth:`from_document`
    (or the loaders :func:`load_tokenizer_json`, ``load_vocab_merges``, ``load_gguf_tokenizer``)."""

    kind = "tokenizers"

    def __init__(
        self,
        doc: dict[str, Any],
        *,
        source: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        add_bos: bool = False,
        extra_control: Iterable[str] = (),
        notes: Sequence[str] = (),
        kind: str | None = None,
    ) -> None:
        tk = _require_tokenizers()
        doc = dict(doc)
        self.source = source
        if kind:
            self.kind = kind
        notes = list(notes)
        extra = set(extra_control)
        added = [dict(a) for a in doc.get("added_tokens") or []]
        control: dict[str, int] = {}
        plain: dict[str, int] = {}
        for a in added:
            text = a.get("content", "")
            if _ordinary_piece(text):
                # a byte-fallback piece or a single character marked special is still what the model
                # produces for that character in plain text: not a control token
                plain[text] = a["id"]
            elif a.get("special") or looks_like_control(text) or text in extra:  # extra: named by config
                if not a.get("special"):
                    notes.append(f"non-special added token {text!r} ({a['id']}) treated as control")
                a["special"] = True
                # never matched in plain text; unnormalized so that id_to_token gives the text itself
                # (a normalized "<unk>" under Prepend("▁") reads back as "▁<unk>")
                a["normalized"] = False
                control[text] = a["id"]
            else:
                plain[text] = a["id"]
        doc["added_tokens"] = added
        model = doc.get("model") or {}
        vocab = model.get("vocab")
        if isinstance(vocab, dict):
            # control-looking named specials that live only in the model vocabulary (old files
            # without added_tokens); a named special that is an ordinary piece (a pad token "!")
            # stays ordinary, as the file's own library produces it from text
            for text in extra:
                if text not in control and text not in plain and text in vocab and looks_like_control(text):
                    control[text] = vocab[text]
        if model.get("type") == "BPE":
            model = dict(model)
            notes.extend(repair_merges(model, spm_style=is_spm_style(doc)))
            n = drop_control_merges(model, control)
            if n:
                notes.append(f"dropped {n} merges that produced a control token")
            doc["model"] = model
        self._add_bos_default = add_bos
        self._unk_exempt = _producible_unk(doc)
        self._prefix = has_prefix_space(doc)
        doc["post_processor"] = None
        doc["truncation"] = None
        doc["padding"] = None
        try:
            self._tok: tokenizers.Tokenizer = tk.Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
        except Exception as e:  # tokenizers raises a plain Exception on bad documents
            raise TokenizerError(f"tokenizers could not build this tokenizer: {e}", source=source) from None
        self._tok.encode_special_tokens = True
        self._noprefix: tokenizers.Tokenizer | None = None
        self._whole: tokenizers.Tokenizer | Literal[False] | None = False  # False: not built yet; None: not available
        self._form = normal_form(doc)  # the Unicode normal form that is all the normalizer does, if so
        self._whole_encoder: WholeTextEncoder | Literal[False] | None = False  # as _whole
        self._control = control
        self._plain = plain
        self._strip = {
            int(a["id"]): (bool(a.get("lstrip")), bool(a.get("rstrip")))
            for a in added
            if (a.get("lstrip") or a.get("rstrip")) and control.get(a.get("content", "")) == a["id"]
        }
        self._bos = bos_token
        self._eos = eos_token
        self.notes = tuple(notes)

    # -- construction helpers

    @classmethod
    def from_document(
        cls,
        doc: dict[str, Any],
        *,
        config: HFConfig | None = None,
        source: str | None = None,
        notes: Sequence[str] = (),
        kind: str | None = None,
    ) -> HFTokenizer:
        """Wrap a ``tokenizer.json`` document, taking BOS/EOS/add_bos from ``config`` (the side
        files) or, failing that, from the document's post-processor."""
        config = config or HFConfig()
        pp_bos = _post_processor_bos(doc)
        bos = config.bos_token or pp_bos
        add_bos = config.add_bos_token if config.add_bos_token is not None else pp_bos is not None
        extra = config.special_texts() | {s.content for s in config.added.values() if s.special}
        # config-declared added tokens (added_tokens_decoder) that the document lacks
        have = {a.get("id") for a in doc.get("added_tokens") or []}
        missing = [s for i, s in sorted(config.added.items()) if i not in have]
        if missing:
            doc = dict(doc)
            doc["added_tokens"] = list(doc.get("added_tokens") or []) + [
                {
                    "id": s.id,
                    "content": s.content,
                    "single_word": s.single_word,
                    "lstrip": s.lstrip,
                    "rstrip": s.rstrip,
                    "normalized": s.normalized,
                    "special": s.special,
                }
                for s in missing
            ]
        return cls(
            doc,
            source=source,
            bos_token=bos,
            eos_token=config.eos_token,
            add_bos=bool(add_bos),
            extra_control=extra,
            notes=notes,
            kind=kind,
        )

    @classmethod
    def from_object(cls, tokenizer: Any, *, source: str | None = None) -> HFTokenizer:
        """Wrap a ``tokenizers.Tokenizer`` object (it is copied, not changed)."""
        return cls.from_document(json.loads(tokenizer.to_str()), source=source)

    # -- properties

    @property
    def backend(self) -> Any:
        """The underlying ``tokenizers.Tokenizer`` (configured for plain text; do not mutate)."""
        return self._tok

    @property
    def special_tokens(self) -> dict[str, int]:
        return self._control

    @property
    def added_tokens(self) -> dict[str, int]:
        return self._plain

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def bos_token(self) -> str | None:
        return self._bos

    @property
    def eos_token(self) -> str | None:
        return self._eos

    @property
    def add_bos(self) -> bool:
        return self._add_bos_default

    @property
    def add_prefix_space(self) -> bool:
        return self._prefix

    @property
    def control_strip(self) -> dict[int, tuple[bool, bool]]:
        return self._strip

    # -- encoding

    def _backend_for(self, prefix_space: bool | None) -> tokenizers.Tokenizer:
        if prefix_space is False and self._prefix:
            if self._noprefix is None:
                tk = _require_tokenizers()
                doc = without_prefix_space(json.loads(self._tok.to_str()))
                self._noprefix = tk.Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
                self._noprefix.encode_special_tokens = True
            return self._noprefix
        return self._tok

    def _whole_copy(self, *, normalizer: bool = True) -> tokenizers.Tokenizer | None:
        """A new copy of the backend that matches control tokens in text (without its normalizer if
        asked), or ``None`` where encoding whole texts would not equal encoding run by run (see
        :meth:`whole_text_backend`)."""
        if self._prefix:
            return None
        added = self._tok.get_added_tokens_decoder()
        control_ids = set(self._control.values())
        if any((t.lstrip or t.rstrip) for i, t in added.items() if i in control_ids):
            return None
        tk = _require_tokenizers()
        copy: tokenizers.Tokenizer = tk.Tokenizer.from_str(self._tok.to_str())
        copy.encode_special_tokens = False
        if not normalizer:
            copy.normalizer = None
        return copy

    def whole_text_backend(self) -> WholeTextEncoder | None:
        """A copy of the backend that matches control tokens in text, to encode whole rendered
        conversations in one (batched, multi-threaded) call; ``None`` where that would not equal
        encoding run by run (a sentencepiece-style prefix space, or a control token that strips the
        whitespace beside it). Callers must make sure content holds no control-token text."""
        whole = self._whole
        if whole is False:
            self._whole = whole = self._whole_copy()
        return whole

    def whole_text_encoder(self) -> WholeTextEncoder | None:
        """What chatfmt encodes whole rendered texts with: :meth:`whole_text_backend`, or, when its
        normalizer only puts text in a Unicode normal form (Qwen's NFC), a
        :class:`~chatfmt.tokenizers.normal_form.NormalFormSkip` that encodes the texts already in
        that form with a copy that does not normalize them again (the same ids and offsets), and
        the others with :meth:`whole_text_backend` (built when the first such text comes)."""
        enc = self._whole_encoder
        if enc is False:
            if self._form is None:
                enc = self.whole_text_backend()
            else:
                bare = self._whole_copy(normalizer=False)
                enc = None if bare is None else NormalFormSkip(bare, self.whole_text_backend, self._form)
            self._whole_encoder = enc
        return enc

    def __getstate__(self) -> dict[str, Any]:
        # the copies are built again where they are needed (pickling one costs its whole vocabulary)
        state = self.__dict__.copy()
        state.update(_noprefix=None, _whole=False, _whole_encoder=False)
        return state

    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
        ids = self._backend_for(prefix_space).encode(text, add_special_tokens=False).ids
        self._check_plain(text, ids)
        return ids

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding:
        enc = self._backend_for(prefix_space).encode(text, add_special_tokens=False)
        ids = enc.ids
        self._check_plain(text, ids)
        return TextEncoding(ids, enc.offsets)

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]:
        backend = self._backend_for(prefix_space)
        batch = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        out = [e.ids for e in batch(list(texts), add_special_tokens=False)]
        ctrl = self.control_ids
        for text, ids in zip(texts, out):
            if not ctrl.isdisjoint(ids):
                self._check_plain(text, ids)
        return out

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        return self._tok.id_to_token(id)


def load_tokenizer_json(path: str | Path, *, config_dir: str | Path | None = None) -> HFTokenizer:
    """Load a ``tokenizer.json``; BOS/EOS come from ``tokenizer_config.json`` /
    ``special_tokens_map.json`` beside it (or in ``config_dir``)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"not a readable tokenizer.json: {e}", source=str(p)) from None
    if not isinstance(doc, dict) or "model" not in doc:
        raise TokenizerError("not a tokenizer.json (no 'model')", source=str(p))
    config = read_hf_config(config_dir if config_dir is not None else p.parent)
    return HFTokenizer.from_document(doc, config=config, source=str(p))
