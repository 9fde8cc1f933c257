"""The Ray engine of ``prepare``: the per-batch step of the local engine, run by Ray Data.

Pipeline: ``ray.data.from_items(files) -> map_batches(read) -> map_batches(encode) -> driver``.

- *read* (one task per file) streams a file's records with chatfmt's own readers, so record numbers,
  bad lines, NaN/duplicate keys and unreadable files are handled exactly as locally. (Ray's
  ``read_json`` / ``read_parquet`` number no records and fail a whole file on one bad line, which
  would break ``read = written + rejected``.) The files must be readable at the same path on every
  node (a shared or object-store-backed file system), and chatfmt installed there.
- *encode* is :func:`~chatfmt.train.encoder.encode_records` in a pool of Ray actors, each loading
  the format and tokenizer once.
- the driver receives the outcomes in input order (``preserve_order``), regroups them into the
  same batches as the local engine and writes them with the same sinks: the output file, rows,
  row groups, rejects and report are those of ``--engine local``.

The write happens on the driver (one output file, renamed into place atomically, packing across
the whole stream); the cluster does the reading, parsing, rendering and tokenizing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .encoder import EncodeOptions, Loader, Outcome, encode_records
from .readers import READERS, RawRecord, iter_jsonl

#: records a read task hands on at a time
READ_BATCH = 1024


def _records_table(records: list[RawRecord]) -> Any:
    import pyarrow as pa

    return pa.table({
        "source": pa.array([r.source for r in records], pa.string()),
        "record": pa.array([r.record for r in records], pa.int64()),
        "data": pa.array([json.dumps(r.data, ensure_ascii=False) if r.raw is None and r.error is None else None
                          for r in records], pa.string()),
        "raw": pa.array([r.raw for r in records], pa.binary()),
        "error": pa.array([r.error for r in records], pa.string()),
    })


def _read_files(batch: Any) -> Iterator[Any]:
    """Ray UDF: the records of each file in the batch, ``READ_BATCH`` at a time."""
    out: list[RawRecord] = []
    for name in batch.column("path").to_pylist():
        path = Path(name)
        for rec in READERS.get(path.suffix.lower(), iter_jsonl)(path):
            out.append(rec)
            if len(out) >= READ_BATCH:
                yield _records_table(out)
                out = []
    if out:
        yield _records_table(out)


_OUTCOME_FIELDS = (
    "source", "record", "input_ids", "labels", "attention_mask", "truncated", "rule", "message", "fatal", "not_rendered"
)


class _Encode:
    """Ray actor UDF: loads the format and tokenizer once, encodes record batches."""

    def __init__(self, fmt: Loader, tok: Loader, opts: EncodeOptions) -> None:
        self.fmt, self.tok, self.opts = fmt.get(), tok.get(), opts

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        records = []
        for source, record, data, raw, error in zip(*(batch.column(c).to_pylist() for c in ("source", "record", "data", "raw", "error"))):
            parsed = json.loads(data) if data is not None else None
            records.append(RawRecord(source, record, parsed, error, raw))
        outcomes = encode_records(self.fmt, self.tok, records, self.opts)
        ids = pa.list_(pa.int32())
        schema = pa.schema([
            ("source", pa.string()), ("record", pa.int64()), ("input_ids", ids), ("labels", ids),
            ("attention_mask", pa.list_(pa.int8())), ("truncated", pa.bool_()), ("rule", pa.string()),
            ("message", pa.string()), ("fatal", pa.bool_()), ("not_rendered", pa.list_(pa.string())),
        ])
        return pa.Table.from_pylist([o.to_dict() for o in outcomes], schema=schema)


def ray_engine(
    files: list[Path], fmt: Loader, tok: Loader, opts: EncodeOptions, batch_size: int, address: str | None
) -> Iterator[list[Outcome]]:
    """Outcomes of every record of ``files``, in order, in batches of ``batch_size`` (see the module doc)."""
    try:
        import ray
        import ray.data
    except ImportError:
        from ..errors import ChatfmtError

        raise ChatfmtError("--engine ray needs Ray Data: pip install 'chatfmt[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
        ds: ray.data.Dataset = ray.data.from_items([{"path": str(p)} for p in files], override_num_blocks=len(files))
        ds = ds.map_batches(_read_files, batch_size=1, batch_format="pyarrow")
        ds = ds.map_batches(
            _Encode,
            batch_size=batch_size,
            batch_format="pyarrow",
            fn_constructor_kwargs={"fmt": fmt, "tok": tok, "opts": opts},
            compute=ray.data.ActorPoolStrategy(size=actors),
        )
        pending: list[Outcome] = []
        table: Any  # a pyarrow.Table (batch_format="pyarrow"); pyarrow has no type information
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in table.select(list(_OUTCOME_FIELDS)).to_pylist():
                row["not_rendered"] = tuple(row["not_rendered"] or ())
                pending.append(Outcome(**row))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                del pending[:batch_size]
        if pending:
            yield pending
    finally:
        if started:
            ray.shutdown()
