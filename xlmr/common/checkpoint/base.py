"""What the checkpoint readers and writers share: the error types, dtypes (bfloat16 with or without ml_dtypes),
memory maps. No deep-learning framework is imported here or by any ``checkpoint_*`` module.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

from xlmr.common.weights import UnknownWeightError

try:  # ml_dtypes ships with jax and tensorflow; without it bfloat16 tensors are widened to float32.
    import ml_dtypes

    BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised by monkeypatching BFLOAT16 in the tests
    BFLOAT16 = None


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt or holds something that is not an XLM-R weight.

    The message names the file (and the tensor where one is at fault).
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path, or a shard an index lists, does not exist."""


class UnknownTensorError(CheckpointError, UnknownWeightError):
    """A checkpoint tensor whose name maps to no XLM-R weight (also an ``UnknownWeightError``)."""


# Numeric dtypes a checkpoint may hold, by numpy name. bfloat16 travels as its uint16 bit pattern.
DTYPE_NAMES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
_FLOATS = ("float64", "float32", "float16", "bfloat16")


def dtype_name(array: Any) -> str:
    """The numpy name of an array's dtype ('bfloat16' for ml_dtypes' bfloat16)."""
    name = np.dtype(array.dtype).name
    if name not in DTYPE_NAMES:
        raise CheckpointError(f"dtype {name} cannot be stored in a checkpoint; use one of {', '.join(DTYPE_NAMES)}")
    return name


def target_dtype(dtype: Any) -> str | None:
    """Normalise the ``dtype`` argument of the writers ("bf16", np.float16, "float32", None) to a numpy name."""
    if dtype is None:
        return None
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype, dtype) if isinstance(dtype, str) else None
    if name is None:
        name = np.dtype(dtype).name
    if name not in _FLOATS:
        raise ValueError(f"dtype={dtype!r} is not a floating-point type; use one of {', '.join(_FLOATS)}")
    return name


def stored_dtype(array: Any, dtype: str | None) -> str:
    """The dtype name a tensor is written with: ``dtype`` for floating tensors when given, else its own."""
    name = dtype_name(np.asarray(array))
    return dtype if dtype is not None and name in _FLOATS else name


def encode(array: Any, dtype: str | None) -> tuple[str, np.ndarray]:
    """(stored dtype name, C-contiguous array holding exactly the bytes to write) for one tensor.

    Floating tensors are cast to ``dtype`` when given; bfloat16 comes back as its uint16 bit pattern.
    """
    array = np.asarray(array)
    name = stored_dtype(array, dtype)
    if name == "bfloat16":
        return name, np.ascontiguousarray(bfloat16_bits(array))
    return name, np.ascontiguousarray(array, dtype=np.dtype(name))


def itemsize(name: str) -> int:
    return 2 if name == "bfloat16" else np.dtype(name).itemsize


def storage_dtype(name: str) -> np.dtype:
    """The numpy dtype whose bytes a reader views the stored data as (uint16 for bfloat16)."""
    if name not in DTYPE_NAMES:
        raise KeyError(name)
    return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)


def decode(array: np.ndarray, name: str) -> np.ndarray:
    """Stored data (viewed as ``storage_dtype(name)``) -> the array a reader returns."""
    return bfloat16_from_bits(array) if name == "bfloat16" else array


def bfloat16_from_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 bit patterns -> bfloat16 (a zero-copy view with ml_dtypes) or, without it, the exact float32."""
    if BFLOAT16 is not None:
        return bits.view(BFLOAT16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """Any float array -> bfloat16 bit patterns (uint16), rounding to nearest even like every framework does."""
    if array.dtype.name == "bfloat16":
        return array.view(np.uint16)
    if BFLOAT16 is not None:
        return array.astype(BFLOAT16).view(np.uint16)
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
    return np.where(np.isnan(array), np.uint16(0x7FC0), rounded)


def map_file(path: str) -> mmap.mmap:
    """Map a whole file copy-on-write: arrays viewing it cost no memory until read, and writes stay private.

    Checkpoints are replaced by rename (``xlmr.common.io``), so a mapping outlives a later save to the same path.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise CheckpointError(f"{path}: the file is empty (an interrupted download or copy?)")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def release_pages(array: object) -> bool:
    """Drop the resident pages of the file mapping behind ``array`` (a view made by ``map_file``), once its values
    have been copied elsewhere: a loader that copies tensor by tensor then holds one tensor's pages at a time, not
    the whole file. The mapping stays valid: a later read faults the pages back in from the file. Arrays that do
    not view a mapping, and platforms without ``madvise``, are left alone. Returns whether pages were dropped.

    Only for arrays nobody wrote to: the mapping is copy-on-write, and dropping a written page discards the write.
    """
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(base, "madvise") or not isinstance(array, np.ndarray):
        return False
    try:
        start = array.__array_interface__["data"][0] - np.frombuffer(base, np.uint8, 1).__array_interface__["data"][0]
    except (ValueError, TypeError):  # a closed or empty mapping
        return False
    if start < 0 or start + array.nbytes > len(base):
        return False
    first = start - start % mmap.PAGESIZE
    last = start + array.nbytes  # pages shared with a neighbour are dropped too: they fault back in when read
    base.madvise(mmap.MADV_DONTNEED, first, last - first)
    return True


def check_not_lfs_pointer(path: str, head: bytes) -> None:
    """A Git LFS pointer is a tiny text file sitting where the weights should be; say so plainly."""
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` in its folder")


# Bounds on what a header may declare, checked before anything is allocated. numpy itself allows 64 dimensions;
# no weight has more than a handful, and no tensor reaches 2**48 bytes (256 TiB).
MAX_RANK = 16
MAX_TENSOR_BYTES = 2 ** 48


def check_shape(path: str, name: str, shape: Any, kind: str) -> tuple[int, ...]:
    """The shape as a tuple of ints, or CheckpointError naming the file and tensor when it is not a sane one.

    A dimension of 0 makes a tensor empty, but its other dimensions still go into numpy's size arithmetic, so they
    are bounded too (``[0, 2**62]`` is refused, not handed to numpy).
    """
    try:
        dims = tuple(shape)
        ok = len(dims) <= MAX_RANK and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims)
    except TypeError:
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {_short(shape)} (at most {MAX_RANK} "
                              "non-negative integer dimensions)")
    nonzero = 1
    for d in dims:
        nonzero *= max(d, 1)
    if nonzero * itemsize(kind) > MAX_TENSOR_BYTES:
        raise CheckpointError(f"{path}: tensor {name!r} declares shape {list(dims)}, {nonzero * itemsize(kind)} bytes "
                              f"of {kind}, over the limit of {MAX_TENSOR_BYTES} bytes for one tensor")
    return dims


def _short(value: Any, limit: int = 80) -> str:
    """repr for a message, cut short: a hostile file may nest or repeat without end."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def nonfinite(array: Any) -> tuple[int, tuple[int, ...]] | None:
    """(how many NaN/inf values, index of the first) in a floating array, or None when every value is finite.

    A float64 sum finds the common all-finite case in one pass without a temporary the size of the array.

    >>> nonfinite(np.array([[1.0, np.inf], [np.nan, 2.0]], np.float32))
    (2, (0, 1))
    >>> nonfinite(np.ones(3, np.float16)) is None
    True
    """
    a = np.asarray(array)
    if a.size == 0 or not (np.issubdtype(a.dtype, np.floating) or a.dtype.name == "bfloat16"):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a, dtype=np.float64)):
            return None
    bad = ~np.isfinite(a)
    count = int(np.count_nonzero(bad))
    if count == 0:  # finite values whose float64 sum overflowed
        return None
    first = np.unravel_index(int(np.argmax(bad)), a.shape)
    return count, tuple(int(i) for i in first)
