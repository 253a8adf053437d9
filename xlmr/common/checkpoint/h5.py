"""``tf_model.h5`` in the Keras 2 HDF5 layout HF's TF classes save and load, through h5py (no TensorFlow).

Single file (``model.save_weights``): root attribute ``layer_names`` lists the model's top-level layers
(``roberta``, ``lm_head``, ...); group ``<layer>`` has attribute ``weight_names`` and one dataset per weight
at ``<layer>/<weight name>``, where a weight name carries the Keras model scope:
``tfxlm_roberta_for_masked_lm/roberta/encoder/layer_._0/attention/self/query/kernel:0``. A layer that
shares another's weights lists them too: HF's LM head always holds the word embeddings (hard links here).

Shard (``tf_model-0000k-of-0000n.h5``): datasets named without the scope, listed in the root ``layer_names``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from typing import Any, Callable, Iterator

import numpy as np

from xlmr.common.checkpoint.base import (
    DTYPE_NAMES, CheckpointError, check_not_lfs_pointer, check_shape, encode, stored_dtype)

_HEADER_LIMIT = 64512  # HDF5's object-header limit, above which Keras splits an attribute into name0, name1...
_KERAS_VERSION = b"2.21.0"  # what tf-keras 2.21 writes; HF's loader never reads it


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover
        raise ImportError("reading or writing tf_model.h5 needs h5py: pip install h5py") from None
    return h5py


def _attribute(group: Any, name: str) -> list[str]:
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, k = [], 0
        while f"{name}{k}" in group.attrs:
            values.extend(group.attrs[f"{name}{k}"])
            k += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _set_attribute(group: Any, name: str, values: list[str]) -> None:
    data = np.asarray([v.encode("utf-8") for v in values]) if values else np.asarray([], dtype=np.float64)
    chunks = 1
    while any(c.nbytes > _HEADER_LIMIT for c in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for k, chunk in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{k}"] = chunk


def strip_scope(name: str) -> str:
    """``tfxlm_roberta_for_masked_lm/roberta/...:0`` -> ``roberta/...`` (the scope and the ``:0`` suffix go)."""
    return re.sub(r":\d+\Z", "", name.split("/", 1)[1] if "/" in name else name)


@contextlib.contextmanager
def open_tensors(path: str) -> Iterator[list[tuple[str, Callable[[], np.ndarray]]]]:
    """[(name without scope and ``:0``, loader)] of a single h5 file or a shard, in file order, while open.

    A weight listed under several layers (HF's tied embeddings) is returned once.
    """
    h5py = _h5py()
    with open(path, "rb") as f:
        check_not_lfs_pointer(path, f.read(32))
    try:
        file = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file, truncated or corrupt ({e})") from None
    with file:
        try:
            layers = _attribute(file, "layer_names")
            if not layers:
                raise CheckpointError(f"{path}: not a Keras weights file (no layer_names attribute)")
            datasets: dict[str, Any] = {}
            for layer in layers:
                if not _hard(h5py, file, layer):  # absent, or a link to another file
                    raise CheckpointError(f"{path}: layer {layer!r} is listed but absent, or a link to another file")
                obj = file.get(layer)
                if isinstance(obj, h5py.Dataset):  # a shard: dataset paths are the weight names, unscoped
                    datasets.setdefault(re.sub(r":\d+\Z", "", layer), obj)
                    continue
                for weight in _attribute(obj, "weight_names"):
                    if weight not in obj or not _hard(h5py, obj, weight):
                        raise CheckpointError(f"{path}: weight {weight!r} of layer {layer!r} is listed but absent")
                    datasets.setdefault(strip_scope(weight), obj[weight])
        except (OSError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path}: corrupt HDF5 file ({e})") from None

        size = os.path.getsize(path)
        try:
            for name, dataset in datasets.items():
                _check_dataset(h5py, path, name, dataset, size)
        except (OSError, KeyError, RuntimeError, TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path}: corrupt HDF5 file ({e})") from None

        def loader(name: str, dataset: Any) -> Callable[[], np.ndarray]:
            def load() -> np.ndarray:
                try:
                    return dataset[()]
                except (OSError, RuntimeError, ValueError) as e:
                    raise CheckpointError(f"{path}: tensor {name!r} cannot be read, truncated or corrupt "
                                          f"({e})") from None
            return load

        yield [(name, loader(name, ds)) for name, ds in datasets.items()]


def _hard(h5py: Any, group: Any, name: str) -> bool:
    """Whether every link on the way to ``group[name]`` stays inside the file (no external or soft links)."""
    node = group
    for part in name.split("/"):
        if not part:
            continue
        if not isinstance(node, h5py.Group) or node.get(part, getlink=True).__class__ is not h5py.HardLink:
            return False
        node = node[part]
    return True


def _check_dataset(h5py: Any, path: str, name: str, dataset: Any, file_size: int) -> None:
    """Refuse, before reading, a dataset whose bytes are not plainly in this file: HDF5 can declare a terabyte
    dataset with no storage (reads as its fill value), compress a bomb, or point at external or virtual files."""
    if not isinstance(dataset, h5py.Dataset):
        raise CheckpointError(f"{path}: weight {name!r} is a group, not a tensor")
    kind = dataset.dtype
    if kind.kind not in "fiub" or kind.name not in DTYPE_NAMES:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {kind}, which is not a weight's")
    shape = check_shape(path, name, tuple(int(d) for d in dataset.shape), kind.name)
    nbytes = math.prod(shape) * kind.itemsize
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT) or plist.get_external_count():
        raise CheckpointError(f"{path}: tensor {name!r} is stored outside the file (external or virtual dataset)")
    if plist.get_nfilters():
        raise CheckpointError(f"{path}: tensor {name!r} is compressed or filtered; Keras never writes that")
    stored = dataset.id.get_storage_size()
    if stored < nbytes or nbytes > file_size:
        raise CheckpointError(f"{path}: tensor {name!r} of shape {list(shape)} needs {nbytes} bytes, the file "
                              f"holds {stored} for it (truncated, or a declared size with no data)")


def write(path: str, scope: str, tensors: list[tuple[str, str, Any]], dtype: str | None,
          shared: dict[str, list[str]], shard: bool) -> int:
    """Write [(layer, name without scope, array)]; returns the number of data bytes.

    ``shared`` maps a layer to further names (already written under another layer) it also lists, hard-linked.
    ``shard`` writes HF's shard layout instead of the single-file one.
    """
    h5py = _h5py()
    total = 0
    with h5py.File(path, "w") as f:
        if shard:
            names = []
            for _, name, array in sorted(tensors, key=lambda t: t[1]):
                total += _dataset(f, f"{name}:0", array, dtype, path).nbytes
                names.append(f"{name}:0")
            _set_attribute(f, "layer_names", names)
            return total
        layers = list(dict.fromkeys(layer for layer, _, _ in tensors))
        _set_attribute(f, "layer_names", layers)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = _KERAS_VERSION
        written: dict[str, Any] = {}
        listed: dict[str, list[str]] = {}
        for layer in sorted(layers):  # Keras creates the groups sorted by layer name
            group = f.create_group(layer)
            listed[layer] = []
            for owner, name, array in tensors:
                if owner == layer:
                    written[name] = _dataset(group, f"{scope}/{name}:0", array, dtype, path)
                    total += written[name].nbytes
                    listed[layer].append(f"{scope}/{name}:0")
        for layer in layers:
            for name in shared.get(layer, []):
                f[layer][f"{scope}/{name}:0"] = written[name]
                listed[layer].append(f"{scope}/{name}:0")
            _set_attribute(f[layer], "weight_names", listed[layer])
        _set_attribute(f.create_group("top_level_model_weights"), "weight_names", [])
    return total


def _dataset(group: Any, name: str, array: Any, dtype: str | None, path: str) -> Any:
    kind = stored_dtype(array, dtype)
    if kind == "bfloat16":
        raise CheckpointError(f"{path}: HDF5 (tf_model.h5) cannot hold bfloat16; save as float32 or float16")
    _, data = encode(array, kind)
    return group.create_dataset(name, data=data)
