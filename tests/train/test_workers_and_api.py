"""Worker processes (started after the first batch here) give the same bytes as one process; inputs (Parquet, JSON, forced kind); the
Python API (``chatfmt.prepare``) and the ``datasets.Dataset.map`` function."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import chatfmt
from chatfmt.encode import LengthError, encode_batch
from chatfmt.messages import parse_record
from chatfmt.train import dataset_map_function, prepare, read_records

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
QWEN = TD / "qwen2.5"
pytestmark = pytest.mark.skipif(not QWEN.is_dir(), reason="../shared/testdata/qwen2.5 is absent")


def U(text: str) -> dict:
    return {"role": "user", "content": text}


def A(text: str) -> dict:
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def qwen(shared_tokenizer):
    return chatfmt.load_format("qwen2.5"), shared_tokenizer(QWEN)


def mixed_records(n: int) -> list:
    """Good records of several kinds with bad ones in between (json, role, system)."""
    out: list = []
    for k in range(n):
        if k % 11 == 3:
            out.append('{"messages": [oops')
        elif k % 13 == 5:
            out.append({"messages": [{"role": "robot", "content": "x"}]})
        elif k % 2:
            out.append({"prompt": f"question {k} " * (k % 5 + 1), "response": f"answer {k}"})
        else:
            out.append({"messages": [U(f"hi {k}"), A("hello " * (k % 4 + 1)), U("more"), A(f"done {k}")]})
    return out


@pytest.fixture
def workers_at_once(monkeypatch):
    """Start worker processes after the first batch (not after WORKERS_AFTER seconds)."""
    import chatfmt.train.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WORKERS_AFTER", 0.0)


def test_workers_write_the_same_bytes_as_one_process(tmp_path, qwen, workers_at_once):
    pytest.importorskip("pyarrow")
    src = write_jsonl(tmp_path / "in.jsonl", mixed_records(60))
    outs = {}
    for w in (1, 2):
        for ext in ("jsonl", "parquet") if w == 1 else ("parquet",):
            outs[w, ext] = prepare(src, "qwen2.5", str(QWEN), tmp_path / f"w{w}.{ext}", workers=w, batch_size=8)
    for ext in ("parquet",):
        assert (tmp_path / f"w1.{ext}").read_bytes() == (tmp_path / f"w2.{ext}").read_bytes()
        assert (tmp_path / f"w1.{ext}.rejects.jsonl").read_bytes() == (tmp_path / f"w2.{ext}.rejects.jsonl").read_bytes()
        a, b = outs[1, ext].to_dict(), outs[2, ext].to_dict()
        for k in ("seconds", "records_per_second", "tokens_per_second", "workers", "output", "rejects"):
            a.pop(k), b.pop(k)
        assert a == b
    assert (outs[2, "parquet"].read, outs[2, "parquet"].workers) == (60, 2)
    assert outs[2, "parquet"].rejected_by_rule == {"json": 6, "role": 5}
    rows = read_jsonl(tmp_path / "w1.jsonl")
    assert [r["record"] for r in rows] == sorted(r["record"] for r in rows)  # input order
    fmt, tok = qwen
    good = [r for r in mixed_records(60) if not isinstance(r, str) and "robot" not in json.dumps(r)]
    encs = encode_batch(fmt, [parse_record(r) for r in good], tok)
    assert [(r["input_ids"], r["labels"]) for r in rows] == [(e.input_ids, e.labels) for e in encs]


def test_over_length_in_a_worker_stops_the_run_naming_the_record_and_leaves_nothing(tmp_path, workers_at_once):
    recs = [{"prompt": "short", "response": "ok"}] * 20 + [{"prompt": "long " * 400, "response": "ok"}]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    with pytest.raises(LengthError) as info:
        prepare(src, "qwen2.5", str(QWEN), tmp_path / "o.jsonl", workers=2, batch_size=4, max_length=100)
    assert (info.value.source, info.value.line) == (str(src), 21)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_format_object_that_does_not_pickle_runs_in_process_with_a_warning(tmp_path, qwen, workers_at_once):
    _, tok = qwen
    import threading

    jinja = chatfmt.load_format(QWEN / "tokenizer_config.json")
    jinja.guard = threading.Lock()  # an attribute that cannot cross to another process
    src = write_jsonl(tmp_path / "in.jsonl", mixed_records(12))
    with pytest.warns(UserWarning, match="cannot be sent to worker processes"):
        r = prepare(src, jinja, tok, tmp_path / "o.jsonl", workers=2, batch_size=4)
    assert r.workers == 1 and r.read == 12


def test_the_public_api_takes_keywords_and_returns_the_report(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", mixed_records(5))
    report = chatfmt.prepare([src], format="qwen2.5", tokenizer=str(QWEN), output=tmp_path / "o.jsonl",
                             max_length=512, truncation="skip", train_on="last_assistant")
    assert isinstance(report, chatfmt.train.Report)
    assert report.read == 5 == report.written + report.rejected
    assert sum(report.length_histogram.values()) == report.written
    assert report.to_dict()["tokens_per_second"] > 0


# -- inputs ----------------------------------------------------------------------------------------


def test_parquet_input_is_read_in_batches_with_row_numbers_and_null_fields_dropped(tmp_path, qwen, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import chatfmt.train.readers as readers

    rows = [{"messages": [U(f"q{k}"), A(f"a{k}") | {"name": None}]} for k in range(7)]
    rows[4] = {"messages": [{"role": "wizard", "content": "x", "name": None}]}
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3)
    monkeypatch.setattr(readers, "PARQUET_BATCH", 2)
    recs = list(read_records([tmp_path / "in.parquet"]))
    assert [r.record for r in recs] == list(range(1, 8))
    assert recs[0].data == {"messages": [U("q0"), A("a0")]}  # the null "name" field is absent
    report = prepare(tmp_path / "in.parquet", qwen[0], qwen[1], tmp_path / "o.jsonl")
    assert (report.read, report.written, report.rejected_by_rule) == (7, 6, {"role": 1})
    (rej,) = read_jsonl(tmp_path / "o.jsonl.rejects.jsonl")
    assert (rej["source"], rej["record"]) == (str(tmp_path / "in.parquet"), 5)
    good = [r for k, r in enumerate(rows) if k != 4]
    encs = encode_batch(qwen[0], [parse_record(r) for r in good], qwen[1])
    assert [r["input_ids"] for r in read_jsonl(tmp_path / "o.jsonl")] == [e.input_ids for e in encs]


def test_a_file_named_parquet_that_is_not_one_is_one_rejected_record(tmp_path, qwen):
    pytest.importorskip("pyarrow")
    (tmp_path / "bad.parquet").write_text("not parquet at all")
    report = prepare(tmp_path / "bad.parquet", qwen[0], qwen[1], tmp_path / "o.jsonl")
    assert (report.read, report.written, report.rejected_by_rule) == (1, 0, {"json": 1})
    (rej,) = read_jsonl(tmp_path / "o.jsonl.rejects.jsonl")
    assert rej["record"] == 0 and rej["message"].startswith("not a readable Parquet file")


def test_json_files_stream_arrays_objects_and_concatenated_objects(tmp_path, monkeypatch):
    import chatfmt.train.readers as readers

    monkeypatch.setattr(readers, "JSON_CHUNK", 7)  # elements cut by the buffer's end everywhere
    big = {"prompt": "x" * 100, "response": "y"}
    b = json.dumps(big)
    (tmp_path / "a.json").write_text(f'[{b}, 12345, {{"a": NaN}},\n  {b}]')
    (tmp_path / "b.json").write_text(json.dumps(big) + "\n" + json.dumps(big))
    (tmp_path / "c.json").write_text('[{"k": 1, "k": 2}, {"ok": true}]')
    (tmp_path / "d.json").write_text("")
    got = [(Path(r.source).name, r.record, r.data if r.error is None else r.error) for r in read_records([tmp_path])]
    assert got == [
        ("a.json", 1, big), ("a.json", 2, 12345), ("a.json", 3, "bad JSON in record 3: NaN is not valid JSON"),
        ("a.json", 4, big), ("b.json", 1, big), ("b.json", 2, big),
        ("c.json", 1, "bad JSON in record 1: duplicate key 'k' in an object"), ("c.json", 2, {"ok": True}),
    ]


def test_input_kind_forces_the_parser(tmp_path, qwen):
    # a ShareGPT-looking record read as "conversations" fails (no role), as "sharegpt" it passes
    rec = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]}
    src = write_jsonl(tmp_path / "in.jsonl", [rec])
    assert prepare(src, qwen[0], qwen[1], tmp_path / "a.jsonl", input_kind="sharegpt").written == 1
    r = prepare(src, qwen[0], qwen[1], tmp_path / "b.jsonl", input_kind="conversations")
    assert r.written == 0 and r.rejected == 1


# -- datasets.Dataset.map --------------------------------------------------------------------------


def test_dataset_map_function_gives_prepare_rows_and_an_error_column(tmp_path, qwen):
    datasets = pytest.importorskip("datasets")
    fmt, tok = qwen
    recs = [
        {"messages": [U("hi"), A("hello")]},
        {"messages": [U("a"), {"role": "system", "content": "late"}, A("b")]},
        {"messages": [U("long " * 300), A("ok")]},
        {"messages": [{"role": "system", "content": "Be brief."}, U("2+2?"), A("4")]},
    ]
    ds = datasets.Dataset.from_list(recs)
    fn = dataset_map_function("qwen2.5", str(QWEN), max_length=128, truncation="skip")
    out = ds.map(fn, batched=True, batch_size=3, remove_columns=ds.column_names)
    assert out.column_names == ["input_ids", "labels", "attention_mask", "length", "error"]
    assert out.num_rows == 4
    errors = out["error"]
    assert errors[0] is None and errors[3] is None
    assert errors[1].startswith("system: ") and errors[2].startswith("max_length: ")
    assert out[1]["input_ids"] == [] and out[1]["length"] == 0
    good = [recs[0], recs[3]]
    encs = encode_batch(fmt, [parse_record(r) for r in good], tok, max_length=128)
    kept = out.filter(lambda e: e["error"] is None)
    assert [(r["input_ids"], r["labels"], r["attention_mask"], r["length"]) for r in kept] == [
        (e.input_ids, e.labels, e.attention_mask, len(e.input_ids)) for e in encs]

    dropped = ds.map(dataset_map_function(fmt, tok, max_length=128, truncation="skip", rejected="drop"),
                     batched=True, batch_size=3, remove_columns=ds.column_names)
    assert dropped["input_ids"] == kept["input_ids"]


def test_dataset_map_function_pickles_by_name_and_raises_on_over_length_with_error(qwen):
    fn = dataset_map_function("qwen2.5", str(QWEN), max_length=40)
    clone = pickle.loads(pickle.dumps(fn))
    batch = {"prompt": ["2+2?"], "response": ["4"]}
    assert clone(batch) == fn(batch)
    with pytest.raises(LengthError, match="over max_length 40"):
        fn({"prompt": ["long " * 50], "response": ["ok"]})
    with pytest.raises(ValueError, match="rejected must be"):
        dataset_map_function("qwen2.5", str(QWEN), rejected="keep")  # type: ignore[arg-type]
