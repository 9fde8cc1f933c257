"""Looking at prepared rows: which tokens are trained, which are control tokens, where packed
examples start.

:func:`read_rows` reads rows of a ``chatfmt prepare`` output (JSONL or Parquet, plain or packed);
:func:`row_view` turns one row into an :class:`ExampleView` (its tokens with their decoded text,
label, position and control flag, grouped into the examples it holds); :func:`rich_view` and
:func:`html_page` render views for the terminal and as one self-contained HTML page.

Token text is decoded as a stream (each token's text is what it adds to the decoded text of the
tokens before it), so a character split over several byte tokens appears once, on the token that
completes it; the tokens before carry no text and are flagged ``partial``. Without a tokenizer the
views hold ids only. Row contents are untrusted: the page escapes every text and attribute, and its
Content-Security-Policy allows no script and no network.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InspectError as InspectError

if TYPE_CHECKING:
    from ..types import TokenizerLike

IGNORE_INDEX = -100
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True, slots=True)
class TokenView:
    """One token of a row."""

    id: int
    #: decoded text; "" for a byte token that only starts a character, and without a tokenizer
    text: str | None
    label: int
    #: index in the row
    position: int
    #: index in its example (differs from ``position`` in packed rows)
    position_id: int
    control: bool = False
    #: part of a multi-byte character completed by a later token (its text is on that token)
    partial: bool = False

    @property
    def trained(self) -> bool:
        return self.label != IGNORE_INDEX


@dataclass(frozen=True, slots=True)
class SequenceView:
    """One example inside a row (a plain row holds one; a packed row several)."""

    source: str | None
    record: int | None
    tokens: tuple[TokenView, ...]

    @property
    def trained(self) -> int:
        return sum(t.trained for t in self.tokens)

    @property
    def where(self) -> str:
        """``source:record`` as far as known."""
        if self.source is None and self.record is None:
            return "?"
        return f"{self.source or '?'}:{self.record if self.record is not None else '?'}"


@dataclass(frozen=True, slots=True)
class ExampleView:
    """One row of a prepared dataset."""

    index: int
    packed: bool
    sequences: tuple[SequenceView, ...]
    #: whether token texts were decoded (a tokenizer was given)
    decoded: bool

    @property
    def length(self) -> int:
        return sum(len(s.tokens) for s in self.sequences)

    @property
    def trained(self) -> int:
        return sum(s.trained for s in self.sequences)


# -- reading ----------------------------------------------------------------------------------


def read_rows(path: str | Path, *, start: int = 0, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row index, row)`` of a prepare output from row ``start``, at most ``limit`` rows.

    Parquet is recognised by its magic bytes, anything else is read as JSONL (blank lines are not
    rows). Raises :class:`InspectError` for a missing file or a line that is not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise InspectError("no such file", source=str(p))
    if start < 0:
        raise ValueError(f"start must be >= 0, not {start}")
    if limit is not None and limit <= 0:
        return
    with p.open("rb") as f:
        magic = f.read(4)
    rows = _parquet_rows(p, start) if magic == _PARQUET_MAGIC else _jsonl_rows(p, start)
    for n, item in enumerate(rows):
        if limit is not None and n >= limit:
            return
        yield item


def _jsonl_rows(p: Path, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    index = 0
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if index >= start:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InspectError(f"invalid JSON: {e.msg} (column {e.colno})", source=str(p), line=lineno) from None
                if not isinstance(row, dict):
                    raise InspectError("expected a JSON object a line", source=str(p), line=lineno)
                yield index, row
            index += 1


def _parquet_rows(p: Path, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InspectError("reading Parquet needs pyarrow: pip install 'chatfmt[train]'", source=str(p)) from None
    try:
        pf = pq.ParquetFile(str(p))
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged file
        raise InspectError(f"not a readable Parquet file: {e}", source=str(p)) from None
    first = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if first + n > start:
            rows = pf.read_row_group(g).to_pylist()
            for k in range(max(0, start - first), n):
                yield first + k, rows[k]
        first += n


# -- one row -> a view ------------------------------------------------------------------------


def _int_list(row: dict[str, Any], key: str, where: str) -> list[int]:
    value = row.get(key)
    if not isinstance(value, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise InspectError(f"{where}: {key!r} must be a list of integers")
    return value


def decode_pieces(tokenizer: TokenizerLike, ids: Sequence[int]) -> list[tuple[str, bool]]:
    """The text each token adds to the decoded text, and whether it is a partial character.

    Each token's piece is ``decode(window + [token])`` minus ``decode(window)``, where the window
    is the last token(s) already shown (so sentencepiece's leading-space rules and byte-level BPE
    come out right). A piece that ends in an incomplete character (U+FFFD) is held back until a
    later token completes it; a character still incomplete at the end falls back to decoding its
    tokens one by one.
    """
    out: list[tuple[str, bool]] = []
    window_start = shown = 0
    for i in range(len(ids)):
        before = _decode(tokenizer, ids[window_start:shown])
        now = _decode(tokenizer, ids[window_start : i + 1])
        if now.endswith("\ufffd") or not now.startswith(before):
            out.append(("", True))
            continue
        out.append((now[len(before) :], False))
        window_start, shown = shown, i + 1
    for i in range(shown, len(ids)):  # incomplete at the end: show what the tokens are alone
        out[i] = (_decode(tokenizer, ids[i : i + 1]), False)
    return out


def _decode(tokenizer: TokenizerLike, ids: Sequence[int]) -> str:
    if not ids:
        return ""
    try:
        return tokenizer.decode(list(ids))
    except Exception:  # an id the tokenizer does not know: the row was made with another one
        return "".join(_decode_one(tokenizer, i) for i in ids)


def _decode_one(tokenizer: TokenizerLike, i: int) -> str:
    try:
        return tokenizer.decode([i])
    except Exception:
        return f"<?{i}>"


def row_view(row: dict[str, Any], index: int, tokenizer: TokenizerLike | None = None, *, source: str | None = None) -> ExampleView:
    """One prepared row as an :class:`ExampleView`; ``tokenizer`` (a chatfmt tokenizer) decodes
    the token texts and knows the control ids. Raises :class:`InspectError` for a row that lacks
    ``input_ids`` / ``labels`` of equal length or whose ``seq_lengths`` do not add up (``seq_lens``,
    the name earlier chatfmt versions wrote, is read too)."""
    where = f"{source}: row {index}" if source else f"row {index}"
    ids = _int_list(row, "input_ids", where)
    labels = _int_list(row, "labels", where)
    if len(labels) != len(ids):
        raise InspectError(f"{where}: {len(ids)} input_ids but {len(labels)} labels")
    control = tokenizer.control_ids if tokenizer is not None else frozenset()
    key = "seq_lengths" if "seq_lengths" in row else "seq_lens"
    packed = key in row
    if packed:
        lens = _int_list(row, key, where)
        if sum(lens) != len(ids) or any(n < 0 for n in lens):
            raise InspectError(f"{where}: {key} {lens} do not add up to the {len(ids)} tokens")
        sources = row.get("sources") or [None] * len(lens)
        records = row.get("records") or [None] * len(lens)
        if len(sources) != len(lens) or len(records) != len(lens):
            raise InspectError(f"{where}: {len(lens)} {key} but {len(sources)} sources, {len(records)} records")
    else:
        lens = [len(ids)]
        sources, records = [row.get("source")], [row.get("record")]
    sequences = []
    offset = 0
    for n, src, rec in zip(lens, sources, records):
        seq_ids = ids[offset : offset + n]
        pieces = decode_pieces(tokenizer, seq_ids) if tokenizer is not None else [(None, False)] * n
        tokens = tuple(
            TokenView(
                id=tid,
                text=text,
                label=labels[offset + k],
                position=offset + k,
                position_id=k,
                control=tid in control,
                partial=partial,
            )
            for k, (tid, (text, partial)) in enumerate(zip(seq_ids, pieces))
        )
        sequences.append(SequenceView(None if src is None else str(src), rec, tokens))
        offset += n
    return ExampleView(index=index, packed=packed, sequences=tuple(sequences), decoded=tokenizer is not None)


def inspect_rows(
    path: str | Path, tokenizer: Any = None, *, start: int = 0, limit: int | None = None
) -> list[ExampleView]:
    """:func:`read_rows` + :func:`row_view`: the views of rows ``start .. start + limit - 1``.
    ``tokenizer`` is a tokenizer object or anything :func:`~chatfmt.load_tokenizer` takes."""
    if isinstance(tokenizer, (str, Path)):
        from ..tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    return [row_view(row, i, tokenizer, source=str(path)) for i, row in read_rows(path, start=start, limit=limit)]


# -- whitespace made visible ------------------------------------------------------------------

_VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍", "\u00a0": "⍽"}


def visible(text: str) -> str:
    """``text`` with whitespace and invisible characters shown: ``·`` space, ``↵`` newline, ``→``
    tab, ``␍`` CR, ``⍽`` no-break space, ``<U+XXXX>`` for other control / format / separator
    characters (so no escape sequence of the data reaches the terminal)."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cs", "Cn"):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def token_label(t: TokenView) -> str:
    """What a token's box shows: its visible text, ``…`` for a partial character, else its id."""
    if t.text is None:
        return str(t.id)
    if t.partial:
        return "…"
    return visible(t.text) or "∅"


def token_title(t: TokenView, packed: bool) -> str:
    """The hover text of a token: id, label, position (and position id in a packed row)."""
    parts = [f"id {t.id}", f"label {t.label}", f"position {t.position}"]
    if packed:
        parts.append(f"position id {t.position_id}")
    if t.control:
        parts.append("control token")
    if t.partial:
        parts.append("part of a multi-byte character (its text is on a later token)")
    if t.text is not None and not t.partial:
        parts.append(f"text {t.text!r}")
    return " · ".join(parts)


# -- terminal ---------------------------------------------------------------------------------

#: Rich styles; trained / untrained backgrounds alternate so token boundaries show
TRAINED_STYLES = ("black on green3", "black on dark_sea_green2")
UNTRAINED_STYLES = ("", "on grey23")
CONTROL_STYLE = "bold underline magenta"
PARTIAL_STYLE = "dim"


def rich_view(view: ExampleView) -> Any:
    """A Rich renderable of one row: a header (row, source:record, length, trained) and its
    tokens, trained ones on green, control tokens bold, underlined and magenta, whitespace
    visible; a packed row shows each example under its own header."""
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = []
    head = Text(f"row {view.index}", style="bold")
    if view.packed:
        head.append(f"  packed: {len(view.sequences)} examples")
    else:
        head.append(f"  {view.sequences[0].where}")
    head.append(f"  length {view.length}  trained {view.trained}", style="cyan")
    parts.append(head)
    for k, seq in enumerate(view.sequences):
        if view.packed:
            span = f"positions {seq.tokens[0].position}-{seq.tokens[-1].position}" if seq.tokens else "empty"
            parts.append(
                Text(f"── example {k}: {seq.where}  length {len(seq.tokens)}  trained {seq.trained}  ({span})",
                     style="yellow")
            )
        parts.append(tokens_text(seq.tokens, view.decoded))
    return Group(*parts)


def tokens_text(tokens: Sequence[TokenView], decoded: bool = True) -> Any:
    """Tokens as one Rich ``Text`` (the terminal view of ``chatfmt inspect`` and ``chatfmt
    encode``): trained ones on green, control tokens bold, underlined and magenta, whitespace
    visible, a character split over byte tokens shown once, on the token that completes it."""
    from rich.text import Text

    text = Text()
    for k, t in enumerate(tokens):
        styles = TRAINED_STYLES if t.trained else UNTRAINED_STYLES
        style = styles[k % 2]
        if t.control:  # after the background style: its foreground wins
            style = f"{style} {CONTROL_STYLE}".strip()
        elif t.partial:
            style = f"{style} {PARTIAL_STYLE}".strip()
        label = token_label(t)
        text.append(label if decoded else f"{label} ", style=style or None)
        if decoded and t.text and t.text.endswith("\n"):
            text.append("\n")
    return text


def legend_text() -> Any:
    """One line explaining the terminal colours."""
    from rich.text import Text

    text = Text()
    text.append("trained", style=TRAINED_STYLES[0])
    text.append("  untrained  ")
    text.append("control", style=CONTROL_STYLE)
    text.append("  · space  ↵ newline  → tab  … part of a character", style="dim")
    return text


# -- HTML -------------------------------------------------------------------------------------

#: page colours (the screenshot test looks for these exact pixels)
TRAINED_BG = "#2e9e4f"
UNTRAINED_BG = "#e3e6ea"
CONTROL_BORDER = "#c21fd6"

_CSS = f"""
body {{ font-family: ui-monospace, 'DejaVu Sans Mono', monospace; margin: 16px; color: #1b1f24;
  background: #ffffff; }}
h1 {{ font-size: 18px; margin: 0 0 8px 0; }}
.legend {{ font-size: 13px; margin-bottom: 16px; color: #444; }}
.legend .tok {{ margin-right: 4px; }}
.row {{ border: 1px solid #bbb; border-radius: 6px; margin: 0 0 18px 0; padding: 8px 10px; }}
.row > header {{ font-weight: bold; margin-bottom: 6px; }}
.row > header .stats {{ font-weight: normal; color: #555; margin-left: 12px; }}
.seq {{ border-left: 4px solid #f0a020; padding: 4px 0 4px 8px; margin: 6px 0; }}
.seq > header {{ font-size: 13px; color: #8a5a00; margin-bottom: 4px; }}
.toks {{ line-height: 1.9; }}
.tok {{ display: inline-block; white-space: pre; font-size: 14px; padding: 0 3px; margin: 1px 1px;
  border: 2px solid transparent; border-radius: 3px; background: {UNTRAINED_BG}; color: #1b1f24;
  min-width: 6px; }}
.tok.t {{ background: {TRAINED_BG}; color: #ffffff; }}
.tok.c {{ border-color: {CONTROL_BORDER}; font-weight: bold; }}
.tok.p {{ color: #888; }}
.br {{ display: block; height: 0; }}
"""


def html_page(views: Sequence[ExampleView], *, title: str = "chatfmt inspect") -> str:
    """One self-contained HTML page of ``views``: inline CSS, no script, no network (its
    Content-Security-Policy forbids both). Tokens are boxes (trained ones green, control tokens
    with a magenta border, whitespace visible), hovering shows id, label and position; a packed
    row shows each example in its own block. Every text and attribute is escaped."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        '<div class="legend">'
        '<span class="tok t">trained</span><span class="tok">untrained</span>'
        '<span class="tok c">control</span> hover a token for its id, label and position; '
        "· space, ↵ newline, → tab, … part of a character</div>",
    ]
    for view in views:
        out.append(f'<section class="row" id="row-{view.index}">')
        where = f"packed: {len(view.sequences)} examples" if view.packed else view.sequences[0].where
        out.append(
            f"<header>row {view.index} <span class=\"src\">{esc(where)}</span>"
            f'<span class="stats">length {view.length} · trained {view.trained}</span></header>'
        )
        for k, seq in enumerate(view.sequences):
            if view.packed:
                out.append(f'<div class="seq" data-example="{k}">')
                out.append(
                    f"<header>example {k}: {esc(seq.where)} · length {len(seq.tokens)} · trained {seq.trained}</header>"
                )
            boxes = []  # no whitespace between boxes: it would show as gaps
            for t in seq.tokens:
                cls = "tok" + (" t" if t.trained else "") + (" c" if t.control else "") + (" p" if t.partial else "")
                boxes.append(
                    f'<span class="{cls}" title="{esc(token_title(t, view.packed))}">{esc(token_label(t))}</span>'
                )
                if view.decoded and t.text and t.text.endswith("\n"):
                    boxes.append('<span class="br"></span>')
            out.append('<div class="toks">' + "".join(boxes) + "</div>")
            if view.packed:
                out.append("</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
