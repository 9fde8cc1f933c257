"""Fitting a backend to the machine: how many CPU threads, which device, which dtype.

:func:`load_backend` takes the same four settings for every built-in backend (``threads``,
``device``, ``dtype``, ``n_gpu_layers``) and :func:`backend_options` turns them into the keywords
that backend's constructor takes, refusing with one sentence a setting the backend cannot honour
(``n_gpu_layers`` on transformers, ``dtype`` on a llama.cpp GGUF) before anything is loaded.

The thread default (:func:`default_threads`) is chosen so that the model does not compete with
other work for the cores: on a 2-core machine with one busy neighbour, transformers generation with
torch's default of 2 threads was measured 7x slower than with 1 thread (its OpenMP threads wait for
each other at every operation, and one of them keeps losing its core), while 1 thread costs at most
the second core when the machine is idle. See ``benchmarks/threads_bench.py``.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import BackendError

#: the devices ``device=`` accepts (``cuda:N`` too)
DEVICES = ("auto", "cpu", "cuda", "mps")
#: the dtypes ``dtype=`` accepts (``auto``: the backend's own choice)
DTYPES = ("auto", "float32", "bfloat16", "float16")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def busy_cpus() -> int:
    """Cores other work keeps busy now: the 1-minute load average, rounded (0 where unknown)."""
    try:
        return max(0, int(os.getloadavg()[0] + 0.5))
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return 0


def default_threads(cpus: int | None = None, busy: int | None = None) -> int:
    """The thread count used when none is given: one core left free on small machines (up to 4
    usable CPUs), half the CPUs from 5 up (about the physical cores, as llama.cpp's own default), and
    never more than the cores the load average leaves free at start; at least 1."""
    n = usable_cpus() if cpus is None else cpus
    b = busy_cpus() if busy is None else busy
    base = n - 1 if n <= 4 else n // 2
    return max(1, min(base, n - b))


def _device_ok(device: str) -> bool:
    if device in DEVICES:
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def backend_options(
    backend: str,
    *,
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    n_gpu_layers: int | None = None,
) -> dict[str, Any]:
    """The constructor keywords of ``backend`` (a registry name) for these settings; a setting it
    cannot honour raises :class:`~chatfmt.errors.BackendError` with one sentence. ``threads``:
    ``None`` is :func:`default_threads`, ``0`` leaves the library's own default. A backend from a
    plugin gets the settings given, under these names."""
    if threads is not None and threads < 0:
        raise BackendError(f"threads must be >= 0 (0: the library's default), got {threads}")
    if device is not None and not _device_ok(device):
        raise BackendError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)")
    if dtype is not None and dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    n_threads = default_threads() if threads is None else (threads or None)
    if backend == "transformers":
        if n_gpu_layers is not None:
            raise BackendError(
                "n_gpu_layers (--n-gpu-layers) is a llama.cpp setting; transformers places the whole "
                "model with device (--device cuda)"
            )
        out: dict[str, Any] = {"n_threads": n_threads}
        if device not in (None, "auto"):
            _check_torch_device(device)
            out["device"] = device
        if dtype not in (None, "auto"):
            out["dtype"] = dtype
        return out
    if backend == "llama.cpp":
        if dtype not in (None, "auto"):
            raise BackendError(
                f"dtype {dtype!r} (--dtype) does not apply to llama.cpp: a GGUF runs in the types it "
                "was quantized to (pick another GGUF file, or --backend transformers)"
            )
        if device not in (None, "auto", "cpu"):
            raise BackendError(
                f"device {device!r} (--device) does not apply to llama.cpp: it offloads to the GPU it "
                "was built for, layer by layer (--n-gpu-layers N, -1 for all)"
            )
        if device == "cpu" and n_gpu_layers:
            raise BackendError(f"device 'cpu' and n_gpu_layers {n_gpu_layers} contradict each other")
        out = {"n_threads": n_threads, "n_threads_batch": n_threads}
        if n_gpu_layers is not None:
            out["n_gpu_layers"] = n_gpu_layers
        return out
    # a plugin backend: the settings given, as they were given
    given = {"threads": threads, "device": device, "dtype": dtype, "n_gpu_layers": n_gpu_layers}
    return {k: v for k, v in given.items() if v is not None}


def _check_torch_device(device: str) -> None:
    """A device torch cannot use here is refused before the model loads (one sentence)."""
    if device == "cpu":
        return
    try:
        import torch
    except ImportError:
        return  # loading says what to install
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r}: torch sees no CUDA GPU here (torch {torch.__version__})")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise BackendError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendError("device 'mps': torch has no Apple Metal (MPS) device here")
