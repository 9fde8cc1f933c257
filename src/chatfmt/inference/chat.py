"""``Chat``: a conversation with a real model, in the model's exact format.

    chat = Chat()                          # the built-in default model (SmolLM2-135M-Instruct)
    print(chat.send("What is the capital of France?"))
    for delta in chat.stream("And of Italy?"):
        print(delta.content, end="")

History, a system prompt, tools (JSON schemas or Python functions, called when the model asks), history
fitting (oldest whole rounds dropped, system and newest round kept, with a warning) and prefix reuse
(appending a turn re-encodes only the new part; llama.cpp also reuses its KV cache for the unchanged
prefix, transformers its ``past_key_values``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ChatfmtError, EmptyConversationError
from .backends import Backend, GenerationParams, load_backend
from .prompt import FittedPrompt, IncrementalEncoder, fit_history
from .stream import Reply, ReplyStream

if TYPE_CHECKING:
    from ..types import FormatLike, TokenizerLike

_EMPTY_CHAT = "the chat is empty, so there is no prompt yet: send a message first (chat.send(text)) or add one to chat.messages"


class StopTokens(NamedTuple):
    """What :func:`stop_tokens` returns (unpacks as ``ids, texts``)."""

    #: control tokens that stop generation, by id (EOS among them)
    ids: frozenset[int]
    #: stop strings that are not one token of the tokenizer
    texts: tuple[str, ...]


def stop_tokens(fmt: FormatLike, tokenizer: TokenizerLike, extra: Sequence[str] = ()) -> StopTokens:
    """Split a format's stop strings (and ``extra``) into control-token ids and text stop strings;
    the tokenizer's EOS always stops."""
    ids: set[int] = set()
    texts: list[str] = []
    specials = tokenizer.special_tokens
    for s in (*fmt.info.stop, *fmt.info.end_of_turn, *extra):
        if not s:
            continue
        if s in specials:
            ids.add(specials[s])
        elif s not in texts:
            texts.append(s)
    eos = tokenizer.eos_id
    if eos is not None:
        ids.add(eos)
    return StopTokens(frozenset(ids), tuple(texts))


def _tool_result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _checked_pair(model: Any, format: Any, tokenizer: Any, allow_missing_tokens: bool) -> tuple[Any, Any, Any]:
    """``(model path, format, tokenizer)`` loaded -- the model's own where not given, as the backends
    load them -- and checked to fit each other, before any model is loaded."""
    from ..compat import check_tokenizer
    from ..formats.loader import load_format
    from ..tokenizers import load_tokenizer

    if model is None:
        from ..models import default_model_path

        model = default_model_path()
    fmt = load_format(format if format is not None else model) if isinstance(format, (str, Path)) or format is None else format
    tok = load_tokenizer(tokenizer if tokenizer is not None else model)
    check_tokenizer(fmt, tok, allow_missing_tokens=allow_missing_tokens)
    return model, fmt, tok


class Chat:
    """A chat session with a model. See the module docstring.

    ``model`` is a GGUF file, a model directory or a Hugging Face Hub id
    (``ORG/NAME[@REVISION][:FILE.gguf]``; ``gguf_file="..."`` names the GGUF in a directory or
    repository); a Hub id's tokenizer, config and the weights the backend runs are fetched into the
    Hub cache (see :mod:`chatfmt.hub`). ``format`` and ``tokenizer`` take Hub ids too.

    A ``format`` or ``tokenizer`` of the caller's is checked against the other before the model is
    loaded: a tokenizer that lacks a token the format relies on (a role marker, BOS/EOS, a literal
    id) is refused with :class:`~chatfmt.errors.TokenizerMismatchError`, here and in
    :meth:`set_format`, unless ``allow_missing_tokens=True``.

    ``template_kwargs`` (``{"enable_thinking": False}``) go to every prompt's render; one the format
    does not read gives a :class:`~chatfmt.errors.NotRenderedWarning` (``chatfmt chat
    --template-kwarg`` prints it as one line)."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        backend: str | Backend = "auto",
        format: Any = None,
        tokenizer: Any = None,
        system: str | None = None,
        tools: Sequence[dict[str, Any] | Callable[..., Any]] = (),
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        max_tool_rounds: int = 5,
        template_kwargs: dict[str, Any] | None = None,
        allow_missing_tokens: bool = False,
        **backend_options: Any,
    ) -> None:
        self.allow_missing_tokens = allow_missing_tokens
        if not isinstance(backend, Backend):
            # a Hub id (ORG/NAME[@REV][:FILE.gguf]) becomes its local snapshot once, here: the model,
            # its format and its tokenizer all come from that one download (see chatfmt.hub)
            from ..hub import local, with_gguf_file

            gguf_file = backend_options.pop("gguf_file", None)
            if gguf_file is not None or model is not None:
                model = local(with_gguf_file(model, gguf_file), "model", backend=backend)
        if not isinstance(backend, Backend) and (format is not None or tokenizer is not None):
            # the caller's format or tokenizer: check the pair before the model is loaded
            model, format, tokenizer = _checked_pair(model, format, tokenizer, allow_missing_tokens)
        self.backend = backend if isinstance(backend, Backend) else load_backend(model, backend, **backend_options)
        if format is None:
            self.format = self.backend.default_format()
        elif isinstance(format, (str, Path)):
            from ..formats.loader import load_format

            self.format = load_format(format)
        else:
            self.format = format
        if tokenizer is None:
            self.tokenizer = self.backend.tokenizer
        else:
            from ..tokenizers import load_tokenizer

            self.tokenizer = load_tokenizer(tokenizer)
        from ..formats.loader import with_tokenizer_tokens

        self.format = with_tokenizer_tokens(self.format, self.tokenizer)  # a bare .jinja reads them
        self.params = GenerationParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
        self.extra_stop = tuple(stop)
        self.max_tool_rounds = max_tool_rounds
        self.template_kwargs = dict(template_kwargs or {})
        #: the ``response_format`` of every reply unless a call gives its own (None: free text)
        self.response_format: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self._system: str | None = None
        self.tools: list[dict[str, Any]] = []
        self.functions: dict[str, Callable[..., Any]] = {}
        for t in tools:
            self.add_tool(t)
        self.encoder = IncrementalEncoder(self.format, self.tokenizer, allow_missing_tokens=allow_missing_tokens)
        self.last_fit: FittedPrompt | None = None
        self.last_reply: Reply | None = None
        if system is not None:
            self.system = system

    # -- conversation state -------------------------------------------------------------------
    @property
    def system(self) -> str | None:
        return self._system

    @system.setter
    def system(self, text: str | None) -> None:
        if self.messages and self.messages[0]["role"] == "system":
            self.messages.pop(0)
        self._system = text
        if text is not None:
            self.messages.insert(0, {"role": "system", "content": text})

    def reset(self) -> None:
        """Forget the conversation (the system prompt and tools stay)."""
        self.messages = [] if self._system is None else [{"role": "system", "content": self._system}]
        self.last_fit = None
        self.last_reply = None

    def set_format(self, fmt: Any) -> None:
        """Switch the chat format (a name, a file, or a ChatFormat)."""
        if isinstance(fmt, (str, Path)):
            from ..formats.loader import load_format

            fmt = load_format(fmt)
        from ..formats.loader import with_tokenizer_tokens

        fmt = with_tokenizer_tokens(fmt, self.tokenizer)
        encoder = IncrementalEncoder(fmt, self.tokenizer, allow_missing_tokens=self.allow_missing_tokens)  # checks first
        self.format, self.encoder = fmt, encoder

    def add_tool(self, tool: dict[str, Any] | Callable[..., Any], fn: Callable[..., Any] | None = None) -> None:
        """Offer a tool: an OpenAI tool schema (optionally with the Python function that runs it) or a
        Python function (schema from its type hints and docstring)."""
        if callable(tool) and not isinstance(tool, dict):
            from ..toolschema import function_schema

            schema = function_schema(tool)
            fn = tool
        else:
            schema = tool if "function" in tool else {"type": "function", "function": tool}
        name = schema["function"]["name"]
        self.tools = [t for t in self.tools if t["function"]["name"] != name] + [schema]
        if fn is not None:
            self.functions[name] = fn

    def save(self, path: str | Path) -> None:
        """Write the conversation as ``{"messages": [...], "tools": [...]}`` JSON (what every other
        chatfmt command reads)."""
        data: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            data["tools"] = self.tools
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    # -- prompts ------------------------------------------------------------------------------
    def _budget(self, params: GenerationParams) -> int:
        budget = self.backend.n_ctx - params.max_tokens
        if budget <= 0:
            raise ChatfmtError(f"max_new_tokens ({params.max_tokens}) leaves no room in the context ({self.backend.n_ctx})")
        return budget

    def prompt_ids(self, params: GenerationParams | None = None) -> list[int]:
        """The ids the model sees for the next reply (fitted to the context). An empty chat has no
        prompt yet: :class:`~chatfmt.errors.EmptyConversationError`."""
        if not self.messages:
            raise EmptyConversationError(_EMPTY_CHAT)
        fitted = fit_history(
            self.encoder, self.messages, self._budget(params or self.params), tools=self.tools or None, **self.template_kwargs
        )
        self.last_fit = fitted
        return fitted.ids

    def prompt_text(self) -> str:
        """The prompt text of the next reply (after :meth:`prompt_ids` fitted it); an empty chat:
        :class:`~chatfmt.errors.EmptyConversationError`."""
        ids = self.prompt_ids()
        del ids
        return self.encoder.last_text

    # -- generation ---------------------------------------------------------------------------
    def _params(self, overrides: dict[str, Any]) -> GenerationParams:
        if "max_new_tokens" in overrides:
            overrides["max_tokens"] = overrides.pop("max_new_tokens")
        if "repetition_penalty" in overrides:  # the OpenAI-server spelling
            overrides["repeat_penalty"] = overrides.pop("repetition_penalty")
        fields = {k: getattr(self.params, k) for k in ("max_tokens", "temperature", "top_p", "top_k", "seed", "repeat_penalty")}
        fields.update(overrides)
        stop_ids, _ = stop_tokens(self.format, self.tokenizer, self.extra_stop)
        return GenerationParams(stop_ids=stop_ids, **fields)

    def _reply_stream(self, params: GenerationParams) -> ReplyStream:
        from ..toolcalls import parser_for_format

        ids = self.prompt_ids(params)
        _, stop_texts = stop_tokens(self.format, self.tokenizer, self.extra_stop)
        parser = parser_for_format(self.format, self.tokenizer, prompt=self.encoder.last_text, tools=self.tools or None)
        return ReplyStream(self.backend, ids, params, parser, self.tokenizer, stop=stop_texts)

    def _run_tools(self, reply: Reply) -> bool:
        """Call the registered functions the reply asks for and append their results; False when a
        requested tool has no function (the caller must answer it)."""
        if not reply.tool_calls or any(c["function"]["name"] not in self.functions for c in reply.tool_calls):
            return False
        for call in reply.tool_calls:
            name = call["function"]["name"]
            try:
                args = json.loads(call["function"]["arguments"] or "{}")
                if not isinstance(args, dict):
                    raise TypeError("arguments are not a JSON object")
                fn = self.functions[name]
                inspect.signature(fn).bind(**args)
                result = _tool_result_text(fn(**args))
            except Exception as e:  # noqa: BLE001 - the error goes back to the model as the tool result
                result = f"error: {type(e).__name__}: {e}"
            self.messages.append({"role": "tool", "tool_call_id": call.get("id"), "name": name, "content": result})
        return True

    def _constraint(self, overrides: dict[str, Any]) -> Any:
        """The checked constraint of ``overrides["response_format"]`` (popped; default
        :attr:`response_format`; OpenAI's shape:
        ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"schema": ...,
        "strict": ...}}``), or None; :class:`~chatfmt.errors.ConstraintError` when it cannot be
        enforced (see :mod:`chatfmt.inference.constrain`)."""
        rf = overrides.pop("response_format", self.response_format)
        if not rf:
            return None
        from .constrain import response_format_constraint, stop_ids_for

        return response_format_constraint(rf, self.tokenizer, stop_ids_for(self.format, self.tokenizer))

    def stream(self, text: str | None = None, **overrides: Any) -> Iterator[Any]:
        """Send ``text`` as a user message (``None``: answer the conversation as it is) and stream
        :class:`~chatfmt.toolcalls.Delta` objects; registered tools are called between generations.
        :attr:`last_reply` holds the final reply afterwards. ``response_format=`` (OpenAI's
        ``json_object`` / ``json_schema``) constrains every reply to JSON valid against the schema."""
        overrides = dict(overrides)
        factory = self._constraint(overrides)
        if text is not None:
            self.messages.append({"role": "user", "content": text})
        params = self._params(overrides)
        for _ in range(self.max_tool_rounds + 1):
            rs = self._reply_stream(params if factory is None else replace(params, constraint=factory.new()))
            yield from rs
            reply = rs.reply
            assert reply is not None
            self.last_reply = reply
            self.messages.append(reply.message())
            if not self._run_tools(reply):
                return

    def send(self, text: str | None = None, **overrides: Any) -> Reply:
        """Send ``text`` and return the model's reply (after any tool calls it made were run).

        ``overrides`` are :class:`~chatfmt.inference.backends.base.GenerationParams` fields for this
        reply: ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``seed``,
        ``presence_penalty``, ``frequency_penalty``, ``repetition_penalty``, ``logit_bias`` (token id
        -> bias), ``logprobs=True`` / ``top_logprobs=k`` (then :attr:`Reply.logprobs` holds each
        generated token's log-probability), and ``response_format``."""
        for _ in self.stream(text, **overrides):
            pass
        assert self.last_reply is not None
        return self.last_reply

    def generate(self, messages: Sequence[Any], *, tools: Sequence[dict[str, Any]] | None = None, stream: bool = False, **overrides: Any) -> Any:
        """One reply to ``messages`` (not added to this session's history): a :class:`Reply`, or with
        ``stream=True`` a :class:`ReplyStream`."""
        from ..toolcalls import parser_for_format

        if not messages:
            raise EmptyConversationError("generate() got an empty conversation: give it at least one message")
        overrides = dict(overrides)
        factory = self._constraint(overrides)
        params = self._params(overrides)
        if factory is not None:
            params = replace(params, constraint=factory.new())
        fitted = fit_history(self.encoder, list(messages), self._budget(params), tools=list(tools) if tools else None, **self.template_kwargs)
        _, stop_texts = stop_tokens(self.format, self.tokenizer, self.extra_stop)
        parser = parser_for_format(self.format, self.tokenizer, prompt=self.encoder.last_text, tools=list(tools) if tools else None)
        rs = ReplyStream(self.backend, fitted.ids, params, parser, self.tokenizer, stop=stop_texts)
        return rs if stream else rs.run()
