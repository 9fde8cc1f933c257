"""LLaMA-Factory's ``dataset_info.json``: the datasets it names, read with their own column and tag
mapping.

An entry (``"NAME": {"file_name", "formatting"?, "columns"?, "tags"?, ...}``, as LLaMA-Factory's
``data/README.md`` describes it) says which file or folder holds the records (``file_name``, relative
to the directory of ``dataset_info.json``), whether they are ``alpaca`` (the default) or ``sharegpt``,
which columns hold what (``prompt``/``query``/``response``/``history``/``messages``/``system``/
``tools``; ``images``/``videos``/``audios``/``chosen``/``rejected``/``kto_tag`` too), and, for
sharegpt, which message keys and role values mean what (``role_tag``, ``content_tag``, ``user_tag``,
``assistant_tag``, ``observation_tag``, ``function_tag``, ``system_tag``). :class:`Layout` turns each
record into chatfmt's own alpaca or sharegpt shape, so the record kinds' parsers read it with their
usual rules, and adds LLaMA-Factory's own checks of a sharegpt conversation (human/observation at odd
positions and gpt/function_call at even ones after an optional first system message, an even number
of turns: rule ``turn_order``; LLaMA-Factory skips such a record with a log line).

LLaMA-Factory's ``mask_history`` (train only the last turn) is ``train_on="last_assistant"``
(``--train-on last_assistant``).

Refused, in one line naming the dataset, before any record is read (:class:`DatasetInfoError`): a
name not in the file, an entry read from a hub or a script (``hf_hub_url``, ``ms_hub_url``,
``script_url``, ``cloud_file_name``: chatfmt reads local files), a preference entry (``ranking``),
``num_samples`` (LLaMA-Factory draws a random sample), a ``split`` other than ``train``, a
``formatting`` other than alpaca/sharegpt, unknown column or tag names, a file that is not JSON, JSONL
or Parquet. Per record (with the rules of :func:`~chatfmt.messages.check_record_keys`): media,
KTO tags and preference columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetInfoError, ValidationError
from .readers import SUFFIXES, expand_inputs

#: ``columns`` names and their defaults (alpaca reads prompt, query, response, history, system and
#: tools; sharegpt messages, system and tools; a column the description does not map is not read, as
#: in LLaMA-Factory)
COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None,
           "messages": "conversations", "system": None, "tools": None}
#: columns that make a record something else than supervised data (rejected per record with their rule)
OTHER_COLUMNS = ("images", "videos", "audios", "chosen", "rejected", "kto_tag")
TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
#: keys of an entry that name where the data comes from when it is not a local file
_REMOTE = ("hf_hub_url", "ms_hub_url", "script_url", "cloud_file_name")
_KNOWN = {"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags", *_REMOTE}
#: the ``from`` value chatfmt's sharegpt parser reads for each LLaMA-Factory tag
_CHATFMT_FROM = {"user_tag": "human", "assistant_tag": "gpt", "observation_tag": "observation",
                 "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True)
class Layout:
    """How one dataset's records map onto chatfmt's alpaca or sharegpt record (picklable: it travels
    to worker processes and Ray actors with the encode options)."""

    name: str
    formatting: str
    #: (LLaMA-Factory column name, the record key holding it)
    columns: tuple[tuple[str, str], ...]
    #: (tag name, value), every tag filled in (sharegpt)
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        """The chatfmt record kind the mapped records are parsed as."""
        return self.formatting

    def convert(self, record: Any) -> Any:
        """``record`` in chatfmt's alpaca or sharegpt shape (a record that is not an object is left
        to the parser to refuse)."""
        if not isinstance(record, dict):
            return record
        cols = dict(self.columns)
        out: dict[str, Any] = {}
        for name in OTHER_COLUMNS:  # checked per record by check_record_keys
            key = cols.get(name)
            if key is not None and record.get(key) is not None:
                out[name] = record[key]
        if self.formatting == "alpaca":
            return self._alpaca(record, cols, out)
        return self._sharegpt(record, cols, out)

    def _alpaca(self, record: dict[str, Any], cols: dict[str, str], out: dict[str, Any]) -> dict[str, Any]:
        for name, chatfmt_key in (("prompt", "instruction"), ("query", "input"), ("response", "output"),
                                  ("history", "history"), ("system", "system"), ("tools", "tools")):
            key = cols.get(name)
            if key is not None and key in record:
                out[chatfmt_key] = record[key]
        return out

    def _sharegpt(self, record: dict[str, Any], cols: dict[str, str], out: dict[str, Any]) -> dict[str, Any]:
        tags = dict(self.tags)
        role_key, content_key = tags["role_tag"], tags["content_tag"]
        to_from = {tags[t]: f for t, f in _CHATFMT_FROM.items()}
        turns = record.get(cols["messages"])
        if not isinstance(turns, list):
            out["conversations"] = turns  # the parser says what is wrong with it
            return out
        mapped = []
        for i, t in enumerate(turns):
            if not isinstance(t, dict):
                mapped.append(t)
                continue
            role = t.get(role_key)
            if not isinstance(role, str) or role not in to_from:
                known = ", ".join(repr(tags[k]) for k in _CHATFMT_FROM)
                raise ValidationError(
                    f"{role_key!r} is {role!r}, not one of the dataset's tags ({known})", index=i, rule="role"
                )
            rest = {k: v for k, v in t.items() if k not in (role_key, content_key)}
            mapped.append({**rest, "from": to_from[role], "value": t.get(content_key)})
        _check_turn_order(mapped)
        out["conversations"] = mapped
        for name in ("system", "tools"):
            key = cols.get(name)
            if key is not None and key in record:
                out[name] = record[key]
        return out


def _check_turn_order(turns: list[Any]) -> None:
    """LLaMA-Factory's rule for a sharegpt conversation: after an optional first system message,
    user or observation turns at odd positions (1st, 3rd, ...) and assistant or function-call turns at
    even ones, and as many of one as of the other (it ends with the answer)."""
    start = 1 if turns and isinstance(turns[0], dict) and turns[0].get("from") == "system" else 0
    for i in range(start, len(turns)):
        t = turns[i]
        role = t.get("from") if isinstance(t, dict) else None
        want = ("human", "observation") if (i - start) % 2 == 0 else ("gpt", "function_call")
        if role not in want:
            where = "a user or observation turn" if want[0] == "human" else "an assistant or function call turn"
            raise ValidationError(
                f"turn {i - start + 1} after the system prompt must be {where}, not {role!r} (LLaMA-Factory skips "
                "this record)",
                index=i,
                rule="turn_order",
            )
    if (len(turns) - start) % 2:
        raise ValidationError(
            "the conversation does not end with an assistant or function call turn (an odd number of turns; "
            "LLaMA-Factory skips this record)",
            index=len(turns) - 1,
            rule="turn_order",
        )


@dataclass(frozen=True)
class Dataset:
    """One dataset of a ``dataset_info.json``: its files and their :class:`Layout`."""

    name: str
    files: tuple[Path, ...]
    layout: Layout


def _fail(info: Path, name: str, message: str) -> DatasetInfoError:
    return DatasetInfoError(f"{info}: dataset {name!r}: {message}")


def _mapping(info: Path, name: str, entry: dict[str, Any], key: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    given = entry.get(key) or {}
    if not isinstance(given, dict):
        raise _fail(info, name, f"{key!r} must be an object")
    allowed = set(defaults) | (set(OTHER_COLUMNS) if key == "columns" else set())
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise _fail(info, name, f"unknown {key[:-1]} {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    bad = [k for k, v in given.items() if v is not None and not (isinstance(v, str) and v)]
    if bad:
        raise _fail(info, name, f"{key[:-1]} {bad[0]!r} must be a non-empty string")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def load_dataset_info(path: str | Path, names: Iterable[str]) -> list[Dataset]:
    """The datasets ``names`` of the ``dataset_info.json`` at ``path`` (a file, or the directory
    holding it), in order. Raises :class:`DatasetInfoError` (see the module doc)."""
    info = Path(path)
    if info.is_dir():
        info = info / "dataset_info.json"
    try:
        text = info.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetInfoError(f"{info}: no such file (LLaMA-Factory's dataset_info.json)") from None
    except OSError as e:
        raise DatasetInfoError(f"{info}: {e.strerror or e}") from None
    try:
        table = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetInfoError(f"{info}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(table, dict):
        raise DatasetInfoError(f"{info}: expected an object of dataset descriptions")
    out = []
    seen: dict[Path, str] = {}
    for name in names:
        entry = table.get(name)
        if entry is None:
            known = ", ".join(sorted(table)[:10]) or "none"
            raise DatasetInfoError(f"{info}: no dataset {name!r} (it has: {known})")
        if not isinstance(entry, dict):
            raise _fail(info, name, "the description must be an object")
        ds = _dataset(info, name, entry)
        for f in ds.files:
            if f in seen and seen[f] != name:
                raise _fail(info, name, f"{f} is also dataset {seen[f]!r}; one file, one layout")
            seen[f] = name
        out.append(ds)
    return out


def _dataset(info: Path, name: str, entry: dict[str, Any]) -> Dataset:
    remote = [k for k in _REMOTE if entry.get(k)]
    if remote:
        raise _fail(info, name, f"it is read from {remote[0]} ({entry[remote[0]]!r}); chatfmt reads local files "
                                "(download it and give file_name)")
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise _fail(info, name, f"unknown key {unknown[0]!r}")
    if entry.get("ranking"):
        raise _fail(info, name, "a preference dataset (ranking): prepare writes supervised fine-tuning rows, which "
                                "would train the wrong answer or none")
    if entry.get("num_samples") is not None:
        raise _fail(info, name, "num_samples: LLaMA-Factory draws a random sample of that size, which chatfmt "
                                "cannot reproduce; cut the file instead")
    if entry.get("split", "train") != "train":
        raise _fail(info, name, f"split {entry['split']!r}: a local file is LLaMA-Factory's 'train' split only")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise _fail(info, name, f"formatting {formatting!r} (chatfmt reads alpaca and sharegpt)")
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise _fail(info, name, "no file_name")
    where = info.parent / file_name
    if not where.exists():
        raise _fail(info, name, f"file_name {file_name!r}: {where} does not exist")
    files = tuple(expand_inputs([where]))
    odd = [f for f in files if f.suffix.lower() not in SUFFIXES]
    if odd:
        raise _fail(info, name, f"{odd[0]}: chatfmt reads .json, .jsonl and .parquet files")
    columns = _mapping(info, name, entry, "columns", COLUMNS)
    if formatting == "alpaca":
        if "tags" in entry:
            raise _fail(info, name, "tags are for the sharegpt formatting")
        tags: dict[str, Any] = {}
    else:
        tags = _mapping(info, name, entry, "tags", TAGS)
        values = [tags[t] for t in _CHATFMT_FROM]
        if len(set(values)) != len(values):
            raise _fail(info, name, "two role tags have the same value")
    layout = Layout(
        name,
        formatting,
        tuple((k, v) for k, v in columns.items() if v is not None),
        tuple(tags.items()),
    )
    return Dataset(name, files, layout)


__all__ = ["Dataset", "DatasetInfoError", "Layout", "load_dataset_info"]
