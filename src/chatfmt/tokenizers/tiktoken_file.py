"""tiktoken BPE files (lines ``<base64 token> <rank>``): Meta's Llama-3 / Llama-4 ``tokenizer.model``
and OpenAI-style ``*.tiktoken`` files, encoded with the ``tiktoken`` library (what Meta's
``llama_models`` tokenizer calls).

A file holds only the mergeable ranks; the split pattern and the special tokens come from the
model's code. They are data here (:data:`FLAVORS`), taken from Meta's ``models/llama3/tokenizer.py``
and ``models/llama4/tokenizer.py`` and from tiktoken's own registry (``cl100k_base``,
``o200k_base``, ``r50k_base``, ``p50k_base``). A flavor is chosen by the file's name (``*.tiktoken``)
or, for other names (Meta's ``tokenizer.model``), by its number of ranks (128000 = Llama-3,
200000 = Llama-4); ``pattern=``/``special_tokens=``
override it, and an unknown file gets the cl100k pattern and no special tokens. A
``tokenizer_config.json`` beside the file, when it has ``added_tokens_decoder``, names the special
tokens instead (HF's Llama-3 repositories ship one).

:meth:`TiktokenTokenizer.encode_text` is ``Encoding.encode_ordinary`` (special tokens are never
recognised). For the Llama flavors, text is first cut where a run of more than 25,000 whitespace or
non-whitespace characters would be, exactly as Meta's ``Tokenizer.encode`` does
(``MAX_NO_WHITESPACES_CHARS``), so even pathological inputs match the vendor and stay fast.
Token strings (``id_to_token``) use the GPT-2 byte-to-unicode alphabet, as Hugging Face's
``tokenizer.json`` for these models does (``"Ġworld"``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _pretok
from ._hfconfig import read_hf_config
from .base import TextEncoding, Tokenizer, TokenizerError, char_offsets_from_byte_spans

if TYPE_CHECKING:
    import tiktoken

R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _llama3_specials() -> tuple[str, ...]:
    named = (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    )
    return named + tuple(f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(named)))


def _llama4_specials() -> tuple[str, ...]:
    def reserved(name: str, count: int, start: int = 0) -> tuple[str, ...]:
        return tuple(f"<|{name}_reserved_special_token_{i}|>" for i in range(start, start + count))

    basic = ("<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>")
    text_post_train = (
        "<|header_start|>",
        "<|header_end|>",
        "<|eom|>",
        "<|eot|>",
        "<|step|>",
        *(f"<|text_post_train_reserved_special_token_{i}|>" for i in range(6)),
        "<|python_start|>",
        "<|python_end|>",
        "<|finetune_right_pad|>",
        *reserved("text_post_train", 61, 8),
    )
    vision = (
        "<|image_start|>",
        "<|image_end|>",
        "<|vision_reserved_special_token_0|>",
        "<|vision_reserved_special_token_1|>",
        "<|tile_x_separator|>",
        "<|tile_y_separator|>",
        "<|vision_reserved_special_token_2|>",
        "<|vision_reserved_special_token_3|>",
        "<|vision_reserved_special_token_4|>",
        "<|vision_reserved_special_token_5|>",
        "<|image|>",
        "<|vision_reserved_special_token_6|>",
        "<|patch|>",
        *reserved("vision", 1041, 7),
    )
    reasoning = (
        *(f"<|reasoning_reserved_special_token_{i}|>" for i in range(8)),
        "<|reasoning_thinking_start|>",
        "<|reasoning_thinking_end|>",
    )
    named = basic + text_post_train + vision + reasoning
    return named + tuple(f"<|reserved_special_token_{i}|>" for i in range(2048 - len(named)))


@dataclass(frozen=True, slots=True)
class TiktokenFlavor:
    """Pattern and special tokens of one family of tiktoken files."""

    name: str
    pattern: str
    specials: tuple[str, ...] | dict[str, int] = ()  # a tuple is appended after the ranks in order
    bos_token: str | None = None
    eos_token: str | None = None
    add_bos: bool = False
    n_ranks: int | None = None  # recognise ``tokenizer.model`` files by their number of ranks
    max_run: int | None = None  # Meta's cut of long (non-)whitespace runs


FLAVORS: dict[str, TiktokenFlavor] = {
    "llama3": TiktokenFlavor(
        "llama3",
        _pretok.LLAMA3,
        _llama3_specials(),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        add_bos=True,
        n_ranks=128000,
        max_run=25_000,
    ),
    "llama4": TiktokenFlavor(
        "llama4",
        _pretok.LLAMA4,
        _llama4_specials(),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        add_bos=True,
        n_ranks=200000,
        max_run=25_000,
    ),
    "cl100k_base": TiktokenFlavor(
        "cl100k_base",
        _pretok.CL100K,
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
        eos_token="<|endoftext|>",
    ),
    "o200k_base": TiktokenFlavor(
        "o200k_base", _pretok.O200K, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}, eos_token="<|endoftext|>"
    ),
    "r50k_base": TiktokenFlavor("r50k_base", R50K, {"<|endoftext|>": 50256}, eos_token="<|endoftext|>"),
    "p50k_base": TiktokenFlavor("p50k_base", R50K, {"<|endoftext|>": 50256}, eos_token="<|endoftext|>"),
}


def _require_tiktoken() -> Any:
    try:
        import tiktoken
    except ImportError as e:
        raise TokenizerError("tiktoken files need the 'tiktoken' package: pip install tiktoken") from e
    return tiktoken


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Parse a tiktoken BPE file into ``{token bytes: rank}``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read: {e}", source=str(p)) from None
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError:
            raise TokenizerError("not a tiktoken BPE file (expected '<base64> <rank>')", source=str(p), line=lineno) from None
    if not ranks:
        raise TokenizerError("empty tiktoken file", source=str(p))
    return ranks


def looks_like_tiktoken(path: str | Path) -> bool:
    """Cheap check: the first line is ``<base64> <int>``."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    parts = first.split()
    if len(parts) != 2 or not parts[1].isdigit():
        return False
    try:
        base64.b64decode(parts[0], validate=True)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def _byte_alphabet() -> tuple[list[str], dict[str, int]]:
    """GPT-2's reversible byte -> printable character mapping."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    forward = [table[b] for b in range(256)]
    return forward, {c: b for b, c in table.items()}


def _split_long_runs(s: str, limit: int) -> Iterator[str]:
    """Meta's ``_split_whitespaces_or_nonwhitespaces``: cut so that no piece holds more than
    ``limit`` consecutive whitespace or non-whitespace characters."""
    if len(s) <= limit:
        yield s
        return
    run = 0
    is_space = s[0].isspace() if s else False
    start = 0
    for i, ch in enumerate(s):
        now = ch.isspace()
        if is_space ^ now:
            run = 1
            is_space = now
        else:
            run += 1
            if run > limit:
                yield s[start:i]
                start = i
                run = 1
    yield s[start:]


class TiktokenTokenizer(Tokenizer):
    """A tiktoken ``Encoding`` under the chatfmt contract."""

    kind = "tiktoken"

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        *,
        pattern: str,
        special_tokens: Mapping[str, int],
        name: str = "tiktoken",
        bos_token: str | None = None,
        eos_token: str | None = None,
        add_bos: bool = False,
        max_run: int | None = None,
        source: str | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        tk = _require_tiktoken()
        self.source = source
        self.notes = tuple(notes)
        self._n_ranks = len(ranks)
        self._specials = dict(special_tokens)
        self._by_id = {i: t for t, i in self._specials.items()}
        try:
            self._enc: tiktoken.Encoding = tk.Encoding(name=name, pat_str=pattern, mergeable_ranks=dict(ranks), special_tokens=self._specials)
        except Exception as e:  # tiktoken raises ValueError / pyo3 errors on inconsistent input
            raise TokenizerError(f"tiktoken could not build the encoding: {e}", source=source) from None
        self._bos, self._eos, self._add_bos = bos_token, eos_token, add_bos
        self._max_run = max_run
        self.pattern = pattern

    @property
    def backend(self) -> Any:
        """The ``tiktoken.Encoding``."""
        return self._enc

    @property
    def special_tokens(self) -> dict[str, int]:
        return self._specials

    @property
    def vocab_size(self) -> int:
        return int(self._enc.n_vocab)

    @property
    def bos_token(self) -> str | None:
        return self._bos

    @property
    def eos_token(self) -> str | None:
        return self._eos

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    def _pieces(self, text: str) -> Iterator[str]:
        if self._max_run is None or len(text) <= self._max_run:
            yield text
        else:
            yield from _split_long_runs(text, self._max_run)

    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
        if self._max_run is None or len(text) <= self._max_run:
            return self._enc.encode_ordinary(text)
        ids: list[int] = []
        for piece in self._pieces(text):
            ids.extend(self._enc.encode_ordinary(piece))
        return ids

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding:
        ids = self.encode_text(text)
        spans = []
        pos = 0
        for b in self._enc.decode_tokens_bytes(ids):
            spans.append((pos, pos + len(b)))
            pos += len(b)
        return TextEncoding(ids, char_offsets_from_byte_spans(text, spans))

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]:
        if self._max_run is not None and any(len(t) > self._max_run for t in texts):
            return [self.encode_text(t) for t in texts]
        return self._enc.encode_ordinary_batch(list(texts))

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._by_id]
        return self._enc.decode(ids)

    def token_to_id(self, token: str) -> int | None:
        if token in self._specials:
            return self._specials[token]
        _, back = _byte_alphabet()
        try:
            data = bytes(back[c] for c in token)
        except KeyError:
            return None
        try:
            return int(self._enc.encode_single_token(data))
        except KeyError:
            return None

    def id_to_token(self, id: int) -> str | None:
        if id in self._by_id:
            return self._by_id[id]
        if not 0 <= id < self._n_ranks:
            return None
        forward, _ = _byte_alphabet()
        try:
            return "".join(forward[b] for b in self._enc.decode_single_token_bytes(id))
        except KeyError:
            return None


def _flavor_for(path: Path, n_ranks: int) -> TiktokenFlavor | None:
    if path.name.endswith(".tiktoken"):
        return FLAVORS.get(path.name[: -len(".tiktoken")])
    for f in FLAVORS.values():  # Meta's tokenizer.model files: by their number of ranks
        if f.n_ranks == n_ranks:
            return f
    return None


def load_tiktoken(
    path: str | Path,
    *,
    pattern: str | None = None,
    special_tokens: Mapping[str, int] | None = None,
    flavor: str | None = None,
    config_dir: str | Path | None = None,
) -> TiktokenTokenizer:
    """Load a tiktoken BPE file. ``flavor`` picks an entry of :data:`FLAVORS` by name; ``pattern``
    and ``special_tokens`` override what the flavor says (unknown files: cl100k pattern, no
    specials)."""
    p = Path(path)
    ranks = read_ranks(p)
    notes: list[str] = []
    if flavor is not None:
        if flavor not in FLAVORS:
            raise TokenizerError(f"unknown tiktoken flavor {flavor!r}; known: {', '.join(FLAVORS)}", source=str(p))
        fl: TiktokenFlavor | None = FLAVORS[flavor]
    else:
        fl = _flavor_for(p, len(ranks))
    if fl is None:
        notes.append("unknown tiktoken file: cl100k pattern" + ("" if special_tokens else ", no special tokens"))
        fl = TiktokenFlavor("tiktoken", _pretok.CL100K)
    else:
        notes.append(f"flavor {fl.name}")
    specials: dict[str, int]
    if special_tokens is not None:
        specials = dict(special_tokens)
    elif isinstance(fl.specials, dict):
        specials = dict(fl.specials)
    else:
        specials = {t: len(ranks) + i for i, t in enumerate(fl.specials)}
    config = read_hf_config(config_dir if config_dir is not None else p.parent)
    if special_tokens is None and config.added:
        specials = {s.content: i for i, s in config.added.items() if i >= len(ranks)} or specials
    return TiktokenTokenizer(
        ranks,
        pattern=pattern or fl.pattern,
        special_tokens=specials,
        name=fl.name,
        bos_token=config.bos_token or fl.bos_token,
        eos_token=config.eos_token or fl.eos_token,
        add_bos=fl.add_bos if config.add_bos_token is None else config.add_bos_token,
        max_run=fl.max_run,
        source=str(p),
        notes=notes,
    )
