"""Backends: a registry of model runners (``llama.cpp``, ``transformers``) behind one protocol."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ...errors import BackendCrashError, BackendError, BackendFallbackWarning
from .base import (
    Backend,
    BackendSpec,
    GenerationParams,
    GenerationResult,
    auto_candidates,
    get_backend_factory,
    get_backend_spec,
    list_backends,
    register_backend,
)
from .probe import ProbeResult, check_backend, crash_error, fallback_message, probe_backend


def load_backend(
    model: str | Path | None = None,
    backend: str = "auto",
    *,
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    n_gpu_layers: int | None = None,
    **options: Any,
) -> Backend:
    """Load ``model`` (a GGUF file, a model directory, a Hugging Face Hub id
    ``ORG/NAME[@REVISION][:FILE.gguf]``; ``None``: the built-in default model) with ``backend``
    (chosen as :func:`choose_backend` says; ``options`` go to the backend's factory, except
    ``gguf_file``: the GGUF file to run in a directory or Hub repository). A Hub id fetches the
    weights that backend runs (see :mod:`chatfmt.hub`).

    ``threads`` (``None``: :func:`~chatfmt.inference.backends.machine.default_threads`, ``0``: the
    library's own default), ``device`` (``cpu``, ``cuda[:N]``, ``mps``, ``auto``), ``dtype``
    (``auto``, ``float32``, ``bfloat16``, ``float16``) and ``n_gpu_layers`` are the same for every
    backend; one the chosen backend cannot honour raises :class:`BackendError` before loading
    (see :mod:`~chatfmt.inference.backends.machine`)."""
    from ...hub import local, with_gguf_file
    from .machine import backend_options

    gguf_file = options.pop("gguf_file", None)
    if model is None and gguf_file is None:
        from ...models import default_model_path

        model = default_model_path()
    model = with_gguf_file(model, gguf_file)
    model = local(model, "model", backend=backend)
    path = Path(model)
    if not path.exists():
        raise BackendError(f"{path}: no such model file or directory")
    spec = choose_backend(path, backend)
    fitted = backend_options(spec.name, threads=threads, device=device, dtype=dtype, n_gpu_layers=n_gpu_layers)
    return spec.factory(path, **{**fitted, **options})


def choose_backend(model: str | Path, backend: str = "auto") -> BackendSpec:
    """The backend that will run ``model``. ``"auto"``: the best installed backend that accepts the
    model (llama.cpp for a GGUF, then transformers) and works on this machine: a backend with native
    code is first run once in a child process (cached, see :mod:`~chatfmt.inference.backends.probe`),
    and one that crashes or fails there is skipped with a
    :class:`~chatfmt.errors.BackendFallbackWarning` saying why and how to fix it. A backend named
    explicitly that crashes there raises :class:`~chatfmt.errors.BackendCrashError` instead of taking
    this process down."""
    path = Path(model)
    if backend != "auto":
        spec = get_backend_spec(backend)
        result = check_backend(spec, path)
        if result is not None and result.crashed:
            others = [s.name for s in auto_candidates(path) if s.name != spec.name]
            raise crash_error(spec, result, path, others)
        return spec
    candidates = auto_candidates(path)
    for k, spec in enumerate(candidates):
        result = check_backend(spec, path)
        if result is not None and not result.ok:
            if k + 1 < len(candidates):
                warnings.warn(BackendFallbackWarning(fallback_message(spec, result, candidates[k + 1].name)), stacklevel=3)
                continue
            if result.crashed:
                raise crash_error(spec, result, path, [])
        return spec
    raise BackendError(f"{path}: no backend accepts this model; available: {', '.join(list_backends())}")


__all__ = [
    "Backend",
    "BackendCrashError",
    "BackendError",
    "BackendSpec",
    "GenerationParams",
    "GenerationResult",
    "ProbeResult",
    "choose_backend",
    "get_backend_factory",
    "get_backend_spec",
    "list_backends",
    "load_backend",
    "probe_backend",
    "register_backend",
]
