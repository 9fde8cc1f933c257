"""``chatfmt prepare``: writes rows, rejects and a report; user errors exit 2 and leave no output."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import chatfmt
from chatfmt.cli import app
from chatfmt.encode import encode_batch
from chatfmt.messages import parse_record

runner = CliRunner()
QWEN = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "qwen2.5"
pytestmark = pytest.mark.skipif(not QWEN.is_dir(), reason="../shared/testdata/qwen2.5 is absent")

GOOD = [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"instruction": "Say yes", "output": "yes"},
]
LONG = {"prompt": "word " * 300, "response": "ok"}


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def run(*args: str):
    return runner.invoke(app, ["prepare", *args, "-f", "qwen2.5", "-t", str(QWEN)])


def test_prepare_writes_rows_rejects_report_and_a_summary(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], "{nope", GOOD[1], LONG])
    out = tmp_path / "out.jsonl"
    res = run(str(src), "-o", str(out), "--max-length", "100", "--truncation", "skip",
              "--report", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    assert "read 4, written 2, rejected 2 (json: 1, max_length: 1)" in res.stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    encs = encode_batch(chatfmt.load_format("qwen2.5"), [parse_record(r) for r in GOOD], chatfmt.load_tokenizer(QWEN))
    assert [(r["input_ids"], r["labels"], r["record"]) for r in rows] == [
        (e.input_ids, e.labels, k) for e, k in zip(encs, (1, 3))
    ]
    rejects = [json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert sorted((r["record"], r["rule"]) for r in rejects) == [(2, "json"), (4, "max_length")]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["read"] == 4 == report["written"] + report["rejected"]
    assert report["rejected_by_rule"] == {"json": 1, "max_length": 1}


def test_prepare_reads_a_directory(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write_jsonl(d / "a.jsonl", GOOD[:1])
    (d / "b.json").write_text(json.dumps(GOOD))
    res = run(str(d), "-o", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 0, res.output
    assert "read 3, written 3, rejected 0" in res.stdout


def test_over_length_with_truncation_error_exits_2_naming_the_record_and_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], LONG])
    res = run(str(src), "-o", str(tmp_path / "o.jsonl"), "--max-length", "100")
    assert res.exit_code == 2
    assert f"{src}:2: conversation is" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jsonl"], "no such file or directory"),
        (["in.jsonl", "--truncation", "middle"], "--truncation must be one of"),
        (["in.jsonl", "--train-on", "everything"], "--train-on must be one of"),
        (["in.jsonl", "--input-kind", "tweets"], "--input-kind must be one of"),
    ],
)
def test_user_errors_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = run(*args, "-o", "o.jsonl")
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o.jsonl").exists()


def test_prepare_writes_parquet_from_the_output_name(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], "{nope", GOOD[1]])
    res = run(str(src), "-o", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 0, res.output
    res = run(str(src), "-o", str(tmp_path / "o.parquet"))
    assert res.exit_code == 0, res.output
    assert "read 3, written 2, rejected 1 (json: 1)" in res.stdout
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == rows
    res = run(str(src), "-o", str(tmp_path / "forced.out"), "--output-format", "parquet")
    assert res.exit_code == 0, res.output
    assert pq.read_table(tmp_path / "forced.out").to_pylist() == rows


def test_prepare_packs(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0], GOOD[1], GOOD[0], LONG])
    res = run(str(src), "-o", str(tmp_path / "p.jsonl"), "--pack", "100", "--report", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    n = len(rows)
    assert f"read 4, written 3 packed into {n} sequences, rejected 1 (pack_length: 1)" in res.stdout
    assert [k for r in rows for k in r["records"]] == [1, 2, 3]
    assert n < 3
    assert all(sum(r["seq_lengths"]) == len(r["input_ids"]) <= 100 for r in rows)
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["written"], report["packed_sequences"]) == (3, n)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output-format", "csv"], "--output-format must be one of"),
        (["--pack", "0"], "--pack must be at least 1"),
    ],
)
def test_bad_output_format_or_pack_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = run("in.jsonl", *args, "-o", "o.jsonl")
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o.jsonl").exists()


def test_quiet_prints_only_the_summary(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[k % 2] for k in range(4)] + ["{nope"])
    res = run(str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "1", "-q")
    assert res.exit_code == 0, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"{tmp_path / 'o.jsonl'}: read 5, written 4, rejected 1 (json: 1), truncated 0, ")


@pytest.mark.slow  # spawns worker processes; the default run: test_quiet_prints_only_the_summary and
# tests/train/test_workers_and_api.py::test_workers_write_the_same_bytes_as_one_process
def test_workers_write_the_same_output_and_quiet_prints_only_the_summary(tmp_path, monkeypatch):
    import chatfmt.train.pipeline as pipeline

    monkeypatch.setattr(pipeline, "WORKERS_AFTER", 0.0)  # start the workers after the first batch
    recs = [GOOD[k % 2] for k in range(40)] + ["{nope"]
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    one = run(str(src), "-o", str(tmp_path / "one.jsonl"), "--workers", "1", "--batch-size", "8", "-q")
    two = run(str(src), "-o", str(tmp_path / "two.jsonl"), "--workers", "2", "--batch-size", "8", "--quiet")
    assert one.exit_code == 0 == two.exit_code, one.output + two.output
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert two.output.strip() == f"{tmp_path / 'two.jsonl'}: read 41, written 40, rejected 1 (json: 1), truncated 0, " \
        + one.output.split("truncated 0, ")[1].strip()


def test_the_report_has_rates_histogram_and_engine(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = run(str(src), "-o", str(tmp_path / "o.jsonl"), "-w", "1", "--report", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["engine"], report["workers"]) == ("local", 1)
    assert sum(report["length_histogram"].values()) == 2
    assert report["records_per_second"] > 0 and report["tokens_per_second"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--engine", "spark"], "--engine must be one of local, ray"),
        (["--ray-address", "ray://head:10001"], "--ray-address needs --engine ray"),
    ],
)
def test_bad_engine_options_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "in.jsonl", GOOD)
    res = run("in.jsonl", *args, "-o", "o.jsonl")
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o.jsonl").exists()
