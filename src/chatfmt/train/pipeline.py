"""``prepare``: records -> validated conversations -> encoded rows, written atomically, with a report.

Flow: :func:`~chatfmt.train.readers.iter_raw_records` streams raw records; an *engine* turns
batches of them into :class:`~chatfmt.train.encoder.Outcome` lists, in input order, by running
:func:`~chatfmt.train.encoder.encode_records` on each batch:

- ``local`` (default): in this process, or with ``workers > 1`` in that many spawned worker
  processes (each loads the format and tokenizer once), at most ``2 * workers`` batches in flight
  so memory stays bounded; results are taken in submission order, so the output is identical to
  ``workers=1`` (the same batches, the same row groups);
- ``ray``: the same function in Ray Data ``map_batches`` (see :mod:`chatfmt.train.ray_engine`).

This process writes the outcomes: rows to a temporary file beside ``output`` that is renamed over it
at the end, so a run that fails or is killed midway leaves no (partial) output; the same for the
rejects file ``<output>.rejects.jsonl``. The output is JSONL or Parquet (one row group per batch),
and with ``pack`` examples are packed into sequences (see :mod:`chatfmt.train.writers`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Literal

from ..errors import ChatfmtError
from .encoder import TRAIN_ON, TRUNCATIONS, EncodeOptions, Loader, Outcome, encode_records
from .readers import RawRecord, expand_inputs, iter_raw_records
from .report import Rejection, Report
from .writers import (
    OUTPUT_FORMATS,
    JsonlSink,
    Packer,
    ParquetSink,
    open_sink,
    output_format_for,
    require_pyarrow,
)

PrepareTruncation = Literal["error", "right", "drop_oldest_turns", "skip"]
ENGINES = ("local", "ray")

__all__ = ["ENGINES", "OutputError", "TRAIN_ON", "TRUNCATIONS", "prepare", "rejects_path"]


class OutputError(ChatfmtError):
    """The output (or its rejects file) cannot be written: missing or read-only directory, full disk."""


def rejects_path(output: str | Path) -> Path:
    """Where the rejected records of ``output`` go: ``<output>.rejects.jsonl``."""
    return Path(f"{output}.rejects.jsonl")


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _batches(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


# -- the local engine --------------------------------------------------------------------------------

_WORKER: tuple[Any, Any, EncodeOptions] | None = None


def _worker_init(fmt: Loader, tok: Loader, opts: EncodeOptions) -> None:
    global _WORKER
    # one thread per worker: K workers use K cores (in-process, tokenizers' own threads do that)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    _WORKER = (fmt.get(), tok.get(), opts)


def _worker_run(records: list[RawRecord]) -> list[Outcome]:
    assert _WORKER is not None, "worker not initialised"
    return encode_records(*_WORKER[:2], records, _WORKER[2])


#: seconds of in-process encoding after which worker processes are started (starting one costs
#: seconds: a fresh interpreter, imports, loading the tokenizer; a smaller input never pays it)
WORKERS_AFTER = 5.0
#: threads encoding batches in this process (see :func:`local_engine`)
ENCODE_THREADS = 2


def local_engine(
    batches: Iterator[list[RawRecord]], fmt: Loader, tok: Loader, opts: EncodeOptions, workers: int
) -> Iterator[list[Outcome]]:
    """Outcomes of each batch, in order. Batches are encoded in this process for the first
    ``WORKERS_AFTER`` seconds, then (``workers > 1``) by worker processes; a batch's outcome does not
    depend on where it is encoded, so the output is the same either way.

    In this process :data:`ENCODE_THREADS` helper threads encode batches ahead of the caller: the
    tokenizer releases the GIL while it tokenizes, so one batch's Python work (JSON, validation,
    rendering, labels) runs while another is tokenized, and the caller writes batch ``i`` meanwhile.
    Results are taken in submission order. Lazily built state of a format or tokenizer may be built
    twice by racing threads; every such state gives the same output, and the whole-text encoder is
    built here first so no batch takes the slower run-by-run path while it is being built."""
    f, t = fmt.get(), tok.get()
    whole = getattr(t, "whole_text_backend", None)
    if whole is not None:
        whole()
    started = time.perf_counter()
    switch = False
    pending: deque[Future[list[Outcome]]] = deque()
    encoder = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="chatfmt-prepare")
    try:
        for batch in batches:
            pending.append(encoder.submit(encode_records, f, t, batch, opts))
            if len(pending) > ENCODE_THREADS:
                yield pending.popleft().result()
            if workers > 1 and time.perf_counter() - started > WORKERS_AFTER:
                switch = True
                break
        while pending:
            yield pending.popleft().result()
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)
    if not switch:
        return
    first = next(batches, None)
    if first is None:
        return
    import multiprocessing

    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(fmt, tok, opts)
    )
    try:
        for batch in chain([first], batches):
            pending.append(pool.submit(_worker_run, batch))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- writing -----------------------------------------------------------------------------------------


class _Writer:
    """Writes outcomes: rows to the sink (or packer), rejections to the rejects file; counts."""

    def __init__(self, out: JsonlSink | ParquetSink, rej: IO[str], report: Report, packer: Packer | None) -> None:
        self.out = out
        self.rej = rej
        self.report = report
        self.packer = packer

    def reject(self, o: Outcome, rule: str, message: str) -> None:
        self.rej.write(_dumps(Rejection(o.source, o.record, rule, message).to_dict()) + "\n")
        self.report.reject(rule)

    def batch(self, outcomes: list[Outcome]) -> None:
        r = self.report
        for o in outcomes:
            r.read += 1
            if o.fatal:
                raise o.length_error()
            if o.rule is not None:
                self.reject(o, o.rule, o.message or "")
                continue
            ids, labels, mask = o.input_ids or [], o.labels or [], o.attention_mask or []
            n = len(ids)
            if self.packer is not None:
                if n > self.packer.size:
                    self.reject(o, "pack_length", f"example is {n} tokens, over pack {self.packer.size}")
                    continue
                labels = self.packer.add(ids, labels, mask, o.source, o.record)
            else:
                self.out.write({
                    "input_ids": ids,
                    "labels": labels,
                    "attention_mask": mask,
                    "length": n,
                    "source": o.source,
                    "record": o.record,
                })
            r.written += 1
            r.tokens_total += n
            r.tokens_trained += len(labels) - labels.count(-100)
            r.truncated += o.truncated
            r.count_length(n)
        self.out.end_batch()


@contextmanager
def _writing(output: Path) -> Iterator[None]:
    """OS errors while writing the output become an :class:`OutputError` naming it."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputError(f"cannot write the output {output}: {reason}") from e


def _loaded(what: str, spec: Any) -> Any:
    """``spec`` loaded in this process (errors surface before any file is created)."""
    if not isinstance(spec, (str, Path)):
        return spec
    if what == "format":
        from ..formats.loader import load_format

        return load_format(spec)
    from ..tokenizers import load_tokenizer

    return load_tokenizer(spec)


def _provenance(format: Any, tokenizer: Any, fmt: Any, tok: Any) -> dict[str, Any]:
    """What the output was made with: the format's name and the tokenizer's path (absolute), when known."""
    def where(spec: Any, obj: Any) -> str | None:
        if isinstance(spec, (str, Path)) and Path(spec).exists():
            return str(Path(spec).resolve())
        if isinstance(spec, str):
            return spec
        src = getattr(getattr(obj, "obj", obj), "source", None) or getattr(obj, "source", None)
        return str(src) if src else None

    fmt_obj = getattr(fmt, "obj", fmt)
    info = getattr(fmt_obj, "info", None)
    return {
        "format": where(format, fmt) or (info.name if info is not None else None),
        "tokenizer": where(tokenizer, tok),
        "chatfmt_version": _version(),
    }


def _version() -> str:
    from .. import __version__

    return __version__


def prepare(
    inputs: str | Path | Iterable[str | Path],
    format: Any,
    tokenizer: Any,
    output: str | Path,
    *,
    max_length: int | None = None,
    truncation: PrepareTruncation = "error",
    train_on: str = "all_assistant",
    input_kind: str | None = None,
    batch_size: int = 256,
    output_format: str | None = None,
    pack: int | None = None,
    workers: int | None = 1,
    engine: str = "local",
    ray_address: str | None = None,
    on_record: Callable[[int], None] | None = None,
    ignore_keys: Iterable[str] = (),
) -> Report:
    """Encode every record of ``inputs`` (JSONL / JSON / Parquet files, directories, globs) with
    ``format`` and ``tokenizer`` into the dataset ``output``; returns the :class:`Report`.

    Rows are ``{"input_ids", "labels", "attention_mask", "length", "source", "record"}`` (labels
    ``-100`` where not trained); rejected records go to ``<output>.rejects.jsonl`` as ``{"source",
    "record", "rule", "message"}``; ``read == written + rejected`` always.

    ``output_format`` is ``"jsonl"`` or ``"parquet"`` (needs pyarrow; columns ``input_ids`` /
    ``labels`` list<int32>, ``attention_mask`` list<int8>, ``length`` int32, ``source`` string,
    ``record`` int64, one row group per batch); by default ``parquet`` when ``output`` ends in
    ``.parquet``, else ``jsonl``. ``pack=N`` packs the examples greedily, in order, into rows of at
    most N tokens with ``position_ids``, ``seq_lens``, ``sources`` and ``records`` (the first label
    of each packed example is -100 so labels never cross examples; see
    :mod:`chatfmt.train.writers`); an example longer than N is rejected with rule ``pack_length``.
    The report still counts examples (``written``), and ``packed_sequences`` the rows.

    ``format`` and ``tokenizer`` are objects or anything :func:`~chatfmt.load_format` /
    :func:`~chatfmt.load_tokenizer` take (with ``workers > 1`` or Ray, names/paths are loaded once
    in each worker; objects are pickled, and one that cannot be runs in this process with a warning).
    ``truncation`` is an :func:`~chatfmt.encode` strategy or ``"skip"`` (over-length records are
    rejected with rule ``max_length``); with ``"error"`` an over-length record stops the run with a
    :class:`~chatfmt.encode.LengthError` naming it, and no output is left behind. ``input_kind``
    forces the record kind (default: detected per record). ``ignore_keys`` are dropped from every
    record and message before parsing, for data where a key chatfmt acts on (a loss key such as
    ``weight`` or ``mask``, ``chosen``/``rejected``, ``images``, ...) means something else.

    ``workers``: processes for the local engine (``None``: all cores; 1: this process). ``engine``:
    ``"local"`` or ``"ray"`` (Ray Data; ``ray_address`` joins a cluster, else a local Ray instance is
    started). The output is the same whatever the engine and worker count. ``on_record(n)`` is called
    as records are written (for progress).
    """
    opts = EncodeOptions(max_length, truncation, train_on, input_kind, tuple(ignore_keys))
    opts.check()
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    if pack is not None and pack < 1:
        raise ValueError(f"pack must be at least 1, not {pack}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    out_format = output_format_for(output, output_format)
    if out_format == "parquet":
        require_pyarrow()
    fmt_l, tok_l = Loader("format", format), Loader("tokenizer", tokenizer)
    fmt_l.obj, tok_l.obj = _loaded("format", format), _loaded("tokenizer", tokenizer)
    if (workers > 1 or engine == "ray") and not (fmt_l.picklable() and tok_l.picklable()):
        if engine == "ray":
            raise ChatfmtError("--engine ray needs the format and tokenizer as names or paths (these objects do not pickle)")
        warnings.warn("the format or tokenizer object cannot be sent to worker processes; encoding in this process "
                      "(pass names or paths to use workers)", stacklevel=2)
        workers = 1
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]

    output = Path(output)
    if not output.parent.is_dir():
        what = "does not exist" if not output.parent.exists() else "is not a directory"
        raise OutputError(f"cannot write the output {output}: {output.parent} {what}")
    rejects = rejects_path(output)
    tmp_out, tmp_rej = _tmp_path(output), _tmp_path(rejects)
    records = iter_raw_records(inputs)  # a generator: checked for missing inputs on first use
    report = Report(output=str(output), rejects=str(rejects), engine=engine, workers=workers)
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            if engine == "ray":
                from .ray_engine import ray_engine

                files = expand_inputs(inputs)  # raises InputError before any file is created
                outcomes = ray_engine(files, fmt_l, tok_l, opts, batch_size, ray_address)
            else:
                first = next(records, None)  # raises InputError before any file is created
                records = chain([first], records) if first is not None else iter(())
                outcomes = local_engine(_batches(records, batch_size), fmt_l, tok_l, opts, workers)
            stack.callback(getattr(outcomes, "close", lambda: None))
            with _writing(output):
                out = open_sink(tmp_out, out_format, packed=pack is not None, metadata=_provenance(format, tokenizer, fmt_l, tok_l))
                stack.callback(out.close)
                rej = stack.enter_context(tmp_rej.open("w", encoding="utf-8"))
            packer = Packer(pack, out) if pack is not None else None
            writer = _Writer(out, rej, report, packer)
            for batch in outcomes:
                with _writing(output):
                    writer.batch(batch)
                if on_record is not None:
                    on_record(len(batch))
            with _writing(output):
                if packer is not None:
                    packer.emit()
                    out.end_batch()
                    report.packed_sequences = packer.packed
                stack.close()
        report.check()
        with _writing(output):
            os.replace(tmp_rej, rejects)
            os.replace(tmp_out, output)
    except BaseException:
        for p in (tmp_out, tmp_rej):
            with suppress(OSError):
                p.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - started
    return report
