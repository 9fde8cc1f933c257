"""sentencepiece ``tokenizer.model`` files (Llama-2, Mistral, Baichuan2, ChatGLM3, ...), encoded with
the ``sentencepiece`` library itself: what Meta's ``llama/generation.py``, ``mistral-common`` and the
Baichuan2/ChatGLM3 model code call.

How pieces are classified (see :mod:`chatfmt.tokenizers.base` for the contract):

* CONTROL and UNKNOWN pieces are control tokens. sentencepiece never produces a CONTROL piece from
  text: ``"<s>"`` typed in text encodes to ``▁<``, ``s``, ``>``.
* USER_DEFINED pieces *are* matched in text by sentencepiece (Baichuan2's ``\\n`` = 5 and ``<img>``,
  Mistral v3's ``[REFERENCE_DOC_0]``); they stay so (they are :attr:`added_tokens`) unless they are
  control tokens: Baichuan2's ``<reserved_N>`` pieces (``<reserved_106>`` = 195 and
  ``<reserved_107>`` = 196 are its user/assistant markers), or any piece the side config marks
  special or ``control_tokens=`` names. Those pieces are retyped USER_DEFINED -> CONTROL in the model
  handed to sentencepiece, so typed text ``"<reserved_106>"`` becomes ordinary pieces
  (``<``, ``res``, ``erved``, ...) and 195 cannot come out of :meth:`encode_text`.
* Tokens that a model's Python code appends after the sentencepiece vocabulary (ChatGLM3:
  ``[MASK]`` 64789, ``[gMASK]`` 64790, ``[sMASK]``, ``sop`` 64792, ``eop``, ``<|system|>`` 64794,
  ``<|user|>``, ``<|assistant|>``, ``<|observation|>``; or ``added_tokens_decoder`` entries of a
  ``tokenizer_config.json`` beside the model with ids past the vocabulary, as Phi-3's) are control
  tokens too, unless the config marks them non-special and they do not look like control tokens;
  such plain appended tokens are split out of the text (the rest is encoded run by run, a run after
  one without the dummy prefix, as sentencepiece does after a user-defined piece).

``prefix_space=False`` encodes with a copy of the model whose ``add_dummy_prefix`` is off.
Offsets: sentencepiece reports UTF-8 byte spans of the input; they are converted to characters, and
byte-fallback pieces of one character (sentencepiece gives all but the last an empty span) all get
that character's span.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _spm_proto as proto
from ._hfconfig import HFConfig, read_hf_config
from .base import TextEncoding, Tokenizer, TokenizerError, char_offsets_from_byte_spans, looks_like_control

if TYPE_CHECKING:
    import sentencepiece


def _require_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TokenizerError("sentencepiece models need the 'sentencepiece' package: pip install sentencepiece") from e
    return sentencepiece


@dataclass(frozen=True, slots=True)
class SpmProfile:
    """What a model family's own tokenizer code adds around the sentencepiece model."""

    name: str
    appended: tuple[str, ...] = ()  # appended after the vocabulary, in id order (all control)
    bos_token: str | None = "<sp>"  # "<sp>": the model's own BOS piece
    eos_token: str | None = "<sp>"
    add_bos: bool | None = None
    detect_vocab_size: int | None = None  # recognise the family by vocabulary size alone
    class_names: tuple[str, ...] = field(default_factory=tuple)


#: families whose tokenizer code extends the sentencepiece model (``tokenizer_class`` or vocab size)
PROFILES: tuple[SpmProfile, ...] = (
    SpmProfile(
        name="chatglm3",
        appended=("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
        bos_token=None,  # ChatGLMTokenizer has no BOS; its prefix is [gMASK] sop (the format's job)
        eos_token="</s>",
        add_bos=False,
        detect_vocab_size=64789,
        class_names=("ChatGLMTokenizer",),
    ),
)


def _profile_for(config: HFConfig, n_pieces: int) -> SpmProfile | None:
    cls = config.tokenizer_class
    for p in PROFILES:
        if cls and cls in p.class_names:
            return p
    if cls is None:
        for p in PROFILES:
            if p.detect_vocab_size == n_pieces:
                return p
    return None


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model under the chatfmt contract."""

    kind = "sentencepiece"

    def __init__(
        self,
        model: bytes,
        *,
        source: str | None = None,
        config: HFConfig | None = None,
        control_tokens: Iterable[str] = (),
        profile: SpmProfile | None = None,
    ) -> None:
        spm = _require_sentencepiece()
        self._spm = spm
        self.source = source
        config = config or HFConfig()
        try:
            info = proto.read_model(model)
        except (proto.ProtoError, UnicodeDecodeError) as e:
            raise TokenizerError(f"not a sentencepiece model: {e}", source=source) from None
        pieces = info.pieces
        n = len(pieces)
        if profile is None:
            profile = _profile_for(config, n)
        self.profile = profile
        notes: list[str] = []
        wanted = set(control_tokens) | config.special_texts()
        config_special = {s.content for s in config.added.values() if s.special and s.id < n}

        control: dict[str, int] = {}
        plain: dict[str, int] = {}
        retype: dict[int, int] = {}
        for i, p in enumerate(pieces):
            if p.type in (proto.CONTROL, proto.UNKNOWN):
                control.setdefault(p.text, i)
            elif p.type == proto.USER_DEFINED:
                if looks_like_control(p.text) or p.text in wanted or p.text in config_special:
                    retype[i] = proto.CONTROL
                    control.setdefault(p.text, i)
                else:
                    plain.setdefault(p.text, i)
        if retype:
            notes.append(f"{len(retype)} user-defined pieces treated as control (retyped CONTROL for encoding)")
            model = proto.patch_model(model, piece_types=retype)
        self._model = model
        self._sp: sentencepiece.SentencePieceProcessor = spm.SentencePieceProcessor(model_proto=model)
        self._sp_noprefix: Any = None
        self._n = n
        self._types = [p.type for p in pieces]
        if retype:
            for i in retype:
                self._types[i] = proto.CONTROL

        # tokens past the sentencepiece vocabulary
        appended: dict[int, str] = {}
        if profile is not None:
            for k, text in enumerate(profile.appended):
                appended[n + k] = text
                control[text] = n + k
        plain_appended: dict[str, int] = {}
        for idx, spec in sorted(config.added.items()):
            if idx < n or idx in appended:
                continue
            appended[idx] = spec.content
            if spec.special or looks_like_control(spec.content) or spec.content in wanted:
                control[spec.content] = idx
            else:
                plain_appended[spec.content] = idx
                plain[spec.content] = idx
        self._appended = appended
        self._appended_ids = {t: i for i, t in appended.items()}
        self._plain_appended = plain_appended
        self._split_re = (
            re.compile("|".join(re.escape(t) for t in sorted(plain_appended, key=len, reverse=True)))
            if plain_appended
            else None
        )
        self._control = control
        self._control_id_set = frozenset(control.values())
        # lstrip/rstrip of control tokens in added_tokens_decoder (Phi-3's tokenizer_config.json:
        # rstrip on <|user|>, <|end|>, ...), applied by the encoder as tokenizers applies them
        self._strip = {
            spec.id: (spec.lstrip, spec.rstrip)
            for spec in config.added.values()
            if (spec.lstrip or spec.rstrip) and control.get(spec.content) == spec.id
        }
        self._plain = plain
        self._prefix = info.add_dummy_prefix
        self._strips = info.remove_extra_whitespaces
        # the unknown piece: produced for unknown characters when the model has no byte fallback
        self._unk_exempt = self._sp.unk_id() if self._sp.unk_id() >= 0 else None

        def sp_piece(i: int) -> str | None:
            return pieces[i].text if 0 <= i < n else None

        if profile is not None and profile.bos_token != "<sp>":
            bos = profile.bos_token
        else:
            bos = config.bos_token or sp_piece(self._sp.bos_id())
        if profile is not None and profile.eos_token != "<sp>":
            eos = profile.eos_token
        else:
            eos = config.eos_token or sp_piece(self._sp.eos_id())
        self._bos, self._eos = bos, eos
        if config.add_bos_token is not None:
            self._add_bos = config.add_bos_token
        elif profile is not None and profile.add_bos is not None:
            self._add_bos = profile.add_bos
        else:
            # LlamaTokenizer's default and what Meta/Mistral do: BOS first when the model has one
            self._add_bos = bos is not None
        self.notes = tuple(notes)

    # -- properties

    @property
    def backend(self) -> Any:
        """The ``SentencePieceProcessor`` (with control user-defined pieces retyped)."""
        return self._sp

    @property
    def special_tokens(self) -> dict[str, int]:
        return self._control

    @property
    def added_tokens(self) -> dict[str, int]:
        return self._plain

    @property
    def vocab_size(self) -> int:
        return max([self._n - 1, *self._appended]) + 1

    @property
    def bos_token(self) -> str | None:
        return self._bos

    @property
    def eos_token(self) -> str | None:
        return self._eos

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    @property
    def add_prefix_space(self) -> bool:
        return self._prefix

    @property
    def removes_extra_whitespace(self) -> bool:
        """The model's normalizer drops leading/trailing and repeated whitespace
        (``remove_extra_whitespaces``; off in the chat models' tokenizers: Llama-2, Mistral, ChatGLM3,
        Baichuan2). The encoder's space rule then encodes what follows a format's space with the prefix."""
        return self._strips

    @property
    def control_strip(self) -> dict[int, tuple[bool, bool]]:
        return self._strip

    # -- encoding

    def _proc(self, prefix_space: bool | None) -> Any:
        if prefix_space is False and self._prefix:
            if self._sp_noprefix is None:
                self._sp_noprefix = self._spm.SentencePieceProcessor(
                    model_proto=proto.patch_model(self._model, add_dummy_prefix=False)
                )
            return self._sp_noprefix
        return self._sp

    def _runs(self, text: str) -> list[tuple[str, int | None, int]]:
        """Text split on plain appended tokens: (run text or token text, token id or None, start)."""
        assert self._split_re is not None
        out: list[tuple[str, int | None, int]] = []
        pos = 0
        for m in self._split_re.finditer(text):
            if m.start() > pos:
                out.append((text[pos : m.start()], None, pos))
            out.append((m.group(0), self._plain_appended[m.group(0)], m.start()))
            pos = m.end()
        if pos < len(text):
            out.append((text[pos:], None, pos))
        return out

    def encode_text(self, text: str, *, prefix_space: bool | None = None) -> list[int]:
        ids: list[int]
        if self._split_re is None:
            ids = self._proc(prefix_space).encode(text)
        else:
            ids = []
            first = True
            for run, tid, _ in self._runs(text):
                if tid is not None:
                    ids.append(tid)
                else:
                    ids.extend(self._proc(prefix_space if first else False).encode(run))
                first = False
        self._check_plain(text, ids)
        return ids

    def _encode_offsets(self, proc: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        try:
            pt = proc.encode(text, return_type="proto")
        except TypeError:  # sentencepiece < 0.2.1
            pt = proc.encode(text, out_type="immutable_proto")
        pieces = pt.pieces
        ids = [p.id for p in pieces]
        surfaces = [p.surface for p in pieces]
        spans: list[tuple[int, int]] = []
        if "".join(surfaces) == text:
            # each piece's surface is its slice of the input: character spans without byte maths
            pos = 0
            for sf in surfaces:
                spans.append((pos, pos + len(sf)))
                pos += len(sf)
        else:  # pragma: no cover - normalizing models whose surfaces do not add up to the input
            spans = char_offsets_from_byte_spans(text, [(p.begin, p.end) for p in pieces])
        # byte-fallback pieces of one character: all but the last have an empty span
        for k in range(len(spans) - 2, -1, -1):
            b, e = spans[k]
            if b == e and 0 <= ids[k] < self._n and self._types[ids[k]] == proto.BYTE and spans[k + 1][0] == b:
                spans[k] = spans[k + 1]
        return ids, spans

    def encode_text_with_offsets(self, text: str, *, prefix_space: bool | None = None) -> TextEncoding:
        if self._split_re is None:
            ids, offsets = self._encode_offsets(self._proc(prefix_space), text)
        else:
            ids, offsets = [], []
            first = True
            for run, tid, start in self._runs(text):
                if tid is not None:
                    ids.append(tid)
                    offsets.append((start, start + len(run)))
                else:
                    r_ids, r_off = self._encode_offsets(self._proc(prefix_space if first else False), run)
                    ids.extend(r_ids)
                    offsets.extend((s + start, e + start) for s, e in r_off)
                first = False
        self._check_plain(text, ids)
        return TextEncoding(ids, offsets)

    def encode_texts(self, texts: Sequence[str], *, prefix_space: bool | None = None) -> list[list[int]]:
        if self._split_re is not None:
            return [self.encode_text(t, prefix_space=prefix_space) for t in texts]
        out: list[list[int]] = self._proc(prefix_space).encode(list(texts))
        ctrl = self.control_ids
        for text, ids in zip(texts, out):
            if not ctrl.isdisjoint(ids):
                self._check_plain(text, ids)
        return out

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        parts: list[str] = []
        run: list[int] = []
        control_ids = self._control_id_set
        for i in ids:
            i = int(i)
            text = self._appended.get(i)
            if text is None and 0 <= i < self._n and i in control_ids and self._types[i] != proto.UNKNOWN:
                text = self._sp.id_to_piece(i)
            if text is None:
                run.append(i)
                continue
            if run:
                parts.append(self._sp.decode(run))
                run = []
            if not (skip_special_tokens and i in control_ids):
                parts.append(text)
        if run:
            parts.append(self._sp.decode(run))
        return "".join(parts)

    def token_to_id(self, token: str) -> int | None:
        if token in self._appended_ids:
            return self._appended_ids[token]
        i = self._sp.piece_to_id(token)
        if i == self._sp.unk_id() and token != self._sp.id_to_piece(i):
            return None
        return int(i)

    def id_to_token(self, id: int) -> str | None:
        if id in self._appended:
            return self._appended[id]
        if 0 <= id < self._n:
            return self._sp.id_to_piece(id)
        return None


def load_sentencepiece(
    path: str | Path,
    *,
    config_dir: str | Path | None = None,
    control_tokens: Iterable[str] = (),
    profile: SpmProfile | None = None,
) -> SentencePieceTokenizer:
    """Load a sentencepiece model; the side files (``tokenizer_config.json``, ...) beside it (or in
    ``config_dir``) give BOS/EOS/add_bos, added tokens and the family (``tokenizer_class``)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read: {e}", source=str(p)) from None
    config = read_hf_config(config_dir if config_dir is not None else p.parent)
    return SentencePieceTokenizer(data, source=str(p), config=config, control_tokens=control_tokens, profile=profile)
