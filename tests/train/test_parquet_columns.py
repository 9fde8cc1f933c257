"""The Parquet sink's list-of-integers columns (``writers.int_lists``: values packed by ``struct``,
an attention mask of ones not packed at all) against their definition, ``pa.array(rows, type)``
(pyarrow's converter from Python objects, what the sink used before): the same arrays for any rows
(hypothesis), the same exception or array where the fast path hands over, and byte-identical
Parquet files, packed or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from chatfmt.train.writers import Packer, ParquetSink, _schema, int_lists  # noqa: E402

BOUNDS = {"int8": 2**7, "int32": 2**31, "int64": 2**63}
TYPES = {name: pa.list_(getattr(pa, name)()) for name in BOUNDS}


def reference(rows: Any, arrow_type: Any) -> Any:
    """The definition: pyarrow's own conversion (an exception is the result too)."""
    try:
        return pa.array(rows, arrow_type)
    except Exception as e:  # noqa: BLE001 - compared by type below
        return type(e)


def fast(rows: Any, arrow_type: Any) -> Any:
    try:
        return int_lists(rows, arrow_type)
    except Exception as e:  # noqa: BLE001
        return type(e)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, type) or isinstance(b, type):
        return a is b
    return bool(a.equals(b)) and a.type == b.type and a.null_count == b.null_count


def rows_of(name: str, *, edge: bool = False) -> st.SearchStrategy[list[list[int]]]:
    bound = BOUNDS[name]
    values = st.integers(-bound, bound - 1)
    if name == "int8":  # masks: mostly all ones
        values = st.one_of(st.just(1), st.just(0), values)
    if edge:
        values = st.integers(-bound - 2, bound + 1)
    return st.lists(st.lists(values, max_size=40), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(BOUNDS)))
def test_int_lists_equal_pa_array(data: st.DataObject, name: str) -> None:
    rows = data.draw(rows_of(name))
    out = int_lists(rows, TYPES[name])
    assert same(out, pa.array(rows, TYPES[name]))
    assert out.to_pylist() == rows


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(BOUNDS)))
def test_out_of_range_values_do_what_pa_array_does(data: st.DataObject, name: str) -> None:
    rows = data.draw(rows_of(name, edge=True))
    assert same(fast(rows, TYPES[name]), reference(rows, TYPES[name]))


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [[]],
        [[], [1], []],
        [[1, 1, 1], [1]],  # the mask shortcut
        [[1, 1], [1, 0]],
        [None, [1, 2]],  # a null row
        [[1, 2], None],
        [[1.0, 2.0]],  # floats pyarrow takes as integers
        [[1.5]],
        [["1"]],
        [(1, 2)],  # a tuple row
        [[2**31]],
        [[-(2**31) - 1]],
        [[2**63]],
    ],
)
@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_edge_rows(rows: list[Any], name: str) -> None:
    assert same(fast(rows, TYPES[name]), reference(rows, TYPES[name]))


def test_ones_shortcut_only_for_all_ones() -> None:
    t = TYPES["int8"]
    assert int_lists([[1] * 5, [1] * 3], t).to_pylist() == [[1] * 5, [1] * 3]
    assert int_lists([[1] * 5, [1, 1, 0]], t).to_pylist() == [[1] * 5, [1, 1, 0]]
    assert int_lists([[1, 1], [2]], t).to_pylist() == [[1, 1], [2]]


class ReferenceSink(ParquetSink):
    """The sink as it was: every column through ``pa.array``."""

    def end_batch(self) -> None:
        if not self.rows:
            return
        columns = [pa.array([row[f.name] for row in self.rows], f.type) for f in self.schema]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows.clear()


@st.composite
def example(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(0, 30))
    ids = draw(st.lists(st.integers(0, 200_000), min_size=n, max_size=n))
    trained = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return {
        "input_ids": ids,
        "labels": [i if t else -100 for i, t in zip(ids, trained)],
        "attention_mask": [1] * n,
        "length": n,
        "source": draw(st.sampled_from(["a.jsonl", "dir/b.jsonl", "ü.json"])),
        "record": draw(st.integers(1, 10**6)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), packed=st.booleans())
def test_parquet_files_byte_identical(tmp_path: Path, data: st.DataObject, packed: bool) -> None:
    batches = data.draw(st.lists(st.lists(example(), max_size=6), min_size=1, max_size=4))
    meta = {"format": "qwen2.5", "tokenizer": "x"}
    paths = []
    for k, cls in enumerate((ParquetSink, ReferenceSink)):
        path = tmp_path / f"{k}.parquet"
        sink = cls(path, packed=packed, metadata=meta)
        packer = Packer(64, sink) if packed else None
        for batch in batches:
            for row in batch:
                if packer is not None:
                    packer.add(
                        row["input_ids"], row["labels"], row["attention_mask"], row["source"], row["record"]
                    )
                else:
                    sink.write(row)
            sink.end_batch()
        if packer is not None:
            packer.emit()
            sink.end_batch()
        sink.close()
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert pq.read_schema(paths[0]).equals(
        _schema(packed).with_metadata({b"chatfmt": json.dumps(meta).encode()})
    )
