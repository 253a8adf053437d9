"""Deterministic batches: one shuffling per epoch from numpy, padding, and masked-LM masking, all shared by the
three backends so that they train on identical arrays in identical order.

Example:
    >>> feats = [{"input_ids": np.array([0, 5, 2]), "labels": np.int64(1)},
    ...          {"input_ids": np.array([0, 2]), "labels": np.int64(0)}]
    >>> batch = collate(feats, pad_token_id=1, pad_to_multiple_of=4)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[0, 5, 2, 1], [0, 2, 1, 1]], [[1, 1, 1, 0], [1, 1, 0, 0]], [1, 0])
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from xlmr.common.constants import IGNORE_INDEX

PAD_TO_MULTIPLE_OF = 32  # few distinct widths: XLA compiles once per shape (flax jit)


def epoch_order(num_features: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training features in ``epoch``: a permutation drawn from ``(seed, epoch)`` alone."""
    return np.random.default_rng([seed, epoch]).permutation(num_features)


def steps_per_epoch(num_features: int, batch_size: int) -> int:
    """Batches per epoch; the last, smaller batch is kept (HF's Trainer does not drop it)."""
    return math.ceil(num_features / batch_size)


def collate(features: Sequence[dict[str, np.ndarray]], pad_token_id: int,
            pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF) -> dict[str, np.ndarray]:
    """Stack features into a batch: ``input_ids`` padded with ``pad_token_id`` on the right to the longest one
    (rounded up to ``pad_to_multiple_of``), an ``attention_mask``, per-token ``labels`` padded with -100, and
    per-example targets stacked. Multiple-choice ``input_ids`` (choices, length) pad on their last axis."""
    width = max(f["input_ids"].shape[-1] for f in features)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, np.ndarray] = {}
    lead = features[0]["input_ids"].shape[:-1]
    ids = np.full((len(features), *lead, width), pad_token_id, np.int64)
    for i, f in enumerate(features):
        ids[i, ..., :f["input_ids"].shape[-1]] = f["input_ids"]
    batch["input_ids"] = ids
    batch["attention_mask"] = (ids != pad_token_id).astype(np.int64)
    for i, f in enumerate(features):  # a real token that equals the pad id is still attended
        batch["attention_mask"][i, ..., :f["input_ids"].shape[-1]] = 1
    for name in features[0]:
        if name == "input_ids":
            continue
        values = [f[name] for f in features]
        if np.ndim(values[0]) == 1 and name == "labels" and len(values[0]) == features[0]["input_ids"].shape[-1]:
            padded = np.full((len(features), width), IGNORE_INDEX, np.int64)
            for i, v in enumerate(values):
                padded[i, :len(v)] = v
            batch[name] = padded
        else:
            batch[name] = np.stack(values)
    return batch


def mask_tokens(input_ids: np.ndarray, special: np.ndarray, vocab_size: int, mask_token_id: int,
                probability: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking: each non-special token is chosen with ``probability``; a chosen token becomes <mask> (80%),
    a random token (10%) or stays (10%); labels hold the chosen tokens' ids, -100 elsewhere.

    >>> rng = np.random.default_rng(0)
    >>> ids = np.arange(4, 1004).reshape(1, -1)
    >>> masked, labels = mask_tokens(ids, np.zeros_like(ids, bool), 8002, 3, 0.15, rng)
    >>> bool(0.1 < (labels != -100).mean() < 0.2), bool(((masked == 3) <= (labels != -100)).all())
    (True, True)
    """
    chosen = (rng.random(input_ids.shape) < probability) & ~special
    labels = np.where(chosen, input_ids, IGNORE_INDEX)
    draw = rng.random(input_ids.shape)
    masked = input_ids.copy()
    masked[chosen & (draw < 0.8)] = mask_token_id
    randomised = chosen & (draw >= 0.8) & (draw < 0.9)
    masked[randomised] = rng.integers(0, vocab_size, input_ids.shape)[randomised]
    return masked, labels


def special_token_mask(input_ids: np.ndarray, special_ids: Sequence[int]) -> np.ndarray:
    return np.isin(input_ids, np.asarray(list(special_ids)))


def training_batches(features: Sequence[dict[str, np.ndarray]], task: str, batch_size: int, seed: int, epoch: int,
                     pad_token_id: int, mlm: dict | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The batches of one epoch, in the shared order. ``mlm`` (masked-LM: ``special_ids``, ``vocab_size``,
    ``mask_token_id``, ``probability``) masks each batch with a generator seeded by (seed, epoch, batch index);
    causal-LM batches get ``labels`` equal to the ids, -100 on padding (the model shifts them)."""
    order = epoch_order(len(features), seed, epoch)
    for b in range(steps_per_epoch(len(features), batch_size)):
        batch = collate([features[i] for i in order[b * batch_size:(b + 1) * batch_size]], pad_token_id)
        yield lm_targets(batch, task, mlm, np.random.default_rng([seed, epoch, b]))


def lm_targets(batch: dict[str, np.ndarray], task: str, mlm: dict | None,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Add the language-model labels to a batch (other tasks pass through)."""
    if task == "causal-lm":
        batch["labels"] = np.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORE_INDEX)
    elif task == "masked-lm":
        special = special_token_mask(batch["input_ids"], mlm["special_ids"]) | (batch["attention_mask"] == 0)
        batch["input_ids"], batch["labels"] = mask_tokens(batch["input_ids"], special, mlm["vocab_size"],
                                                          mlm["mask_token_id"], mlm["probability"], rng)
    return batch
