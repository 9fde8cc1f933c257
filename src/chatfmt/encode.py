"""Rendered segments + a tokenizer -> token ids, labels and per-message token spans.

How ids are made (exact and injection-safe):

* id segments (Baichuan2's 195/196, ChatGLM3's role tokens) are emitted as given;
* control text is split on the tokenizer's control tokens (``<|im_start|>``, ``<s>``, ...), which
  become their ids; content text is never split, so a user who types ``<|im_end|>`` gets ordinary
  text tokens (``allow_special_in_content=True`` restores the old, unsafe behaviour);
* the text between two control tokens is one *run*, tokenized as a whole (BPE merges may cross a
  boundary between control text and content, so segments are not tokenized one by one); for
  sentencepiece models each run is encoded as the vendor encodes a string (dummy prefix ``▁``
  included), ``compat="transformers"`` reproduces transformers instead (no ``▁`` at the start of a
  run that follows a control token);
* the *space rule* (tokenizers whose dummy prefix is sentencepiece's ``▁``; not a byte-level
  ``add_prefix_space``): a run after a control token that starts with a
  space the *format* wrote (control text, e.g. ``"[INST] "`` in Mistral's templates, ``"<|user|> \\n"``
  in ChatGLM3's) takes that space as its dummy prefix: the run is encoded with no prefix added, so
  the space becomes the ``▁`` (a run that is only that space gives no token: it is the prefix of an
  empty string, which the vendor encodes to nothing). This is what the vendor does when it
  encodes the text after a control token on its own (mistral-common: ``[INST]``, ``▁Hello``; ChatGLM3's
  ``build_single_message``), and what transformers' Metaspace does (it adds no ``▁`` to a split that
  already starts with one). A run that starts with *content* (a message that begins with a space)
  keeps the vendor's prefix, as the vendor encodes that content; a run at the very start of the
  sequence, or one without a leading control space (Meta's Llama-2 ``<s>`` then ``▁[``), is
  encoded as before;
* control tokens that absorb whitespace (:attr:`Tokenizer.control_strip`: ``lstrip``/``rstrip`` in a
  ``tokenizer.json`` or ``added_tokens_decoder``, e.g. Phi-3's role markers; llama.cpp's Phi-3 rule
  for a GGUF) drop the whitespace beside them, in format text and content alike, as ``tokenizers``
  and llama.cpp do (Phi-3: ``<|user|>`` then ``▁Hello``, not ``▁``, ``\\n``).

Labels come from the segments in one pass (linear in conversation length): a token is trained when
any of its characters comes from a trained segment; untrained tokens are ``-100``.
"""

from __future__ import annotations

import contextvars
import re
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, is_dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from .compat import check_tokenizer
from .errors import LengthError as LengthError
from .errors import ValidationError
from .held import let_go
from .segments import CONTENT, Rendered
from .tokenizers.base import Tokenizer
from .untrusted import check_rendered

if TYPE_CHECKING:
    from .types import FormatLike

IGNORE_INDEX = -100

Truncation = Literal["error", "right", "drop_oldest_turns"]
TrainOn = Literal["all_assistant", "last_assistant", "all"]
Compat = Literal["vendor", "transformers"] | None


@dataclass(slots=True)
class Encoded:
    """Token ids, labels (``-100`` = not trained), attention mask and token spans per message."""

    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]
    message_spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    truncated: bool = False
    dropped_messages: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels, "attention_mask": self.attention_mask}


class _Piece:
    __slots__ = ("content", "ids", "label_ids", "message", "text", "trained")

    def __init__(
        self,
        text: str,
        message: int | None,
        trained: bool,
        ids: tuple[int, ...] | None = None,
        label_ids: tuple[int, ...] | None = None,
        content: bool = False,
    ) -> None:
        self.text = text
        self.message = message
        self.trained = trained
        self.ids = ids
        self.label_ids = label_ids
        self.content = content


_special_re_cache: dict[int, tuple[dict[str, int], re.Pattern[str] | None]] = {}


def _special_pattern(tokenizer: Tokenizer) -> tuple[dict[str, int], re.Pattern[str] | None]:
    key = id(tokenizer)
    cached = _special_re_cache.get(key)
    specials = tokenizer.special_tokens
    if cached is not None and cached[0] is specials:
        return cached
    toks = sorted((t for t in specials if t), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(t) for t in toks)) if toks else None
    _special_re_cache[key] = (specials, pattern)
    return specials, pattern


def _split_control(
    text: str,
    message: int | None,
    trained: bool,
    specials: dict[str, int],
    pattern: re.Pattern[str] | None,
    out: list[_Piece],
    content: bool = False,
) -> None:
    if pattern is None:
        out.append(_Piece(text, message, trained, content=content))
        return
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append(_Piece(text[pos : m.start()], message, trained, content=content))
        tok = m.group(0)
        out.append(_Piece(tok, message, trained, (specials[tok],)))
        pos = m.end()
    if pos < len(text):
        out.append(_Piece(text[pos:], message, trained, content=content))


def _pieces(rendered: Rendered, tokenizer: Tokenizer, allow_special_in_content: bool) -> list[_Piece]:
    specials, pattern = _special_pattern(tokenizer)
    check_rendered(rendered, pattern)
    out: list[_Piece] = []
    for seg in rendered.segments:
        if seg.token_ids is not None:
            out.append(_Piece(seg.text, seg.message, seg.trained, seg.token_ids, seg.label_ids))
        elif seg.kind == CONTENT and not allow_special_in_content:
            out.append(_Piece(seg.text, seg.message, seg.trained, content=True))
        else:
            _split_control(
                seg.text, seg.message, seg.trained, specials, pattern, out, content=seg.kind == CONTENT
            )
    return out


def _encode_run(
    tokenizer: Tokenizer, text: str, at_start: bool, compat: Compat, control_space: bool = False
) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character offsets of one run. ``control_space``: the run starts with a space the format
    wrote (control text), which is then the run's dummy prefix (the space rule, see the module doc)."""
    if compat == "transformers" and not at_start and tokenizer.add_prefix_space:
        enc = tokenizer.encode_text_with_offsets(text, prefix_space=False)
    elif (
        control_space
        and not at_start
        and tokenizer.add_prefix_space
        and text.startswith(" ")
        and _metaspace(tokenizer)
    ):
        if text == " ":
            return [], []  # the prefix of an empty string: the vendor encodes "" to nothing
        if getattr(tokenizer, "removes_extra_whitespace", False):
            # a normalizer that drops leading whitespace would drop the space itself: encode what
            # follows it with the prefix, and let the first token cover the space
            enc = tokenizer.encode_text_with_offsets(text[1:])
            offsets = [(s + 1, e + 1) for s, e in enc.offsets]
            if offsets:
                offsets[0] = (0, offsets[0][1])
            return enc.ids, offsets
        enc = tokenizer.encode_text_with_offsets(text, prefix_space=False)
    else:
        enc = tokenizer.encode_text_with_offsets(text)
    return enc.ids, enc.offsets


#: what ``tokenizers`` and llama.cpp strip beside an lstrip/rstrip token (Unicode White_Space)
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _absorbs(ids: tuple[int, ...] | None, strip: dict[int, tuple[bool, bool]], side: int) -> bool:
    """Whether the id piece ``ids`` is one control token that strips whitespace on ``side`` (0: left,
    1: right)."""
    return ids is not None and len(ids) == 1 and strip.get(ids[0], (False, False))[side]


def _strip_run(
    run: Sequence[_Piece],
    before: tuple[int, ...] | None,
    after: tuple[int, ...] | None,
    strip: dict[int, tuple[bool, bool]],
) -> None:
    """Drop the whitespace a neighbouring control token absorbs (see :attr:`Tokenizer.control_strip`):
    at the start of the run after an ``rstrip`` token, at its end before an ``lstrip`` token. The
    pieces' text is shortened in place, so labels and spans follow what is encoded. Whitespace of a
    message's *content* dropped this way is said (a :class:`~chatfmt.errors.ChatfmtWarning`)."""
    dropped: list[_Piece] = []
    if _absorbs(before, strip, 1):
        for q in run:
            text = q.text.lstrip(_WHITESPACE)
            if q.content and text != q.text:
                dropped.append(q)
            q.text = text
            if text:
                break
    if _absorbs(after, strip, 0):
        for q in reversed(run):
            text = q.text.rstrip(_WHITESPACE)
            if q.content and text != q.text:
                dropped.append(q)
            q.text = text
            if text:
                break
    if dropped:
        import warnings

        from .errors import ChatfmtWarning

        where = "a message" if dropped[0].message is None else f"message {dropped[0].message}"
        warnings.warn(
            f"{where}: whitespace at the edge of its content is not encoded: the control token beside it "
            "absorbs it (lstrip/rstrip in the tokenizer, as transformers and llama.cpp encode it)",
            ChatfmtWarning,
            stacklevel=4,
        )


def _metaspace(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer's dummy prefix is sentencepiece's word marker (a space alone encodes to the
    piece ``▁``): sentencepiece models, their ``tokenizer.json`` conversions (Metaspace or
    ``Prepend("▁")``), GGUF SPM vocabularies. Not a byte-level ``add_prefix_space`` (``Ġ``), where a
    space is a character like any other. Computed once per tokenizer."""
    cached = tokenizer._chatfmt_metaspace
    if cached is None:
        try:
            ids = tokenizer.encode_text(" ", prefix_space=False)
            cached = len(ids) == 1 and tokenizer.id_to_token(ids[0]) == "\u2581"
        except Exception:  # an adapter that cannot say: keep the plain run-by-run encoding
            cached = False
        tokenizer._chatfmt_metaspace = cached
    return cached


def _control_space(run: Sequence[_Piece]) -> bool:
    """Whether a run starts with a space written by the format (control text, not content)."""
    for q in run:
        if q.text:
            return not q.content and q.text[0] == " "
    return False


def encode_rendered(
    rendered: Rendered,
    tokenizer: Tokenizer,
    *,
    compat: Compat = None,
    allow_special_in_content: bool = False,
) -> tuple[list[int], list[int], list[int | None]]:
    """Ids, labels and the message index of every token, from segments."""
    pieces = _pieces(rendered, tokenizer, allow_special_in_content)
    strip = getattr(tokenizer, "control_strip", None)
    ids: list[int] = []
    labels: list[int] = []
    owners: list[int | None] = []
    i = 0
    n = len(pieces)
    while i < n:
        p = pieces[i]
        if p.ids is not None:
            ids.extend(p.ids)
            if p.trained:
                labels.extend(p.label_ids if p.label_ids is not None else p.ids)
            else:
                labels.extend([IGNORE_INDEX] * len(p.ids))
            owners.extend([p.message] * len(p.ids))
            i += 1
            continue
        # a run of text pieces
        j = i
        while j < n and pieces[j].ids is None:
            j += 1
        run = pieces[i:j]
        if strip:
            _strip_run(run, pieces[i - 1].ids if i else None, pieces[j].ids if j < n else None, strip)
        text = "".join(q.text for q in run)
        run_ids, offsets = _encode_run(
            tokenizer, text, at_start=not ids, compat=compat, control_space=_control_space(run)
        )
        base = len(ids)
        ids.extend(run_ids)
        run_labels = [IGNORE_INDEX] * len(run_ids)
        run_owner: list[int | None] = [None] * len(run_ids)
        if run_ids:
            starts = [o[0] for o in offsets]
            ends = [o[1] for o in offsets]
            pos = 0
            for q in run:
                qs, qe = pos, pos + len(q.text)
                pos = qe
                if qe == qs:
                    continue
                # tokens overlapping [qs, qe) -- crossing tokens, and zero-width ones (a sentencepiece
                # dummy prefix) that start inside it: from the first token ending after qs or starting
                # at/after qs, up to the first token starting at/after qe
                a = min(bisect_right(ends, qs), bisect_left(starts, qs))
                b = bisect_left(starts, qe)
                if a >= b:
                    continue
                if q.trained:
                    run_labels[a:b] = run_ids[a:b]
                if q.message is not None:
                    for k in range(a, b):
                        if run_owner[k] is None:
                            run_owner[k] = q.message
        labels.extend(run_labels)
        owners.extend(run_owner)
        assert len(ids) == base + len(run_ids)
        i = j
    return ids, labels, owners


def _spans(owners: Sequence[int | None]) -> dict[int, tuple[int, int]]:
    spans: dict[int, tuple[int, int]] = {}
    for k, m in enumerate(owners):
        if m is None:
            continue
        if m in spans:
            spans[m] = (spans[m][0], k + 1)
        else:
            spans[m] = (k, k + 1)
    return spans


def _only_last_assistant(
    labels: list[int], spans: dict[int, tuple[int, int]], messages: Sequence[Any]
) -> list[int]:
    roles = [_role(m) for m in messages]
    last = max((k for k, r in enumerate(roles) if r == "assistant"), default=None)
    if last is None:
        return labels
    a, b = spans.get(last, (0, 0))
    return [IGNORE_INDEX] * a + labels[a:b] + [IGNORE_INDEX] * (len(labels) - b)


# -- the whole-text fast path -------------------------------------------------------------------


def _whole_text_ready(rendered: Rendered, tokenizer: Tokenizer, allow_special_in_content: bool) -> bool:
    """Whether encoding ``rendered.text`` in one call (control tokens matched in text) gives exactly
    what run-by-run encoding gives: no content spells a control token, and every id segment is the
    control token its text names."""
    specials, pattern = _special_pattern(tokenizer)
    for seg in rendered.segments:
        if seg.token_ids is not None:
            if len(seg.token_ids) != 1 or specials.get(seg.text) != seg.token_ids[0]:
                return False
        elif (
            seg.kind == CONTENT
            and pattern is not None
            and not allow_special_in_content
            and pattern.search(seg.text)
        ):
            return False
    check_rendered(rendered, pattern)  # user data in control text spelling a control token: refused
    return True


def _first_ending_after(t2c: Any, n: int, p: int, lo: int, per_char: float) -> int:
    """The first token index ``>= lo`` whose character range ends after ``p`` (``n`` if none), given
    that every token before ``lo`` ends at or before ``p``.

    ``token_to_chars`` answers in constant time, so this guesses the index from the text's average
    tokens per character (``per_char``), then gallops from the guess (doubling steps, up or down)
    and bisects: a few calls per lookup however long the text, where ``char_to_token`` scans from
    the start of the sequence on every call."""
    if lo >= n:
        return lo
    end = t2c(lo)[1]
    if end > p:
        return lo
    # token ``lo`` ends at or before p: the answer is in (lo, n]
    g = lo + 1 + int((p - end) * per_char)
    if g >= n:
        g = n - 1
    if g > lo and t2c(g)[1] > p:
        # the answer is in (lo, g]: gallop down from g to a token ending at or before p
        hi, step = g, 1
        while True:
            j = hi - step
            if j <= lo:
                j = lo
                break
            if t2c(j)[1] <= p:
                break
            hi, step = j, step * 2
        lo = j + 1
    else:
        # token g (or lo) ends at or before p: gallop up to one that ends after it (or n)
        prev, step = max(g, lo), 1
        while True:
            hi = prev + step
            if hi >= n:
                hi = n
                break
            if t2c(hi)[1] > p:
                break
            prev, step = hi, step * 2
        lo = prev + 1
    while lo < hi:  # token hi ends after p (or hi is n), every token before lo at or before it
        mid = (lo + hi) >> 1
        if t2c(mid)[1] > p:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _groups(
    rendered: Rendered,
) -> tuple[list[tuple[int, int, int | None, bool, tuple[int, ...] | None]], int]:
    """The character ranges ``(start, end, message, trained, label_ids)`` of ``rendered`` where the
    attributes that decide labels and spans change: consecutive non-empty segments of the same
    message and trained flag (and no label ids) are one range. A token is labelled as any of its
    characters is (see the module doc), so a union of adjacent ranges labels as its parts do; and
    the text's total length."""
    groups: list[tuple[int, int, int | None, bool, tuple[int, ...] | None]] = []
    append = groups.append
    pos = 0
    prev_m: int | None = -1  # no message has index -1: the first segment opens a range
    prev_tr = False
    open_range = False
    for seg in rendered.segments:
        size = len(seg.text)
        if not size:
            continue
        qs = pos
        pos += size
        m, tr, lab = seg.message, seg.trained, seg.label_ids
        if open_range and lab is None and m == prev_m and tr == prev_tr:
            g = groups[-1]
            groups[-1] = (g[0], pos, m, tr, None)
            continue
        append((qs, pos, m, tr, lab))
        prev_m, prev_tr, open_range = m, tr, lab is None
    return groups, pos


#: encodings up to this many tokens are searched with ``Encoding.char_to_token`` (a linear scan in
#: Rust: 0.16-0.8 us on 1,600 tokens here) rather than by galloping over ``token_to_chars`` (a few
#: Python-level calls per lookup, whatever the length; the linear scan costs more from about 4,000)
LINEAR_LOOKUP = 4096


def _labels_from_encoding(
    enc: Any, rendered: Rendered
) -> tuple[list[int], list[int], dict[int, tuple[int, int]]] | None:
    """Ids, labels and message spans of a whole-text encoding, from the segments' character ranges.

    Only the positions where a label or a message changes are looked up (:func:`_groups`), in text
    order, each by a galloping search from the previous one over ``token_to_chars``: the cost is
    about the number of messages times the log of their length in tokens, with no per-token Python
    work beyond the ids and the label list (``char_to_token`` scans from the start of the sequence
    on every call, which made this quadratic in conversation length). ``None`` when a range edge
    falls on a character no token covers (the caller then encodes run by run)."""
    ids = enc.ids
    n = len(ids)
    t2c = enc.token_to_chars
    # up to LINEAR_LOOKUP tokens, tokenizers' own char_to_token (a scan from the start, in Rust) is
    # cheaper than galloping from Python; it finds the same token (the first holding the character,
    # that is the first ending after it) or None where no token holds it (then range edges fail below)
    c2t = enc.char_to_token if n <= LINEAR_LOOKUP else None
    groups, total = _groups(rendered)
    per_char = n / total if total else 0.0
    labels = [IGNORE_INDEX] * n
    spans: dict[int, tuple[int, int]] = {}
    cursor = 0  # every token before it ends at or before the last position looked up
    last_p, last_t = -1, 0
    try:
        for qs, qe, m, trained, label_ids in groups:
            if not trained and m is None:
                continue
            if qs != last_p:
                if c2t is not None:
                    last_t = c2t(qs)
                    if last_t is None:
                        return None
                else:
                    cursor = last_t = _first_ending_after(t2c, n, qs, cursor, per_char)
                last_p = qs
            a = last_t
            if a >= n or t2c(a)[0] > qs:  # no token holds character qs
                return None
            if qe >= total:
                b = n
            else:
                # the token holding the next character ends the range, unless it crosses the boundary
                # (a character split into several byte tokens is covered by all of them)
                if c2t is not None:
                    t = c2t(qe)
                    if t is None:
                        return None
                else:
                    cursor = t = _first_ending_after(t2c, n, qe, cursor, per_char)
                last_p, last_t = qe, t
                if t >= n:
                    return None
                st = t2c(t)[0]
                if st > qe:
                    return None
                b = t + 1 if st < qe else t
            if trained:
                if label_ids is not None:
                    if b - a != len(label_ids):
                        return None
                    labels[a:b] = label_ids
                else:
                    labels[a:b] = ids[a:b]
            if m is not None:
                old = spans.get(m)
                spans[m] = (a, b) if old is None else (min(old[0], a), max(old[1], b))
    except TypeError:  # token_to_chars gave no offsets (None) for a token
        return None
    return ids, labels, spans


def encode_rendered_many(
    rendereds: Sequence[Rendered],
    tokenizer: Tokenizer,
    *,
    compat: Compat = None,
    allow_special_in_content: bool = False,
) -> list[tuple[list[int], list[int], dict[int, tuple[int, int]]]]:
    """``(ids, labels, message_spans)`` for many renders. Where the tokenizer allows it (a
    ``tokenizers`` backend without a sentencepiece-style prefix space), renders whose content spells
    no control token are encoded as whole texts in one multi-threaded ``encode_batch`` call; the rest
    go run by run. Both give the same ids and labels (tested)."""
    out: list[Any] = [None] * len(rendereds)
    backend = None
    if compat != "transformers":
        # a third party's TokenizerLike may have only whole_text_backend
        whole = getattr(tokenizer, "whole_text_encoder", None)
        backend = whole() if whole is not None else tokenizer.whole_text_backend()
    if backend is not None:
        idx = [
            k for k, r in enumerate(rendereds) if _whole_text_ready(r, tokenizer, allow_special_in_content)
        ]
        if idx:
            encs = backend.encode_batch([rendereds[k].text for k in idx], add_special_tokens=False)
            for k, enc in zip(idx, encs):
                out[k] = _labels_from_encoding(enc, rendereds[k])
            let_go(encs)  # freed with others later, in a thread that holds them (chatfmt.held)
    for k, r in enumerate(rendereds):
        if out[k] is None:
            ids, labels, owners = encode_rendered(
                r, tokenizer, compat=compat, allow_special_in_content=allow_special_in_content
            )
            out[k] = (ids, labels, _spans(owners))
    return out


def _flagged(msgs: Sequence[Any]) -> list[int]:
    """Indices of the messages that say themselves whether they are trained (``loss`` set, from any
    of the loss keys, or a ``train_detail``)."""
    out = []
    for k, m in enumerate(msgs):
        if isinstance(m, dict):
            from .messages import DETAIL_KEYS, LOSS_KEYS, parse_message

            if not any(m.get(key) is not None for key in (*LOSS_KEYS, *DETAIL_KEYS)):
                continue
            m = parse_message(m, k)
        if getattr(m, "loss", None) is not None or getattr(m, "train_detail", None) is not None:
            out.append(k)
    return out


# -- axolotl's train_detail: character spans of a message's content, trained or not ----------------


def _details(conv: Any) -> list[tuple[int, Any]]:
    """``(index, message)`` of the messages carrying a ``train_detail`` (dict messages are parsed)."""
    out = []
    for k, m in enumerate(_as_list(conv)):
        if isinstance(m, dict):
            if not any(key in m for key in _DETAIL_KEYS):
                continue
            from .messages import parse_message

            m = parse_message(m, k)
        if getattr(m, "train_detail", None) is not None:
            out.append((k, m))
    return out


_DETAIL_KEYS = ("train_detail", "training_detail")


def _with_train_detail(
    rendered: Rendered, details: list[tuple[int, Any]], *, only: bool | None = None
) -> Rendered:
    """``rendered`` with the content of each detailed message split by its spans: characters in a
    ``train`` span trained, the rest not. With ``only=True`` (``False``), just the content characters
    the spans train (leave untrained) are marked trained, and nothing else: the probes
    :func:`_render_and_encode` uses to find tokens that hold both.

    The content must appear in the render as written (or stripped of edge whitespace, as templates
    that ``trim`` do); otherwise the offsets cannot be placed and the record is refused."""
    by_msg = dict(details)
    rendered_text: dict[int, str] = {}
    for seg in rendered.segments:
        if seg.kind == CONTENT and seg.message in by_msg and seg.token_ids is None:
            rendered_text[seg.message] = rendered_text.get(seg.message, "") + seg.text
    masks: dict[int, list[bool]] = {}
    for k, m in details:
        text, got = m.content, rendered_text.get(k, "")
        lead = len(text) - len(text.lstrip())
        if got == text or got == text.rstrip():
            off = 0
        elif got in (text.strip(), text.lstrip()):
            off = lead
        else:
            raise ValidationError(
                "train_detail: the format does not render this message's content as written, so its "
                "character offsets cannot be placed",
                index=k,
                rule="train_detail",
            )
        mask = [False] * len(text)
        for a, b, t in m.train_detail:
            if t:
                mask[a:b] = [True] * (b - a)
        masks[k] = mask[off : off + len(got)]
    segs = []
    pos: dict[int, int] = {}
    for seg in rendered.segments:
        m = seg.message
        if not (seg.kind == CONTENT and m in masks and seg.token_ids is None):
            segs.append(seg if only is None else seg._replace(trained=False))
            continue
        mask, start = masks[m], pos.get(m, 0)
        pos[m] = start + len(seg.text)
        i = 0
        while i < len(seg.text):
            j = i
            flag = mask[start + i]
            while j < len(seg.text) and mask[start + j] == flag:
                j += 1
            segs.append(seg._replace(text=seg.text[i:j], trained=flag if only is None else flag == only))
            i = j
    return Rendered(segs)


def _render_and_encode(
    fmt: FormatLike, convs: list[Any], tokenizer: Tokenizer, opts: dict[str, Any]
) -> list[tuple[list[int], list[int], dict[int, tuple[int, int]]]]:
    """Render and encode ``convs``; messages with a ``train_detail`` are labelled by their spans.

    A token that holds content characters a ``train_detail`` leaves untrained is not trained, even
    when it also holds trained text of the format (a space before the reply merged into its first
    word); a token that holds characters the spans train *and* characters they do not (a span
    boundary inside a token) has no exact label, and the record is refused (rule ``train_detail``)
    rather than labelled by a rounding rule."""
    rendereds = [fmt.render_segments(c, **_render_options(opts["render"], c)) for c in convs]
    probes: dict[int, tuple[Rendered, Rendered]] = {}
    for k, c in enumerate(convs):
        details = _details(c)
        if details:
            probes[k] = (
                _with_train_detail(rendereds[k], details, only=True),
                _with_train_detail(rendereds[k], details, only=False),
            )
            rendereds[k] = _with_train_detail(rendereds[k], details)
    results = encode_rendered_many(rendereds, tokenizer, **opts["encode"])
    if probes:
        idx = list(probes)
        encs = encode_rendered_many([r for k in idx for r in probes[k]], tokenizer, **opts["encode"])
        for n, k in enumerate(idx):
            yes, no = encs[2 * n][1], encs[2 * n + 1][1]
            ids, labels, spans = results[k]
            both = next(
                (t for t, (x, y) in enumerate(zip(yes, no)) if x != IGNORE_INDEX and y != IGNORE_INDEX), None
            )
            if both is not None:
                owner = next((m for m, (a, b) in spans.items() if a <= both < b), None)
                raise ValidationError(
                    f"train_detail: token {both} (id {ids[both]}) holds characters the spans train and characters "
                    "they do not; put the span boundary between tokens",
                    index=owner,
                    rule="train_detail",
                )
            labels = [IGNORE_INDEX if y != IGNORE_INDEX else x for x, y in zip(labels, no)]
            results[k] = (ids, labels, spans)
    return results


def _render_options(render: dict[str, Any], conv: Any) -> dict[str, Any]:
    """The render options of one conversation: a record's own template keyword arguments (TRL's
    ``chat_template_kwargs``, :attr:`Conversation.template_kwargs`) over the call's."""
    own = getattr(conv, "template_kwargs", None)
    return {**render, **own} if own else render


def _role(m: Any) -> str | None:
    if isinstance(m, dict):
        return m.get("role")
    return getattr(m, "role", None)


def _as_list(messages: Any) -> list[Any]:
    if hasattr(messages, "messages"):
        return list(messages.messages)
    if isinstance(messages, dict) and "messages" in messages:
        return list(messages["messages"])
    return list(messages)


def _rounds(messages: list[Any]) -> list[int]:
    """Start indices of rounds (a user message and what follows it), after a leading system."""
    starts = []
    for k, m in enumerate(messages):
        if _role(m) == "user" and (k == 0 or _role(messages[k - 1]) != "user"):
            starts.append(k)
    return starts


def _check_options(train_on: str, truncation: str) -> None:
    if train_on not in ("all_assistant", "last_assistant", "all"):
        raise ValueError(f"train_on must be all_assistant, last_assistant or all, not {train_on!r}")
    if truncation not in ("error", "right", "drop_oldest_turns"):
        raise ValueError(f"truncation must be error, right or drop_oldest_turns, not {truncation!r}")


def _sliced(messages: Any, msg_list: list[Any], msgs: list[Any]) -> Any:
    """``msgs`` in the shape ``messages`` came in: a Conversation stays a Conversation (its raw tools
    matter to some formats), an OpenAI object stays an object."""
    if hasattr(messages, "messages") and is_dataclass(messages) and not isinstance(messages, type):
        return messages if len(msgs) == len(msg_list) else replace(messages, messages=list(msgs))
    if isinstance(messages, dict) and "messages" in messages:
        return {**messages, "messages": list(msgs)}
    return msgs


def _finish(
    result: tuple[list[int], list[int], dict[int, tuple[int, int]]],
    messages: Any,
    msg_list: list[Any],
    fmt: FormatLike,
    tokenizer: Tokenizer,
    opts: dict[str, Any],
) -> Encoded:
    """Apply train_on and truncation to one encoded conversation."""
    max_length = opts["max_length"]
    truncation = opts["truncation"]
    train_on = opts["train_on"]

    def post(
        res: tuple[list[int], list[int], dict[int, tuple[int, int]]], msgs: list[Any]
    ) -> tuple[list[int], list[int], dict[int, tuple[int, int]]]:
        ids, labels, spans = res
        if train_on == "all_assistant":
            return ids, labels, spans
        own = labels
        if train_on == "last_assistant":
            labels = _only_last_assistant(labels, spans, msgs)
        else:  # all
            labels = list(ids)
        # a message's own loss flag (loss, weight, train, train_detail, ...) decides its tokens:
        # train_on only sets what messages without one get
        for k in _flagged(msgs):
            if k in spans:
                a, b = spans[k]
                labels[a:b] = own[a:b]
        return ids, labels, spans

    ids, labels, spans = post(result, msg_list)
    truncated = False
    dropped = 0
    if max_length is not None and len(ids) > max_length:
        if truncation == "error":
            raise LengthError(
                f"conversation is {len(ids)} tokens, over max_length {max_length}", rule="max_length"
            )
        if truncation == "right":
            ids, labels = ids[:max_length], labels[:max_length]
            spans = {m: (a, min(b, max_length)) for m, (a, b) in spans.items() if a < max_length}
            truncated = True
        else:  # drop_oldest_turns
            head = [m for m in msg_list[:1] if _role(m) == "system"]
            body = msg_list[len(head) :]
            starts = _rounds(body)
            fitted = None
            # keep the newest rounds that fit: try dropping 1, 2, ... oldest rounds
            for k in range(1, len(starts)):
                candidate = head + body[starts[k] :]
                res = _render_and_encode(fmt, [_sliced(messages, msg_list, candidate)], tokenizer, opts)[0]
                c_ids, c_labels, c_spans = post(res, candidate)
                if len(c_ids) <= max_length:
                    fitted = (c_ids, c_labels, c_spans, starts[k])
                    break
            if fitted is None:
                raise LengthError(
                    f"conversation is {len(ids)} tokens and its newest round alone does not fit max_length {max_length}",
                    rule="max_length",
                )
            ids, labels, c_spans, dropped = fitted
            # message indices refer to the shortened conversation; shift them back
            spans = {(m if m < len(head) else m + dropped): v for m, v in c_spans.items()}
            truncated = True
    return Encoded(
        input_ids=ids,
        labels=labels,
        attention_mask=[1] * len(ids),
        message_spans=spans,
        truncated=truncated,
        dropped_messages=dropped,
    )


def encode(
    fmt: FormatLike,
    messages: Any,
    tokenizer: Tokenizer,
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "error",
    train_on: TrainOn = "all_assistant",
    compat: Compat = None,
    allow_special_in_content: bool = False,
    allow_missing_tokens: bool = False,
    **template_kwargs: Any,
) -> Encoded:
    """Render ``messages`` with ``fmt`` and encode: ids, labels, attention mask, message spans.

    A tokenizer that lacks a token the format relies on (a role marker, BOS/EOS, a literal id) is
    refused first (:class:`~chatfmt.errors.TokenizerMismatchError`, see :mod:`chatfmt.compat`);
    ``allow_missing_tokens=True`` encodes anyway. Template keyword arguments go to the render, as
    keywords or as one ``template_kwargs={...}`` mapping; one the format does not read is reported
    (:class:`~chatfmt.errors.NotRenderedWarning`)."""
    return encode_batch(
        fmt,
        [messages],
        tokenizer,
        tools=tools,
        add_generation_prompt=add_generation_prompt,
        max_length=max_length,
        truncation=truncation,
        train_on=train_on,
        compat=compat,
        allow_special_in_content=allow_special_in_content,
        allow_missing_tokens=allow_missing_tokens,
        **template_kwargs,
    )[0]


def encode_batch(
    fmt: FormatLike,
    conversations: Iterable[Any],
    tokenizer: Tokenizer,
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    max_length: int | None = None,
    truncation: Truncation = "error",
    train_on: TrainOn = "all_assistant",
    compat: Compat = None,
    allow_special_in_content: bool = False,
    allow_missing_tokens: bool = False,
    **template_kwargs: Any,
) -> list[Encoded]:
    """:func:`encode` for many conversations: rendered one by one, tokenized in one batch where the
    tokenizer allows it (see :func:`encode_rendered_many`). From ``2 * PIPELINE_CHUNK`` conversations
    on, chunks of them are encoded in two threads (see :func:`_pipelined`; the same results). Template
    keyword arguments (``enable_thinking=False``) go to every render, as keywords or as one
    ``template_kwargs={...}`` mapping."""
    from .formats.base import merge_template_kwargs

    template_kwargs = merge_template_kwargs(template_kwargs)
    _check_options(train_on, truncation)
    check_tokenizer(fmt, tokenizer, allow_missing_tokens=allow_missing_tokens)
    opts = {
        "max_length": max_length,
        "truncation": truncation,
        "train_on": train_on,
        "render": {"tools": tools, "add_generation_prompt": add_generation_prompt, **template_kwargs},
        "encode": {"compat": compat, "allow_special_in_content": allow_special_in_content},
    }
    convs = list(conversations)
    if (
        len(convs) >= 2 * PIPELINE_CHUNK
        and _PIPELINE.get()
        and compat != "transformers"
        and tokenizer.whole_text_backend() is not None
    ):
        return _pipelined(fmt, convs, tokenizer, opts)
    return _encode_chunk(fmt, convs, tokenizer, opts)


#: conversations per chunk when :func:`encode_batch` works in overlapping chunks (from two chunks on):
#: large, because a chunk costs CPU of its own (measured here: 64-conversation chunks took 8-14 % more
#: CPU time than one call, the tokenizer's buffers being allocated again for each), while one call
#: over a huge list holds every ``tokenizers.Encoding`` (ids, offsets, token strings) at once
PIPELINE_CHUNK = 512
#: chunks in flight: each thread renders, tokenizes (without the GIL) and labels its own chunk
PIPELINE_THREADS = 2
_PIPELINE: contextvars.ContextVar[bool] = contextvars.ContextVar("chatfmt_encode_pipeline", default=True)


@contextmanager
def sequential() -> Iterator[None]:
    """:func:`encode_batch` in the calling thread only, in this context (``chatfmt prepare`` runs
    its own encoding threads, one batch each)."""
    token = _PIPELINE.set(False)
    try:
        yield
    finally:
        _PIPELINE.reset(token)


def _encode_chunk(
    fmt: FormatLike, convs: list[Any], tokenizer: Tokenizer, opts: dict[str, Any]
) -> list[Encoded]:
    results = _render_and_encode(fmt, convs, tokenizer, opts)
    return [_finish(res, c, _as_list(c), fmt, tokenizer, opts) for res, c in zip(results, convs)]


def _pipelined(
    fmt: FormatLike, convs: list[Any], tokenizer: Tokenizer, opts: dict[str, Any]
) -> list[Encoded]:
    """:func:`_encode_chunk` over chunks of :data:`PIPELINE_CHUNK` conversations in
    :data:`PIPELINE_THREADS` threads, results taken in order. ``tokenizers`` releases the GIL while it
    tokenizes a batch (on all cores), so one chunk's Python work (render, labels, the
    :class:`Encoded` rows) runs while another chunk is tokenized, and the tokenizer's threads are
    never left with only the tail of one batch. A conversation's result does not depend on the
    others, so the output is the same as in one call; the first error in conversation order is the
    one raised. Each chunk runs in a copy of the caller's context (its warning settings)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    out: list[Encoded] = []
    pending: deque[Future[list[Encoded]]] = deque()
    with ThreadPoolExecutor(PIPELINE_THREADS, thread_name_prefix="chatfmt-encode") as pool:
        try:
            for i in range(0, len(convs), PIPELINE_CHUNK):
                ctx = contextvars.copy_context()
                pending.append(
                    pool.submit(ctx.run, _encode_chunk, fmt, convs[i : i + PIPELINE_CHUNK], tokenizer, opts)
                )
                if len(pending) > PIPELINE_THREADS:
                    out.extend(pending.popleft().result())
            while pending:
                out.extend(pending.popleft().result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return out
