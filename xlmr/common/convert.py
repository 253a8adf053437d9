"""Checkpoint conversion between the four Hugging Face formats; ``tools/convert.py`` is its command line.

The source is read lazily (safetensors are memory-mapped) and the target written tensor by tensor into a
temporary folder that is renamed onto the destination only when complete, so peak memory stays near one copy
of the weights and a crash never leaves a destination that looks valid.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np

from xlmr.common.config import CONFIG_NAME, XLMRobertaConfig
from xlmr.common.io import atomic_directory
from xlmr.common.checkpoint import FORMATS, find_checkpoint, read_checkpoint, save_pretrained
from xlmr.common.checkpoint.fairseq import convert_fairseq, is_fairseq_folder
from xlmr.common.weights import (ARCHITECTURES, WITH_POOLER, UnknownWeightError, infer_architecture, is_head_weight,
                                 kind_of, normalise_names, parameter_shapes)

DTYPES = ("float32", "float16", "bfloat16")
# Files a tokenizer may have in a checkpoint folder; copied as they are.
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


class ConversionError(ValueError):
    """A conversion that cannot be done; the message is one line naming the file, tensor or field."""


def numpy_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes  # installed with jax and tensorflow; needed only to write bfloat16

        return ml_dtypes.bfloat16
    return np.dtype(name)


class _Cast(Mapping):
    """A lazy view of a checkpoint that casts floating tensors to ``dtype`` one at a time, as the writer asks."""

    def __init__(self, state: Mapping[str, Any], dtype: Any, on_read: Callable[[str], None] | None = None):
        self._state, self._dtype, self._on_read = state, dtype, on_read

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._state[name]
        if self._on_read:
            self._on_read(name)
        if self._dtype is None or not np.issubdtype(np.asarray(array).dtype, np.floating) and \
                np.asarray(array).dtype.name != "bfloat16":
            return np.asarray(array)
        return np.asarray(array).astype(self._dtype, copy=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def check_tensors_fit_config(state: Mapping[str, Any], config: XLMRobertaConfig, architecture: str,
                             source: str) -> None:
    """Raise ConversionError when a tensor is unknown, mis-shaped for config.json, or an encoder tensor is missing."""
    expected = parameter_shapes(config, architecture)
    if architecture not in WITH_POOLER:  # a head checkpoint may still carry HF's pooler
        pooler = parameter_shapes(config, "XLMRobertaForMultipleChoice")
        expected.update({k: v for k, v in pooler.items() if ".pooler." in k})
    for name, array in state.items():
        try:
            kind_of(name)
        except UnknownWeightError as e:
            raise ConversionError(f"{source}: {e}") from None
        shape = tuple(np.shape(array))
        if name not in expected:
            raise ConversionError(
                f"{source}: tensor {name} {shape} does not fit {CONFIG_NAME} (a {architecture} with "
                f"position_embedding_type={config.position_embedding_type!r}, "
                f"add_cross_attention={config.add_cross_attention}, tie_word_embeddings={config.tie_word_embeddings})")
        if shape != tuple(expected[name]):
            raise ConversionError(f"{source}: tensor {name} has shape {shape} but {CONFIG_NAME} gives "
                                  f"{tuple(expected[name])} (hidden_size={config.hidden_size}, vocab_size="
                                  f"{config.vocab_size}, num_labels={config.num_labels})")
    missing = [n for n in expected if n not in state and not is_head_weight(n, architecture)]
    if missing:
        raise ConversionError(f"{source}: {len(missing)} encoder tensor(s) missing, first {missing[0]}")


def convert(src: str, dst: str, to: str, dtype: str | None = None, force: bool = False,
            max_shard_size: str | int | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Convert the checkpoint folder ``src`` into ``dst`` in format ``to``; return a summary.

    ``dst`` gets ``config.json``, the tokenizer files of ``src`` and the weights under HF's standard name.
    ``src`` is never modified; ``dst`` appears whole or not at all, and is replaced only when ``force``.
    """
    if to not in FORMATS:
        raise ConversionError(f"unknown target format {to!r}; choose from {', '.join(FORMATS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if not os.path.isdir(src):
        raise ConversionError(f"source checkpoint folder {src} does not exist")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ConversionError(f"destination {dst} is the source folder; choose another")
    if os.path.exists(dst) and not force:
        raise ConversionError(f"destination {dst} already exists; pass --force to replace it")
    if is_fairseq_folder(src):  # the original release: model.pt + dict.txt + sentencepiece.bpe.model
        return convert_fairseq(src, dst, to, dtype, force, max_shard_size)
    config = XLMRobertaConfig.from_pretrained(src)
    fmt, files = find_checkpoint(src)
    source = files[0] if len(files) == 1 else f"{src} ({len(files)} {fmt} shards)"
    raw = read_checkpoint(src)
    architecture = infer_architecture(raw, config)
    state = normalise_names(raw, architecture)
    if config.tie_word_embeddings:
        state.pop("lm_head.decoder.weight", None)
    check_tensors_fit_config(state, config, architecture, source)

    total = sum(int(np.asarray(v).nbytes) for v in state.values())
    bar = None
    if progress or (progress is None and total > 100 * 2**20):
        from tqdm import tqdm

        bar = tqdm(total=len(state), unit="tensor", desc=f"{fmt} -> {to}")
    view = _Cast(state, numpy_dtype(dtype) if dtype else None, (lambda _: bar.update(1)) if bar else None)
    with atomic_directory(dst, overwrite=force) as tmp:
        written = save_pretrained(tmp, config, view, architecture, format=to, max_shard_size=max_shard_size)
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
    if bar:
        bar.close()
    return {"source": source, "source_format": fmt, "architecture": architecture, "tensors": len(state),
            "bytes": total, "written": [os.path.join(dst, os.path.basename(p)) for p in written]}


__all__ = ["ARCHITECTURES", "ConversionError", "FORMATS", "convert"]
