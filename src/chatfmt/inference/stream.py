"""From generated ids to an assistant message, one token at a time: incremental decoding (no broken
UTF-8), stop strings that may span tokens, and the family's output parser (content, reasoning,
tool calls). Shared by :class:`chatfmt.Chat` and the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, GenerationParams, GenerationResult

if TYPE_CHECKING:
    from ..types import TokenizerLike


class IncrementalDecoder:
    """Text of generated ids as it becomes final: a token that ends inside a multi-byte character
    waits until the character is complete (decoding is done over a short window, so the cost per
    token does not grow with the length of the output)."""

    def __init__(self, tokenizer: TokenizerLike) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # ids before this are emitted

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        dec = self.tokenizer.decode
        prefix_text = dec(self.ids[self._prefix : self._read])
        full = dec(self.ids[self._prefix :])
        if full.endswith("\ufffd") and len(self.ids) - self._read < 8:
            return ""  # an incomplete character: wait for the next byte(s)
        if not full.startswith(prefix_text):
            # a decoder that rewrote the prefix (rare: e.g. sentencepiece space handling); emit the
            # difference after the common part
            k = 0
            while k < min(len(full), len(prefix_text)) and full[k] == prefix_text[k]:
                k += 1
            new = full[k:]
        else:
            new = full[len(prefix_text) :]
        self._prefix = self._read
        self._read = len(self.ids)
        return new


class StopMatcher:
    """Finds stop strings in streamed text, holding back a tail that could still become one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.hit: str | None = None

    def feed(self, text: str) -> str:
        """Text safe to emit; sets :attr:`hit` (and drops the rest) once a stop string appears."""
        if not self.stops:
            return text
        buf = self._held + text
        # generation ends where a stop string is first *complete*: the occurrence that ends first (of
        # those ending at the same place, the longer one), so the cut does not depend on how the text
        # was chunked (a stop that starts earlier but completes later would never be reached)
        first = None
        for s in self.stops:
            k = buf.find(s)
            if k >= 0 and (first is None or (k + len(s), k) < (first[0] + len(first[1]), first[0])):
                first = (k, s)
        if first is not None:
            self.hit = first[1]
            self._held = ""
            return buf[: first[0]]
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass
class Reply:
    """A finished assistant turn."""

    content: str
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: "stop", "length", "tool_calls", "cancelled"
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    #: the generated ids (including the stop token when generation stopped on one)
    completion_ids: list[int] = field(default_factory=list)
    #: the generated text as the model produced it (before parsing)
    raw_text: str = ""
    warnings: list[str] = field(default_factory=list)
    #: seconds from start to the first token and in total
    time_to_first_token: float | None = None
    elapsed: float = 0.0
    #: each generated token's log-probability (and top alternatives) when asked for with
    #: ``logprobs=True`` / ``top_logprobs=k`` (:class:`~chatfmt.inference.backends.base.TokenLogprob`)
    logprobs: list[Any] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The OpenAI-shaped assistant message."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content if (self.content or not self.tool_calls) else None}
        if self.reasoning_content:
            msg["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg

    def __str__(self) -> str:
        return self.content


class ReplyStream:
    """Iterate for :class:`~chatfmt.toolcalls.Delta` objects as tokens arrive; :attr:`reply` holds the
    finished :class:`Reply` once iteration ends. ``cancel()`` (or closing the iterator) stops the
    backend."""

    def __init__(
        self,
        backend: Backend,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        parser: Any,
        tokenizer: Any,
        *,
        stop: Sequence[str] = (),
    ) -> None:
        self.backend = backend
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.parser = parser
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.cancel_event = threading.Event()
        self.reply: Reply | None = None
        self._started = False

    def cancel(self) -> None:
        self.cancel_event.set()

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("a ReplyStream can be iterated once")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[Any]:
        t0 = time.perf_counter()
        ttft = None
        res = GenerationResult()
        dec = IncrementalDecoder(self.tokenizer)
        stopper = StopMatcher(self.stop)
        ids: list[int] = []
        raw: list[str] = []
        gen = self.backend.generate(self.prompt_ids, self.params, result=res, cancel=self.cancel_event)
        try:
            for tid in gen:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                ids.append(tid)
                piece = dec.add(tid)
                if not piece:
                    continue
                safe = stopper.feed(piece)
                if safe:
                    raw.append(safe)
                    # the token id goes with the piece when the piece is that token's whole text (the
                    # parser tells a marker token from the same characters spelled as ordinary text)
                    yield from self.parser.feed(safe, tid if safe == piece else None)
                if stopper.hit is not None:
                    res.finish_reason = "stop"
                    break
        finally:
            gen.close()
        if stopper.hit is None:
            tail = stopper.flush()
            if tail:
                raw.append(tail)
                yield from self.parser.feed(tail, None)
        if res.stop_id is not None:
            ids.append(res.stop_id)
        last, parsed = self.parser.finish()
        yield from last
        finish = res.finish_reason or "stop"
        if parsed.tool_calls and finish == "stop":
            finish = "tool_calls"
        self.reply = Reply(
            content=parsed.content,
            reasoning_content=parsed.reasoning_content,
            tool_calls=list(parsed.tool_calls),
            finish_reason=finish,
            usage=Usage(len(self.prompt_ids), res.completion_tokens, res.cached_tokens),
            completion_ids=ids,
            raw_text="".join(raw),
            warnings=list(parsed.warnings),
            time_to_first_token=ttft,
            elapsed=time.perf_counter() - t0,
            logprobs=list(res.logprobs),
        )

    def run(self) -> Reply:
        """Consume the stream and return the reply."""
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply
