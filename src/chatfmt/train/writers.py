"""Where :func:`~chatfmt.train.prepare` puts its rows: JSONL or Parquet sinks, and the packer.

A sink takes row dicts (``write``), is told when a batch of records is done (``end_batch``: the
Parquet sink writes the rows it holds as one row group then) and is closed at the end. Both write to
the temporary path they are given; the pipeline renames it over the output.

Packing (:class:`Packer`): encoded examples are packed greedily, in order, into sequences of at most
``pack`` tokens; a sequence is emitted when the next example does not fit. A packed row holds the
concatenated ``input_ids`` / ``labels`` / ``attention_mask``, ``position_ids`` restarting at 0 at
each example, ``seq_lengths`` (the examples' lengths, summing to ``length``) and the examples'
``sources`` / ``records``. Labels never cross examples: the first label of every packed example is
``-100``, so no example is trained to predict its first token from the previous example's last
token (with the usual shift-by-one loss, label ``i`` is predicted from token ``i - 1``). Its first
token is a template token in most formats and untrained anyway.

The column names are the ones trainers read: TRL's ``DataCollatorForLanguageModeling(padding_free=True)``
takes the examples of a packed row from ``seq_lengths`` (and rebuilds ``position_ids`` from it; its
``SFTTrainer`` keeps ``input_ids``, ``labels`` and ``seq_lengths``), transformers' flash-attention
path finds the boundaries where ``position_ids`` restart at 0 (as LLaMA-Factory's packed rows have
them). Files from earlier chatfmt versions name the column ``seq_lens``; ``chatfmt inspect`` reads
both.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import IO, Any

from ..errors import ChatfmtError

#: ``arrow``: a ``datasets`` ``save_to_disk`` directory, written from Parquet (:mod:`chatfmt.train.datasets_out`)
OUTPUT_FORMATS = ("jsonl", "parquet", "arrow")
IGNORE_INDEX = -100


def output_format_for(output: str | Path, output_format: str | None) -> str:
    """``output_format`` if given, else ``parquet`` for a ``.parquet`` name and ``jsonl`` otherwise."""
    if output_format is not None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}"
            )
        return output_format
    return "parquet" if str(output).lower().endswith(".parquet") else "jsonl"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class JsonlSink:
    """One JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.f: IO[str] = path.open("w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.f.write(_dumps(row) + "\n")

    def end_batch(self) -> None:
        pass

    def close(self) -> None:
        self.f.close()


def _schema(packed: bool) -> Any:
    import pyarrow as pa

    ids = pa.list_(pa.int32())
    if packed:
        return pa.schema(
            [
                ("input_ids", ids),
                ("labels", ids),
                ("attention_mask", pa.list_(pa.int8())),
                ("position_ids", ids),
                ("seq_lengths", ids),
                ("length", pa.int32()),
                ("sources", pa.list_(pa.string())),
                ("records", pa.list_(pa.int64())),
            ]
        )
    return pa.schema(
        [
            ("input_ids", ids),
            ("labels", ids),
            ("attention_mask", pa.list_(pa.int8())),
            ("length", pa.int32()),
            ("source", pa.string()),
            ("record", pa.int64()),
        ]
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``chatfmt`` metadata of a Parquet output (format, tokenizer), or ``{}``."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(str(path)).metadata or {}
        recorded: dict[str, Any] = json.loads(meta.get(b"chatfmt", b"{}"))
        return recorded
    except Exception:  # not Parquet, no pyarrow, no metadata: nothing recorded
        return {}


def require_pyarrow() -> None:
    """Raise a :class:`~chatfmt.errors.ChatfmtError` if pyarrow is missing (before any file is made)."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ChatfmtError("Parquet output needs pyarrow: pip install 'chatfmt[train]'") from None


#: struct codes of the integer types a list column of ours holds
_INT_CODES = {"int8": "b", "int32": "i", "int64": "q"}


def column(values: list[Any], arrow_type: Any) -> Any:
    """``pa.array(values, arrow_type)``; a list-of-integers column through :func:`int_lists`."""
    import pyarrow as pa

    if pa.types.is_list(arrow_type) and str(arrow_type.value_type) in _INT_CODES:
        return int_lists(values, arrow_type)
    return pa.array(values, arrow_type)


def int_lists(rows: list[list[int]], arrow_type: Any) -> Any:
    """``pa.array(rows, arrow_type)`` for ``arrow_type`` a ``list<int8|int32|int64>`` and ``rows``
    lists of ``int``: built from two buffers, the values packed by one :func:`struct.pack` call
    (about 2.5x faster than pyarrow's converter from Python objects, 25-30 ns a value here) and the
    offsets; a column of ones only (an attention mask) is not packed at all. The same array as
    ``pa.array``'s (tested). What that converter would treat otherwise goes to it: a row that is not
    a list (``None``: a null), a value ``struct`` refuses (out of range, a float), over 2**31 - 1
    values. (A ``bool`` value packs as 0 or 1 where ``pa.array`` refuses it; no row of ours holds one.)"""
    import pyarrow as pa

    total = 0
    flat: list[int] = []
    offsets = [0]
    code = _INT_CODES[str(arrow_type.value_type)]
    try:
        for r in rows:
            if r.__class__ is not list:
                raise TypeError("not a list")
            flat += r
            total += len(r)
            offsets.append(total)
        if total > 2**31 - 1:
            raise OverflowError("offsets over int32")
        data = (
            b"\x01" * total
            if code == "b" and flat.count(1) == total
            else struct.pack(f"={total}{code}", *flat)
        )
    except (TypeError, OverflowError, struct.error):
        return pa.array(rows, arrow_type)
    values = pa.Array.from_buffers(arrow_type.value_type, total, [None, pa.py_buffer(data)])
    offs = pa.py_buffer(struct.pack(f"={len(offsets)}i", *offsets))
    return pa.ListArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), len(offsets), [None, offs]), values, type=arrow_type
    )


class ParquetSink:
    """Rows held until the batch ends, then written as one row group."""

    def __init__(self, path: Path, *, packed: bool, metadata: dict[str, Any] | None = None) -> None:
        import pyarrow.parquet as pq

        self.schema = _schema(packed)
        if metadata:
            # what made the file (format, tokenizer), for `chatfmt inspect` and for people
            self.schema = self.schema.with_metadata({b"chatfmt": json.dumps(metadata).encode("utf-8")})
        self.rows: list[dict[str, Any]] = []
        self.writer = pq.ParquetWriter(str(path), self.schema)

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def end_batch(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa

        # column by column (far faster than Table.from_pylist over row dicts); lists of integers
        # through int_lists (the same arrays as pa.array's)
        columns = [column([row[field.name] for row in self.rows], field.type) for field in self.schema]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows.clear()

    def close(self) -> None:
        self.writer.close()


def open_sink(
    path: Path, output_format: str, *, packed: bool, metadata: dict[str, Any] | None = None
) -> JsonlSink | ParquetSink:
    if output_format == "parquet":
        return ParquetSink(path, packed=packed, metadata=metadata)
    return JsonlSink(path)


class Packer:
    """Greedy in-order packing of examples into rows of at most ``size`` tokens (see the module doc)."""

    def __init__(self, size: int, sink: JsonlSink | ParquetSink) -> None:
        self.size = size
        self.sink = sink
        self.packed = 0
        self._clear()

    def _clear(self) -> None:
        self.input_ids: list[int] = []
        self.labels: list[int] = []
        self.attention_mask: list[int] = []
        self.position_ids: list[int] = []
        self.seq_lengths: list[int] = []
        self.sources: list[str] = []
        self.records: list[int] = []

    def add(
        self, input_ids: list[int], labels: list[int], attention_mask: list[int], source: str, record: int
    ) -> list[int]:
        """Add one example (``len(input_ids) <= size``); returns the labels it got (first one -100)."""
        n = len(input_ids)
        if self.input_ids and len(self.input_ids) + n > self.size:
            self.emit()
        labels = [IGNORE_INDEX, *labels[1:]] if labels else []
        self.input_ids += input_ids
        self.labels += labels
        self.attention_mask += attention_mask
        self.position_ids += range(n)
        self.seq_lengths.append(n)
        self.sources.append(source)
        self.records.append(record)
        return labels

    def emit(self) -> None:
        if not self.input_ids:
            return
        self.sink.write(
            {
                "input_ids": self.input_ids,
                "labels": self.labels,
                "attention_mask": self.attention_mask,
                "position_ids": self.position_ids,
                "seq_lengths": self.seq_lengths,
                "length": len(self.input_ids),
                "sources": self.sources,
                "records": self.records,
            }
        )
        self.packed += 1
        self._clear()
