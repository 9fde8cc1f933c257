"""The backend protocol: token ids in, generated token ids out (streamed).

chatfmt owns the prompt: a backend never applies a chat template. It receives the ids that
:meth:`chatfmt.ChatFormat.encode` produced and yields the ids the model samples, stopping on the
stop ids it is given (the Chat layer handles stop *strings*, which can span tokens).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ...errors import BackendError
from ...plugins import Origin, Registry

if TYPE_CHECKING:
    from ...formats.base import ChatFormat
    from ...tokenizers.base import Tokenizer


@runtime_checkable
class TokenConstraint(Protocol):
    """Restricts which tokens may be sampled (structured outputs build one from a grammar).

    A backend that is given one in :attr:`GenerationParams.constraint` does, at every step:
    its own logit adjustments (penalties, ``logit_bias``), then :meth:`mask_logits` (last, so that
    ``-inf`` wins), then samples; a stop id ends generation without :meth:`advance`; any other token
    goes to :meth:`advance`, is yielded, and when :meth:`done` is then true generation ends with
    ``finish_reason == "stop"``. One constraint object serves one generation.
    """

    def mask_logits(self, logits: Any) -> None:
        """Set the scores of disallowed tokens to ``-inf``, in place. ``logits`` is the 1-D row of
        next-token scores (before temperature and top-k/top-p/min-p): a contiguous numpy float32 array
        on llama.cpp, a torch tensor (batch row 0) on transformers. It may be longer than the
        tokenizer's vocabulary (padding rows)."""

    def advance(self, token_id: int) -> None:
        """Accept the token that was sampled (never a stop id)."""

    def done(self) -> bool:
        """True when the constraint is complete and nothing else may follow."""


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and stopping. ``temperature == 0`` means greedy decoding.

    Penalties follow OpenAI's semantics: ``presence_penalty`` is subtracted once from the score of every
    token generated so far, ``frequency_penalty`` once per occurrence (the prompt does not count);
    ``repeat_penalty`` is the multiplicative CTRL penalty of llama.cpp and transformers (1.0 = off),
    which counts the prompt too. ``logit_bias`` adds to the score of a token id (-100 bans it, +100
    forces it). ``min_p`` drops tokens less likely than ``min_p`` times the top token (0 = off).
    """

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    #: ids that end generation (not yielded)
    stop_ids: frozenset[int] = field(default_factory=frozenset)
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_p: float = 0.0
    #: token id -> added score
    logit_bias: Mapping[int, float] = field(default_factory=dict, hash=False)
    #: collect each generated token's log-probability into :attr:`GenerationResult.logprobs`
    logprobs: bool = False
    #: how many most likely alternatives to collect with each token (0-20; implies ``logprobs``)
    top_logprobs: int = 0
    #: restricts the tokens that may be sampled (see :class:`TokenConstraint`)
    constraint: TokenConstraint | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repeat_penalty <= 0:
            raise ValueError(f"repeat_penalty must be > 0, got {self.repeat_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        if not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
        for tok, bias in self.logit_bias.items():
            if not isinstance(tok, int) or tok < 0:
                raise ValueError(f"logit_bias keys must be token ids (ints >= 0), got {tok!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values must be in [-100, 100], got {bias!r} for token {tok}")

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs > 0


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's natural-log probability and the most likely alternatives at that step.

    The distribution is the model's scores after the logit adjustments (``repeat_penalty`` on
    transformers, presence/frequency penalties, ``logit_bias``, a constraint's mask), before
    temperature and top-k/top-p/min-p truncation; tokens a constraint forbids never appear in ``top``.
    """

    token: int
    logprob: float
    #: (token id, logprob) pairs, most likely first
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class GenerationResult:
    """Filled in while a generation runs: why it ended and how much work the prompt took."""

    #: "stop" (a stop id or a complete constraint), "length" (max_tokens or the context), "cancelled"
    finish_reason: str | None = None
    #: the stop id that ended generation, if any
    stop_id: int | None = None
    prompt_tokens: int = 0
    #: prompt tokens the backend could reuse from its cache (not evaluated again)
    cached_tokens: int = 0
    completion_tokens: int = 0
    #: one entry per yielded token when :attr:`GenerationParams.wants_logprobs`
    logprobs: list[TokenLogprob] = field(default_factory=list)


class Backend(ABC):
    """A loaded model that continues token ids."""

    #: the registry name ("llama.cpp", "transformers")
    name: str = ""
    #: where the model came from
    model_path: str = ""

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """The context length (prompt + generated tokens)."""

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The chatfmt :class:`~chatfmt.tokenizers.Tokenizer` whose ids this model uses."""

    @abstractmethod
    def default_format(self) -> ChatFormat:
        """The chat format the model ships (GGUF metadata / tokenizer_config), a ChatFormat."""

    @abstractmethod
    def generate(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        *,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[int, None, None]:
        """Yield generated ids one at a time. Stops (without yielding it) at an id in
        ``params.stop_ids``, after ``max_tokens``, at the end of the context, or when ``cancel`` is set;
        ``result`` (if given) receives the finish reason and token counts."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Free the model (optional)."""


BackendFactory = Callable[..., Backend]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: its factory and what ``backend="auto"`` needs to know about it."""

    name: str
    factory: BackendFactory
    #: the Python distribution that carries the backend's native code; when set, the backend is run
    #: once in a child process (a 1-token evaluation) before this process trusts it, since a build
    #: for the wrong CPU kills its process with a signal that no ``except`` catches
    native_dist: str | None = None
    #: how to repair a build that crashes (one sentence, shown with the crash)
    fix: str = ""
    #: which model paths ``auto`` may give this backend, and whether it is installed
    accepts: Callable[[Path], bool] = lambda path: True
    available: Callable[[], bool] = lambda: True
    #: ``auto`` tries the backends that accept a model in this order (lower first)
    rank: int = 100


#: every backend registered with :func:`register_backend` in this process (built-ins among them), so
#: that :meth:`~chatfmt.plugins.Registry.reload` finds them again
_DECLARED: dict[str, BackendSpec] = {}

#: other names of the built-in backends
_ALIASES = {"llama-cpp": "llama.cpp", "llamacpp": "llama.cpp", "llama_cpp": "llama.cpp", "hf": "transformers"}


def _origin_of(spec: BackendSpec) -> Origin:
    module = getattr(spec.factory, "__module__", "") or ""
    return Origin() if module.startswith("chatfmt.") else Origin("runtime")


def register_backend(
    name: str,
    *,
    native_dist: str | None = None,
    fix: str = "",
    accepts: Callable[[Path], bool] | None = None,
    available: Callable[[], bool] | None = None,
    rank: int = 100,
) -> Callable[[BackendFactory], BackendFactory]:
    """Register a backend factory ``factory(model_path, **options) -> Backend`` under ``name`` in this
    process; the keywords are described on :class:`BackendSpec`. To reach every process, declare a
    ``chatfmt.backends`` entry point (a ``BackendSpec`` or the factory)."""

    def deco(factory: BackendFactory) -> BackendFactory:
        spec = BackendSpec(name, factory, native_dist=native_dist, fix=fix, rank=rank)
        if accepts is not None:
            spec = replace(spec, accepts=accepts)
        if available is not None:
            spec = replace(spec, available=available)
        _DECLARED[name] = spec
        BACKENDS.register(name, spec, _aliases_of(name), origin=_origin_of(spec))
        return factory

    return deco


def _aliases_of(name: str) -> tuple[str, ...]:
    return tuple(a for a, target in _ALIASES.items() if target == name)


def _as_backend_spec(name: str, obj: object) -> tuple[BackendSpec, tuple[str, ...]]:
    """What a ``chatfmt.backends`` entry point holds: a :class:`BackendSpec` or a factory."""
    if isinstance(obj, BackendSpec):
        return (obj if obj.name == name else replace(obj, name=name)), ()
    if callable(obj):
        return BackendSpec(name, obj), ()
    raise BackendError(
        f"backend plugin {name!r}: expected a BackendSpec or a factory(model_path, **options), "
        f"got {type(obj).__name__}"
    )


def _builtin_backends(reg: Registry[BackendSpec]) -> None:
    # importing the modules registers them; each imports its heavy library lazily
    from . import llamacpp, transformers_backend  # noqa: F401

    for name, spec in _DECLARED.items():
        reg.register(name, spec, _aliases_of(name), origin=_origin_of(spec))


def _unknown_backend(name: str, known: list[str]) -> Exception:
    return BackendError(f"unknown backend {name!r}; available: {', '.join(known)}")


#: every backend: chatfmt's (llama.cpp, transformers), then the ``chatfmt.backends`` entry points
BACKENDS: Registry[BackendSpec] = Registry(
    "backends", builtins=_builtin_backends, adapt=_as_backend_spec, unknown=_unknown_backend
)


def _ensure_builtin() -> None:
    BACKENDS.ensure_loaded()


def list_backends() -> list[str]:
    return BACKENDS.names()


def get_backend_spec(name: str) -> BackendSpec:
    """The registration of ``name`` (aliases such as ``llama-cpp`` and ``hf`` accepted)."""
    return BACKENDS.get(name)


def get_backend_factory(name: str) -> BackendFactory:
    return get_backend_spec(name).factory


def auto_candidates(path: Path) -> list[BackendSpec]:
    """The backends ``auto`` may use for ``path``, installed ones that accept it, best first (when
    none is installed: the last-resort one, so that loading it says what to install)."""
    fits = sorted((s for s in BACKENDS.values() if s.accepts(path)), key=lambda s: (s.rank, s.name))
    usable = [s for s in fits if s.available()]
    return usable or fits[-1:]
