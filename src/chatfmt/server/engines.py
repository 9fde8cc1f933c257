"""Where generated text comes from: a local model (:class:`LocalEngine`, a chatfmt backend) or a raw
completion endpoint of an engine already running (:class:`UpstreamEngine`: llama.cpp's server
``/completion`` or an OpenAI-style ``/v1/completions``).

Both turn prompt ids into a :class:`PieceSource`: an iterator of ``(text, token_id)`` pieces (the id
when the piece is exactly one token's text, else None) that stops when cancelled and fills in a
:class:`~chatfmt.inference.GenerationResult`. :class:`ChatGeneration` and :class:`TextGeneration`
turn pieces into parsed chat deltas or plain completion text; they are the same for every engine,
so a proxied model gets exactly the stop handling and tool-call parsing of a local one.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..inference.backends import Backend, GenerationParams, GenerationResult
from ..inference.stream import IncrementalDecoder, Reply, StopMatcher, Usage
from ..plugins import Origin, Registry
from .errors import APIError, upstream_error

if TYPE_CHECKING:
    from ..tokenizers.base import Tokenizer
    from ..types import FormatLike


@dataclass(frozen=True)
class Sampling:
    """What a request asks of the engine."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    repeat_penalty: float = 1.0
    #: ids that end generation (not part of the output)
    stop_ids: frozenset[int] = frozenset()
    #: texts that end generation (cut from the output)
    stop_texts: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_p: float = 0.0
    #: token id -> added score
    logit_bias: Mapping[int, float] = field(default_factory=dict, hash=False)
    #: collect per-token log-probabilities (with ``top_logprobs`` alternatives each)
    logprobs: bool = False
    top_logprobs: int = 0
    #: structured output / forced tool call: a :class:`~chatfmt.inference.constrain.ConstraintFactory`
    #: (``.new()`` gives each generation its own constraint)
    constraint: Any = field(default=None, compare=False, hash=False)


_NO_CONSTRAINTS = "structured outputs (response_format json_object/json_schema, tool_choice required or a named tool) are not available from this engine"


def _constraint_param(sampling: Sampling) -> str:
    return "tool_choice" if getattr(sampling.constraint, "kind", None) == "tool_call" else "response_format"


class PieceSource(ABC):
    """Generated text in pieces; iterate once. ``cancel()`` may be called from any thread."""

    def __init__(self) -> None:
        self.result = GenerationResult()
        self.cancel_event = threading.Event()
        #: generated ids, when the engine reports them
        self.ids: list[int] = []

    def cancel(self) -> None:
        self.cancel_event.set()

    @abstractmethod
    def __iter__(self) -> Iterator[tuple[str, int | None]]: ...


class Engine(ABC):
    """A model behind the server: its tokenizer and format, its context, how many generations may
    run at once, and a way to continue prompt ids."""

    #: the model id the server answers to
    model_id: str
    tokenizer: Tokenizer
    format: FormatLike
    #: generations that may run at the same time
    slots: int = 1
    #: whether control tokens may come back as text (then they are text stop strings as well)
    sees_text_only: bool = False
    #: how :meth:`source` takes the prompt: ``"ids"`` (the prompt ids; ``prompt_text`` may be empty)
    #: or ``"text"`` (the decoded prompt text, for an upstream that tokenizes itself)
    prompt_mode: str = "ids"

    @property
    @abstractmethod
    def n_ctx(self) -> int: ...

    @abstractmethod
    def source(self, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> PieceSource: ...

    @property
    def checks_prompt(self) -> bool:
        """Whether :meth:`check_prompt` does anything (the server then calls it off the event loop)."""
        return False

    def check_prompt(self, prompt_ids: Sequence[int], prompt_text: str) -> None:  # noqa: B027 - optional hook
        """Blocking, before a request is queued: raise :class:`APIError` for a prompt this engine
        could not evaluate exactly (a proxy whose upstream tokenizes text itself)."""

    #: whether the engine fills in per-token log-probabilities (GenerationResult.logprobs)
    reports_logprobs: bool = False
    #: whether the engine applies :attr:`Sampling.constraint` (structured outputs, forced tool calls)
    supports_constraints: bool = False

    def check_sampling(self, sampling: Sampling) -> None:
        """Before a request is queued: raise :class:`APIError` (400 naming the field) for a sampling
        parameter this engine cannot honour (a local backend honours them all)."""
        if (sampling.logprobs or sampling.top_logprobs) and not self.reports_logprobs:
            raise APIError(400, "logprobs are not available from this engine", param="logprobs")
        if sampling.constraint is not None and not self.supports_constraints:
            raise APIError(400, _NO_CONSTRAINTS, param=_constraint_param(sampling))

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "n_ctx": self.n_ctx, "format": getattr(self.format.info, "name", None)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""


# -- local -------------------------------------------------------------------------------------------


class _LocalSource(PieceSource):
    def __init__(self, backend: Backend, tokenizer: Any, prompt_ids: Sequence[int], sampling: Sampling) -> None:
        super().__init__()
        self.backend = backend
        self.tokenizer = tokenizer
        self.prompt_ids = list(prompt_ids)
        self.params = GenerationParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            seed=sampling.seed,
            stop_ids=sampling.stop_ids,
            repeat_penalty=sampling.repeat_penalty,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            min_p=sampling.min_p,
            logit_bias=sampling.logit_bias,
            logprobs=sampling.logprobs,
            top_logprobs=sampling.top_logprobs,
            constraint=sampling.constraint.new() if sampling.constraint is not None else None,
        )

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        dec = IncrementalDecoder(self.tokenizer)
        gen = self.backend.generate(self.prompt_ids, self.params, result=self.result, cancel=self.cancel_event)
        try:
            for tid in gen:
                self.ids.append(tid)
                piece = dec.add(tid)
                if piece:
                    yield piece, tid
        finally:
            gen.close()


class LocalEngine(Engine):
    """A model loaded in this process (one generation at a time)."""

    reports_logprobs = True
    supports_constraints = True

    def __init__(self, backend: Backend, *, format: Any = None, tokenizer: Any = None, model_id: str | None = None) -> None:
        from pathlib import Path

        self.backend = backend
        self.format = format if format is not None else backend.default_format()
        self.tokenizer = tokenizer if tokenizer is not None else backend.tokenizer
        from ..hub import origin

        # a model from the Hub is known by its repository id, a local one by its file or dir name
        self.model_id = model_id or origin(backend.model_path) or Path(backend.model_path).stem or "chatfmt"
        self.slots = 1

    @property
    def n_ctx(self) -> int:
        return self.backend.n_ctx

    def source(self, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> PieceSource:
        return _LocalSource(self.backend, self.tokenizer, prompt_ids, sampling)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backend": self.backend.name}

    def close(self) -> None:
        self.backend.close()


# -- upstream (proxy) --------------------------------------------------------------------------------


def _sse_events(resp: http.client.HTTPResponse, cancel: threading.Event) -> Iterator[dict[str, Any]]:
    """JSON objects of ``data:`` lines until ``[DONE]``, the end of the stream or ``cancel``."""
    while not cancel.is_set():
        line = resp.readline()
        if not line:
            return
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise upstream_error(f"upstream sent a malformed event: {data[:200]!r}") from e
        if isinstance(obj, dict) and "error" in obj:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise upstream_error(f"upstream error: {msg}")
        if isinstance(obj, dict):
            yield obj


class _UpstreamSource(PieceSource):
    def __init__(self, engine: UpstreamEngine, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> None:
        super().__init__()
        self.engine = engine
        self.prompt_ids = list(prompt_ids)
        self.prompt_text = prompt_text
        self.sampling = sampling

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        eng = self.engine
        path, payload = eng.kind_impl.request(eng, self.prompt_ids, self.prompt_text, self.sampling)
        res = self.result
        res.prompt_tokens = len(self.prompt_ids)
        conn = eng.connect()
        try:
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            if eng.api_key:
                headers["Authorization"] = f"Bearer {eng.api_key}"
            try:
                conn.request("POST", eng.base_path + path, body=json.dumps(payload), headers=headers)
                resp = conn.getresponse()
            except OSError as e:
                raise upstream_error(f"upstream {eng.url} unreachable: {e}") from e
            if resp.status != 200:
                body = resp.read(4096).decode("utf-8", "replace")
                status = 400 if 400 <= resp.status < 500 and resp.status not in (401, 403, 404) else 502
                raise upstream_error(f"upstream {eng.url}{path} answered {resp.status}: {body}", status)
            stop_ids = self.sampling.stop_ids
            texts: list[str] = []
            for ev in _sse_events(resp, self.cancel_event):
                text, ids, finish = eng.kind_impl.event(ev, res)
                if ids and ids[-1] in stop_ids:
                    # the upstream produced one of our stop tokens: end here, like a local backend
                    keep = [i for i in ids if i not in stop_ids]
                    self.ids.extend(keep)
                    res.stop_id = ids[-1]
                    res.finish_reason = "stop"
                    if keep and text:
                        yield text, None
                    return
                self.ids.extend(ids)
                res.completion_tokens = max(res.completion_tokens, len(self.ids))
                if text:
                    texts.append(text)
                    yield text, (ids[0] if len(ids) == 1 else None)
                if finish:
                    res.finish_reason = finish
            if self.cancel_event.is_set():
                res.finish_reason = "cancelled"
            if eng.kind_impl.counts_by_text and not self.ids and texts:
                # the stream said what it generated but not in how many tokens: chatfmt's count
                res.completion_tokens = len(eng.tokenizer.encode_text("".join(texts)))
        finally:
            conn.close()  # an upstream that streams notices the closed connection and stops


class UpstreamKind(ABC):
    """How one kind of raw completion endpoint is asked and answers."""

    name: str
    #: whether the endpoint takes the prompt as token ids (else it tokenizes text itself, and
    #: :meth:`check_prompt` makes sure it gets chatfmt's ids)
    takes_ids: bool = True
    #: whether the stream reports no generated ids (then chatfmt counts the reply's tokens itself)
    counts_by_text: bool = False

    def check_prompt(self, eng: UpstreamEngine, ids: list[int], text: str) -> None:  # noqa: B027 - optional hook
        """Raise :class:`APIError` when the upstream would not evaluate exactly ``ids`` for ``text``."""

    #: sampling fields this kind's request can carry beyond max_tokens/temperature/top_p/seed/stop
    #: (the others, when set to anything but their neutral value, are refused with a 400)
    takes: frozenset[str] = frozenset()

    def check_sampling(self, s: Sampling) -> None:
        """Refuse (400 naming it) a sampling field set to a non-neutral value that this kind cannot
        send upstream; log-probabilities never come back through a proxy."""
        if s.logprobs or s.top_logprobs:
            raise APIError(400, f"logprobs are not available through the {self.name} upstream (proxy mode)", param="logprobs")
        neutral = {"top_k": 0, "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "min_p": 0.0}
        for name, value in neutral.items():
            if name not in self.takes and getattr(s, name) != value:
                wire = "repetition_penalty" if name == "repeat_penalty" else name
                raise APIError(400, f"{wire} is not supported by the {self.name} upstream (proxy mode)", param=wire)
        if s.logit_bias and "logit_bias" not in self.takes:
            raise APIError(400, f"logit_bias is not supported by the {self.name} upstream (proxy mode)", param="logit_bias")

    @abstractmethod
    def request(self, eng: UpstreamEngine, ids: list[int], text: str, s: Sampling) -> tuple[str, dict[str, Any]]:
        """``(path, JSON body)`` of a streaming completion request."""

    @abstractmethod
    def event(self, ev: dict[str, Any], res: GenerationResult) -> tuple[str, list[int], str | None]:
        """``(text, ids, finish_reason or None)`` of one streamed event; fills in usage in ``res``."""


class LlamaCppKind(UpstreamKind):
    """llama.cpp's ``llama-server`` ``POST /completion``: the prompt as a list of token ids,
    ``return_tokens`` for the generated ids, ``stop_type`` eos/word/limit at the end."""

    name = "llama.cpp"
    takes = frozenset({"top_k", "repeat_penalty", "presence_penalty", "frequency_penalty", "min_p", "logit_bias"})

    def request(self, eng: UpstreamEngine, ids: list[int], text: str, s: Sampling) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "prompt": ids if eng.prompt_mode == "ids" else text,
            "n_predict": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "repeat_penalty": s.repeat_penalty,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "min_p": s.min_p,
            "logit_bias": [[t, b] for t, b in s.logit_bias.items()],
            "stop": list(s.stop_texts),
            "stream": True,
            "return_tokens": True,
            "cache_prompt": True,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return "/completion", body

    def event(self, ev: dict[str, Any], res: GenerationResult) -> tuple[str, list[int], str | None]:
        text = ev.get("content") or ""
        ids = [int(t) for t in ev.get("tokens") or [] if isinstance(t, int)]
        finish = None
        if ev.get("stop"):
            stop_type = ev.get("stop_type")
            finish = "length" if stop_type == "limit" else "stop"
            if isinstance(ev.get("tokens_evaluated"), int):
                res.prompt_tokens = ev["tokens_evaluated"]
            if isinstance(ev.get("tokens_cached"), int):
                res.cached_tokens = ev["tokens_cached"]
            if isinstance(ev.get("tokens_predicted"), int):
                res.completion_tokens = ev["tokens_predicted"]
        return text, ids, finish


class OpenAICompletionsKind(UpstreamKind):
    """An OpenAI-style ``POST /v1/completions`` (vLLM, TGI, chatfmt itself): the prompt as token ids
    where the upstream takes them (``prompt_mode="ids"``, with vLLM's ``return_token_ids``), else as
    text."""

    name = "openai-completions"
    # OpenAI's own fields, and vLLM's extensions (top_k, min_p, repetition_penalty) sent only when set:
    # an upstream that does not know them answers 400, which reaches the client as a 400
    takes = frozenset({"top_k", "repeat_penalty", "presence_penalty", "frequency_penalty", "min_p", "logit_bias"})

    def request(self, eng: UpstreamEngine, ids: list[int], text: str, s: Sampling) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "prompt": ids if eng.prompt_mode == "ids" else text,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key, value, neutral in (
            ("presence_penalty", s.presence_penalty, 0.0),
            ("frequency_penalty", s.frequency_penalty, 0.0),
            ("top_k", s.top_k, 0),
            ("min_p", s.min_p, 0.0),
            ("repetition_penalty", s.repeat_penalty, 1.0),
        ):
            if value != neutral:
                body[key] = value
        if s.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in s.logit_bias.items()}
        if eng.upstream_model:
            body["model"] = eng.upstream_model
        if s.stop_texts:
            body["stop"] = list(s.stop_texts)
        if s.seed is not None:
            body["seed"] = s.seed
        if eng.prompt_mode == "ids":
            body["return_token_ids"] = True
        path = "/completions" if eng.base_path.rstrip("/").endswith("/v1") else "/v1/completions"
        return path, body

    def event(self, ev: dict[str, Any], res: GenerationResult) -> tuple[str, list[int], str | None]:
        usage = ev.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                res.prompt_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                res.completion_tokens = usage["completion_tokens"]
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                res.cached_tokens = details["cached_tokens"]
        choices = ev.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return "", [], None
        ch = choices[0]
        ids = [int(t) for t in ch.get("token_ids") or [] if isinstance(t, int)]
        finish = ch.get("finish_reason")
        return ch.get("text") or "", ids, finish if finish in ("stop", "length") else None


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppPythonKind(OpenAICompletionsKind):
    """llama-cpp-python's own server (``python -m llama_cpp.server``): ``POST /v1/completions`` takes
    the prompt as text only (its request model is ``str | list[str]``) and tokenizes it with control
    tokens recognised; its stream carries neither generated ids nor usage.

    So chatfmt sends the prompt text, but first asks the server's ``POST /extras/tokenize`` (the same
    tokenization its completion runs, BOS included) for the ids that text becomes, and refuses the
    request (400 ``upstream_retokenization``) unless they are exactly chatfmt's: a user message
    holding control-token text, or a segment boundary that a whole-text tokenization would merge
    across, never reaches the model in another form. Sampling defaults the server would otherwise
    apply (``repeat_penalty`` 1.1, ``min_p`` 0.05, ``top_k`` 40) are sent explicitly."""

    name = "llama-cpp-python"
    takes_ids = False
    counts_by_text = True
    takes = frozenset({"top_k", "repeat_penalty", "presence_penalty", "frequency_penalty", "min_p", "logit_bias"})

    def request(self, eng: UpstreamEngine, ids: list[int], text: str, s: Sampling) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "prompt": text,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "stream": True,
        }
        if s.logit_bias:  # llama-cpp-python's default logit_bias_type: keys are token ids
            body["logit_bias"] = {str(t): b for t, b in s.logit_bias.items()}
        if eng.upstream_model:
            body["model"] = eng.upstream_model
        if s.stop_texts:
            body["stop"] = list(s.stop_texts)
        if s.seed is not None:
            body["seed"] = s.seed
        path = "/completions" if eng.base_path.rstrip("/").endswith("/v1") else "/v1/completions"
        return path, body

    def check_prompt(self, eng: UpstreamEngine, ids: list[int], text: str) -> None:
        root = eng.base_path.rstrip("/").removesuffix("/v1")
        body: dict[str, Any] = {"input": text}
        if eng.upstream_model:
            body["model"] = eng.upstream_model
        got = eng.post_json(root + "/extras/tokenize", body).get("tokens")
        if not isinstance(got, list) or not all(isinstance(t, int) for t in got):
            raise upstream_error(f"upstream {eng.url}/extras/tokenize gave no token list")
        if got == list(ids):
            return
        k = _first_difference(got, ids)
        tok = eng.tokenizer
        ours = tok.decode(list(ids[k : k + 4])) if k < len(ids) else ""
        raise APIError(
            400,
            f"the upstream would tokenize this prompt differently from the chat format ({len(got)} ids instead of "
            f"{len(ids)}, first difference at token {k}: chatfmt has {list(ids[k : k + 4])} {ours!r}, the upstream "
            f"{got[k : k + 4]}); llama-cpp-python's server takes text only, so this prompt cannot be sent exactly "
            "(control-token text in a message is the usual cause)",
            param="messages",
            code="upstream_retokenization",
        )


def _as_upstream_kind(name: str, obj: object) -> tuple[UpstreamKind, tuple[str, ...]]:
    """What a ``chatfmt.upstreams`` entry point holds: an :class:`UpstreamKind` instance or class."""
    kind = obj() if isinstance(obj, type) and issubclass(obj, UpstreamKind) else obj
    if not isinstance(kind, UpstreamKind):
        raise TypeError(f"upstream plugin {name!r}: expected an UpstreamKind instance or class, got {type(obj).__name__}")
    return kind, ()


def _builtin_upstreams(reg: Registry[UpstreamKind]) -> None:
    for kind in (LlamaCppKind(), OpenAICompletionsKind(), LlamaCppPythonKind()):
        reg.add(kind.name, kind)


#: every upstream kind ``--upstream-kind`` accepts: chatfmt's, then the ``chatfmt.upstreams`` entry points
UPSTREAMS: Registry[UpstreamKind] = Registry(
    "upstreams", builtins=_builtin_upstreams, adapt=_as_upstream_kind, normalize_names=False
)


class _UpstreamKinds(Mapping[str, UpstreamKind]):
    """name -> upstream kind, a live view of :data:`UPSTREAMS`."""

    def __getitem__(self, name: str) -> UpstreamKind:
        if name not in UPSTREAMS:
            raise KeyError(name)
        return UPSTREAMS.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(UPSTREAMS.names())

    def __len__(self) -> int:
        return len(UPSTREAMS.names())


UPSTREAM_KINDS: Mapping[str, UpstreamKind] = _UpstreamKinds()


def register_upstream_kind(kind: UpstreamKind) -> None:
    """Make another raw completion API available to ``--upstream-kind`` in this process (to reach
    every process, declare a ``chatfmt.upstreams`` entry point)."""
    UPSTREAMS.register(kind.name, kind, origin=Origin("runtime"))


class UpstreamEngine(Engine):
    """Proxy mode: chatfmt renders and encodes, a running engine generates, chatfmt parses."""

    sees_text_only = True

    def __init__(
        self,
        url: str,
        *,
        kind: str,
        tokenizer: Any,
        format: Any,
        n_ctx: int = 4096,
        model_id: str | None = None,
        upstream_model: str | None = None,
        prompt_mode: str = "ids",
        api_key: str | None = None,
        slots: int = 4,
        timeout: float = 600.0,
    ) -> None:
        if kind not in UPSTREAMS:
            broken = UPSTREAMS.broken().get(kind)
            reason = f" ({broken})" if broken else ""
            raise APIError(400, f"unknown upstream kind {kind!r}{reason}; available: {', '.join(UPSTREAMS.names())}")
        if prompt_mode not in ("ids", "text"):
            raise ValueError(f"prompt_mode must be 'ids' or 'text', got {prompt_mode!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http(s)://host[:port][/path], got {url!r}")
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base_path = parts.path.rstrip("/")
        self.kind_impl = UPSTREAMS.get(kind)
        self.tokenizer = tokenizer
        self.format = format
        self._n_ctx = n_ctx
        #: the model name sent upstream (openai-completions; none: the upstream's default)
        self.upstream_model = upstream_model
        self.model_id = model_id or upstream_model or "chatfmt-proxy"
        #: "ids" asked of a kind that takes text only: text, checked to become exactly the ids
        self.verify_prompt = prompt_mode == "ids" and not self.kind_impl.takes_ids
        self.prompt_mode = prompt_mode if self.kind_impl.takes_ids else "text"
        self.api_key = api_key
        self.slots = slots
        self.timeout = timeout

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JSON request to the upstream (not streamed); 502 when it fails."""
        conn = self.connect()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request("POST", path, body=json.dumps(body), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise upstream_error(f"upstream {self.url} unreachable: {e}") from e
        finally:
            conn.close()
        if resp.status != 200:
            raise upstream_error(f"upstream {self.url}{path} answered {resp.status}: {data[:2000].decode('utf-8', 'replace')}")
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise upstream_error(f"upstream {self.url}{path} sent no JSON: {data[:200]!r}") from e
        if not isinstance(obj, dict):
            raise upstream_error(f"upstream {self.url}{path} sent {type(obj).__name__}, not an object")
        return obj

    @property
    def checks_prompt(self) -> bool:
        return self.verify_prompt

    def check_prompt(self, prompt_ids: Sequence[int], prompt_text: str) -> None:
        """Blocking: refuse (400) a prompt the upstream would not evaluate as exactly these ids."""
        if self.verify_prompt:
            self.kind_impl.check_prompt(self, list(prompt_ids), prompt_text)

    def source(self, prompt_ids: Sequence[int], prompt_text: str, sampling: Sampling) -> PieceSource:
        return _UpstreamSource(self, prompt_ids, prompt_text, sampling)

    def check_sampling(self, sampling: Sampling) -> None:
        if sampling.constraint is not None:
            raise APIError(400, f"{_NO_CONSTRAINTS} (the {self.kind_impl.name} upstream, proxy mode)", param=_constraint_param(sampling))
        self.kind_impl.check_sampling(sampling)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "upstream": self.url, "upstream_kind": self.kind_impl.name}


# -- from pieces to replies --------------------------------------------------------------------------


@dataclass
class TextReply:
    """A finished raw completion."""

    text: str
    finish_reason: str
    usage: Usage
    completion_ids: list[int] = field(default_factory=list)


class TextGeneration:
    """Raw completion text (stop strings cut) as ``(text, ids)`` pieces; :attr:`reply` at the end."""

    def __init__(self, source: PieceSource, stop_texts: Sequence[str] = ()) -> None:
        self.source = source
        self.stop = tuple(stop_texts)
        self.reply: TextReply | None = None

    def cancel(self) -> None:
        self.source.cancel()

    def __iter__(self) -> Iterator[tuple[str, list[int]]]:
        stopper = StopMatcher(self.stop)
        parts: list[str] = []
        seen = 0
        src = self.source
        for piece, _tid in src:
            safe = stopper.feed(piece)
            if safe:
                parts.append(safe)
                new_ids = src.ids[seen:]
                seen = len(src.ids)
                yield safe, new_ids
            if stopper.hit is not None:
                src.cancel()
                break
        if stopper.hit is None:
            tail = stopper.flush()
            if tail:
                parts.append(tail)
                yield tail, src.ids[seen:]
        res = src.result
        finish = "stop" if stopper.hit is not None else (res.finish_reason or "stop")
        self.reply = TextReply(
            "".join(parts), finish, Usage(res.prompt_tokens, len(src.ids) or res.completion_tokens, res.cached_tokens), list(src.ids)
        )


class ChatGeneration:
    """Pieces through stop strings and the family's output parser: :class:`~chatfmt.toolcalls.Delta`
    objects, then :attr:`reply` (a :class:`~chatfmt.inference.Reply`)."""

    def __init__(self, source: PieceSource, parser: Any, stop_texts: Sequence[str] = ()) -> None:
        self.source = source
        self.parser = parser
        self.stop = tuple(stop_texts)
        self.reply: Reply | None = None

    def cancel(self) -> None:
        self.source.cancel()

    def __iter__(self) -> Iterator[Any]:
        t0 = time.perf_counter()
        ttft = None
        stopper = StopMatcher(self.stop)
        raw: list[str] = []
        src = self.source
        for piece, tid in src:
            if ttft is None:
                ttft = time.perf_counter() - t0
            safe = stopper.feed(piece)
            if safe:
                raw.append(safe)
                yield from (d for d in self.parser.feed(safe, tid if safe == piece else None) if d)
            if stopper.hit is not None:
                src.cancel()
                break
        if stopper.hit is None:
            tail = stopper.flush()
            if tail:
                raw.append(tail)
                yield from (d for d in self.parser.feed(tail, None) if d)
        last, parsed = self.parser.finish()
        yield from (d for d in last if d)
        res = src.result
        finish = "stop" if stopper.hit is not None else (res.finish_reason or "stop")
        if parsed.tool_calls and finish == "stop":
            finish = "tool_calls"
        ids = list(src.ids)
        if res.stop_id is not None:
            ids.append(res.stop_id)
        self.reply = Reply(
            content=parsed.content,
            reasoning_content=parsed.reasoning_content,
            tool_calls=list(parsed.tool_calls),
            finish_reason=finish,
            usage=Usage(res.prompt_tokens, len(src.ids) or res.completion_tokens, res.cached_tokens),
            completion_ids=ids,
            raw_text="".join(raw),
            warnings=list(parsed.warnings),
            time_to_first_token=ttft,
            elapsed=time.perf_counter() - t0,
        )
