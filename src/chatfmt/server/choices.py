"""``n`` choices and ``logprobs`` in OpenAI's shapes.

:class:`Choices` runs the ``n`` generations of one request one after another in the request's single
queue place (choice ``i`` samples with ``seed + i`` when the request gives a seed, so the choices are
reproducible and differ from each other); its items say which choice they belong to and how many
tokens that choice had generated when the item was made, so that the log-probabilities that go out
with a chunk are exactly those of the tokens the chunk's text came from.

:class:`TokenText` gives a token's text and exact bytes (a byte-level BPE token may hold part of a
UTF-8 character: its text then has U+FFFD where its bytes do not), which OpenAI's chat shape carries
as ``bytes``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..inference.backends.base import TokenLogprob

#: OpenAI's stand-in for a probability too small to represent
MIN_LOGPROB = -9999.0

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_DECODER = _byte_decoder()


class TokenText:
    """Each token's ``(text, bytes)`` (cached per id)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def __call__(self, tid: int) -> tuple[str, bytes]:
        got = self._cache.get(tid)
        if got is None:
            got = self._compute(tid)
            with self._lock:
                self._cache[tid] = got
        return got

    def _compute(self, tid: int) -> tuple[str, bytes]:
        tok = self.tokenizer
        piece = tok.id_to_token(tid)
        if piece is not None:
            m = _BYTE_PIECE.fullmatch(piece)
            if m:
                data = bytes([int(m.group(1), 16)])
                return data.decode("utf-8", "replace"), data
        text: str = tok.decode([tid])
        if "\ufffd" in text and piece and all(c in _BYTE_DECODER for c in piece):
            data = bytes(_BYTE_DECODER[c] for c in piece)
            return text, data
        if piece and piece.startswith("\u2581") and not text.startswith(" "):
            text = " " + text  # sentencepiece drops the space a lone piece starts with
        return text, text.encode("utf-8")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else MIN_LOGPROB


def chat_logprobs(entries: Sequence[TokenLogprob], text_of: TokenText) -> list[dict[str, Any]]:
    """``choices[].logprobs.content`` of a chat completion (or chunk)."""
    out: list[dict[str, Any]] = []
    for e in entries:
        text, data = text_of(e.token)
        top = []
        for tid, lp in e.top:
            t, b = text_of(tid)
            top.append({"token": t, "logprob": _finite(lp), "bytes": list(b)})
        out.append({"token": text, "logprob": _finite(e.logprob), "bytes": list(data), "top_logprobs": top})
    return out


def completion_logprobs(entries: Sequence[TokenLogprob], text_of: TokenText, offset: int) -> dict[str, Any]:
    """``choices[].logprobs`` of a text completion (or chunk): ``tokens``, ``token_logprobs``,
    ``top_logprobs`` (the alternatives and the sampled token, so up to ``logprobs + 1`` entries) and
    ``text_offset`` (characters from the start of the choice's text, ``offset`` for the first)."""
    tokens: list[str] = []
    lps: list[float] = []
    tops: list[dict[str, float]] = []
    offsets: list[int] = []
    for e in entries:
        text, _ = text_of(e.token)
        tokens.append(text)
        lps.append(_finite(e.logprob))
        top = {text_of(tid)[0]: _finite(lp) for tid, lp in e.top}
        top.setdefault(text, _finite(e.logprob))
        tops.append(top)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


class Choices:
    """The generations of one request's ``n`` choices, run one after another. Items are
    ``(index, item, ids)``: the choice, the generation's item, and how many ids that choice had
    generated when the item was made."""

    def __init__(self, gens: Sequence[Any]) -> None:
        self.gens = list(gens)
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        for g in self.gens:
            g.cancel()

    def __iter__(self) -> Iterator[tuple[int, Any, int]]:
        for i, g in enumerate(self.gens):
            if self._cancelled.is_set():
                return
            src = g.source
            for item in g:
                yield i, item, len(src.ids)

    @property
    def replies(self) -> list[Any]:
        return [g.reply for g in self.gens]
