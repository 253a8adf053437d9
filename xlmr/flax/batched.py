"""Batched inference over sequences of mixed lengths, bucketed by length (see ``xlmr.common.batching``)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlmr.common import batching
from xlmr.flax.checks import checked_call


def encode_batched(model: nnx.Module, sequences: Sequence[Sequence[int]], max_tokens: int = 4096,
                   max_batch: int = 64) -> list[dict[str, np.ndarray]]:
    """Run ``model`` on token-id lists of any lengths; return each one's outputs, unpadded, in input order.

    Sequences are sorted by length and padded per bucket of at most ``max_tokens`` tokens, so a mixed batch costs
    about its real tokens instead of ``count x longest``. Each bucket runs through ``checked_call`` (jitted, ids
    checked on device); bucket widths are multiples of 8, so XLA compiles few shapes.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaModel, encode_batched
        >>> cfg = XLMRobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        ...                        intermediate_size=37)
        >>> out = encode_batched(XLMRobertaModel(cfg), [[0, 5, 2], [0, 7, 8, 9, 2]])
        >>> [o["last_hidden_state"].shape for o in out]
        [(3, 32), (5, 32)]
    """
    def run(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = checked_call(model, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask), return_dict=True)
        return {k: np.asarray(v, np.float32) for k, v in out.items() if isinstance(v, jax.Array)}

    return batching.encode_batched(run, sequences, model.config.pad_token_id, max_tokens, max_batch)
