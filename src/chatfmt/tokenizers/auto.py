"""``load_tokenizer(path_or_object)``: pick the adapter from what a path holds (or what an object is).

A registry of formats (:data:`FORMATS`, the built-ins of :data:`TOKENIZER_KINDS`, which adds the
``chatfmt.tokenizers`` entry points), each with a test for a file and a loader, tried in order.
For a *directory* the first format with a file there wins, and the order puts the vendor's own
encoder first (DESIGN: what the model was trained with is the reference):

1. ``tokenizer.model`` - sentencepiece (Meta's Llama-2, mistral-common, Baichuan2, ChatGLM3) or
   tiktoken (Meta's Llama-3/4), told apart by content;
2. ``tekken.json`` - Mistral's tekken (mistral-common; Mistral-Nemo and later ship it beside a
   ``tokenizer.json``);
3. ``tokenizer.json`` (Hugging Face ``tokenizers``);
4. ``vocab.json`` + ``merges.txt``;
5. ``original/tokenizer.model`` (Meta's layout inside Hugging Face repositories);
6. one ``*.tiktoken`` file; 7. one ``*.gguf`` file.

``prefer="tokenizer.json"`` (a format name) moves that format to the front. A *file* is recognised
by its name and content (GGUF magic, JSON with a ``model``, tiktoken lines, else a sentencepiece
model; a ``.json`` with tekken's ``config`` keys is a tekken file). Objects: a chatfmt :class:`Tokenizer` is returned as is, a ``tokenizers.Tokenizer`` is
wrapped with :class:`~chatfmt.tokenizers.hf_json.HFTokenizer`, a transformers tokenizer with
:class:`~chatfmt.tokenizers.transformers_obj.TransformersTokenizer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..plugins import Registry
from .base import Tokenizer, TokenizerError


def _is_gguf(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _is_tokenizer_json(p: Path) -> bool:
    if p.suffix != ".json" or not p.is_file() or p.name == "vocab.json":
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    # tokenizer.json documents start with "version", "truncation", "padding", "added_tokens"
    return p.name == "tokenizer.json" or (b'"added_tokens"' in head and b'"truncation"' in head)


def _is_tiktoken(p: Path) -> bool:
    from .tiktoken_file import looks_like_tiktoken

    return p.is_file() and looks_like_tiktoken(p)


def _is_sentencepiece(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            first = f.read(1)
    except OSError:
        return False
    return first == b"\x0a"  # ModelProto field 1 (pieces), length-delimited


def _load_spm(p: Path, **kw: Any) -> Tokenizer:
    from .sentencepiece import load_sentencepiece

    return load_sentencepiece(p, control_tokens=kw.get("control_tokens", ()))


def _load_tiktoken(p: Path, **kw: Any) -> Tokenizer:
    from .tiktoken_file import load_tiktoken

    return load_tiktoken(p, pattern=kw.get("pattern"), special_tokens=kw.get("special_tokens"), flavor=kw.get("flavor"))


def _load_tokenizer_model(p: Path, **kw: Any) -> Tokenizer:
    return _load_tiktoken(p, **kw) if _is_tiktoken(p) else _load_spm(p, **kw)


def _load_json(p: Path, **kw: Any) -> Tokenizer:
    from .hf_json import load_tokenizer_json

    return load_tokenizer_json(p)


def _is_tekken(p: Path) -> bool:
    from .tekken import looks_like_tekken

    return looks_like_tekken(p)


def _load_tekken(p: Path, **kw: Any) -> Tokenizer:
    from .tekken import load_tekken

    return load_tekken(p)


def _load_vocab_merges(p: Path, **kw: Any) -> Tokenizer:
    from .vocab_merges import load_vocab_merges

    return load_vocab_merges(p if p.is_dir() else p.parent, tokenizer_class=kw.get("tokenizer_class"))


def _load_gguf(p: Path, **kw: Any) -> Tokenizer:
    from .gguf_vocab import load_gguf_tokenizer

    return load_gguf_tokenizer(p)


def _single(d: Path, pattern: str) -> Path | None:
    found = sorted(d.glob(pattern))
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class Format:
    """One file format (a tokenizer kind): where it is in a directory, how to recognise a file, how
    to load it; a directory is given to the first kind (lowest ``rank``) that finds its file."""

    name: str
    in_dir: Callable[[Path], Path | None]
    is_file: Callable[[Path], bool]
    load: Callable[..., Tokenizer]
    rank: int = 100


#: the name plugins know a tokenizer kind by
TokenizerKind = Format


def _in_dir_file(name: str, check: Callable[[Path], bool] | None = None) -> Callable[[Path], Path | None]:
    def find(d: Path) -> Path | None:
        p = d / name
        return p if p.is_file() and (check is None or check(p)) else None

    return find


FORMATS: list[Format] = [
    Format(
        "tokenizer.model",
        _in_dir_file("tokenizer.model"),
        lambda p: p.suffix in (".model",) or p.name.startswith("tokenizer.model"),
        _load_tokenizer_model,
    ),
    Format("tekken.json", _in_dir_file("tekken.json", _is_tekken), _is_tekken, _load_tekken),
    Format("tokenizer.json", _in_dir_file("tokenizer.json"), _is_tokenizer_json, _load_json),
    Format(
        "vocab+merges",
        lambda d: d if (d / "vocab.json").is_file() and (d / "merges.txt").is_file() else None,
        lambda p: p.name in ("vocab.json", "merges.txt") and (p.parent / "vocab.json").is_file() and (p.parent / "merges.txt").is_file(),
        _load_vocab_merges,
    ),
    Format("original/tokenizer.model", _in_dir_file("original/tokenizer.model"), lambda p: False, _load_tokenizer_model),
    Format("tiktoken", lambda d: _single(d, "*.tiktoken"), lambda p: p.suffix == ".tiktoken", _load_tiktoken),
    Format("gguf", lambda d: _single(d, "*.gguf"), _is_gguf, _load_gguf),
]


def _as_tokenizer_kind(name: str, obj: object) -> tuple[Format, tuple[str, ...]]:
    """What a ``chatfmt.tokenizers`` entry point holds: a :class:`Format` (``TokenizerKind``), or an
    object (or class) with ``accepts(path) -> bool`` and ``load(path, **options) -> Tokenizer`` (and
    optionally ``rank``); a directory it accepts is loaded as a whole."""
    if isinstance(obj, Format):
        return (obj if obj.name == name else replace(obj, name=name)), ()
    if isinstance(obj, type):
        obj = obj()
    accepts, load = getattr(obj, "accepts", None), getattr(obj, "load", None)
    if not callable(accepts) or not callable(load):
        raise TokenizerError(f"tokenizer plugin {name!r}: expected a TokenizerKind or an object with accepts(path) and "
                             f"load(path), got {type(obj).__name__}")

    def in_dir(d: Path) -> Path | None:
        return d if accepts(d) else None

    return Format(name, in_dir, lambda p: bool(accepts(p)), load, int(getattr(obj, "rank", 100))), ()


def _builtin_kinds(reg: Registry[Format]) -> None:
    for rank, fmt in enumerate(FORMATS):
        reg.add(fmt.name, replace(fmt, rank=10 * (rank + 1)))


#: every tokenizer kind: the built-in :data:`FORMATS` in their order, then the ``chatfmt.tokenizers``
#: entry points (by their ``rank``)
TOKENIZER_KINDS: Registry[Format] = Registry(
    "tokenizers", builtins=_builtin_kinds, adapt=_as_tokenizer_kind, normalize_names=False
)


def tokenizer_kinds() -> list[Format]:
    """The tokenizer kinds in the order a directory is tried."""
    return sorted(TOKENIZER_KINDS.values(), key=lambda f: f.rank)


def _is_transformers_tokenizer(obj: Any) -> bool:
    return any(c.__name__ == "PreTrainedTokenizerBase" for c in type(obj).__mro__)


def load_tokenizer(source: Any, *, prefer: str | None = None, **options: Any) -> Tokenizer:
    """Load a tokenizer from a file, a model directory, a Hugging Face Hub id
    (``ORG/NAME[@REVISION][:FILE.gguf]`` that is not a local path: its tokenizer files are fetched
    into the Hub cache, see :mod:`chatfmt.hub`), or wrap a tokenizer object.

    ``options`` go to the chosen loader: ``control_tokens`` (extra control texts: sentencepiece,
    transformers), ``pattern`` / ``special_tokens`` / ``flavor`` (tiktoken), ``tokenizer_class``
    (vocab+merges).
    """
    if isinstance(source, Tokenizer):
        return source
    if not isinstance(source, (str, Path)):
        if type(source).__module__.startswith("tokenizers") and hasattr(source, "to_str"):
            from .hf_json import HFTokenizer

            return HFTokenizer.from_object(source)
        if _is_transformers_tokenizer(source):
            from .transformers_obj import TransformersTokenizer

            return TransformersTokenizer(source, control_tokens=options.get("control_tokens", ()))
        raise TokenizerError(f"cannot make a tokenizer from a {type(source).__name__}")
    if isinstance(source, str):
        from ..hub import local

        source = local(source, "tokenizer")  # a Hub id (ORG/NAME[@REV][:FILE]): its tokenizer files
    p = Path(source).expanduser()
    formats = tokenizer_kinds()
    if prefer is not None:
        chosen = [f for f in formats if f.name == prefer]
        if not chosen:
            raise TokenizerError(f"unknown format {prefer!r}; known: {', '.join(f.name for f in formats)}")
        formats = chosen + [f for f in formats if f.name != prefer]
    if p.is_dir():
        for fmt in formats:
            found = fmt.in_dir(p)
            if found is not None:
                return fmt.load(found, **options)
        raise TokenizerError(
            "no tokenizer found (looked for tokenizer.model, tekken.json, tokenizer.json, vocab.json+merges.txt, "
            "original/tokenizer.model, one *.tiktoken, one *.gguf)",
            source=str(p),
        )
    if not p.is_file():
        raise TokenizerError("no such file or directory", source=str(p))
    if _is_gguf(p):
        return _load_gguf(p, **options)
    for fmt in formats:
        if fmt.name != "gguf" and fmt.is_file(p):
            return fmt.load(p, **options)
    if _is_tiktoken(p):
        return _load_tiktoken(p, **options)
    if _is_sentencepiece(p):
        return _load_spm(p, **options)
    raise TokenizerError("not a tokenizer file this library knows", source=str(p))
