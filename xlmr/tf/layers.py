"""The XLM-R encoder as Keras 3 layers whose ops are TensorFlow: embeddings, attention, feed-forward, pooler.

Module and attribute names are those of HF's PyTorch classes (``encoder.layer[0].attention.self.query``), so that
``xlmr.common.weights`` maps every variable by its path; leaves carry Keras' names (``kernel``, ``bias``,
``embeddings``, ``gamma``, ``beta``). Every layer creates its variables in ``build`` from the config alone, and
the models call ``build`` in their constructor, so weights exist right after ``Cls(config)``.

Shapes in comments: b batch, q query length, k key length (cached + new), h heads, d head_dim.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from xlmr.common.config import XLMRobertaConfig


def _gelu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


def _gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=True)


# Activations by their HF names. "gelu" is the exact erf form; the three tanh names are HF's tanh approximation.
ACT = {
    "gelu": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def build(layer: keras.layers.Layer, input_shape: Any = None) -> None:
    """Build a child layer once (a nested model may already have built itself)."""
    if not layer.built:
        layer.build(input_shape)


def dense(units: int, name: str, use_bias: bool = True) -> keras.layers.Dense:
    # Zeros: the models overwrite every variable (xlmr.common.init or a checkpoint), so Keras' own random
    # initialisation would be wasted work.
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer="zeros", name=name)


def layer_norm(config: XLMRobertaConfig, name: str) -> keras.layers.LayerNormalization:
    # Keras computes E[(x - mean)^2] (tf.nn.moments) in at least float32, as nn.LayerNorm does.
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


def position_ids_from_input_ids(input_ids: tf.Tensor, padding_idx: int, past_length: Any = 0) -> tf.Tensor:
    """Padding tokens get ``padding_idx``; real tokens count up from ``padding_idx + 1 + past_length``."""
    mask = tf.cast(tf.not_equal(input_ids, padding_idx), input_ids.dtype)
    return (tf.cumsum(mask, axis=1) + tf.cast(past_length, input_ids.dtype)) * mask + padding_idx


class Embedding(keras.layers.Layer):
    """A lookup table with Keras' variable name ``embeddings``.

    Not ``keras.layers.Embedding``: that one wraps negative ids to the end of the table, which would turn a bad
    id into a plausible vector; this one is a plain ``tf.gather`` behind the model's input checks. Like PyTorch's
    ``Embedding(padding_idx=...)``, the ``padding_idx`` row gets no gradient (its value is used unchanged).
    """

    def __init__(self, input_dim: int, output_dim: int, padding_idx: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.padding_idx = input_dim, output_dim, padding_idx

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim), initializer="zeros",
                                          name="embeddings")

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        vectors = tf.gather(tf.cast(self.embeddings, self.compute_dtype), ids)
        if self.padding_idx is None:
            return vectors
        return tf.where(tf.equal(ids, self.padding_idx)[..., None], tf.stop_gradient(vectors), vectors)


class Embeddings(keras.layers.Layer):
    """word + token type (+ absolute position) embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, config.pad_token_id,
                                         name="word_embeddings")
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size, config.pad_token_id,
                                             name="position_embeddings")
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size,
                                               name="token_type_embeddings")
        self.LayerNorm = layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        for table in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            build(table)
        build(self.LayerNorm, (None, None, self.config.hidden_size))

    def call(self, input_ids: tf.Tensor | None = None, token_type_ids: tf.Tensor | None = None,
             position_ids: tf.Tensor | None = None, inputs_embeds: tf.Tensor | None = None,
             past_length: Any = 0, training: bool = False) -> tf.Tensor:
        pad = self.config.pad_token_id
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        shape = tf.shape(inputs_embeds)[:2]
        if token_type_ids is None:
            token_type_ids = tf.zeros(shape, tf.int32)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.config.position_embedding_type == "absolute":
            if position_ids is None and input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, pad, past_length)
            elif position_ids is None:  # no ids, so no padding to see: positions run on after the cache
                start = pad + 1 + tf.cast(past_length, tf.int32)
                position_ids = tf.range(start, start + shape[1])[None, :]
            embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class SelfAttention(keras.layers.Layer):
    """Scaled dot-product attention with HF's relative position terms and a key/value cache.

    ``position_embedding_type`` defaults to the config's; cross-attention is built with "absolute", as in HF.
    """

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        self.query = dense(config.hidden_size, "query")
        self.key = dense(config.hidden_size, "key")
        self.value = dense(config.hidden_size, "value")
        if self.position_embedding_type != "absolute":
            self.distance_embedding = Embedding(2 * config.max_position_embeddings - 1, config.head_dim,
                                                name="distance_embedding")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        for proj in (self.query, self.key, self.value):
            build(proj, (None, None, self.config.hidden_size))
        if self.position_embedding_type != "absolute":
            build(self.distance_embedding)

    def split_heads(self, x: tf.Tensor) -> tf.Tensor:
        """(b, s, h*d) -> (b, h, s, d)."""
        b, s = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, (b, s, self.num_heads, self.head_dim))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(self, hidden_states: tf.Tensor, bias: tf.Tensor | None = None, head_mask: tf.Tensor | None = None,
             encoder_hidden_states: tf.Tensor | None = None,
             past_key_value: tuple[tf.Tensor, tf.Tensor] | None = None, past_length: Any = 0,
             output_attentions: bool = False,
             training: bool = False) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """Returns (context (b, q, h*d), probabilities (b, h, q, k), (key, value) for the cache).

        ``bias`` is the additive mask (b, 1, q or 1, k). ``past_key_value`` holds the cached self keys/values
        (this step's are appended) or, for cross-attention, the encoder's keys/values (reused as they are).
        """
        query = self.split_heads(self.query(hidden_states))
        is_cross = encoder_hidden_states is not None
        if is_cross and past_key_value is not None:
            key, value = past_key_value
        else:
            source = encoder_hidden_states if is_cross else hidden_states
            key, value = self.split_heads(self.key(source)), self.split_heads(self.value(source))
            if past_key_value is not None:
                key = tf.concat([past_key_value[0], key], axis=2)
                value = tf.concat([past_key_value[1], value], axis=2)

        scores = tf.matmul(query, key, transpose_b=True)                                   # (b, h, q, k)
        if self.position_embedding_type != "absolute":
            # The query's absolute index (past + i) against every key index; HF's full-pass rule, which also
            # holds token by token (HF 4.57 uses key_len - 1 under a cache, right only for one-token steps).
            q_len, k_len = tf.shape(query)[2], tf.shape(key)[2]
            left = tf.range(q_len)[:, None] + past_length
            right = tf.range(k_len)[None, :]
            distance = self.distance_embedding(left - right + self.config.max_position_embeddings - 1)  # (q,k,d)
            scores += tf.einsum("bhld,lrd->bhlr", query, distance)
            if self.position_embedding_type == "relative_key_query":
                scores += tf.einsum("bhrd,lrd->bhlr", key, distance)
        scores = scores / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + bias
        # Softmax in float32 whatever the compute dtype: bf16 sums of exponentials lose the small terms.
        probs = tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1), scores.dtype)
        probs = self.dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)
        context = tf.matmul(probs, value)                                                 # (b, h, q, d)
        context = tf.transpose(context, (0, 2, 1, 3))
        b, q = tf.shape(context)[0], tf.shape(context)[1]
        context = tf.reshape(context, (b, q, self.config.hidden_size))
        return context, probs, (key, value)


class SelfOutput(keras.layers.Layer):
    """Projection back to the residual stream: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig, in_features: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.in_features = in_features or config.hidden_size
        self.dense = dense(config.hidden_size, "dense")
        self.LayerNorm = layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        build(self.dense, (None, None, self.in_features))
        build(self.LayerNorm, (None, None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor, input_tensor: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)


class Attention(keras.layers.Layer):
    """SelfAttention (``self``) followed by SelfOutput (``output``)."""

    # HF's attribute name; shadows Keras' ``Layer.output`` property, which only functional models use.
    output = None

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.self = SelfAttention(config, position_embedding_type, name="self")
        self.output = SelfOutput(config, name="output")

    def build(self, input_shape: Any = None) -> None:
        build(self.self)
        build(self.output)

    def call(self, hidden_states: tf.Tensor, bias: tf.Tensor | None = None, head_mask: tf.Tensor | None = None,
             encoder_hidden_states: tf.Tensor | None = None,
             past_key_value: tuple[tf.Tensor, tf.Tensor] | None = None, past_length: Any = 0,
             output_attentions: bool = False,
             training: bool = False) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        context, probs, key_value = self.self(
            hidden_states, bias=bias, head_mask=head_mask, encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value, past_length=past_length, output_attentions=output_attentions,
            training=training)
        return self.output(context, hidden_states, training=training), probs, key_value


class Intermediate(keras.layers.Layer):
    """The feed-forward block's expansion: dense -> activation."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.dense = dense(config.intermediate_size, "dense")
        self.activation = ACT[config.hidden_act]

    def build(self, input_shape: Any = None) -> None:
        build(self.dense, (None, None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.activation(self.dense(hidden_states))


class Output(SelfOutput):
    """The feed-forward block's contraction: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(config, in_features=config.intermediate_size, **kwargs)


class Layer(keras.layers.Layer):
    """One Transformer layer: self-attention, cross-attention (decoders given encoder states), feed-forward."""

    output = None  # see Attention.output

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.attention = Attention(config, name="attention")
        if config.add_cross_attention:
            if not config.is_decoder:
                raise ValueError("config.add_cross_attention=True needs config.is_decoder=True")
            # As in HF, cross-attention always uses plain dot products: no relative-position table.
            self.crossattention = Attention(config, position_embedding_type="absolute", name="crossattention")
        self.intermediate = Intermediate(config, name="intermediate")
        self.output = Output(config, name="output")

    def build(self, input_shape: Any = None) -> None:
        build(self.attention)
        if self.config.add_cross_attention:
            build(self.crossattention)
        build(self.intermediate)
        build(self.output)

    def call(self, hidden_states: tf.Tensor, bias: tf.Tensor | None = None, head_mask: tf.Tensor | None = None,
             encoder_hidden_states: tf.Tensor | None = None, encoder_bias: tf.Tensor | None = None,
             past_key_value: tuple | None = None, past_length: Any = 0, output_attentions: bool = False,
             training: bool = False) -> tuple:
        """Returns (hidden_states, self-attention probs, cross-attention probs, this layer's cache entry).

        ``past_key_value`` is HF's legacy layer entry: (self_key, self_value[, cross_key, cross_value]).
        """
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden_states, self_probs, cache = self.attention(
            hidden_states, bias=bias, head_mask=head_mask, past_key_value=self_past, past_length=past_length,
            output_attentions=output_attentions, training=training)
        cross_probs = None
        if self.config.is_decoder and encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise ValueError("encoder_hidden_states were passed, but the model has no cross-attention layers: "
                                 "build it with config.add_cross_attention=True")
            cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
            hidden_states, cross_probs, cross_cache = self.crossattention(
                hidden_states, bias=encoder_bias, head_mask=head_mask, encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past, past_length=past_length, output_attentions=output_attentions,
                training=training)
            cache = cache + cross_cache
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states, training=training)
        return hidden_states, self_probs, cross_probs, cache


def _recomputed(layer: "Layer", hidden_states: tf.Tensor, kwargs: dict) -> tf.Tensor:
    """``layer``'s output under ``tf.recompute_grad``: only its inputs are kept for the backward pass, which runs
    the layer again. Keras' dropout advances a seed variable on every call, so the seeds are read before the
    forward pass and put back before each run: the recomputation draws the forward pass's masks."""
    generators = [sub.seed_generator for sub in layer._flatten_layers()
                  if isinstance(sub, keras.layers.Dropout) and getattr(sub, "seed_generator", None) is not None]
    seeds = [tf.identity(g.state.value) for g in generators]
    encoder_states = kwargs.pop("encoder_hidden_states")

    def run(hidden, *encoder):  # positional tensors only: tf.custom_gradient takes no keywords in a graph
        for g, seed in zip(generators, seeds):
            g.state.assign(seed)
        return layer(hidden, encoder_hidden_states=encoder[0] if encoder else None, **kwargs)[0]

    return tf.recompute_grad(run)(hidden_states, *(() if encoder_states is None else (encoder_states,)))


class Encoder(keras.layers.Layer):
    """The stack of layers; collects hidden states, attentions and the key/value cache as asked."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.layer = [Layer(config, name=f"layer_{i}") for i in range(config.num_hidden_layers)]
        self.gradient_checkpointing = False

    def build(self, input_shape: Any = None) -> None:
        for layer in self.layer:
            build(layer)

    def call(self, hidden_states: tf.Tensor, bias: tf.Tensor | None = None, head_mask: list | None = None,
             encoder_hidden_states: tf.Tensor | None = None, encoder_bias: tf.Tensor | None = None,
             past_key_values: tuple | None = None, past_length: Any = 0, use_cache: bool = False,
             output_attentions: bool = False, output_hidden_states: bool = False, training: bool = False) -> tuple:
        """Returns (last hidden state, cache, all hidden states, attentions, cross-attentions); None where not asked."""
        all_hidden = (hidden_states,) if output_hidden_states else None
        attentions = () if output_attentions else None
        cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        cache = () if use_cache else None
        for i, layer in enumerate(self.layer):
            kwargs = dict(bias=bias, head_mask=None if head_mask is None else head_mask[i],
                          encoder_hidden_states=encoder_hidden_states, encoder_bias=encoder_bias,
                          past_key_value=None if past_key_values is None else past_key_values[i],
                          past_length=past_length, output_attentions=output_attentions, training=training)
            if self.gradient_checkpointing and training and not use_cache and not output_attentions:
                hidden_states = _recomputed(layer, hidden_states, kwargs)
                probs = cross_probs = layer_cache = None  # not asked for (checkpointing skips those calls)
            else:
                hidden_states, probs, cross_probs, layer_cache = layer(hidden_states, **kwargs)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                attentions = attentions + (probs,)
                if cross_attentions is not None:
                    cross_attentions = cross_attentions + (cross_probs,)
            if use_cache:
                cache = cache + (tuple(layer_cache),)
        return hidden_states, cache, all_hidden, attentions, cross_attentions


class Pooler(keras.layers.Layer):
    """tanh(dense(first token's hidden state))."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.dense = dense(config.hidden_size, "dense")

    def build(self, input_shape: Any = None) -> None:
        build(self.dense, (None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return tf.tanh(self.dense(hidden_states[:, 0]))
