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
from xlmr.common.hub import resolve
from xlmr.common.io import atomic_directory, check_replaceable
from xlmr.common.checkpoint import (FORMATS, WEIGHTS_NAMES, find_checkpoint, is_weights_file, nonfinite,
                                    read_checkpoint, save_pretrained, weight_formats)
from xlmr.common.checkpoint.fairseq import MODEL_FILE as FAIRSEQ_MODEL_FILE, is_fairseq_folder, read_fairseq
from xlmr.common.weights import (ARCHITECTURES, WITH_POOLER, check_state, infer_architecture, is_head_weight,
                                 normalise_names, parameter_shapes)

DTYPES = ("float32", "float16", "bfloat16")
# Files a tokenizer may have in a checkpoint folder; copied as they are.
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
# What DST receives from SRC besides the weights and config.json: every other file HF writes into a checkpoint
# folder (generation settings and the tokenizer's files), copied as it is.
COPIED_FILES = ("generation_config.json", *TOKENIZER_FILES)


class ConversionError(ValueError):
    """A conversion that cannot be done; the message is one line naming the file, tensor or field."""


def numpy_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes  # installed with jax and tensorflow; needed only to write bfloat16

        return ml_dtypes.bfloat16
    return np.dtype(name)


_LARGEST = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38, "float32": 3.4028234663852886e38}


class _Cast(Mapping):
    """A lazy view of a checkpoint that casts floating tensors to ``dtype`` one at a time, as the writer asks.

    Each tensor is checked as it passes: a cast that turns a finite value into inf or NaN raises ConversionError
    naming the tensor, the value and the limit (inside the temporary folder, so nothing is published); NaN or inf
    already in the source is recorded in ``nonfinite`` and written as it is.
    """

    def __init__(self, state: Mapping[str, Any], dtype: Any, on_read: Callable[[str], None] | None = None,
                 source: str = "source"):
        self._state, self._dtype, self._on_read, self._source = state, dtype, on_read, source
        self.nonfinite: dict[str, tuple[int, tuple[int, ...]]] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        array = np.asarray(self._state[name])
        if self._on_read:
            self._on_read(name)
        floating = np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16"
        before = nonfinite(array) if floating else None
        if before is not None:
            self.nonfinite[name] = before
        if self._dtype is None or not floating:
            return array
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, naming the tensor
            out = array.astype(self._dtype, copy=False)
        after = nonfinite(out)
        if after is not None and (before is None or after[0] > before[0]):
            made = ~np.isfinite(out) & np.isfinite(array)
            where = np.unravel_index(int(np.argmax(made)), array.shape)
            value = float(array[where])
            target = np.dtype(self._dtype).name
            raise ConversionError(
                f"{self._source}: tensor {name} holds {value:.6g} at index {tuple(int(i) for i in where)}, beyond "
                f"{target}'s largest value {_LARGEST.get(target, float('nan')):.6g}: the cast to {target} would "
                f"store {'inf' if np.isinf(out[where]) else 'nan'} ({int(made.sum())} value(s)); keep float32 or "
                "use bfloat16")
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def replaceable(name: str) -> bool:
    """Whether ``convert --force`` may replace a DST holding a file of this name: HF's config, generation config,
    tokenizer and weight files (of any format, sharded or not). Anything else makes it refuse."""
    return name in (CONFIG_NAME, "generation_config.json", *TOKENIZER_FILES) or is_weights_file(name) is not None


def check_separate(src: str, dst: str) -> None:
    """Raise ConversionError when ``dst`` is, contains or lies inside ``src``, through links, bind mounts or not.

    Real paths catch symlinked parents; comparing (device, inode) of every ancestor catches the rest.
    """
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)

    def ancestors(path: str) -> Iterator[str]:
        while True:
            yield path
            parent = os.path.dirname(path)
            if parent == path:
                return
            path = parent

    def same(a: str, b: str) -> bool:
        try:
            return os.path.samestat(os.stat(a), os.stat(b))
        except OSError:
            return a == b

    if real_src == real_dst or same(real_src, real_dst):
        raise ConversionError(f"destination {dst} is the source folder {src}; choose another")
    if any(same(a, real_src) for a in ancestors(real_dst)):
        raise ConversionError(f"destination {dst} is inside the source folder {src} (real path {real_dst}); SRC is "
                              "never written to: choose a destination outside it")
    if any(same(a, real_dst) for a in ancestors(real_src)):
        raise ConversionError(f"destination {dst} contains the source folder {src} (real path {real_src}); "
                              "replacing it would delete the source: choose another destination")


def check_tensors_fit_config(state: Mapping[str, Any], config: XLMRobertaConfig, architecture: str,
                             source: str) -> None:
    """Raise ConversionError (``xlmr.common.weights.check_state``) naming every unknown or mis-shaped tensor
    and every missing encoder tensor."""
    expected = parameter_shapes(config, architecture)
    tolerated = {}
    if architecture not in WITH_POOLER:  # a head checkpoint may still carry HF's pooler
        pooler = parameter_shapes(config, "XLMRobertaForMultipleChoice")
        tolerated = {k: v for k, v in pooler.items() if ".pooler." in k}
    where = (f"{source} does not fit {CONFIG_NAME} (a {architecture} with hidden_size={config.hidden_size}, "
             f"vocab_size={config.vocab_size}, num_labels={config.num_labels}, "
             f"position_embedding_type={config.position_embedding_type!r}, "
             f"add_cross_attention={config.add_cross_attention}, tie_word_embeddings={config.tie_word_embeddings})")
    check_state(expected, state, where, optional=[n for n in expected if is_head_weight(n, architecture)],
                tolerated=tolerated, error=ConversionError)


def convert(src: str, dst: str, to: str, dtype: str | None = None, force: bool = False,
            max_shard_size: str | int | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Convert the checkpoint folder ``src`` into ``dst`` in format ``to``; return a summary.

    ``dst`` gets ``config.json``, the tokenizer files of ``src`` and the weights under HF's standard name.
    ``src`` is never modified, and ``dst`` may not be, contain or lie inside it (real paths compared). ``dst``
    appears whole or not at all, and is never replaced unless ``force``: not even when another process creates
    it during the conversion. ``force`` replaces only a folder of checkpoint, config and tokenizer files
    (``replaceable``); a ``dst`` holding anything else is refused, naming it. A cast (``dtype``) that turns a
    finite value into inf or NaN is refused, naming the tensor. The summary lists source tensors holding NaN or
    inf under ``nonfinite`` (they are copied as they are) and weights of other formats in ``src`` that were not
    read under ``ignored``.

    Example:
        >>> import os, tempfile
        >>> from xlmr.cli.parity import DEFAULT_CHECKPOINT
        >>> out = os.path.join(tempfile.mkdtemp(), "pt")
        >>> convert(DEFAULT_CHECKPOINT, out, "pt")["written"][-1].endswith("pytorch_model.bin")
        True
    """
    if to not in FORMATS:
        raise ConversionError(f"unknown target format {to!r}; choose from {', '.join(FORMATS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if not os.path.isdir(src):
        try:  # "xlmr-default" or a Hub model id
            src = resolve(src)
        except FileNotFoundError:
            raise ConversionError(f"source checkpoint folder {src} does not exist") from None
    check_separate(src, dst)
    try:
        check_replaceable(os.path.abspath(dst), force, replaceable, f"destination {dst}")
    except FileExistsError as e:
        raise ConversionError(str(e)) from None
    if is_fairseq_folder(src):  # the original release: model.pt + dict.txt + sentencepiece.bpe.model
        return convert_fairseq(src, dst, to, dtype, force, max_shard_size)
    config = XLMRobertaConfig.from_pretrained(src)
    fmt, files = find_checkpoint(src)
    source = files[0] if len(files) == 1 else f"{src} ({len(files)} {fmt} shards)"
    ignored = [os.path.join(src, WEIGHTS_NAMES[f]) for f in weight_formats(src) if f != fmt]
    raw = read_checkpoint(src)
    architecture = infer_architecture(raw, config)
    state = normalise_names(raw, architecture)
    if config.tie_word_embeddings:
        state.pop("lm_head.decoder.weight", None)
    check_tensors_fit_config(state, config, architecture, source)

    if to == "tf" and (dtype == "bfloat16" or (dtype is None and any(
            getattr(v, "dtype", None) is not None and np.dtype(v.dtype).name == "bfloat16" for v in state.values()))):
        raise ConversionError(f"{dst}: tf_model.h5 cannot hold bfloat16 (HDF5 has no such type); pass --dtype "
                              "float32 or --dtype float16, or choose --to safetensors")
    total = sum(int(np.asarray(v).nbytes) for v in state.values())
    bar = None
    if progress or (progress is None and total > 100 * 2**20):
        from tqdm import tqdm

        bar = tqdm(total=len(state), unit="tensor", desc=f"{fmt} -> {to}")
    view = _Cast(state, numpy_dtype(dtype) if dtype else None, (lambda _: bar.update(1)) if bar else None, source)
    try:
        with atomic_directory(dst, overwrite=force, replaceable=replaceable) as tmp:
            try:
                written = save_pretrained(tmp, config, view, architecture, format=to, max_shard_size=max_shard_size)
                for name in COPIED_FILES:
                    if os.path.exists(os.path.join(src, name)):
                        shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
            except (OSError, ValueError) as e:  # name DST in the user's terms, never the temporary folder
                text = str(e)
                if tmp not in text:
                    raise
                raise ConversionError(text.replace(tmp, dst)) from None
    except FileExistsError as e:
        raise ConversionError(f"destination {e}") from None
    finally:
        if bar:
            bar.close()
    return {"source": source, "source_format": fmt, "architecture": architecture, "tensors": len(state),
            "bytes": total, "written": [os.path.join(dst, os.path.basename(p)) for p in written],
            "ignored": ignored,
            "nonfinite": {name: {"count": c, "first_index": list(i)} for name, (c, i) in view.nonfinite.items()}}


def convert_fairseq(src: str, dst: str, to: str, dtype: str | None = None, force: bool = False,
                    max_shard_size: str | int | None = None) -> dict[str, Any]:
    """``xlmr convert`` for a fairseq folder: the weights in format ``to`` plus config and tokenizer files."""
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

    config, state, architecture, spm_path = read_fairseq(src)
    source = os.path.join(src, FAIRSEQ_MODEL_FILE)
    check_tensors_fit_config(state, config, architecture, source)
    view = _Cast(state, numpy_dtype(dtype) if dtype else None)
    with atomic_directory(dst, overwrite=force, replaceable=replaceable) as tmp:
        written = save_pretrained(tmp, config, view, architecture, format=to, max_shard_size=max_shard_size)
        XLMRobertaTokenizerFast(spm_path).save_pretrained(tmp)
    return {"source": source, "source_format": "fairseq", "architecture": architecture, "tensors": len(state),
            "bytes": sum(int(np.asarray(v).nbytes) for v in state.values()),
            "written": [os.path.join(dst, os.path.basename(p)) for p in written]}

__all__ = ["ARCHITECTURES", "ConversionError", "FORMATS", "convert"]
