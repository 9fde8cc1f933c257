"""A native backend that crashes takes nothing down: ``auto`` tries it in a child process first and
falls back with one line; a backend chosen by name raises :class:`BackendCrashError`.

The crashes are real: ``CHATFMT_TEST_PROBE_CRASH`` makes the probe's child process die by the named
signal after it loaded the model (SIGSEGV by reading address 0), exactly as a llama-cpp-python built
for another CPU dies. The model is the real default one (SmolLM2-135M GGUF) and the backends are the
installed llama-cpp-python (built with portable flags, so it works here) and transformers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from chatfmt.errors import BackendCrashError, BackendError, BackendFallbackWarning, ChatfmtError
from chatfmt.inference.backends import choose_backend, load_backend, probe_backend
from chatfmt.inference.backends.llamacpp import PORTABLE_CMAKE_ARGS
from chatfmt.inference.backends.probe import CRASH_HOOK_ENV, PROBE_CACHE_FILE, SKIP_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def llama_cpp() -> None:
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'chatfmt[llama]')"
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh chatfmt cache directory (the probe verdicts go there); no crash hook set."""
    d = tmp_path / "cache"
    monkeypatch.setenv("CHATFMT_CACHE", str(d))
    monkeypatch.delenv(CRASH_HOOK_ENV, raising=False)
    monkeypatch.delenv(SKIP_ENV, raising=False)
    return d


def test_the_portable_llamacpp_build_passes_and_the_second_probe_is_a_cache_hit(
    llama_cpp, cache, smollm2_gguf
):
    first = probe_backend("llama.cpp", smollm2_gguf)
    assert first.ok and not first.cached, first.what()
    assert first.build.startswith("llama-cpp-python ")
    second = probe_backend("llama.cpp", smollm2_gguf)
    assert second.ok and second.cached
    (entry,) = json.loads((cache / PROBE_CACHE_FILE).read_text())["probes"].values()
    assert entry["ok"] is True and entry["build"]["version"] and entry["machine"]["cpu"]
    # auto takes the working llama.cpp without a word (here from the cached verdict; a fresh probe
    # inside choose_backend: the slow test_auto_chooses_a_working_llamacpp_for_a_gguf_without_a_word)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert choose_backend(smollm2_gguf, "auto").name == "llama.cpp"
    assert not [w for w in caught if issubclass(w.category, BackendFallbackWarning)]


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGILL])
def test_a_child_killed_by_a_signal_is_reported_with_that_signal_and_cached(
    llama_cpp, cache, smollm2_gguf, monkeypatch, sig
):
    monkeypatch.setenv(CRASH_HOOK_ENV, sig.name)
    result = probe_backend("llama.cpp", smollm2_gguf)
    assert not result.ok and result.signal == sig and not result.cached
    assert result.what().startswith(f"crashed with {sig.name} (")
    # the verdict is reused without running the child again: with the hook gone a fresh run would pass
    monkeypatch.delenv(CRASH_HOOK_ENV)
    again = probe_backend("llama.cpp", smollm2_gguf)
    assert again.cached and again.signal == sig


def test_a_cached_verdict_is_dropped_when_the_backend_version_changes(
    llama_cpp, cache, smollm2_gguf, monkeypatch
):
    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")
    assert probe_backend("llama.cpp", smollm2_gguf).crashed
    monkeypatch.delenv(CRASH_HOOK_ENV)
    # the cache file as an older llama-cpp-python left it
    path = cache / PROBE_CACHE_FILE
    data = json.loads(path.read_text())
    for entry in data["probes"].values():
        entry["build"]["version"] = "0.0.1"
    path.write_text(json.dumps(data))
    result = probe_backend("llama.cpp", smollm2_gguf)
    assert result.ok and not result.cached
    (entry,) = json.loads(path.read_text())["probes"].values()
    assert entry["ok"] is True and entry["build"]["version"] != "0.0.1"


@pytest.mark.slow  # two more probes; the default run: the same cache drop on a version change (above)
def test_a_cached_verdict_is_dropped_when_the_native_library_is_rebuilt(
    llama_cpp, cache, smollm2_gguf, monkeypatch
):
    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")
    assert probe_backend("llama.cpp", smollm2_gguf).crashed
    monkeypatch.delenv(CRASH_HOOK_ENV)
    path = cache / PROBE_CACHE_FILE
    data = json.loads(path.read_text())
    for entry in data["probes"].values():
        entry["build"]["native"] = "0" * 16  # same version, other library files: a rebuild
    path.write_text(json.dumps(data))
    assert probe_backend("llama.cpp", smollm2_gguf).ok


def test_an_explicit_backend_that_crashes_raises_a_clear_error(llama_cpp, cache, smollm2_gguf, monkeypatch):
    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")
    with pytest.raises(BackendCrashError) as info:
        load_backend(smollm2_gguf, "llama.cpp")
    err = info.value
    assert isinstance(err, BackendError) and isinstance(err, ChatfmtError)
    text = str(err)
    assert "\n" not in text
    assert text.startswith("llama.cpp (llama-cpp-python ")
    assert "crashed with SIGSEGV (Segmentation fault)" in text
    assert f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}"' in text and "--no-cache-dir" in text
    assert "transformers" in text  # the alternative
    assert err.signal == signal.SIGSEGV and err.backend == "llama.cpp"


def _fallback_warnings(caught: list[warnings.WarningMessage]) -> str:
    fallbacks = [w for w in caught if issubclass(w.category, BackendFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    text = str(fallbacks[0].message)
    assert "\n" not in text
    assert "crashed with SIGSEGV" in text and "using transformers instead" in text
    assert f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}"' in text
    return text


def test_auto_chooses_transformers_with_one_warning_when_llamacpp_crashes(
    llama_cpp, cache, smollm2_gguf, monkeypatch
):
    pytest.importorskip("transformers")
    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = choose_backend(smollm2_gguf, "auto")
    assert spec.name == "transformers"
    _fallback_warnings(caught)
    # the next run decides from the cache, with the same line
    monkeypatch.delenv(CRASH_HOOK_ENV)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert choose_backend(smollm2_gguf, "auto").name == "transformers"
    _fallback_warnings(caught)


@pytest.mark.slow  # one more probe; the default run: the cache-hit half of the first test in this file
def test_auto_chooses_a_working_llamacpp_for_a_gguf_without_a_word(llama_cpp, cache, smollm2_gguf):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert choose_backend(smollm2_gguf, "auto").name == "llama.cpp"
    assert not [w for w in caught if issubclass(w.category, BackendFallbackWarning)]


def test_switching_the_probe_off_trusts_the_backend(llama_cpp, cache, smollm2_gguf, monkeypatch):
    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")  # would crash the probe, which does not run
    monkeypatch.setenv(SKIP_ENV, "0")
    backend = load_backend(smollm2_gguf, "llama.cpp", n_ctx=64)
    try:
        assert backend.name == "llama.cpp"
    finally:
        backend.close()
    assert not (cache / PROBE_CACHE_FILE).exists()


def test_a_backend_without_native_code_is_not_probed(cache, smollm2_gguf, monkeypatch):
    from chatfmt.inference.backends import get_backend_spec
    from chatfmt.inference.backends.probe import check_backend

    monkeypatch.setenv(CRASH_HOOK_ENV, "SIGSEGV")
    assert check_backend(get_backend_spec("transformers"), smollm2_gguf) is None


def _cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatfmt.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_chat_with_an_explicit_crashing_backend_exits_2_with_one_line(llama_cpp, cache, smollm2_gguf):
    proc = _cli(
        ["chat", "-m", str(smollm2_gguf), "--backend", "llama.cpp", "-p", "hi", "--max-new-tokens", "1"],
        {"CHATFMT_CACHE": str(cache), CRASH_HOOK_ENV: "SIGSEGV"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(r"chatfmt: error: llama\.cpp \(llama-cpp-python [^)]+\) crashed with SIGSEGV", lines[0])
    assert "CMAKE_ARGS=" in lines[0]
    assert proc.stdout == ""


@pytest.mark.slow
def test_chat_auto_falls_back_with_one_line_and_answers(llama_cpp, cache, smollm2_gguf):
    """The whole user path: ``chatfmt chat -p`` on a machine where llama.cpp crashes prints one line
    on stderr (and nothing else: no dependency warning) and answers with transformers. (It is also
    the check that ``load_backend(..., "auto")`` loads transformers after the crash with one warning:
    loading the GGUF into transformers takes most of this file's time, so it is done once, here;
    ``choose_backend``'s warning object is checked in the default run.)"""
    pytest.importorskip("transformers")
    proc = _cli(
        [
            "chat",
            "-m",
            str(smollm2_gguf),
            "-p",
            "What is the capital of France?",
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
        ],
        {"CHATFMT_CACHE": str(cache), CRASH_HOOK_ENV: "SIGSEGV"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("chatfmt: warning: llama.cpp (llama-cpp-python ")
    assert "crashed with SIGSEGV" in lines[0] and "using transformers instead" in lines[0]
    assert f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}"' in lines[0]
    assert proc.stdout.strip()


def test_the_makefile_builds_llamacpp_with_the_flags_the_fix_names() -> None:
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^LLAMA_CMAKE_ARGS \?= (.+)$", text, re.M)
    assert m is not None
    assert m.group(1).strip() == PORTABLE_CMAKE_ARGS
