"""The ChatFormat protocol and the base class of natively implemented (non-Jinja) formats."""

from __future__ import annotations

import contextvars
import inspect
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import NotRenderedWarning
from ..messages import Conversation, Message, as_conversation
from ..segments import CONTENT, Rendered, SegmentBuilder
from ..untrusted import DataSource

if TYPE_CHECKING:
    from ..encode import Compat, Encoded, TrainOn, Truncation


class CheckedRender(NamedTuple):
    """What :meth:`ChatFormat.render_checked` returns (unpacks as ``rendered, not_rendered``)."""

    #: the segments, as :meth:`ChatFormat.render_segments` gives them
    rendered: Rendered
    #: what of the given inputs the rendering leaves out: ``"tools"``, ``"documents"``, keyword names
    not_rendered: tuple[str, ...]

#: the names :meth:`ChatFormat.render_checked` reports for the tools and the documents (any other
#: name is a template keyword argument)
TOOLS = "tools"
DOCUMENTS = "documents"

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("chatfmt_not_rendered_quiet", default=False)


@contextmanager
def not_rendered_warnings_off() -> Iterator[None]:
    """In this block (this thread), rendering neither checks nor warns about inputs a format leaves
    out; for callers that account for them themselves with :meth:`ChatFormat.render_checked`."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def not_rendered_quiet() -> bool:
    """Whether :func:`not_rendered_warnings_off` is in effect."""
    return _QUIET.get()


def not_rendered_message(format_name: str, name: str) -> str:
    """One line saying that ``format_name`` leaves ``name`` (tools, documents or a template keyword
    argument) out of the prompt."""
    if name in (TOOLS, DOCUMENTS):
        return (
            f"chat format {format_name!r} does not render {name}: the {name} given are left out of the prompt "
            "(the model does not see them)"
        )
    return f"chat format {format_name!r} does not read the template keyword argument {name!r}: it has no effect"


def warn_not_rendered(format_name: str, names: Sequence[str], *, stacklevel: int = 2) -> None:
    """A :class:`~chatfmt.errors.NotRenderedWarning` per name (Python shows each once per place)."""
    for name in names:
        warnings.warn(
            NotRenderedWarning(not_rendered_message(format_name, name), (name,)), stacklevel=stacklevel + 1
        )


#: the keyword that carries template keyword arguments as one mapping (``template_kwargs={...}``),
#: beside or instead of passing them as keywords (transformers' ``apply_chat_template(**kwargs)``)
TEMPLATE_KWARGS = "template_kwargs"


def merge_template_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a ``template_kwargs`` mapping among them merged in: ``f(x, template_kwargs={"a":
    1})`` is ``f(x, a=1)``. A name given both ways with different values is a ``TypeError``."""
    if TEMPLATE_KWARGS not in kwargs:
        return kwargs
    kwargs = dict(kwargs)
    extra = kwargs.pop(TEMPLATE_KWARGS)
    if extra is None:
        return kwargs
    if not isinstance(extra, Mapping):
        raise TypeError(f"template_kwargs must be a mapping of keyword names to values, not {type(extra).__name__}")
    for key, value in extra.items():
        if not isinstance(key, str):
            raise TypeError(f"template_kwargs keys must be strings, not {key!r}")
        if key in kwargs and kwargs[key] != value:
            raise TypeError(f"template keyword argument {key!r} is given twice, with different values")
        kwargs[key] = value
    return kwargs


def unread_template_kwargs(fmt: Any, kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of ``kwargs`` that ``fmt`` never reads whatever the conversation (a template that
    does not mention them, a built-in whose ``build`` does not take them): what a caller that renders
    many conversations with the same keywords (``prepare``, ``serve``'s defaults, a chat session)
    reports once up front. A format object that cannot tell reports nothing."""
    renders = getattr(fmt, "renders", None)
    if renders is None:
        return ()
    return tuple(k for k, v in kwargs.items() if given(v) and renders(k) is False)


def given(value: Any) -> bool:
    """Whether a tools/documents/keyword value carries something to lose (``None`` and empty
    containers do not)."""
    if value is None:
        return False
    if isinstance(value, (list, tuple, dict, str)):
        return len(value) > 0
    return True


@dataclass(frozen=True)
class FormatInfo:
    """What a format is and how it behaves, beyond its rendering."""

    name: str
    description: str = ""
    family: str = ""
    #: strings that end generation (stop strings)
    stop: tuple[str, ...] = ()
    #: text that ends an assistant turn; trained together with the assistant message
    end_of_turn: tuple[str, ...] = ()
    bos_token: str | None = None
    eos_token: str | None = None
    supports_system: bool = True
    supports_tools: bool = False
    supports_reasoning: bool = False
    #: what the format is pinned against (vendor code, official template)
    reference: str = ""
    #: where a loaded format came from (a path), if anywhere
    source: str | None = None
    special_tokens: dict[str, str] = field(default_factory=dict)


class ChatFormat(ABC):
    """Renders conversations into text and segments.

    ``messages`` may be a list of OpenAI-style dicts, a :class:`~chatfmt.messages.Conversation`
    or an OpenAI ``{"messages": [...], "tools": [...]}`` object.
    """

    info: FormatInfo
    #: why no Jinja chat template can reproduce this format exactly (``chatfmt export`` refuses it
    #: with this reason); ``None`` when its family's export (:attr:`Family.export
    #: <chatfmt.formats.family.Family.export>`) or its spec can
    jinja_unsupported: str | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def jinja_variables(self) -> dict[str, object]:
        """The values its family's Jinja export is written with (``{% set name = value %}`` lines
        before the template body): what this instance renders with beyond the family's fixed text
        (a BOS token, a default system prompt, ...). None by default."""
        return {}

    @abstractmethod
    def render_segments(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **template_kwargs: Any,
    ) -> Rendered:
        """Render into segments (text or token ids; control or content; message index; trained)."""

    def render(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **template_kwargs: Any,
    ) -> str:
        """Render into the exact prompt text."""
        return self.render_segments(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            **template_kwargs,
        ).text

    def render_checked(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **template_kwargs: Any,
    ) -> CheckedRender:
        """:meth:`render_segments` without a warning, and what of the given inputs the rendering
        leaves out: ``"tools"``, ``"documents"`` and template keyword names (see
        :class:`~chatfmt.errors.NotRenderedWarning`). A format that cannot tell reports nothing."""
        with not_rendered_warnings_off():
            rendered = self.render_segments(
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                **template_kwargs,
            )
        return CheckedRender(rendered, ())

    def renders(self, name: str) -> bool | None:
        """Whether this format renders ``name`` (``"tools"``, ``"documents"`` or a template keyword)
        whenever it is given: ``True`` always, ``False`` never, ``None`` it depends on the
        conversation (:meth:`render_checked` tells). A format that cannot tell says ``True``."""
        return True

    def unrendered(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **template_kwargs: Any,
    ) -> tuple[str, ...]:
        """What of the given inputs the prompt of ``messages`` would leave out (see
        :meth:`render_checked`)."""
        return self.render_checked(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            **template_kwargs,
        )[1]

    def encode(
        self,
        messages: Any,
        tokenizer: Any,
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
        """Render and tokenize: ``Encoded(input_ids, labels, attention_mask, message_spans)``.

        ``tokenizer`` is a :class:`chatfmt.tokenizers.Tokenizer` or anything
        :func:`chatfmt.load_tokenizer` accepts (a path, a transformers tokenizer). One that lacks a
        token this format relies on is refused (:class:`~chatfmt.errors.TokenizerMismatchError`)
        unless ``allow_missing_tokens=True``. A Jinja template that reads ``bos_token`` /
        ``eos_token`` it was not given (a bare .jinja) takes them from ``tokenizer``.
        """
        from ..encode import encode
        from ..tokenizers import load_tokenizer
        from .loader import with_tokenizer_tokens

        tok = load_tokenizer(tokenizer)
        return encode(
            with_tokenizer_tokens(self, tok),  # a bare .jinja reads bos_token/eos_token from its tokenizer
            messages,
            tok,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            max_length=max_length,
            truncation=truncation,
            train_on=train_on,
            compat=compat,
            allow_special_in_content=allow_special_in_content,
            allow_missing_tokens=allow_missing_tokens,
            **template_kwargs,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name!r}>"


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    """How a format without tool syntax receives the tool list: ``json.dumps(tools, ensure_ascii=False)``."""
    return json.dumps(tools, ensure_ascii=False)


def inject_tools_as_system(conv: Conversation) -> Conversation:
    """For formats with no tool syntax: put the tool list into the system message.

    With no system message, the JSON dump becomes the first (system) message; with one, it is appended
    to the system content after a blank line.
    """
    if not conv.tools:
        return conv
    dump = tools_system_text(conv.tools)
    msgs = list(conv.messages)
    if msgs and msgs[0].role == "system":
        sys_msg = msgs[0]
        text = sys_msg.text
        msgs[0] = Message(
            role="system",
            content=(text + "\n\n" + dump) if text else dump,
            loss=sys_msg.loss,
            extra=sys_msg.extra,
        )
    else:
        msgs.insert(0, Message(role="system", content=dump))
    return Conversation(msgs, None)


class NativeFormat(ChatFormat):
    """Base of formats implemented in Python. Subclasses implement :meth:`build`.

    Handles input coercion and validation, the tool-list fallback for formats without tool syntax,
    and ``continue_final_message`` (drops what follows the final message's content).
    """

    info: FormatInfo
    #: template keyword arguments :meth:`build` reads from ``**kwargs`` (its keyword-only
    #: parameters count without being listed here)
    extra_template_kwargs: tuple[str, ...] = ()

    def __init__(self, info: FormatInfo | None = None) -> None:
        if info is not None:
            self.info = info

    @property
    def template_kwargs(self) -> frozenset[str]:
        """The template keyword arguments this format reads (``documents`` among them if it
        renders documents); any other is reported as not rendered."""
        return _known_kwargs(type(self))

    def renders(self, name: str) -> bool | None:
        return name == TOOLS or name in self.template_kwargs

    def _not_read(self, kwargs: dict[str, Any]) -> tuple[str, ...]:
        known = self.template_kwargs
        return tuple(k for k, v in kwargs.items() if k not in known and given(v))

    def with_info(self, **changes: Any) -> NativeFormat:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.info = replace(self.info, **changes)
        return clone

    @abstractmethod
    def build(
        self,
        conv: Conversation,
        out: SegmentBuilder,
        *,
        add_generation_prompt: bool,
        **kwargs: Any,
    ) -> None:
        """Append the segments of ``conv`` to ``out``."""

    def _plain_text(self, messages: Any, add_generation_prompt: bool) -> str | None:
        """The text of a *plain* conversation (a list of ``{"role", "content": str}`` dicts, nothing
        else given), parsed, validated and rendered in one pass, or ``None`` when this format has no
        such path or ``messages`` is not plain (the general path then parses, validates and reports
        errors). Must equal what the general path renders; ``None`` by default."""
        return None

    def _plain_rendered(self, messages: Any, add_generation_prompt: bool) -> Rendered | None:
        """:meth:`_plain_text`'s counterpart for segments (the same segments :meth:`build` gives,
        merged as :meth:`SegmentBuilder.build <chatfmt.segments.SegmentBuilder.build>` merges them)."""
        return None

    def prepare(self, messages: Any, tools: list[dict[str, Any]] | None) -> Conversation:
        conv = as_conversation(messages, tools)
        if conv.tools and not self.info.supports_tools:
            conv = inject_tools_as_system(conv)
        return conv

    def render(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> str:
        if tools is None and not kwargs and not continue_final_message:
            text = self._plain_text(messages, add_generation_prompt)
            if text is not None:
                return text
        kwargs = merge_template_kwargs(kwargs)
        if continue_final_message:
            return self.render_segments(
                messages, tools=tools, continue_final_message=True, add_generation_prompt=add_generation_prompt, **kwargs
            ).text
        if kwargs and not _QUIET.get():
            warn_not_rendered(self.info.name, self._not_read(kwargs))
        conv = self.prepare(messages, tools)
        out = SegmentBuilder()
        self.build(conv, out, add_generation_prompt=add_generation_prompt, **kwargs)
        return out.text()

    def render_segments(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> Rendered:
        kwargs = merge_template_kwargs(kwargs)
        if kwargs and not _QUIET.get():
            warn_not_rendered(self.info.name, self._not_read(kwargs))
        return self._render_segments(messages, tools, add_generation_prompt, continue_final_message, kwargs)

    def render_checked(
        self,
        messages: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        **kwargs: Any,
    ) -> CheckedRender:
        # tools always render (in the format's own syntax, or as the system message); keyword
        # arguments render when build() reads them
        kwargs = merge_template_kwargs(kwargs)
        rendered = self._render_segments(messages, tools, add_generation_prompt, continue_final_message, kwargs)
        return CheckedRender(rendered, self._not_read(kwargs))

    def _render_segments(
        self,
        messages: Any,
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        continue_final_message: bool,
        kwargs: dict[str, Any],
    ) -> Rendered:
        if tools is None and not kwargs and not continue_final_message:
            plain = self._plain_rendered(messages, add_generation_prompt)
            if plain is not None:
                return plain
        check_continue_options(continue_final_message, add_generation_prompt)
        conv = self.prepare(messages, tools)
        if continue_final_message and conv.messages and is_empty_answer(conv.messages[-1]):
            # nothing to continue: the open assistant turn is the generation prompt after the rest
            # (what Baichuan2's build_chat_input gives for a conversation ending in an empty answer)
            conv = replace(conv, messages=list(conv.messages[:-1]))
            add_generation_prompt, continue_final_message = True, False
        out = SegmentBuilder()
        self.build(conv, out, add_generation_prompt=add_generation_prompt, **kwargs)
        rendered = out.build()
        rendered.source = DataSource(conv.messages, conv.tools)
        if continue_final_message:
            rendered = cut_after_final_content(rendered, len(conv.messages) - 1)
        return rendered


@cache
def _known_kwargs(cls: type[NativeFormat]) -> frozenset[str]:
    """The keyword-only parameters of ``cls.build`` (but ``add_generation_prompt``) and its
    ``extra_template_kwargs``."""
    params = inspect.signature(cls.build).parameters.values()
    names = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    names.discard("add_generation_prompt")
    return frozenset(names | set(getattr(cls, "extra_template_kwargs", ())))


def cut_after_final_content(rendered: Rendered, last_index: int) -> Rendered:
    """Drop every segment after the last content segment of message ``last_index``."""
    from ..errors import ValidationError

    segs = rendered.segments
    for k in range(len(segs) - 1, -1, -1):
        s = segs[k]
        if s.kind == CONTENT and s.message == last_index:
            return Rendered(list(segs[: k + 1]), rendered.source)
    raise ValidationError(
        "continue_final_message is set but the final message has no content this format renders to "
        "continue (an empty final assistant message gives the open assistant turn)",
        index=last_index,
        rule="continue_final_message",
    )


def is_empty_answer(message: Any) -> bool:
    """A final assistant message with nothing to continue: no text (``None``, ``""`` or only empty
    text parts), no tool calls, no reasoning. ``continue_final_message`` on it gives the open
    assistant turn (the generation prompt after the messages before it). Takes a
    :class:`~chatfmt.messages.Message` or an OpenAI-style dict."""
    get = message.get if isinstance(message, dict) else lambda k, d=None: getattr(message, k, d)
    if get("role") != "assistant" or get("tool_calls") or any(get(k) for k in ("reasoning_content", "reasoning", "thinking")):
        return False
    content = get("content")
    if content is None or content == "":
        return True
    if isinstance(content, list):
        return all(isinstance(p, dict) and p.get("type", "text") == "text" and not p.get("text") for p in content)
    return False


def check_continue_options(continue_final_message: bool, add_generation_prompt: bool) -> None:
    """``continue_final_message`` and ``add_generation_prompt`` together are refused (as transformers
    refuses them): one continues the final message, the other opens a new one."""
    if continue_final_message and add_generation_prompt:
        from ..errors import ValidationError

        raise ValidationError(
            "continue_final_message and add_generation_prompt cannot both be set: one continues the final "
            "message, the other opens a new assistant turn",
            rule="continue_final_message",
        )
