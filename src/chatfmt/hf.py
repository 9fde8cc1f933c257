"""A transformers tokenizer whose ``apply_chat_template`` renders and encodes through chatfmt.

:func:`wrap` takes a transformers tokenizer (or a model directory, a ``.gguf`` file or a Hub id) and
returns the same tokenizer as an instance of a thin subclass of its own class: ``isinstance`` checks
(TRL's ``PreTrainedTokenizerBase``, ``TokenizersBackend``, the model's tokenizer class) hold, and
everything but the chat template is the tokenizer's own code on the tokenizer's own state (encode,
decode, ``__call__``, pad, vocabulary, special tokens). What changes:

- ``apply_chat_template`` keeps transformers' signature and return types (``tokenize``,
  ``return_dict``, ``return_tensors``, ``padding``, ``truncation``, ``max_length``, ``tools``,
  ``documents``, ``chat_template``, ``add_generation_prompt``, ``continue_final_message``, template
  keyword arguments, batched conversations) but the text is rendered by chatfmt (the tokenizer's own
  chat template through chatfmt's Jinja path, or the chatfmt format given to :func:`wrap`) and the ids
  are chatfmt's: equal to transformers' for ordinary input, while message content that spells a
  control token (``<|im_end|>``, ``[INST]``) stays ordinary text tokens (transformers' default turns
  it into the control token). ``assistant_masks`` (``return_assistant_tokens_mask=True``) are chatfmt's
  trained tokens (its ``labels != -100``: every assistant turn with its end-of-turn token, a message's
  ``loss``/``weight``/``train`` flags honoured) for every template, with no ``{% generation %}``
  blocks needed (transformers gives all zeros without them, e.g. for Qwen2.5's template);
- ``chat_template`` reads as the format's template with a leading Jinja comment saying the masks
  come from chatfmt (it renders to nothing; TRL's ``assistant_only_loss`` looks for the word
  ``{% generation %}`` in it and, finding it, uses this tokenizer's masks instead of swapping in a
  template of its own); setting it sets the wrapped tokenizer's template and the format follows;
- ``save_pretrained`` saves the tokenizer as transformers would without the wrapper (its own class
  name and template; with an explicit format that has a Jinja export, that export as the template);
- pickling (``datasets.map(num_proc=...)``, ``copy.deepcopy``) rebuilds the wrapper from the plain
  tokenizer and the format.

Ids follow transformers where chatfmt's vendor rule differs (``compat="transformers"``: Llama-2's
``<s>[INST]``); ``compat="vendor"`` gives the vendor encoder's ids instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ChatfmtError, FormatError

if TYPE_CHECKING:
    from .encode import Compat, TrainOn

__all__ = ["MASKS_NOTE", "ChatfmtTokenizerMixin", "is_wrapped", "unwrap", "wrap"]

#: the comment :attr:`ChatfmtTokenizerMixin.chat_template` starts with (``+#}``: no newline trimmed after it)
MASKS_NOTE = (
    "{# chatfmt.hf.wrap: apply_chat_template renders and encodes through chatfmt, and assistant_masks are "
    "chatfmt's trained tokens for this template, as {% generation %} blocks would mark them +#}"
)

_SUBCLASSES: dict[type, type] = {}

#: tokenizer_kwargs of apply_chat_template that chatfmt's encoding honours
_TOKENIZER_KWARGS = ("pad_to_multiple_of", "padding_side", "return_attention_mask", "return_token_type_ids", "verbose")


class _Options:
    """What a wrapper was made with (picklable: the format as given, not a compiled template)."""

    def __init__(self, format: Any, compat: Compat, train_on: TrainOn, allow_missing_tokens: bool) -> None:
        self.format = format  # None (the tokenizer's own template), a name/path or a ChatFormat
        self.compat = compat
        self.train_on = train_on
        self.allow_missing_tokens = allow_missing_tokens


def _marked(template: Any) -> Any:
    if isinstance(template, str):
        return template if template.startswith(MASKS_NOTE) else MASKS_NOTE + template
    if isinstance(template, dict):
        return {k: _marked(v) for k, v in template.items()}
    return template


def _unmarked(template: Any) -> Any:
    if isinstance(template, str):
        return template[len(MASKS_NOTE):] if template.startswith(MASKS_NOTE) else template
    if isinstance(template, dict):
        return {k: _unmarked(v) for k, v in template.items()}
    return template


class ChatfmtTokenizerMixin:
    """Mixed in front of a transformers tokenizer class by :func:`wrap` (see the module doc)."""

    _chatfmt_base: type[Any]

    if TYPE_CHECKING:  # provided by the transformers tokenizer class this is mixed in front of
        special_tokens_map: dict[str, Any]
        model_input_names: list[str]

        def __len__(self) -> int: ...

    # -- state ----------------------------------------------------------------------------------

    @property
    def _chatfmt(self) -> _Options:
        options: _Options = self.__dict__["_chatfmt_options"]
        return options

    def _chatfmt_plain(self) -> Any:
        """The tokenizer without the wrapper: an instance of its own class on the same state."""
        plain: Any = object.__new__(self._chatfmt_base)
        plain.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_chatfmt")})
        return plain

    def _chatfmt_tokenizer(self) -> Any:
        """chatfmt's adapter for this tokenizer, rebuilt when tokens are added."""
        from .tokenizers.transformers_obj import TransformersTokenizer

        key = (len(self), tuple(sorted((k, str(v)) for k, v in self.special_tokens_map.items())))
        cached = self.__dict__.get("_chatfmt_tok")
        if cached is None or cached[0] != key:
            cached = (key, TransformersTokenizer(self, source=str(getattr(self, "name_or_path", "") or "") or None))
            self.__dict__["_chatfmt_tok"] = cached
        return cached[1]

    def _chatfmt_format(self, chat_template: Any = None) -> Any:
        """The format ``apply_chat_template`` renders with: the one given to :func:`wrap`, or a Jinja
        format of this tokenizer's template (``chat_template``: a template string or a template name)."""
        cache = self.__dict__.setdefault("_chatfmt_formats", {})
        own = self.__dict__.get("chat_template")
        if chat_template is not None:
            chat_template = _unmarked(chat_template)
            if isinstance(own, dict) and chat_template in own:
                key: Any = ("named", chat_template, own[chat_template])
            elif chat_template == own or (isinstance(own, dict) and chat_template == own.get("default")):
                chat_template = None
            else:
                key = ("template", chat_template)
        if chat_template is None:
            key = ("own", repr(own)) if self._chatfmt.format is None else ("given",)
        fmt = cache.get(key)
        if fmt is None:
            cache.clear()  # one template at a time is the rule; do not grow without bound
            fmt = cache[key] = self._chatfmt_build(key)
        return fmt

    def _chatfmt_build(self, key: tuple[Any, ...]) -> Any:
        from .formats.jinja import JinjaFormat
        from .formats.loader import load_format, with_tokenizer_tokens

        tokens = {k: v for k, v in self.special_tokens_map.items() if isinstance(v, str) and v}
        name = Path(str(getattr(self, "name_or_path", "") or "jinja")).name or "jinja"
        if key[0] == "given":
            fmt = load_format(self._chatfmt.format)
            return with_tokenizer_tokens(fmt, self)
        if key[0] == "template":
            return JinjaFormat(key[1], name=f"{name}:chat_template", special_tokens=tokens)
        if key[0] == "named":
            return JinjaFormat(key[2], name=f"{name}:{key[1]}", special_tokens=tokens)
        own = self.__dict__.get("chat_template")
        if isinstance(own, dict):
            if "default" not in own:
                raise FormatError(
                    f"the tokenizer has named chat templates ({', '.join(sorted(own))}) but no 'default': "
                    "pass chat_template=NAME"
                )
            return JinjaFormat(own["default"], name=name, special_tokens=tokens, tool_use_template=own.get("tool_use"))
        if not isinstance(own, str):
            raise FormatError(
                "the tokenizer has no chat_template: give chatfmt.hf.wrap a format (a built-in name, a .jinja, "
                "a .toml) or set tokenizer.chat_template"
            )
        return JinjaFormat(own, name=name, special_tokens=tokens)

    # -- the template attribute -----------------------------------------------------------------

    @property
    def chat_template(self) -> Any:
        """The format's Jinja template, led by :data:`MASKS_NOTE`."""
        if self._chatfmt.format is not None:
            text = self._chatfmt_export()
            return _marked(text if text is not None else "")
        return _marked(self.__dict__.get("chat_template"))

    @chat_template.setter
    def chat_template(self, value: Any) -> None:
        self.__dict__["chat_template"] = _unmarked(value)
        if self._chatfmt.format is not None and value is not None:
            self._chatfmt.format = None  # a template set on the tokenizer replaces the format given to wrap
        self.__dict__.pop("_chatfmt_formats", None)

    def _chatfmt_export(self) -> str | None:
        """The Jinja export of the format given to :func:`wrap`, or ``None`` when it has none."""
        from .formats.export import to_jinja

        try:
            return to_jinja(self._chatfmt_format())
        except FormatError:
            return None

    # -- apply_chat_template --------------------------------------------------------------------

    def apply_chat_template(  # noqa: C901 - one argument list, checked in transformers' order
        self,
        conversation: Any,
        tools: list[Any] | None = None,
        documents: list[dict[str, Any]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        sanitize_control_tokens: bool = False,
        padding: Any = False,
        truncation: Any = False,
        max_length: int | None = None,
        return_tensors: Any = None,
        return_dict: bool = True,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """transformers' ``apply_chat_template``, rendered and encoded by chatfmt (see the module doc).

        Message content is never turned into control tokens, whatever ``sanitize_control_tokens``
        says, and tool definitions and tool calls that spell one are refused (every chatfmt encoder
        does, rule ``control_token_in_data``); with ``sanitize_control_tokens=True``, documents and
        template keyword arguments that spell a control token are refused too (the template writes
        them as they are, so chatfmt would encode the token). ``continue_final_message`` continues the final
        message's content (a field name other than ``"content"`` is refused). ``tokenizer_kwargs``
        may hold ``pad_to_multiple_of``, ``padding_side``, ``return_attention_mask``,
        ``return_token_type_ids``; any other key is refused."""
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not (return_dict and tokenize):
            raise ValueError("`return_assistant_tokens_mask=True` requires `return_dict=True` and `tokenize=True`")
        tk = dict(tokenizer_kwargs or {})
        unknown = sorted(set(tk) - set(_TOKENIZER_KWARGS))
        if unknown:
            raise ValueError(
                f"chatfmt.hf.wrap: tokenizer_kwargs {', '.join(map(repr, unknown))} not supported "
                f"(supported: {', '.join(_TOKENIZER_KWARGS)})"
            )
        if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        if isinstance(conversation, (list, tuple)) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
        ):
            conversations, batched = list(conversation), True
        else:
            conversations, batched = [conversation], False
        conversations = [_messages(c) for c in conversations]
        if isinstance(continue_final_message, str):
            if continue_final_message != "content":
                raise ValueError(
                    f"chatfmt.hf.wrap: continue_final_message={continue_final_message!r} is not supported "
                    "(chatfmt continues the final message's content: pass True)"
                )
            continue_final_message = True
        if continue_final_message:
            if add_generation_prompt:
                raise ValueError(
                    "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                    "when you want the model to continue the final message, and add_generation_prompt when you want "
                    "to add a header that will prompt it to start a new assistant message instead."
                )
            if return_assistant_tokens_mask:
                raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        fmt = self._chatfmt_format(chat_template)
        if tools is not None:
            tools = [t if isinstance(t, dict) else _json_schema(t) for t in tools]
        if sanitize_control_tokens:
            self._chatfmt_refuse_control_spellings(tools, documents, kwargs)
        render: dict[str, Any] = dict(kwargs)
        if documents is not None:
            render["documents"] = documents
        if continue_final_message:
            render["continue_final_message"] = True
        if not tokenize:
            texts = [
                fmt.render(c, tools=tools, add_generation_prompt=add_generation_prompt, **render) for c in conversations
            ]
            return texts if batched else texts[0]

        from .encode import IGNORE_INDEX, encode_batch

        opts = self._chatfmt
        encs = encode_batch(
            fmt,
            conversations,
            self._chatfmt_tokenizer(),
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            train_on=opts.train_on,
            compat=opts.compat,
            allow_missing_tokens=opts.allow_missing_tokens,
            **render,
        )
        ids = [list(e.input_ids) for e in encs]
        masks = [[0 if x == IGNORE_INDEX else 1 for x in e.labels] for e in encs]
        if truncation not in (False, None, "do_not_truncate"):
            limit = max_length if max_length is not None else getattr(self, "model_max_length", None)
            if limit is not None:
                left = getattr(self, "truncation_side", "right") == "left"
                ids = [x[-limit:] if left and len(x) > limit else x[:limit] for x in ids]
                masks = [m[-limit:] if left and len(m) > limit else m[:limit] for m in masks]
        data: dict[str, Any] = {"input_ids": ids}
        if padding not in (False, None, "do_not_pad") or "pad_to_multiple_of" in tk:
            side = tk.get("padding_side") or getattr(self, "padding_side", "right")
            padded = self._chatfmt_base.pad(
                self,
                {"input_ids": ids},
                padding=padding if padding not in (False, None) else "longest",
                max_length=max_length,
                pad_to_multiple_of=tk.get("pad_to_multiple_of"),
                padding_side=side,
                return_attention_mask=True,
            )
            attention = [list(a) for a in padded["attention_mask"]]
            new_ids = [list(x) for x in padded["input_ids"]]
            masks = [
                ([0] * (len(n) - len(m)) + m) if side == "left" else (m + [0] * (len(n) - len(m)))
                for n, m in zip(new_ids, masks)
            ]
            data["input_ids"] = ids = new_ids
        else:
            attention = [[1] * len(x) for x in ids]
        if tk.get("return_attention_mask", "attention_mask" in self.model_input_names):
            data["attention_mask"] = attention
        if tk.get("return_token_type_ids", "token_type_ids" in self.model_input_names):
            data["token_type_ids"] = [[0] * len(x) for x in ids]
        if return_assistant_tokens_mask:
            data["assistant_masks"] = masks
        if not batched and not return_tensors:
            data = {k: v[0] for k, v in data.items()}
        from transformers import BatchEncoding

        out = BatchEncoding(data, tensor_type=return_tensors)
        return out if return_dict else out["input_ids"]

    def _chatfmt_refuse_control_spellings(self, tools: Any, documents: Any, kwargs: dict[str, Any]) -> None:
        """``sanitize_control_tokens=True``: message content is always text in chatfmt, but tools,
        documents and template keyword arguments are written by the template, and a control token
        spelled in them would be encoded as that token; refuse instead of ignoring the flag."""
        controls = sorted(self._chatfmt_tokenizer().special_tokens, key=len, reverse=True)
        for where, value in (("tools", tools), ("documents", documents), *kwargs.items()):
            for text in _strings(value):
                hit = next((c for c in controls if c and c in text), None)
                if hit is not None:
                    raise ValueError(
                        f"chatfmt.hf.wrap: sanitize_control_tokens=True, and {where} spells the control token "
                        f"{hit!r}: chatfmt keeps message content as text, but not what the template writes from "
                        f"{where}; remove it or pass sanitize_control_tokens=False"
                    )

    # -- saving and pickling --------------------------------------------------------------------

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """Save as the plain tokenizer (its own class name); with a format given to :func:`wrap`, its
        Jinja export is the saved template (a format with none: the tokenizer's own, and a warning)."""
        plain = self._chatfmt_plain()
        if self._chatfmt.format is not None:
            text = self._chatfmt_export()
            if text is None:
                import warnings

                from .errors import ChatfmtWarning

                warnings.warn(
                    f"chatfmt format {self._chatfmt_format().info.name!r} has no Jinja export: the saved "
                    "chat_template is the tokenizer's own, which transformers will render instead",
                    ChatfmtWarning,
                    stacklevel=2,
                )
            else:
                plain.chat_template = text
        return plain.save_pretrained(save_directory, *args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _rebuild, (self._chatfmt_plain(), self._chatfmt)


def _messages(conv: Any) -> Any:
    """A conversation as transformers takes it: a message list, or an object with ``.messages``;
    message objects become dicts."""
    if hasattr(conv, "messages") and not isinstance(conv, dict):
        conv = conv.messages
    if isinstance(conv, (list, tuple)):
        return [_loss_flag(m, k) if isinstance(m, dict) else _as_dict(m) for k, m in enumerate(conv)]
    return conv


def _loss_flag(m: dict[str, Any], index: int) -> dict[str, Any]:
    """A message whose loss key (``weight``, ``train``, ``loss_weight``, ...) says whether it is
    trained carries that as ``loss`` too, which chatfmt's templates read for the mask."""
    from .messages import LOSS_KEYS, parse_message

    if not any(m.get(k) is not None for k in LOSS_KEYS if k != "loss"):
        return m
    loss = parse_message(m, index).loss
    return m if loss is None else {**m, "loss": loss}


def _strings(value: Any) -> list[str]:
    """Every string in a JSON-like value (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _as_dict(m: Any) -> Any:
    if hasattr(m, "model_dump"):
        return m.model_dump()
    if hasattr(m, "__dict__"):
        return dict(vars(m))
    return m


def _json_schema(fn: Any) -> dict[str, Any]:
    """A tool given as a Python function: transformers' own schema of it (what its template would see)."""
    from transformers.utils.chat_template_utils import get_json_schema

    return get_json_schema(fn)


def _rebuild(plain: Any, options: _Options) -> Any:
    return _wrap_object(plain, options)


def _subclass(base: type) -> type:
    sub = _SUBCLASSES.get(base)
    if sub is None:
        sub = type(f"Chatfmt{base.__name__}", (ChatfmtTokenizerMixin, base), {"__module__": __name__, "_chatfmt_base": base})
        _SUBCLASSES[base] = sub
    return sub


def _wrap_object(tokenizer: Any, options: _Options) -> Any:
    base = type(tokenizer)
    if isinstance(tokenizer, ChatfmtTokenizerMixin):
        base = tokenizer._chatfmt_base
        tokenizer = tokenizer._chatfmt_plain()
    obj: Any = object.__new__(_subclass(base))
    obj.__dict__.update(tokenizer.__dict__)
    obj.__dict__["_chatfmt_options"] = options
    return obj


def is_wrapped(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` came from :func:`wrap`."""
    return isinstance(tokenizer, ChatfmtTokenizerMixin)


def unwrap(tokenizer: Any) -> Any:
    """The plain transformers tokenizer of a wrapped one (the same object when it is not wrapped)."""
    return tokenizer._chatfmt_plain() if isinstance(tokenizer, ChatfmtTokenizerMixin) else tokenizer


def _load(source: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A transformers tokenizer from a model directory, a ``.gguf`` file or a Hub id."""
    try:
        from transformers import AutoTokenizer
    except ImportError:  # pragma: no cover - transformers is what this module is for
        raise ChatfmtError("chatfmt.hf needs transformers: pip install 'chatfmt[hf]'") from None
    spec: Any = source
    if isinstance(source, str):
        try:
            from .hub import local
        except ImportError:  # pragma: no cover - without the Hub module, paths only
            pass
        else:
            spec = local(source, "tokenizer")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
    if path.is_file():
        path = path.parent  # a tokenizer_config.json / tokenizer.json: its directory
    if not path.exists():
        raise FormatError("no such file or directory", source=str(source))
    return AutoTokenizer.from_pretrained(str(path), **kwargs)


def wrap(
    tokenizer: Any,
    format: Any = None,
    *,
    compat: Compat = "transformers",
    train_on: TrainOn = "all_assistant",
    allow_missing_tokens: bool = False,
    **from_pretrained: Any,
) -> Any:
    """``tokenizer`` (a transformers tokenizer; or a model directory, a ``.gguf`` file or a Hub id,
    loaded with ``AutoTokenizer.from_pretrained(..., **from_pretrained)``) with an
    ``apply_chat_template`` that renders and encodes through chatfmt (see the module doc)::

        tok = chatfmt.hf.wrap(AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct"))
        SFTTrainer(model, processing_class=tok, train_dataset=ds, args=SFTConfig(assistant_only_loss=True))

    ``format``: ``None`` renders the tokenizer's own chat template through chatfmt's Jinja path;
    anything :func:`chatfmt.load_format` takes (a built-in name, a ``.jinja``, a ``.toml``, a format
    object) renders that format instead. ``compat``: ``"transformers"`` (default: transformers' ids
    where a vendor's encoder differs) or ``"vendor"``. ``train_on``: what ``assistant_masks`` marks
    (``"all_assistant"``, ``"last_assistant"`` or ``"all"``). The tokenizer passed in is not changed.
    """
    from .encode import _check_options

    _check_options(train_on, "error")
    if compat not in (None, "vendor", "transformers"):
        raise ValueError(f"compat must be 'vendor' or 'transformers', not {compat!r}")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = _load(tokenizer, **from_pretrained)
    elif from_pretrained:
        raise TypeError(f"unexpected keyword arguments {', '.join(sorted(from_pretrained))} (only for a path or Hub id)")
    from .tokenizers.auto import _is_transformers_tokenizer

    if not _is_transformers_tokenizer(tokenizer):
        raise TypeError(f"chatfmt.hf.wrap takes a transformers tokenizer, not {type(tokenizer).__name__}")
    if isinstance(format, Path):
        format = str(format)
    wrapped = _wrap_object(tokenizer, _Options(format, None if compat == "vendor" else compat, train_on, allow_missing_tokens))
    wrapped._chatfmt_format()  # a missing template or an unknown format: refused now, not at the first call
    return wrapped
