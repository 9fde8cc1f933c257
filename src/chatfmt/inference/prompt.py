"""Prompt ids for inference: exact (the same ids as :meth:`ChatFormat.encode`), re-encoding only
what changed since the last call, fitted to the context, and extended without re-rendering for
multi-turn rollouts.

:class:`IncrementalEncoder` renders the whole conversation (cheap: string work), splits it the way
the encoder does (id pieces; runs of text between control tokens) and reuses the ids of every leading
unit that is unchanged since the previous call. Text runs are tokenized independently of each other
in chatfmt's encoding, so reusing a unit's ids is exact, not an approximation.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..compat import check_tokenizer
from ..encode import Compat, _control_space, _encode_run, _Piece, _special_pattern, _split_control, _strip_run
from ..errors import ChatfmtError, ChatfmtWarning
from ..errors import ContextOverflowError as ContextOverflowError
from ..messages import as_conversation
from ..segments import CONTENT, Rendered, Segment
from ..untrusted import check_rendered

if TYPE_CHECKING:
    from ..tokenizers.base import Tokenizer
    from ..types import FormatLike


#: ``_INTS[i] is`` the one int object this module uses for id ``i`` (grown under ``_INTS_LOCK``)
_INTS: list[int] = []
_INTS_LOCK = threading.Lock()


def _interned(ids: list[int]) -> list[int]:
    """``ids`` with every id replaced by the table's int object of the same value: equal values, so
    equal lists. An encoder keeps a long conversation's ids and copies them into every prompt it
    returns; with one object per vocabulary id (instead of one per position) that copy touches a few
    thousand objects' reference counts instead of ~100k scattered ones, which halves its cost when
    the CPU caches are cold (after a generation, as in a server). Negative values (no tokenizer gives
    them) are left as they are."""
    if not ids:
        return ids
    hi = max(ids)
    if min(ids) < 0:
        return ids
    table = _INTS
    if hi >= len(table):
        with _INTS_LOCK:
            if hi >= len(table):
                table.extend(range(len(table), hi + 1))
    return [table[i] for i in ids]


class _Splitter:
    """The encoder's split of segments into units, resumable: ``("ids", ids)`` for id pieces,
    ``("text", text, at_start, control_space)`` for text runs (the same split as
    :func:`chatfmt.encode._pieces`: control text is split on control tokens, content is not;
    ``control_space``: the run starts with a space the format wrote, see the encoder's space rule).
    Segments are fed in order (:meth:`feed`); the run still open after them is kept, so feeding more
    segments later gives the units of the concatenation. ``split_cache`` memoizes the split of
    control texts (they repeat every turn)."""

    __slots__ = ("allow", "cache", "have_ids", "last", "pattern", "run", "specials", "strip", "units")

    def __init__(
        self,
        tokenizer: Tokenizer,
        allow_special_in_content: bool,
        split_cache: dict[str, list[tuple[str, tuple[int, ...] | None]]] | None = None,
    ) -> None:
        self.specials, self.pattern = _special_pattern(tokenizer)
        self.strip = getattr(tokenizer, "control_strip", None)
        self.allow = allow_special_in_content
        self.cache = split_cache
        self.units: list[tuple[Any, ...]] = []
        self.run: list[_Piece] = []
        self.have_ids = False
        self.last: tuple[Any, ...] | None = None  # the last unit emitted (before this object's units too)

    def flush(self, after: tuple[int, ...] | None = None) -> None:
        run = self.run
        if run:
            if self.strip:
                last = self.last
                before = last[1] if last is not None and last[0] == "ids" else None
                _strip_run(run, before, after, self.strip)
            control = True
            for q in run:
                if q.content:
                    control = False
                    break
            unit = ("text", "".join([q.text for q in run]), not self.have_ids, _control_space(run), control)
            self.units.append(unit)
            self.last = unit
            self.run = []
            self.have_ids = True  # the run's tokens come first (encode's ``at_start=not ids``)

    def _ids(self, ids: tuple[int, ...]) -> None:
        unit = ("ids", ids)
        self.units.append(unit)
        self.last = unit

    def feed(self, segments: Sequence[Segment]) -> None:
        pattern, cache, allow = self.pattern, self.cache, self.allow
        run = self.run
        for seg in segments:
            if seg.token_ids is not None:
                given = tuple(seg.token_ids)
                self.flush(given)
                self._ids(given)
                self.have_ids = self.have_ids or bool(given)
                run = self.run
                continue
            if (seg.kind == CONTENT and not allow) or pattern is None:
                run.append(_Piece(seg.text, None, False, content=seg.kind == CONTENT))
                continue
            parts = cache.get(seg.text) if cache is not None else None
            if parts is None:
                pieces: list[_Piece] = []
                _split_control(seg.text, None, False, self.specials, pattern, pieces)
                parts = [(p.text, p.ids) for p in pieces]
                if cache is not None and len(seg.text) < 4096:
                    if len(cache) > 10000:
                        cache.clear()
                    cache[seg.text] = parts
            content = seg.kind == CONTENT
            for text, part_ids in parts:
                if part_ids is None:
                    run.append(_Piece(text, None, False, content=content))
                else:
                    self.flush(part_ids)
                    self._ids(part_ids)
                    self.have_ids = True
                    run = self.run

    def state(self) -> tuple[list[_Piece], bool, tuple[Any, ...] | None]:
        """What resuming after the segments fed so far needs (the open run copied: flushing may
        shorten its pieces in place)."""
        return [_Piece(q.text, None, False, content=q.content) for q in self.run], self.have_ids, self.last

    def resume(self, state: tuple[list[_Piece], bool, tuple[Any, ...] | None]) -> None:
        run, self.have_ids, self.last = state
        self.run = [_Piece(q.text, None, False, content=q.content) for q in run]


def _units(
    rendered: Rendered,
    tokenizer: Tokenizer,
    allow_special_in_content: bool,
    split_cache: dict[str, list[tuple[str, tuple[int, ...] | None]]] | None = None,
) -> list[tuple[Any, ...]]:
    """The encoder's units of ``rendered`` (see :class:`_Splitter`)."""
    splitter = _Splitter(tokenizer, allow_special_in_content, split_cache)
    check_rendered(rendered, splitter.pattern)
    splitter.feed(rendered.segments)
    splitter.flush()
    return splitter.units


@dataclass
class EncodeStats:
    """What the last :meth:`IncrementalEncoder.encode` call did."""

    units: int = 0
    reused_units: int = 0
    reused_tokens: int = 0
    encoded_tokens: int = 0


class IncrementalEncoder:
    """``encode(messages)`` -> prompt ids, equal to ``fmt.encode(messages, tokenizer).input_ids``,
    re-tokenizing only the units after the first one that changed since the previous call.

    A tokenizer that lacks a token the format relies on is refused here, before any encoding
    (:class:`~chatfmt.errors.TokenizerMismatchError`); ``allow_missing_tokens=True`` skips that."""

    def __init__(
        self,
        fmt: FormatLike,
        tokenizer: Tokenizer,
        *,
        compat: Compat = None,
        allow_special_in_content: bool = False,
        allow_missing_tokens: bool = False,
    ) -> None:
        check_tokenizer(fmt, tokenizer, allow_missing_tokens=allow_missing_tokens)
        self.fmt = fmt
        self.tokenizer = tokenizer
        self.compat = compat
        self.allow_special_in_content = allow_special_in_content
        self._cache: list[tuple[tuple[Any, ...], list[int]]] = []
        self._split_cache: dict[str, list[tuple[str, tuple[int, ...] | None]]] = {}
        self._run_cache: dict[tuple[Any, ...], list[int]] = {}
        self.stats = EncodeStats()
        self._text: str | list[str] = ""
        self._plain_fmt: Any = False  # the format rendering plain conversations message by message (lazy)
        self._plain_reset()

    @property
    def last_text(self) -> str:
        """The prompt text of the last call."""
        if not isinstance(self._text, str):
            self._text = "".join(self._text)
        return self._text

    @last_text.setter
    def last_text(self, text: str) -> None:
        self._text = text

    def reset(self) -> None:
        self._cache = []
        self._plain_reset()

    def encode(self, messages: Any, *, tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = True, **kwargs: Any) -> list[int]:
        if tools is None and not kwargs:
            ids = self._encode_plain(messages, add_generation_prompt)
            if ids is not None:
                return ids
        rendered = self.fmt.render_segments(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
        return self.encode_rendered(rendered)

    def encode_checked(
        self, messages: Any, *, tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = True, **kwargs: Any
    ) -> tuple[list[int], tuple[str, ...]]:
        """:meth:`encode`, and what of the given inputs the prompt leaves out (as
        :meth:`ChatFormat.render_checked <chatfmt.formats.base.ChatFormat.render_checked>` says; a
        format object without it reports nothing), without warnings."""
        if tools is None and not kwargs:
            ids = self._encode_plain(messages, add_generation_prompt)
            if ids is not None:
                return ids, ()
        checked = getattr(self.fmt, "render_checked", None)
        if checked is not None:
            rendered, missing = checked(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
        else:
            rendered = self.fmt.render_segments(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
            missing = ()
        return self.encode_rendered(rendered), tuple(missing)

    # -- plain conversations, rendered message by message --------------------------------------------

    def _plain_reset(self) -> None:
        #: copies of the messages the checkpoints cover (plain: ``{"role", "content"}``)
        self._pkeys: list[dict[str, str]] = []
        #: the state before message j, for j in 0..len(_pkeys): (ids count, units count, split state,
        #: the block before it); checkpoint 0 is the empty state (nothing rendered)
        self._pchecks: list[tuple[int, int, Any, Any]] = [(0, 0, ([], False, None), None)]
        #: the ids of the last call's units, in order (the checkpoints' counts index it)
        self._pids: list[int] = []
        #: the last call: (messages count, add_generation_prompt, its ids, its stats), for a repeat
        self._plast: tuple[int, bool, EncodeStats, str | list[str]] | None = None
        #: the text of each message's segments (the opening in the first), for the prompt text
        self._pblocks: list[str] = []

    def _plain_source(self) -> Any:
        """The format whose message-by-message path renders this encoder's plain conversations (a
        built-in declared as a spec, or the one a Jinja format's pinned template is rendered by), or
        ``None``."""
        src = self._plain_fmt
        if src is False:
            fmt = self.fmt
            known = getattr(fmt, "_known_native", None)
            if known is not None:
                fmt = known()
            src = fmt if getattr(fmt, "_plain", None) is not None and hasattr(fmt, "_plain_open") else None
            self._plain_fmt = src
        return src

    def _encode_plain(self, messages: Any, add_generation_prompt: bool) -> list[int] | None:
        try:
            return self._encode_plain_from_cache(messages, add_generation_prompt)
        except BaseException:
            self._plain_reset()  # a call that failed half-way leaves no state behind
            raise

    def _encode_plain_from_cache(self, messages: Any, add_generation_prompt: bool) -> list[int] | None:
        """The ids of a plain conversation (``{"role", "content"}`` dicts only), rendering and
        tokenizing only the messages after the longest prefix already seen; ``None`` when this
        format or conversation has no such path (the caller then renders all of it)."""
        fmt = self._plain_source()
        if fmt is None or type(messages) is not list or not messages:
            return None
        keys, checks = self._pkeys, self._pchecks
        n = len(messages)
        limit = min(len(keys), n)
        # the longest prefix seen before: one comparison in C when it is all of it (an append), dicts
        # compared by value (a caller that edits a message in place edits a copy's original, not it)
        if (messages[:limit] if limit < n else messages) == (keys[:limit] if limit < len(keys) else keys):
            k = limit
        else:
            k = 0
            while k < limit and messages[k] == keys[k]:
                k += 1
        last = self._plast
        if last is not None and k == n == len(keys) and last[0] == n and last[1] == add_generation_prompt:
            ids = list(self._pids)  # the last call's ids, as it left them
            self.stats = EncodeStats(units=last[2].units, reused_units=last[2].units, reused_tokens=len(ids), encoded_tokens=0)
            self._text = last[3]
            return ids
        if k >= len(checks):
            k = len(checks) - 1
        n_ids, n_units, split_state, prev = checks[k]
        segs: list[Segment] = []
        bounds = [0]
        state = fmt._plain_open(messages, k, prev, segs)  # all of them: the boundaries come next
        if state is None:
            self._plain_reset()
            return None
        # the segment count before each new message (a message's segments all carry its index)
        j = k
        for p, seg in enumerate(segs):
            if seg.message is not None and seg.message > j:
                while j < seg.message:
                    bounds.append(p)
                    j += 1
        while len(bounds) < n - k:
            bounds.append(len(segs))  # a message with no segments of its own
        open_len = len(segs)
        fmt._plain_close(segs, state, n, add_generation_prompt)
        final_eos = bool(fmt._plain[4])
        splitter = _Splitter(self.tokenizer, self.allow_special_in_content, self._split_cache)
        splitter.resume(split_state)
        del keys[k:]
        del checks[k + 1 :]
        marks: list[tuple[int, Any, Any]] = []  # per new checkpoint: (units before it, split state, prev)
        roles: list[str] = []
        for q in range(k, n):
            m = messages[q]
            keys.append({"role": m["role"], "content": m["content"]})
            roles.append(m["role"])
        # checkpoints after each new message (not after the last when a final EOS may merge into it)
        stop = n - 1 if final_eos else n
        for q in range(k, stop):
            lo = bounds[q - k]
            hi = bounds[q - k + 1] if q - k + 1 < len(bounds) else open_len
            splitter.feed(segs[lo:hi])
            marks.append((len(splitter.units), splitter.state(), roles[q - k]))
        if final_eos:
            del keys[stop:]
        splitter.feed(segs[bounds[stop - k] if stop - k < len(bounds) else open_len :])
        splitter.flush()
        # tokenize the new units
        pids = self._pids
        del pids[n_ids:]
        counts = [n_ids]
        for u in splitter.units:
            pids.extend(u[1] if u[0] == "ids" else self._run_ids(u))
            counts.append(len(pids))
        pids[n_ids:] = _interned(pids[n_ids:])
        for units_before, sstate, role in marks:
            checks.append((counts[units_before], n_units + units_before, sstate, role))
        stats = EncodeStats(
            units=n_units + len(splitter.units), reused_units=n_units, reused_tokens=n_ids, encoded_tokens=len(pids) - n_ids
        )
        self.stats = stats
        # the text (joined when asked): the blocks of the messages before k, then the new segments
        blocks = self._pblocks
        del blocks[k:]
        self._text = [*blocks, "".join([seg.text for seg in segs])]
        for q in range(k, stop):
            lo = bounds[q - k]
            hi = bounds[q - k + 1] if q - k + 1 < len(bounds) else open_len
            blocks.append("".join([seg.text for seg in segs[lo:hi]]))
        self._plast = (n, add_generation_prompt, stats, self._text) if len(keys) == n else None
        return list(pids)

    def _run_ids(self, unit: tuple[Any, ...]) -> list[int]:
        """The ids of a text unit; those of control text alone (``"\\n"``, ``"assistant\\n"``: every
        turn has them) are remembered."""
        cache = self._run_cache
        if unit[4]:
            key = unit[1:4]
            ids = cache.get(key)
            if ids is None:
                ids, _ = _encode_run(self.tokenizer, unit[1], at_start=unit[2], compat=self.compat, control_space=unit[3])
                if len(unit[1]) < 4096:
                    if len(cache) > 10000:
                        cache.clear()
                    cache[key] = ids
            return list(ids)
        ids, _ = _encode_run(self.tokenizer, unit[1], at_start=unit[2], compat=self.compat, control_space=unit[3])
        return ids

    def encode_rendered(self, rendered: Rendered) -> list[int]:
        self.last_text = rendered.text
        units = _units(rendered, self.tokenizer, self.allow_special_in_content, self._split_cache)
        cache = self._cache
        k = 0
        n = min(len(units), len(cache))
        while k < n and cache[k][0] == units[k]:
            k += 1
        new_cache = cache[:k]
        ids: list[int] = []
        for _, u_ids in new_cache:
            ids.extend(u_ids)
        reused = len(ids)
        for u in units[k:]:
            u_ids = list(u[1]) if u[0] == "ids" else self._run_ids(u)
            new_cache.append((u, u_ids))
            ids.extend(u_ids)
        self._cache = new_cache
        self.stats = EncodeStats(units=len(units), reused_units=k, reused_tokens=reused, encoded_tokens=len(ids) - reused)
        return ids


def _round_starts(roles: Sequence[str]) -> list[int]:
    """Start indices of rounds: a user message (after a leading system) and everything up to the next."""
    starts = []
    for k, r in enumerate(roles):
        if r == "user" and (k == 0 or roles[k - 1] != "user"):
            starts.append(k)
    return starts


@dataclass
class FittedPrompt:
    """Prompt ids fitted to a budget, and what was left out."""

    ids: list[int]
    #: the messages that were rendered (system + the newest rounds that fit)
    messages: list[Any]
    #: how many of the oldest messages (after the system prompt) were left out
    dropped_messages: int = 0


def fit_history(
    encoder: IncrementalEncoder,
    messages: Sequence[Any],
    budget: int,
    *,
    tools: list[dict[str, Any]] | None = None,
    warn: bool = True,
    **kwargs: Any,
) -> FittedPrompt:
    """Encode ``messages`` (+ generation prompt) within ``budget`` tokens, dropping the oldest whole
    rounds and keeping the system prompt and the newest round (Baichuan2's ``build_chat_input``
    semantics). Raises :class:`ContextOverflowError` when even that does not fit; warns
    (:class:`~chatfmt.errors.ChatfmtWarning`) when rounds were dropped."""
    msgs = list(messages)
    ids = encoder.encode(msgs, tools=tools, add_generation_prompt=True, **kwargs)
    if len(ids) <= budget:
        return FittedPrompt(ids, msgs)
    conv = as_conversation(msgs)
    roles = [m.role for m in conv.messages]
    head = 1 if roles and roles[0] == "system" else 0
    starts = [s + head for s in _round_starts(roles[head:])]
    # drop rounds oldest first; each try re-encodes (the prefix cache helps once a window is stable)
    for s in starts[1:]:
        candidate = msgs[:head] + msgs[s:]
        ids = encoder.encode(candidate, tools=tools, add_generation_prompt=True, **kwargs)
        if len(ids) <= budget:
            dropped = s - head
            if warn:
                warnings.warn(
                    f"the conversation does not fit the context ({budget} tokens for the prompt): left out "
                    f"the {dropped} oldest message(s) after the system prompt",
                    ChatfmtWarning,
                    stacklevel=2,
                )
            return FittedPrompt(ids, candidate, dropped)
    raise ContextOverflowError(
        f"the newest round alone is {len(ids)} tokens; the prompt budget is {budget} tokens "
        "(context minus max_new_tokens)"
    )


def bridge_ids(
    fmt: FormatLike,
    tokenizer: Tokenizer,
    prompt_ids: Sequence[int],
    completion_ids: Sequence[int],
    history: Sequence[Any],
    assistant: Any,
    new_messages: Sequence[Any],
    *,
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    allow_missing_tokens: bool = False,
    **kwargs: Any,
) -> list[int]:
    """The next prompt of a multi-turn rollout without re-rendering history: ``prompt_ids`` +
    ``completion_ids`` (what the model produced, kept as it was) + the ids of what the format puts
    after that assistant turn (its end of turn, when the completion did not end with it) and of
    ``new_messages`` (tool results, the next user message) and the generation prompt.

    ``history`` are the messages ``prompt_ids`` was rendered from, ``assistant`` the parsed assistant
    message of ``completion_ids``; they are rendered once with the new messages only to find the
    format's text after the assistant turn.
    """
    check_tokenizer(fmt, tokenizer, allow_missing_tokens=allow_missing_tokens)
    msgs = [*history, assistant, *new_messages]
    rendered = fmt.render_segments(msgs, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
    a_idx = len(history)
    segs = rendered.segments
    last_trained = last_any = None
    for k, seg in enumerate(segs):
        if seg.message == a_idx:
            last_any = k
            if seg.trained:
                last_trained = k
    cut = last_trained if last_trained is not None else last_any
    if cut is None:
        raise ChatfmtError(f"{fmt.name}: the assistant message renders no segment; cannot bridge")
    out = list(prompt_ids) + list(completion_ids)
    # the format's end of turn, when the completion did not stop on it
    eot_ids: list[int] = []
    for s in fmt.info.end_of_turn:
        tid = tokenizer.special_tokens.get(s)
        if tid is not None:
            eot_ids.append(tid)
    if eot_ids and (not completion_ids or completion_ids[-1] not in eot_ids):
        out.append(eot_ids[0])
    tail = Rendered(segs[cut + 1 :])
    enc = IncrementalEncoder(fmt, tokenizer, allow_missing_tokens=True)  # checked above
    # the tail is not at the start of the sequence
    units = _units(tail, tokenizer, False)
    for u in units:
        if u[0] == "ids":
            out.extend(u[1])
        else:
            ids, _ = _encode_run(tokenizer, u[1], at_start=False, compat=enc.compat, control_space=u[3])
            out.extend(ids)
    return out
