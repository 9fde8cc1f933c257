"""The streaming output parser: generated text (or tokens) -> content, reasoning and tool calls.

A :class:`Grammar` says, as data, what a family's output looks like: its markers, a reasoning block,
tool-call blocks (start marker, end markers, body parser), header+body segments (ChatGLM3, GLM-4,
Functionary v3.2) and bare JSON calls at the start of a message (Llama-3.x). :class:`OutputParser`
runs any grammar over a stream. Tool calls are emitted once a call is complete and its body parsed
(one delta carrying id, name and the whole arguments string), so that a malformed call can still turn
into content with a warning: nothing emitted is ever taken back.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BodyError
from ..errors import ParserError as ParserError
from ..errors import ToolCallWarning as ToolCallWarning
from .bodies import Call
from .scanner import MarkerScanner
from .types import Delta, ParsedOutput, ParserFinish, ToolCallDelta


@dataclass(frozen=True)
class Block:
    """A tool-call block: ``start`` marker, body, one of the ``end`` markers (``()``: the block runs to
    the end of the message, or to the next ``start``)."""

    start: str
    end: tuple[str, ...]
    parse: Callable[[str], list[Call]]


@dataclass(frozen=True)
class Segments:
    """Messages made of segments ``header\\nbody`` separated by the ``sep`` marker; a header in
    ``content_headers`` (stripped) introduces content, any other header names a tool whose body
    ``parse(name, body)`` turns into calls. The message starts with a header."""

    sep: str
    content_headers: frozenset[str]
    parse: Callable[[str, str], list[Call]]


_NAME_CHARS = re.compile(r"[A-Za-z0-9_.:\-]*")


@dataclass(frozen=True)
class Grammar:
    """What one family's generated output looks like."""

    name: str
    #: marker key -> text
    markers: Mapping[str, str] = field(default_factory=dict)
    #: (start key, end key) of the reasoning block
    think: tuple[str, str] | None = None
    #: whether generation starts inside the reasoning block when no prompt says otherwise
    reasoning_by_default: bool = False
    blocks: tuple[Block, ...] = ()
    segments: Segments | None = None
    #: bare calls (JSON / Python-style) as the whole message (Llama-3.x with tools)
    bare: Callable[[str], list[Call]] | None = None
    #: markers that end the message (stop tokens); text after them is ignored
    end: tuple[str, ...] = ()
    #: markers that carry no text (dropped where they appear)
    drop: tuple[str, ...] = ()
    #: the :class:`OutputParser` subclass that runs this grammar, for output that is not markers around
    #: blocks (gpt-oss's harmony channels); ``None``: :class:`OutputParser`
    parser_class: type[OutputParser] | None = None
    #: bare calls may also follow prose (``Sure! {"name": ...}``): text from a ``{`` that may open a
    #: ``{"name"`` / ``{"type"`` object is held back until it does (then a bare call) or cannot
    bare_after_prose: bool = False

    def __post_init__(self) -> None:
        keys = [
            *self.end,
            *self.drop,
            *(b.start for b in self.blocks),
            *(k for b in self.blocks for k in b.end),
        ]
        if self.think:
            keys += list(self.think)
        if self.segments:
            keys.append(self.segments.sep)
        missing = sorted({k for k in keys if k not in self.markers})
        if missing:
            raise ParserError(f"grammar {self.name!r}: marker key(s) {missing} have no text in markers")

    def with_markers(self, extra_end: Sequence[str] = ()) -> Grammar:
        """A copy that also ends at the given stop texts (a format's stop strings)."""
        markers = dict(self.markers)
        texts = set(markers.values())
        end = list(self.end)
        for k, text in enumerate(extra_end):
            if text and text not in texts:
                key = f"stop{k}"
                markers[key] = text
                end.append(key)
                texts.add(text)
            elif text:
                key = next(kk for kk, t in markers.items() if t == text)
                used = {
                    *self.drop,
                    *(b.start for b in self.blocks),
                    *(kk for b in self.blocks for kk in b.end),
                }
                if self.think:
                    used |= set(self.think)
                if self.segments:
                    used.add(self.segments.sep)
                if key not in used and key not in end:
                    end.append(key)
        return replace(self, markers=markers, end=tuple(end))


_CALL_KEYS = ('"name"', '"type"')


def _opens_call(text: str) -> bool | None:
    """Whether ``text`` (starting with ``{``) opens a JSON call object ``{"name"`` / ``{"type"``:
    True, False, or None while it still may."""
    rest = text[1:].lstrip()
    if not rest:
        return None
    if any(rest.startswith(k) for k in _CALL_KEYS):
        return True
    return None if any(k.startswith(rest) for k in _CALL_KEYS) else False


def prompt_opens_reasoning(prompt: str, start: str, end: str) -> bool:
    """True when the prompt ends inside an open reasoning block (``...<think>\\n``)."""
    idx = prompt.rfind(start)
    if idx < 0:
        return False
    rest = prompt[idx + len(start) :]
    return end not in rest and not rest.strip()


class _Stripped:
    """A text stream with leading and trailing whitespace removed, incrementally: leading whitespace is
    dropped, trailing whitespace held until more text follows it."""

    def __init__(self) -> None:
        self.started = False
        self.hold = ""

    def push(self, s: str) -> str:
        if not self.started:
            s = s.lstrip()
            if not s:
                return ""
            self.started = True
        s = self.hold + s
        body = s.rstrip()
        self.hold = s[len(body) :]
        return body


def _marker_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when it is one token of ``tokenizer`` (a control or added token, or a
    tag-shaped vocabulary piece that decodes back to itself)."""
    for attr in ("special_tokens", "added_tokens"):
        table = getattr(tokenizer, attr, None)
        if isinstance(table, Mapping) and text in table:
            return int(table[text])
    if not re.fullmatch(r"<[^<>]+>|\[[^\[\]]+\]", text):
        return None  # a plain vocabulary piece (">>>") is also produced by ordinary text
    try:
        tid = tokenizer.token_to_id(text)
        if tid is not None and tokenizer.decode([tid]) == text:
            return int(tid)
    except Exception:  # noqa: BLE001 - a tokenizer without the piece
        return None
    return None


class OutputParser:
    """Turns generated text into ``{content, reasoning_content, tool_calls}``, streaming-safe.

    Feed pieces with :meth:`feed` (any chunking; pass ``token_id`` when a piece is exactly one token so
    that single-token markers are told from the same characters written as text), then call
    :meth:`finish`. :meth:`parse` does both for a whole text. A parser is reusable after
    :meth:`reset` (``parse`` resets it).
    """

    def __init__(
        self,
        grammar: Grammar,
        tokenizer: Any = None,
        *,
        prompt: str | None = None,
        id_factory: Callable[[], str] | None = None,
        seed: int | None = None,
        warn: bool = False,
    ) -> None:
        self.grammar = grammar
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.warn = warn
        textual: dict[str, str] = {}
        by_id: dict[int, tuple[str, str]] = {}
        for key, text in grammar.markers.items():
            tid = _marker_token_id(tokenizer, text) if tokenizer is not None else None
            if tid is None:
                textual[key] = text
            else:
                by_id[tid] = (key, text)
        self._textual = textual
        self._by_id = by_id
        self._seed = seed
        self._id_factory = id_factory
        self.reset()

    @property
    def marker_token_ids(self) -> dict[str, int]:
        """Marker text -> token id, for the markers recognised only as tokens."""
        return {text: tid for tid, (_key, text) in self._by_id.items()}

    # -- state -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything fed so far (the prompt still decides the starting mode)."""
        g = self.grammar
        # with a seed, ids restart on every reset: the same output gets the same ids
        self._rng = random.Random(self._seed) if self._seed is not None else random.SystemRandom()
        self._scanner = MarkerScanner(self._textual, self._by_id)
        self._content = _Stripped()
        self._reasoning = _Stripped()
        self._content_parts: list[str] = []
        self._reasoning_parts: list[str] = []
        self._reasoning_seen = False
        self._calls: list[dict[str, Any]] = []
        self._warnings: list[str] = []
        self._out: list[Delta] = []
        self._buf = ""
        self._held = ""  # prose-mode text from a "{" that may still open a bare call
        self._block: Block | None = None
        self._seg_name = ""
        self._finished: ParserFinish | None = None
        if g.segments is not None:
            self._mode = "header"
        else:
            self._mode = "content"
        if g.think is not None:
            start, end = (g.markers[k] for k in g.think)
            if self.prompt is not None:
                opens = prompt_opens_reasoning(self.prompt, start, end)
            else:
                opens = g.reasoning_by_default
            if opens:
                self._mode = "reasoning"
                self._reasoning_seen = True

    def fresh(self, *, prompt: str | None = None) -> OutputParser:
        """A new parser of this one's class, grammar, tokenizer and options, fed nothing, for
        ``prompt``: what the constructor gives, without redoing its work (each marker looked up in
        the tokenizer). This parser is left as it is; a server keeps one unused parser per format and
        tool list and hands out fresh copies of it."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.prompt = prompt
        new.reset()
        return new

    # -- public API --------------------------------------------------------------------------------

    def feed(self, text: str, token_id: int | None = None) -> list[Delta]:
        """Deltas for the next generated piece (possibly none while text is held back)."""
        if self._finished is not None:
            raise ParserError("feed() after finish(); call reset() to parse another message")
        for key, piece in self._scanner.feed(text, token_id):
            if key is None:
                self._on_text(piece)
            else:
                self._on_marker(key, piece)
        return self._take()

    def finish(self) -> ParserFinish:
        """Flush what was held back and close open blocks; the last deltas and the final message."""
        if self._finished is not None:
            return ParserFinish([], self._finished.output)
        for key, piece in self._scanner.flush():
            if key is None:
                self._on_text(piece)
            else:
                self._on_marker(key, piece)
        self._close(at_end=True)
        deltas = self._take()
        reasoning = "".join(self._reasoning_parts)
        result = ParsedOutput(
            content="".join(self._content_parts),
            reasoning_content=reasoning if reasoning else None,
            tool_calls=[dict(c) for c in self._calls],
            warnings=list(self._warnings),
        )
        self._finished = ParserFinish(deltas, result)
        return self._finished

    def parse(self, text: str) -> ParsedOutput:
        """One-shot: reset, feed ``text`` whole, finish."""
        self.reset()
        self.feed(text)
        return self.finish().output

    # -- emission ----------------------------------------------------------------------------------

    def _take(self) -> list[Delta]:
        out, self._out = self._out, []
        return out

    def _emit_content(self, text: str) -> None:
        piece = self._content.push(text)
        if piece:
            self._content_parts.append(piece)
            if self._out and not self._out[-1].tool_calls and not self._out[-1].reasoning_content:
                self._out[-1].content += piece
            else:
                self._out.append(Delta(content=piece))

    def _emit_reasoning(self, text: str) -> None:
        piece = self._reasoning.push(text)
        if piece:
            self._reasoning_parts.append(piece)
            if self._out and not self._out[-1].tool_calls and not self._out[-1].content:
                self._out[-1].reasoning_content += piece
            else:
                self._out.append(Delta(reasoning_content=piece))

    def _emit_calls(self, calls: list[Call]) -> None:
        deltas = []
        for c in calls:
            index = len(self._calls)
            call_id = c.id or self._new_id()
            self._calls.append(
                {"id": call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            )
            deltas.append(ToolCallDelta(index=index, id=call_id, name=c.name, arguments=c.arguments))
        self._out.append(Delta(tool_calls=deltas))

    def _new_id(self) -> str:
        if self._id_factory is not None:
            return self._id_factory()
        return "call_" + "".join(self._rng.choice("0123456789abcdef") for _ in range(24))

    def _warn(self, message: str) -> None:
        self._warnings.append(message)
        if self.warn:
            warnings.warn(f"{self.grammar.name}: {message}", ToolCallWarning, stacklevel=3)

    def _try_calls(self, parse: Callable[[], list[Call]], raw: str, what: str) -> None:
        try:
            calls = parse()
        except BodyError as e:
            self._warn(f"malformed {what} kept as content: {e.message}")
            self._emit_content(raw)
        else:
            self._emit_calls(calls)
            self._emit_content(getattr(calls, "rest", ""))  # prose after the calls stays content

    # -- the state machine -------------------------------------------------------------------------

    def _on_text(self, text: str) -> None:
        mode = self._mode
        if mode == "content":
            g = self.grammar
            if g.bare is not None and not self._content.started and not self._calls and not self._held:
                stripped = text.lstrip()
                if stripped[:1] in ("{", "["):
                    self._mode = "bare"
                    self._buf = stripped
                    return
            if g.bare is not None and g.bare_after_prose and not self._calls:
                return self._prose_then_bare(text)
            self._emit_content(text)
        elif mode == "reasoning":
            self._emit_reasoning(text)
        elif mode in ("block", "bare", "seg_call"):
            self._buf += text
        elif mode == "header":
            self._buf += text
            head, nl, rest = self._buf.partition("\n")
            if nl and _NAME_CHARS.fullmatch(head.strip()):
                self._buf = ""
                self._start_segment_body(head, rest)
            elif not _NAME_CHARS.fullmatch((head if nl else self._buf).strip()):
                # not a header (a tool name): content, decided the same way whatever the chunking
                text, self._buf = self._buf, ""
                self._mode = "seg_content"
                self._emit_content(text)
        elif mode == "seg_content":
            self._emit_content(text)
        # mode "done": text after an end-of-turn marker is not part of the message (a backend that
        # did not stop there, or the next turn of a rendered conversation)

    def _prose_then_bare(self, text: str) -> None:
        """Content in which a ``{"name"`` / ``{"type"`` object starts a bare call: the text from a
        ``{`` is held while it can still open one (decided on the text alone, so in any chunking)."""
        text = self._held + text
        self._held = ""
        while text:
            at = text.find("{")
            if at < 0:
                self._emit_content(text)
                return
            if at:
                self._emit_content(text[:at])
                text = text[at:]
            verdict = _opens_call(text)
            if verdict is True:
                self._mode = "bare"
                self._buf = text
                return
            if verdict is None:
                self._held = text
                return
            self._emit_content("{")
            text = text[1:]

    def _flush_held(self) -> None:
        held, self._held = self._held, ""
        if held:
            self._emit_content(held)

    def _start_segment_body(self, head: str, rest: str) -> None:
        seg = self.grammar.segments
        assert seg is not None
        name = head.strip()
        if name in seg.content_headers:
            self._mode = "seg_content"
            self._emit_content(rest)
        else:
            self._mode = "seg_call"
            self._seg_name = head
            self._buf = rest

    def _on_marker(self, key: str, text: str) -> None:
        g = self.grammar
        mode = self._mode
        self._flush_held()
        if mode == "done":
            return self._on_text(text)
        if key in g.end:
            self._close(at_end=True)
            self._mode = "done"
            return
        if mode == "content":
            if g.think and key == g.think[0]:
                self._mode = "reasoning"
                self._reasoning_seen = True
                return
            if g.think and key == g.think[1]:
                self._warn(f"{text!r} without an open reasoning block dropped")
                return
            for b in g.blocks:
                if key == b.start:
                    self._mode = "block"
                    self._block = b
                    self._buf = ""
                    return
            if key in g.drop:
                return
            return self._on_text(text)
        if mode == "reasoning":
            if g.think and key == g.think[1]:
                self._mode = "content"
                return
            return self._on_text(text)
        if mode == "block":
            open_block = self._block
            assert open_block is not None
            if key in open_block.end or (not open_block.end and key == open_block.start):
                self._close(at_end=False, closing=text if key in open_block.end else "")
                self._mode = "content"
                if key == open_block.start:
                    self._mode = "block"
                    self._block = open_block
                    self._buf = ""
                return
            return self._on_text(text)
        if mode in ("header", "seg_content", "seg_call"):
            seg = g.segments
            if seg is not None and key == seg.sep:
                self._close(at_end=False)
                self._mode = "header"
                self._buf = ""
                return
            if key in g.drop:
                return
            return self._on_text(text)
        if mode == "bare" and key in g.drop:
            return
        return self._on_text(text)

    def _close(self, *, at_end: bool, closing: str = "") -> None:
        """Close the open block/segment (a marker ended it, or the message ended)."""
        g = self.grammar
        self._flush_held()
        mode = self._mode
        buf, self._buf = self._buf, ""
        if mode == "block":
            b = self._block
            assert b is not None
            start = g.markers[b.start]
            if at_end and b.end:
                self._warn(f"unclosed {start!r} block kept as content")
                self._emit_content(start + buf)
            else:
                self._try_calls(lambda: b.parse(buf), start + buf + closing, f"{start!r} block")
            self._block = None
        elif mode == "bare":
            try:
                calls = g.bare(buf) if g.bare else []
            except BodyError as e:
                if '"name"' in buf:
                    self._warn(f"malformed tool call kept as content: {e.message}")
                self._emit_content(buf)
            else:
                self._emit_calls(calls)
                self._emit_content(getattr(calls, "rest", ""))
        elif mode == "seg_call":
            seg = g.segments
            assert seg is not None
            name = self._seg_name
            self._try_calls(lambda: seg.parse(name, buf), name + "\n" + buf, f"call of {name.strip()!r}")
        elif mode == "header":
            if buf.strip():
                self._emit_content(buf)
        elif mode == "reasoning" and at_end:
            self._warn("reasoning block not closed")
        if at_end:
            self._mode = "done"
