"""``flax_model.msgpack`` as ``flax.serialization.to_bytes`` writes it, without flax or jax.

The file is one msgpack map nesting the parameter tree (``{"roberta": {"embeddings": {...}}, "lm_head": ...}``).
An array leaf is msgpack extension type 1 whose payload is itself msgpack: ``[shape, dtype name, raw C-order
bytes]`` (flax's ``_ndarray_to_bytes``); type 3 is a numpy scalar in the same encoding. Leaves above 2**30
bytes are split into ``{"__msgpack_chunked_array__": True, "shape": {"0": d0, ...}, "chunks": {"0": ext,
...}}`` of flattened pieces (flax's ``_chunk``).

The reader is a small msgpack parser over the memory-mapped file, so arrays are views of it (zero copies);
the writer streams each array's bytes after a header it computes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np

from xlmr.common.checkpoint.base import (
    DTYPE_NAMES, CheckpointError, _short, check_not_lfs_pointer, check_shape, decode, encode, itemsize, map_file,
    storage_dtype, stored_dtype)

MAX_CHUNK_SIZE = 2 ** 30  # flax.serialization.MAX_CHUNK_SIZE
_EXT_NDARRAY, _EXT_SCALAR = 1, 3
_CHUNKED = "__msgpack_chunked_array__"


class _Truncated(Exception):
    pass


# A flax state dict nests a dozen maps deep; lists appear only inside array payloads (shape, 3-element payload).
MAX_DEPTH = 64
MAX_LIST = 64


class _Parser:
    """Just enough msgpack to walk a flax state dict; array payloads become views of ``buf``.

    Every count a header declares is checked against the bytes left (each element takes at least one) before a
    container is built, nesting is bounded by MAX_DEPTH and lists by MAX_LIST, so a small file cannot ask for
    more than it holds.
    """

    def __init__(self, path: str, buf: Any) -> None:
        self.path, self.buf, self.pos, self.size = path, buf, 0, len(buf)
        self.depth = 0

    def count(self, n: int, per: int, what: str) -> int:
        if n * per > self.size - self.pos:
            raise _Truncated(self.pos + n * per)
        if what == "list" and n > MAX_LIST:
            raise self.corrupt(f"a list of {n} items (a flax state dict's longest holds {MAX_LIST})")
        return n

    def take(self, n: int) -> int:
        start = self.pos
        if start + n > self.size:
            raise _Truncated(start + n)
        self.pos += n
        return start

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        return struct.unpack(fmt, self.buf[self.take(n):self.pos])[0]

    def corrupt(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: corrupt msgpack at byte {self.pos}: {what}")

    def value(self) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.corrupt(f"containers nested deeper than {MAX_DEPTH} levels")
            return self._value()
        finally:
            self.depth -= 1

    def _value(self) -> Any:
        b = self.unpack(">B")
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return [self.value() for _ in range(self.count(b & 0x0F, 1, "list"))]
        if 0xA0 <= b <= 0xBF:
            return self.text(b & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I",
                 0xDC: ">H", 0xDD: ">I", 0xDE: ">H", 0xDF: ">I", 0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}
        numbers = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                   0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if b in numbers:
            return self.unpack(numbers[b])
        if b in sized:
            n = self.unpack(sized[b])
            if b <= 0xC6:
                return ("bin", self.take(n), n)
            if b >= 0xD9 and b <= 0xDB:
                return self.text(n)
            if b in (0xDC, 0xDD):
                return [self.value() for _ in range(self.count(n, 1, "list"))]
            if b in (0xDE, 0xDF):
                return self.map(n)
            return self.ext(self.unpack(">b"), n)
        if 0xD4 <= b <= 0xD8:
            return self.ext(self.unpack(">b"), 1 << (b - 0xD4))
        raise self.corrupt(f"invalid type byte 0x{b:02x}")

    def text(self, n: int) -> str:
        start = self.take(n)
        try:
            return bytes(self.buf[start:self.pos]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.corrupt("a string is not UTF-8") from None

    def map(self, n: int) -> dict:
        out: dict = {}
        for _ in range(self.count(n, 2, "map")):
            key = self.value()
            if not isinstance(key, (str, int)):
                raise self.corrupt(f"a map key of type {type(key).__name__}")
            if key in out:
                raise self.corrupt(f"key {key!r} appears twice in one map")
            out[key] = self.value()
        return out

    def ext(self, code: int, n: int) -> Any:
        start = self.take(n)
        if code not in (_EXT_NDARRAY, _EXT_SCALAR):
            raise self.corrupt(f"unsupported extension type {code}")
        outer, self.pos = self.pos, start
        try:
            payload = self.value()
            if self.pos != start + n or not (isinstance(payload, list) and len(payload) == 3):
                raise self.corrupt("an array payload is not [shape, dtype, bytes]")
            shape, kind, data = payload
            if isinstance(kind, tuple):  # a dtype name packed as bytes rather than str
                kind = bytes(self.buf[kind[1]:kind[1] + kind[2]]).decode("ascii", "replace")
            if kind not in DTYPE_NAMES or not isinstance(shape, list):
                raise self.corrupt(f"unsupported array dtype {_short(kind)} or shape {_short(shape)}")
            shape = list(check_shape(self.path, f"array at byte {start}", shape, kind))
            if not (isinstance(data, tuple) and data[0] == "bin") \
                    or data[2] != math.prod(shape) * itemsize(kind):
                raise self.corrupt(f"array bytes do not match shape {shape} and dtype {kind}")
            array = np.frombuffer(self.buf, storage_dtype(kind), math.prod(shape), data[1]).reshape(shape)
            array = decode(array, kind)
            return array[()] if code == _EXT_SCALAR else array
        finally:
            self.pos = outer


def _unchunk(tree: Any, path: str = "") -> Any:
    if isinstance(tree, dict):
        if tree.get(_CHUNKED) is True:
            shape = [tree["shape"][str(i)] for i in range(len(tree["shape"]))]
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            if not all(isinstance(c, np.ndarray) and c.ndim == 1 for c in chunks):
                raise TypeError("a chunk is not a flat array")
            kind = chunks[0].dtype.name if chunks else "float32"
            shape = check_shape(path, "chunked array", shape, kind if kind in DTYPE_NAMES else "float32")
            if sum(c.size for c in chunks) != math.prod(shape):  # checked before concatenate copies anything
                raise ValueError(f"chunks of {sum(c.size for c in chunks)} elements for shape {list(shape)}")
            return np.concatenate(chunks).reshape(shape)
        return {k: _unchunk(v, path) for k, v in tree.items()}
    return tree


def read(path: str) -> list[tuple[str, np.ndarray]]:
    """[("lm_head/dense/kernel", array)]: every leaf of the tree, "/"-joined, as views of the mapped file."""
    buf = map_file(path)
    check_not_lfs_pointer(path, bytes(buf[:32]))
    parser = _Parser(path, buf)
    try:
        tree = parser.value()
        if parser.pos != parser.size:
            raise parser.corrupt(f"{parser.size - parser.pos} bytes of extra data after the state dict")
        tree = _unchunk(tree, path)
    except _Truncated as e:
        raise CheckpointError(f"{path}: truncated msgpack: needs byte {e.args[0]}, the file has {parser.size}") \
            from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt msgpack (maps nested too deep for a state dict)") from None
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: corrupt chunked array in the msgpack ({e})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: not a flax state dict (the msgpack holds a {type(tree).__name__})")
    if set(tree) == {"params"} and isinstance(tree["params"], dict):  # a {"params": ...} variable collection
        tree = tree["params"]
    out: list[tuple[str, np.ndarray]] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + "/")
            elif isinstance(value, np.ndarray):
                out.append((name, value))
            else:
                raise CheckpointError(f"{path}: leaf {name!r} is a {type(value).__name__}, not an array")
    walk(tree, "")
    return out


# ------------------------------------------------------------------------------------------------ writing
def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n) if n < 2 ** 16 else b"\xdf" + struct.pack(">I", n)


def _ext_header(code: int, n: int) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if n in fixed:
        return bytes([fixed[n], code])
    if n < 2 ** 8:
        return bytes([0xC7, n, code])
    if n < 2 ** 16:
        return b"\xc8" + struct.pack(">H", n) + bytes([code])
    return b"\xc9" + struct.pack(">I", n) + bytes([code])


def _bin_header(n: int) -> bytes:
    if n < 2 ** 8:
        return bytes([0xC4, n])
    return b"\xc5" + struct.pack(">H", n) if n < 2 ** 16 else b"\xc6" + struct.pack(">I", n)


def _write_array(f: Any, array: np.ndarray, kind: str) -> None:
    head = b"\x93" + msgpack.packb(list(array.shape)) + msgpack.packb(kind) + _bin_header(array.nbytes)
    f.write(_ext_header(_EXT_NDARRAY, len(head) + array.nbytes) + head)
    f.write(array.reshape(-1).view(np.uint8))


def _write_leaf(f: Any, array: Any, dtype: str | None) -> int:
    kind, data = encode(array, dtype)
    if data.nbytes <= MAX_CHUNK_SIZE:
        _write_array(f, data, kind)
        return data.nbytes
    flat = data.reshape(-1)
    step = max(1, MAX_CHUNK_SIZE // data.itemsize)
    chunks = [flat[i:i + step] for i in range(0, flat.size, step)]
    f.write(_map_header(3) + msgpack.packb(_CHUNKED) + msgpack.packb(True))
    f.write(msgpack.packb("shape") + msgpack.packb({str(i): d for i, d in enumerate(data.shape)}))
    f.write(msgpack.packb("chunks") + _map_header(len(chunks)))
    for i, chunk in enumerate(chunks):
        f.write(msgpack.packb(str(i)))
        _write_array(f, chunk, kind)
    return data.nbytes


def write(path: str, tensors: list[tuple[tuple[str, ...], Any]], dtype: str | None) -> int:
    """Write [(path in the tree, array)] as one nested msgpack map; returns the number of data bytes.

    The bytes are those ``flax.serialization.msgpack_serialize`` writes for the same tree.
    """
    tree: dict = {}
    for keys, array in tensors:
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"{path}: {'/'.join(keys)} nests under an array")
        node[keys[-1]] = array
    total = 0

    def emit(f: Any, node: dict) -> None:
        nonlocal total
        f.write(_map_header(len(node)))
        for key in sorted(node):  # jax's tree_map, inside flax's msgpack_serialize, sorts every dict by key
            value = node[key]
            f.write(msgpack.packb(key))
            if isinstance(value, dict):
                emit(f, value)
            else:
                total += _write_leaf(f, value, stored_dtype(value, dtype))

    with open(path, "wb") as f:
        emit(f, tree)
    return total
