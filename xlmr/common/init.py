"""Hugging Face's weight initialisation, in numpy, so that one seed gives the same model in every backend."""

from __future__ import annotations

import zlib

import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.weights import EMBEDDING, LINEAR_B, LINEAR_W, NORM_B, NORM_W, VECTOR, kind_of

# Embedding tables whose padding row HF zeroes (nn.Embedding(padding_idx=pad_token_id)).
_PADDED_TABLES = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight")


def initial_weight(name: str, shape: tuple[int, ...], config: XLMRobertaConfig, seed: int) -> np.ndarray:
    """One tensor as HF initialises it: normal(0, initializer_range) for matrices and tables, zero biases,
    LayerNorm ones/zeros, padding rows zero.

    Each tensor draws from its own stream keyed by (seed, name), so a head initialised alone gets the same
    values as in a whole model: the three backends and ``tools/parity.py`` rely on that.
    """
    kind = kind_of(name)
    if kind in (LINEAR_B, NORM_B, VECTOR):
        return np.zeros(shape, np.float32)
    if kind == NORM_W:
        return np.ones(shape, np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    array = rng.standard_normal(shape, dtype=np.float32) * np.float32(config.initializer_range)
    if kind == EMBEDDING and name.endswith(_PADDED_TABLES):
        array[config.pad_token_id] = 0.0
    assert kind in (LINEAR_W, EMBEDDING)
    return array


def initial_weights(shapes: dict[str, tuple[int, ...]], config: XLMRobertaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """``initial_weight`` for each of ``shapes`` (canonical name -> shape)."""
    return {name: initial_weight(name, shape, config, seed) for name, shape in shapes.items()}
