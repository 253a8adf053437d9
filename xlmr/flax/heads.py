"""Task heads on top of the encoder: the language-model head and the sentence classification head."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlmr.common.config import XLMRobertaConfig
from xlmr.flax.layers import ACT, dropout, layer_norm, linear


class LMHead(nnx.Module):
    """dense -> exact gelu (always, whatever hidden_act, as HF) -> layer_norm -> decoder + bias.

    The decoder is the word-embedding matrix when ``config.tie_word_embeddings`` (passed in at call time, so
    the one table gets the gradients of both uses), else its own ``lm_head.decoder`` kernel. ``lm_head.bias``
    is the decoder's bias (HF aliases ``lm_head.decoder.bias`` to it).
    """

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        h, kw = config.hidden_size, dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dense = linear(h, h, **kw)
        self.layer_norm = layer_norm(h, config.layer_norm_eps, **kw)
        if not config.tie_word_embeddings:
            self.decoder = linear(h, config.vocab_size, use_bias=False, **kw)
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,), param_dtype))
        self.tied = config.tie_word_embeddings
        self.dtype = dtype

    def __call__(self, features: jax.Array, word_embeddings: nnx.Embed) -> jax.Array:
        x = ACT["gelu"](self.dense(features))
        x = self.layer_norm(x)
        x = word_embeddings.attend(x) if self.tied else self.decoder(x)
        return x + self.bias[...].astype(self.dtype)


class ClassificationHead(nnx.Module):
    """x[:, 0] -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        h, kw = config.hidden_size, dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dense = linear(h, h, **kw)
        self.dropout = dropout(config.classifier_dropout_rate, rngs)
        self.out_proj = linear(h, config.num_labels, **kw)

    def __call__(self, features: jax.Array, deterministic: bool | None = None) -> jax.Array:
        x = self.dropout(features[:, 0, :], deterministic=deterministic)
        x = jnp.tanh(self.dense(x))
        x = self.dropout(x, deterministic=deterministic)
        return self.out_proj(x)
