"""Reading a sentencepiece model file (``sentencepiece.bpe.model``): its pieces, model type and normaliser map.

A few lines of protobuf wire format instead of the ``protobuf`` package, which nothing else here needs. Call it on
a model that ``sentencepiece`` itself has parsed (``slow.load_sentencepiece``), so the bytes are well formed.

>>> with open("tests/fixtures/sentencepiece.bpe.model", "rb") as f:
...     pieces, model_type, charsmap = read_sentencepiece_model(f.read())
>>> pieces[:3], MODEL_TYPES[model_type]
([('<unk>', 0.0, 2), ('<s>', 0.0, 3), ('</s>', 0.0, 3)], 'unigram')
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

# sentencepiece_model.proto numbers: ModelProto.pieces=1, .trainer_spec=2, .normalizer_spec=3;
# SentencePiece.piece=1, .score=2, .type=3; TrainerSpec.model_type=3; NormalizerSpec.precompiled_charsmap=2.
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4
UNIGRAM = 1
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _walk(buf: bytes) -> Iterator[tuple[int, Any, int, int]]:
    """(field number, raw value, start, end) of each field of one protobuf message, in file order; ``buf[start:end]``
    is the whole field, key included. Nested messages stay bytes."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if pos > len(buf):
            raise ValueError(f"protobuf field {key >> 3} at byte {start} runs past the end")
        yield key >> 3, value, start, pos


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, raw value) of one protobuf message; nested messages stay bytes."""
    for number, value, _, _ in _walk(buf):
        yield number, value


def field_spans(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, the field's bytes with its key) of one protobuf message, in file order: what a rewriter
    copies unchanged."""
    for number, _, start, end in _walk(buf):
        yield number, buf[start:end]


def model_type(model: bytes) -> int:
    """The trainer's model type (1 unigram, 2 bpe, 3 word, 4 char); unigram when the file does not say."""
    for number, value in _fields(model):
        if number == 2:
            return dict(_fields(value)).get(3, UNIGRAM)
    return UNIGRAM


def read_sentencepiece_model(model: bytes) -> tuple[list[tuple[str, float, int]], int, bytes]:
    """(pieces as (piece, score, type), model type, precompiled normaliser charsmap) of a sentencepiece model."""
    pieces, kind, charsmap = [], UNIGRAM, b""
    for number, value in _fields(model):
        if number == 1:
            piece = dict(_fields(value))
            score = struct.unpack("<f", piece[2])[0] if 2 in piece else 0.0
            pieces.append((piece.get(1, b"").decode("utf-8"), score, piece.get(3, NORMAL)))
        elif number == 2:
            kind = dict(_fields(value)).get(3, UNIGRAM)
        elif number == 3:
            charsmap = dict(_fields(value)).get(2, b"")
    return pieces, kind, charsmap
