"""Checkpoint I/O for every Hugging Face XLM-R format, without importing torch, TensorFlow, jax or flax.

Canonical weights are a flat ``{HF PyTorch name: numpy array}``. The four formats, in the order a folder holding
several is read:

  ``safetensors``  ``model.safetensors`` (or ``model.safetensors.index.json`` + shards), memory-mapped.
  ``pt``           ``pytorch_model.bin`` (torch's zip format, or its legacy format), through an unpickler that
                   refuses every global but a state dict's handful; memory-mapped.
  ``tf``           ``tf_model.h5``: HF's TF classes (Keras 2 HDF5 layout, names from the ``hf_tf`` scheme).
  ``flax``         ``flax_model.msgpack``: HF's Flax classes (flax's msgpack encoding, ``hf_flax`` scheme).

Names and layouts go through ``xlmr.common.weights`` (kernels transposed for TF and Flax); a tensor whose name
maps to no XLM-R weight raises UnknownTensorError (a CheckpointError and an UnknownWeightError). A bare
``XLMRobertaModel`` checkpoint reads without the ``roberta.`` prefix in every format, as HF's PyTorch class names
it. Files are written atomically (``xlmr.common.io.atomic_path``).

Example:
    >>> import tempfile, numpy as np
    >>> from xlmr.common.config import XLMRobertaConfig
    >>> from xlmr.common.init import initial_weights
    >>> from xlmr.common.weights import parameter_shapes
    >>> cfg = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                        intermediate_size=37)
    >>> state = initial_weights(parameter_shapes(cfg, "XLMRobertaForMaskedLM"), cfg)
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_pretrained(folder, cfg, state, "XLMRobertaForMaskedLM", format="flax")
    >>> find_checkpoint(folder)[0]
    'flax'
    >>> back = read_checkpoint(folder)
    >>> sorted(back) == sorted(state) and all(np.array_equal(back[k], v) for k, v in state.items())
    True
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import re
import warnings
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from xlmr.common.checkpoint.base import (
    CheckpointError, CheckpointNotFoundError, UnknownTensorError, itemsize, nonfinite, stored_dtype, target_dtype)
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.io import atomic_path, atomic_write_text
from xlmr.common.weights import (
    LM_BIAS_ALIAS, is_buffer, normalise_names,
    ARCHITECTURES, UnknownWeightError, check_state, from_scheme_array, from_scheme_name, is_head_weight, kind_of,
    parameter_shapes,
    to_scheme_array, to_scheme_name)

__all__ = ["FORMATS", "WEIGHTS_NAMES", "INDEX_NAMES", "CheckpointError", "CheckpointNotFoundError",
           "UnknownTensorError", "find_checkpoint", "read_checkpoint", "iter_checkpoint", "save_pretrained",
           "is_weights_file", "weight_formats", "nonfinite"]

logger = logging.getLogger("xlmr.checkpoint")

FORMATS = ("safetensors", "pt", "tf", "flax")  # also the precedence when a folder holds several
WEIGHTS_NAMES = {"safetensors": "model.safetensors", "pt": "pytorch_model.bin", "tf": "tf_model.h5",
                 "flax": "flax_model.msgpack"}
INDEX_NAMES = {fmt: name + ".index.json" for fmt, name in WEIGHTS_NAMES.items()}
_SCHEMES = {"safetensors": "pt", "pt": "pt", "tf": "hf_tf", "flax": "hf_flax"}
_EXTENSIONS = {".safetensors": "safetensors", ".bin": "pt", ".pt": "pt", ".pth": "pt", ".h5": "tf",
               ".msgpack": "flax"}
# Names a PyTorch checkpoint may hold besides the table's weights: HF's alias of lm_head.bias and old buffers.
# They are returned as they are; xlmr.common.loading folds them away.
_LM_HEADS = ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM")
_ROBERTA = "roberta"


# ------------------------------------------------------------------------------------------------ finding
def _weights_pattern(fmt: str) -> re.Pattern:
    """HF's names for ``fmt``'s weights: the single file, the shard index and the shards."""
    stem, ext = os.path.splitext(WEIGHTS_NAMES[fmt])
    return re.compile(rf"{re.escape(WEIGHTS_NAMES[fmt])}|{re.escape(INDEX_NAMES[fmt])}|"
                      rf"{re.escape(stem)}-\d{{5}}-of-\d{{5}}{re.escape(ext)}")


def is_weights_file(name: str) -> str | None:
    """The format whose weights file (single, index or shard) ``name`` is by HF's naming, or None.

    >>> is_weights_file("model-00001-of-00002.safetensors"), is_weights_file("notes.txt")
    ('safetensors', None)
    """
    return next((fmt for fmt in FORMATS if _weights_pattern(fmt).fullmatch(name)), None)


def weight_formats(folder: str | os.PathLike) -> list[str]:
    """Every format with weights (a single file or a shard index) in ``folder``, in reading precedence."""
    folder = os.fspath(folder)
    return [fmt for fmt in FORMATS if os.path.isfile(os.path.join(folder, WEIGHTS_NAMES[fmt]))
            or os.path.isfile(os.path.join(folder, INDEX_NAMES[fmt]))]


def _reader(fmt: str):
    """The module that reads and writes ``fmt``, imported on first use (each needs its own library: h5py, msgpack)."""
    if fmt == "safetensors":
        from xlmr.common.checkpoint import safetensors as module
    elif fmt == "pt":
        from xlmr.common.checkpoint import pytorch as module
    elif fmt == "tf":
        from xlmr.common.checkpoint import h5 as module
    else:
        from xlmr.common.checkpoint import msgpack as module
    return module


def _format_of_file(path: str) -> str:
    name = os.path.basename(path)
    stem = name[: -len(".index.json")] if name.endswith(".index.json") else name
    fmt = _EXTENSIONS.get(os.path.splitext(stem)[1])
    if fmt is None:
        raise CheckpointError(f"{path}: unknown checkpoint format; expected a file ending in "
                              f"{', '.join(_EXTENSIONS)} (or a shard index *.index.json), or pass format=")
    return fmt


def _read_index(index: str) -> tuple[list[str], dict[str, str]]:
    """(shard paths, weight map) of a shard index, after checking every shard it lists exists."""
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{index}: unreadable shard index ({e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: not a shard index (no weight_map of tensor name -> shard file)")
    folder = os.path.dirname(index)
    files = []
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index}: shard {shard!r} is not a file name in the index's folder")
        if not os.path.isfile(os.path.join(folder, shard)):
            tensor = next(k for k, v in weight_map.items() if v == shard)
            raise CheckpointNotFoundError(f"{index}: shard {shard} (holding {tensor}) is missing from {folder}")
        files.append(os.path.join(folder, shard))
    return files, weight_map


def _locate(path: str | os.PathLike, format: str | None) -> tuple[str, list[str], dict[str, str] | None]:
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"checkpoint path {path} does not exist")
    if os.path.isdir(path):
        formats = FORMATS if format is None else (format,)
        for fmt in formats:
            single = os.path.isfile(os.path.join(path, WEIGHTS_NAMES[fmt]))
            if single or os.path.isfile(os.path.join(path, INDEX_NAMES[fmt])):
                others = [f for f in weight_formats(path) if f != fmt]
                if others:  # they may disagree: say which one is read, every time a folder is read
                    logger.info("%s: reading the %s weights (%s); also present and not read: %s", path, fmt,
                                WEIGHTS_NAMES[fmt] if single else INDEX_NAMES[fmt],
                                ", ".join(WEIGHTS_NAMES[f] for f in others))
                if single:
                    return fmt, [os.path.join(path, WEIGHTS_NAMES[fmt])], None
                return (fmt, *_read_index(os.path.join(path, INDEX_NAMES[fmt])))
        looked = ", ".join(n for fmt in formats for n in (WEIGHTS_NAMES[fmt], INDEX_NAMES[fmt]))
        raise CheckpointNotFoundError(f"no weights in checkpoint folder {path}: looked for {looked}")
    fmt = format or _format_of_file(path)
    if path.endswith(".index.json"):
        return (fmt, *_read_index(path))
    return fmt, [path], None


def find_checkpoint(path: str | os.PathLike, format: str | None = None) -> tuple[str, list[str]]:
    """(format, weight files) of a checkpoint folder, a weights file or a shard index.

    A folder holding several formats gives the first of ``FORMATS`` (safetensors, pt, tf, flax), or ``format``.
    Raises CheckpointNotFoundError naming the folder and the file names looked for when there is none.
    """
    fmt, files, _ = _locate(path, format)
    return fmt, files


# ------------------------------------------------------------------------------------------------ reading
@contextlib.contextmanager
def _open(fmt: str, file: str) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """(naming scheme, [(stored name, array or loader)]) of one file."""
    if fmt == "safetensors":
        metadata, tensors = _reader("safetensors").read(file)
        # HF's TF and Flax classes can save safetensors too, under their own names.
        yield {"tf": "hf_tf", "flax": "hf_flax"}.get(metadata.get("format", "pt"), "pt"), tensors
    elif fmt == "pt":
        yield "pt", _reader("pt").read(file)
    elif fmt == "tf":
        with _reader("tf").open_tensors(file) as tensors:
            yield "hf_tf", tensors
    else:
        yield "hf_flax", _reader("flax").read(file)


def _index_name(fmt: str, key: str) -> str:
    """A shard index's tensor name as that shard's reader returns it (the h5 index carries the Keras scope)."""
    return _reader("tf").strip_scope(key) if fmt == "tf" else key


def _canonical(stored: str, scheme: str, bare: bool, file: str) -> str:
    try:
        if scheme == "pt":
            if not (is_buffer(stored) or stored == LM_BIAS_ALIAS):
                kind_of(stored)
            return stored
        if scheme == "hf_tf":
            name = re.sub(r":\d+\Z", "", stored)
            return from_scheme_name(name[len(_ROBERTA) + 1:] if bare else name, "hf_tf")
        return from_scheme_name(stored.replace("/", "."), "hf_flax")
    except UnknownWeightError as e:
        raise UnknownTensorError(f"{file}: tensor {stored!r} is not an XLM-R weight ({e})") from None


def iter_checkpoint(path: str | os.PathLike, format: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (canonical name, array) tensor by tensor, shard by shard, in canonical names and layouts.

    Only one shard is open at a time; safetensors, pt and msgpack arrays are views of the memory-mapped file
    (read-only to the file, writes stay private), h5 tensors are read as they are yielded. Finding the
    checkpoint happens now (errors raise here); the tensors are read as the iterator advances.
    """
    fmt, files, weight_map = _locate(path, format)
    return _iterate(fmt, files, weight_map)


def _iterate(fmt: str, files: list[str], weight_map: dict[str, str] | None) -> Iterator[tuple[str, np.ndarray]]:
    listed: dict[str, set[str]] = {}
    for key, shard in (weight_map or {}).items():
        listed.setdefault(shard, set()).add(_index_name(fmt, key))
    seen: dict[str, str] = {}
    for file in files:
        with _open(fmt, file) as (scheme, tensors):
            stored = [name for name, _ in tensors]
            lacking = listed.get(os.path.basename(file), set()) - set(stored)
            if lacking:
                raise CheckpointError(f"{file}: the shard index lists {', '.join(sorted(lacking)[:5])} in this "
                                      "shard, which lacks them")
            # HF's TF classes keep the ``roberta/`` scope even in the bare model; HF PyTorch names have none.
            names = [_index_name(fmt, k) for k in weight_map] if weight_map else stored
            bare = scheme == "hf_tf" and all(n.startswith(_ROBERTA + "/") for n in names)
            for name, value in tensors:
                canonical = _canonical(name, scheme, bare, file)
                if canonical in seen:
                    where = "twice in this file" if seen[canonical] == file else f"in both {seen[canonical]} and it"
                    raise CheckpointError(f"{file}: tensor {canonical} appears {where}")
                seen[canonical] = file
                array = value() if callable(value) else value
                yield canonical, array if scheme == "pt" else from_scheme_array(array, canonical, scheme)


def read_checkpoint(path: str | os.PathLike, format: str | None = None) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint (folder, weights file or shard index): {canonical name: numpy array}.

    Aliases and buffers a PyTorch checkpoint holds (``lm_head.decoder.bias``, ``embeddings.position_ids``) are
    returned as they are. bfloat16 comes back as ml_dtypes' bfloat16, or exactly widened to float32 without it.
    """
    return dict(iter_checkpoint(path, format))


# ------------------------------------------------------------------------------------------------ writing
def parse_size(size: int | str) -> int:
    """Bytes from 123, "500MB" (10**6), "2GiB" (2**30), "20KB"..."""
    units = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
             "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
    if isinstance(size, bool) or not match or match.group(2).upper() not in units:
        raise ValueError(f"max_shard_size={size!r} is not a size like 500000000, '500MB' or '2GiB'")
    value = int(float(match.group(1)) * units[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"max_shard_size={size!r} must be positive")
    return value


def keras_scope(architecture: str) -> str:
    """The Keras name scope of HF's TF class, as Keras derives it: TFXLMRobertaForMaskedLM ->
    tfxlm_roberta_for_masked_lm."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", "TF" + architecture)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _prefixed(name: str, architecture: str) -> str:
    body = name[len(_ROBERTA) + 1:] if name.startswith(_ROBERTA + ".") else name
    if body.split(".", 1)[0] not in ("embeddings", "encoder", "pooler"):
        return name
    return body if architecture == "XLMRobertaModel" else f"{_ROBERTA}.{body}"


def _checked_state(directory: str, config: XLMRobertaConfig, state: Any, architecture: str) -> list[tuple[str, Any]]:
    """The tensors to write, canonical names in module order, or CheckpointError listing every problem.

    Prefixes and aliases are aligned with the class (``xlmr.common.weights.normalise_names``). Every tensor must
    be an XLM-R weight of the config's shape and every encoder weight must be there; missing head weights only
    warn (HF initialises them, as ours do), and weights of another class (a head checkpoint's pooler) are kept,
    so that a conversion writes what its source holds.
    """
    pairs = list(state.items()) if isinstance(state, Mapping) else list(state)
    repeated = sorted(n for n, count in collections.Counter(n for n, _ in pairs).items() if count > 1)
    tensors = normalise_names({n: v for n, v in pairs if not is_buffer(n)}, architecture)
    if config.tie_word_embeddings:
        tensors.pop("lm_head.decoder.weight", None)
    expected = parameter_shapes(config, architecture)
    known = {}  # the shape of every class's weights, under this class's prefix convention; this class's first
    for other in (architecture, *ARCHITECTURES):
        try:
            shapes = parameter_shapes(config, other)
        except ValueError:  # a config another class cannot take (num_labels=3 for question answering)
            continue
        for name, shape in shapes.items():
            known.setdefault(_prefixed(name, architecture), shape)
    twice = [(n, tensors[n]) for n in repeated if n in tensors]  # check_state names a pair given twice
    check_state(expected, [*tensors.items(), *twice], f"cannot save {architecture} to {directory}",
                optional=[n for n in expected if is_head_weight(n, architecture)], tolerated=known,
                error=CheckpointError)
    heads = [n for n in expected if n not in tensors]
    if heads:
        warnings.warn(f"saving {architecture} to {directory} without {', '.join(heads)}: whoever loads it will "
                      "initialise them", stacklevel=3)
    order = {name: k for k, name in enumerate(known)}
    return [(name, np.asarray(tensors[name])) for name in sorted(tensors, key=order.__getitem__)]


def _units(fmt: str, tensors: list[tuple[str, Any]], config: XLMRobertaConfig, architecture: str) -> list[list]:
    """Storage units to shard: [[(stored key, array, layer)], ...]; the items of one unit share one storage."""
    scheme = _SCHEMES[fmt]
    units = []
    for name, array in tensors:
        if fmt in ("safetensors", "pt"):
            unit = [(name, array, None)]
            if fmt == "pt" and architecture in _LM_HEADS:  # torch.save of HF's state dict keeps the tied aliases
                if name == "lm_head.bias":
                    unit.append(("lm_head.decoder.bias", array, None))
                if name == "roberta.embeddings.word_embeddings.weight" and config.tie_word_embeddings:
                    unit.append(("lm_head.decoder.weight", array, None))
            units.append(unit)
            continue
        key = to_scheme_name(name, scheme)
        if fmt == "tf" and architecture == "XLMRobertaModel":
            key = f"{_ROBERTA}/{key}"
        value = to_scheme_array(array, name, scheme)
        units.append([(key if fmt == "tf" else tuple(key.split(".")), value, key.split("/")[0])])
    return units


def _split(units: list[list], limit: int | None, dtype: str | None) -> list[list[list]]:
    """HF's greedy sharding: start a new shard when the next unit would push this one past ``limit``."""
    shards: list[list[list]] = [[]]
    size = 0
    for unit in units:
        nbytes = _nbytes(unit[0][1], dtype)
        if limit is not None and shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(unit)
        size += nbytes
    return shards


def _nbytes(array: Any, dtype: str | None) -> int:
    return math.prod(np.shape(array)) * itemsize(stored_dtype(array, dtype))


def _shard_name(fmt: str, k: int, n: int) -> str:
    if n == 1:
        return WEIGHTS_NAMES[fmt]
    stem, ext = os.path.splitext(WEIGHTS_NAMES[fmt])
    return f"{stem}-{k + 1:05d}-of-{n:05d}{ext}"


def _write_file(fmt: str, path: str, final_name: str, units: list[list], dtype: str | None, architecture: str,
                sharded: bool) -> None:
    items = [item for unit in units for item in unit]
    if fmt == "safetensors":
        _reader("safetensors").write(path, [(k, a) for k, a, _ in items], dtype, {"format": "pt"})
    elif fmt == "pt":
        _reader("pt").write(path, os.path.splitext(final_name)[0], [(k, a) for k, a, _ in items], dtype)
    elif fmt == "tf":
        shared = {}
        if architecture in _LM_HEADS and not sharded:  # HF's LM head layer lists the (tied) embeddings too
            shared["lm_head"] = [k for k, _, _ in items if k.startswith(f"{_ROBERTA}/embeddings/")]
        _reader("tf").write(path, keras_scope(architecture), [(layer, k, a) for k, a, layer in items], dtype,
                            shared, shard=sharded)
    else:
        _reader("flax").write(path, [(k, a) for k, a, _ in items], dtype)


def _index_key(fmt: str, key: Any, architecture: str) -> str:
    if fmt == "tf":
        return f"{keras_scope(architecture)}/{key}:0"
    return "/".join(key) if fmt == "flax" else key


def _shadowing(directory: str, fmt: str, keep: set[str]) -> list[tuple[str, str]]:
    """(file, its format) of the weight files in ``directory`` that a reader would take instead of (or mix
    with) the ``fmt`` files in ``keep``: stale files of the same format and any of a format that comes first."""
    if not os.path.isdir(directory):
        return []
    preceding = FORMATS[: FORMATS.index(fmt) + 1]
    return [(name, other) for name in sorted(os.listdir(directory))
            if (other := is_weights_file(name)) in preceding and name not in keep]


def save_pretrained(
    directory: str | os.PathLike,
    config: XLMRobertaConfig,
    state: Mapping[str, Any] | Iterable[tuple[str, Any]],
    architecture: str,
    format: str = "safetensors",
    max_shard_size: int | str | None = None,
    dtype: Any = None,
) -> list[str]:
    """Write ``config.json`` and the weights as HF writes them for ``architecture``; returns the paths written.

    ``state`` maps canonical names to arrays (or is an iterable of pairs): the class's parameters
    (``parameter_shapes``), give or take the ``roberta.`` prefix and HF's aliases and buffers. A missing encoder
    tensor, a tensor of the wrong shape or no XLM-R weight raises CheckpointError before a byte is written; a
    missing head only warns; weights of another class (a head checkpoint's pooler) are written as given.
    ``format`` is one of ``FORMATS``; ``max_shard_size`` (bytes or "500MB") splits
    the weights into HF-named shards plus an index when they exceed it; ``dtype`` ("float16", "bfloat16", ...)
    casts floating tensors. Each file is replaced atomically. Stale weight files of the same format (a single
    file where shards are written, or shards of another split) are removed, as HF does; weights of a format that
    a reader would take first (``FORMATS`` order) are the user's: saving refuses, naming them, before writing
    anything. Weights of formats read later are kept.

    HF's TF and Flax classes have no relative-position distance embeddings and HF's TF class always ties its
    decoder: such tensors are written, read back by ``read_checkpoint``, and ignored by HF's classes.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    directory = os.fspath(directory)
    dtype = target_dtype(dtype)
    tensors = _checked_state(directory, config, state, architecture)
    if format == "tf" and any(stored_dtype(a, dtype) == "bfloat16" for _, a in tensors):
        raise CheckpointError(f"cannot save bfloat16 to {os.path.join(directory, WEIGHTS_NAMES['tf'])}: HDF5 has "
                              "no bfloat16; pass dtype='float32' or 'float16'")
    units = _units(format, tensors, config, architecture)
    shards = _split(units, parse_size(max_shard_size) if max_shard_size is not None else None, dtype)
    names = [_shard_name(format, k, len(shards)) for k in range(len(shards))]
    # Another format's weights that would be read instead of these: deleting them would lose the user's data,
    # keeping them would hide what is written. Refuse, before a byte is written.
    shadowing = [name for name, other in _shadowing(directory, format, set(names)) if other != format]
    if shadowing:
        raise CheckpointError(f"refusing to save {format} weights in {directory}: {', '.join(shadowing)} there "
                              f"would be read instead of {WEIGHTS_NAMES[format]}; move or delete it, or save to "
                              "another folder")
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, shard in zip(names, shards):
        with atomic_path(os.path.join(directory, name)) as tmp:
            _write_file(format, tmp, name, shard, dtype, architecture, sharded=len(shards) > 1)
        written.append(os.path.join(directory, name))
    for stale, _ in _shadowing(directory, format, set(names)):  # this format's own stale files only, now
        os.remove(os.path.join(directory, stale))
    if len(shards) > 1:
        weight_map = {_index_key(format, key, architecture): name
                      for name, shard in zip(names, shards) for unit in shard for key, _, _ in unit}
        metadata: dict[str, int] = {"total_size": sum(_nbytes(u[0][1], dtype) for u in units)}
        if format in ("safetensors", "pt"):
            metadata["total_parameters"] = sum(math.prod(np.shape(u[0][1])) for u in units)
        index = os.path.join(directory, INDEX_NAMES[format])
        atomic_write_text(index, json.dumps({"metadata": metadata, "weight_map": weight_map}, indent=2,
                                            sort_keys=True) + "\n")
        written.append(index)
    return [config.replace(architectures=[architecture]).save_pretrained(directory)] + written
