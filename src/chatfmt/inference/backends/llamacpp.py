"""The llama.cpp backend (llama-cpp-python). The prompt is given as token ids, so what the model sees
is chatfmt's encoding, not llama.cpp's own template or tokenizer; llama-cpp-python keeps its KV cache
and evaluates only the part of a new prompt that differs from the previous one."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BackendError
from .base import Backend, GenerationParams, GenerationResult, register_backend
from .sampling import LogitAdjuster

if TYPE_CHECKING:
    from ...formats.base import ChatFormat
    from ...tokenizers.base import Tokenizer

#: CMake flags for a portable CPU build of llama-cpp-python (the Makefile's LLAMA_CMAKE_ARGS; a test
#: keeps the two equal). A default (native) build may use kernels this machine cannot run.
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
REBUILD_HINT = (
    f'rebuild it with portable CPU flags: CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" '
    "pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python"
)


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_gpu_layers: int = 0,
        tokenizer: Any = None,
        chat_format: Any = None,
        verbose: bool = False,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as e:
            raise BackendError(
                f"the llama.cpp backend needs llama-cpp-python (pip install 'chatfmt[llama]'): {e}"
            ) from e
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"{path}: not a GGUF file")
        self.model_path = str(path)
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx or 0,  # 0: the model's trained context
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,  # prompt evaluation (None: llama-cpp-python's default)
                n_gpu_layers=n_gpu_layers,
                verbose=verbose,
            )
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"llama.cpp could not load {path}: {e}") from e
        self._tokenizer: Tokenizer | None = tokenizer
        self._format: ChatFormat | None = chat_format
        self._lock = threading.Lock()

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

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

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        *,
        result: GenerationResult | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[int, None, None]:
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
        llm = self.llm
        with self._lock:
            # what llama-cpp-python will find already evaluated (its own prefix match, repeated here
            # only to report it)
            cached = 0
            for a, b in zip(llm._input_ids[: llm.n_tokens], ids):
                if a != b:
                    break
                cached += 1
            res.cached_tokens = min(cached, len(ids) - 1)
            if params.seed is not None:
                llm.set_seed(params.seed)
            n = 0
            adjust = LogitAdjuster(params)
            constraint = params.constraint
            processors = None
            if adjust.active:
                import numpy as np

                def process(input_ids: Any, scores: Any) -> Any:
                    # llama-cpp-python hands over a strided view of its token data: work on a
                    # contiguous copy (what a constraint's mask expects), which it copies back
                    return adjust.numpy_row(np.array(scores, dtype=np.float32))

                processors = [process]
            try:
                gen = llm.generate(
                    ids,
                    temp=params.temperature,
                    top_p=params.top_p,
                    # llama.cpp's top_k 0 keeps the whole vocabulary, as chatfmt's 0 does
                    top_k=params.top_k,
                    min_p=params.min_p,
                    repeat_penalty=params.repeat_penalty,
                    # presence/frequency penalties are applied by `adjust` with OpenAI's semantics
                    # (generated tokens only); llama.cpp's own would count the prompt's last 64 tokens
                    presence_penalty=0.0,
                    frequency_penalty=0.0,
                    logits_processor=processors,  # type: ignore[arg-type]
                    reset=True,
                )
                for tok in gen:
                    if cancel is not None and cancel.is_set():
                        res.finish_reason = "cancelled"
                        break
                    if tok in params.stop_ids:
                        res.finish_reason = "stop"
                        res.stop_id = tok
                        break
                    lp = adjust.accept(tok)
                    if lp is not None:
                        res.logprobs.append(lp)
                    finished = False
                    if constraint is not None:
                        constraint.advance(tok)
                        finished = constraint.done()
                    n += 1
                    res.completion_tokens = n
                    yield tok
                    if finished:  # the constraint is complete: nothing may follow
                        res.finish_reason = "stop"
                        break
                    if n >= max_new:
                        res.finish_reason = "length"
                        break
            except (RuntimeError, ValueError) as e:
                raise BackendError(f"llama.cpp generation failed: {e}") from e
            if res.finish_reason is None:
                res.finish_reason = "length"

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()


def _installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@register_backend(
    "llama.cpp",
    native_dist="llama-cpp-python",
    fix=REBUILD_HINT,
    accepts=lambda path: path.suffix == ".gguf" and path.is_file(),
    available=_installed,
    rank=10,
)
def _factory(model_path: str | Path, **options: Any) -> Backend:
    return LlamaCppBackend(model_path, **options)
