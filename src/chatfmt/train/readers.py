"""Dataset readers: JSONL, JSON (an array, one object, or concatenated objects) and Parquet files, a
directory or a glob of them.

Records are streamed with where they came from (file, record number: the 1-based line for JSONL,
the 1-based position in the array for JSON, the 1-based row for Parquet). Nothing is loaded whole:
JSONL is read line by line, a JSON array element by element, Parquet batch by batch.

A record that cannot be read is yielded with an ``error`` instead of data, so it rejects itself and
never stops a run: a JSONL line that is not UTF-8 or not JSON; JSON with ``NaN``/``Infinity`` (not
JSON, though Python accepts it) or a duplicate key in an object (which would silently drop one of
the values), or a lone surrogate escape (``"\\ud800"``: not Unicode). In a JSON array or a Parquet file nothing after such a point can be located, so the
rest of the file is one rejected record (record 0 when the file does not open at all).

JSONL lines are read as bytes and decoded by :func:`decode` (in the worker processes, when there are
some): :func:`iter_raw_records` yields them undecoded, :func:`read_records` decoded.
"""

from __future__ import annotations

import codecs
import glob
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError as InputError

#: file suffixes picked up from a directory
SUFFIXES = (".jsonl", ".json", ".parquet")
#: bytes read at a time from a JSON file (doubled while one element does not fit)
JSON_CHUNK = 1 << 20
#: rows decoded at a time from a Parquet file
PARQUET_BATCH = 1024


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: its file, its number there, and the decoded JSON, an error, or the
    undecoded bytes of a JSONL line (``raw``; see :func:`decode`)."""

    source: str
    record: int
    data: Any = None
    error: str | None = None
    raw: bytes | None = None


class _StrictJSON:
    """``json`` decoding that notes what plain ``json.loads`` lets through: NaN/Infinity constants
    and duplicate object keys. One pass; the problems are collected, not raised, so that a JSON
    array element can still be skipped past."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.decoder = json.JSONDecoder(object_pairs_hook=self._object, parse_constant=self._constant)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            dup = ""
            for k, _ in pairs:
                if k in seen:
                    dup = k
                    break
                seen.add(k)
            self.problems.append(f"duplicate key {dup!r} in an object")
        return obj

    def _constant(self, name: str) -> float:
        self.problems.append(f"{name} is not valid JSON")
        return float(name.replace("Infinity", "inf"))

    def raw_decode(self, text: str, pos: int) -> tuple[Any, int, str | None]:
        """Decode one value at ``pos``: (value, end, problem or None); raises JSONDecodeError."""
        self.problems.clear()
        try:
            value, end = self.decoder.raw_decode(text, pos)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", text, pos) from None
        if not self.problems and _maybe_surrogate(text, pos, end):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as e:
                bad = e.object[e.start:e.end] if isinstance(e.object, str) else "?"
                self.problems.append(f"a lone surrogate escape (\\u{ord(bad[0]):04x}) is not valid Unicode")
        return value, end, (self.problems[0] if self.problems else None)


def _maybe_surrogate(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds a ``\\uD800``-``\\uDFFF`` escape (a cheap pre-check: JSON
    decodes a lone one into a string no tokenizer and no UTF-8 file can take)."""
    return text.find("\\ud", start, end) >= 0 or text.find("\\uD", start, end) >= 0


_STRICT = threading.local()


def _strict() -> _StrictJSON:
    """This thread's decoder (it collects problems while decoding, so threads must not share one:
    ``prepare`` reads JSON files in one thread while another decodes JSONL lines)."""
    dec: _StrictJSON | None = getattr(_STRICT, "decoder", None)
    if dec is None:
        dec = _STRICT.decoder = _StrictJSON()
    return dec


def loads_record(line: str | bytes, where: str) -> tuple[Any, str | None]:
    """Decode one JSON text (a JSONL line): ``(data, None)`` or ``(None, error message)``; ``where``
    names the place in the message (``"line 3"``)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"{where} is not valid UTF-8 (byte {e.start})"
    line = line.removeprefix("\ufeff").rstrip("\r\n")
    dec = _strict()
    start = len(line) - len(line.lstrip())
    try:
        value, end, problem = dec.raw_decode(line, start)
    except json.JSONDecodeError as e:
        return None, f"bad JSON on {where}: {e.msg} (column {e.colno})"
    if line[end:].strip():
        return None, f"bad JSON on {where}: extra data after the value (column {end + 1})"
    if problem is not None:
        return None, f"bad JSON on {where}: {problem}"
    return value, None


def decode(rec: RawRecord) -> RawRecord:
    """``rec`` with its ``raw`` JSONL line decoded into ``data`` (or an ``error``)."""
    if rec.raw is None:
        return rec
    data, error = loads_record(rec.raw, f"line {rec.record}")
    return RawRecord(rec.source, rec.record, data, error)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named by ``inputs``: files as given, directories' ``*.jsonl``/``*.json``/``*.parquet``
    files (sorted, recursively), glob patterns expanded (sorted). Raises :class:`InputError` for a
    path that does not exist, a pattern that matches nothing, or no files at all."""
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        if _has_magic(text) and not Path(text).exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise InputError(f"{text}: no files match")
            files += matches
            continue
        p = Path(text)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
            if not found:
                raise InputError(f"{text}: no .jsonl, .json or .parquet files in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{text}: no such file or directory")
    if not files:
        raise InputError("no input files")
    return files


def iter_jsonl(path: Path) -> Iterator[RawRecord]:
    """One undecoded record a non-blank line (blank lines are skipped but counted for numbering)."""
    name = str(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield RawRecord(name, lineno, raw=raw)


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """:func:`iter_jsonl`, decoded."""
    return map(decode, iter_jsonl(path))


def read_json(path: Path) -> Iterator[RawRecord]:
    """A JSON array of records, one record object, or several objects one after another; records
    are numbered from 1 by position. Streamed: one element is in memory at a time."""
    name = str(path)
    dec = _strict()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as f:
        buf, pos, eof, consumed = "", 0, False, 0
        lines, line_start = 0, 0  # line breaks before buf[0]; where the line of buf[0] starts

        def more(size: int = JSON_CHUNK) -> bool:
            nonlocal buf, pos, eof, consumed, lines, line_start
            if eof:
                return False
            chunk = f.read(size)
            eof = not chunk
            n = buf.count("\n", 0, pos)
            if n:
                lines += n
                line_start = consumed + buf.rindex("\n", 0, pos) + 1
            consumed += pos
            try:
                text = utf8.decode(chunk, final=eof)
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 (near byte {f.tell() - len(chunk) + e.start})") from None
            buf = buf[pos:] + text
            pos = 0
            return True

        def skip_ws() -> str:
            """The next non-blank character ('' at the end of the file)."""
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos] if pos < len(buf) else ""

        def where(at: int | None = None) -> str:
            """``line L, column C`` of ``buf[at]`` (default: ``pos``) in the file, both from 1."""
            at = pos if at is None else at
            n = buf.count("\n", 0, at)
            column = at - buf.rindex("\n", 0, at) if n else consumed + at - line_start + 1
            return f"line {lines + n + 1}, column {column}"

        def value() -> tuple[Any, str | None]:
            """Decode the value at pos (reading more while it is cut off by the buffer's end)."""
            nonlocal pos
            skip_ws()
            size = JSON_CHUNK
            while True:
                try:
                    data, end, problem = dec.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if more(size):
                        size = max(size, len(buf))  # doubling: linear time for a huge element
                        continue
                    raise ValueError(f"bad JSON at {where(e.pos)}: {e.msg}") from None
                if end == len(buf) and more(size):  # a number cut by the buffer's end parses too
                    continue
                pos = end
                return data, problem

        k = 0
        try:
            more()
            if buf.startswith("\ufeff"):
                pos = 1
            first = skip_ws()
            if first == "":
                return  # an empty file has no records
            if first != "[":
                while skip_ws():  # one object, or objects one after another
                    k += 1
                    data, problem = value()
                    yield RawRecord(name, k, error=f"bad JSON in record {k}: {problem}") if problem else RawRecord(name, k, data)
                return
            pos += 1
            if skip_ws() == "]":
                pos += 1
            else:
                while True:
                    k += 1
                    data, problem = value()
                    yield RawRecord(name, k, error=f"bad JSON in record {k}: {problem}") if problem else RawRecord(name, k, data)
                    c = skip_ws()
                    pos += 1
                    if c == "]":
                        break
                    if c != ",":
                        k += 1
                        raise ValueError(f"bad JSON at {where()}: expected ',' or ']' after record {k - 1}")
            if skip_ws():
                raise ValueError(f"bad JSON at {where()}: extra data after the array")
        except ValueError as e:
            rest = "" if k == 0 else "; the rest of the file is skipped"
            yield RawRecord(name, k, error=f"{e}{rest}")


def _drop_nulls(obj: Any) -> Any:
    """Parquet structs have every field in every row; a null field means "absent" in a record."""
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_nulls(v) for v in obj]
    return obj


def read_parquet(path: Path) -> Iterator[RawRecord]:
    """Rows of a Parquet file as records (null struct fields dropped), read batch by batch."""
    name = str(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{name}: reading Parquet needs pyarrow: pip install 'chatfmt[train]'") from None
    k = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                k += 1
                yield RawRecord(name, k, _drop_nulls(row))
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        where = "not a readable Parquet file" if k == 0 else f"unreadable after row {k}; the rest of the file is skipped"
        yield RawRecord(name, k + 1 if k else 0, error=f"{where}: {e}")


#: reader for a file suffix; anything else is read as JSONL
READERS: dict[str, Callable[[Path], Iterator[RawRecord]]] = {
    ".json": read_json,
    ".parquet": read_parquet,
}


def iter_raw_records(inputs: Iterable[str | Path]) -> Iterator[RawRecord]:
    """Every record of every input file, in order; JSONL lines undecoded (see :func:`decode`)."""
    for path in expand_inputs(inputs):
        yield from READERS.get(path.suffix.lower(), iter_jsonl)(path)


def read_records(inputs: Iterable[str | Path]) -> Iterator[RawRecord]:
    """Every record of every input file, in order, decoded (see :func:`expand_inputs`)."""
    return map(decode, iter_raw_records(inputs))


__all__ = [
    "InputError",
    "RawRecord",
    "decode",
    "expand_inputs",
    "iter_raw_records",
    "loads_record",
    "read_json",
    "read_jsonl",
    "read_parquet",
    "read_records",
]
