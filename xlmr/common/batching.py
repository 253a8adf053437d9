"""Length bucketing for batched inference: padding is not free, so sort by length and pad each bucket alone.

A batch of mixed lengths padded to its longest member spends most of its compute on padding. ``plan_buckets``
groups sequences of similar length under a token budget; each backend's ``encode_batched`` runs the buckets
and scatters the results back into the caller's order.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass
class Bucket:
    indices: np.ndarray      # positions in the caller's list
    input_ids: np.ndarray    # (len(indices), length), right-padded
    attention_mask: np.ndarray


def check_limits(**limits: int) -> None:
    """Raise ValueError naming the first limit that is not a positive integer (0 would make no progress).

    >>> check_limits(max_tokens=0)
    Traceback (most recent call last):
    ...
    ValueError: max_tokens=0 must be a positive integer
    """
    for name, value in limits.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def plan_buckets(sequences: Sequence[Sequence[int]], pad_token_id: int, max_tokens: int = 4096,
                 max_batch: int = 64, pad_to_multiple_of: int = 8, call_cost: int = 32) -> list[Bucket]:
    """Split ``sequences`` (lists of token ids) into length-sorted buckets of at most ``max_tokens`` padded tokens.

    The split is the cheapest one: sequences sorted by length are cut into consecutive runs, each padded to its
    longest member (rounded up to ``pad_to_multiple_of``, so that a backend compiling per shape sees few widths),
    minimising padded tokens plus ``call_cost`` tokens per bucket (the fixed cost of one model call). A run holds
    at most ``max_batch`` sequences and ``max_tokens`` tokens; a sequence longer than ``max_tokens`` goes alone.
    """
    check_limits(max_tokens=max_tokens, max_batch=max_batch, pad_to_multiple_of=pad_to_multiple_of)
    if not sequences:
        return []
    lengths = np.array([len(s) for s in sequences])
    if lengths.min() < 1:
        raise ValueError(f"sequence {int(np.argmin(lengths))} is empty; every sequence needs at least one token")
    order = np.argsort(-lengths, kind="stable")
    widths = -(-lengths[order] // pad_to_multiple_of) * pad_to_multiple_of
    n = len(order)
    # best[i]: cheapest cost of bucketing order[i:]; take[i]: how many sequences the first bucket of that holds.
    best = np.zeros(n + 1)
    take = np.zeros(n, np.int64)
    for i in range(n - 1, -1, -1):
        most = max(1, min(max_batch, max_tokens // int(widths[i]), n - i))
        counts = np.arange(1, most + 1)
        costs = counts * widths[i] + call_cost + best[i + counts]
        k = int(np.argmin(costs))
        take[i], best[i] = counts[k], costs[k]
    buckets, start = [], 0
    while start < n:
        count, width = int(take[start]), int(widths[start])
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


# Outputs that ``encode_batched`` returns per sequence (hidden states and attentions are not gathered).
PER_SEQUENCE_FIELDS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")


def _per_token(name: str, value: np.ndarray) -> bool:
    """Whether an output has a sequence axis to trim: token-level logits and states are (batch, seq, features)."""
    return name in ("start_logits", "end_logits") or value.ndim == 3


def encode_batched(run_bucket: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
                   sequences: Sequence[Sequence[int]], pad_token_id: int, max_tokens: int = 4096,
                   max_batch: int = 64, pad_to_multiple_of: int = 8) -> list[dict[str, np.ndarray]]:
    """Run ``run_bucket(input_ids, attention_mask)`` over length buckets; return each sequence's outputs, unpadded,
    in the caller's order. A backend's ``encode_batched`` supplies ``run_bucket`` for its model."""
    results: list[dict[str, np.ndarray] | None] = [None] * len(sequences)
    for bucket in plan_buckets(sequences, pad_token_id, max_tokens, max_batch, pad_to_multiple_of):
        outputs = run_bucket(bucket.input_ids, bucket.attention_mask)
        for row, index in enumerate(bucket.indices):
            n = len(sequences[index])
            results[index] = {name: value[row, :n] if _per_token(name, value) else value[row]
                              for name, value in outputs.items() if name in PER_SEQUENCE_FIELDS}
    return results  # type: ignore[return-value]
