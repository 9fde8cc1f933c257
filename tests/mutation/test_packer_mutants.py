"""The packer (``chatfmt.train.writers.Packer``) against its documented rule, row by row.

Greedy and in order: a row is emitted when the next example does not fit in ``size`` tokens; a row
holds the examples' concatenated ids, labels (each example's first label ``-100``) and attention
masks, ``position_ids`` restarting at 0 per example, ``seq_lengths`` summing to ``length``, and the
examples' sources and records. The expected rows are built here from that rule, and the packed
rows are also checked against what TRL's padding-free collator reads back from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatfmt.encode import IGNORE_INDEX
from chatfmt.train.writers import JsonlSink, Packer

X = IGNORE_INDEX


def example(n: int, base: int) -> tuple[list[int], list[int], list[int]]:
    ids = [base + k for k in range(n)]
    labels = [X if k % 3 == 0 else base + k for k in range(n)]
    return ids, labels, [1] * n


def pack(
    size: int, lengths: list[int], tmp_path: Path
) -> tuple[list[dict[str, Any]], Packer, list[list[int]]]:
    path = tmp_path / "rows.jsonl"
    sink = JsonlSink(path)
    packer = Packer(size, sink)
    returned = []
    for r, n in enumerate(lengths):
        ids, labels, mask = example(n, 100 * (r + 1))
        returned.append(packer.add(ids, labels, mask, f"src{r % 2}", r))
    packer.emit()
    sink.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows, packer, returned


def expected(groups: list[list[int]], lengths: list[int]) -> list[dict[str, Any]]:
    rows = []
    for group in groups:
        row: dict[str, Any] = {
            k: []
            for k in (
                "input_ids",
                "labels",
                "attention_mask",
                "position_ids",
                "seq_lengths",
                "sources",
                "records",
            )
        }
        for r in group:
            n = lengths[r]
            ids, labels, mask = example(n, 100 * (r + 1))
            row["input_ids"] += ids
            row["labels"] += [X, *labels[1:]] if labels else []
            row["attention_mask"] += mask
            row["position_ids"] += list(range(n))
            row["seq_lengths"].append(n)
            row["sources"].append(f"src{r % 2}")
            row["records"].append(r)
        row["length"] = len(row["input_ids"])
        rows.append(row)
    return rows


def test_greedy_in_order_rows(tmp_path: Path) -> None:
    lengths = [3, 4, 2, 5, 8, 1]
    rows, packer, returned = pack(8, lengths, tmp_path)
    # 3+4 fit (7), +2 would be 9: emit; 2+5 = 7, +8 no: emit; 8 alone; then 1
    assert rows == expected([[0, 1], [2, 3], [4], [5]], lengths)
    assert packer.packed == 4
    for r, n in enumerate(lengths):
        _, labels, _ = example(n, 100 * (r + 1))
        assert returned[r] == [X, *labels[1:]]


def test_an_example_that_fills_the_row_exactly_joins_it(tmp_path: Path) -> None:
    lengths = [4, 4, 4]
    rows, packer, _ = pack(8, lengths, tmp_path)
    assert rows == expected([[0, 1], [2]], lengths)
    assert [r["length"] for r in rows] == [8, 4] and packer.packed == 2


def test_emit_without_examples_writes_nothing(tmp_path: Path) -> None:
    rows, packer, _ = pack(8, [], tmp_path)
    assert rows == [] and packer.packed == 0
    sink = JsonlSink(tmp_path / "again.jsonl")
    p = Packer(4, sink)
    p.add([1, 2], [], [1, 1], "s", 0)
    p.emit()
    p.emit()
    sink.close()
    [row] = [json.loads(x) for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert row["labels"] == [] and row["input_ids"] == [1, 2] and p.packed == 1
    assert (p.input_ids, p.labels, p.attention_mask, p.position_ids, p.seq_lengths, p.sources, p.records) == (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )


def test_rows_read_back_as_trl_reads_them(tmp_path: Path) -> None:
    """TRL's padding-free collator cuts a packed row at ``seq_lengths`` and restarts ``position_ids``;
    each cut must be one example, whole and in order."""
    lengths = [3, 4, 2, 5]
    rows, _, _ = pack(9, lengths, tmp_path)
    r = 0
    for row in rows:
        assert sum(row["seq_lengths"]) == row["length"] == len(row["input_ids"]) == len(row["labels"])
        starts = [k for k, p in enumerate(row["position_ids"]) if p == 0]
        assert [b - a for a, b in zip(starts, [*starts[1:], row["length"]])] == row["seq_lengths"]
        for a, n in zip(starts, row["seq_lengths"]):
            assert row["input_ids"][a : a + n] == example(lengths[r], 100 * (r + 1))[0]
            assert row["labels"][a] == X
            r += 1
    assert r == len(lengths)
