"""Generation speed at each thread setting, with the machine idle and with a busy neighbour.

    python benchmarks/threads_bench.py                          # both backends, 48 tokens, 3 samples
    python benchmarks/threads_bench.py --backends llama.cpp --tokens 96
    python benchmarks/threads_bench.py --markdown table.md --out results.json

For each backend (transformers, llama.cpp) and each thread setting (1, 2, chatfmt's default
``--threads``, and the library's own default: ``--threads 0``), the default model
(SmolLM2-135M-Instruct) is loaded through ``load_backend(threads=...)`` (llama.cpp: once per setting;
transformers: once per condition, then ``torch.set_num_threads`` per setting), warmed up, then generates
``--tokens`` tokens greedily from a fixed chat prompt (no stop ids: always exactly that many),
``--samples`` times. Reported: tokens/s (best sample, median next to it), and for that run the
process CPU time over wall time (above 1.0: more than one core busy).

Each setting is measured twice: with the machine as it is ("idle"), and with a busy neighbour: a
separate process burning one core (an endless Python loop, not pinned) started before the worker and
stopped after it. The 1-minute load average is printed with every row: figures taken on a loaded
machine are not final. Each condition runs in a fresh process: torch's default is read before
anything changes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROMPT = [
    {
        "role": "user",
        "content": "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    }
]
SETTINGS = ("1", "2", "default", "library")
BURNER = "while True:\n    pass\n"


def _import_chatfmt() -> Any:
    try:
        import chatfmt
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
        import chatfmt
    return chatfmt


def _threads_arg(setting: str) -> int | None:
    """``load_backend``'s ``threads`` for a setting: a number, None (chatfmt's default), 0 (the library's)."""
    return {"default": None, "library": 0}.get(setting, int(setting) if setting.isdigit() else None)


def _timed(be: Any, ids: list[int], tokens: int, samples: int) -> list[dict[str, float]]:
    from chatfmt.inference.backends import GenerationParams

    greedy = GenerationParams(max_tokens=tokens, temperature=0)
    list(be.generate(ids, GenerationParams(max_tokens=4, temperature=0)))  # warm-up
    runs = []
    for _ in range(samples):
        c0, w0 = time.process_time(), time.perf_counter()
        n = sum(1 for _ in be.generate(ids, greedy))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        runs.append({"tokens": n, "wall_s": wall, "cpu_s": cpu, "tok_s": n / wall})
    return runs


def _row(
    backend: str, setting: str, used: Any, load_s: float, runs: list[dict[str, float]]
) -> dict[str, Any]:
    best = max(runs, key=lambda r: r["tok_s"])
    return {
        "backend": backend,
        "setting": setting,
        "threads_used": used,
        "load_model_s": round(load_s, 2),
        "tok_s_best": round(best["tok_s"], 2),
        "tok_s_median": round(statistics.median(r["tok_s"] for r in runs), 2),
        "cpu_over_wall": round(best["cpu_s"] / best["wall_s"], 2),
        "runs": runs,
    }


def worker(backend: str, settings: list[str], tokens: int, samples: int) -> list[dict[str, Any]]:
    """The settings in this (fresh) process. llama.cpp: a load per setting (its threads are fixed
    when the context is made; a load takes seconds). transformers: one load (dequantizing the GGUF
    takes minutes on a busy machine), then ``torch.set_num_threads`` per setting, torch's own
    default read before chatfmt changes anything."""
    chatfmt = _import_chatfmt()
    from chatfmt.inference.backends import load_backend
    from chatfmt.inference.backends.machine import default_threads

    rows = []
    if backend == "transformers":
        import torch

        library = torch.get_num_threads()  # before any load: torch's own default
        t0 = time.perf_counter()
        be = load_backend(None, backend, threads=0)
        load_s = time.perf_counter() - t0
        ids = (
            chatfmt.load_format(be.model_path)
            .encode(PROMPT, be.tokenizer, add_generation_prompt=True)
            .input_ids
        )
        for setting in settings:
            n = {"default": default_threads(), "library": library}.get(setting) or int(setting)
            torch.set_num_threads(n)
            rows.append(
                _row(backend, setting, torch.get_num_threads(), load_s, _timed(be, ids, tokens, samples))
            )
        be.close()
        return rows
    for setting in settings:
        t0 = time.perf_counter()
        be = load_backend(None, backend, threads=_threads_arg(setting))
        load_s = time.perf_counter() - t0
        ids = (
            chatfmt.load_format(be.model_path)
            .encode(PROMPT, be.tokenizer, add_generation_prompt=True)
            .input_ids
        )
        llm = getattr(be, "llm", None)
        used = getattr(llm, "n_threads", None)
        rows.append(_row(backend, setting, used, load_s, _timed(be, ids, tokens, samples)))
        be.close()
    return rows


def measure(backend: str, settings: list[str], tokens: int, samples: int, busy: bool) -> list[dict[str, Any]]:
    burner = subprocess.Popen([sys.executable, "-c", BURNER]) if busy else None
    try:
        if burner is not None:
            time.sleep(1.0)  # let it take its core
        load_before = os.getloadavg()[0]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, ",".join(settings)]
        cmd += ["--tokens", str(tokens), "--samples", str(samples)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
        if proc.returncode != 0:
            error = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            return [
                {"backend": backend, "setting": s, "error": error, "busy_neighbour": busy} for s in settings
            ]
        rows: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    for r in rows:
        r["busy_neighbour"] = busy
        r["load_1min_before"] = round(load_before, 2)
        r["load_1min_after"] = round(os.getloadavg()[0], 2)
    return rows


def markdown(results: list[dict[str, Any]], header: dict[str, Any]) -> str:
    by = {(r["backend"], r["setting"], r.get("busy_neighbour")): r for r in results}
    lines = [
        f"Default model (SmolLM2-135M-Instruct, Q4_1 GGUF; transformers dequantizes it to float32), {header['tokens']} tokens "
        f"greedy, best of {header['samples']}; {header['cpus']} usable CPUs, chatfmt's default --threads here: "
        f"{header['default_threads']}; load average (1 min) {header['load_start']} at start, {header['load_end']} at end.",
        "",
        "| backend | --threads | threads used | idle: tokens/s | idle: cpu/wall | busy neighbour: tokens/s | busy: cpu/wall | busy / idle | load (idle, busy) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"default": "default", "library": "0 (library's default)"}
    for backend in header["backends"]:
        for s in header["settings"]:
            idle, busy = by.get((backend, s, False)), by.get((backend, s, True))
            rows = [r for r in (idle, busy) if r is not None]
            if not rows:
                continue
            failed = [r["error"] for r in rows if "error" in r]
            if failed:
                lines.append(f"| {backend} | {names.get(s, s)} | failed: {failed[0]} | | | | | | |")
                continue

            def cells(r: dict[str, Any] | None) -> str:
                return "- | -" if r is None else f"{r['tok_s_best']:.1f} | {r['cpu_over_wall']:.2f}"

            ratio = (
                f"{busy['tok_s_best'] / idle['tok_s_best']:.2f}x"
                if idle and busy and idle["tok_s_best"]
                else "-"
            )
            loads = ", ".join(f"{r['load_1min_before']:.1f}" if r else "-" for r in (idle, busy))
            lines.append(
                f"| {backend} | {names.get(s, s)} | {rows[0]['threads_used']} | {cells(idle)} | {cells(busy)} | {ratio} | {loads} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="transformers,llama.cpp")
    ap.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated: numbers, default, library"
    )
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--conditions", default="idle,busy")
    ap.add_argument("--out", help="write the JSON results here")
    ap.add_argument("--markdown", help="write the markdown table here")
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "SETTING"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1].split(","), args.tokens, args.samples)))
        return 0
    _import_chatfmt()
    from chatfmt.inference.backends.machine import default_threads, usable_cpus

    header: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": usable_cpus(),
        "default_threads": default_threads(),
        "load_start": round(os.getloadavg()[0], 2),
        "tokens": args.tokens,
        "samples": args.samples,
        "backends": args.backends.split(","),
        "settings": args.settings.split(","),
    }
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = []
    for backend in header["backends"]:
        for cond in args.conditions.split(","):
            for r in measure(backend, header["settings"], args.tokens, args.samples, busy=cond == "busy"):
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "runs"}), flush=True)
    header["load_end"] = round(os.getloadavg()[0], 2)
    header["bench_wall_s"] = round(time.perf_counter() - wall0, 1)
    header["bench_cpu_s_parent"] = round(time.process_time() - cpu0, 1)
    table = markdown(results, header)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.out:
        Path(args.out).write_text(json.dumps({"header": header, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
