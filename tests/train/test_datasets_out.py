"""Prepared data as ``datasets`` objects and ``save_to_disk`` directories, read by the trainers as
they are: TRL's SFTTrainer (pre-tokenized: its labels are chatfmt's), transformers' stock collator,
``load_from_disk`` (LLaMA-Factory's ``tokenized_path`` layout)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.encode import IGNORE_INDEX
from chatfmt.train import dataset_map_function, prepare
from chatfmt.train.datasets_out import prepare_dataset
from chatfmt.train.pipeline import OutputError

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

RECORDS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
                  {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Red.", "weight": 0}]},
    {"conversations": [{"from": "human", "value": "ping <|im_end|>"}, {"from": "gpt", "value": "pong"}]},
    {"messages": [{"role": "wizard", "content": "rejected"}]},
    {"prompt": "Capital of France?", "response": "Paris."},
]
GOOD = [r for r in RECORDS if "wizard" not in json.dumps(r)]


@pytest.fixture(scope="module")
def qwen_dir(testdata):
    return testdata("qwen2.5")


@pytest.fixture(scope="module")
def hf_tok(qwen_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(qwen_dir))


@pytest.fixture()
def inputs(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def _parquet_rows(inputs, qwen_dir, tmp_path, **kw):
    out = tmp_path / "ref.parquet"
    prepare(inputs, "qwen2.5", qwen_dir, out, **kw)
    return list(datasets.Dataset.from_parquet(str(out)))


def test_prepare_dataset_returns_the_rows_prepare_writes_with_the_trainer_columns(inputs, qwen_dir, tmp_path):
    with pytest.warns(chatfmt.errors.ChatfmtWarning, match=r"train: 1 of 5 records rejected \(role: 1\)"):
        ds = prepare_dataset(inputs, "qwen2.5", qwen_dir)
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["input_ids", "labels", "attention_mask", "length"]
    ref = _parquet_rows(inputs, qwen_dir, tmp_path)
    assert [{k: r[k] for k in ds.column_names} for r in ref] == list(ds)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work directory left


def test_arrow_output_is_a_dataset_dict_load_from_disk_reads_and_rejects_go_beside_it(inputs, qwen_dir, tmp_path):
    out = tmp_path / "tokenized"
    res = CliRunner().invoke(app, ["prepare", str(inputs), "-f", "qwen2.5", "-t", str(qwen_dir), "-o", str(out),
                                   "--output-format", "arrow"])
    assert res.exit_code == 0, res.output
    dd = datasets.load_from_disk(str(out))
    assert isinstance(dd, datasets.DatasetDict) and list(dd) == ["train"]  # LLaMA-Factory's tokenized_path layout
    assert list(dd["train"]) == [{k: r[k] for k in dd["train"].column_names} for r in _parquet_rows(inputs, qwen_dir, tmp_path)]
    rejects = [json.loads(x) for x in (tmp_path / "tokenized.rejects.jsonl").read_text("utf-8").splitlines()]
    assert [(r["record"], r["rule"]) for r in rejects] == [(4, "role")]
    # a second run replaces it; nothing else is left in the directory
    report = prepare(inputs, "qwen2.5", qwen_dir, out, output_format="arrow", max_length=20, truncation="right")
    assert report.output == str(out) and report.written == len(datasets.load_from_disk(str(out))["train"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "ref.parquet", "ref.parquet.rejects.jsonl",
                                                         "tokenized", "tokenized.rejects.jsonl"]


def test_arrow_output_does_not_replace_a_directory_it_did_not_write(inputs, qwen_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(OutputError, match="not a datasets save_to_disk output is there; it is not replaced"):
        prepare(inputs, "qwen2.5", qwen_dir, mine, output_format="arrow")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(OutputError, match="does not exist"):
        prepare(inputs, "qwen2.5", qwen_dir, tmp_path / "no" / "where", output_format="arrow")


def test_eval_inputs_make_train_and_validation_splits_saved_to_disk(inputs, qwen_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", chatfmt.errors.ChatfmtWarning)
        dd, reports = prepare_dataset(inputs, "qwen2.5", qwen_dir, eval_inputs=inputs, output=tmp_path / "dd",
                                      pack=64, return_report=True)
    assert list(dd) == ["train", "validation"] and set(reports) == {"train", "validation"}
    assert list(datasets.load_from_disk(str(tmp_path / "dd"))) == ["train", "validation"]
    row = dd["train"][0]
    assert set(dd["train"].column_names) == {"input_ids", "labels", "attention_mask", "position_ids", "seq_lengths", "length"}
    assert sum(row["seq_lengths"]) == len(row["input_ids"]) == row["length"]
    assert reports["train"].written == 4 and reports["train"].packed_sequences == len(dd["train"])


def _tiny_model(tok):
    torch = pytest.importorskip("torch")
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def _sft(tok, ds, tmp_path, **cfg):
    trl = pytest.importorskip("trl")
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), report_to=[], use_cpu=True, max_steps=1,
                         per_device_train_batch_size=2, **cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trl.SFTTrainer(model=_tiny_model(tok), processing_class=tok, train_dataset=ds, args=args)


def test_trl_sft_takes_a_prepared_dataset_as_it_is_and_trains_on_chatfmts_labels(inputs, qwen_dir, hf_tok, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", chatfmt.errors.ChatfmtWarning)
        ds = prepare_dataset(inputs, "qwen2.5", qwen_dir)
    trainer = _sft(hf_tok, ds, tmp_path)
    kept = list(trainer.train_dataset)
    assert [r["input_ids"] for r in kept] == ds["input_ids"]
    assert [r["labels"] for r in kept] == ds["labels"]  # not rebuilt, not all-trained
    fmt, tok = chatfmt.load_format("qwen2.5"), chatfmt.load_tokenizer(qwen_dir)
    last = chatfmt.messages.parse_record(GOOD[-1])
    assert kept[-1]["labels"] == fmt.encode(last, tok).labels
    assert trainer.train().training_loss > 0


def test_trl_sft_takes_dataset_map_function_rows_and_keeps_their_labels(qwen_dir, hf_tok, tmp_path):
    raw = datasets.Dataset.from_list([{"messages": r["messages"]} for r in GOOD if "messages" in r])
    fn = dataset_map_function("qwen2.5", str(qwen_dir))
    ds = raw.map(fn, batched=True, remove_columns=raw.column_names)
    trainer = _sft(hf_tok, ds, tmp_path)
    assert [r["labels"] for r in trainer.train_dataset] == ds["labels"]
    assert any(x != IGNORE_INDEX for r in trainer.train_dataset for x in r["labels"])


def test_transformers_stock_collator_takes_every_column_of_the_arrow_layout(inputs, qwen_dir, hf_tok, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", chatfmt.errors.ChatfmtWarning)
        ds = prepare_dataset(inputs, "qwen2.5", qwen_dir)
    collator = transformers.DataCollatorForSeq2Seq(hf_tok, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator([ds[i] for i in range(len(ds))])  # remove_unused_columns=False: all columns reach it
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for i, row in enumerate(ds):
        n = row["length"]
        assert batch["labels"][i, :n].tolist() == row["labels"] and (batch["labels"][i, n:] == IGNORE_INDEX).all()


def test_trl_padding_free_trains_on_packed_rows_from_prepare_dataset(inputs, qwen_dir, hf_tok, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", chatfmt.errors.ChatfmtWarning)
        ds = prepare_dataset(inputs, "qwen2.5", qwen_dir, pack=96)
    trainer = _sft(hf_tok, ds, tmp_path, padding_free=True, max_length=None)
    rows = list(trainer.train_dataset)
    assert [r["seq_lengths"] for r in rows] == ds["seq_lengths"] and [r["labels"] for r in rows] == ds["labels"]
    batch = trainer.data_collator([{k: r[k] for k in ("input_ids", "labels", "seq_lengths")} for r in rows])
    starts = [0]
    for r in rows:
        for n in r["seq_lengths"]:
            starts.append(starts[-1] + n)
    assert batch["cu_seq_lens_q"].tolist() == starts
