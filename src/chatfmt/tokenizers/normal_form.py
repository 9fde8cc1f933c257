"""Encoding text that is already in a tokenizer's Unicode normal form without normalizing it again.

Many ``tokenizer.json`` files normalize to a Unicode normal form and nothing else (Qwen2/2.5/3 and
others: ``{"type": "NFC"}``). Almost all chat text is already in that form, and normalizing a string
that is in it changes nothing: the same characters, every one aligned to itself, so the ids and the
offsets of its encoding are the same with or without the normalizer. :class:`NormalFormSkip` encodes
such texts with a copy of the tokenizer that has no normalizer (3-5 % less of the tokenizer's CPU
time on the benchmark corpus, ``docs/performance.md``) and every other text with the tokenizer itself.

Whether a text is in the form is told by :func:`unicodedata.is_normalized` (a few microseconds for
a conversation), which uses Python's Unicode tables; ``tokenizers`` uses tables of its own, of
another Unicode version. Where Python's are newer (the case measured here: Python 3.11 has Unicode
14.0, ``tokenizers`` 0.23 an older version), a text Python calls normalized is one ``tokenizers``
leaves alone too: characters both know have the same normalization properties in every version
(Unicode's stability policy), and ones only Python knows are, for ``tokenizers``, unassigned
characters that it neither decomposes, reorders nor composes. Where ``tokenizers``' tables could be
newer, a character Python does not know could be one ``tokenizers`` would change; :func:`tables_agree`
checks, once per process and form, that ``tokenizers`` treats every code point Python does not
know in planes 0 and 1 (where every combining mark and every character with a decomposition has been
assigned so far) as Python does, and the normalizer is skipped only for ASCII text otherwise.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

#: the Unicode normal forms a ``tokenizers`` normalizer can be, by its ``type``
FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def normal_form(doc: dict[str, Any]) -> str | None:
    """The Unicode normal form a ``tokenizer.json`` document normalizes to, when that is all its
    normalizer does (``{"type": "NFC"}``, alone or as the one item of a ``Sequence``), else ``None``."""
    norm = doc.get("normalizer")
    if isinstance(norm, dict) and norm.get("type") == "Sequence":
        items = norm.get("normalizers")
        norm = items[0] if isinstance(items, list) and len(items) == 1 else None
    if isinstance(norm, dict) and norm.get("type") in FORMS and len(norm) == 1:
        return str(norm["type"])
    return None


@functools.cache
def tables_agree(form: str) -> bool:
    """Whether ``tokenizers`` normalizes every code point Python's :mod:`unicodedata` does not know
    (planes 0 and 1) as Python does: not decomposed, and neither reordered around nor composed
    with a combining mark beside it. (About 0.1 s, once per process and form.)"""
    from tokenizers import normalizers

    decompose = "NFKD" if form.startswith("NFK") else "NFD"
    unknown = "".join(
        chr(c) for c in range(0x20000) if not 0xD800 <= c < 0xE000 and unicodedata.category(chr(c)) == "Cn"
    )
    theirs = getattr(normalizers, decompose)()
    if theirs.normalize_str(unknown) != unknown:
        return False
    theirs = getattr(normalizers, form)()
    for pattern in ("a{}\u0323", "a\u0323{}", "a{}\u0301"):  # combining marks of class 220 and 230
        probe = "".join(pattern.format(c) for c in unknown)
        if theirs.normalize_str(probe) != unicodedata.normalize(form, probe):  # type: ignore[arg-type]
            return False
    return True


class NormalFormSkip:
    """``encode_batch`` for a ``tokenizers.Tokenizer`` whose normalizer is the Unicode normal form
    ``form``: texts already in the form go to ``bare`` (the same tokenizer without the normalizer),
    the rest to ``full()`` (the tokenizer itself, built when first needed); the encodings come back
    in the texts' order, with the ids and offsets the tokenizer itself gives every text (see the
    module doc)."""

    def __init__(self, bare: Any, full: Callable[[], Any], form: str) -> None:
        self.bare = bare
        self.full = full
        self.form = form
        #: whether Python's judgement holds for any text or only for ASCII (:func:`tables_agree`,
        #: asked when the first text that is not ASCII comes)
        self.any_text: bool | None = None

    def in_form(self, text: str) -> bool:
        """Whether ``text`` can be encoded without the normalizer."""
        if text.isascii():  # ASCII text is in every normal form, in every Unicode version
            return True
        if self.any_text is None:
            self.any_text = tables_agree(self.form)
        return self.any_text and unicodedata.is_normalized(self.form, text)  # type: ignore[arg-type]

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[Any]:
        texts = list(texts)
        skip = [self.in_form(t) for t in texts]
        if all(skip):
            return list(self.bare.encode_batch(texts, add_special_tokens=add_special_tokens))
        out: list[Any] = [None] * len(texts)
        for bare in (True, False):
            idx = [k for k, s in enumerate(skip) if s is bare]
            if not idx:
                continue
            tk = self.bare if bare else self.full()
            for k, enc in zip(
                idx, tk.encode_batch([texts[k] for k in idx], add_special_tokens=add_special_tokens)
            ):
                out[k] = enc
        return out
