"""Training data preparation: read dataset files, validate and encode records, write a dataset.

:func:`prepare` streams JSONL / JSON / Parquet files through :func:`chatfmt.messages.parse_record`
and :func:`chatfmt.encode_batch` into a JSONL or Parquet dataset (optionally packed), on this
machine (``workers`` processes) or on Ray, with every rejected record written beside it and a
:class:`Report` of what happened. :func:`dataset_map_function` does the same encoding inside
``datasets.Dataset.map``; :func:`prepare_dataset` returns the prepared rows as a ``datasets.Dataset``.
"""

from __future__ import annotations

from .datasets_out import prepare_dataset
from .encoder import EncodeOptions, Outcome, encode_records
from .hf import dataset_map_function
from .pipeline import prepare
from .readers import InputError, RawRecord, expand_inputs, read_records
from .report import Rejection, Report

__all__ = [
    "EncodeOptions",
    "InputError",
    "Outcome",
    "RawRecord",
    "Rejection",
    "Report",
    "dataset_map_function",
    "encode_records",
    "expand_inputs",
    "prepare",
    "prepare_dataset",
    "read_records",
]
