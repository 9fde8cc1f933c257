"""Encoding inside Hugging Face ``datasets``: a function for ``Dataset.map(fn, batched=True)``.

It runs the same per-batch step as ``chatfmt prepare`` (:func:`~chatfmt.train.encoder.encode_records`)
on the rows of a batch, each row being one record (``messages``, ``conversations`` + ``tools``,
``prompt``/``response``, ShareGPT or Alpaca columns; null fields, which Arrow structs give every
row, count as absent).

Rejected records: by default every input row gets an output row and a string column ``error``
(``None`` for encoded rows; ``"<rule>: <message>"`` for rejected ones, whose ``input_ids`` /
``labels`` / ``attention_mask`` are empty and ``length`` 0), so nothing vanishes silently: count
them, then ``ds.filter(lambda e: e["error"] is None)``. With ``rejected="drop"`` they are left out
instead; ``datasets`` then needs every input column removed (``remove_columns=ds.column_names``),
because the batch changes length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from ..formats.base import unread_template_kwargs, warn_not_rendered
from .encoder import EncodeOptions, Loader, encode_records
from .readers import RawRecord, _drop_nulls

#: the source name of a ``datasets`` row (in rejections, and for a dataset's layout)
DATASET_SOURCE = "<dataset>"
OUTPUT_COLUMNS = ("input_ids", "labels", "attention_mask", "length", "error")


class DatasetMapFunction:
    """The callable :func:`dataset_map_function` returns (picklable when the format and tokenizer
    are given as names or paths, so ``num_proc > 1`` and the ``datasets`` cache work)."""

    def __init__(self, format: Any, tokenizer: Any, opts: EncodeOptions, rejected: str) -> None:
        self.format = Loader("format", format)
        self.tokenizer = Loader("tokenizer", tokenizer)
        self.opts = opts
        self.rejected = rejected
        self._checked = False

    def check_template_kwargs(self) -> None:
        """Warn (:class:`~chatfmt.errors.NotRenderedWarning`) about template keyword arguments the
        format never reads, once per process."""
        if self._checked:
            return
        self._checked = True
        fmt = self.format.get()
        unread = unread_template_kwargs(fmt, dict(self.opts.template_kwargs))
        if unread:
            warn_not_rendered(getattr(getattr(fmt, "info", None), "name", str(fmt)), unread, stacklevel=3)

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if self.opts.template_kwargs and not self._checked:
            self.check_template_kwargs()
        columns = list(batch)
        n = len(batch[columns[0]]) if columns else 0
        records = [
            RawRecord(DATASET_SOURCE, i + 1, _drop_nulls({c: batch[c][i] for c in columns})) for i in range(n)
        ]
        out: dict[str, list[Any]] = {c: [] for c in OUTPUT_COLUMNS}
        for o in encode_records(self.format.get(), self.tokenizer.get(), records, self.opts):
            if o.fatal:
                raise o.length_error()
            if o.rule is not None and self.rejected == "drop":
                continue
            ids = o.input_ids or []
            out["input_ids"].append(ids)
            out["labels"].append(o.labels or [])
            out["attention_mask"].append(o.attention_mask or [])
            out["length"].append(len(ids))
            out["error"].append(None if o.rule is None else f"{o.rule}: {o.message}")
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"format": self.format, "tokenizer": self.tokenizer, "opts": self.opts, "rejected": self.rejected}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.format, self.tokenizer = state["format"], state["tokenizer"]
        self.opts, self.rejected = state["opts"], state["rejected"]
        self._checked = False


def dataset_map_function(
    format: Any,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    truncation: Literal["error", "right", "drop_oldest_turns", "skip"] = "error",
    train_on: str = "all_assistant",
    input_kind: str | None = None,
    rejected: Literal["column", "drop"] = "column",
    ignore_keys: tuple[str, ...] | list[str] = (),
    allow_missing_tokens: bool = False,
    template_kwargs: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    dataset_info: str | Path | None = None,
) -> DatasetMapFunction:
    """A function for ``datasets.Dataset.map(fn, batched=True, ...)`` that encodes each row (a
    record) into ``input_ids``, ``labels``, ``attention_mask``, ``length`` and ``error`` (see the
    module doc for rejected records). Options as :func:`chatfmt.prepare` (``ignore_keys`` and
    ``allow_missing_tokens`` too: a tokenizer lacking a token the format relies on is refused, here for
    objects, on first use for names and paths); ``truncation="error"``
    raises :class:`~chatfmt.encode.LengthError` for an over-length record, ``"skip"`` rejects it.

    ``template_kwargs`` (``{"enable_thinking": False}``) go to the render of every row (in every
    ``num_proc`` process); one the format never reads is reported here, once (a
    :class:`~chatfmt.errors.NotRenderedWarning`), when the format is given as an object, else on
    first use.

    ``dataset`` (with ``dataset_info``, LLaMA-Factory's ``dataset_info.json`` or its directory):
    every row is read with that dataset's formatting, column and tag mapping (see
    :mod:`chatfmt.train.dataset_info`), as ``prepare --dataset`` reads its files.

    ``format`` / ``tokenizer``: objects or names/paths (loaded on first use in each process)::

        fn = chatfmt.train.dataset_map_function("chatglm3", "path/to/chatglm3", max_length=2048,
                                                truncation="skip")
        ds = ds.map(fn, batched=True, remove_columns=ds.column_names)
        ds = ds.filter(lambda e: e["error"] is None)
    """
    opts = EncodeOptions(max_length, truncation, train_on, input_kind, tuple(ignore_keys))
    if allow_missing_tokens:
        opts = replace(opts, allow_missing_tokens=True)
    elif not isinstance(format, (str, Path)) and not isinstance(tokenizer, (str, Path)):
        # objects: refused now; names and paths are loaded (and checked) on first use in each process
        from ..compat import check_tokenizer

        check_tokenizer(format, tokenizer)
    opts = opts.with_template_kwargs(template_kwargs)
    if dataset is not None or dataset_info is not None:
        from .dataset_info import DatasetInfoError, load_dataset_info

        if dataset is None or dataset_info is None or input_kind is not None:
            raise DatasetInfoError("dataset_map_function: give dataset and dataset_info together, without input_kind")
        (found,) = load_dataset_info(dataset_info, [dataset])
        opts = replace(opts, layouts=((DATASET_SOURCE, found.layout),))
    opts.check()
    if rejected not in ("column", "drop"):
        raise ValueError(f"rejected must be 'column' or 'drop', not {rejected!r}")
    if isinstance(format, Path):
        format = str(format)
    fn = DatasetMapFunction(format, tokenizer, opts, rejected)
    if opts.template_kwargs and not isinstance(format, str):
        fn.check_template_kwargs()
    return fn
