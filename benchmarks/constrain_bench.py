"""Cost of constrained decoding (chatfmt.inference.constrain) without a model: building the
vocabulary view and a checked grammar, and the per-token work a backend adds (mask computed and
applied to a logits row, token accepted), over the tokens of real documents, on the default model's
vocabulary (SmolLM2, 49,152 tokens).

    python benchmarks/constrain_bench.py [--repeats 20]

Reports wall and process CPU time and the load average before and after (a loaded machine inflates
wall times; CPU time is the figure to compare)."""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import chatfmt
    from chatfmt.inference import constrain as C
    from chatfmt.models import default_model_path

    load0 = os.getloadavg()
    tok = chatfmt.load_tokenizer(default_model_path())
    eot = {2}
    t, c = time.perf_counter(), time.process_time()
    C.ll_tokenizer(tok, eot)
    print(
        f"vocabulary view (once per tokenizer): wall {1000 * (time.perf_counter() - t):.0f} ms, cpu {1000 * (time.process_time() - c):.0f} ms"
    )
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
            "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        "required": ["name", "age", "tags", "address"],
    }
    doc = {"name": "Ada Lovelace", "age": 36, "tags": ["a", "c"], "address": {"city": "London"}}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    fmt = chatfmt.load_format("qwen2.5")
    cases = [
        (
            "json_schema",
            lambda: C.response_format_constraint(
                {"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}},
                tok,
                eot,
            ),
            json.dumps(doc),
        ),
        (
            "tool call (qwen2.5)",
            lambda: C.tool_choice_constraint(fmt, tok, [tool], eot),
            C.sample_call(fmt, tool, {"city": "Paris"}),
        ),
    ]
    for name, build, text in cases:
        t, c = time.perf_counter(), time.process_time()
        for _ in range(args.repeats):
            factory = build()
        bw, bc = (time.perf_counter() - t) / args.repeats, (time.process_time() - c) / args.repeats
        ids, _, _ = C._encode(text, tok)
        row = np.zeros(tok.vocab_size, dtype=np.float32)
        wall = cpu = 0.0
        n = 0
        for _ in range(args.repeats):
            con = factory.new()
            t, c = time.perf_counter(), time.process_time()
            for i in ids:
                row[:] = 0
                con.mask_logits(row)
                con.advance(i)
                con.done()
                n += 1
            wall += time.perf_counter() - t
            cpu += time.process_time() - c
        print(
            f"{name}: grammar built and checked {1000 * bw:.1f} ms wall / {1000 * bc:.1f} ms cpu; "
            f"per token (mask + apply + advance + done) {1000 * wall / n:.3f} ms wall / {1000 * cpu / n:.3f} ms cpu ({len(ids)} tokens x {args.repeats})"
        )
    print(f"load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}; cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
