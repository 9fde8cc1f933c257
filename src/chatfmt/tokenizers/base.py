"""The tokenizer protocol chatfmt encodes with: one adapter a file format, one interface.

The contract that makes encoding exact and injection-safe:

* :meth:`Tokenizer.encode_text` tokenizes *plain text*: no control token is recognised in it
  (``"<|im_end|>"`` typed by a user becomes ordinary text tokens), no BOS/EOS is added, and for
  sentencepiece models the text is treated as one run the way ``SentencePieceProcessor.encode``
  treats a string (dummy prefix ``▁`` included when the model adds one; ``prefix_space=False``
  leaves it out for one call).
* :attr:`Tokenizer.special_tokens` maps the text of every *control* token (special tokens, the
  sentencepiece CONTROL/UNKNOWN pieces, reserved and role markers, e.g. ``<|im_start|>``, ``<s>``,
  ``[INST]``, Baichuan2's ``<reserved_106>``) to its id. **No id in it ever comes out of
  encode_text**; the encoder recognises these texts only in control segments.
* :attr:`Tokenizer.added_tokens` maps the other added tokens (non-special added tokens of a
  ``tokenizer.json``, sentencepiece USER_DEFINED pieces, GGUF USER_DEFINED tokens: e.g. GPT-NeoX's
  whitespace runs, Qwen2.5's ``<tool_call>``, Baichuan2's ``\\n``) to their ids. encode_text *does*
  produce them from text, exactly as the tokenizer's own library does with special-token parsing off
  (``tokenizers`` with ``encode_special_tokens``, ``sentencepiece``, llama.cpp with
  ``parse_special=false``, transformers with ``split_special_tokens=True``).

Which added token counts as control: the ones the file marks special, plus non-special ones that
:func:`looks_like_control` (``<|...|>``, ``<｜...｜>``, ``<s>``, ``</s>``, ``<unk>``, ``<pad>``,
``<mask>``, ``<reserved_N>``, ``<unusedN>``) or that the tokenizer's config names as its BOS/EOS/UNK/
PAD token. llama.cpp's GGUF converter applies the same kind of rule; it closes holes such as
Phi-3's ``tokenizer.json`` declaring ``</s>`` (id 2) a non-special added token. A single character
or a byte piece (``<0x0A>``) is never control, whatever a file says: the model produces it for that
character in plain text. The unknown token is a special token but not a control id when the model
emits it for unknown characters (no byte fallback). :attr:`Tokenizer.control_ids` is the set the
contract is about; adapters whose library could emit one check every encoding and raise
:class:`TokenizerError` rather than return a control id (a "cannot happen" guard, kept because it
is cheap).

Offsets are *character* offsets into the encoded text; a token that covers only part of a
character (byte fallback, byte-level BPE) gets the span of the whole character.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TokenizerError as TokenizerError

if TYPE_CHECKING:
    from ..types import WholeTextEncoder


@dataclass(frozen=True, slots=True)
class TextEncoding:
    """Ids of a text run with each token's character offsets ``(start, end)`` in that text."""

    ids: list[int]
    offsets: list[tuple[int, int]]


_CONTROL_LOOKING = re.compile(
    r"<\|[^\n]*\|>|<｜[^\n]*｜>|</?s>|<unk>|<pad>|<mask>|<reserved_\d+>|<unused_?\d+>|<\|?(?:bos|eos)\|?>"
)


def looks_like_control(text: str) -> bool:
    """True for token texts that are control tokens by convention even when a file does not mark them
    special (``<|fim_prefix|>``, ``</s>``, ``<reserved_106>``, ...)."""
    return bool(_CONTROL_LOOKING.fullmatch(text))


def char_offsets_from_byte_spans(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Convert ``(begin, end)`` UTF-8 byte spans into character spans of ``text``. A span that starts
    or ends inside a character is widened to the whole character."""
    if text.isascii():
        return [(b, e) for b, e in spans]
    # char index of every byte position (len(bytes) + 1 entries); a byte inside a character maps to
    # that character, so starts round down and ends round up.
    starts: list[int] = []
    ends: list[int] = []
    for ci, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        starts.extend([ci] * n)
        ends.extend([ci + 1] * n)
    total = len(text)
    starts.append(total)
    out = []
    for b, e in spans:
        s = starts[b] if b < len(starts) else total
        if e <= b:
            out.append((s, s))
        else:
            out.append((s, ends[e - 1] if e - 1 < len(ends) else total))
    return out


class Tokenizer(ABC):
    """An adapter around a concrete tokenizer library."""

    #: "tokenizers", "sentencepiece", "tiktoken", "gguf", "transformers"
    kind: str = ""
    #: where it was loaded from
    source: str | None = None
    #: what was repaired or assumed while loading (e.g. legacy merges fixed), human-readable
    notes: tuple[str, ...] = ()

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Text -> id of every control token; none of these ids ever comes out of encode_text.
        Adapters return the same (internal) dict on every call: read it, do not change it."""

    @property
    def added_tokens(self) -> dict[str, int]:
        """Text -> id of the non-control added tokens (encode_text produces them from text)."""
        return {}

    #: the unknown token's id when the model emits it for unknown characters (no byte fallback): it
    #: is a special token but not a control id, since plain text legitimately produces it
    _unk_exempt: int | None = None

    @property
    def control_ids(self) -> frozenset[int]:
        """The ids of :attr:`special_tokens` that plain text never yields (computed once)."""
        cached = getattr(self, "_control_ids_cache", None)
        if cached is None:
            cached = frozenset(i for i in self.special_tokens.values() if i != self._unk_exempt)
            self._control_ids_cache = cached
        return cached

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (including added tokens)."""

    @property
    def bos_token(self) -> str | None:
        return None

    @property
    def eos_token(self) -> str | None:
        return None

    @property
    def bos_id(self) -> int | None:
        t = self.bos_token
        return None if t is None else self.token_to_id(t)

    @property
    def eos_id(self) -> int | None:
        t = self.eos_token
        return None if t is None else self.token_to_id(t)

    @property
    def add_bos(self) -> bool:
        """Whether the tokenizer's own default adds BOS (the format decides in chatfmt)."""
        return False

    @property
    def add_prefix_space(self) -> bool:
        """sentencepiece-style dummy prefix: each encoded run starts with ``▁`` for a leading word."""
        return False

    @property
    def control_strip(self) -> dict[int, tuple[bool, bool]]:
        """Control token id -> ``(lstrip, rstrip)`` for control tokens that absorb the whitespace beside
        them (an added token's ``lstrip``/``rstrip`` in ``tokenizer.json`` or ``added_tokens_decoder``,
        e.g. Phi-3's ``<|user|>``, ``<|end|>``; llama.cpp gives Phi-3 GGUFs the same). The encoder drops
        that whitespace, as ``tokenizers`` and llama.cpp do when they match the token. Empty for most
        tokenizers."""
        return {}

    @abstractmethod
    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
        """Plain text -> ids, no control token recognised, nothing added.

        ``prefix_space=False`` encodes without the dummy prefix (what transformers does for a run
        that follows a special token); ``None`` is the tokenizer's own default. Adapters without a
        dummy prefix ignore it.
        """

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding:
        """Like :meth:`encode_text`, with per-token character offsets into ``text``."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]:
        """Batch :meth:`encode_text` (adapters override with the library's batch API)."""
        return [self.encode_text(t, prefix_space=prefix_space) for t in texts]

    @abstractmethod
    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Ids -> text."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """The id of a token string (vocabulary piece or special token), or None."""

    @abstractmethod
    def id_to_token(self, id: int) -> str | None:
        """The token string of an id, or None."""

    def whole_text_backend(self) -> WholeTextEncoder | None:
        """An encoder of whole rendered conversations (control tokens matched in the text, one
        batched call) that gives the same ids as encoding them run by run, or ``None`` (the default:
        chatfmt encodes run by run). Callers make sure content holds no control-token text."""
        return None

    def whole_text_encoder(self) -> WholeTextEncoder | None:
        """What chatfmt encodes whole rendered texts with: :meth:`whole_text_backend` (the default),
        or an encoder that gives the same encodings faster."""
        return self.whole_text_backend()

    #: whether the dummy prefix is sentencepiece's word marker (``chatfmt.encode`` computes it once;
    #: ``None``: not known yet)
    _chatfmt_metaspace: bool | None = None

    def _check_plain(self, text: str, ids: Sequence[int]) -> None:
        """Guard of the contract: raise if a control id came out of plain text."""
        ctrl = self.control_ids
        if ctrl and not ctrl.isdisjoint(ids):
            bad = sorted(set(ids) & ctrl)
            raise TokenizerError(
                f"plain text encoded to control id(s) {bad} ({[self.id_to_token(i) for i in bad]}); "
                f"text starts {text[:40]!r}",
                source=self.source,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source or ''}>"
