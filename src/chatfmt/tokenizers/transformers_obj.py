"""A transformers tokenizer object (``PreTrainedTokenizerBase``) passed in, e.g. from
``AutoTokenizer.from_pretrained``.

Plain text is encoded the way transformers encodes it with special tokens off:
``encode(text, add_special_tokens=False, split_special_tokens=True)``. Control tokens are the
object's special tokens (``all_special_tokens``), its added tokens marked special, the added tokens
that look like control tokens (:func:`~chatfmt.tokenizers.base.looks_like_control`),
``control_tokens=``, and for a slow tokenizer built on a sentencepiece model (``sp_model``) the
control pieces of that model as :mod:`chatfmt.tokenizers.sentencepiece` classifies them
(Baichuan2's ``<reserved_106>``). If transformers still produces one of those ids from plain text
(a fast tokenizer that declares ``</s>`` a non-special added token, as Phi-3's does; Baichuan2's
slow tokenizer, whose sentencepiece model matches ``<reserved_106>`` in text), that text is encoded
instead by a copy of the object's backend prepared the chatfmt way (``tokenizers`` document as in
:mod:`hf_json`, or the ``sp_model`` as in :mod:`chatfmt.tokenizers.sentencepiece`); a slow
tokenizer with neither raises :class:`~chatfmt.tokenizers.base.TokenizerError` there.

Offsets come from ``return_offsets_mapping`` for fast tokenizers; slow ones get best-effort offsets
from incremental decoding (quadratic in the run length; exact when the tokenizer decodes back to
the text, empty spans where it does not). ``prefix_space=False`` needs a fast tokenizer (it uses
the prepared backend copy); slow tokenizers ignore it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .base import TextEncoding, Tokenizer, TokenizerError, looks_like_control
from .hf_json import HFTokenizer, has_prefix_space


class TransformersTokenizer(Tokenizer):
    """A transformers ``PreTrainedTokenizerBase`` under the chatfmt contract."""

    kind = "transformers"

    def __init__(self, tokenizer: Any, *, control_tokens: Iterable[str] = (), source: str | None = None) -> None:
        if not hasattr(tokenizer, "encode") or not hasattr(tokenizer, "decode"):
            raise TokenizerError(f"not a transformers tokenizer: {type(tokenizer).__name__}")
        self._tok = tokenizer
        self.source = source or getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
        self._fast = bool(getattr(tokenizer, "is_fast", False)) and hasattr(tokenizer, "backend_tokenizer")
        extra = set(control_tokens)
        control: dict[str, int] = {}
        plain: dict[str, int] = {}
        named = {t for t in (getattr(tokenizer, "all_special_tokens", None) or []) if isinstance(t, str)}
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        for idx, at in sorted(decoder.items()):
            text = str(getattr(at, "content", at))
            if getattr(at, "special", False) or looks_like_control(text) or text in named or text in extra:
                control[text] = int(idx)
            else:
                plain[text] = int(idx)
        # named specials outside the added tokens: control when they look it (a pad token that is an
        # ordinary piece, such as "!", stays ordinary: the tokenizer produces it from text)
        for text in named | extra:
            if text not in control and text not in plain and (text in extra or looks_like_control(text)):
                i = self.token_to_id(text)
                if i is not None:
                    control[text] = i
        # control tokens that absorb the whitespace beside them (Phi-3's role markers: rstrip)
        self._strip = {
            int(idx): (bool(getattr(at, "lstrip", False)), bool(getattr(at, "rstrip", False)))
            for idx, at in decoder.items()
            if (getattr(at, "lstrip", False) or getattr(at, "rstrip", False))
            and control.get(str(getattr(at, "content", at))) == int(idx)
        }
        self._delegate: Tokenizer | None = None
        sp_model = getattr(tokenizer, "sp_model", None)
        if not self._fast and sp_model is not None and hasattr(sp_model, "serialized_model_proto"):
            from .sentencepiece import SentencePieceTokenizer

            self._delegate = SentencePieceTokenizer(
                bytes(sp_model.serialized_model_proto()), source=self.source, control_tokens=set(control)
            )
            for text, i in self._delegate.special_tokens.items():
                if text not in plain:
                    control.setdefault(text, i)
        self._control = control
        self._plain = plain
        unk_id = getattr(tokenizer, "unk_token_id", None)
        self._unk_exempt = unk_id if isinstance(unk_id, int) else None
        self._prefix = self._detect_prefix()
        self._add_bos = self._detect_add_bos()

    # -- detection

    def _detect_prefix(self) -> bool:
        if self._fast:
            try:
                return has_prefix_space(json.loads(self._tok.backend_tokenizer.to_str()))
            except Exception:  # pragma: no cover - unusual backends
                pass
        try:
            ids = self._tok.encode("a", add_special_tokens=False)
            first = self._tok.convert_ids_to_tokens(ids[:1])
            return bool(first) and isinstance(first[0], str) and first[0].startswith(("\u2581", "\u0120"))
        except Exception:  # pragma: no cover
            return False

    def _detect_add_bos(self) -> bool:
        flag = getattr(self._tok, "add_bos_token", None)
        if isinstance(flag, bool):
            return flag
        bos = self.bos_id
        if bos is None:
            return False
        try:
            ids = self._tok.encode("a", add_special_tokens=True)
        except Exception:  # pragma: no cover
            return False
        return bool(ids) and ids[0] == bos

    def _backend_copy(self) -> Tokenizer:
        if self._delegate is None:
            if not self._fast:
                raise TokenizerError(
                    "plain text produced a control id and this slow tokenizer has no backend chatfmt can "
                    "encode with (neither tokenizers nor sp_model)",
                    source=self.source,
                )
            doc = json.loads(self._tok.backend_tokenizer.to_str())
            self._delegate = HFTokenizer(doc, source=self.source, extra_control=set(self._control))
        return self._delegate

    # -- properties

    @property
    def backend(self) -> Any:
        """The wrapped transformers tokenizer."""
        return self._tok

    @property
    def special_tokens(self) -> dict[str, int]:
        return self._control

    @property
    def added_tokens(self) -> dict[str, int]:
        return self._plain

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def bos_token(self) -> str | None:
        t = getattr(self._tok, "bos_token", None)
        return t if isinstance(t, str) else None

    @property
    def eos_token(self) -> str | None:
        t = getattr(self._tok, "eos_token", None)
        return t if isinstance(t, str) else None

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    @property
    def add_prefix_space(self) -> bool:
        return self._prefix

    @property
    def control_strip(self) -> dict[int, tuple[bool, bool]]:
        return self._strip

    # -- encoding

    def _leaks(self, ids: Sequence[int]) -> bool:
        ctrl = self.control_ids
        return bool(ctrl) and not ctrl.isdisjoint(ids)

    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
        if prefix_space is False and self._prefix and self._fast:
            return self._backend_copy().encode_text(text, prefix_space=False)
        ids = list(self._tok.encode(text, add_special_tokens=False, split_special_tokens=True))
        if self._leaks(ids):
            ids = self._backend_copy().encode_text(text)
        return ids

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding:
        if prefix_space is False and self._prefix and self._fast:
            return self._backend_copy().encode_text_with_offsets(text, prefix_space=False)
        if self._fast:
            enc = self._tok(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            if self._leaks(ids):
                return self._backend_copy().encode_text_with_offsets(text)
            return TextEncoding(ids, [tuple(o) for o in enc["offset_mapping"]])
        ids = list(self._tok.encode(text, add_special_tokens=False, split_special_tokens=True))
        if self._leaks(ids):
            return self._backend_copy().encode_text_with_offsets(text)
        return TextEncoding(ids, self._offsets_by_decoding(text, ids))

    def _offsets_by_decoding(self, text: str, ids: list[int]) -> list[tuple[int, int]]:
        ends: list[int] = []
        prev = 0
        for k in range(1, len(ids) + 1):
            d = self._tok.decode(ids[:k])
            if d.endswith("\ufffd"):
                ends.append(prev)
                continue
            n = 0
            limit = min(len(d), len(text))
            while n < limit and d[n] == text[n]:
                n += 1
            # a decoded prefix that drops the leading dummy space still lines up from the start
            prev = max(prev, n)
            ends.append(prev)
        spans = []
        start = 0
        for e in ends:
            spans.append((start, e))
            start = e
        # tokens that only carried part of a character: give them the span of the token completing it
        for k in range(len(spans) - 2, -1, -1):
            if spans[k][0] == spans[k][1] and spans[k + 1][0] == spans[k][0]:
                spans[k] = spans[k + 1]
        return spans

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]:
        if not self._fast or (prefix_space is False and self._prefix):
            return [self.encode_text(t, prefix_space=prefix_space) for t in texts]
        out = [list(x) for x in self._tok(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]]
        for k, ids in enumerate(out):
            if self._leaks(ids):
                out[k] = self._backend_copy().encode_text(texts[k])
        return out

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        text: str = self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text

    def token_to_id(self, token: str) -> int | None:
        try:
            i = self._tok.convert_tokens_to_ids(token)
        except Exception:
            return None
        if not isinstance(i, int):
            return None
        unk = getattr(self._tok, "unk_token_id", None)
        if i == unk and token != getattr(self._tok, "unk_token", None):
            return None
        return i

    def id_to_token(self, id: int) -> str | None:
        if id < 0 or id >= len(self._tok):
            return None
        try:
            t = self._tok.convert_ids_to_tokens(int(id))
        except Exception:
            return None
        return t if isinstance(t, str) else None
