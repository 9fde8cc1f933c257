"""Prompt ids for inference: exact (the same ids as :meth:`ChatFormat.encode`), re-encoding only
what changed since the last call, fitted to the context, and extended without re-rendering for
multi-turn rollouts.

:class:`IncrementalEncoder` renders the whole conversation (cheap: string work), splits it the way
the encoder does (id pieces; runs of text between control tokens) and reuses the ids of every leading
unit that is unchanged since the previous call. Text runs are tokenized independently of each other
in chatfmt's encoding, so reusing a unit's ids is exact, not an approximation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..compat import check_tokenizer
from ..encode import Compat, _control_space, _encode_run, _Piece, _special_pattern, _split_control, _strip_run
from ..errors import ChatfmtError, ChatfmtWarning
from ..errors import ContextOverflowError as ContextOverflowError
from ..messages import as_conversation
from ..segments import CONTENT, Rendered
from ..untrusted import check_rendered

if TYPE_CHECKING:
    from ..tokenizers.base import Tokenizer
    from ..types import FormatLike


def _units(
    rendered: Rendered,
    tokenizer: Tokenizer,
    allow_special_in_content: bool,
    split_cache: dict[str, list[tuple[str, tuple[int, ...] | None]]] | None = None,
) -> list[tuple[Any, ...]]:
    """The encoder's units: ``("ids", ids)`` for id pieces, ``("text", text, at_start, control_space)``
    for text runs (the same split as :func:`chatfmt.encode._pieces`: control text is split on control
    tokens, content is not; ``control_space``: the run starts with a space the format wrote, see the
    encoder's space rule). ``split_cache`` memoizes the split of control texts (they repeat every turn)."""
    specials, pattern = _special_pattern(tokenizer)
    check_rendered(rendered, pattern)
    strip = getattr(tokenizer, "control_strip", None)
    units: list[tuple[Any, ...]] = []
    run: list[_Piece] = []
    have_ids = False

    def add(text: str, content: bool) -> None:
        run.append(_Piece(text, None, False, content=content))

    def flush(after: tuple[int, ...] | None = None) -> None:
        nonlocal run, have_ids
        if run:
            if strip:
                before = units[-1][1] if units and units[-1][0] == "ids" else None
                _strip_run(run, before, after, strip)
            units.append(("text", "".join(q.text for q in run), not have_ids, _control_space(run)))
            run = []
            have_ids = True  # the run's tokens come first (encode's ``at_start=not ids``)

    for seg in rendered.segments:
        if seg.token_ids is not None:
            flush(tuple(seg.token_ids))
            units.append(("ids", tuple(seg.token_ids)))
            have_ids = have_ids or bool(seg.token_ids)
            continue
        if (seg.kind == CONTENT and not allow_special_in_content) or pattern is None:
            add(seg.text, seg.kind == CONTENT)
            continue
        parts = split_cache.get(seg.text) if split_cache is not None else None
        if parts is None:
            pieces: list[_Piece] = []
            _split_control(seg.text, None, False, specials, pattern, pieces)
            parts = [(p.text, p.ids) for p in pieces]
            if split_cache is not None and len(seg.text) < 4096:
                if len(split_cache) > 10000:
                    split_cache.clear()
                split_cache[seg.text] = parts
        for text, ids in parts:
            if ids is None:
                add(text, seg.kind == CONTENT)
            else:
                flush(ids)
                units.append(("ids", ids))
                have_ids = True
    flush()
    return units


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
        self.stats = EncodeStats()
        self.last_text = ""

    def reset(self) -> None:
        self._cache = []

    def encode(self, messages: Any, *, tools: list[dict[str, Any]] | None = None, add_generation_prompt: bool = True, **kwargs: Any) -> list[int]:
        rendered = self.fmt.render_segments(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
        return self.encode_rendered(rendered)

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
            if u[0] == "ids":
                u_ids = list(u[1])
            else:
                u_ids, _ = _encode_run(self.tokenizer, u[1], at_start=u[2], compat=self.compat, control_space=u[3])
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
