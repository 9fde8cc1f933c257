"""A real fine-tune, end to end, on CPU: teach SmolLM2-135M-Instruct to answer weather questions with
a tool call (and other questions in plain text), then ask it held-out questions before and after.

    python examples/finetune/run.py [--out build/finetune] [--max-steps 24] [--records 300]

1. ``make_data.py`` writes the records (``conversations`` + ``tools`` + ``loss``) and held-out questions.
2. The base model: SmolLM2-135M-Instruct's GGUF (``python -m chatfmt.models``) loaded with transformers
   and saved as a model directory, its chat template exported from ``chatml-tools.toml``
   (``chatfmt export --to jinja``), so that transformers, ``chatfmt chat`` and ``chatfmt serve`` all
   render the format the data is prepared in.
3. ``chatfmt prepare`` -> Parquet, packed (``seq_lengths`` + per-example ``position_ids``).
4. Before: the held-out questions through ``chatfmt serve`` and the ``openai`` client (tool calls
   parsed by chatfmt's parser), and one through ``chatfmt chat --model DIR -p ... --json``.
5. TRL ``SFTTrainer`` (padding-free, LoRA through ``peft``) on the prepared ids and labels; the
   adapter merged and the model saved as a directory transformers loads.
6. After: step 4 again on the saved model. The loss curve goes to ``OUT/loss.png``, the figures to
   ``OUT/summary.json`` and stdout.

Everything runs on the CPU; the GGUF conversion (step 2) is cached in ``OUT/base``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMAT = HERE / "chatml-tools.toml"
sys.path.insert(0, str(HERE))
import make_data  # noqa: E402

BIN = Path(sys.executable).parent
# generation with a 135M model is many small operations: one torch thread each for the server and the
# CLI is faster than two threads waiting for each other on a busy machine (and leaves a core free)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
CHATFMT = [str(BIN / "chatfmt")] if (BIN / "chatfmt").exists() else [sys.executable, "-m", "chatfmt.cli"]


def log(msg: str) -> None:
    print(f"[finetune {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Phase:
    """Wall and CPU seconds of a step, collected into ``timings``."""

    def __init__(self, timings: dict, name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.wall, self.cpu = time.monotonic(), cpu_seconds()
        log(f"{self.name} ...")
        return self

    def __exit__(self, *exc):
        wall, cpu = time.monotonic() - self.wall, cpu_seconds() - self.cpu
        self.timings[self.name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        log(f"{self.name}: {wall:.0f} s wall, {cpu:.0f} s CPU")


# -- the base model ----------------------------------------------------------------------------------


def gguf_path() -> Path:
    from chatfmt.models import default_model_path

    path = Path(default_model_path())
    if not path.is_file():
        raise SystemExit(f"{path} not found: fetch it with `python -m chatfmt.models`")
    return path


def export_template(model_dir: Path) -> None:
    """The format's chat template, where transformers and chatfmt look for it in a model directory."""
    subprocess.run([*CHATFMT, "export", str(FORMAT), "--to", "jinja", "-o", str(model_dir / "chat_template.jinja")], check=True)


def base_model(out: Path) -> Path:
    """SmolLM2-135M-Instruct as a transformers model directory (from its GGUF; cached)."""
    base = out / "base"
    if (base / "model.safetensors").is_file():
        export_template(base)
        return base
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    tmp = out / "base.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the weights are dequantized to float32 on load: a plain model from here on (transformers would
    # otherwise refuse to save it as "quantized with gguf")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    export_template(tmp)
    tmp.rename(base)
    return base


# -- asking the model ----------------------------------------------------------------------------------


def judge(expect: str | None, tool_calls: list[dict], content: str) -> bool:
    """A weather question: exactly one get_weather call naming the city. Any other: text, no call."""
    if expect is None:
        return not tool_calls and bool(content.strip())
    if len(tool_calls) != 1 or tool_calls[0]["name"] != "get_weather":
        return False
    try:
        args = json.loads(tool_calls[0]["arguments"])
    except (TypeError, ValueError):
        return False
    return isinstance(args, dict) and args.get("city") == expect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask_served(model_dir: Path, questions: list[dict], tools: list[dict], max_tokens: int) -> list[dict]:
    """Every question through ``chatfmt serve`` and the official ``openai`` client, greedy."""
    from openai import OpenAI

    port = _free_port()
    cmd = [*CHATFMT, "serve", "--model", str(model_dir), "--backend", "transformers", "--port", str(port), "--quiet"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise SystemExit(f"chatfmt serve exited {server.returncode}: {server.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("chatfmt serve did not come up in 600 s") from None
                time.sleep(1)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        model = client.models.list().data[0].id  # the served model's name (its directory's)
        openai_tools = [{"type": "function", "function": t} for t in tools]
        results = []
        for q in questions:
            r = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": make_data.SYSTEM}, {"role": "user", "content": q["question"]}],
                tools=openai_tools,
                temperature=0,
                max_tokens=max_tokens,
            )
            msg = r.choices[0].message
            calls = [{"name": c.function.name, "arguments": c.function.arguments} for c in msg.tool_calls or []]
            results.append({**q, "content": msg.content or "", "tool_calls": calls, "ok": judge(q["expect"], calls, msg.content or "")})
        return results
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def ask_cli(model_dir: Path, question: dict, tools_file: Path, max_tokens: int) -> dict:
    """One question through ``chatfmt chat --model DIR -p ... --json``."""
    cmd = [*CHATFMT, "chat", "--model", str(model_dir), "--backend", "transformers", "--system", make_data.SYSTEM,
           "--tools", str(tools_file), "--temperature", "0", "--max-new-tokens", str(max_tokens), "--json", "-p", question["question"]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ONE_THREAD)
    reply = json.loads(out.stdout)
    calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in reply.get("tool_calls") or []]
    return {**question, "content": reply.get("content") or "", "tool_calls": calls, "ok": judge(question["expect"], calls, reply.get("content") or "")}


def score(results: list[dict]) -> dict:
    weather = [r["ok"] for r in results if r["expect"] is not None]
    plain = [r["ok"] for r in results if r["expect"] is None]
    return {
        "success": sum(r["ok"] for r in results) / len(results),
        "weather_calls": f"{sum(weather)}/{len(weather)}",
        "plain_answers": f"{sum(plain)}/{len(plain)}",
    }


def evaluate(label: str, model_dir: Path, data: dict, max_tokens: int) -> dict:
    questions = json.loads(data["heldout.json"].read_text(encoding="utf-8"))
    tools = json.loads(data["tools.json"].read_text(encoding="utf-8"))
    served = ask_served(model_dir, questions, tools, max_tokens)
    cli = ask_cli(model_dir, questions[0], data["tools.json"], max_tokens)
    for r in served:
        shown = "; ".join(f"{c['name']}({c['arguments']})" for c in r["tool_calls"]) or repr(r["content"][:70])
        log(f"  {label} {'ok ' if r['ok'] else 'BAD'} {r['question']!r} -> {shown}")
    log(f"  {label} chatfmt chat -p {cli['question']!r} -> {cli['tool_calls'] or repr(cli['content'][:70])}")
    return {"served": served, "chat_cli": cli, **score(served)}


# -- training ------------------------------------------------------------------------------------------


def prepare(data: dict, base: Path, out: Path, pack: int) -> tuple[Path, Path]:
    train, evals = out / "train.parquet", out / "eval.parquet"
    common = ["-f", str(FORMAT), "-t", str(base), "--max-length", str(pack), "--truncation", "skip", "-q"]
    subprocess.run([*CHATFMT, "prepare", str(data["train.jsonl"]), "-o", str(train), "--pack", str(pack),
                    "--report", str(out / "train.report.json"), *common], check=True)
    subprocess.run([*CHATFMT, "prepare", str(data["eval.jsonl"]), "-o", str(evals), *common], check=True)
    return train, evals


def train(base: Path, train_file: Path, eval_file: Path, tuned: Path, args) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    n_layers = model.config.num_hidden_layers
    lora = LoraConfig(
        r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        # the top layers only: the backward pass stops there, which is most of the saving on a CPU
        layers_to_transform=list(range(n_layers - args.lora_layers, n_layers)), task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    keep = ["input_ids", "labels", "seq_lengths", "position_ids"]
    ds = load_dataset("parquet", data_files=str(train_file), split="train")
    ds = ds.remove_columns([c for c in ds.column_names if c not in keep]).shuffle(seed=args.seed)
    ev = load_dataset("parquet", data_files=str(eval_file), split="train")
    ev = ev.remove_columns([c for c in ev.column_names if c not in keep])
    config = SFTConfig(
        output_dir=str(tuned.parent / "checkpoints"), max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2, learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=2,
        logging_steps=1, save_strategy="no", report_to=[], dataset_kwargs={"skip_prepare_dataset": True},
        # the rows are chatfmt's packed rows, at most --pack tokens: TRL's padding-free collator joins a
        # batch into one sequence and transformers keeps attention inside each example (position_ids)
        padding_free=True, max_length=None,
        activation_checkpointing=False,  # recomputing activations costs a third more CPU; 135M fits
        bf16=False,  # TRL's default; bf16 autocast on a CPU without AVX512-BF16/AMX is several times slower
        use_cpu=True, seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, eval_dataset=ev, processing_class=tok)
    loss_before = trainer.evaluate()["eval_loss"]
    log(f"eval loss before: {loss_before:.3f}")
    t0, c0 = time.monotonic(), cpu_seconds()
    trainer.train()
    train_wall, train_cpu = time.monotonic() - t0, cpu_seconds() - c0
    loss_after = trainer.evaluate()["eval_loss"]
    log(f"eval loss after: {loss_after:.3f}")
    curve = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    merged = trainer.model.merge_and_unload()
    tmp = tuned.with_name(tuned.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    export_template(tmp)
    shutil.rmtree(tuned, ignore_errors=True)
    tmp.rename(tuned)
    return {
        "steps": trainer.state.global_step, "train_rows": len(ds), "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1), "eval_loss_before": loss_before, "eval_loss_after": loss_after,
        "train_loss_first": curve[0][1] if curve else None, "train_loss_last": curve[-1][1] if curve else None,
        "curve": curve,
    }


def plot(curve: list, before: float, after: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([s for s, _ in curve], [x for _, x in curve], marker=".", label="training loss (per step)")
    last = curve[-1][0] if curve else 1
    ax.scatter([0, last], [before, after], color="tab:red", zorder=3, label="held-out eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (trained tokens)")
    ax.set_title("SmolLM2-135M-Instruct, LoRA: weather tool calls")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="Fine-tune SmolLM2-135M-Instruct to call a weather tool (CPU).")
    ap.add_argument("--out", type=Path, default=Path("build/finetune"))
    ap.add_argument("--records", type=int, default=300, help="training records generated")
    ap.add_argument("--eval-records", type=int, default=8, help="held-out records for the eval loss")
    ap.add_argument("--max-steps", type=int, default=24, help="optimizer steps")
    ap.add_argument("--pack", type=int, default=512, help="tokens per packed row at most")
    ap.add_argument("--batch-size", type=int, default=2, help="packed rows per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-layers", type=int, default=12, help="LoRA on this many top layers")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # the trainer's per-step lines as they come

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wall0, cpu0, load0 = time.monotonic(), cpu_seconds(), os.getloadavg()
    timings: dict = {}
    with Phase(timings, "data"):
        data = make_data.write(out / "data", records=args.records, eval_records=args.eval_records, seed=args.seed)
    with Phase(timings, "base model"):
        base = base_model(out)
    with Phase(timings, "prepare"):
        train_file, eval_file = prepare(data, base, out, args.pack)
    with Phase(timings, "before"):
        # the base model's answers depend only on it and the questions: kept in OUT/before.json
        key = hashlib.sha256(b"".join(p.read_bytes() for p in (base / "model.safetensors", base / "chat_template.jinja",
                                                               data["heldout.json"], data["tools.json"]))).hexdigest()
        key += f":{args.max_new_tokens}"
        cached = out / "before.json"
        before = json.loads(cached.read_text(encoding="utf-8")) if cached.is_file() else {}
        if before.get("key") != key:
            before = {"key": key, **evaluate("before", base, data, args.max_new_tokens)}
            cached.write_text(json.dumps(before, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        else:
            log("  before: the base model's answers from OUT/before.json (same model, questions and settings)")
    with Phase(timings, "train"):
        fit = train(base, train_file, eval_file, out / "tuned", args)
    with Phase(timings, "after"):
        after = evaluate("after", out / "tuned", data, args.max_new_tokens)
    plot(fit["curve"], fit["eval_loss_before"], fit["eval_loss_after"], out / "loss.png")

    report = json.loads((out / "train.report.json").read_text(encoding="utf-8"))
    summary = {
        "steps": fit["steps"], "train_rows": fit["train_rows"], "records": args.records,
        "prepared_tokens": report.get("tokens_total", report.get("tokens")), "pack": args.pack,
        "train_minutes": round(fit["train_wall_s"] / 60, 2), "train_cpu_minutes": round(fit["train_cpu_s"] / 60, 2),
        "total_minutes": round((time.monotonic() - wall0) / 60, 2), "total_cpu_minutes": round((cpu_seconds() - cpu0) / 60, 2),
        "eval_loss_before": round(fit["eval_loss_before"], 3), "eval_loss_after": round(fit["eval_loss_after"], 3),
        "train_loss_first": fit["train_loss_first"], "train_loss_last": fit["train_loss_last"],
        "success_before": before["success"], "success_after": after["success"],
        "weather_calls_before": before["weather_calls"], "weather_calls_after": after["weather_calls"],
        "plain_answers_before": before["plain_answers"], "plain_answers_after": after["plain_answers"],
        "chat_cli_before_ok": before["chat_cli"]["ok"], "chat_cli_after_ok": after["chat_cli"]["ok"],
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(), "timings": timings, "model_dir": str(out / "tuned"), "loss_png": str(out / "loss.png"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    (out / "summary.json").write_text(json.dumps({**summary, "before": before, "after": after, "curve": fit["curve"]},
                                                 ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print()
    print(f"steps {summary['steps']} x {args.batch_size} packed rows of <= {args.pack} tokens ({summary['train_rows']} rows from {args.records} records)")
    print(f"training {summary['train_minutes']} min wall, {summary['train_cpu_minutes']} min CPU; "
          f"everything {summary['total_minutes']} min wall, {summary['total_cpu_minutes']} min CPU "
          f"(load average {summary['loadavg_start'][0]} -> {summary['loadavg_end'][0]} on {summary['cores']} cores)")
    print(f"held-out eval loss {summary['eval_loss_before']} -> {summary['eval_loss_after']}; "
          f"training loss {summary['train_loss_first']} -> {summary['train_loss_last']}")
    print(f"held-out success {before['success']:.0%} -> {after['success']:.0%} "
          f"(weather tool calls {before['weather_calls']} -> {after['weather_calls']}, "
          f"plain answers {before['plain_answers']} -> {after['plain_answers']})")
    print(f"model: {summary['model_dir']}   loss curve: {summary['loss_png']}   figures: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
