"""safetensors, read through a memory map and written tensor by tensor, without the safetensors package.

The format: an 8-byte little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}`` (offsets relative to the end of the header), then the
raw little-endian tensor bytes. Reading views the mapped file (zero copies until a tensor is touched);
writing streams each tensor's bytes, so neither side ever holds a second copy of the model.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from xlmr.common.checkpoint.base import (
    CheckpointError, _short, check_not_lfs_pointer, check_shape, decode, encode, itemsize, map_file, storage_dtype,
    stored_dtype)

_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_NAMES = {v: k for k, v in _CODES.items()}
_MAX_HEADER = 100_000_000  # the safetensors specification's own limit


def _no_duplicates(path: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise CheckpointError(f"{path}: the header lists tensor {key!r} twice")
            out[key] = value
        return out
    return hook


def read_header(path: str, buf: Any) -> tuple[dict[str, str], list[tuple[str, str, tuple[int, ...], int]], int]:
    """(metadata, [(name, dtype name, shape, absolute offset)] in file order, data size) after validating it all."""
    size = len(buf)
    check_not_lfs_pointer(path, bytes(buf[:32]))
    if size < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, shorter than the header length)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(f"{path}: not a safetensors file (header length {n} exceeds {_MAX_HEADER} bytes)")
    if 8 + n > size:
        raise CheckpointError(f"{path}: truncated safetensors file: the header needs {8 + n} bytes, the file has "
                              f"{size}")
    try:
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"), object_pairs_hook=_no_duplicates(path))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({_short(e, 200)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (__metadata__ is not an object)")
    data_size = size - 8 - n
    entries = []
    for name, info in header.items():
        try:
            kind = _CODES[info["dtype"]]
            shape = info["shape"]
            begin, end = info["data_offsets"]
            if not all(isinstance(o, int) and not isinstance(o, bool) for o in (begin, end)):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed or unsupported header entry "
                                  f"{_short(info)}") from None
        shape = check_shape(path, name, shape, kind)
        nbytes = math.prod(shape) * itemsize(kind)
        if begin < 0 or end - begin != nbytes:
            raise CheckpointError(f"{path}: tensor {name!r}: offsets {[begin, end]} do not hold a {kind} tensor of "
                                  f"shape {list(shape)} ({nbytes} bytes)")
        if end > data_size:
            raise CheckpointError(f"{path}: truncated: tensor {name!r} ends at data byte {end}, the file holds "
                                  f"{data_size} data bytes")
        entries.append((name, kind, shape, 8 + n + begin))
    # As the safetensors library requires: tensors tile the data exactly, in offset order, no byte shared (two
    # names over the same bytes would load as one tensor twice) and none left over.
    entries.sort(key=lambda e: (e[3], math.prod(e[2]) > 0))
    expected = 8 + n
    for name, kind, shape, offset in entries:
        if offset != expected:
            problem = "overlaps the tensor before it" if offset < expected else "leaves a gap before it"
            raise CheckpointError(f"{path}: tensor {name!r} starts at data byte {offset - 8 - n}, which {problem} "
                                  f"(expected {expected - 8 - n}): tensors must not share or skip bytes")
        expected += math.prod(shape) * itemsize(kind)
    if expected != size:
        raise CheckpointError(f"{path}: {size - expected} bytes after the last tensor that no tensor holds")
    return {str(k): str(v) for k, v in metadata.items()}, entries, data_size


def read(path: str) -> tuple[dict[str, str], list[tuple[str, np.ndarray]]]:
    """(metadata, [(stored name, array)]): every array a view of the memory-mapped file."""
    buf = map_file(path)
    metadata, entries, _ = read_header(path, buf)
    tensors = []
    for name, kind, shape, offset in entries:
        flat = np.frombuffer(buf, dtype=storage_dtype(kind), count=math.prod(shape), offset=offset)
        tensors.append((name, decode(flat.reshape(shape), kind)))
    return metadata, tensors


def write(path: str, tensors: list[tuple[str, Any]], dtype: str | None, metadata: dict[str, str]) -> int:
    """Write ``tensors`` (name, array) to ``path``; returns the number of data bytes.

    Tensors go in order of decreasing item size, so that every tensor starts aligned to its item size (the
    header is padded to a multiple of 8), as the safetensors package does.
    """
    planned = [(name, array, stored_dtype(array, dtype), tuple(np.shape(array))) for name, array in tensors]
    planned.sort(key=lambda p: -itemsize(p[2]))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, _, kind, shape in planned:
        nbytes = math.prod(shape) * itemsize(kind)
        header[name] = {"dtype": _NAMES[kind], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, array, kind, _ in planned:
            _, data = encode(array, kind)
            f.write(data.reshape(-1).view(np.uint8))
    return offset

