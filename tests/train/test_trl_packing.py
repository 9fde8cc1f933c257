"""Packed ``chatfmt prepare`` output read by TRL's own padding-free collator: the sequence boundaries
it derives (position_ids restarts, cu_seq_lens) are chatfmt's examples, and its labels are
chatfmt's labels, the first token of every packed example untrained."""

from __future__ import annotations

import json
from itertools import accumulate
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import IGNORE_INDEX
from chatfmt.train import prepare

torch = pytest.importorskip("torch")
trl_sft = pytest.importorskip("trl.trainer.sft_trainer")
datasets = pytest.importorskip("datasets")
Collator = trl_sft.DataCollatorForLanguageModeling


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str, **kw) -> dict:
    return {"role": "assistant", "content": text, **kw}


RECORDS = [
    {"messages": [{"role": "system", "content": "Be brief."}, U("What is 2+2?"), A("4")]},
    {"messages": [U("Name a colour."), A("Blue, like the sky."), U("Another?"), A("Red.")]},
    {"messages": [U("Say hi in Chinese."), A("你好！👋")]},
    {"conversations": [{"from": "human", "value": "ping"}, {"from": "gpt", "value": "pong"}]},
    {"messages": [U("Count to three."), A("1, 2, 3", weight=1), U("Backwards?"), A("3, 2, 1", weight=0)]},
    {"prompt": "Capital of France?", "response": "Paris."},
    {"messages": [U("  spaces  "), A("\tkept\t")]},
]


@pytest.fixture(scope="module", params=["qwen2.5", "smollm2"])
def pair(request, testdata, shared_tokenizer):
    if request.param == "qwen2.5":
        return chatfmt.load_format("qwen2.5"), shared_tokenizer(testdata("qwen2.5"))
    gguf = request.getfixturevalue("smollm2_gguf")
    return chatfmt.load_format(gguf), shared_tokenizer(gguf)


def _write_inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS * 3), encoding="utf-8")
    return path


def _load(path: Path) -> list[dict]:
    kind = "parquet" if path.suffix == ".parquet" else "json"
    return list(datasets.load_dataset(kind, data_files=str(path), split="train"))


@pytest.mark.parametrize("ext", ["parquet", "jsonl"])
def test_trl_padding_free_collator_sees_chatfmts_examples_and_labels(pair, tmp_path, ext):
    fmt, tok = pair
    inp = _write_inputs(tmp_path)
    plain, packed = tmp_path / f"plain.{ext}", tmp_path / f"packed.{ext}"
    prepare(inp, fmt, tok, plain)
    report = prepare(inp, fmt, tok, packed, pack=96)
    examples, rows = _load(plain), _load(packed)
    assert report.written == len(examples) == len(RECORDS) * 3 and 1 < len(rows) < len(examples)
    assert "seq_lengths" in rows[0] and "seq_lens" not in rows[0]

    # what TRL's SFTTrainer keeps of a dataset (its signature columns), through its own collator
    batch = Collator(pad_token_id=0, padding_free=True)(
        [{k: row[k] for k in ("input_ids", "labels", "seq_lengths")} for row in rows]
    )

    lengths = [len(e["input_ids"]) for e in examples]
    boundaries = [0, *accumulate(lengths)]
    assert batch["cu_seq_lens_q"].tolist() == boundaries
    assert batch["position_ids"][0].tolist() == [p for row in rows for p in row["position_ids"]]
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == boundaries[:-1]
    # transformers derives the same boundaries from the position_ids (its flash-attention path)
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    (cu_q, _), _ = prepare_fa_kwargs_from_position_ids(batch["position_ids"])
    assert cu_q.tolist() == boundaries

    # labels: TRL's are chatfmt's, and each example's are its unpacked labels but for the first
    labels = batch["labels"][0].tolist()
    assert labels == [x for row in rows for x in row["labels"]]
    for e, a, b in zip(examples, boundaries, boundaries[1:]):
        assert labels[a] == IGNORE_INDEX
        assert labels[a + 1 : b] == e["labels"][1:]
        assert batch["input_ids"][0, a:b].tolist() == e["input_ids"]
    # something is trained in every example (weight 0 turns off one reply, not the record)
    assert all(any(x != IGNORE_INDEX for x in labels[a:b]) for a, b in zip(boundaries, boundaries[1:]))


def test_the_old_seq_lens_column_would_let_trl_attend_across_examples(pair, tmp_path):
    # why the column is named seq_lengths: under any other name TRL treats a packed row as one sequence
    fmt, tok = pair
    packed = tmp_path / "packed.jsonl"
    prepare(_write_inputs(tmp_path), fmt, tok, packed, pack=96)
    rows = _load(packed)
    renamed = [{"input_ids": r["input_ids"], "labels": r["labels"], "seq_lens": r["seq_lengths"]} for r in rows]
    batch = Collator(pad_token_id=0, padding_free=True)(renamed)
    assert batch["cu_seq_lens_q"].tolist() == [0, *accumulate(len(r["input_ids"]) for r in rows)]
    assert len(batch["cu_seq_lens_q"]) - 1 == len(rows) < sum(len(r["seq_lengths"]) for r in rows)


def test_inspect_reads_packed_rows_by_the_new_and_the_old_column_name(pair, tmp_path):
    from chatfmt.train.inspect import row_view

    fmt, tok = pair
    packed = tmp_path / "packed.jsonl"
    prepare(_write_inputs(tmp_path), fmt, tok, packed, pack=96)
    row = _load(packed)[0]
    old = {("seq_lens" if k == "seq_lengths" else k): v for k, v in row.items()}
    for r in (row, old):
        view = row_view(r, 0, tok)
        assert view.packed and [len(s.tokens) for s in view.sequences] == row["seq_lengths"]
