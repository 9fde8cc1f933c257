"""The transformers backend: ``AutoModelForCausalLM`` on CPU or GPU, from a model directory or a GGUF
file (``gguf_file=``, dequantized by transformers).

Generation runs ``model.generate`` in a worker thread with a streamer that hands over ids one at a
time; stop ids become ``eos_token_id``, cancellation a stopping criterion. The KV cache of the last
generation is kept, and a prompt that shares a prefix with it is continued from that prefix
(``past_key_values`` cropped to the common part), so a chat that appends a turn evaluates only the
new tokens.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BackendError
from .base import Backend, GenerationParams, GenerationResult, register_backend
from .sampling import LogitAdjuster

if TYPE_CHECKING:
    from ...formats.base import ChatFormat
    from ...tokenizers.base import Tokenizer

_DONE = object()


#: dependency warnings that tell a chatfmt user nothing (they concern how chatfmt calls the library),
#: ignored only where chatfmt's own calls raise them: (category, message regex, module regex).
#: Everything else is shown as Python shows it (once per place).
HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # the KV cache argument's rename in transformers 5; chatfmt passes the new name where generate
    # takes it (see _cache_kwarg), this covers versions that warn on both
    (FutureWarning, r"`past_key_values` is deprecated", __name__.replace(".", r"\.") + "$"),
)


def _ignore_harmless_warnings() -> None:
    for category, message, module in HARMLESS_WARNINGS:
        # inserting an equal filter again replaces it, so repeated loads add nothing
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _cache_kwarg() -> str:
    """The name ``generate`` takes the KV cache under: ``cache`` since transformers 5 renamed it
    (the old ``past_key_values`` warns on every generation there), ``past_key_values`` before."""
    import inspect

    from transformers import GenerationMixin

    try:
        params = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    except (TypeError, ValueError):  # pragma: no cover - depends on the transformers version
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _reemit(caught: list[warnings.WarningMessage], registry: dict[Any, Any]) -> None:
    """Show warnings recorded while stderr was silenced, as Python would have (once per place)."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=registry)


_LOAD_WARNINGS_SHOWN: dict[Any, Any] = {}


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        n_ctx: int | None = None,
        tokenizer: Any = None,
        chat_format: Any = None,
        cache_prefix: bool = True,
        n_threads: int | None = None,
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise BackendError(f"the transformers backend needs torch and transformers: {e}") from e
        path = Path(model_path)
        self.model_path = str(path)
        self._torch = torch
        if n_threads:
            # torch's intra-op threads (process-wide); on a busy machine fewer threads can be faster
            torch.set_num_threads(int(n_threads))
        kwargs: dict[str, Any] = {}
        if dtype:
            kwargs["dtype"] = getattr(torch, dtype)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        _ignore_harmless_warnings()
        try:
            # transformers' GGUF dequantization prints a tqdm bar of its own; warnings raised
            # meanwhile are recorded and shown afterwards, not silenced with the bar
            with (
                warnings.catch_warnings(record=True) as caught,
                open(os.devnull, "w") as devnull,
                contextlib.redirect_stderr(devnull),
            ):
                if path.is_file() and path.suffix == ".gguf":
                    self.model = AutoModelForCausalLM.from_pretrained(
                        str(path.parent), gguf_file=path.name, **kwargs
                    )
                else:
                    self.model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as e:
            raise BackendError(f"transformers could not load {path}: {e}") from e
        _reemit(caught, _LOAD_WARNINGS_SHOWN)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # transformers types the decorated PreTrainedModel.to as taking the model again (a wrong stub)
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        cfg = self.model.config
        self._n_ctx = int(n_ctx or getattr(cfg, "max_position_embeddings", 0) or 2048)
        self._tokenizer: Tokenizer | None = tokenizer
        self._format: ChatFormat | None = chat_format
        self.cache_prefix = cache_prefix
        self._cache_kwarg = _cache_kwarg()
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._lock = threading.Lock()

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            from ...tokenizers import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_path)
        return self._tokenizer

    def default_format(self) -> ChatFormat:
        if self._format is None:
            from ...formats.loader import load_format

            self._format = load_format(self.model_path)
        return self._format

    def _reusable_cache(self, ids: list[int]) -> tuple[Any, int]:
        """The kept KV cache cropped to the longest prefix it shares with ``ids`` (at least one
        prompt token is left to evaluate), or ``(None, 0)``."""
        if not self.cache_prefix or self._cache is None:
            return None, 0
        n = 0
        for a, b in zip(self._cached_ids, ids):
            if a != b:
                break
            n += 1
        have = self._cache.get_seq_length()
        n = min(n, len(ids) - 1, have)
        if n <= 0:
            return None, 0
        try:
            if n < have:
                self._cache.crop(n - have)  # a negative value removes that many tokens from the end
        except (AttributeError, ValueError, RuntimeError):
            return None, 0
        return self._cache, n

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        *,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[int, None, None]:
        torch = self._torch
        from transformers import (
            DynamicCache,
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
        )
        from transformers.generation.streamers import BaseStreamer

        res = result if result is not None else GenerationResult()
        ids = list(prompt_ids)
        res.prompt_tokens = len(ids)
        if not ids:
            raise BackendError("empty prompt")
        room = self.n_ctx - len(ids)
        if room <= 0:
            raise BackendError(f"the prompt has {len(ids)} tokens; the context holds {self.n_ctx}")
        max_new = min(params.max_tokens, room)
        if max_new <= 0:
            res.finish_reason = "length"
            return
        cancelled = cancel or threading.Event()
        halt = threading.Event()  # set when the consumer stops early
        q: queue.Queue[Any] = queue.Queue()
        adjust = LogitAdjuster(params)
        constraint = params.constraint
        complete = threading.Event()  # set when the constraint is done
        stop_set = params.stop_ids

        class _Adjust(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                adjust.torch_row(scores[0])
                return scores

        class _Stream(BaseStreamer):
            first = True

            def put(self, value: Any) -> None:
                if self.first:  # the prompt
                    self.first = False
                    return
                for t in value.reshape(-1).tolist():
                    tok = int(t)
                    if tok in stop_set:
                        q.put((tok, None, False))
                        continue
                    lp = adjust.accept(tok)
                    q.put((tok, lp, complete.is_set()))

            def end(self) -> None:
                pass

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                # runs once per step, after the token is appended and before the streamer sees it
                tok = int(input_ids[0, -1])
                if constraint is not None and tok not in stop_set:
                    constraint.advance(tok)
                    if constraint.done():
                        complete.set()
                stop = cancelled.is_set() or halt.is_set() or complete.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        stop_ids = sorted(params.stop_ids)
        self._lock.acquire()
        try:
            cache, reused = self._reusable_cache(ids)
            if cache is None:
                cache = DynamicCache()
            res.cached_tokens = reused
            gen_kwargs: dict[str, Any] = dict(
                input_ids=torch.tensor([ids], device=self.device),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=self.device),
                max_new_tokens=max_new,
                do_sample=params.temperature > 0,
                streamer=_Stream(),
                stopping_criteria=StoppingCriteriaList([_Cancel()]),
                **{self._cache_kwarg: cache},
                eos_token_id=stop_ids or None,
                pad_token_id=stop_ids[0] if stop_ids else 0,
                repetition_penalty=params.repeat_penalty,
                use_cache=True,
            )
            if adjust.active:
                gen_kwargs["logits_processor"] = LogitsProcessorList([_Adjust()])
            if params.temperature > 0:
                gen_kwargs.update(
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=params.top_k,
                    min_p=params.min_p or None,
                )
            else:
                gen_kwargs.update(temperature=None, top_p=None, top_k=None, min_p=None)
            error: list[BaseException] = []

            def run() -> None:
                try:
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    with torch.inference_mode():
                        self.model.generate(**gen_kwargs)
                except BaseException as e:  # noqa: BLE001 - handed to the consumer
                    error.append(e)
                finally:
                    q.put(_DONE)

            worker = threading.Thread(target=run, name="chatfmt-transformers-generate", daemon=True)
            worker.start()
            produced: list[int] = []
            try:
                while True:
                    got = q.get()
                    if got is _DONE:
                        break
                    item, lp, finished = got
                    if item in params.stop_ids:
                        res.finish_reason = "stop"
                        res.stop_id = item
                        continue
                    if cancelled.is_set() or res.finish_reason == "stop":
                        continue
                    produced.append(item)
                    res.completion_tokens = len(produced)
                    if lp is not None:
                        res.logprobs.append(lp)
                    if finished:  # the constraint is complete: nothing may follow
                        res.finish_reason = "stop"
                    yield item
            finally:
                halt.set()  # a consumer that stops early stops the worker
                worker.join()
                if self.cache_prefix:
                    self._cache = cache
                    self._cached_ids = ids + produced
            if error:
                raise BackendError(f"generation failed: {error[0]}") from error[0]
            if res.finish_reason is None:
                res.finish_reason = "cancelled" if cancelled.is_set() else "length"
        finally:
            self._lock.release()


def _installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


@register_backend("transformers", available=_installed, rank=50)
def _factory(model_path: str | Path, **options: Any) -> Backend:
    return TransformersBackend(model_path, **options)
