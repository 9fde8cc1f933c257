"""What chatfmt's own logit work costs per generated token: greedy tokens/s of ``backend.generate`` on
the default model (SmolLM2-135M-Instruct) plain, with presence/frequency penalties and a
``logit_bias``, and with ``top_logprobs=5`` (a log-softmax over the vocabulary per token).

    python benchmarks/sampling_bench.py                      # transformers
    python benchmarks/sampling_bench.py --backend llama.cpp
    python benchmarks/sampling_bench.py --tokens 64 --rounds 5 --out results.json

Runs are interleaved (plain, penalties, logprobs, plain, ...) so machine load affects each alike;
each figure is the best of ``--rounds`` with the median next to it, and the report gives the load
average and the process's CPU time against wall time (on a busy machine wall time alone misleads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "penalties+bias": {
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logit_bias": {1000: -100.0, 1001: 5.0},
    },
    "top_logprobs=5": {"top_logprobs": 5},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()

    from chatfmt.inference import load_backend
    from chatfmt.inference.backends.base import GenerationParams, GenerationResult
    from chatfmt.models import default_model_path

    load_before = os.getloadavg()
    backend = load_backend(default_model_path(), args.backend, n_ctx=1024, n_threads=args.threads)
    prompt = backend.tokenizer.encode_text("Write a short story about a lighthouse keeper and the sea.")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    samples: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.rounds):
        for name, extra in VARIANTS.items():
            res = GenerationResult()
            params = GenerationParams(max_tokens=args.tokens, temperature=0.0, **extra)
            t = time.perf_counter()
            n = sum(1 for _ in backend.generate(prompt, params, result=res))
            samples[name].append(n / (time.perf_counter() - t))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    report = {
        "backend": args.backend,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "threads": args.threads,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "tokens_per_s": {
            k: {"best": round(max(v), 1), "median": round(statistics.median(v), 1)}
            for k, v in samples.items()
        },
    }
    base = max(samples["plain"])
    for name, v in samples.items():
        print(
            f"{name:16} best {max(v):7.1f} tok/s  median {statistics.median(v):7.1f}  ({max(v) / base:.2f}x plain)"
        )
    print(
        f"load {report['loadavg_before'][0]:.1f} -> {report['loadavg_after'][0]:.1f}, cpu {cpu:.1f} s / wall {wall:.1f} s"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    backend.close()


if __name__ == "__main__":
    main()
