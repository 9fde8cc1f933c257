"""The seams between chatfmt's parts, as structural types (:class:`typing.Protocol`).

Each names what the rest of chatfmt calls on one kind of object, so that a plugin's object (or a
test double) is checked by a type checker without deriving from chatfmt's base classes. chatfmt's
own implementations satisfy them:

=========================  =======================================================================
:class:`FormatLike`        :class:`~chatfmt.formats.base.ChatFormat` (a ``chatfmt.formats`` plugin)
:class:`TokenizerLike`     :class:`~chatfmt.tokenizers.base.Tokenizer` (what a ``chatfmt.tokenizers``
                           kind loads)
:class:`WholeTextEncoder`  what :meth:`TokenizerLike.whole_text_backend` returns (a ``tokenizers``
                           object)
:class:`BackendLike`       :class:`~chatfmt.inference.backends.base.Backend` (``chatfmt.backends``)
:class:`OutputParserLike`  :class:`~chatfmt.toolcalls.parser.OutputParser` (``chatfmt.parsers``)
:class:`RecordParser`      a record kind's ``parse`` (``chatfmt.record_kinds``)
:class:`RecordKindLike`    :class:`~chatfmt.messages.RecordKind`
=========================  =======================================================================
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .formats.base import CheckedRender, FormatInfo
    from .inference.backends.base import GenerationParams, GenerationResult
    from .messages import Conversation
    from .segments import Rendered
    from .tokenizers.base import TextEncoding
    from .toolcalls.types import Delta, ParsedOutput, ParserFinish

__all__ = [
    "BackendLike",
    "EncodingLike",
    "FormatLike",
    "OutputParserLike",
    "RecordDetector",
    "RecordKindLike",
    "RecordParser",
    "TokenizerLike",
    "WholeTextEncoder",
]


@runtime_checkable
class FormatLike(Protocol):
    """A chat format: renders a conversation into segments and text, and describes itself. The
    options are :class:`~chatfmt.formats.base.ChatFormat`'s: ``tools``, ``add_generation_prompt``,
    ``continue_final_message`` and template keyword arguments."""

    @property
    def info(self) -> FormatInfo: ...

    @property
    def name(self) -> str: ...

    def render_segments(self, messages: Any, **options: Any) -> Rendered: ...

    def render(self, messages: Any, **options: Any) -> str: ...

    def render_checked(self, messages: Any, **options: Any) -> CheckedRender: ...


class EncodingLike(Protocol):
    """One encoded text of a :class:`WholeTextEncoder` batch: ids and character offsets."""

    @property
    def ids(self) -> list[int]: ...

    @property
    def offsets(self) -> list[tuple[int, int]]: ...


class WholeTextEncoder(Protocol):
    """Encodes whole rendered conversations, control tokens matched in the text, in one batched call
    (a ``tokenizers.Tokenizer``)."""

    def encode_batch(self, input: Sequence[str], /, *, add_special_tokens: bool = ...) -> Sequence[EncodingLike]: ...


@runtime_checkable
class TokenizerLike(Protocol):
    """What chatfmt's encoder, prompt builder, server and ``prepare`` call on a tokenizer. Its ids
    must never encode a control token from plain text (see :class:`~chatfmt.tokenizers.base.Tokenizer`)."""

    kind: str
    source: str | None

    @property
    def special_tokens(self) -> dict[str, int]: ...

    @property
    def control_ids(self) -> frozenset[int]: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def bos_token(self) -> str | None: ...

    @property
    def eos_token(self) -> str | None: ...

    @property
    def bos_id(self) -> int | None: ...

    @property
    def eos_id(self) -> int | None: ...

    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]: ...

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding: ...

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_token(self, id: int) -> str | None: ...

    def whole_text_backend(self) -> WholeTextEncoder | None:
        """An encoder of whole rendered texts that gives the same ids as encoding run by run, or
        ``None`` (then chatfmt encodes run by run)."""
        ...


@runtime_checkable
class BackendLike(Protocol):
    """A loaded model that continues token ids (what :class:`~chatfmt.Chat` and ``serve`` drive)."""

    name: str
    model_path: str

    @property
    def n_ctx(self) -> int: ...

    @property
    def tokenizer(self) -> Any: ...

    def default_format(self) -> Any: ...

    def generate(  # continue prompt_ids; see Backend.generate
        self, prompt_ids: Sequence[int], params: GenerationParams, *, result: GenerationResult | None = None, cancel: threading.Event | None = None
    ) -> Generator[int, None, None]: ...

    def close(self) -> None: ...


@runtime_checkable
class OutputParserLike(Protocol):
    """Splits a model's output, streamed or whole, into content, reasoning and tool calls."""

    def reset(self) -> None: ...

    def feed(self, text: str, token_id: int | None = None) -> list[Delta]: ...

    def finish(self) -> ParserFinish: ...

    def parse(self, text: str) -> ParsedOutput: ...


class RecordParser(Protocol):
    """A record kind's parser: one dataset record (decoded JSON) to a validated conversation;
    ``strict_tools=False`` keeps tool definitions that are not valid JSON Schema."""

    def __call__(self, record: Any, /, *, strict_tools: bool = ...) -> Conversation: ...


class RecordDetector(Protocol):
    """Tells a record of one kind by its keys."""

    def __call__(self, record: dict[str, Any], /) -> bool: ...


class RecordKindLike(Protocol):
    """A record kind: its name, its parser, and optionally how to tell its records."""

    @property
    def name(self) -> str: ...

    @property
    def parse(self) -> RecordParser: ...

    @property
    def detect(self) -> RecordDetector | None: ...

    @property
    def description(self) -> str: ...


if TYPE_CHECKING:  # chatfmt's own implementations satisfy the protocols (checked by mypy, never run)
    from .formats.base import ChatFormat
    from .inference.backends.base import Backend
    from .messages import RecordKind
    from .tokenizers.base import Tokenizer
    from .toolcalls.parser import OutputParser

    def _conforms(
        fmt: ChatFormat, tok: Tokenizer, backend: Backend, parser: OutputParser, kind: RecordKind
    ) -> tuple[FormatLike, TokenizerLike, BackendLike, OutputParserLike, RecordKindLike]:
        return fmt, tok, backend, parser, kind
