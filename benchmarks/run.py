"""chatfmt benchmarks: render and encode throughput against transformers and raw ``tokenizers``.

    python benchmarks/run.py                 # full run (2500 conversations; about 4-5 minutes)
    python benchmarks/run.py --quick         # about a minute (the first 400 conversations)
    python benchmarks/run.py --out results.json
    python benchmarks/run.py --profile       # cProfile of chatfmt's built-in qwen2.5 encode path

See benchmarks/README.md for what is measured and how to read the output. Needs the Qwen2.5 test
data (``../shared/testdata/qwen2.5``, or ``--testdata DIR`` / ``$CHATFMT_TESTDATA``); without it
the script says so and exits 0 having measured nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402

IGNORE_INDEX = -100

TARGET_RENDER_BUILTIN = 20.0  # built-in render >= 20x transformers apply_chat_template(tokenize=False)
TARGET_RENDER_JINJA = 5.0  # Jinja render (a pinned template) >= 5x transformers
TARGET_ENCODE = 0.8  # fmt.encode (ids + labels, one conversation at a time) >= 0.8x raw single-thread encode, CPU time
TARGET_ENCODE_BATCH = 0.85  # chatfmt.encode_batch (ids + labels) >= 0.85x raw encode_batch (issue 17)
TARGET_SCALING = 1.2  # cost per token at 80 turns <= 1.2x that at 4 turns

SCALING_TURNS = [4, 16, 40, 80]


# --------------------------------------------------------------------------------------- setup


def find_testdata(arg: str | None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("CHATFMT_TESTDATA")
    if env:
        return Path(env).expanduser()
    return (REPO.parent / "shared" / "testdata").resolve()


def import_chatfmt() -> Any:
    try:
        import chatfmt
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
        import chatfmt
    return chatfmt


def git_state() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (the figures are of the code
    on disk when the run started)."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("chatfmt", "transformers", "tokenizers", "jinja2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


@dataclass
class Workload:
    """What the timed functions run on: conversations and (for raw tokenization) their rendered text."""

    convs: list[list[dict[str, Any]]]
    texts: list[str]


@dataclass
class Method:
    key: str
    label: str
    group: str  # "render" | "encode"
    fn: Callable[[Workload], Any]
    repeats: int
    # turns an output into per-conversation (text) or (ids, labels-or-None), for the checks
    normalise: Callable[[Any], list[Any]] | None = None
    info: bool = False  # informational row (no target, not a reference)
    note: str = ""
    inner: int = 1  # passes over the corpus per sample (renders: calibrated)
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    foreign_samples: list[float | None] = field(default_factory=list)
    fingerprint: list[int] | None = None
    label_fingerprint: list[int] | None = None
    skipped: str | None = None


# --------------------------------------------------------------------------------------- methods


def hf_prefix_diff(hf_tok: Any, conv: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Labels the way many fine-tuning scripts get them through transformers: tokenize the whole
    conversation, then for every assistant message render + tokenize the conversation up to it
    (with the generation prompt) and up to and including it; the tokens between the two lengths are
    trained, everything else is -100."""
    ids = hf_tok.apply_chat_template(conv, tokenize=True, return_dict=False)
    labels = [IGNORE_INDEX] * len(ids)
    for k, m in enumerate(conv):
        if m["role"] != "assistant":
            continue
        start = len(hf_tok.apply_chat_template(conv[:k], tokenize=True, add_generation_prompt=True, return_dict=False))
        end = len(hf_tok.apply_chat_template(conv[: k + 1], tokenize=True, return_dict=False))
        labels[start:end] = ids[start:end]
    return ids, labels


def build_methods(chatfmt: Any, fmt: Any, jfmt: Any, tok: Any, raw: Any, hf_tok: Any, repeats: dict[str, int]) -> list[Method]:
    rr, re_, rs, rw = repeats["render"], repeats["encode"], repeats["slow"], repeats["raw"]
    jfmt_strict = jfmt.with_options(strict=True)

    def texts_of(out: list[str]) -> list[str]:
        return out

    def seg_texts(out: list[Any]) -> list[str]:
        return [r.text for r in out]

    def enc_pairs(out: list[Any]) -> list[tuple[list[int], list[int] | None]]:
        return [(e.input_ids, e.labels) for e in out]

    def ids_only(out: list[list[int]]) -> list[tuple[list[int], None]]:
        return [(ids, None) for ids in out]

    def raw_ids(encodings: list[Any]) -> list[list[int]]:
        # the ids as Python lists, like every other row; taken after all the encodes (the fastest
        # order: freeing each Encoding between encodes costs more, see the --profile breakdown)
        return [e.ids for e in encodings]

    methods = [
        Method("render_builtin", "chatfmt built-in qwen2.5: fmt.render", "render",
               lambda w: [fmt.render(c) for c in w.convs], rr, texts_of),
        Method("render_jinja", "chatfmt Jinja (Qwen2.5 template): render", "render",
               lambda w: [jfmt.render(c) for c in w.convs], rr, texts_of),
        Method("render_jinja_executed", "chatfmt Jinja, template executed (strict: no built-in)", "render",
               lambda w: [jfmt_strict.render(c) for c in w.convs], rr, texts_of, info=True,
               note="the sandboxed template itself, as for a template no built-in is pinned against"),
        Method("segments_builtin", "chatfmt built-in: render_segments", "render",
               lambda w: [fmt.render_segments(c) for c in w.convs], rr, seg_texts),
        Method("segments_jinja", "chatfmt Jinja: render_segments", "render",
               lambda w: [jfmt.render_segments(c) for c in w.convs], rr, seg_texts),
        Method("render_transformers", "transformers apply_chat_template(tokenize=False)", "render",
               lambda w: [hf_tok.apply_chat_template(c, tokenize=False) for c in w.convs], rr, texts_of,
               note="reference"),
        Method("encode_builtin", "chatfmt built-in: fmt.encode (ids+labels)", "encode",
               lambda w: [fmt.encode(c, tok) for c in w.convs], re_, enc_pairs),
        Method("encode_jinja", "chatfmt Jinja: fmt.encode (ids+labels)", "encode",
               lambda w: [jfmt.encode(c, tok) for c in w.convs], re_, enc_pairs),
        Method("encode_batch_builtin", "chatfmt.encode_batch, built-in (ids+labels)", "encode",
               lambda w: chatfmt.encode_batch(fmt, w.convs, tok), re_, enc_pairs),
        Method("hf_tokenize", "transformers apply_chat_template(tokenize=True)", "encode",
               lambda w: [hf_tok.apply_chat_template(c, tokenize=True, return_dict=False) for c in w.convs], re_,
               ids_only, info=True, note="no labels; one call per conversation"),
        Method("hf_tokenize_batched", "transformers apply_chat_template(tokenize=True), batched", "encode",
               lambda w: hf_tok.apply_chat_template(w.convs, tokenize=True, return_dict=False), re_,
               ids_only, info=True, note="no labels; one call for the corpus"),
        Method("hf_prefix_diff", "transformers prefix-diff (ids+labels)", "encode",
               lambda w: [hf_prefix_diff(hf_tok, c) for c in w.convs], rs,
               lambda out: [(ids, labels) for ids, labels in out], info=True,
               note="render+tokenize every prefix up to each assistant turn"),
        Method("raw_encode_batch", "tokenizers encode_batch(rendered text)", "encode",
               lambda w: raw_ids(raw.encode_batch(w.texts, add_special_tokens=False)), rw, ids_only,
               note="reference: the physical limit (no labels)"),
        Method("raw_encode_loop", "tokenizers encode(text), one at a time", "encode",
               lambda w: raw_ids([raw.encode(t, add_special_tokens=False) for t in w.texts]), re_, ids_only,
               info=True, note="single thread"),
    ]
    if hf_tok is None:
        for m in methods:
            if m.key.startswith(("render_transformers", "hf_")):
                m.skipped = "transformers not installed"
    return methods


# --------------------------------------------------------------------------------------- timing


def _sys_busy() -> float | None:
    """Seconds of CPU the whole machine has spent busy (all processes, all cores, steal included),
    from /proc/stat; None where that is not available."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class Sample:
    """Times one sample: wall (perf_counter), this process's CPU (process_time), and the CPU the
    rest of the machine used meanwhile (``foreign``, in cores: 0 on an idle machine)."""

    def __enter__(self) -> Sample:
        self.b0 = _sys_busy()
        self.c0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        b1 = _sys_busy()
        self.foreign = None if self.b0 is None or b1 is None or not self.wall else max(0.0, (b1 - self.b0 - self.cpu) / self.wall)


def _fp(values: list[Any]) -> list[int]:
    return [hash(tuple(v)) if isinstance(v, list) else hash(v) for v in values]


MIN_SAMPLE_S = 0.3  # a render sample repeats its pass over the corpus until it lasts about this long


def run_timed(methods: list[Method], work: Workload, warm: Workload, log: Callable[[str], None], progress: Callable[[str], None]) -> None:
    """Warm every method up on a small slice, then run them round-robin (one sample of each method
    per round, so drifting machine load spreads over all of them), each over the whole workload.
    Renders take milliseconds per pass: their samples repeat the pass ``inner`` times (calibrated on
    one untimed pass) so that a sample lasts about ``MIN_SAMPLE_S``; times are per pass."""
    live = [m for m in methods if m.skipped is None]
    for m in live:
        m.fn(warm)
    for m in live:
        if m.group == "render":
            t0 = time.perf_counter()
            m.fn(work)
            m.inner = max(1, min(50, round(MIN_SAMPLE_S / max(time.perf_counter() - t0, 1e-6))))
    rounds = max(m.repeats for m in live)
    for r in range(rounds):
        for m in live:
            if r >= m.repeats:
                continue
            gc.collect()
            with Sample() as smp:
                for _ in range(m.inner - 1):
                    m.fn(work)
                out = m.fn(work)
            dt = smp.wall / m.inner
            m.cpu_samples.append(smp.cpu / m.inner)
            m.foreign_samples.append(smp.foreign)
            m.samples.append(dt)
            if r == 0 and m.normalise is not None:
                norm = m.normalise(out)
                if m.group == "render":
                    m.fingerprint = _fp(norm)
                else:
                    m.fingerprint = _fp([ids for ids, _ in norm])
                    if norm and norm[0][1] is not None:
                        m.label_fingerprint = _fp([lab for _, lab in norm])
            del out
            log(f"  round {r + 1}/{rounds}  {m.key:<24} {dt:8.3f} s per pass x {m.inner}  (cpu {m.cpu_samples[-1]:.3f} s)")
        progress(f"benchmarks: round {r + 1}/{rounds} done")


def cpu_of_best(samples: list[float], cpu: list[float]) -> float:
    k = samples.index(min(samples))
    return cpu[k] / samples[k] if samples[k] else 0.0


FOREIGN_LIMIT = 0.25  # cores other processes may use during a sample before it counts as disturbed


def is_starved(samples: list[float], cpu: list[float], foreign: list[float | None]) -> bool:
    """Whether the best sample was disturbed: it got less than 95 % of one CPU, or (a method that
    runs on several cores) under 80 % of its best CPU/wall over the samples, or other processes
    used more than ``FOREIGN_LIMIT`` cores meanwhile (from /proc/stat)."""
    k = samples.index(min(samples))
    best = cpu_of_best(samples, cpu)
    capable = max(c / s for s, c in zip(samples, cpu) if s)
    busy = foreign[k] is not None and foreign[k] > FOREIGN_LIMIT
    return best < 0.95 or (capable > 1.2 and best < 0.8 * capable) or busy


def summarize(samples: list[float], cpu: list[float], foreign: list[float | None]) -> dict[str, Any]:
    best = min(samples)
    return {
        "samples_s": [round(s, 5) for s in samples],
        "cpu_samples_s": [round(s, 5) for s in cpu],
        # process CPU time / wall time of the best sample: about 1 single-threaded, up to the core count
        "cpu_per_wall": round(cpu[samples.index(best)] / best, 2) if best else None,
        "cpu_best_s": round(min(cpu), 5),
        "foreign_cores": [None if x is None else round(x, 2) for x in foreign],
        # cores other processes used during the best sample
        "foreign_best": None if foreign[samples.index(best)] is None else round(foreign[samples.index(best)], 2),
        "starved": is_starved(samples, cpu, foreign),
        "best_s": round(best, 5),
        "median_s": round(statistics.median(samples), 5),
        "spread": round((max(samples) - best) / best, 3) if best else 0.0,
    }


# --------------------------------------------------------------------------------------- checks


def run_checks(methods: dict[str, Method], work: Workload, fmt: Any, tok: Any, hf_tok: Any, n_label_check: int) -> dict[str, Any]:
    """Do the methods compute the same thing? Untimed; compares the fingerprints of the first
    timed round (per conversation) and, on a slice, chatfmt labels against prefix-diff labels."""

    def mismatches(a: str, b: str, labels: bool = False) -> int | None:
        ma, mb = methods.get(a), methods.get(b)
        if ma is None or mb is None or ma.skipped or mb.skipped:
            return None
        fa = ma.label_fingerprint if labels else ma.fingerprint
        fb = mb.label_fingerprint if labels else mb.fingerprint
        if fa is None or fb is None:
            return None
        return sum(1 for x, y in zip(fa, fb) if x != y) + abs(len(fa) - len(fb))

    checks: dict[str, Any] = {
        "render: built-in vs transformers (conversations differing)": mismatches("render_builtin", "render_transformers"),
        "render: Jinja vs transformers": mismatches("render_jinja", "render_transformers"),
        "render: Jinja executed (strict) vs transformers": mismatches("render_jinja_executed", "render_transformers"),
        "render_segments text vs render (built-in)": mismatches("segments_builtin", "render_builtin"),
        "render_segments text vs render (Jinja)": mismatches("segments_jinja", "render_jinja"),
        "ids: chatfmt built-in vs raw encode_batch": mismatches("encode_builtin", "raw_encode_batch"),
        "ids: chatfmt built-in vs transformers tokenize=True": mismatches("encode_builtin", "hf_tokenize"),
        "ids: chatfmt Jinja vs built-in": mismatches("encode_jinja", "encode_builtin"),
        "ids: encode_batch vs encode": mismatches("encode_batch_builtin", "encode_builtin"),
        "labels: chatfmt Jinja vs built-in": mismatches("encode_jinja", "encode_builtin", labels=True),
        "labels: encode_batch vs encode": mismatches("encode_batch_builtin", "encode_builtin", labels=True),
    }
    if hf_tok is not None and not methods["hf_prefix_diff"].skipped:
        # position-level comparison on a slice: which tokens does each way train?
        only_hf = only_cf = both = 0
        only_hf_tokens: dict[str, int] = {}
        for conv in work.convs[:n_label_check]:
            enc = fmt.encode(conv, tok)
            ids, hf_labels = hf_prefix_diff(hf_tok, conv)
            if ids != enc.input_ids:
                continue
            for i, (a, b) in enumerate(zip(enc.labels, hf_labels)):
                ta, tb = a != IGNORE_INDEX, b != IGNORE_INDEX
                both += ta and tb
                only_cf += ta and not tb
                if tb and not ta:
                    only_hf += 1
                    t = tok.id_to_token(ids[i]) or str(ids[i])
                    only_hf_tokens[t] = only_hf_tokens.get(t, 0) + 1
        checks[f"labels: chatfmt vs prefix-diff on {n_label_check} conversations"] = {
            "trained_by_both": both,
            "trained_only_by_chatfmt": only_cf,
            "trained_only_by_prefix_diff": only_hf,
            "prefix_diff_extra_tokens": only_hf_tokens,
        }
    return checks


# --------------------------------------------------------------------------------------- scaling


def run_scaling(fmt: Any, jfmt: Any, tok: Any, raw: Any, hf_tok: Any, total_turns: int, repeats: int, with_prefix_diff: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Cost per token of the same turns cut into conversations of 4, 16, 40 and 80 turns."""
    sets = corpus_mod.build_scaling_sets(SCALING_TURNS, total_turns)
    texts = {n: [fmt.render(c) for c in convs] for n, convs in sets.items()}
    tok_counts = {n: [len(e.ids) for e in raw.encode_batch(texts[n], add_special_tokens=False)] for n in sets}

    # key -> (label, fn(conversations, texts), repeats, share of each set's conversations used)
    ways: dict[str, tuple[str, Callable[[list[Any], list[str]], Any], int, int]] = {
        "encode_builtin": ("chatfmt built-in fmt.encode", lambda cs, ts: [fmt.encode(c, tok) for c in cs], repeats, 1),
        "encode_jinja": ("chatfmt Jinja fmt.encode", lambda cs, ts: [jfmt.encode(c, tok) for c in cs], repeats, 1),
        "raw_encode_loop": ("tokenizers encode of rendered text (control)",
                            lambda cs, ts: [e.ids for e in [raw.encode(t, add_special_tokens=False) for t in ts]], repeats, 1),
    }
    if with_prefix_diff and hf_tok is not None:
        # quadratic: a quarter of each set, one sample (informational)
        ways["hf_prefix_diff"] = ("transformers prefix-diff labels (1/4 of each set, 1 sample)",
                                  lambda cs, ts: [hf_prefix_diff(hf_tok, c) for c in cs], 1, 4)

    def part(n: int, share: int) -> tuple[list[Any], list[str], int]:
        k = len(sets[n]) // share
        return sets[n][:k], texts[n][:k], sum(tok_counts[n][:k])

    for key, (_, fn, _, share) in ways.items():  # warm-up (prefix-diff: on one 4-turn conversation)
        cs, ts, _ = part(SCALING_TURNS[0], share)
        fn(cs[:1] if key == "hf_prefix_diff" else cs, ts)
    samples: dict[str, dict[int, list[float]]] = {k: {n: [] for n in sets} for k in ways}
    cpus: dict[str, dict[int, list[float]]] = {k: {n: [] for n in sets} for k in ways}
    foreign: dict[str, dict[int, list[float | None]]] = {k: {n: [] for n in sets} for k in ways}
    for r in range(max(w[2] for w in ways.values())):
        for key, (_, fn, rep, share) in ways.items():
            if r >= rep:
                continue
            for n in sets:
                cs, ts, _ = part(n, share)
                gc.collect()
                with Sample() as smp:
                    out = fn(cs, ts)
                cpus[key][n].append(smp.cpu)
                foreign[key][n].append(smp.foreign)
                del out
                samples[key][n].append(smp.wall)
            log(f"  scaling round {r + 1}  {key:<18} " + "  ".join(f"{n}t {samples[key][n][-1]:.3f}s" for n in sets))
    result: dict[str, Any] = {
        "turns": SCALING_TURNS,
        "total_turns_per_set": total_turns,
        "conversations_per_set": {str(n): len(sets[n]) for n in sets},
        "tokens_per_set": {str(n): sum(tok_counts[n]) for n in sets},
        "statistic": "best sample (ns per token = best time / tokens)",
        "ways": {},
    }
    for key, (label, _, _, share) in ways.items():
        per_tok = {n: min(samples[key][n]) / part(n, share)[2] * 1e9 for n in sets}
        result["ways"][key] = {
            "label": label,
            "share_of_set": 1 / share,
            "ns_per_token": {str(n): round(v, 1) for n, v in per_tok.items()},
            "samples_s": {str(n): [round(s, 5) for s in samples[key][n]] for n in sets},
            "ratio_80_vs_4": round(per_tok[SCALING_TURNS[-1]] / per_tok[SCALING_TURNS[0]], 3),
            "cpu_per_wall": {str(n): round(cpu_of_best(samples[key][n], cpus[key][n]), 2) for n in sets},
            "foreign_cores": {str(n): [None if x is None else round(x, 2) for x in foreign[key][n]] for n in sets},
            "starved": any(is_starved(samples[key][n], cpus[key][n], foreign[key][n]) for n in sets),
        }
    return result


# --------------------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.1f}"


def verdict(value: float | None, threshold: float, higher: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= threshold if higher else value <= threshold
    return "PASS" if ok else "FAIL"


def report(results: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    meta, corpus_info = results["meta"], results["corpus"]
    console.print(
        f"[bold]chatfmt benchmarks[/bold] ({meta['mode']}): {corpus_info['conversations']} conversations, "
        f"{corpus_info['messages']} messages, {corpus_info['tokens']:,} tokens, "
        f"turns {corpus_info['turns_min']}-{corpus_info['turns_max']} (mean {corpus_info['turns_mean']}), "
        f"{corpus_info['with_system_prompt']} with a system prompt, CJK share {corpus_info['cjk_char_share']:.0%}; "
        f"best of N (render {meta['repeats']['render']}, raw encode_batch {meta['repeats']['raw']}, encode {meta['repeats']['encode']}, "
        f"prefix-diff {meta['repeats']['slow']}); {meta['cpu_count']} CPUs, Python {meta['python']}; "
        f"chatfmt at {meta['git']['commit']}{' + uncommitted src changes' if meta['git']['src_dirty'] else ''}"
    )
    for group, unit, ref_name in (("render", "conv/s", "transformers"), ("encode", "tokens/s", "raw encode_batch")):
        t = Table(title=f"{group}: {unit} (ratio = best-of-N throughput / {ref_name})", title_justify="left")
        t.add_column("method")
        t.add_column(unit, justify="right")
        t.add_column("median " + unit, justify="right")
        t.add_column("spread", justify="right")
        t.add_column(f"x {ref_name}", justify="right")
        if group == "encode":
            t.add_column("CPU x raw 1 thread", justify="right")
        t.add_column("cpu/wall", justify="right")
        t.add_column("others", justify="right")
        t.add_column("target", justify="left")
        t.add_column("note", justify="left")
        for row in results[group]:
            if row.get("skipped"):
                t.add_row(row["label"], *["-"] * (7 if group == "encode" else 6), "", f"skipped: {row['skipped']}")
                continue
            tgt = row.get("target")
            tgt_s = "" if tgt is None else f"{tgt['verdict']}{'' if tgt['reliable'] else '?'} (>= {tgt['threshold']}x)"
            style = None
            if tgt:
                style = "green" if tgt["verdict"] == "PASS" else "red"
            t.add_row(
                row["label"],
                fmt_rate(row["rate"]),
                fmt_rate(row["rate_median"]),
                f"{row['spread']:.0%}",
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                *([f"{row['cpu_ratio_vs_raw_single_thread']:.2f}"] if group == "encode" else []),
                f"{row['cpu_per_wall']:.2f}",
                "-" if row["foreign_best"] is None else f"{row['foreign_best']:.2f}",
                f"[{style}]{tgt_s}[/{style}]" if style else tgt_s,
                row.get("note", ""),
            )
        console.print(t)
    sc = results.get("scaling")
    if sc:
        t = Table(
            title=f"scaling: ns per token (same {sc['total_turns_per_set']} turns cut into conversations of N turns)",
            title_justify="left",
        )
        t.add_column("method")
        for n in sc["turns"]:
            t.add_column(f"{n} turns", justify="right")
        t.add_column("80 vs 4", justify="right")
        t.add_column("target", justify="left")
        for w in sc["ways"].values():
            tgt = w.get("target")
            tgt_s = "" if tgt is None else f"{tgt['verdict']}{'' if tgt['reliable'] else '?'} (<= {tgt['threshold']}x)"
            style = None if tgt is None else ("green" if tgt["verdict"] == "PASS" else "red")
            t.add_row(
                w["label"],
                *[f"{w['ns_per_token'][str(n)]:.0f}" for n in sc["turns"]],
                f"{w['ratio_80_vs_4']:.3f}",
                f"[{style}]{tgt_s}[/{style}]" if style else tgt_s,
            )
        console.print(t)
        console.print(
            "  conversations per set: "
            + ", ".join(f"{n} turns: {sc['conversations_per_set'][str(n)]} ({sc['tokens_per_set'][str(n)]:,} tokens)" for n in sc["turns"])
        )
    starved = [r["label"] for g in ("render", "encode") for r in results[g] if r.get("starved")]
    if sc:
        starved += [f"scaling: {w['label']}" for w in sc["ways"].values() if w.get("starved")]
    if starved:
        console.print(
            f"[yellow]warning[/yellow]: the machine was busy - {len(starved)} row(s) did not get the CPU they can use in "
            f"their best sample (cpu/wall under 0.95, under 80 % of the row's best for multi-threaded rows, or other "
            f"processes using over {FOREIGN_LIMIT} of a core meanwhile): "
            f"{'; '.join(starved)}. Their wall-clock figures, and the verdicts marked '?', are not reliable; the CPU-time "
            f"column is not affected. Load average at start / end: {meta['loadavg_start']} / {meta['loadavg_end']}. "
            f"Re-run on an idle machine."
        )
    if results.get("latency"):
        report_latency(results["latency"], console)
    console.print(f"[bold]targets[/bold] (load average at start / end: {meta['loadavg_start']} / {meta['loadavg_end']})")
    for tg in results["targets"]:
        style = "green" if tg["verdict"] == "PASS" else ("red" if tg["verdict"] == "FAIL" else "yellow")
        unit = tg.get("unit", "x")
        val = "-" if tg["value"] is None else f"{tg['value']:.3f}{unit}"
        mark = "" if tg.get("reliable", True) else "?"
        console.print(f"  [{style}]{tg['verdict']}{mark}[/{style}]  {tg['name']}: {val} (target {tg['op']} {tg['threshold']}{unit})"
                      + ("" if mark == "" else "  [yellow](a row compared was starved of CPU)[/yellow]"))
    console.print("[bold]checks[/bold] (0 = identical for every conversation)")
    for name, v in results["checks"].items():
        if isinstance(v, dict):
            console.print(f"  {name}: {json.dumps(v, ensure_ascii=False)}")
        else:
            bad = v not in (0, None)
            console.print(f"  {'[red]' if bad else ''}{name}: {'-' if v is None else v}{'[/red]' if bad else ''}")


# --------------------------------------------------------------------------------------- latency

TARGET_APPEND_MS = 1.0  # appending one turn to a ~100k-token conversation: IncrementalEncoder.encode < 1 ms
TARGET_SERVE_MS = 0.5  # serve's format layer (prepare_chat: messages, render, encode) < 0.5 ms p50, warm


def _timed(fn: Callable[[], Any], before: Callable[[], Any] | None, repeats: int, *, cold: bool = False) -> dict[str, Any]:
    """``repeats`` samples of ``fn()`` (``before()`` run untimed ahead of each): wall and thread CPU
    time, in ms. Warm (the default, timeit's convention): samples back to back, the garbage
    collector off during each, after two untimed warm-up calls. ``cold=True``: a full collection
    before each ``before()``, which walks the whole heap and so flushes the CPU caches, as a
    generation does between two requests."""
    wall: list[float] = []
    cpu: list[float] = []
    if not cold:
        for _ in range(2):
            if before is not None:
                before()
            fn()
    for _ in range(repeats):
        if cold:
            gc.collect()
        if before is not None:
            before()
        gc.disable()
        try:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            fn()
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.thread_time() - c0) * 1e3)
        finally:
            gc.enable()
    return {
        "p50_ms": round(statistics.median(wall), 4),
        "best_ms": round(min(wall), 4),
        "cpu_p50_ms": round(statistics.median(cpu), 4),
        "cpu_best_ms": round(min(cpu), 4),
        "cpu_per_wall": round(statistics.median(cpu) / statistics.median(wall), 2) if statistics.median(wall) else None,
    }


def render_breakdown(fmt: Any, convs: list[Any], repeats: int = 5) -> dict[str, Any]:
    """Where a built-in render's microseconds go, per conversation (thread CPU time, best of
    ``repeats``): the general path's stages one by one (parse, validate, build the segment items,
    merge them, join the text: what every render did before the one-pass path) and the one-pass
    path of plain conversations (``fmt.render`` and ``fmt.render_segments``)."""
    from chatfmt.messages import as_conversation, validate_conversation
    from chatfmt.segments import SegmentBuilder

    parsed = [as_conversation(c, validate=False) for c in convs]
    prepared = [fmt.prepare(c, None) for c in convs]

    def build_all() -> list[Any]:
        out = []
        for conv in prepared:
            b = SegmentBuilder()
            fmt.build(conv, b, add_generation_prompt=False)
            out.append(b)
        return out

    builders = build_all()
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("general path: parse (dicts -> Message objects)", lambda: [as_conversation(c, validate=False) for c in convs]),
        ("general path: validate", lambda: [validate_conversation(c) for c in parsed]),
        ("general path: build the segment items (family builder)", build_all),
        ("general path: merge the items into segments", lambda: [b.build() for b in builders]),
        ("general path: join the text", lambda: [b.text() for b in builders]),
        ("general path, whole: fmt.render(Conversation)", lambda: [fmt.render(c) for c in prepared]),
        ("one pass: fmt.render(plain dicts) (parse, check, render)", lambda: [fmt.render(c) for c in convs]),
        ("one pass: fmt.render_segments(plain dicts)", lambda: [fmt.render_segments(c) for c in convs]),
    ]
    best = [float("inf")] * len(stages)
    for _ in range(repeats):
        for k, (_, fn) in enumerate(stages):
            gc.collect()
            c0 = time.thread_time()
            fn()
            best[k] = min(best[k], time.thread_time() - c0)
    return {name: round(b / len(convs) * 1e6, 2) for (name, _), b in zip(stages, best)}


def long_conversation(tok: Any, fmt: Any, target_tokens: int, seed: int = 2024) -> list[dict[str, Any]]:
    """A deterministic conversation of the corpus's generator with at least ``target_tokens`` tokens,
    ending with a user message."""
    import random

    from chatfmt.inference import IncrementalEncoder

    rng = random.Random(seed)
    conv = corpus_mod.conversation(rng, 1, system=True)
    enc = IncrementalEncoder(fmt, tok)
    while len(enc.encode(conv)) < target_tokens:
        conv += corpus_mod.conversation(rng, 40, system=False)
    return conv[:-1] if conv[-1]["role"] == "assistant" else conv


def run_latency(chatfmt: Any, fmt: Any, tok: Any, quick: bool, convs: list[Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Appending a turn to a ~100k-token conversation (``IncrementalEncoder.encode``), serve's format
    layer on a 130-message conversation (``prepare_chat``, warm), the render breakdown; with the
    load, cpu/wall, and the ids checked against ``fmt.encode`` of the whole conversation."""
    import random

    from chatfmt.inference import IncrementalEncoder

    repeats = 15 if quick else 41
    out: dict[str, Any] = {"loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    # (a) append one turn to a ~100k-token conversation
    hist = long_conversation(tok, fmt, 100_000)
    new = [*hist, {"role": "assistant", "content": "Sure - here is a short answer to that question."},
           {"role": "user", "content": "Thanks! One more question about the same topic, please?"}]
    enc = IncrementalEncoder(fmt, tok)
    want = fmt.encode(new, tok, add_generation_prompt=True).input_ids
    enc.encode(hist)
    got = enc.encode(new)
    stats = enc.stats
    append = _timed(lambda: enc.encode(new), lambda: enc.encode(hist), repeats)
    append["flushed"] = _timed(lambda: enc.encode(new), lambda: enc.encode(hist), repeats, cold=True)
    full = _timed(lambda: fmt.encode(new, tok, add_generation_prompt=True), None, 2 if quick else 3)
    # the tokenizer alone on the new turn's two contents: how much of a cold call is its own
    raw = tok.backend
    texts = [m["content"] for m in new[-2:]]
    append["tokenizer"] = {
        mode: _timed(lambda: [raw.encode(t, add_special_tokens=False).ids for t in texts], None, repeats, cold=mode == "flushed")
        for mode in ("warm", "flushed")
    }
    append.update(messages=len(new), tokens=len(want), ids_equal=got == want, encoded_tokens=stats.encoded_tokens,
                  reused_tokens=stats.reused_tokens, full_encode=full,
                  speedup_p50=round(full["p50_ms"] / append["p50_ms"], 1) if append["p50_ms"] else None)
    out["append"] = append
    log(f"latency: append {append}")
    # (b) serve's format layer: prepare_chat on a 130-message conversation, warm (the previous
    # request was the same conversation without its last turn, as a chat client sends them)
    try:
        from chatfmt.server import create_app
        from chatfmt.server.engines import Engine
        from chatfmt.server.wire import ChatCompletionRequest
    except ImportError as e:  # the serve extra is not installed
        out["serve"] = {"skipped": f"chatfmt.server not importable: {e}"}
    else:

        class FormatOnly(Engine):  # the format layer alone: no model behind it
            model_id = "format-only"

            def __init__(self) -> None:
                self.tokenizer, self.format = tok, fmt

            @property
            def n_ctx(self) -> int:
                return 1 << 22

            def source(self, *args: Any) -> Any:
                raise NotImplementedError

        state = create_app(FormatOnly()).state.chatfmt
        rng = random.Random(130)
        msgs = corpus_mod.conversation(rng, 66, system=True)[:128]  # system + 63 turns + a user message
        prev = ChatCompletionRequest(model="m", messages=msgs)
        # each sample is a new request body, parsed (untimed) just before it is prepared, as the
        # server parses a request and then runs the format layer on it
        bodies = [
            json.dumps({"model": "m", "messages": [*msgs, {"role": "assistant", "content": f"Answer {k}."},
                                                    {"role": "user", "content": f"And question {k}?"}]})
            for k in range(2 * repeats + 4)
        ]
        it = iter(bodies)
        current: list[Any] = []

        def before() -> None:
            state.prepare_chat(prev)  # the previous request: the same conversation without its last turn
            current[:] = [ChatCompletionRequest.model_validate_json(next(it))]

        def before_cold() -> None:
            state.prepare_chat(prev)
            gc.collect()  # what a generation does to the CPU caches, before the next request arrives
            current[:] = [ChatCompletionRequest.model_validate_json(next(it))]

        serve = _timed(lambda: state.prepare_chat(current[0]), before, repeats)
        serve["flushed"] = _timed(lambda: state.prepare_chat(current[0]), before_cold, repeats, cold=True)
        last = ChatCompletionRequest.model_validate_json(bodies[-1])
        want_s = fmt.encode([m.model_dump(exclude_none=True) for m in last.messages], tok, add_generation_prompt=True).input_ids
        state.prepare_chat(prev)
        serve.update(messages=len(last.messages), tokens=len(want_s), ids_equal=state.prepare_chat(last).ids == want_s)
        state.encoder.reset()
        serve["cold"] = _timed(lambda: state.prepare_chat(last), state.encoder.reset, max(5, repeats // 3))
        out["serve"] = serve
        log(f"latency: serve {serve}")
    out["render_breakdown_us"] = render_breakdown(fmt, convs[:2000])
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def report_latency(lat: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"latency (ms; load average {lat['loadavg_start']} -> {lat['loadavg_end']}; warm: samples back to back, "
                    "the collector off during each (timeit's convention); flushed: a full garbage collection before each, "
                    "which flushes the CPU caches as a generation does)", title_justify="left")
    for col in ("what", "p50 warm", "best", "CPU p50", "cpu/wall", "p50 flushed", "check", "target (warm p50)"):
        t.add_column(col, justify="left" if col in ("what", "check", "target (warm p50)") else "right")
    a = lat["append"]
    fl = a["flushed"]
    t.add_row(f"append one turn to a {a['tokens']:,}-token conversation ({a['messages']} messages): IncrementalEncoder.encode",
              f"{a['p50_ms']:.3f}", f"{a['best_ms']:.3f}", f"{a['cpu_p50_ms']:.3f}", f"{a['cpu_per_wall']}", f"{fl['p50_ms']:.3f}",
              f"ids equal: {a['ids_equal']}; {a['encoded_tokens']} tokens encoded", f"< {TARGET_APPEND_MS} ms")
    r = a["tokenizer"]
    t.add_row("  of which the tokenizer alone: tokenizers encode of the new turn's two contents", f"{r['warm']['p50_ms']:.3f}",
              f"{r['warm']['best_ms']:.3f}", f"{r['warm']['cpu_p50_ms']:.3f}", f"{r['warm']['cpu_per_wall']}",
              f"{r['flushed']['p50_ms']:.3f}", "reference", "")
    f = a["full_encode"]
    t.add_row("  fmt.encode of the whole conversation", f"{f['p50_ms']:.1f}", f"{f['best_ms']:.1f}", f"{f['cpu_p50_ms']:.1f}",
              f"{f['cpu_per_wall']}", "", f"append is {a['speedup_p50']}x faster (p50)", "")
    s = lat.get("serve", {})
    if "skipped" in s:
        t.add_row("serve format layer", "-", "-", "-", "-", "-", s["skipped"], "")
    elif s:
        t.add_row(f"serve format layer: prepare_chat of a parsed request, prefix seen ({s['messages']} messages, {s['tokens']:,} tokens)",
                  f"{s['p50_ms']:.3f}", f"{s['best_ms']:.3f}", f"{s['cpu_p50_ms']:.3f}", f"{s['cpu_per_wall']}",
                  f"{s['flushed']['p50_ms']:.3f}", f"ids equal: {s['ids_equal']}", f"< {TARGET_SERVE_MS} ms p50")
        c = s["cold"]
        t.add_row("  a fresh encoder (nothing seen before)", f"{c['p50_ms']:.3f}", f"{c['best_ms']:.3f}", f"{c['cpu_p50_ms']:.3f}",
                  f"{c['cpu_per_wall']}", "", "", "")
    console.print(t)
    b = Table(title="render breakdown, built-in qwen2.5: us per conversation (thread CPU time, best of 5)", title_justify="left")
    b.add_column("stage")
    b.add_column("us/conv", justify="right")
    for name, us in lat["render_breakdown_us"].items():
        b.add_row(name, f"{us:.2f}")
    console.print(b)


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a minute: 400 conversations, fewer repeats")
    ap.add_argument("--out", metavar="FILE", help="write the JSON results to FILE (default: print them)")
    ap.add_argument("--testdata", metavar="DIR", help="the test data directory (holds qwen2.5/)")
    ap.add_argument("--conversations", type=int, help="corpus size (default 2500, --quick 400)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--profile", action="store_true", help="cProfile chatfmt's built-in qwen2.5 encode path instead")
    ap.add_argument("--latency", action="store_true", help="only the latency section (append a turn, serve's format layer)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every timing sample as it is taken")
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console(stderr=False)
    if not console.is_terminal:
        console = Console(stderr=False, width=200)

    testdata = find_testdata(args.testdata)
    qwen_dir = testdata / "qwen2.5"
    needed = [qwen_dir / f for f in ("tokenizer_config.json", "vocab.json", "merges.txt")]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(f"benchmarks: test data not found ({', '.join(missing)}); nothing measured. "
              f"Pass --testdata DIR or set CHATFMT_TESTDATA.")
        return 0

    def log(msg: str) -> None:
        if args.verbose:
            print(msg, file=sys.stderr, flush=True)

    chatfmt = import_chatfmt()
    from tokenizers import Tokenizer as RawTokenizer

    quick = args.quick
    n_conv = args.conversations or (400 if quick else 2500)
    repeats = {"render": 5, "encode": 3, "raw": 5, "slow": 1}
    scaling_turns = 320 if quick else 640
    scaling_repeats = 3 if quick else 5

    load_start = [round(x, 2) for x in os.getloadavg()]
    git_info = git_state()
    t_setup = time.perf_counter()
    tok = chatfmt.load_tokenizer(qwen_dir)
    fmt = chatfmt.load_format("qwen2.5")
    jfmt = chatfmt.load_format(str(qwen_dir / "tokenizer_config.json"))
    # the physical limit: the same tokenizers.Tokenizer as chatfmt's, but matching special tokens in
    # the text (chatfmt's backend never does: content text must not yield control ids)
    raw = RawTokenizer.from_str(tok.backend.to_str())
    raw.encode_special_tokens = False
    try:
        import transformers
        from transformers import AutoTokenizer

        transformers.logging.set_verbosity_error()
        hf_tok = AutoTokenizer.from_pretrained(str(qwen_dir))
    except ImportError:
        hf_tok = None

    convs = corpus_mod.build_corpus(n_conv, seed=args.seed)
    texts = [fmt.render(c) for c in convs]
    work = Workload(convs, texts)
    warm = Workload(convs[:32], texts[:32])
    setup_s = time.perf_counter() - t_setup

    if args.profile:
        return profile(fmt, tok, raw, work, console)
    if args.latency:
        report_latency(run_latency(chatfmt, fmt, tok, quick, convs, log), console)
        return 0

    methods = build_methods(chatfmt, fmt, jfmt, tok, raw, hf_tok, repeats)
    by_key = {m.key: m for m in methods}
    print(f"benchmarks: {n_conv} conversations; timing {len(methods)} methods ...", file=sys.stderr, flush=True)
    t_run = time.perf_counter()
    run_timed(methods, work, warm, log, lambda msg: print(msg, file=sys.stderr, flush=True))
    n_tokens = sum(len(e.ids) for e in raw.encode_batch(texts, add_special_tokens=False))
    checks = run_checks(by_key, work, fmt, tok, hf_tok, n_label_check=min(200, n_conv))
    print("benchmarks: scaling ...", file=sys.stderr, flush=True)
    scaling = run_scaling(fmt, jfmt, tok, raw, hf_tok, scaling_turns, scaling_repeats, not quick, log)
    print("benchmarks: latency (append a turn, serve's format layer, render breakdown) ...", file=sys.stderr, flush=True)
    latency = run_latency(chatfmt, fmt, tok, quick, convs, log)
    run_s = time.perf_counter() - t_run

    corpus_info = corpus_mod.describe(convs)
    corpus_info["tokens"] = n_tokens
    corpus_info["rendered_chars"] = sum(len(t) for t in texts)
    corpus_info["seed"] = args.seed

    results: dict[str, Any] = {
        "meta": {
            "mode": "quick" if quick else "full",
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "versions": versions(),
            "git": git_info,
            "testdata": str(qwen_dir),
            "repeats": repeats,
            "statistic": "best of N samples, each over the whole corpus; median kept too",
            "env": {k: os.environ.get(k) for k in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")},
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "setup_s": round(setup_s, 2),
            "run_s": round(run_s, 2),
        },
        "corpus": corpus_info,
        "render": [],
        "encode": [],
    }
    ref_render = by_key["render_transformers"]
    ref_encode = by_key["raw_encode_batch"]
    targets: list[dict[str, Any]] = []

    def add_target(name: str, value: float | None, threshold: float, higher: bool, starved: bool) -> dict[str, Any]:
        tg = {"name": name, "value": None if value is None else round(value, 3), "threshold": threshold,
              "op": ">=" if higher else "<=", "verdict": verdict(value, threshold, higher),
              # a row it compares was starved of CPU: the verdict may flip on an idle machine
              "reliable": not starved}
        targets.append(tg)
        return tg

    for m in methods:
        row: dict[str, Any] = {"key": m.key, "label": m.label, "note": m.note, "informational": m.info}
        if m.skipped:
            row["skipped"] = m.skipped
            results[m.group].append(row)
            continue
        s = summarize(m.samples, m.cpu_samples, m.foreign_samples)
        units = n_conv if m.group == "render" else n_tokens
        ref = ref_render if m.group == "render" else ref_encode
        row.update(s)
        row["passes_per_sample"] = m.inner
        row["unit"] = "conversations/s" if m.group == "render" else "tokens/s"
        row["rate"] = units / s["best_s"]
        row["rate_median"] = units / s["median_s"]
        if ref.skipped or not ref.samples:
            row["ratio"] = row["ratio_median"] = None
        else:
            row["ratio"] = round(min(ref.samples) / s["best_s"], 3)
            row["ratio_median"] = round(statistics.median(ref.samples) / s["median_s"], 3)
        loop = by_key["raw_encode_loop"]
        if m.group == "encode" and loop.samples:
            # on process CPU time: both sides' own work, whatever else the machine was doing
            row["cpu_ratio_vs_raw_single_thread"] = round(min(loop.cpu_samples) / min(m.cpu_samples), 3)
        if m.key == "render_builtin":
            row["target"] = add_target("built-in render vs transformers", row["ratio"], TARGET_RENDER_BUILTIN, True,
                                       s["starved"] or is_starved(ref.samples, ref.cpu_samples, ref.foreign_samples))
        elif m.key == "render_jinja":
            row["target"] = add_target("Jinja render vs transformers", row["ratio"], TARGET_RENDER_JINJA, True,
                                       s["starved"] or is_starved(ref.samples, ref.cpu_samples, ref.foreign_samples))
        elif m.key == "encode_batch_builtin":
            row["target"] = add_target(f"{m.label} vs raw encode_batch", row["ratio"], TARGET_ENCODE_BATCH, True,
                                       s["starved"] or is_starved(ref.samples, ref.cpu_samples, ref.foreign_samples))
        elif m.key in ("encode_builtin", "encode_jinja") and "cpu_ratio_vs_raw_single_thread" in row:
            # one conversation at a time runs on one thread: its reference is the tokenizer's own
            # one-at-a-time encode, compared on CPU time (what each side costs, whatever the load)
            row["target"] = add_target(f"{m.label} vs raw single-thread encode, CPU time", row["cpu_ratio_vs_raw_single_thread"],
                                       TARGET_ENCODE, True, False)
        row["rate"] = round(row["rate"], 1)
        row["rate_median"] = round(row["rate_median"], 1)
        results[m.group].append(row)
    for key in ("encode_builtin", "encode_jinja"):
        w = scaling["ways"][key]
        w["target"] = add_target(f"{w['label']}: cost per token, 80 vs 4 turns", w["ratio_80_vs_4"], TARGET_SCALING, False,
                                 w["starved"])
    results["scaling"] = scaling
    results["latency"] = latency
    for key, name, threshold in (("append", "append one turn to a 100k-token conversation, p50 ms", TARGET_APPEND_MS),
                                 ("serve", "serve format layer (prepare_chat, warm, 130 messages), p50 ms", TARGET_SERVE_MS)):
        row = latency.get(key, {})
        if "p50_ms" in row:
            tg = add_target(name, row["p50_ms"], threshold, False, row["cpu_per_wall"] is not None and row["cpu_per_wall"] < 0.95)
            tg["unit"] = "ms"
    results["targets"] = targets
    results["checks"] = checks

    report(results, console)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.print(f"results written to {args.out}")
    else:
        console.print("[bold]JSON[/bold]")
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def profile(fmt: Any, tok: Any, raw: Any, work: Workload, console: Any) -> int:
    """cProfile the built-in qwen2.5 encode over the corpus (top functions by own and cumulative
    time), then an unprofiled breakdown of where its time goes (stages timed on their own)."""
    import cProfile
    import io
    import pstats

    for c in work.convs[:32]:
        fmt.encode(c, tok)
    t0 = time.perf_counter()
    for c in work.convs:
        fmt.encode(c, tok)
    plain = time.perf_counter() - t0
    pr = cProfile.Profile()
    pr.enable()
    for c in work.convs:
        fmt.encode(c, tok)
    pr.disable()
    console.print(f"[bold]profile[/bold]: fmt.encode (built-in qwen2.5) over {len(work.convs)} conversations; "
                  f"{plain:.3f} s unprofiled")
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).strip_dirs().sort_stats(key).print_stats(25)
        console.print(f"[bold]by {key}[/bold]")
        print(buf.getvalue())
    breakdown(fmt, tok, raw, work, console)
    return 0


def breakdown(fmt: Any, tok: Any, raw: Any, work: Workload, console: Any, repeats: int = 7) -> None:
    """Stages of the built-in encode path timed on their own, round-robin, best of ``repeats``.

    Public calls always; chatfmt internals (``chatfmt.encode``: the run-by-run path
    ``_pieces``/``encode_rendered``/``_spans`` and the whole-text path ``encode_rendered_many``/
    ``_whole_text_ready``/``_labels_from_encoding``) only where they exist, so the breakdown follows
    the code as it changes."""
    from rich.markup import escape
    from rich.table import Table

    import chatfmt
    from chatfmt import encode as em

    rendered = [fmt.render_segments(c) for c in work.convs]
    be = tok.backend
    n_tokens = sum(len(e.ids) for e in raw.encode_batch(work.texts, add_special_tokens=False))
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("fmt.encode per conversation, whole path", lambda: [fmt.encode(c, tok) for c in work.convs]),
        ("chatfmt.encode_batch(corpus), whole path", lambda: chatfmt.encode_batch(fmt, work.convs, tok)),
        ("  render_segments", lambda: [fmt.render_segments(c) for c in work.convs]),
    ]
    notes: list[str] = []
    many = getattr(em, "encode_rendered_many", None)
    if many is not None:
        stages.append(("  encode_rendered_many, one render per call (as fmt.encode)", lambda: [many([r], tok) for r in rendered]))
        stages.append(("  encode_rendered_many, all renders in one call (as encode_batch)", lambda: many(rendered, tok)))
    ready = getattr(em, "_whole_text_ready", None)
    if ready is not None:
        stages.append(("    _whole_text_ready (content scan for control text)", lambda: [ready(r, tok, False) for r in rendered]))
    whole = getattr(tok, "whole_text_backend", lambda: None)()
    from_enc = getattr(em, "_labels_from_encoding", None)
    if whole is not None:
        texts = [r.text for r in rendered]
        stages.append(("    whole-text backend.encode_batch([text]) per conversation", lambda: [whole.encode_batch([t], add_special_tokens=False)[0].ids for t in texts]))
        stages.append(("    whole-text backend.encode_batch(all texts)", lambda: [e.ids for e in whole.encode_batch(texts, add_special_tokens=False)]))
        if from_enc is not None:
            encs = whole.encode_batch(texts, add_special_tokens=False)
            stages.append(("    _labels_from_encoding (char_to_token per segment)", lambda: [from_enc(e, r) for e, r in zip(encs, rendered)]))
    else:
        notes.append("no whole-text backend on this tokenizer/code: the run-by-run path is the encode path")
    pieces_fn, enc_rendered, spans_fn = (getattr(em, n, None) for n in ("_pieces", "encode_rendered", "_spans"))
    if pieces_fn is not None and enc_rendered is not None:
        runs: list[str] = []  # the text runs the run-by-run path hands the tokenizer, in order
        for r in rendered:
            cur: list[str] = []
            for p in pieces_fn(r, tok, False):
                if p.ids is None:
                    cur.append(p.text)
                elif cur:
                    runs.append("".join(cur))
                    cur = []
            if cur:
                runs.append("".join(cur))
        stages.append(("  run-by-run path: encode_rendered (segments -> ids, labels, owners)", lambda: [enc_rendered(r, tok) for r in rendered]))
        stages.append((f"    tok.encode_text_with_offsets per run ({len(runs)} runs)", lambda: [tok.encode_text_with_offsets(t) for t in runs]))
        stages.append(("    backend.encode every run first, then .ids", lambda: [e.ids for e in [be.encode(t, add_special_tokens=False) for t in runs]]))
        if spans_fn is not None:
            owners = [enc_rendered(r, tok)[2] for r in rendered]
            stages.append(("    _spans (message spans from per-token owners)", lambda: [spans_fn(o) for o in owners]))
    stages += [
        ("ref: raw encode(rendered text) per conversation, .ids", lambda: [raw.encode(t, add_special_tokens=False).ids for t in work.texts]),
        ("ref: raw encode every conversation first, then .ids", lambda: [e.ids for e in [raw.encode(t, add_special_tokens=False) for t in work.texts]]),
        ("ref: raw encode_batch(rendered texts), .ids", lambda: [e.ids for e in raw.encode_batch(work.texts, add_special_tokens=False)]),
    ]
    for _, fn in stages:
        fn()
    best = [float("inf")] * len(stages)
    cpu = [float("inf")] * len(stages)
    for _ in range(repeats):
        for k, (_, fn) in enumerate(stages):
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
            cpu[k] = min(cpu[k], time.process_time() - c0)
    total = best[0]
    t = Table(title=f"breakdown: {len(work.convs)} conversations, {n_tokens:,} tokens (best of {repeats}, round-robin; "
                    f"% of fmt.encode per conversation)", title_justify="left")
    t.add_column("stage")
    t.add_column("ms", justify="right")
    t.add_column("CPU ms", justify="right")
    t.add_column("% of fmt.encode", justify="right")
    t.add_column("tokens/s", justify="right")
    for (name, _), b, c in zip(stages, best, cpu):
        t.add_row(escape(name), f"{b * 1000:.1f}", f"{c * 1000:.1f}", f"{b / total:.0%}", fmt_rate(n_tokens / b))
    console.print(t)
    for n in notes:
        console.print(f"  {n}")


if __name__ == "__main__":
    sys.exit(main())
