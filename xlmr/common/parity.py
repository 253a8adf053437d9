"""Run one checkpoint through every installed backend and compare all outputs: the heart of ``tools/parity.py``.

Each backend is driven through a small adapter (numpy in, numpy out) that imports its framework only when
used, so this module stays framework-free at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
import warnings
from typing import Any, Callable

import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import tolerance
from xlmr.common.weights import ARCHITECTURES

BACKENDS = ("pt", "tf", "flax")
# A fixed multilingual batch: several scripts and lengths, so that padding is exercised.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Le renard brun saute par-dessus le chien paresseux, puis il s'endort.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
]
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "default")


def installed_backends() -> list[str]:
    found = []
    for name, module in (("pt", "torch"), ("tf", "tensorflow"), ("flax", "flax")):
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return found


# ------------------------------------------------------------------------------------------------ inputs
@dataclasses.dataclass
class Batch:
    inputs: dict[str, np.ndarray]
    source: str  # how the ids were made, for the report


def make_batch(checkpoint: str, config: XLMRobertaConfig, seed: int = 0, max_length: int = 64) -> Batch:
    """Tokenise ``SENTENCES`` with the checkpoint's tokenizer, or draw padded random ids when it has none."""
    max_length = min(max_length, config.max_sequence_length)
    tokenizer = _tokenizer(checkpoint)
    if tokenizer is not None:
        enc = tokenizer(SENTENCES, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        if ids.max() < config.vocab_size:
            return Batch({"input_ids": ids, "attention_mask": enc["attention_mask"].astype(np.int64)},
                         f"{len(SENTENCES)} multilingual sentences, tokenised with the checkpoint's tokenizer")
    rng = np.random.default_rng(seed)
    lengths = np.array([max_length, max_length // 2, max_length - 3, 5])
    special = {config.pad_token_id, config.bos_token_id, config.eos_token_id}
    low = max(special | {3}) + 1 if config.vocab_size > 8 else 0
    ids = rng.integers(low, config.vocab_size, (len(lengths), max_length))
    mask = (np.arange(max_length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, config.pad_token_id)
    return Batch({"input_ids": ids.astype(np.int64), "attention_mask": mask},
                 "random ids within the vocabulary, with padding (the checkpoint has no tokenizer files)")


def _tokenizer(checkpoint: str):
    from xlmr.common.tokenization import XLMRobertaTokenizer

    if not os.path.exists(os.path.join(checkpoint, "sentencepiece.bpe.model")):
        return None
    return XLMRobertaTokenizer.from_pretrained(checkpoint)


def inputs_for(architecture: str, batch: Batch, config: XLMRobertaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The batch shaped for a class, with labels so that the loss is compared too."""
    rng = np.random.default_rng(seed)
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    b, s = ids.shape
    if architecture == "XLMRobertaForMultipleChoice":
        pairs = b // 2 * 2
        return {"input_ids": ids[:pairs].reshape(-1, 2, s), "attention_mask": mask[:pairs].reshape(-1, 2, s),
                "labels": rng.integers(0, 2, pairs // 2)}
    out = {"input_ids": ids, "attention_mask": mask}
    if architecture in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM", "XLMRobertaForTokenClassification"):
        high = config.vocab_size if architecture != "XLMRobertaForTokenClassification" else config.num_labels
        labels = rng.integers(0, high, (b, s))
        out["labels"] = np.where(mask == 1, labels, -100)
    elif architecture == "XLMRobertaForSequenceClassification":
        out["labels"] = rng.integers(0, config.num_labels, b)
    elif architecture == "XLMRobertaForQuestionAnswering":
        out["start_positions"] = rng.integers(0, s, b)
        out["end_positions"] = rng.integers(0, s, b)
    return out


def class_config(architecture: str, config: XLMRobertaConfig) -> XLMRobertaConfig:
    """The config each class runs under: QA needs two labels, the causal LM runs as a decoder (as HF advises)."""
    if architecture == "XLMRobertaForQuestionAnswering" and config.num_labels != 2:
        return config.replace(num_labels=2)
    if architecture == "XLMRobertaForCausalLM" and not config.is_decoder:
        return config.replace(is_decoder=True)
    return config


# ------------------------------------------------------------------------------------------------ adapters
def _flatten(prefix: str, value: Any, out: dict[str, np.ndarray], to_numpy: Callable) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}{k}", v, out, to_numpy)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out, to_numpy)
    else:
        out[prefix] = np.asarray(to_numpy(value), dtype=np.float64)


def run_backend(backend: str, architecture: str, checkpoint: str, config: XLMRobertaConfig,
                inputs: dict[str, np.ndarray], seed: int = 0, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Load ``checkpoint`` as ``architecture`` in ``backend`` and return every output as float64 numpy."""
    module = importlib.import_module(f"xlmr.{backend}")
    cls = getattr(module, architecture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # new heads are expected here; the report says so
        kwargs = {"config": config, "seed": seed}
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = cls.from_pretrained(checkpoint, **kwargs)
    flags = dict(output_hidden_states=True, output_attentions=True, return_dict=True)
    out: dict[str, np.ndarray] = {}
    if backend == "pt":
        import torch

        with torch.no_grad():
            result = model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}, **flags)
        _flatten("", result, out, lambda t: t.float().numpy())
    elif backend == "tf":
        import tensorflow as tf

        result = model(**{k: tf.constant(v) for k, v in inputs.items()}, training=False, **flags)
        _flatten("", result, out, lambda t: tf.cast(t, tf.float32).numpy())
    else:
        import jax.numpy as jnp

        result = model(**{k: jnp.asarray(v) for k, v in inputs.items()}, **flags)
        _flatten("", result, out, lambda t: np.asarray(t.astype(jnp.float32)))
    return out


# ------------------------------------------------------------------------------------------------ comparison
@dataclasses.dataclass
class Row:
    architecture: str
    pair: str
    max_abs: float
    worst: str       # the output where the difference is largest
    tolerance: float
    outputs: int     # how many output tensors were compared

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        return float("inf"), f"outputs differ in names: {only[:4]}"
    worst, name = 0.0, ""
    for key in a:
        if a[key].shape != b[key].shape:
            return float("inf"), f"{key}: shape {a[key].shape} vs {b[key].shape}"
        d = float(np.max(np.abs(a[key] - b[key]))) if a[key].size else 0.0
        if not np.isfinite(d) or d > worst:
            worst, name = d, key
    return worst, name


def check_checkpoint(checkpoint: str, backends: list[str], architectures=ARCHITECTURES, seed: int = 0,
                     dtype: str = "float32") -> tuple[Batch, list[Row]]:
    config = XLMRobertaConfig.from_pretrained(checkpoint)
    batch = make_batch(checkpoint, config, seed)
    base_sized = config.hidden_size >= 768
    rows = []
    for arch in architectures:
        cfg = class_config(arch, config)
        inputs = inputs_for(arch, batch, cfg, seed)
        results = {b: run_backend(b, arch, checkpoint, cfg, inputs, seed, None if dtype == "float32" else dtype)
                   for b in backends}
        for x, y in itertools.combinations(backends, 2):
            d, worst = compare(results[x], results[y])
            rows.append(Row(arch, f"{x}-{y}", d, worst, tolerance(dtype, base_sized), len(results[x])))
    return batch, rows
