"""The local engine encodes the first and the last batch in pieces (``pipeline.pieces``): the pieces
partition the batch in order, and the output (rows, row groups, rejects, report) is byte-identical
to encoding every batch whole, with rejected records anywhere, on one batch or many."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatfmt
from chatfmt.train import pipeline, prepare
from chatfmt.train.readers import RawRecord

TD = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


@given(n=st.integers(0, 200), first=st.booleans(), last=st.booleans(), piece=st.integers(1, 40))
def test_pieces_partition_the_batch(n: int, first: bool, last: bool, piece: int) -> None:
    batch = [RawRecord("f", k) for k in range(n)]
    old = pipeline.FIRST_PIECE
    pipeline.FIRST_PIECE = piece
    try:
        parts = pipeline.pieces(batch, first, last)
    finally:
        pipeline.FIRST_PIECE = old
    assert [r for p in parts for r in p] == batch
    assert all(parts) or parts == [[]]
    expected = 1 + (first and n >= 2 * piece)
    expected += last and n - (piece if expected == 2 else 0) >= 2 * piece
    assert len(parts) == expected
    if first and n >= 2 * piece:
        assert len(parts[0]) == piece


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
    for name, piece in (("pieces", 2), ("whole", 10**9)):
        monkeypatch.setattr(pipeline, "FIRST_PIECE", piece)
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
