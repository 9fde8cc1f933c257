"""Tokenizer encodings freed together, many batches at a time, in threads that ask for it.

``tokenizers`` builds each ``Encoding`` from thousands of small allocations (a string per token, the
offsets, the normalized pieces). Measured here (Qwen2.5, 1,300-token conversations, one thread):
encoding batches of 256 texts and freeing each batch's encodings before the next costs 10-15 % more
CPU time per text than encoding the same texts while the encodings of about a thousand of them stay
alive and are then freed at once (``benchmarks/prepare_bench.py``; docs/performance.md), because
each batch then allocates among the holes the previous one left. ``prepare``'s encoding threads
therefore keep the encodings they are done with (:func:`let_go`) until about
:data:`HOLD_TOKENS` tokens are held, then free them all (:meth:`Hold.release`); a thread that did not
ask (:func:`hold_in_this_thread`) frees them at once as before. Nothing else changes: the
encodings are only kept alive a little longer, and the memory held is bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

#: tokens of finished encodings a thread keeps before it frees them together (~50 MB on Qwen2.5)
HOLD_TOKENS = 1_000_000

_LOCAL = threading.local()


class Hold:
    """The encodings one thread is done with, freed together once ``limit`` tokens are held."""

    __slots__ = ("items", "tokens", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.items: list[Sequence[Any]] = []
        self.tokens = 0
        self.limit = HOLD_TOKENS if limit is None else limit

    def add(self, encodings: Sequence[Any]) -> None:
        self.items.append(encodings)
        self.tokens += sum(len(e) for e in encodings)
        if self.tokens >= self.limit:
            self.release()

    def release(self) -> None:
        """Free what is held (the encodings nothing else refers to)."""
        self.items = []
        self.tokens = 0


def hold_in_this_thread(limit: int | None = None) -> Hold:
    """Keep the encodings this thread lets go of (:func:`let_go`) until ``limit`` tokens are held
    (default :data:`HOLD_TOKENS`)."""
    hold = Hold(limit)
    _LOCAL.hold = hold
    return hold


def release_this_thread() -> None:
    """Free what this thread holds, and hold nothing more."""
    hold: Hold | None = getattr(_LOCAL, "hold", None)
    _LOCAL.hold = None
    if hold is not None:
        hold.release()


def let_go(encodings: Sequence[Any]) -> None:
    """The caller is done with ``encodings``: kept by this thread's :class:`Hold` if it has one
    (freed later, together), else left to be freed when the caller drops them."""
    hold: Hold | None = getattr(_LOCAL, "hold", None)
    if hold is not None:
        hold.add(encodings)
