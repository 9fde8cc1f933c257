"""Just enough of the protobuf wire format to read and patch a sentencepiece ``ModelProto`` without
the ``protobuf`` package: piece texts/scores/types, ``normalizer_spec.add_dummy_prefix``, and
re-serialisation with some pieces' types or that flag changed.

Field numbers (``sentencepiece_model.proto``): ModelProto.pieces = 1, .normalizer_spec = 3;
SentencePiece.piece = 1, .score = 2, .type = 3 (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
UNUSED 5, BYTE 6; absent = NORMAL); NormalizerSpec.add_dummy_prefix = 3 (absent = true),
.remove_extra_whitespaces = 4 (absent = true).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ProtoError as ProtoError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# a field: (number, wire type, value) where value is int (varint), bytes (length-delimited or fixed)
Field = tuple[int, int, "int | bytes"]


def parse(buf: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(buf, pos)
            fields.append((num, wt, v))
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > n:
                raise ProtoError("truncated field")
            fields.append((num, wt, buf[pos : pos + ln]))
            pos += ln
        elif wt == 5:
            fields.append((num, wt, buf[pos : pos + 4]))
            pos += 4
        elif wt == 1:
            fields.append((num, wt, buf[pos : pos + 8]))
            pos += 8
        else:
            raise ProtoError(f"unsupported wire type {wt}")
    return fields


def serialize(fields: list[Field]) -> bytes:
    out = bytearray()
    for num, wt, v in fields:
        out += _enc_varint((num << 3) | wt)
        if wt == 0:
            out += _enc_varint(int(v))
        elif wt == 2:
            assert isinstance(v, bytes)
            out += _enc_varint(len(v)) + v
        else:
            assert isinstance(v, bytes)
            out += v
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    score: float
    type: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    pieces: list[Piece]
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool


def read_model(buf: bytes) -> ModelInfo:
    pieces: list[Piece] = []
    add_dummy_prefix = True
    remove_extra = True
    for num, wt, v in parse(buf):
        if num == 1 and wt == 2:
            assert isinstance(v, bytes)
            text, score, typ = "", 0.0, NORMAL
            for pn, pwt, pv in parse(v):
                if pn == 1 and pwt == 2:
                    assert isinstance(pv, bytes)
                    text = pv.decode("utf-8")
                elif pn == 2 and pwt == 5:
                    assert isinstance(pv, bytes)
                    score = struct.unpack("<f", pv)[0]
                elif pn == 3 and pwt == 0:
                    typ = int(pv)
            pieces.append(Piece(text, score, typ))
        elif num == 3 and wt == 2:
            assert isinstance(v, bytes)
            for nn, nwt, nv in parse(v):
                if nn == 3 and nwt == 0:
                    add_dummy_prefix = bool(nv)
                elif nn == 4 and nwt == 0:
                    remove_extra = bool(nv)
    if not pieces:
        raise ProtoError("no pieces")
    return ModelInfo(pieces, add_dummy_prefix, remove_extra)


def patch_model(buf: bytes, *, piece_types: dict[int, int] | None = None, add_dummy_prefix: bool | None = None) -> bytes:
    """A copy of the model with the given pieces' types and/or the dummy-prefix flag changed."""
    piece_types = piece_types or {}
    out: list[Field] = []
    index = 0
    saw_normalizer = False
    for num, wt, v in parse(buf):
        if num == 1 and wt == 2:
            if index in piece_types:
                assert isinstance(v, bytes)
                sub = [f for f in parse(v) if f[0] != 3]
                sub.append((3, 0, piece_types[index]))
                v = serialize(sub)
            index += 1
        elif num == 3 and wt == 2 and add_dummy_prefix is not None:
            assert isinstance(v, bytes)
            saw_normalizer = True
            sub = [f for f in parse(v) if f[0] != 3]
            sub.append((3, 0, int(add_dummy_prefix)))
            v = serialize(sub)
        out.append((num, wt, v))
    if add_dummy_prefix is not None and not saw_normalizer:
        out.append((3, 2, serialize([(3, 0, int(add_dummy_prefix))])))
    return serialize(out)
