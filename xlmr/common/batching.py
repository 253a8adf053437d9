"""Length bucketing for batched inference: padding is not free, so sort by length and pad each bucket alone.

A batch of mixed lengths padded to its longest member spends most of its compute on padding. ``plan_buckets``
groups sequences of similar length under a token budget; each backend's ``encode_batched`` runs the buckets
and scatters the results back into the caller's order.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class Bucket:
    indices: np.ndarray      # positions in the caller's list
    input_ids: np.ndarray    # (len(indices), length), right-padded
    attention_mask: np.ndarray


def plan_buckets(sequences: Sequence[Sequence[int]], pad_token_id: int, max_tokens: int = 4096,
                 max_batch: int = 64, pad_to_multiple_of: int = 8) -> list[Bucket]:
    """Split ``sequences`` (lists of token ids) into length-sorted buckets of at most ``max_tokens`` padded tokens.

    Lengths are rounded up to ``pad_to_multiple_of`` so that a backend compiling per shape (XLA) sees few shapes.
    """
    if not sequences:
        return []
    lengths = np.array([len(s) for s in sequences])
    if lengths.min() < 1:
        raise ValueError(f"sequence {int(np.argmin(lengths))} is empty; every sequence needs at least one token")
    order = np.argsort(-lengths, kind="stable")
    buckets, start = [], 0
    while start < len(order):
        width = int(-(-lengths[order[start]] // pad_to_multiple_of) * pad_to_multiple_of)
        count = max(1, min(max_batch, max_tokens // width, len(order) - start))
        idx = order[start:start + count]
        ids = np.full((count, width), pad_token_id, np.int64)
        mask = np.zeros((count, width), np.int64)
        for row, i in enumerate(idx):
            ids[row, :lengths[i]] = sequences[i]
            mask[row, :lengths[i]] = 1
        buckets.append(Bucket(idx, ids, mask))
        start += count
    return buckets


def padded_tokens(buckets: list[Bucket]) -> int:
    return int(sum(b.input_ids.size for b in buckets))
