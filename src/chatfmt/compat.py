"""Does a tokenizer hold the tokens a format relies on? One check, called by every entry point.

A format writes some tokens as single special tokens: role markers (``<|im_start|>``,
``<|start_header_id|>``), BOS/EOS, and literal ids (Baichuan2's 195/196, ChatGLM3's ``[gMASK]``
``sop`` ``<|user|>``). Paired with a tokenizer that lacks one, encoding goes wrong without a word: a
literal id means something else in another vocabulary, and a marker written as text becomes ordinary
text tokens. :func:`check_tokenizer` refuses such a pair before any work is done, in one line naming
the format, the tokenizer and the first missing token. ``encode``/``encode_batch``,
``ChatFormat.encode``, ``prepare`` (and its workers), :class:`~chatfmt.inference.IncrementalEncoder`
(hence ``Chat``, the REPL's ``/format`` and the server) call it; ``allow_missing_tokens=True``
(CLI: ``--allow-missing-tokens``) is the opt-out, for people who really mean it.

What a format relies on (:func:`required_tokens`, computed once per format) comes from rendering
chatfmt's probe conversations (plain chat, system prompts, several turns, tools, tool calls and
results, reasoning; see :mod:`chatfmt.formats.probes`):

* every literal-id segment: the id must exist and be that token (by its text; a segment of several
  ids -- ChatGLM3's empty metadata line -- needs each id to exist);
* every *declared* control token the renders write in control text: a built-in's
  :attr:`~chatfmt.formats.base.FormatInfo.special_tokens`, ``bos_token`` and ``eos_token``; for a
  Jinja template its special-token variables (``bos_token``, ...), the control tokens its own
  tokenizer files declare (the added tokens marked special, or shaped like control tokens, in the
  ``tokenizer_config.json`` / ``tokenizer.json`` / ``added_tokens.json`` it was loaded from or
  beside; the CONTROL tokens of its GGUF -- the rule chatfmt's tokenizers use for "control"), and
  what the built-in that renders the same template relies on. A template without a complete token
  list (a bare ``.jinja``, a template string, an old ``tokenizer_config.json``) that is no
  built-in's also relies on the strings shaped like control tokens (``<|...|>``, ``<｜...｜>``,
  ``<s>``, ``</s>``, ``<reserved_N>``) it writes literally (``<|{{ role }}|>`` builds none);
* BOS and EOS, whenever the format names them (generation stops on EOS).

Not required: markers a format writes as plain text (Llama-2's ``[INST]``, Alpaca's
``### Instruction:``), and the tags vocabularies keep as ordinary added tokens
(:data:`PLAIN_ADDED_TOKENS`: ``<tool_call>``, ``<think>``, ...). A bare template that writes
``[INST]`` cannot be told from Llama-2's (text) or Mistral v3's (a control token); loaded from its
model's directory or GGUF it can. A text token is present when the tokenizer has it as a control or
added token, or as a vocabulary piece its text encodes to on its own. The result is cached per
format and per (format, tokenizer) pair: after the first call a check costs a dictionary lookup
(about 5 us).
"""

from __future__ import annotations

import json
import re
import threading
import warnings
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeGuard, TypeVar

from .errors import TokenizerMismatchError
from .segments import CONTENT
from .tokenizers.base import looks_like_control

#: how the opt-out is spelled, in the error message
OPT_OUT = "allow_missing_tokens=True (CLI: --allow-missing-tokens)"

# a template with no token information of its own: control text shaped like a control token
_TOKEN_SHAPED = re.compile(r"<[|｜][^<>\s]{1,60}?[|｜]>|</?s>|<unk>|<pad>|<reserved_\d+>|<unused_?\d+>")
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
#: tags that the vocabularies holding them (Qwen2.5 and 3, Hermes, MiniCPM, ...) keep as ordinary added
#: tokens, not special ones: such a tokenizer reads the text as one token, any other as text, which is
#: how a model without them reads them. A format that writes them does not rely on them.
PLAIN_ADDED_TOKENS = frozenset(
    {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>", "<think>", "</think>"}
)

#: the probe conversations rendered (the others add no token: the same roles with other contents)
_PROBE_IDS = ("user+gen", "system+user+gen", "multi-turn-system", "tools", "tool-call", "tool-call-answered", "reasoning", "reasoning-last")
# GGUF token types
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


@dataclass(frozen=True)
class RequiredToken:
    """A token a format relies on: ``text`` as one token, or the literal ``ids`` it writes for it."""

    text: str
    ids: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.ids is None:
            return repr(self.text)
        if len(self.ids) == 1:
            return f"{self.text!r} (id {self.ids[0]})"
        return f"{self.text!r} (ids {list(self.ids)})"


@dataclass(frozen=True)
class MissingToken:
    """A required token the tokenizer does not hold, and why (one clause)."""

    token: RequiredToken
    reason: str


def _token_like(text: object) -> TypeGuard[str]:
    """A string that can be one declared token: at least two characters, not whitespace, not a byte
    piece (``<0x0A>``): single characters and whitespace are what plain text yields anyway."""
    return isinstance(text, str) and len(text) >= 2 and not text.isspace() and not _BYTE_PIECE.fullmatch(text)


# -- what a Jinja template's own tokenizer files declare ---------------------------------------------


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _texts(value: Any) -> Iterable[str]:
    """Token texts in a config value: a string, an AddedToken dict, or a list of those."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict) and isinstance(value.get("content"), str):
        yield value["content"]
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token", "additional_special_tokens")


def _entries(entries: Iterable[Any]) -> Iterable[str]:
    """The control tokens among added-token entries (``{"content", "special"}``): the ones marked
    special, and the others that look like control tokens (the rule chatfmt's tokenizers apply)."""
    for e in entries:
        text = e.get("content") if isinstance(e, dict) else None
        if isinstance(text, str) and (e.get("special") or looks_like_control(text)):
            yield text


def _dir_tokens(folder: Path, config_path: Path | None) -> tuple[frozenset[str], bool] | None:
    """The control tokens declared by the tokenizer files in ``folder`` and whether the list is
    complete (an ``added_tokens_decoder`` or a ``tokenizer.json`` was read); ``None`` when there are
    no such files."""
    found: set[str] = set()
    known = complete = False
    if config_path is not None and config_path.is_file():
        config = _json(config_path)
        if isinstance(config, dict):
            known = True
            for key in _SPECIAL_KEYS:
                found.update(_texts(config.get(key)))
            decoder = config.get("added_tokens_decoder")
            if isinstance(decoder, dict):
                found.update(_entries(decoder.values()))
                complete = True
    stm = _json(folder / "special_tokens_map.json")
    if isinstance(stm, dict):
        known = True
        found.update(t for v in stm.values() for t in _texts(v))
    added = _json(folder / "added_tokens.json")
    if isinstance(added, dict):
        known = True
        found.update(t for t in added if isinstance(t, str) and looks_like_control(t))
    tj = folder / "tokenizer.json"
    if not complete and tj.is_file():
        data = _json(tj)
        if isinstance(data, dict) and isinstance(data.get("added_tokens"), list):
            known = complete = True
            found.update(_entries(data["added_tokens"]))
    return (frozenset(found), complete) if known else None


def _gguf_tokens(path: Path) -> tuple[frozenset[str], bool] | None:
    """The control tokens of a GGUF vocabulary (token type CONTROL, or USER_DEFINED and looking like
    control)."""
    from .tokenizers._gguf_kv import read_gguf_kv

    try:
        kv = read_gguf_kv(path, keys_prefix=("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"))
    except Exception:  # noqa: BLE001 - unreadable metadata: no information, not an error here
        return None
    tokens, types = kv.get("tokenizer.ggml.tokens"), kv.get("tokenizer.ggml.token_type")
    if not isinstance(tokens, list) or not isinstance(types, list):
        return None
    found = {
        t for t, k in zip(tokens, types)
        if isinstance(t, str) and (k == _GGUF_CONTROL or (k == _GGUF_USER_DEFINED and looks_like_control(t)))
    }
    return frozenset(found), True


def own_tokens(fmt: Any) -> tuple[frozenset[str], bool] | None:
    """The control tokens a Jinja format's own tokenizer files declare (special tokens, and added
    tokens that look like control tokens), read from
    where it was loaded (a model directory, a ``tokenizer_config.json``, a GGUF, or the files beside a
    ``.jinja``), and whether that list is complete (an old ``tokenizer_config.json`` alone names only
    BOS/EOS/UNK/PAD); ``None`` when there are no such files."""
    source = getattr(getattr(fmt, "info", None), "source", None)
    if not source:
        return None
    path = Path(source)
    try:
        if path.is_dir():
            return _dir_tokens(path, path / "tokenizer_config.json")
        if path.suffix == ".gguf" and path.is_file():
            return _gguf_tokens(path)
        if path.is_file():
            cfg = path if path.suffix == ".json" and path.name != "chat_template.json" else path.parent / "tokenizer_config.json"
            return _dir_tokens(path.parent, cfg)
    except OSError:
        return None
    return None


# -- what a format relies on ----------------------------------------------------------------------


def _declared(fmt: Any) -> set[str]:
    """The control tokens ``fmt`` declares (see the module doc); an object with no ``info`` declares
    none."""
    info = getattr(fmt, "info", None)
    if info is None:
        return set()
    out = {t for t in (*info.special_tokens.values(), info.bos_token, info.eos_token) if _token_like(t) and t not in PLAIN_ADDED_TOKENS}
    from .formats.jinja import JinjaFormat

    if not isinstance(fmt, JinjaFormat):
        return out
    out |= {t for t in fmt.special_tokens.values() if _token_like(t)}
    informed = False
    own = own_tokens(fmt)
    if own is not None:
        tokens, informed = own
        out |= {t for t in tokens if _token_like(t)}
    try:
        native = fmt._known_native()
    except Exception:  # noqa: BLE001 - the lookup renders probes; a failure means no known built-in
        native = None
    if native is not None:
        # what the built-in that renders this template relies on, by text (its literal ids included)
        out |= {r.text for r in required_tokens(native) if _token_like(r.text)}
        informed = True
    if not informed:
        # no token list of its own: the strings shaped like control tokens the template writes literally
        # (``<|{{ role }}|>`` builds no literal: a role name is not known to be a token)
        for variant in (fmt, getattr(fmt, "_tool_use", None)):
            if variant is not None:
                out |= set(_TOKEN_SHAPED.findall(variant.template))
    return out


def _probe_renders(fmt: Any) -> Iterable[list[tuple[str, tuple[int, ...] | None, bool]]]:
    """``(text, ids, is_content)`` pieces of each probe render that the format accepts."""
    from .formats.jinja import JinjaFormat
    from .formats.probes import get_probe

    jinja = isinstance(fmt, JinjaFormat)
    for probe in map(get_probe, _PROBE_IDS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if jinja:
                    # one plain render: probe contents spell no token, so all of the text can be scanned
                    text = fmt.render(probe.message_list(), tools=probe.tool_list(), add_generation_prompt=probe.add_generation_prompt)
                    yield [(text, None, False)]
                    continue
                rendered = fmt.render_segments(
                    probe.message_list(), tools=probe.tool_list(), add_generation_prompt=probe.add_generation_prompt
                )
            except Exception:  # noqa: BLE001 - a format that refuses a probe relies on nothing there
                continue
        yield [(s.text, s.token_ids, s.kind == CONTENT) for s in rendered.segments]


def _compute_required(fmt: Any) -> tuple[RequiredToken, ...]:
    declared = _declared(fmt)
    found: dict[str, RequiredToken] = {}
    pattern_cache: dict[frozenset[str], re.Pattern[str] | None] = {}

    def scan(text: str) -> None:
        # the declared tokens in this text, matched longest first (as the encoder splits control text)
        present = frozenset(t for t in declared if t in text)
        if present not in pattern_cache:
            alts = sorted(present, key=len, reverse=True)
            pattern_cache[present] = re.compile("|".join(map(re.escape, alts))) if alts else None
        pattern = pattern_cache[present]
        if pattern is None:
            return
        for m in pattern.finditer(text):
            found.setdefault(m.group(0), RequiredToken(m.group(0)))

    for pieces in _probe_renders(fmt):
        for text, ids, is_content in pieces:
            if ids is not None:
                if ids:
                    key = text if len(ids) == 1 else f"\0{text}\0{ids}"
                    found.setdefault(key, RequiredToken(text, tuple(ids)))
            elif not is_content and text:
                scan(text)
    info = getattr(fmt, "info", None)
    for t in (getattr(info, "bos_token", None), getattr(info, "eos_token", None)):
        if _token_like(t):
            found.setdefault(t, RequiredToken(t))
    return tuple(found.values())


_V = TypeVar("_V")


class _ObjectCache(Generic[_V]):
    """Values per object, by identity, without keeping the object alive (weak references where the
    object allows them, else a small strong-reference dict)."""

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, _V] = weakref.WeakKeyDictionary()
        self._strong: dict[int, tuple[Any, _V]] = {}
        self._lock = threading.Lock()

    def get(self, obj: Any) -> _V | None:
        with self._lock:
            try:
                return self._weak.get(obj)
            except TypeError:
                hit = self._strong.get(id(obj))
                return hit[1] if hit is not None and hit[0] is obj else None

    def set(self, obj: Any, value: _V) -> None:
        with self._lock:
            try:
                self._weak[obj] = value
            except TypeError:
                if len(self._strong) > 256:
                    self._strong.clear()
                self._strong[id(obj)] = (obj, value)


_required: _ObjectCache[tuple[RequiredToken, ...]] = _ObjectCache()
_computing = threading.RLock()
#: format -> {id(tokenizer): (weakref-or-object, missing)}
_pairs: _ObjectCache[dict[int, tuple[Any, MissingToken | None]]] = _ObjectCache()


def required_tokens(fmt: Any) -> tuple[RequiredToken, ...]:
    """The tokens ``fmt`` relies on, in the order its renders first use them (see the module doc).
    Computed once per format object."""
    hit = _required.get(fmt)
    if hit is None:
        with _computing:  # one computation at a time (it renders, with warnings silenced)
            hit = _required.get(fmt)
            if hit is None:
                hit = _compute_required(fmt)
                _required.set(fmt, hit)
    return hit


# -- does a tokenizer have them -------------------------------------------------------------------


def _text_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` as one token of ``tokenizer``, or ``None``."""
    for table in ("special_tokens", "added_tokens"):
        tid: int | None = (getattr(tokenizer, table, None) or {}).get(text)
        if tid is not None:
            return tid
    try:
        tid = tokenizer.token_to_id(text)
        if tid is None:
            return None
        return tid if list(tokenizer.encode_text(text, prefix_space=False)) == [tid] else None
    except Exception:  # noqa: BLE001 - an adapter that cannot answer does not have it
        return None


def _id_text(tokenizer: Any, tid: int) -> str | None:
    try:
        text: str | None = tokenizer.id_to_token(tid)
        return text
    except Exception:  # noqa: BLE001 - out of range
        return None


def _vocab(tokenizer: Any) -> str:
    try:
        return f"{tokenizer.vocab_size} ids"
    except Exception:  # noqa: BLE001
        return "its vocabulary"


def _missing_one(tokenizer: Any, req: RequiredToken) -> str | None:
    if req.ids is None:
        if _text_id(tokenizer, req.text) is None:
            return f"it writes {req.text!r} as one token, which this tokenizer does not have (it would be encoded as ordinary text)"
        return None
    if len(req.ids) == 1:
        tid = req.ids[0]
        if _text_id(tokenizer, req.text) == tid or _id_text(tokenizer, tid) == req.text:
            return None
        actual = _id_text(tokenizer, tid)
        where = _text_id(tokenizer, req.text)
        also = f"; {req.text!r} is id {where} here" if where is not None else ""
        if actual is None:
            return f"it writes {req.text!r} as token id {tid}, which is outside this tokenizer's vocabulary ({_vocab(tokenizer)}){also}"
        return f"it writes {req.text!r} as token id {tid}, which is {actual!r} in this tokenizer{also}"
    for tid in req.ids:
        if _id_text(tokenizer, tid) is None:
            return f"it writes {req.text!r} as token ids {list(req.ids)}, and id {tid} is outside this tokenizer's vocabulary ({_vocab(tokenizer)})"
    return None


def missing_tokens(fmt: Any, tokenizer: Any) -> list[MissingToken]:
    """Every token ``fmt`` relies on that ``tokenizer`` does not hold as that token, in order."""
    out = []
    for req in required_tokens(fmt):
        reason = _missing_one(tokenizer, req)
        if reason is not None:
            out.append(MissingToken(req, reason))
    return out


def _first_missing(fmt: Any, tokenizer: Any) -> MissingToken | None:
    """The first token of ``fmt`` that ``tokenizer`` lacks, or ``None``; cached per pair (by identity,
    without keeping either alive)."""
    per_fmt = _pairs.get(fmt)
    key = id(tokenizer)
    hit = per_fmt.get(key) if per_fmt is not None else None
    if hit is not None:
        ref, result = hit
        if (ref() if isinstance(ref, weakref.ref) else ref) is tokenizer:
            return result
    with _computing:
        return _first_missing_computed(fmt, tokenizer)


def _first_missing_computed(fmt: Any, tokenizer: Any) -> MissingToken | None:
    per_fmt = _pairs.get(fmt)
    if per_fmt is None:
        per_fmt = {}
        _pairs.set(fmt, per_fmt)
    key = id(tokenizer)
    missing = missing_tokens(fmt, tokenizer)
    result = missing[0] if missing else None
    try:
        ref = weakref.ref(tokenizer)
    except TypeError:
        ref = tokenizer
    if len(per_fmt) > 64:
        per_fmt.clear()
    per_fmt[key] = (ref, result)
    return result


def _name(obj: Any, kind: str) -> str:
    if kind == "format":
        info = getattr(obj, "info", None)
        name = getattr(info, "name", None) or repr(obj)
        source = getattr(info, "source", None)
        return f"{name!r} ({source})" if source and str(source) != name else repr(name)
    source = getattr(obj, "source", None)
    return str(source) if source else f"<{type(obj).__name__}>"


def check_tokenizer(fmt: Any, tokenizer: Any, *, allow_missing_tokens: bool = False) -> None:
    """Raise :class:`~chatfmt.errors.TokenizerMismatchError` when ``tokenizer`` lacks a token
    ``fmt`` relies on (see the module doc); ``allow_missing_tokens=True`` skips the check. Cached
    per (format, tokenizer) pair."""
    if allow_missing_tokens:
        return
    miss = _first_missing(fmt, tokenizer)
    if miss is None:
        return
    fname, tname = _name(fmt, "format"), _name(tokenizer, "tokenizer")
    raise TokenizerMismatchError(
        f"format {fname} does not fit the tokenizer {tname}: {miss.reason}; pass {OPT_OUT} to encode anyway",
        format=getattr(getattr(fmt, "info", None), "name", None),
        tokenizer=getattr(tokenizer, "source", None),
        token=miss.token.text,
        token_ids=miss.token.ids,
    )


__all__ = ["OPT_OUT", "MissingToken", "RequiredToken", "check_tokenizer", "missing_tokens", "own_tokens", "required_tokens"]
