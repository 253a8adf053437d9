"""Length-bucketed batched inference gives each sequence the outputs it gets alone, in every backend."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from reference import TINY

from xlmr.common.batching import padded_tokens, plan_buckets
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import TOLERANCE_FP32

CFG = XLMRobertaConfig(**{**TINY, "max_position_embeddings": 80, "type_vocab_size": 1, "num_labels": 3})
RNG = np.random.default_rng(0)
SEQUENCES = [list(RNG.integers(4, 99, n)) for n in (3, 60, 9, 17, 1, 33, 8, 70, 12)]


def test_buckets_cover_every_sequence_once_and_save_padding():
    buckets = plan_buckets(SEQUENCES, pad_token_id=1, max_tokens=128, pad_to_multiple_of=8)
    seen = np.sort(np.concatenate([b.indices for b in buckets]))
    np.testing.assert_array_equal(seen, np.arange(len(SEQUENCES)))
    for b in buckets:
        assert b.input_ids.size <= max(128, b.input_ids.shape[1]) and b.input_ids.shape[1] % 8 == 0
        for row, i in enumerate(b.indices):
            n = len(SEQUENCES[i])
            np.testing.assert_array_equal(b.input_ids[row, :n], SEQUENCES[i])
            assert b.attention_mask[row].sum() == n and np.all(b.input_ids[row, n:] == 1)
    naive = len(SEQUENCES) * 72  # one batch padded to the longest (70 -> 72)
    assert padded_tokens(buckets) == 72 + 64 + 2 * 40 + 5 * 16 < 0.5 * naive  # [70] [60] [33 17] [12 9 8 3 1]


def _cheapest_by_enumeration(lengths, max_tokens, max_batch, call_cost, multiple=8):
    """Every way of cutting the sorted lengths into consecutive runs, priced independently of plan_buckets."""
    widths = [-(-n // multiple) * multiple for n in sorted(lengths, reverse=True)]
    best = None
    for cuts in range(2 ** (len(widths) - 1)):
        runs, run = [], [widths[0]]
        for k, w in enumerate(widths[1:]):
            if cuts >> k & 1:
                runs.append(run)
                run = []
            run.append(w)
        runs.append(run)
        if any(len(r) > max_batch or (len(r) > 1 and len(r) * r[0] > max_tokens) for r in runs):
            continue
        cost = sum(len(r) * r[0] + call_cost for r in runs)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_buckets_are_the_cheapest_split(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 200, 10)
    seqs = [[5] * int(n) for n in lengths]
    max_tokens, max_batch, call_cost = int(rng.choice([256, 512])), int(rng.choice([3, 64])), int(rng.choice([0, 32]))
    buckets = plan_buckets(seqs, 1, max_tokens=max_tokens, max_batch=max_batch, call_cost=call_cost)
    cost = padded_tokens(buckets) + call_cost * len(buckets)
    assert cost == _cheapest_by_enumeration(lengths, max_tokens, max_batch, call_cost)


def test_empty_sequence_is_rejected():
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        plan_buckets([[1, 2], []], pad_token_id=1)


def _alone(backend, model, seq, arch):
    """The reference: each sequence run by itself, no padding at all."""
    ids = np.array([seq], np.int64)
    if backend == "pt":
        import torch
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids))
        return {k: v[0].numpy() for k, v in out.items()}
    if backend == "tf":
        out = model(input_ids=ids.astype(np.int32), training=False)
        return {k: v[0].numpy() for k, v in out.items()}
    out = model(input_ids=ids)
    return {k: np.asarray(v[0]) for k, v in out.items()}


@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
@pytest.mark.parametrize("arch", ["XLMRobertaModel", "XLMRobertaForTokenClassification",
                                  "XLMRobertaForSequenceClassification"])
def test_encode_batched_equals_running_each_sequence_alone(backend, arch):
    module = pytest.importorskip(f"xlmr.{backend}")
    model = getattr(module, arch)(CFG, seed=0) if backend != "flax" else getattr(module, arch)(CFG)
    if backend == "pt":
        model.eval()
    outs = module.encode_batched(model, SEQUENCES, max_tokens=128)
    assert len(outs) == len(SEQUENCES)
    for seq, out in zip(SEQUENCES, outs):
        ref = _alone(backend, model, seq, arch)
        assert set(out) == set(ref) & set(out) and out
        for key, value in out.items():
            assert value.shape == ref[key].shape, key
            np.testing.assert_allclose(value, ref[key], atol=TOLERANCE_FP32, rtol=0)
