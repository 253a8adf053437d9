"""``pytorch_model.bin`` without torch: a restricted unpickler for reading, hand-written pickle opcodes for writing.

torch's zip format: ``<root>/data.pkl`` pickles the state dict; each tensor pickles as
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` whose storage is a
persistent id ``("storage", torch.FloatStorage, key, "cpu", numel)`` naming the record ``<root>/data/<key>``,
stored uncompressed (and 64-byte aligned by torch). The legacy format (torch < 1.6, or
``_use_new_zipfile_serialization=False``) is a run of pickles followed by the raw storages.

Unpickling runs code chosen by the file. The unpickler here resolves only the handful of globals a state dict
needs, each to a numpy builder of ours; any other global (``os.system``...) raises CheckpointError before
anything is called.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from xlmr.common.checkpoint.base import (
    CheckpointError, check_not_lfs_pointer, decode, encode, itemsize, map_file, storage_dtype, stored_dtype)

_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "UntypedStorage": "uint8"}
_STORAGE_OF = {v: k for k, v in _STORAGES.items() if k != "UntypedStorage"}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ALIGNMENT = 64


class _StorageType:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _Storage:
    """A storage named by a persistent id; ``data`` (a flat array) is attached once its bytes are located."""

    def __init__(self, dtype: str, key: str, numel: int) -> None:
        self.dtype, self.key, self.numel = dtype, key, numel
        self.data: np.ndarray | None = None
        self.root: _Storage | None = None  # legacy format: a view of another storage, from root_offset on
        self.root_offset = 0


class _Tensor:
    def __init__(self, storage: Any, offset: Any, shape: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage):
            raise TypeError("the storage of a tensor is not a storage")
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(d) for d in shape), tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


# The only globals a state dict's pickle may name, each mapped to a builder of ours.
_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: str, storages: dict[str, _Storage] | None) -> None:
        super().__init__(file)
        self.path, self.storages = path, storages

    def find_class(self, module: str, name: str) -> Any:
        if self.storages is not None and (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        raise CheckpointError(f"{self.path}: refused to unpickle global {module}.{name}: a state dict needs only "
                              "tensors, and nothing else in the file is executed")

    @staticmethod
    def state_dict(path: str, obj: Any) -> list[tuple[str, _Tensor]]:
        """The (name, tensor) pairs of the unpickled object, which must be a flat state dict."""
        return _state_dict(path, obj)

    def persistent_load(self, pid: Any) -> _Storage:
        if self.storages is None or not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage" \
                or not isinstance(pid[1], _StorageType):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r} in the pickle")
        kind, key, numel = pid[1].dtype, str(pid[2]), int(pid[4])
        storage = self.storages.setdefault(key, _Storage(kind, key, numel))
        if len(pid) == 6 and pid[5] is not None:  # legacy view of a root storage: (view key, offset, numel)
            view_key, view_offset, view_numel = pid[5]
            view = _Storage(kind, str(view_key), int(view_numel))
            view.root, view.root_offset = storage, int(view_offset)
            return view
        return storage


def _unpickle(path: str, data: Any, storages: dict[str, _Storage] | None, unpickler: type = _Unpickler) -> Any:
    try:
        return unpickler(data if hasattr(data, "read") else io.BytesIO(data), path, storages).load()
    except CheckpointError:
        raise
    except Exception as e:  # a corrupt pickle raises anything from EOFError to UnpicklingError to TypeError
        raise CheckpointError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None


def _materialise(path: str, name: str, tensor: _Tensor, big_endian: bool) -> np.ndarray:
    storage = tensor.storage
    kind = storage.dtype
    base, start = storage, 0
    while base.root is not None:
        base, start = base.root, start + base.root_offset
    flat = base.data
    if flat is None:
        raise CheckpointError(f"{path}: tensor {name!r}: storage {base.key} has no data in the file")
    if base.dtype != kind:
        raise CheckpointError(f"{path}: tensor {name!r}: storage {base.key} is read as two dtypes")
    if big_endian:
        flat = flat.view(flat.dtype.newbyteorder(">"))
    offset = start + tensor.offset
    span = 1 + sum((d - 1) * s for d, s in zip(tensor.shape, tensor.stride)) if all(tensor.shape) else 0
    if offset < 0 or min(tensor.stride, default=0) < 0 or offset + span > flat.size:
        raise CheckpointError(f"{path}: tensor {name!r} (shape {list(tensor.shape)}, stride {list(tensor.stride)}, "
                              f"offset {offset}) reaches past its storage of {flat.size} elements")
    contiguous = tuple(int(np.prod(tensor.shape[i + 1:])) for i in range(len(tensor.shape)))
    if all(s == c or d == 1 for d, s, c in zip(tensor.shape, tensor.stride, contiguous)):
        array = flat[offset:offset + math.prod(tensor.shape)].reshape(tensor.shape)
    else:  # a non-contiguous view (a transposed or sliced tensor saved as such): copy it out contiguously
        view = np.lib.stride_tricks.as_strided(flat[offset:], tensor.shape,
                                               [s * flat.itemsize for s in tensor.stride], writeable=False)
        array = np.ascontiguousarray(view)
    if big_endian:
        array = array.astype(array.dtype.newbyteorder("="))
    return decode(array, kind)


def _state_dict(path: str, obj: Any) -> list[tuple[str, _Tensor]]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of tensor names to tensors)")
    return list(obj.items())


def _zip_record(path: str, buf: Any, info: zipfile.ZipInfo) -> int:
    """Absolute offset of a stored record's bytes, after checking they lie inside the file."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: record {info.filename} is compressed; torch never writes that")
    head = bytes(buf[info.header_offset:info.header_offset + 30])
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{path}: corrupt zip: bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > len(buf):
        raise CheckpointError(f"{path}: truncated: record {info.filename} ends past the end of the file")
    return start


def _read_zip(path: str, buf: Any, unpickler: type = _Unpickler) -> list[tuple[str, np.ndarray]]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            pickles = [n for n in infos if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: a zip archive but not a torch checkpoint (no <root>/data.pkl)")
            root = pickles[0][: -len("data.pkl")]
            data = archive.read(pickles[0])
            order = archive.read(root + "byteorder") if root + "byteorder" in infos else b"little"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt zip archive ({e})") from None
    storages: dict[str, _Storage] = {}
    tensors = unpickler.state_dict(path, _unpickle(path, data, storages, unpickler))
    for key, storage in storages.items():
        info = infos.get(f"{root}data/{key}")
        if info is None:
            raise CheckpointError(f"{path}: storage record {root}data/{key} is missing")
        size = storage.numel * itemsize(storage.dtype)
        if info.file_size < size:
            raise CheckpointError(f"{path}: storage record {root}data/{key} holds {info.file_size} bytes, "
                                  f"its tensors need {size}")
        storage.data = np.frombuffer(buf, storage_dtype(storage.dtype), storage.numel, _zip_record(path, buf, info))
    big = order.strip() == b"big"
    return [(name, _materialise(path, name, t, big)) for name, t in tensors]


def _read_legacy(path: str, buf: Any, unpickler: type = _Unpickler) -> list[tuple[str, np.ndarray]]:
    with open(path, "rb") as f:  # the pickles are read from the file, the storages viewed in the map
        return _read_legacy_from(path, buf, f, unpickler)


def _read_legacy_from(path: str, buf: Any, f: Any, unpickler: type = _Unpickler) -> list[tuple[str, np.ndarray]]:
    magic = _unpickle(path, f, None)
    if magic != _LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor torch's legacy format)")
    if _unpickle(path, f, None) != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported legacy torch protocol version")
    sys_info = _unpickle(path, f, None)
    storages: dict[str, _Storage] = {}
    tensors = unpickler.state_dict(path, _unpickle(path, f, storages, unpickler))
    keys = _unpickle(path, f, None)
    offset = f.tell()
    for key in keys if isinstance(keys, list) else ():
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"{path}: storage {key} is listed but no tensor uses it")
        if offset + 8 > len(buf):
            raise CheckpointError(f"{path}: truncated: storage {key} starts past the end of the file")
        (numel,) = struct.unpack("<q", buf[offset:offset + 8])
        size = numel * itemsize(storage.dtype)
        if numel < storage.numel or offset + 8 + size > len(buf):
            raise CheckpointError(f"{path}: truncated or corrupt: storage {key} ({size} bytes at {offset + 8})")
        storage.data = np.frombuffer(buf, storage_dtype(storage.dtype), storage.numel, offset + 8)
        offset += 8 + size
    big = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    return [(name, _materialise(path, name, t, big)) for name, t in tensors]


def read(path: str, unpickler: type = _Unpickler) -> list[tuple[str, np.ndarray]]:
    """[(name, array)] of a torch state dict; contiguous tensors are views of the memory-mapped file.

    ``unpickler`` (a subclass of ``_Unpickler``) is the hook for other torch pickles (fairseq's ``model.pt``):
    its ``find_class`` allows more globals, its ``state_dict(path, obj)`` finds the tensors in what it unpickled.
    """
    buf = map_file(path)
    head = bytes(buf[:32])
    check_not_lfs_pointer(path, head)
    if head[:4] == b"PK\x03\x04":
        return _read_zip(path, buf, unpickler)
    if head[:1] == b"\x80":
        return _read_legacy(path, buf, unpickler)
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor torch's legacy format)")


# ------------------------------------------------------------------------------------------------ writing
def _op_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _op_int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    if -(2 ** 31) <= i < 2 ** 31:
        return b"J" + struct.pack("<i", i)
    data = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _op_tuple(items: list[bytes]) -> bytes:
    return {0: b")", 1: b"".join(items) + b"\x85", 2: b"".join(items) + b"\x86",
            3: b"".join(items) + b"\x87"}.get(len(items)) or b"(" + b"".join(items) + b"t"


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def state_dict_pickle(entries: list[tuple[str, str, str, int, tuple[int, ...]]]) -> bytes:
    """The pickle torch.save writes for a dict of contiguous tensors: [(name, dtype, storage key, numel, shape)]."""
    out = [b"\x80\x02}"]
    if entries:
        out.append(b"(")
    for name, kind, key, numel, shape in entries:
        stride = [math.prod(shape[i + 1:]) for i in range(len(shape))]
        pid = _op_tuple([_op_str("storage"), _op_global("torch", _STORAGE_OF[kind]), _op_str(key), _op_str("cpu"),
                         _op_int(numel)])
        args = [pid + b"Q", _op_int(0), _op_tuple([_op_int(d) for d in shape]),
                _op_tuple([_op_int(s) for s in stride]), b"\x89",
                _op_global("collections", "OrderedDict") + b")R"]
        out.append(_op_str(name) + _op_global("torch._utils", "_rebuild_tensor_v2") + _op_tuple(args) + b"R")
    if entries:
        out.append(b"u")
    out.append(b".")
    return b"".join(out)


def _add_record(archive: zipfile.ZipFile, name: str, data: Any) -> None:
    """Store one record with its bytes aligned to 64 like torch, by padding the local header's extra field."""
    data = memoryview(data).cast("B")
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = data.nbytes
    zip64 = data.nbytes * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule for a zip64 local header
    header = 30 + len(name.encode("utf-8")) + 4 + (20 if zip64 else 0)
    pad = -(archive.start_dir + header) % _ALIGNMENT
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    with archive.open(info, "w", force_zip64=zip64) as f:
        f.write(data)


def write(path: str, root: str, tensors: list[tuple[str, Any]], dtype: str | None) -> int:
    """Write ``tensors`` as torch.save would (same zip layout and pickle); returns the number of storage bytes.

    Tensors given as the very same array object share one storage, as tied weights do in torch.
    """
    storages: dict[int, tuple[str, Any, str]] = {}  # id(array) -> (key, array, dtype)
    entries = []
    for name, array in tensors:
        if id(array) not in storages:
            storages[id(array)] = (str(len(storages)), array, stored_dtype(array, dtype))
        key, _, kind = storages[id(array)]
        shape = tuple(np.shape(array))
        entries.append((name, kind, key, math.prod(shape), shape))
    pickled = state_dict_pickle(entries)
    total = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        _add_record(archive, f"{root}/data.pkl", pickled)
        _add_record(archive, f"{root}/.format_version", b"1")
        _add_record(archive, f"{root}/.storage_alignment", str(_ALIGNMENT).encode())
        _add_record(archive, f"{root}/byteorder", b"little")
        for key, array, kind in storages.values():
            _, data = encode(array, kind)
            _add_record(archive, f"{root}/data/{key}", data.reshape(-1).view(np.uint8))
            total += data.nbytes
        _add_record(archive, f"{root}/version", b"3\n")
        _add_record(archive, f"{root}/.data/serialization_id", str(zlib.crc32(pickled)).zfill(40).encode())
    return total

