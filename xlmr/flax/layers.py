"""The encoder of XLM-R in Flax NNX: embeddings, attention, feed-forward, layer stack, pooler.

Modules carry the attribute names of Hugging Face's PyTorch classes (``attention.self.query``, ``LayerNorm``,
``encoder.layer[i]``) so that parameter paths are those of the "flax" scheme in ``xlmr.common.weights``.
Every parameter is created as zeros and overwritten from the weight-name table (``models.py``); only the
shapes and dtypes are decided here.

Numerics follow the contract in the backend spec: exact-erf "gelu", LayerNorm with the two-pass variance,
additive mask bias ``where(keep, 0, finfo.min)``, softmax in float32 whatever the compute dtype.

A key/value cache is either HF's legacy growing tuple (per layer ``(key, value)`` or
``(key, value, cross_key, cross_value)``, each ``(batch, heads, seq, head_dim)``) or a preallocated
``KVCache`` of fixed length, whose slots are written in place so that a jitted decoding step keeps one shape.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlmr.common.config import XLMRobertaConfig

Array = jax.Array

# Activations by their Hugging Face names. HF's "gelu" is the exact erf form; jax.nn.gelu defaults to tanh.
ACT = {
    "gelu": partial(jax.nn.gelu, approximate=False),
    "gelu_new": partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": partial(jax.nn.gelu, approximate=True),
    "gelu_fast": partial(jax.nn.gelu, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

# Parameters start as zeros: their values always come from xlmr.common.init or a checkpoint, never from here.
_ZEROS = nnx.initializers.zeros_init()


def linear(n_in: int, n_out: int, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs, use_bias: bool = True) -> nnx.Linear:
    return nnx.Linear(n_in, n_out, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                      kernel_init=_ZEROS, bias_init=_ZEROS, rngs=rngs)


def layer_norm(n: int, eps: float, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Statistics are computed in float32 (flax promotes) with E[(x - mean)^2], as PyTorch does.
    return nnx.LayerNorm(n, epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def embed(n: int, features: int, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs) -> nnx.Embed:
    return nnx.Embed(n, features, dtype=dtype, param_dtype=param_dtype, embedding_init=_ZEROS, rngs=rngs)


def dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    # Built in eval mode: dropout acts only after model.train() or with deterministic=False.
    return nnx.Dropout(rate, deterministic=True, rngs=rngs)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """A preallocated key/value cache for jitted decoding (``model.init_cache(batch, max_length)``).

    ``layers`` has HF's legacy layout, one tuple per layer, but every self-attention key/value holds
    ``max_length`` slots ``(batch, heads, max_length, head_dim)``, of which the first ``index`` are filled.
    Cross-attention keys/values (computed once from ``encoder_hidden_states``) are appended to a layer's tuple
    on the first call. Shapes never change after that first call, so a jitted step compiles once.

    Eagerly, a call that would write past ``max_length`` raises ValueError. Under ``jit`` the index is a tracer
    and ``dynamic_update_slice`` would clamp the write silently: ``xlmr.flax.checked_call`` checks it on device.
    """

    layers: tuple
    index: Array  # int32 scalar: number of filled positions

    @property
    def max_length(self) -> int:
        return self.layers[0][0].shape[2]


def past_length_of(past_key_values: Any) -> Any:
    """Number of cached positions: a Python int for the growing tuple, an int32 scalar for a KVCache."""
    if past_key_values is None:
        return 0
    if isinstance(past_key_values, KVCache):
        return past_key_values.index
    return past_key_values[0][0].shape[2]


def position_ids_from_input_ids(input_ids: Array, padding_idx: int, past_length: Any = 0) -> Array:
    """Padding tokens get ``padding_idx``; real tokens count up from ``padding_idx + 1 + past_length``.

    Same rule as ``xlmr.common.inputs.position_ids_from_input_ids``; ``past_length`` may be traced.
    """
    mask = (input_ids != padding_idx).astype(jnp.int32)
    return (jnp.cumsum(mask, axis=1) + past_length) * mask + padding_idx


class Embeddings(nnx.Module):
    """word + token type (+ absolute position) embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        h, kw = config.hidden_size, dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.word_embeddings = embed(config.vocab_size, h, **kw)
        self.position_embeddings = embed(config.max_position_embeddings, h, **kw)
        self.token_type_embeddings = embed(config.type_vocab_size, h, **kw)
        self.LayerNorm = layer_norm(h, config.layer_norm_eps, **kw)
        self.dropout = dropout(config.hidden_dropout_prob, rngs)
        self.padding_idx = config.pad_token_id
        self.absolute = config.position_embedding_type == "absolute"
        self.dtype = dtype

    def _lookup(self, table: nnx.Embed, ids: Array) -> Array:
        # PyTorch's Embedding(padding_idx=pad) gives the padding row no gradient; the value is unchanged.
        vectors = table(ids)
        return jnp.where((ids == self.padding_idx)[..., None], jax.lax.stop_gradient(vectors), vectors)

    def __call__(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                 past_length: Any = 0, deterministic: bool | None = None) -> Array:
        if inputs_embeds is None:
            inputs_embeds = self._lookup(self.word_embeddings, input_ids)
        shape = inputs_embeds.shape[:2]
        if token_type_ids is None:
            token_type_ids = jnp.zeros(shape, jnp.int32)
        embeddings = inputs_embeds.astype(self.dtype) + self.token_type_embeddings(token_type_ids)
        if self.absolute:
            if position_ids is None and input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, self.padding_idx, past_length)
            elif position_ids is None:  # no ids, so no padding to see: positions run on after the cache
                start = self.padding_idx + 1 + past_length
                position_ids = (start + jnp.arange(shape[1]))[None, :]
            embeddings = embeddings + self._lookup(self.position_embeddings, jnp.broadcast_to(position_ids, shape))
        return self.dropout(self.LayerNorm(embeddings), deterministic=deterministic)


# From this key length on, attention runs one (batch, head) score matrix at a time (``tiled_attention``): at 512
# keys one float32 matrix is 1 MiB and stays in L2, where XLA CPU's batched einsum -> softmax -> einsum streams
# the whole (batch, heads, q, k) tensor through memory three times. Measured at 8x512 on the base shape
# (tools/bench_quant.py, ``attention_experiment``); shorter sequences keep the batched form.
TILED_ATTENTION_MIN_LENGTH = 256


def tiled_attention(query: Array, key: Array, value: Array, bias: Array | None) -> tuple[Array, Array]:
    """softmax(q kᵀ / sqrt(d) + bias) v computed per (batch, head) with ``jax.lax.map``, so one score matrix is
    live at a time; the same operations as the batched form on each slice, hence the same numbers.

    Returns (context, probs) shaped (batch, heads, q, head_dim) and (batch, heads, q, k); under ``jax.jit`` the
    probs are dropped when the caller does not use them.

    >>> import numpy as np
    >>> q = k = v = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 4)), jnp.float32)
    >>> context, probs = tiled_attention(q, k, v, None)
    >>> context.shape, bool(jnp.allclose(probs.sum(-1), 1.0))
    ((2, 3, 5, 4), True)
    """
    scale = 1.0 / math.sqrt(query.shape[-1])
    f32 = jnp.float32

    def one_head(qkv):
        q, k, v, b = qkv  # (q, d), (k, d), (k, d), (q or 1, k)
        scores = jnp.einsum("qd,kd->qk", q, k, preferred_element_type=f32) * scale + b
        probs = jax.nn.softmax(scores, axis=-1)
        return jnp.einsum("qk,kd->qd", probs.astype(v.dtype), v), probs

    def one_row(row):
        q, k, v, b = row  # (heads, q, d) ... and the row's bias (1, q or 1, k)
        b = jnp.broadcast_to(b[0], (q.shape[1] if b.shape[1] != 1 else 1, k.shape[1]))
        return jax.lax.map(lambda h: one_head((h[0], h[1], h[2], b)), (q, k, v))

    if bias is None:
        bias = jnp.zeros((query.shape[0], 1, 1, key.shape[2]), f32)
    return jax.lax.map(one_row, (query, key, value, bias))


class SelfAttention(nnx.Module):
    """Multi-head attention scores with optional relative-position terms; returns context and probabilities.

    ``position_embedding_type`` defaults to the config's; cross-attention is made with "absolute", as in HF.
    """

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None, *, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        position_embedding_type = position_embedding_type or config.position_embedding_type
        h, kw = config.hidden_size, dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = linear(h, h, **kw)
        self.key = linear(h, h, **kw)
        self.value = linear(h, h, **kw)
        self.dropout = dropout(config.attention_probs_dropout_prob, rngs)
        self.position_embedding_type = position_embedding_type
        if position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = embed(2 * config.max_position_embeddings - 1, config.head_dim, **kw)
        self.dtype = dtype

    def split_heads(self, x: Array) -> Array:  # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def __call__(self, hidden_states: Array, bias: Array | None = None, head_mask: Array | None = None,
                 encoder_hidden_states: Array | None = None, past_key_value: tuple | None = None,
                 past_length: Any = 0, in_place: bool = False,
                 deterministic: bool | None = None) -> tuple[Array, Array, tuple[Array, Array]]:
        """``bias`` is the additive float32 mask (batch, 1, q, k). ``past_key_value`` holds this block's cached
        (key, value), (batch, heads, past, head_dim): self-attention appends this step's to them, or with
        ``in_place`` (a KVCache) writes them at slot ``past_length``; cross-attention reuses them instead of
        projecting the encoder states again. Returns (context, probs, (key, value))."""
        query = self.split_heads(self.query(hidden_states))
        is_cross = encoder_hidden_states is not None
        if is_cross and past_key_value is not None:
            key, value = past_key_value
        else:
            source = encoder_hidden_states if is_cross else hidden_states
            key, value = self.split_heads(self.key(source)), self.split_heads(self.value(source))
            if past_key_value is not None and in_place:
                start = (0, 0, past_length, 0)
                key = jax.lax.dynamic_update_slice(past_key_value[0], key.astype(past_key_value[0].dtype), start)
                value = jax.lax.dynamic_update_slice(past_key_value[1], value.astype(past_key_value[1].dtype), start)
            elif past_key_value is not None:
                key = jnp.concatenate([past_key_value[0].astype(key.dtype), key], axis=2)
                value = jnp.concatenate([past_key_value[1].astype(value.dtype), value], axis=2)

        f32 = jnp.float32
        dropout_off = self.dropout.rate == 0 or (deterministic if deterministic is not None
                                                  else self.dropout.deterministic)
        # A symbolic length (jax.export with a polymorphic sequence axis) has no answer to ">= 256": batched form.
        if (self.position_embedding_type == "absolute" and head_mask is None and dropout_off
                and isinstance(key.shape[2], int) and key.shape[2] >= TILED_ATTENTION_MIN_LENGTH):
            context, probs = tiled_attention(query, key, value, bias)
            batch, _, length, _ = context.shape
            context = context.astype(self.dtype).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            return context, probs, (key, value)
        scores = jnp.einsum("bhqd,bhkd->bhqk", query, key, preferred_element_type=f32)
        if self.position_embedding_type != "absolute":
            # Distance of query i (absolute index past_length + i) from key j, shifted into the table's range.
            # (HF 4.57 uses key_len - 1 for every query whenever a cache exists: right only for one-token steps.)
            left = past_length + jnp.arange(query.shape[2])
            right = jnp.arange(key.shape[2])
            distance = left[:, None] - right[None, :] + self.max_position_embeddings - 1
            table = self.distance_embedding(distance)  # (q, k, head_dim)
            scores = scores + jnp.einsum("bhld,lrd->bhlr", query, table, preferred_element_type=f32)
            if self.position_embedding_type == "relative_key_query":
                scores = scores + jnp.einsum("bhrd,lrd->bhlr", key, table, preferred_element_type=f32)
        scores = scores / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + bias
        probs = jax.nn.softmax(scores, axis=-1)
        probs = self.dropout(probs, deterministic=deterministic)
        if head_mask is not None:
            probs = probs * head_mask
        context = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(self.dtype), value.astype(self.dtype))
        batch, _, length, _ = context.shape
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
        return context, probs, (key, value)


class SelfOutput(nnx.Module):
    """Projection back to the residual stream: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig, in_features: int | None = None, *, dtype: Any, param_dtype: Any,
                 rngs: nnx.Rngs):
        h, kw = config.hidden_size, dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dense = linear(in_features or h, h, **kw)
        self.LayerNorm = layer_norm(h, config.layer_norm_eps, **kw)
        self.dropout = dropout(config.hidden_dropout_prob, rngs)

    def __call__(self, hidden_states: Array, input_tensor: Array, deterministic: bool | None = None) -> Array:
        hidden_states = self.dropout(self.dense(hidden_states), deterministic=deterministic)
        return self.LayerNorm(hidden_states + input_tensor)


class Attention(nnx.Module):
    """SelfAttention followed by SelfOutput; used for self- and cross-attention."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None, *, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.self = SelfAttention(config, position_embedding_type, **kw)
        self.output = SelfOutput(config, **kw)

    def __call__(self, hidden_states: Array, bias: Array | None = None, head_mask: Array | None = None,
                 encoder_hidden_states: Array | None = None, past_key_value: tuple | None = None,
                 past_length: Any = 0, in_place: bool = False,
                 deterministic: bool | None = None) -> tuple[Array, Array, tuple[Array, Array]]:
        context, probs, key_value = self.self(hidden_states, bias, head_mask, encoder_hidden_states, past_key_value,
                                              past_length, in_place, deterministic)
        return self.output(context, hidden_states, deterministic), probs, key_value


class Intermediate(nnx.Module):
    """The feed-forward block's expansion: dense -> activation."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.dense = linear(config.hidden_size, config.intermediate_size, dtype=dtype, param_dtype=param_dtype,
                            rngs=rngs)
        self.activation = ACT[config.hidden_act]

    def __call__(self, hidden_states: Array) -> Array:
        return self.activation(self.dense(hidden_states))


class Output(SelfOutput):
    """The feed-forward block's contraction: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        super().__init__(config, in_features=config.intermediate_size, dtype=dtype, param_dtype=param_dtype,
                         rngs=rngs)


class Layer(nnx.Module):
    """One Transformer layer: self-attention, cross-attention (decoders given encoder states), feed-forward."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attention = Attention(config, **kw)
        if config.add_cross_attention:
            if not config.is_decoder:
                raise ValueError("config.add_cross_attention=True needs config.is_decoder=True")
            # As in HF, cross-attention always uses plain dot products: no relative-position table.
            self.crossattention = Attention(config, position_embedding_type="absolute", **kw)
        self.intermediate = Intermediate(config, **kw)
        self.output = Output(config, **kw)
        self.is_decoder = config.is_decoder

    def __call__(self, hidden_states: Array, bias: Array | None = None, head_mask: Array | None = None,
                 encoder_hidden_states: Array | None = None, encoder_bias: Array | None = None,
                 past_key_value: tuple | None = None, past_length: Any = 0, in_place: bool = False,
                 deterministic: bool | None = None) -> tuple[Array, Array, Array | None, tuple]:
        """Returns (hidden_states, self-attention probs, cross-attention probs, this layer's cache entry)."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden_states, self_probs, cache = self.attention(hidden_states, bias, head_mask, None, self_past,
                                                          past_length, in_place, deterministic)
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError("encoder_hidden_states were passed, but the model has no cross-attention layers: "
                                 "build it with config.add_cross_attention=True")
            cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
            hidden_states, cross_probs, cross_cache = self.crossattention(
                hidden_states, encoder_bias, head_mask, encoder_hidden_states, cross_past, past_length, False,
                deterministic)
            cache = cache + cross_cache
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states, deterministic)
        return hidden_states, self_probs, cross_probs, cache


class Encoder(nnx.Module):
    """The stack of layers; collects hidden states, attentions and the key/value cache as asked."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.layer = nnx.List([Layer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                               for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def __call__(self, hidden_states: Array, bias: Array | None = None, head_mask: Array | None = None,
                 encoder_hidden_states: Array | None = None, encoder_bias: Array | None = None,
                 past_key_values: Any = None, past_length: Any = 0, use_cache: bool = False,
                 output_attentions: bool = False, output_hidden_states: bool = False,
                 deterministic: bool | None = None) -> tuple:
        """Returns (last hidden state, cache, all hidden states, attentions, cross-attentions); None where not asked.

        ``past_key_values`` is the legacy tuple (the cache grows) or a KVCache (written in place, same shapes).
        """
        in_place = isinstance(past_key_values, KVCache)
        layers_past = past_key_values.layers if in_place else past_key_values
        all_hidden = (hidden_states,) if output_hidden_states else None
        attentions = () if output_attentions else None
        cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        cache = () if use_cache else None
        for i, layer in enumerate(self.layer):
            args = (hidden_states, bias, None if head_mask is None else head_mask[i], encoder_hidden_states,
                    encoder_bias, None if layers_past is None else layers_past[i])
            if self.gradient_checkpointing:
                # nnx.remat keeps only the layer's inputs for the backward pass and recomputes the rest there;
                # the dropout keys are part of the layer's state, so the recomputation draws the same masks.
                def run(layer, *args):  # the layer is an argument: nnx.remat carries its state in and out
                    return layer(*args, past_length, in_place, deterministic)

                hidden_states, probs, cross_probs, layer_cache = nnx.remat(run)(layer, *args)
            else:
                hidden_states, probs, cross_probs, layer_cache = layer(*args, past_length, in_place, deterministic)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                attentions = attentions + (probs,)
                if cross_attentions is not None:
                    cross_attentions = cross_attentions + (cross_probs,)
            if use_cache:
                cache = cache + (layer_cache,)
        if use_cache and in_place:
            cache = KVCache(cache, past_length + hidden_states.shape[1])
        return hidden_states, cache, all_hidden, attentions, cross_attentions


class Pooler(nnx.Module):
    """tanh(dense(hidden state of the first token))."""

    def __init__(self, config: XLMRobertaConfig, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.dense = linear(config.hidden_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, hidden_states: Array) -> Array:
        return jnp.tanh(self.dense(hidden_states[:, 0]))
