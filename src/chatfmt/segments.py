"""Segments: the pieces of a rendered conversation.

A render is a list of segments. Each is either text or literal token ids, tagged with its kind
(``control``: produced by the format; ``content``: came from a message), the index of the message
it belongs to (``None`` for text outside any message, e.g. a BOS or a generation prompt), and
whether it is trained (contributes to the loss).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

CONTROL: Literal["control"] = "control"
CONTENT: Literal["content"] = "content"

SegmentKind = Literal["control", "content"]
#: what SegmentBuilder stores per piece: the fields of a Segment, as a plain tuple (cheaper to build)
_Item = tuple[str, SegmentKind, int | None, bool, tuple[int, ...] | None, tuple[int, ...] | None]


class Segment(NamedTuple):
    """One piece of a render.

    ``text`` is always set (for id segments it is the textual form, e.g. ``<reserved_106>``);
    ``token_ids``, when set, are the exact ids to emit instead of tokenizing ``text``;
    ``label_ids``, when set on a trained id segment, are the labels to use instead of the ids
    (Baichuan2's fine-tuning labels its user marker 195 with EOS, teaching the model to stop).
    (A named tuple: immutable and cheap to build, which matters on the training hot path.)
    """

    text: str
    kind: SegmentKind = CONTROL
    message: int | None = None
    trained: bool = False
    token_ids: tuple[int, ...] | None = None
    label_ids: tuple[int, ...] | None = None

    @property
    def is_control(self) -> bool:
        return self.kind == CONTROL

    @property
    def is_content(self) -> bool:
        return self.kind == CONTENT


@dataclass(slots=True)
class Rendered:
    """The result of rendering a conversation: segments, with helpers to get text and spans."""

    segments: list[Segment] = field(default_factory=list)
    #: where the user-written strings of the render came from (a :class:`chatfmt.untrusted.DataSource`),
    #: for the encoders' check that none written in control text spells a control token; ``None``
    #: for a render with no such record (segments built by hand); not compared (two renders with the
    #: same segments are equal, whatever objects they were rendered from)
    source: Any = field(default=None, compare=False)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    def __str__(self) -> str:
        return self.text

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    def char_spans(self) -> list[tuple[int, int, Segment]]:
        """``(start, end, segment)`` character offsets of every segment in :attr:`text`."""
        out = []
        pos = 0
        for seg in self.segments:
            end = pos + len(seg.text)
            out.append((pos, end, seg))
            pos = end
        return out

    def content_spans(self) -> dict[int, list[tuple[int, int]]]:
        """Character spans of message content, by message index."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for start, end, seg in self.char_spans():
            if seg.kind == CONTENT and seg.message is not None:
                spans.setdefault(seg.message, []).append((start, end))
        return spans

    def message_spans(self) -> dict[int, tuple[int, int]]:
        """Character span ``(start, end)`` covering all segments of each message."""
        spans: dict[int, tuple[int, int]] = {}
        for start, end, seg in self.char_spans():
            if seg.message is None:
                continue
            if seg.message in spans:
                spans[seg.message] = (spans[seg.message][0], end)
            else:
                spans[seg.message] = (start, end)
        return spans

    def trained_text(self) -> str:
        return "".join(s.text for s in self.segments if s.trained)


class SegmentBuilder:
    """Accumulates segments; adjacent pieces with identical tags (and no literal ids) are merged when
    the segments are built. :meth:`text` joins the text without building segments at all."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[_Item] = []

    def add(
        self,
        text: str,
        kind: SegmentKind = CONTROL,
        message: int | None = None,
        trained: bool = False,
        token_ids: tuple[int, ...] | None = None,
        label_ids: tuple[int, ...] | None = None,
    ) -> None:
        if text or token_ids is not None:
            self._items.append((text, kind, message, trained, token_ids, label_ids))

    def control(self, text: str, message: int | None = None, trained: bool = False) -> None:
        if text:
            self._items.append((text, CONTROL, message, trained, None, None))

    def content(self, text: str, message: int | None, trained: bool = False) -> None:
        if text:
            self._items.append((text, CONTENT, message, trained, None, None))

    def turn(self, message: int, header: str, text: str, end: str, trained: bool, after: str = "") -> None:
        """One message's turn, the shape every format shares: ``header`` (control, not trained),
        ``text`` (the content, trained as the message is), ``end`` (control, trained with the
        message: what the model must learn to emit) and ``after`` (control, not trained)."""
        items = self._items
        if header:
            items.append((header, CONTROL, message, False, None, None))
        if text:
            items.append((text, CONTENT, message, trained, None, None))
        if end:
            items.append((end, CONTROL, message, trained, None, None))
        if after:
            items.append((after, CONTROL, message, False, None, None))

    def ids(
        self,
        text: str,
        token_ids: tuple[int, ...],
        message: int | None = None,
        trained: bool = False,
        label_ids: tuple[int, ...] | None = None,
    ) -> None:
        self._items.append(
            (text, CONTROL, message, trained, tuple(token_ids), None if label_ids is None else tuple(label_ids))
        )

    def text(self) -> str:
        """The rendered text (what :meth:`build` would give as ``.text``), without building segments."""
        return "".join([item[0] for item in self._items])

    def build(self) -> Rendered:
        segs: list[Segment] = []
        append = segs.append
        new = _new_tuple  # a Segment from its six fields, without NamedTuple.__new__'s keyword handling
        run: list[str] = []
        key: tuple[SegmentKind, int | None, bool] | None = None
        for text, kind, message, trained, ids, labels in self._items:
            if ids is None and key == (kind, message, trained):
                run.append(text)
                continue
            if run and key is not None:
                append(new(Segment, (run[0] if len(run) == 1 else "".join(run), *key, None, None)))
                run = []
                key = None
            if ids is not None:
                append(new(Segment, (text, kind, message, trained, ids, labels)))
            else:
                run.append(text)
                key = (kind, message, trained)
        if run and key is not None:
            append(new(Segment, (run[0] if len(run) == 1 else "".join(run), *key, None, None)))
        return Rendered(segs)


_new_tuple = tuple.__new__
