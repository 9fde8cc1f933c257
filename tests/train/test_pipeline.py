"""The local prepare engine: every record is written or rejected (with its file, record number and
rule), rows equal ``encode_batch`` on the same records, output appears atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import LengthError, encode_batch
from chatfmt.errors import ValidationError
from chatfmt.messages import parse_record
from chatfmt.train import InputError, prepare, read_records

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives in <repo>/../shared/testdata)")
    return path


@pytest.fixture(scope="module")
def qwen_tok():
    return chatfmt.load_tokenizer(need(TD / "qwen2.5"))


@pytest.fixture(scope="module")
def qwen_fmt():
    return chatfmt.load_format("qwen2.5")


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str) -> dict:
    return {"role": "assistant", "content": text}


RECORDS_BY_KIND = {
    "openai": {"messages": [{"role": "system", "content": "Be brief."}, U("hi"), A("hello")]},
    "conversations": {"conversations": [U("q1"), A("a1") | {"loss": False}, U("q2"), A("a2")]},
    "prompt_response": {"prompt": "2+2?", "response": "4", "history": [["1+1?", "2"]]},
    "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]},
    "alpaca": {"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "Translator."},
}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_rows(fmt, tok, records, **kw) -> list[dict]:
    encs = encode_batch(fmt, [parse_record(r) for r in records], tok, **kw)
    return [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": e.attention_mask,
             "length": len(e.input_ids)} for e in encs]


def strip_origin(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("source", "record")} for r in rows]


@pytest.mark.parametrize("kind", sorted(RECORDS_BY_KIND))
def test_each_input_kind_is_written_as_encode_batch_encodes_it(tmp_path, qwen_fmt, qwen_tok, kind):
    rec = RECORDS_BY_KIND[kind]
    src = write_jsonl(tmp_path / f"{kind}.jsonl", [rec])
    out = tmp_path / "out.jsonl"
    report = prepare([src], qwen_fmt, qwen_tok, out, input_kind=kind)
    assert (report.read, report.written, report.rejected) == (1, 1, 0)
    rows = read_jsonl(out)
    assert strip_origin(rows) == expected_rows(qwen_fmt, qwen_tok, [rec])
    assert (rows[0]["source"], rows[0]["record"]) == (str(src), 1)
    assert report.tokens_total == rows[0]["length"]
    assert report.tokens_trained == sum(1 for x in rows[0]["labels"] if x != -100) > 0
    assert (tmp_path / "out.jsonl.rejects.jsonl").read_text() == ""


LONG = "The quick brown fox jumps over the lazy dog. " * 40

CORRUPTED = [
    {"messages": [U("fine"), A("ok")]},                                            # 1 written
    '{"messages": [ this is not json',                                             # 2 json
    {"messages": [{"role": "wizard", "content": "x"}, A("y")]},                    # 3 role
    {"messages": [U("a"), {"role": "system", "content": "late"}, A("b")]},         # 4 system
    {"messages": [U("a"), {"role": "tool", "content": "42"}, A("b")]},             # 5 tool_result
    "",                                                                            # 6 blank: skipped
    {"prompt": "also fine", "response": "yes"},                                    # 7 written
    {"messages": [U(LONG), A("ok")]},                                              # 8 max_length
]


def test_a_corrupted_file_rejects_each_bad_record_with_file_record_and_rule(tmp_path, qwen_fmt, qwen_tok):
    src = write_jsonl(tmp_path / "bad.jsonl", CORRUPTED)
    out = tmp_path / "out.jsonl"
    report = prepare([src], qwen_fmt, qwen_tok, out, max_length=200, truncation="skip", batch_size=2)
    assert report.read == 7 == report.written + report.rejected
    assert report.written == 2
    assert report.rejected_by_rule == {"json": 1, "role": 1, "system": 1, "tool_result": 1, "max_length": 1}
    rejects = sorted(read_jsonl(tmp_path / "out.jsonl.rejects.jsonl"), key=lambda r: r["record"])
    assert [(r["source"], r["record"], r["rule"]) for r in rejects] == [
        (str(src), 2, "json"), (str(src), 3, "role"), (str(src), 4, "system"),
        (str(src), 5, "tool_result"), (str(src), 8, "max_length"),
    ]
    assert rejects[0]["message"].startswith("bad JSON on line 2:")
    assert "wizard" in rejects[1]["message"]
    assert "over max_length 200" in rejects[4]["message"]
    rows = read_jsonl(out)
    assert [r["record"] for r in rows] == [1, 7]
    assert strip_origin(rows) == expected_rows(qwen_fmt, qwen_tok, [CORRUPTED[0], CORRUPTED[6]], max_length=200)


def test_over_length_with_truncation_error_stops_the_run_naming_the_record_and_leaves_no_output(
    tmp_path, qwen_fmt, qwen_tok
):
    src = write_jsonl(tmp_path / "bad.jsonl", CORRUPTED)
    out = tmp_path / "out.jsonl"
    with pytest.raises(LengthError) as info:
        prepare([src], qwen_fmt, qwen_tok, out, max_length=200, truncation="error")
    assert (info.value.source, info.value.line, info.value.rule) == (str(src), 8, "max_length")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_right_truncation_writes_the_record_cut_and_counts_it(tmp_path, qwen_fmt, qwen_tok):
    recs = [CORRUPTED[0], CORRUPTED[7]]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    report = prepare([src], qwen_fmt, qwen_tok, tmp_path / "o.jsonl", max_length=64, truncation="right")
    assert (report.written, report.truncated) == (2, 1)
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert rows[1]["length"] == 64
    assert strip_origin(rows) == expected_rows(qwen_fmt, qwen_tok, recs, max_length=64, truncation="right")


class ExplodingFormat:
    """Delegates to a real format; raises ``error`` when a message says BOOM."""

    def __init__(self, inner, error: Exception) -> None:
        self.inner = inner
        self.error = error

    def render_segments(self, conv, **kw):
        if any(m.content == "BOOM" for m in conv.messages):
            raise self.error
        return self.inner.render_segments(conv, **kw)


def test_a_record_failing_inside_a_batch_rejects_only_itself(tmp_path, qwen_fmt, qwen_tok):
    recs = [{"messages": [U(f"q{k}"), A("BOOM" if k == 2 else f"a{k}")]} for k in range(5)]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    fmt = ExplodingFormat(qwen_fmt, ValidationError("this format cannot say BOOM", index=1, rule="unsupported"))
    report = prepare([src], fmt, qwen_tok, tmp_path / "o.jsonl", batch_size=4)
    assert (report.read, report.written, report.rejected_by_rule) == (5, 4, {"unsupported": 1})
    (rej,) = read_jsonl(tmp_path / "o.jsonl.rejects.jsonl")
    assert rej == {"source": str(src), "record": 3, "rule": "unsupported",
                   "message": "message 1: this format cannot say BOOM"}
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert [r["record"] for r in rows] == [1, 2, 4, 5]
    good = [r for k, r in enumerate(recs) if k != 2]
    assert strip_origin(rows) == expected_rows(qwen_fmt, qwen_tok, good)


def test_a_run_that_raises_midway_leaves_no_output_and_keeps_the_old_one(tmp_path, qwen_fmt, qwen_tok):
    recs = [{"messages": [U(f"q{k}"), A("BOOM" if k == 5 else f"a{k}")]} for k in range(8)]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "o.jsonl"
    out.write_text("previous run\n")
    fmt = ExplodingFormat(qwen_fmt, RuntimeError("tokenizer exploded"))
    with pytest.raises(RuntimeError, match="tokenizer exploded"):
        prepare([src], fmt, qwen_tok, out, batch_size=2)  # batches 1-2 were already written
    assert out.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "o.jsonl"]


def test_many_records_across_batches_equal_encode_batch(tmp_path, qwen_fmt, qwen_tok):
    recs = [{"messages": [U(f"question {k} " * (k % 7 + 1)), A(f"answer {k}"), U("more?"), A("no")]}
            for k in range(23)]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "o.jsonl"
    report = prepare([src], qwen_fmt, qwen_tok, out, batch_size=5, train_on="last_assistant")
    assert report.written == 23
    rows = read_jsonl(out)
    assert [r["record"] for r in rows] == list(range(1, 24))
    assert strip_origin(rows) == expected_rows(qwen_fmt, qwen_tok, recs, train_on="last_assistant")


def test_json_arrays_directories_and_globs_are_read_with_record_numbers(tmp_path, qwen_fmt, qwen_tok):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.json").write_text(json.dumps([RECORDS_BY_KIND["alpaca"], RECORDS_BY_KIND["sharegpt"]]))
    write_jsonl(d / "b.jsonl", ["", RECORDS_BY_KIND["openai"]])
    (d / "c.json").write_text("[{")
    (d / "notes.txt").write_text("ignored")
    got = [(Path(r.source).name, r.record, r.error is None) for r in read_records([d])]
    assert got == [("a.json", 1, True), ("a.json", 2, True), ("b.jsonl", 2, True), ("c.json", 1, False)]
    assert [r.record for r in read_records([str(d / "*.jsonl")])] == [2]
    report = prepare([d], qwen_fmt, qwen_tok, tmp_path / "o.jsonl")
    assert (report.read, report.written, report.rejected_by_rule) == (4, 3, {"json": 1})


def test_missing_inputs_are_an_input_error_before_anything_is_written(tmp_path, qwen_fmt, qwen_tok):
    with pytest.raises(InputError, match="no such file"):
        prepare([tmp_path / "nope.jsonl"], qwen_fmt, qwen_tok, tmp_path / "o.jsonl")
    with pytest.raises(InputError, match="no files match"):
        prepare([str(tmp_path / "*.jsonl")], qwen_fmt, qwen_tok, tmp_path / "o.jsonl")
    assert list(tmp_path.iterdir()) == []


# -- ChatGLM3: the conversations+tools format through the chatglm3 format -------------------------

WEATHER = {"name": "get_current_weather", "description": "Get the current weather in a given location",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}

GLM_RECORDS = [
    {"conversations": [U("Hello"), A("Hello, I'm ChatGLM3. What can I assist you today?")]},
    {"conversations": [{"role": "system", "content": "You are ChatGLM3."}, U("1+1?"), A("2"), U("2+2?"), A("4")]},
    {"conversations": [U("q1"), A("not trained") | {"loss": False}, U("q2"), A("trained") | {"loss": True}]},
    {"tools": [WEATHER], "conversations": [
        U("What's the weather in Beijing today?"),
        A("Okay, let's look it up."),
        {"role": "tool", "name": "get_current_weather", "parameters": {"location": "beijing"},
         "observation": {"temperature": 22}},
        A("It is 22 degrees Celsius in Beijing today."),
    ]},
    {"conversations": [U("  你好  "), A("\n你好！有什么可以帮你？\n")]},
]


def test_chatglm3_records_give_the_ids_and_labels_of_fmt_encode(tmp_path):
    tok = chatfmt.load_tokenizer(need(TD / "chatglm3"))
    fmt = chatfmt.load_format("chatglm3")
    src = write_jsonl(tmp_path / "glm.jsonl", GLM_RECORDS)
    out = tmp_path / "o.jsonl"
    report = prepare([src], fmt, tok, out, input_kind="conversations", batch_size=2)
    assert (report.read, report.written) == (5, 5)
    rows = read_jsonl(out)
    for rec, row in zip(GLM_RECORDS, rows):
        enc = fmt.encode(parse_record(rec, kind="conversations"), tok)
        assert (row["input_ids"], row["labels"]) == (enc.input_ids, enc.labels)


# -- Parquet output --------------------------------------------------------------------------------

PARQUET_RECORDS = [*CORRUPTED, *(RECORDS_BY_KIND[k] for k in sorted(RECORDS_BY_KIND))]


def test_parquet_rows_equal_the_jsonl_rows_with_the_promised_types(tmp_path, qwen_fmt, qwen_tok):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = write_jsonl(tmp_path / "in.jsonl", PARQUET_RECORDS)
    kw = {"max_length": 200, "truncation": "skip", "batch_size": 3}
    rj = prepare([src], qwen_fmt, qwen_tok, tmp_path / "o.jsonl", **kw)
    rp = prepare([src], qwen_fmt, qwen_tok, tmp_path / "o.parquet", **kw)
    same = {"seconds": 0, "output": 0, "rejects": 0, "records_per_second": 0, "tokens_per_second": 0}
    assert rp.to_dict() | same == rj.to_dict() | same
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.schema == pa.schema([
        ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
        ("attention_mask", pa.list_(pa.int8())), ("length", pa.int32()),
        ("source", pa.string()), ("record", pa.int64()),
    ])
    assert table.to_pylist() == read_jsonl(tmp_path / "o.jsonl")
    assert pq.ParquetFile(tmp_path / "o.parquet").num_row_groups > 1  # written as batches arrived
    assert (tmp_path / "o.parquet.rejects.jsonl").read_text().count("\n") == rp.rejected == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.jsonl", "o.jsonl", "o.jsonl.rejects.jsonl", "o.parquet", "o.parquet.rejects.jsonl"]


def test_parquet_loads_with_datasets(tmp_path, qwen_fmt, qwen_tok):
    pytest.importorskip("pyarrow")
    datasets = pytest.importorskip("datasets")
    src = write_jsonl(tmp_path / "in.jsonl", [RECORDS_BY_KIND[k] for k in sorted(RECORDS_BY_KIND)])
    prepare([src], qwen_fmt, qwen_tok, tmp_path / "o.parquet", batch_size=2)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "o.parquet"), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 5
    assert strip_origin(ds.to_list()) == expected_rows(qwen_fmt, qwen_tok, [RECORDS_BY_KIND[k] for k in sorted(RECORDS_BY_KIND)])


def test_output_format_can_be_forced_and_a_failed_parquet_run_leaves_nothing(tmp_path, qwen_fmt, qwen_tok):
    pq = pytest.importorskip("pyarrow.parquet")
    recs = [{"messages": [U(f"q{k}"), A(f"a{k}")]} for k in range(4)]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    prepare([src], qwen_fmt, qwen_tok, tmp_path / "o.data", output_format="parquet")
    assert pq.read_table(tmp_path / "o.data").num_rows == 4
    prepare([src], qwen_fmt, qwen_tok, tmp_path / "o2.parquet", output_format="jsonl")
    assert len(read_jsonl(tmp_path / "o2.parquet")) == 4
    with pytest.raises(ValueError, match="output_format must be one of"):
        prepare([src], qwen_fmt, qwen_tok, tmp_path / "o3", output_format="csv")
    before = sorted(p.name for p in tmp_path.iterdir())
    fmt = ExplodingFormat(qwen_fmt, RuntimeError("tokenizer exploded"))
    boom = write_jsonl(tmp_path / "boom.jsonl", [*recs, {"messages": [U("x"), A("BOOM")]}])
    with pytest.raises(RuntimeError, match="tokenizer exploded"):
        prepare([boom], fmt, qwen_tok, tmp_path / "f.parquet", batch_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "boom.jsonl"])


# -- packing ---------------------------------------------------------------------------------------

PACK_RECORDS = [{"messages": [U(f"question {k} " * (k % 5 + 1)), A(f"answer {k} " * (k % 3 + 1))]}
                for k in range(17)]


def check_packed(rows: list[dict], unpacked: list[dict], size: int) -> None:
    """Packed rows against the unpacked rows of the same examples (in order)."""
    flat = [r for row in rows for r in zip(row["sources"], row["records"])]
    assert flat == [(u["source"], u["record"]) for u in unpacked]
    it = iter(unpacked)
    for row in rows:
        n = len(row["input_ids"])
        assert n == row["length"] == sum(row["seq_lengths"]) <= size
        assert len(row["labels"]) == len(row["attention_mask"]) == len(row["position_ids"]) == n
        start = 0
        for length in row["seq_lengths"]:
            u = next(it)
            assert length == u["length"]
            end = start + length
            assert row["position_ids"][start:end] == list(range(length))  # restart at each example
            assert row["input_ids"][start:end] == u["input_ids"]
            assert row["attention_mask"][start:end] == u["attention_mask"]
            assert row["labels"][start] == -100  # never predicted from the previous example
            assert row["labels"][start + 1:end] == u["labels"][1:]
            start = end
    assert next(it, None) is None
    assert [i for row in rows for i in row["input_ids"]] == [i for u in unpacked for i in u["input_ids"]]


def test_packing_is_greedy_in_order_and_restarts_positions_and_labels_at_each_example(tmp_path, qwen_fmt, qwen_tok):
    src = write_jsonl(tmp_path / "in.jsonl", PACK_RECORDS)
    plain = prepare([src], qwen_fmt, qwen_tok, tmp_path / "u.jsonl")
    unpacked = read_jsonl(tmp_path / "u.jsonl")
    size = 3 * max(u["length"] for u in unpacked)
    report = prepare([src], qwen_fmt, qwen_tok, tmp_path / "p.jsonl", pack=size, batch_size=4)
    rows = read_jsonl(tmp_path / "p.jsonl")
    check_packed(rows, unpacked, size)
    assert 1 < len(rows) < len(unpacked)
    for row, nxt in zip(rows, rows[1:]):  # greedy: the next example did not fit
        assert row["length"] + nxt["seq_lengths"][0] > size
    assert (report.read, report.written, report.rejected, report.packed_sequences) == (17, 17, 0, len(rows))
    assert report.tokens_total == plain.tokens_total
    assert report.tokens_trained == sum(1 for row in rows for x in row["labels"] if x != -100)
    assert f"written 17 packed into {len(rows)} sequences" in report.summary()
    assert plain.packed_sequences is None


def test_an_example_longer_than_pack_is_rejected_unless_truncated_first(tmp_path, qwen_fmt, qwen_tok):
    recs = [PACK_RECORDS[0], {"messages": [U(LONG), A("ok")]}, '{"broken', PACK_RECORDS[1]]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    report = prepare([src], qwen_fmt, qwen_tok, tmp_path / "p.jsonl", pack=128)
    assert (report.read, report.written, report.rejected_by_rule, report.packed_sequences) == (
        4, 2, {"pack_length": 1, "json": 1}, 1)
    report.check()
    rejects = sorted(read_jsonl(tmp_path / "p.jsonl.rejects.jsonl"), key=lambda r: r["record"])
    assert [(r["record"], r["rule"]) for r in rejects] == [(2, "pack_length"), (3, "json")]
    assert "over pack 128" in rejects[0]["message"]
    (row,) = read_jsonl(tmp_path / "p.jsonl")
    assert row["records"] == [1, 4]

    report = prepare([src], qwen_fmt, qwen_tok, tmp_path / "t.jsonl", pack=128, max_length=128, truncation="right")
    assert (report.written, report.truncated, report.rejected_by_rule) == (3, 1, {"json": 1})
    prepare([src], qwen_fmt, qwen_tok, tmp_path / "tu.jsonl", max_length=128, truncation="right")
    check_packed(read_jsonl(tmp_path / "t.jsonl"), read_jsonl(tmp_path / "tu.jsonl"), 128)


def test_packed_parquet_equals_packed_jsonl(tmp_path, qwen_fmt, qwen_tok):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = write_jsonl(tmp_path / "in.jsonl", PACK_RECORDS)
    prepare([src], qwen_fmt, qwen_tok, tmp_path / "p.jsonl", pack=200, batch_size=3)
    report = prepare([src], qwen_fmt, qwen_tok, tmp_path / "p.parquet", pack=200, batch_size=3)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.to_pylist() == read_jsonl(tmp_path / "p.jsonl")
    assert table.num_rows == report.packed_sequences
    assert table.schema.field("position_ids").type == pa.list_(pa.int32())
    assert table.schema.field("attention_mask").type == pa.list_(pa.int8())
    assert table.schema.field("sources").type == pa.list_(pa.string())
    assert table.schema.field("records").type == pa.list_(pa.int64())


def test_pack_must_be_positive(tmp_path, qwen_fmt, qwen_tok):
    src = write_jsonl(tmp_path / "in.jsonl", PACK_RECORDS[:1])
    with pytest.raises(ValueError, match="pack must be at least 1"):
        prepare([src], qwen_fmt, qwen_tok, tmp_path / "p.jsonl", pack=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
