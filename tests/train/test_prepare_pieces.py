"""The local engine encodes the first and the last batches in pieces (``pipeline.pieces``): the
pieces partition the batch in order, and the output (rows, row groups, rejects, report) is
byte-identical to encoding every batch whole, with rejected records anywhere, on one batch or many,
with the tokenizer on its thread pool or one core per encoding thread (``serial_tokenizer``).
``serial_tokenizer`` sets ``TOKENIZERS_PARALLELISM`` only while it runs and puts back what was there."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatfmt
from chatfmt.train import pipeline, prepare
from chatfmt.train.readers import RawRecord

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


@given(
    n=st.integers(0, 200),
    first=st.booleans(),
    left=st.integers(0, 2),
    split=st.integers(1, 3),
    piece=st.integers(1, 40),
)
def test_pieces_partition_the_batch(n: int, first: bool, left: int, split: int, piece: int) -> None:
    batch = [RawRecord("f", k) for k in range(n)]
    old = pipeline.FIRST_PIECE
    pipeline.FIRST_PIECE = piece
    try:
        parts = pipeline.pieces(batch, first, left, split)
    finally:
        pipeline.FIRST_PIECE = old
    assert [r for p in parts for r in p] == batch
    assert all(parts) or parts == [[]]
    head = first and n >= 2 * piece
    rest = n - (piece if head else 0)
    if split > 1:
        tail = min(split, rest) if left == 0 or (first and left == 1) else 1
    else:
        tail = 2 if left == 0 and rest >= 2 * piece else 1
    assert len(parts) == head + max(tail, 1)
    if head:
        assert len(parts[0]) == piece
    sizes = [len(p) for p in parts[head:]]
    assert max(sizes) - min(sizes) <= 1  # the rest in near-equal parts


@pytest.fixture(scope="module")
def tok():
    if not (TD / "qwen2.5").exists():
        pytest.skip(f"{TD / 'qwen2.5'} is absent (the shared test data)")
    return chatfmt.load_tokenizer(TD / "qwen2.5")


def _lines(n: int) -> list[str]:
    out = []
    for k in range(n):
        if k % 7 == 3:
            out.append('{"messages": [oops')  # bad JSON: a rejection
        elif k % 11 == 5:
            out.append(
                json.dumps({"messages": [{"role": "assistant", "content": "no user"}, {"role": "bogus"}]})
            )
        else:
            msgs = [
                {"role": "user", "content": f"question {k} " * (k % 5 + 1)},
                {"role": "assistant", "content": f"answer {k}"},
            ]
            out.append(json.dumps({"messages": msgs}, ensure_ascii=False))
    return out


@pytest.mark.parametrize(("n", "batch_size"), [(1, 8), (9, 8), (40, 8), (40, 64), (70, 16)])
@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_output_identical_to_whole_batches(
    tmp_path: Path, tok, monkeypatch: pytest.MonkeyPatch, n: int, batch_size: int, suffix: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(line + "\n" for line in _lines(n)))
    results = {}
    # pieces, one core per thread (the split edges); whole batches on the tokenizer's thread pool
    for name, piece, cpus in (("pieces", 2, 1), ("whole", 10**9, 64)):
        monkeypatch.setattr(pipeline, "FIRST_PIECE", piece)
        monkeypatch.setattr(pipeline, "usable_cpus", lambda cpus=cpus: cpus)
        out = tmp_path / f"{name}.{suffix}"
        report = prepare(src, "qwen2.5", tok, out, batch_size=batch_size)
        results[name] = (
            out.read_bytes(),
            pipeline.rejects_path(out).read_bytes(),
            report.written,
            report.rejected_by_rule,
        )
    assert results["pieces"] == results["whole"]
    assert results["whole"][2] + sum(results["whole"][3].values()) == n


def test_serial_tokenizer_sets_the_variable_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    var = "TOKENIZERS_PARALLELISM"
    for before in (None, "true", "1"):
        if before is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, before)
        with pipeline.serial_tokenizer():
            assert os.environ[var] == "false"
            with pipeline.serial_tokenizer():  # a second run at once (another thread's prepare)
                assert os.environ[var] == "false"
            assert os.environ[var] == "false"  # the first run is still on
        assert os.environ.get(var) == before
        with pipeline.serial_tokenizer(active=False):
            assert os.environ.get(var) == before


def test_serial_tokenizer_leaves_a_value_set_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    with pipeline.serial_tokenizer():
        os.environ["TOKENIZERS_PARALLELISM"] = "0"  # someone else's choice, made during the run
    assert os.environ["TOKENIZERS_PARALLELISM"] == "0"


def test_serial_tokenizer_overlapping_runs_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    barrier = threading.Barrier(4)
    seen: list[str | None] = []

    def run() -> None:
        with pipeline.serial_tokenizer():
            barrier.wait()
            seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
            barrier.wait()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["false"] * 4
    assert "TOKENIZERS_PARALLELISM" not in os.environ


def test_prepare_restores_the_variable(tmp_path: Path, tok, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 1)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(line + "\n" for line in _lines(40)))
    prepare(src, "qwen2.5", tok, tmp_path / "out.parquet", batch_size=8)
    assert "TOKENIZERS_PARALLELISM" not in os.environ
