"""Prepared data as Hugging Face ``datasets``: a ``save_to_disk`` directory, or the objects themselves.

- ``prepare(..., output_format="arrow")`` (``chatfmt prepare --output-format arrow -o DIR``) writes
  ``DIR`` as ``DatasetDict({"train": ...}).save_to_disk(DIR)`` does: ``datasets.load_from_disk(DIR)``
  reads it, and so does LLaMA-Factory's ``tokenized_path`` (it loads a ``DatasetDict`` and takes its
  ``train`` / ``validation`` splits). Rejected records go to ``DIR.rejects.jsonl`` beside it. The
  columns are the ones trainers take as they are, so a stock collator takes every column
  (transformers' ``DataCollatorForSeq2Seq``, LLaMA-Factory's, which keep all columns):
  ``input_ids``, ``labels``, ``attention_mask``, ``length`` and, packed, ``position_ids`` and
  ``seq_lengths``. The provenance columns of the Parquet / JSONL outputs (``source``, ``record``,
  ``sources``, ``records``: strings a collator cannot pad) are left out of this layout; the
  rejects file and the report name records as always.
- :func:`prepare_dataset`: the same run, returned as a ``datasets.Dataset`` (or, with
  ``eval_inputs``, a ``DatasetDict`` with ``train`` and ``validation``), saved to ``output`` when
  given, else held in memory.

The run itself is :func:`~chatfmt.train.prepare` into a Parquet file in a work directory beside the
output; the directory appears atomically (written under a hidden name, renamed into place; an
earlier ``save_to_disk`` directory at that path is replaced, anything else there is refused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ChatfmtError, ChatfmtWarning
from .report import Report

#: the columns of the ``arrow`` layout, unpacked and packed
TRAINER_COLUMNS = ("input_ids", "labels", "attention_mask", "length")
PACKED_COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids", "seq_lengths", "length")
#: files ``save_to_disk`` leaves in a directory: one of them marks a directory this may replace
_DATASETS_MARKERS = ("dataset_dict.json", "state.json")


def _require_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ChatfmtError("datasets output needs the datasets package: pip install 'chatfmt[train]'") from None
    return datasets


def _check_dir(output: Path) -> None:
    from .pipeline import OutputError

    if not output.parent.is_dir():
        raise OutputError(f"cannot write the output {output}: {output.parent} does not exist")
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise OutputError(f"cannot write the output {output}: it exists and is not a directory "
                          "(--output-format arrow writes a datasets directory)")
    if output.is_dir() and any(output.iterdir()) and not any((output / m).is_file() for m in _DATASETS_MARKERS):
        raise OutputError(f"cannot write the output {output}: a directory that is not a datasets "
                          "save_to_disk output is there; it is not replaced")


def _load_parquet(path: Path, packed: bool) -> Any:
    """The Parquet output as an in-memory ``datasets.Dataset`` of the trainer columns."""
    datasets = _require_datasets()
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    columns = PACKED_COLUMNS if packed else TRAINER_COLUMNS
    table = pq.read_table(str(path), columns=list(columns))
    if table.num_rows == 0:  # no row group at all: datasets wants one (empty) chunk a column
        import pyarrow as pa

        table = pa.Table.from_arrays([pa.array([], f.type) for f in table.schema], schema=table.schema)
    return datasets.Dataset(InMemoryTable(table.replace_schema_metadata(None)))


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` without ``datasets``' progress bars (chatfmt reports the run itself)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return fn(*args)
    finally:
        if was:
            datasets.enable_progress_bars()


def _replace_dir(tmp: Path, output: Path) -> None:
    """Move the finished directory ``tmp`` to ``output`` (an earlier one there is replaced)."""
    old = output.with_name(f".{output.name}.{os.getpid()}.old")
    if output.exists():
        os.replace(output, old)
    try:
        os.replace(tmp, output)
    except BaseException:
        if old.exists() and not output.exists():
            os.replace(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _run(splits: dict[str, Any], format: Any, tokenizer: Any, output: Path | None,
         prepare: Callable[..., Report], options: dict[str, Any]) -> tuple[Any, dict[str, Report]]:
    """Prepare each split into Parquet in a work directory; the ``DatasetDict`` of them, saved to
    ``output`` when given (rejects: ``output.rejects.jsonl``, the splits' rejects one after another)."""
    datasets = _require_datasets()
    from .pipeline import rejects_path

    packed = options.get("pack") is not None
    base = output.parent if output is not None else None
    if output is not None:
        _check_dir(output)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}." if output else "chatfmt-", dir=base))
    reports: dict[str, Report] = {}
    try:
        parts = {}
        rejects: list[Path] = []
        for split, inputs in splits.items():
            parquet = work / f"{split}.parquet"
            reports[split] = prepare(inputs, format, tokenizer, parquet, **{**options, "output_format": "parquet"})
            rejects.append(rejects_path(parquet))
            parts[split] = _load_parquet(parquet, packed)
        dd = datasets.DatasetDict(parts)
        if output is not None:
            target = work / "dataset"
            _quietly(dd.save_to_disk, str(target))
            merged = work / "rejects.jsonl"
            with merged.open("wb") as out:
                for r in rejects:
                    out.write(r.read_bytes())
            _replace_dir(target, output)
            os.replace(merged, rejects_path(output))
            for rep in reports.values():
                rep.output, rep.rejects = str(output), str(rejects_path(output))
            if all(len(part) for part in parts.values()):  # datasets 5 cannot load back a split with no rows
                dd = datasets.load_from_disk(str(output))  # memory-mapped from the saved files
        return dd, reports
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare_arrow(prepare: Callable[..., Report], args: dict[str, Any]) -> Report:
    """``prepare(..., output_format="arrow")``: the run as a ``save_to_disk`` directory (see the module doc)."""
    args = dict(args)
    inputs, format, tokenizer, output = (args.pop(k) for k in ("inputs", "format", "tokenizer", "output"))
    args.pop("output_format", None)
    _, reports = _run({"train": inputs}, format, tokenizer, Path(output), prepare, args)
    return reports["train"]


def prepare_dataset(
    inputs: str | Path | Iterable[str | Path],
    format: Any,
    tokenizer: Any,
    *,
    output: str | Path | None = None,
    eval_inputs: str | Path | Iterable[str | Path] | None = None,
    return_report: bool = False,
    **options: Any,
) -> Any:
    """:func:`chatfmt.prepare` straight into ``datasets``: a ``Dataset`` of ``input_ids``,
    ``labels``, ``attention_mask``, ``length`` (packed: ``position_ids``, ``seq_lengths`` too), or
    with ``eval_inputs`` a ``DatasetDict`` with ``train`` and ``validation`` (LLaMA-Factory's split
    names). ``output``: a directory to ``save_to_disk`` it into (always a ``DatasetDict``, for
    ``load_from_disk`` and LLaMA-Factory's ``tokenized_path``; rejects in ``OUTPUT.rejects.jsonl``);
    without it the data is held in memory. ``options`` are :func:`chatfmt.prepare`'s (``max_length``,
    ``truncation``, ``pack``, ``workers``, ``template_kwargs``, ...).

    Rejected records are never dropped in silence: a :class:`~chatfmt.errors.ChatfmtWarning` counts
    them by rule (and names the rejects file when there is one); ``return_report=True`` returns
    ``(dataset, reports)``, the :class:`~chatfmt.train.Report` of each split by name::

        ds = chatfmt.prepare_dataset("data/", "qwen2.5", "Qwen/Qwen2.5-0.5B-Instruct", max_length=2048,
                                     truncation="skip")
        SFTTrainer(model, processing_class=tok, train_dataset=ds, args=SFTConfig(...))
    """
    from .pipeline import prepare

    if options.get("output_format") not in (None, "arrow"):
        raise ValueError("prepare_dataset writes datasets; output_format is not an option here")
    options.pop("output_format", None)
    splits = {"train": inputs} if eval_inputs is None else {"train": inputs, "validation": eval_inputs}
    dd, reports = _run(splits, format, tokenizer, Path(output) if output is not None else None, prepare, options)
    for split, rep in reports.items():
        if rep.rejected:
            by_rule = ", ".join(f"{k}: {v}" for k, v in sorted(rep.rejected_by_rule.items()))
            where = f"; see {rep.rejects}" if output is not None else " (pass output= to keep them in a rejects file)"
            warnings.warn(f"prepare_dataset: {split}: {rep.rejected} of {rep.read} records rejected ({by_rule}){where}",
                          ChatfmtWarning, stacklevel=2)
    result = dd["train"] if eval_inputs is None else dd
    return (result, reports) if return_report else result
