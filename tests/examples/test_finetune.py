"""examples/finetune: the generated data fits SmolLM2 in the example's format (fast), and the real
fine-tune teaches SmolLM2-135M-Instruct to call the weather tool on held-out questions (slow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import IGNORE_INDEX

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"finetune_{name}", EXAMPLE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLE))  # run.py imports make_data
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(EXAMPLE))
    return mod


make_data = _module("make_data")


def test_generated_data_is_the_same_for_the_same_seed_and_keeps_held_out_items_out(tmp_path):
    a, b = make_data.write(tmp_path / "a", records=60), make_data.write(tmp_path / "b", records=60)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()
    train = a["train.jsonl"].read_text(encoding="utf-8")
    for city in make_data.HELDOUT_CITIES:
        assert city not in train
    for country in make_data.HELDOUT_CAPITALS:
        assert country not in train
    heldout = json.loads(a["heldout.json"].read_text(encoding="utf-8"))
    assert {q["expect"] for q in heldout if q["expect"]} == set(make_data.HELDOUT_CITIES)
    assert any(q["expect"] is None for q in heldout)


def test_every_record_encodes_with_smollm2_and_trains_the_tool_calls(tmp_path, smollm2_gguf):
    paths = make_data.write(tmp_path, records=80)
    fmt = chatfmt.load_format(EXAMPLE / "chatml-tools.toml")
    tok = chatfmt.load_tokenizer(smollm2_gguf)  # the format fits: it relies only on <|im_start|>/<|im_end|>
    calls = untrained = 0
    for line in paths["train.jsonl"].read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        conv = chatfmt.messages.parse_record(record)
        enc = fmt.encode(conv.messages, tok, tools=conv.tools)
        trained = tok.decode([i for i, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX])
        for m in conv.messages:
            for call in m.tool_calls or []:
                calls += 1
                assert f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{call.arguments["city"]}"}}}}</tool_call>' in trained
        for m in record["conversations"]:
            if m.get("loss") is False:
                untrained += 1
                assert m["content"] not in trained
    assert calls > 20 and untrained > 0


def test_prepared_rows_are_packed_for_trls_padding_free_collator(tmp_path, smollm2_gguf):
    from chatfmt.train import prepare

    datasets = pytest.importorskip("datasets")
    paths = make_data.write(tmp_path, records=40)
    out = tmp_path / "train.parquet"
    report = prepare(paths["train.jsonl"], chatfmt.load_format(EXAMPLE / "chatml-tools.toml"), chatfmt.load_tokenizer(smollm2_gguf), out, pack=1024)
    assert report.read == report.written == 40
    rows = list(datasets.load_dataset("parquet", data_files=str(out), split="train"))
    assert all(len(r["input_ids"]) <= 1024 and sum(r["seq_lengths"]) == len(r["input_ids"]) for r in rows)
    assert sum(len(r["seq_lengths"]) for r in rows) == 40


@pytest.mark.slow
@pytest.mark.finetune
def test_fine_tuned_smollm2_calls_the_weather_tool_on_held_out_questions(tmp_path, smollm2_gguf):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    pytest.importorskip("openai")
    pytest.importorskip("matplotlib")
    run = _module("run")
    summary = run.main(["--out", str(tmp_path / "ft")])
    # the held-out questions: weather in cities never trained on (a get_weather call naming the city),
    # and other questions (answered in text, no call); through chatfmt serve + the openai client
    # (measured with 16 steps: 50% -> 79%, weather calls 0/12 -> 8/12; the default is 24 steps)
    assert summary["success_after"] >= 0.75
    assert summary["success_after"] >= summary["success_before"] + 0.25
    weather_before, _ = map(int, summary["weather_calls_before"].split("/"))
    weather_after, n = map(int, summary["weather_calls_after"].split("/"))
    assert weather_after >= 2 * n / 3 and weather_before < n / 4
    assert summary["chat_cli_after_ok"]  # chatfmt chat --model DIR -p ... --json: the call, parsed
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    assert (tmp_path / "ft" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved model is a plain transformers directory with the format's template
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "ft" / "tuned")
    messages = [{"role": "user", "content": "hi"}]
    fmt = chatfmt.load_format(EXAMPLE / "chatml-tools.toml")
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == fmt.render(messages, add_generation_prompt=True)
