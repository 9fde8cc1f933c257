"""Try a native backend in a child process before this process trusts it.

A llama-cpp-python compiled the default way (for the build machine's instruction set) can die on a
CPU or VM that lacks part of it: SIGSEGV or SIGILL on the first evaluation, no exception, no
message, the whole process gone. So before a backend with native code (one registered with
``native_dist``) is loaded in-process, a child process loads the model and evaluates a short prompt
plus one generated token. The verdict is kept in the cache directory (``backend-probes.json``) and
holds while the backend's build (its distribution's version and the sizes and times of its native
libraries), the machine (host name, CPU flags, Python) and the model file stay the same: a rebuild,
another machine or another model is tried again.

``CHATFMT_BACKEND_PROBE=0`` skips the probe (the backend is trusted as it is).

Test hook: with ``CHATFMT_TEST_PROBE_CRASH=SIGSEGV`` (any signal name) the child really dies by that
signal after loading the model (SIGSEGV by reading address 0), so the crash path runs for real
without a broken build.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BackendCrashError
from .base import BackendSpec, GenerationParams, get_backend_spec

PROBE_CACHE_FILE = "backend-probes.json"
SKIP_ENV = "CHATFMT_BACKEND_PROBE"
CRASH_HOOK_ENV = "CHATFMT_TEST_PROBE_CRASH"
#: seconds a probe may take (loading a large model on a busy machine is slow)
PROBE_TIMEOUT = 600.0
#: the probe's context and prompt: a batch of 32 ids (the matrix kernels), then one generated token
#: (the vector kernels); ids 1..32 exist in every vocabulary
PROBE_N_CTX = 128
PROBE_PROMPT_IDS = tuple(range(1, 33))
_NATIVE_SUFFIXES = (".so", ".dylib", ".dll", ".pyd")


@dataclass(frozen=True)
class ProbeResult:
    """How a backend fared in a child process: ``ok``, or killed by ``signal``, or failed otherwise
    (``detail``: its error, or the timeout)."""

    backend: str
    ok: bool
    #: "llama-cpp-python 0.3.16"
    build: str = ""
    signal: int | None = None
    detail: str = ""
    #: True when the verdict came from the cache file
    cached: bool = False

    @property
    def crashed(self) -> bool:
        return self.signal is not None

    def what(self) -> str:
        """``crashed with SIGSEGV (Segmentation fault)``, ``failed: <error>``, ``works``."""
        if self.ok:
            return "works"
        if self.signal is not None:
            return f"crashed with {signal_description(self.signal)}"
        return f"failed: {self.detail}"


def signal_description(sig: int) -> str:
    """``SIGSEGV (Segmentation fault)`` for 11."""
    try:
        name = signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
    text = signal.strsignal(sig)
    return f"{name} ({text})" if text else name


def probing_enabled() -> bool:
    return os.environ.get(SKIP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# -- what the verdict depends on ---------------------------------------------------------------


def build_fingerprint(dist_name: str) -> dict[str, Any]:
    """The installed distribution's version and a digest of its native libraries (size, mtime), so
    that a rebuild of the same version counts as a new build."""
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return {"dist": dist_name, "version": None, "native": None}
    digest = hashlib.sha256()
    for f in sorted(dist.files or (), key=str):
        name = f.name
        if not (name.endswith(_NATIVE_SUFFIXES) or ".so." in name):
            continue
        try:
            st = os.stat(f.locate())
        except OSError:
            continue
        digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return {"dist": dist_name, "version": dist.version, "native": digest.hexdigest()[:16]}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def machine_fingerprint() -> dict[str, Any]:
    """Host name, architecture, Python and a digest of the CPU flags."""
    return {
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": hashlib.sha256(_cpu_flags().encode()).hexdigest()[:16],
    }


def _model_identity(path: Path) -> dict[str, Any]:
    p = path.resolve()
    try:
        st = p.stat()
        return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(p)}


# -- the cache file ------------------------------------------------------------------------------


def probe_cache_path() -> Path:
    from ...models import cache_dir

    return cache_dir() / PROBE_CACHE_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("probes"), dict) else {}


def _write_entry(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the cache file (atomically; an unwritable cache only costs a probe next time)."""
    data = _read_cache(path) or {"probes": {}}
    data["probes"][key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


# -- the probe -----------------------------------------------------------------------------------


def probe_backend(backend: str | BackendSpec, model: str | Path, *, use_cache: bool = True, timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Load ``model`` with ``backend`` in a child process and generate one token; the verdict (works,
    or the signal that killed the child) is cached per build, machine and model. A child that fails
    with an ordinary error or runs out of time is reported (``detail``) but not cached."""
    spec = backend if isinstance(backend, BackendSpec) else get_backend_spec(backend)
    path = Path(model)
    build = build_fingerprint(spec.native_dist) if spec.native_dist else {"dist": spec.name, "version": None, "native": None}
    build_text = f"{build['dist']} {build['version']}" if build["version"] else str(build["dist"])
    machine = machine_fingerprint()
    model_id = _model_identity(path)
    key = f"{spec.name}|{machine['host']}|{model_id['path']}"
    cache_file = probe_cache_path()
    if use_cache:
        entry = _read_cache(cache_file).get("probes", {}).get(key)
        if (
            isinstance(entry, dict)
            and entry.get("build") == build
            and entry.get("machine") == machine
            and entry.get("model") == model_id
        ):
            return ProbeResult(spec.name, bool(entry.get("ok")), build_text, entry.get("signal"), entry.get("detail", ""), cached=True)
    result = _run_child(spec.name, path, build_text, timeout)
    if result.ok or result.crashed:
        _write_entry(
            cache_file,
            key,
            {
                "build": build,
                "machine": machine,
                "model": model_id,
                "ok": result.ok,
                "signal": result.signal,
                "detail": result.detail,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    return result


def _run_child(name: str, path: Path, build_text: str, timeout: float) -> ProbeResult:
    import chatfmt

    env = dict(os.environ)
    src_root = str(Path(chatfmt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "from chatfmt.inference.backends.probe import _child_main; _child_main()"
    cmd = [sys.executable, "-c", code, name, str(path)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ProbeResult(name, False, build_text, detail=f"the test run did not finish in {timeout:g} s")
    except OSError as e:
        return ProbeResult(name, False, build_text, detail=f"could not start a test run: {e}")
    if proc.returncode < 0:
        return ProbeResult(name, False, build_text, signal=-proc.returncode)
    report: dict[str, Any] = {}
    for line in reversed(proc.stdout.decode("utf-8", "replace").splitlines()):
        try:
            report = json.loads(line)
            break
        except ValueError:
            continue
    if proc.returncode == 0 and report.get("ok"):
        return ProbeResult(name, True, build_text)
    detail = str(report.get("error") or _last_line(proc.stderr) or f"the test run exited with status {proc.returncode}")
    return ProbeResult(name, False, build_text, detail=detail.strip().splitlines()[0] if detail.strip() else detail)


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _die_by(name: str) -> None:
    """The test hook: end this process by a real signal."""
    import faulthandler

    key = name.strip().upper()
    sig = signal.Signals[key if key.startswith("SIG") else "SIG" + key]
    faulthandler.disable()
    if sig == signal.SIGSEGV:
        import ctypes

        ctypes.string_at(0)  # an invalid read: the kernel sends SIGSEGV
    os.kill(os.getpid(), sig)


def _child_main() -> None:
    """The child: load, (test hook), evaluate the probe prompt and one token, report as JSON."""
    name, model = sys.argv[1], sys.argv[2]
    try:
        backend = get_backend_spec(name).factory(Path(model), n_ctx=PROBE_N_CTX)
        hook = os.environ.get(CRASH_HOOK_ENV)
        if hook:
            _die_by(hook)
        n = sum(1 for _ in backend.generate(list(PROBE_PROMPT_IDS), GenerationParams(max_tokens=1, temperature=0.0)))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
        sys.exit(3)
    print(json.dumps({"ok": True, "generated": n}), flush=True)


# -- what load_backend uses ---------------------------------------------------------------------


def check_backend(spec: BackendSpec, path: Path) -> ProbeResult | None:
    """The probe verdict for a native, installed backend (``None``: nothing to probe, or probing
    is switched off)."""
    if not spec.native_dist or not probing_enabled() or not spec.available() or not path.is_file():
        return None
    return probe_backend(spec, path)


def crash_error(spec: BackendSpec, result: ProbeResult, path: Path, alternatives: list[str]) -> BackendCrashError:
    other = f", or use another backend ({', '.join(alternatives)})" if alternatives else ""
    fix = f"; {spec.fix}" if spec.fix else ""
    return BackendCrashError(
        f"{spec.name} ({result.build}) {result.what()} in a test run on this machine "
        f"(a child process loading {path.name} and generating one token){fix}{other}",
        backend=spec.name,
        signal=result.signal,
    )


def fallback_message(spec: BackendSpec, result: ProbeResult, instead: str) -> str:
    fix = f" To use {spec.name}, {spec.fix}" if spec.fix and result.crashed else ""
    return f"{spec.name} ({result.build}) {result.what()} in a test run on this machine; using {instead} instead.{fix}"
