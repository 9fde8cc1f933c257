"""The per-batch step every engine runs: raw records -> outcomes (an encoded row or a rejection).

:func:`encode_records` is the one function the local engine (in process or in worker processes),
the Ray engine and :func:`dataset_map_function` call on a batch of records: decode (JSONL lines),
:func:`~chatfmt.messages.parse_record`, then :func:`~chatfmt.encode.encode_batch` on the records
that parsed; if the batch raises, its records are encoded one by one so a bad record rejects only
itself. Its result for a record never depends on the other records of the batch.

:class:`Loader` carries a format and a tokenizer to another process: as the name or path they were
loaded from (loaded once per process), or pickled when they were given as objects.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..encode import LengthError, encode_batch, sequential
from ..errors import ChatfmtError, TemplateError, ValidationError
from ..formats.base import TOOLS, not_rendered_warnings_off, unread_template_kwargs
from ..messages import PARSERS, parse_record
from .readers import RawRecord, decode

TRUNCATIONS = ("error", "right", "drop_oldest_turns", "skip")
TRAIN_ON = ("all_assistant", "last_assistant", "all")


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """What :func:`encode_records` does with a record (picklable, sent to workers)."""

    max_length: int | None = None
    #: an :func:`~chatfmt.encode` strategy, or ``"skip"``: over-length records are rejected
    truncation: str = "error"
    train_on: str = "all_assistant"
    #: force the record kind (``None``: detected per record)
    input_kind: str | None = None
    #: keys dropped from every record and message before parsing (``--ignore-key``): for data where
    #: a key chatfmt would act on (``weight``, ``mask``, ``chosen``, ``images``, ...) means something else
    ignore_keys: tuple[str, ...] = ()
    #: encode even when the tokenizer lacks a token the format relies on (see :mod:`chatfmt.compat`)
    allow_missing_tokens: bool = False
    #: reject a record whose tools the format leaves out of the prompt (rule ``tools_not_rendered``)
    #: instead of writing it and counting it in the report's ``not_rendered``
    reject_unrendered_tools: bool = False
    #: template keyword arguments every record is rendered with (``{"enable_thinking": False}``), as
    #: ``(name, value)`` pairs in the order given; see :meth:`with_template_kwargs`
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    #: ``(source file, layout)``: records of that file are mapped by a LLaMA-Factory
    #: ``dataset_info.json`` description (:class:`~chatfmt.train.dataset_info.Layout`) and parsed as
    #: its formatting
    layouts: tuple[tuple[str, Any], ...] = ()

    def layout_for(self, source: str) -> Any:
        """The layout of the records of ``source``, if a dataset description maps them."""
        for name, layout in self.layouts:
            if name == source:
                return layout
        return None

    def with_template_kwargs(self, kwargs: Any) -> EncodeOptions:
        """These options with ``kwargs`` (a mapping, or ``None``) as the template keyword arguments."""
        from dataclasses import replace

        items = tuple(dict(kwargs or {}).items())
        bad = [k for k, _ in items if not isinstance(k, str) or not k]
        if bad:
            raise ValueError(f"template keyword names must be non-empty strings, not {bad[0]!r}")
        return replace(self, template_kwargs=items)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option that is not valid."""
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, not {self.truncation!r}")
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, not {self.train_on!r}")
        if self.input_kind is not None and self.input_kind not in PARSERS:
            raise ValueError(f"input_kind must be one of {', '.join(PARSERS)}, not {self.input_kind!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be at least 1, not {self.max_length}")

    def encode_kwargs(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "truncation": "error" if self.truncation == "skip" else self.truncation,
            "train_on": self.train_on,
            "allow_missing_tokens": self.allow_missing_tokens,
            **({"template_kwargs": dict(self.template_kwargs)} if self.template_kwargs else {}),
        }


@dataclass(slots=True)
class Outcome:
    """What became of one record: ``input_ids``/``labels``/``attention_mask`` when it was encoded,
    else the ``rule`` and ``message`` it was rejected with. ``fatal``: it is over length and
    truncation is ``"error"``, which stops the run."""

    source: str
    record: int
    input_ids: list[int] | None = None
    labels: list[int] | None = None
    attention_mask: list[int] | None = None
    truncated: bool = False
    rule: str | None = None
    message: str | None = None
    fatal: bool = False
    #: what the format left out of this record's prompt (``"tools"``): written, and counted in the report
    not_rendered: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rule is None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def length_error(self) -> LengthError:
        """The error a ``fatal`` outcome stops the run with, naming the file and record."""
        return LengthError(self.message or "over max_length", rule="max_length", source=self.source, line=self.record)


def _message(e: ValidationError) -> str:
    """The error without its location (the rejection carries the file and record itself)."""
    source, line = e.source, e.line
    e.source = e.line = None
    try:
        return str(e)
    finally:
        e.source, e.line = source, line


def _encoded(rec: RawRecord, enc: Any) -> Outcome:
    return Outcome(rec.source, rec.record, enc.input_ids, enc.labels, enc.attention_mask, bool(enc.truncated))


def _one(fmt: Any, tokenizer: Any, rec: RawRecord, conv: Any, opts: EncodeOptions) -> Outcome:
    try:
        enc = encode_batch(fmt, [conv], tokenizer, **opts.encode_kwargs())[0]
    except LengthError as e:
        return Outcome(rec.source, rec.record, rule="max_length", message=e.message, fatal=opts.truncation == "error")
    except ValidationError as e:
        return Outcome(rec.source, rec.record, rule=e.rule, message=_message(e))
    except TemplateError as e:
        return Outcome(rec.source, rec.record, rule="template", message=e.message)
    return _encoded(rec, enc)


def encode_records(fmt: Any, tokenizer: Any, records: Sequence[RawRecord], opts: EncodeOptions) -> list[Outcome]:
    """One :class:`Outcome` per record, in order (see the module doc)."""
    out: list[Outcome | None] = []
    parsed: list[tuple[int, RawRecord, Any]] = []
    for rec in records:
        rec = decode(rec)
        if rec.error is not None:
            out.append(Outcome(rec.source, rec.record, rule="json", message=rec.error))
            continue
        try:
            data = without_keys(rec.data, opts.ignore_keys) if opts.ignore_keys else rec.data
            layout = opts.layout_for(rec.source) if opts.layouts else None
            if layout is not None:
                conv = parse_record(layout.convert(data), kind=layout.kind)
            else:
                conv = parse_record(data, kind=opts.input_kind)
        except ValidationError as e:
            out.append(Outcome(rec.source, rec.record, rule=e.rule, message=_message(e)))
            continue
        parsed.append((len(out), rec, conv))
        out.append(None)
    if parsed:
        # warnings counted per record below, not warned per process; encode_batch in this thread only
        # (prepare overlaps its batches in threads of its own)
        with not_rendered_warnings_off(), sequential():
            try:
                encs = encode_batch(fmt, [c for _, _, c in parsed], tokenizer, **opts.encode_kwargs())
            except (ValidationError, TemplateError):
                for i, rec, conv in parsed:
                    out[i] = _one(fmt, tokenizer, rec, conv, opts)
            else:
                for (i, rec, _), enc in zip(parsed, encs):
                    out[i] = _encoded(rec, enc)
            for i, rec, conv in parsed:
                o = out[i]
                if o is not None and o.ok and conv.template_kwargs:
                    # a record's own template keywords (TRL's chat_template_kwargs) the format never reads
                    o.not_rendered = unread_template_kwargs(fmt, conv.template_kwargs)
                if o is not None and o.ok and conv.tools:
                    o.not_rendered = _tools_left_out(fmt, conv) + o.not_rendered
                    if TOOLS in o.not_rendered and opts.reject_unrendered_tools:
                        out[i] = Outcome(
                            rec.source,
                            rec.record,
                            rule="tools_not_rendered",
                            message=f"the chat format does not render tools: the record's {len(conv.tools)} tool(s) "
                            "would be left out of the prompt",
                        )
    done = [o for o in out if o is not None]
    assert len(done) == len(out)  # every record has its outcome by now
    return done


def _tools_left_out(fmt: Any, conv: Any) -> tuple[str, ...]:
    """``("tools",)`` when the format leaves this conversation's tools out of its prompt (decided
    per format where it can be, else by rendering the record once more without them)."""
    renders = getattr(fmt, "renders", None)
    verdict = renders(TOOLS) if renders is not None else True  # a format object that cannot tell
    if verdict is None:
        try:
            return tuple(n for n in fmt.unrendered(conv, tools=conv.tools) if n == TOOLS)
        except (ValidationError, TemplateError, ValueError):
            return ()
    return () if verdict else (TOOLS,)


def without_keys(data: Any, keys: Sequence[str]) -> Any:
    """``data`` (a record) without ``keys``, at the top level and in each message of its
    ``messages`` / ``conversations`` list (or of a bare message list); the input is not modified."""
    def strip(obj: Any) -> Any:
        return {k: v for k, v in obj.items() if k not in keys} if isinstance(obj, dict) else obj

    if isinstance(data, list):
        return [strip(m) for m in data]
    if not isinstance(data, dict):
        return data
    out = strip(data)
    for key in ("messages", "conversations"):
        if isinstance(out.get(key), list):
            out[key] = [strip(m) for m in out[key]]
    return out


class Loader:
    """A format or tokenizer that can cross to another process: its name/path, or the pickled
    object. :meth:`get` loads it (once per process)."""

    def __init__(self, what: str, spec: Any, *, tokens_from: Loader | None = None) -> None:
        self.what = what
        if isinstance(spec, str):
            from ..hub import local

            spec = local(spec, "tokenizer")  # a Hub id is fetched once, here; workers read the cache
        self.spec: str | None = str(spec) if isinstance(spec, (str, Path)) else None
        self.obj: Any = None if self.spec is not None else spec
        self.blob: bytes | None = None
        #: a format's tokenizer: a bare .jinja takes the special tokens it reads from it
        self.tokens_from = tokens_from

    def picklable(self) -> bool:
        """True when :meth:`get` works in another process."""
        if self.spec is not None:
            return True
        try:
            self.blob = pickle.dumps(self.obj)
        except Exception:
            return False
        return True

    def get(self) -> Any:
        if self.obj is None:
            if self.blob is not None:
                self.obj = pickle.loads(self.blob)
            elif self.what == "format":
                from ..formats.loader import load_format, with_tokenizer_tokens

                assert self.spec is not None  # (no object and no pickled blob: a name or path)
                self.obj = load_format(self.spec)
                if self.tokens_from is not None:
                    self.obj = with_tokenizer_tokens(self.obj, self.tokens_from.get())
            else:
                from ..tokenizers import load_tokenizer

                self.obj = load_tokenizer(self.spec)
        return self.obj

    def __getstate__(self) -> dict[str, Any]:
        if self.spec is None and self.blob is None and not self.picklable():
            raise ChatfmtError(
                f"this {self.what} object cannot be sent to worker processes; give it as a name or path"
            )
        return {"what": self.what, "spec": self.spec, "blob": self.blob, "tokens_from": self.tokens_from}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.what, self.spec, self.blob, self.obj = state["what"], state["spec"], state["blob"], None
        self.tokens_from = state.get("tokens_from")
