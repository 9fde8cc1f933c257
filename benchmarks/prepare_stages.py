"""Where ``chatfmt prepare``'s CPU time goes, per conversation, stage by stage (issue 17).

Process CPU time (all threads), best of ``--repeats`` (7) taken in turn, of each stage run alone over the corpus of
``corpus.py`` in prepare's batches (256 records), divided by the number of conversations. The
tokenizer runs on one thread (``RAYON_NUM_THREADS=1``, set here before ``tokenizers`` is imported)
so that the figures hold on a loaded machine, where wall-clock ratios mean nothing: CPU time is
what a quiet machine's cores would have to spend.

Stages, in the order prepare does them:

- read: the JSONL file's lines, as bytes (``iter_jsonl``);
- decode: JSON (strict: NaN, duplicate keys, lone surrogates refused; ``readers.decode``);
- parse: record kind, validation, ``Conversation`` (``messages.parse_record``);
- encode_batch: render, tokenize, labels, the ``Encoded`` rows (``chatfmt.encode_batch``, one call
  per batch, in this thread), and within it the raw reference: ``tokenizers`` ``encode_batch`` of the
  already-rendered text with ``.ids`` taken;
- encode_records: decode + parse + encode_batch + the outcomes, as one call (what a prepare thread
  runs on a batch);
- write rows: ``_Writer.batch`` (row dicts, report counts) with a sink that only holds the rows;
- Parquet: the sink's Arrow columns and row group (``ParquetSink.end_batch``) and ``close``;
- prepare: the whole of ``chatfmt.prepare(workers=1)``, JSONL -> Parquet (its threads included),
  and the garbage collector's part of one such run (thread CPU time between ``gc.callbacks``' start
  and stop; its last column is the number of collections, not cpu/wall).

    .venv/bin/python benchmarks/prepare_stages.py                # 512 conversations, best of 7
    .venv/bin/python benchmarks/prepare_stages.py --profile      # and cProfile of encode_records + writer
    .venv/bin/python benchmarks/prepare_stages.py --edges        # CPU before the first / after the last tokenizer call
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import build_corpus  # noqa: E402
from run import find_testdata, import_chatfmt  # noqa: E402

BATCH = 256


def cpu_best(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float]]:
    """(best process CPU seconds, its wall seconds) of each function, run in turn ``repeats`` times
    (A B C A B C ...: load from other processes hits them alike)."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            sample = (time.process_time() - c, time.perf_counter() - t)
            if name not in best or sample[0] < best[name][0]:
                best[name] = sample
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--testdata", metavar="DIR")
    ap.add_argument("--profile", action="store_true", help="cProfile of encode_records + the writer (top 30)")
    ap.add_argument(
        "--edges",
        action="store_true",
        help="only the pipeline's edges: CPU before the tokenizer first runs and after it last returns, "
        "with and without the first/last batch cut in pieces (tokenizer on all cores)",
    )
    ap.add_argument("--out", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    td = find_testdata(args.testdata) / "qwen2.5"
    if not td.is_dir():
        print(f"{td} is absent: nothing measured")
        return 0
    chatfmt = import_chatfmt()
    from chatfmt.encode import encode_batch, sequential
    from chatfmt.messages import parse_record
    from chatfmt.train.encoder import EncodeOptions, encode_records
    from chatfmt.train.pipeline import _Writer
    from chatfmt.train.readers import decode, iter_jsonl
    from chatfmt.train.report import Report
    from chatfmt.train.writers import ParquetSink

    if args.edges:
        return edges(chatfmt, td, args)
    n = args.conversations
    fmt = chatfmt.load_format("qwen2.5")
    tok = chatfmt.load_tokenizer(td)
    raw = tok.whole_text_backend()
    convs = build_corpus(n)
    texts = [fmt.render(c) for c in convs]
    opts = EncodeOptions()
    load0 = os.getloadavg()[0]

    class Holding:
        """A sink that only holds the rows (the writer's own cost)."""

        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def write(self, row: dict[str, Any]) -> None:
            self.rows.append(row)

        def end_batch(self) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "corpus.jsonl"
        with src.open("w", encoding="utf-8") as f:
            for c in convs:
                f.write(json.dumps({"messages": c}, ensure_ascii=False) + "\n")
        lines = list(iter_jsonl(src))
        batches = [lines[i : i + BATCH] for i in range(0, n, BATCH)]
        decoded = [[decode(r) for r in b] for b in batches]
        parsed = [[parse_record(r.data) for r in b] for b in decoded]
        outcomes = [encode_records(fmt, tok, b, opts) for b in batches]
        tokens = sum(len(o.input_ids or []) for b in outcomes for o in b)

        def enc_all() -> Any:
            with sequential():
                return [encode_batch(fmt, b, tok) for b in parsed]

        def writer_rows() -> Any:
            sink = Holding()
            w = _Writer(sink, io.StringIO(), Report(), None)  # type: ignore[arg-type]
            for b in outcomes:
                w.batch(b)
            return sink.rows

        rows = writer_rows()
        row_batches = [rows[i : i + BATCH] for i in range(0, n, BATCH)]

        def parquet() -> None:
            sink = ParquetSink(d / "stage.parquet", packed=False)
            for b in row_batches:
                for r in b:
                    sink.write(r)
                sink.end_batch()
            sink.close()

        stages: dict[str, Callable[[], Any]] = {
            "read (JSONL lines)": lambda: list(iter_jsonl(src)),
            "decode (strict JSON)": lambda: [[decode(r) for r in b] for b in batches],
            "parse (kind, validation)": lambda: [[parse_record(r.data) for r in b] for b in decoded],
            "encode_batch (render, tokenize, labels)": enc_all,
            "  of which raw encode_batch + .ids": lambda: [
                [e.ids for e in raw.encode_batch(texts[i : i + BATCH])] for i in range(0, n, BATCH)
            ],
            "encode_records (decode+parse+encode+outcomes)": lambda: [
                encode_records(fmt, tok, b, opts) for b in batches
            ],
            "write rows (_Writer.batch)": writer_rows,
            "Parquet (Arrow columns, row groups)": parquet,
            "prepare, workers=1 (the whole)": lambda: chatfmt.prepare(
                src, fmt, tok, d / "p.parquet", workers=1
            ),
        }
        results = {
            name: {"cpu_us_per_conv": 1e6 * cpu / n, "cpu_per_wall": cpu / wall if wall else 0.0}
            for name, (cpu, wall) in cpu_best(stages, args.repeats).items()
        }
        # the collector's share of a prepare run: thread CPU time between its start and stop callbacks
        import gc

        spent: list[float] = []
        began: dict[int, float] = {}

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                began[info["generation"]] = time.thread_time()
            elif info["generation"] in began:
                spent.append(time.thread_time() - began.pop(info["generation"]))

        gc.callbacks.append(on_gc)
        try:
            chatfmt.prepare(src, fmt, tok, d / "p.parquet", workers=1)
        finally:
            gc.callbacks.remove(on_gc)
        results["  of which the garbage collector (one run)"] = {
            "cpu_us_per_conv": 1e6 * sum(spent) / n,
            "cpu_per_wall": float(len(spent)),
        }
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for _ in range(3):
                outs = [encode_records(fmt, tok, b, opts) for b in batches]
                sink = Holding()
                w = _Writer(sink, io.StringIO(), Report(), None)  # type: ignore[arg-type]
                for b in outs:
                    w.batch(b)
                parquet()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)

    load1 = os.getloadavg()[0]
    raw_us = results["  of which raw encode_batch + .ids"]["cpu_us_per_conv"]
    print(
        f"prepare stages: {n} conversations, {tokens:,} tokens (Qwen2.5), process CPU time per conversation, "
        f"best of {args.repeats}, RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}; load average {load0:.1f} "
        f"at the start, {load1:.1f} at the end"
    )
    print(f"{'stage':<50} {'CPU us/conv':>12} {'x raw':>7} {'cpu/wall':>9}")
    for name, r in results.items():
        print(
            f"{name:<50} {r['cpu_us_per_conv']:>12,.1f} {r['cpu_us_per_conv'] / raw_us:>7.3f} {r['cpu_per_wall']:>9.2f}"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"conversations": n, "tokens": tokens, "load": [load0, load1], "stages": results}, indent=2
            )
            + "\n"
        )
    return 0


def edges(chatfmt: Any, td: Path, args: argparse.Namespace) -> int:
    """Process CPU time (ms) of a whole ``prepare`` (1,000 conversations by default, 4 batches)
    spent before its tokenizer first starts and after it last returns: the pipeline's edges, where
    one core works and the other waits. With the first and last batch cut in pieces
    (``pipeline.FIRST_PIECE``) and without (every batch whole), in turn, best of ``--repeats``."""
    import chatfmt.train.pipeline as pipeline

    n = args.conversations if args.conversations != 512 else 1000
    fmt = chatfmt.load_format("qwen2.5")
    tok = chatfmt.load_tokenizer(td)
    backend = tok.whole_text_backend()
    calls: list[tuple[float, float]] = []

    class Probe:
        """The whole-text backend, noting the process CPU time when each encode_batch starts and ends."""

        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def encode_batch(self, *a: Any, **k: Any) -> Any:
            c = time.process_time()
            try:
                return backend.encode_batch(*a, **k)
            finally:
                calls.append((c, time.process_time()))

    tok.whole_text_backend = lambda: Probe()  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus.jsonl"
        with src.open("w", encoding="utf-8") as f:
            for c in build_corpus(n):
                f.write(json.dumps({"messages": c}, ensure_ascii=False) + "\n")
        results: dict[str, list[tuple[float, float, float]]] = {"pieces": [], "whole batches": []}
        old = pipeline.FIRST_PIECE
        try:
            for _ in range(args.repeats):
                for name, piece in (("pieces", old), ("whole batches", 10**9)):
                    pipeline.FIRST_PIECE = piece
                    calls.clear()
                    c0 = time.process_time()
                    chatfmt.prepare(src, fmt, tok, Path(tmp) / "o.parquet", workers=1)
                    c1 = time.process_time()
                    first = min(a for a, _ in calls) - c0
                    last = c1 - max(b for _, b in calls)
                    results[name].append((first, last, c1 - c0))
        finally:
            pipeline.FIRST_PIECE = old
    load = os.getloadavg()[0]
    print(
        f"prepare's edges: {n} conversations, process CPU ms, best of {args.repeats}; load average {load:.1f}"
    )
    for name, rows in results.items():
        print(
            f"{name:<15} before the first tokenizer call {1e3 * min(r[0] for r in rows):7.1f}   "
            f"after the last one returns {1e3 * min(r[1] for r in rows):7.1f}   whole run {1e3 * min(r[2] for r in rows):8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
