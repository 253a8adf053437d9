"""Batched inference over sequences of mixed lengths, bucketed by length (see ``xlmr.common.batching``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from xlmr.common import batching


def encode_batched(model: Any, sequences: Sequence[Sequence[int]], max_tokens: int = 4096,
                   max_batch: int = 64) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on token-id lists of any lengths; return each one's outputs, unpadded, in input order.

    Sequences are sorted by length and padded per bucket of at most ``max_tokens`` tokens, so a mixed batch costs
    about its real tokens instead of ``count x longest``. Each bucket runs through ``model.compiled_call`` (XLA,
    inputs checked on the host first); bucket widths are multiples of 8, so XLA compiles few shapes.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaModel, encode_batched
        >>> cfg = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        ...                        intermediate_size=37)
        >>> out = encode_batched(XLMRobertaModel(cfg, seed=0), [[0, 5, 2], [0, 7, 8, 9, 2]])
        >>> [o["last_hidden_state"].shape for o in out]
        [(3, 32), (5, 32)]
    """
    def run(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = model.compiled_call(input_ids=ids.astype(np.int32), attention_mask=mask.astype(np.int32),
                                  return_dict=True, training=False)
        return {k: tf.cast(v, tf.float32).numpy() for k, v in out.items() if isinstance(v, tf.Tensor)}

    return batching.encode_batched(run, sequences, model.config.pad_token_id, max_tokens, max_batch)
