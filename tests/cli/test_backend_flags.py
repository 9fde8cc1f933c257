"""``--threads``, ``--device``, ``--dtype``, ``--n-gpu-layers`` on ``chat`` and ``serve`` (the same
names and help on both), the harmonised ``--format``/``--chat-format`` and ``--n-ctx``/``--ctx``
spellings, ``load_backend``'s keywords reaching the real backends, and the thread default."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from chatfmt.cli import app
from chatfmt.errors import BackendError
from chatfmt.inference.backends import load_backend
from chatfmt.inference.backends.machine import backend_options, default_threads, usable_cpus

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
MACHINE_FLAGS = ("--threads", "--device", "--dtype", "--n-gpu-layers")
SHARED_FLAGS = (*MACHINE_FLAGS, "--backend", "--format", "--chat-format", "--n-ctx", "--ctx")


def _params(command: str) -> dict[str, Any]:
    sub = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt: p for p in sub.params for opt in p.opts}


def test_chat_and_serve_share_the_flags_with_the_same_help_and_both_spellings():
    chat, serve = _params("chat"), _params("serve")
    for flag in SHARED_FLAGS:
        assert flag in chat and flag in serve, flag
        assert getattr(chat[flag], "help", None) == getattr(serve[flag], "help", None), flag
        assert chat[flag].opts == serve[flag].opts, flag  # the same spellings, on one parameter each
    assert chat["--format"] is chat["--chat-format"] and serve["--format"] is serve["--chat-format"]
    assert chat["--n-ctx"] is chat["--ctx"] and serve["--n-ctx"] is serve["--ctx"]


# -- refused in one line, before any model is loaded ------------------------------------------------


REFUSED = [
    (
        ["--backend", "transformers", "--n-gpu-layers", "4"],
        "n_gpu_layers (--n-gpu-layers) is a llama.cpp setting",
    ),
    (
        ["--backend", "llama.cpp", "--dtype", "bfloat16"],
        "dtype 'bfloat16' (--dtype) does not apply to llama.cpp",
    ),
    (["--backend", "llama.cpp", "--device", "cuda"], "device 'cuda' (--device) does not apply to llama.cpp"),
    (["--backend", "llama.cpp", "--device", "cpu", "--n-gpu-layers", "-1"], "contradict each other"),
    (["--backend", "transformers", "--device", "tpu"], "unknown device 'tpu'"),
    (["--backend", "transformers", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["--backend", "transformers", "--threads", "-2"], "threads must be >= 0"),
]


def _one_error_line(res) -> str:
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatfmt: error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_chat_refuses_what_the_backend_cannot_do(smollm2_gguf, args, message):
    res = runner.invoke(app, ["chat", "--model", str(smollm2_gguf), "-p", "hi", *args])
    assert message in _one_error_line(res)
    assert res.stdout == ""


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_serve_refuses_what_the_backend_cannot_do(smollm2_gguf, args, message):
    res = runner.invoke(app, ["serve", "--model", str(smollm2_gguf), "--port", "9", *args])
    assert message in _one_error_line(res)


def test_auto_on_a_gguf_refuses_dtype_and_says_which_backend_takes_it(smollm2_gguf):
    res = runner.invoke(app, ["chat", "--model", str(smollm2_gguf), "-p", "hi", "--dtype", "float16"])
    assert "--backend transformers" in _one_error_line(res)


def test_cuda_is_refused_where_torch_sees_no_gpu(smollm2_gguf):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    res = runner.invoke(
        app,
        ["chat", "--model", str(smollm2_gguf), "--backend", "transformers", "--device", "cuda:0", "-p", "hi"],
    )
    assert "torch sees no CUDA GPU" in _one_error_line(res)


@pytest.mark.parametrize(
    "flag", [["--threads", "2"], ["--device", "cpu"], ["--dtype", "float32"], ["--n-gpu-layers", "0"]]
)
def test_serve_upstream_refuses_the_model_flags(smollm2_gguf, flag):
    res = runner.invoke(
        app, ["serve", "--upstream", "http://127.0.0.1:9", "--tokenizer", str(smollm2_gguf), *flag]
    )
    assert f"{flag[0]}: no model runs here with --upstream" in _one_error_line(res)


@pytest.mark.parametrize("spelling", ["--ctx", "--n-ctx"])
def test_chat_context_flag_both_spellings(spelling):
    res = runner.invoke(app, ["chat", "-p", "hi", spelling, "1"])
    assert "must be at least 2, got 1" in _one_error_line(res)


@pytest.mark.parametrize("spelling", ["--format", "--chat-format", "-f"])
@pytest.mark.parametrize("command", ["chat", "serve"])
def test_format_flag_every_spelling_reaches_the_format_loader(smollm2_gguf, command, spelling):
    extra = ["-p", "hi"] if command == "chat" else ["--port", "9"]
    res = runner.invoke(app, [command, "--model", str(smollm2_gguf), spelling, "no-such-format-h3", *extra])
    assert "no-such-format-h3" in _one_error_line(res)


# -- the settings reach the real backends ------------------------------------------------------------


def test_llama_cpp_gets_threads_for_generation_and_prompt(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    be = load_backend(smollm2_gguf, "llama.cpp", threads=1, n_ctx=256)
    try:
        assert (be.llm.n_threads, be.llm.n_threads_batch) == (1, 1)
    finally:
        be.close()
    be = load_backend(smollm2_gguf, "llama.cpp", n_ctx=256)  # the default
    try:
        # default_threads() follows the load average, which may move between the load and now:
        # between its value with every core busy and with none
        n = usable_cpus()
        assert be.llm.n_threads == be.llm.n_threads_batch
        assert default_threads(n, busy=n) <= be.llm.n_threads <= default_threads(n, busy=0)
    finally:
        be.close()


TORCH_PROBE = """
import json, sys, torch
from chatfmt.inference.backends import load_backend
before = torch.get_num_threads()
be = load_backend(sys.argv[1], "transformers", threads=0, device="cpu", dtype="bfloat16")
untouched = torch.get_num_threads()
dtype = str(next(be.model.parameters()).dtype)
device = str(next(be.model.parameters()).device)
ids = list(be.generate(be.tokenizer.encode_text("Hello"), __import__("chatfmt").inference.backends.GenerationParams(max_tokens=2, temperature=0)))
torch.set_num_threads(before)
# threads=1 reaches torch on a second load: a tiny randomly initialised Llama saved beside the test (a
# real transformers model through the same backend; a second GGUF dequantization would double the cost)
from transformers import LlamaConfig, LlamaForCausalLM
LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2)).save_pretrained(sys.argv[2])
load_backend(sys.argv[2], "transformers", threads=1)
print(json.dumps({"before": before, "untouched": untouched, "after": torch.get_num_threads(),
                  "dtype": dtype, "device": device, "generated": len(ids)}))
"""


@pytest.mark.slow  # a load of the model through transformers (GGUF dequantized) in a fresh process
def test_transformers_gets_threads_device_and_dtype(smollm2_gguf, tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, str(smollm2_gguf), str(tmp_path / "tiny-llama")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["untouched"] == out["before"]  # threads=0: torch's own default stays
    assert out["after"] == 1
    assert out["dtype"] == "torch.bfloat16" and out["device"] == "cpu"
    assert out["generated"] == 2


def test_backend_options_for_a_plugin_backend_pass_the_settings_as_given():
    assert backend_options("my-plugin", threads=3, device="cuda:1") == {"threads": 3, "device": "cuda:1"}
    assert backend_options("my-plugin") == {}
    with pytest.raises(BackendError, match="unknown device"):
        backend_options("my-plugin", device="gpu")


# -- the default --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "busy", "expected"),
    [
        (1, 0, 1),  # never 0
        (2, 0, 1),  # a small machine keeps a core for everything else
        (2, 5, 1),
        (4, 0, 3),
        (4, 2, 2),  # two cores busy with other work: the two left
        (8, 0, 4),  # about the physical cores of an 8-thread CPU
        (8, 7, 1),
        (64, 0, 32),
        (64, 100, 1),
    ],
)
def test_default_threads(cpus, busy, expected):
    assert default_threads(cpus, busy) == expected


def test_default_threads_on_this_machine_fit_its_cores():
    n = default_threads()
    assert 1 <= n <= max(1, usable_cpus() - 1) or usable_cpus() == 1


# -- serve: the spellings reach the engine --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(args: list[str]) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "chatfmt.cli", "serve", "--port", str(port), "--quiet", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env={**os.environ}
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"serve exited {proc.returncode}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                r = conn.getresponse()
                if r.status == 200:
                    return dict(json.loads(r.read()))
            except OSError:
                time.sleep(0.3)
        raise AssertionError("serve did not come up")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_serve_proxy_format_and_context_in_the_new_spellings(smollm2_gguf):
    health = _health(
        [
            "--upstream",
            "http://127.0.0.1:9",
            "--tokenizer",
            str(smollm2_gguf),
            "--format",
            "qwen2.5",
            "--n-ctx",
            "333",
        ]
    )
    assert (health["format"], health["n_ctx"]) == ("qwen2.5", 333)


def test_serve_llama_cpp_with_threads_and_the_old_spellings(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    health = _health(
        [
            "--model",
            str(smollm2_gguf),
            "--backend",
            "llama.cpp",
            "--threads",
            "1",
            "--chat-format",
            "chatml",
            "--ctx",
            "768",
        ]
    )
    # (llama.cpp rounds a context up to a multiple of 256: 768 is kept as it is)
    assert (health["backend"], health["format"], health["n_ctx"]) == ("llama.cpp", "chatml", 768)
