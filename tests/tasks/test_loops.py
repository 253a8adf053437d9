"""The three training loops apply the same updates: six different batches (so embedding rows drop in and out,
which once split Keras' sparse updates from torch's) on a 1-layer model, losses equal to 1e-5 relative."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.tasks.schedule import TrainingSettings

from task_support import BACKENDS

CONFIG = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
BATCHES = [{"input_ids": np.array([[0, 5 + i, 7 + i, 2], [0, 6 + 2 * i, 9 + i, 2]]),
            "attention_mask": np.ones((2, 4), np.int64),
            "labels": np.array([[-100, 0, 1, -100], [-100, 2, 1, -100]])} for i in range(6)]


def losses(backend: str) -> np.ndarray:
    module = importlib.import_module(f"xlmr.{backend}")
    cfg = XLMRobertaConfig(**CONFIG)
    model = module.XLMRobertaForTokenClassification(cfg, **({} if backend == "flax" else {"seed": 0}))
    steps: list[float] = []
    settings = TrainingSettings(epochs=2, learning_rate=1e-2, weight_decay=0.01, warmup_ratio=0.2, seed=0)
    importlib.import_module(f"xlmr.{backend}.training").train(
        model, lambda epoch: BATCHES[::-1] if epoch else BATCHES, settings, len(BATCHES),
        lambda step, loss: steps.append(loss))
    return np.array(steps)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends")
def test_loops_agree_update_by_update():
    reference = losses(BACKENDS[0])
    assert len(reference) == 12 and reference[-1] < reference[0]
    for backend in BACKENDS[1:]:
        np.testing.assert_allclose(losses(backend), reference, rtol=1e-5, err_msg=backend)
