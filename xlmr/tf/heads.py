"""Task heads on top of the encoder: the masked/causal LM head and the sentence classification head.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf.heads import ClassificationHead, LMHead
    >>> from xlmr.tf.layers import Embedding
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64, num_labels=3)
    >>> hidden, table = np.random.randn(2, 5, 32).astype("float32"), Embedding(100, 32)
    >>> table.build()
    >>> tuple(LMHead(config)(hidden, word_embeddings=table).shape), tuple(ClassificationHead(config)(hidden).shape)
    ((2, 5, 100), (2, 3))
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from xlmr.common.config import XLMRobertaConfig
from xlmr.tf.layers import ACT, build, dense, layer_norm


class LMHead(keras.layers.Layer):
    """dense -> exact gelu (whatever ``hidden_act``, as HF) -> layer_norm -> decoder + ``bias``.

    Tied (``config.tie_word_embeddings``): the decoder is the word-embedding table, the ``word_embeddings``
    layer passed at call time so that Keras tracks the table once, under ``roberta.embeddings``. Untied: the head
    owns ``decoder`` (a bias-free Dense; HF's ``lm_head.decoder.bias`` is an alias of ``lm_head.bias``).
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.dense = dense(config.hidden_size, "dense")
        self.layer_norm = layer_norm(config, "layer_norm")
        if not config.tie_word_embeddings:
            self.decoder = dense(config.vocab_size, "decoder", use_bias=False)

    def build(self, input_shape: Any = None) -> None:
        h = self.config.hidden_size
        build(self.dense, (None, None, h))
        build(self.layer_norm, (None, None, h))
        if not self.config.tie_word_embeddings:
            build(self.decoder, (None, None, h))
        self.bias = self.add_weight(shape=(self.config.vocab_size,), initializer="zeros", name="bias")

    def call(self, features: tf.Tensor, word_embeddings: keras.layers.Layer) -> tf.Tensor:
        x = self.layer_norm(ACT["gelu"](self.dense(features)))
        if self.config.tie_word_embeddings:
            x = tf.matmul(x, tf.cast(word_embeddings.embeddings, x.dtype), transpose_b=True)
        else:
            x = self.decoder(x)
        return x + tf.cast(self.bias, x.dtype)


class ClassificationHead(keras.layers.Layer):
    """features[:, 0] -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: XLMRobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.dense = dense(config.hidden_size, "dense")
        self.dropout = keras.layers.Dropout(config.classifier_dropout_rate)
        self.out_proj = dense(config.num_labels, "out_proj")

    def build(self, input_shape: Any = None) -> None:
        build(self.dense, (None, self.config.hidden_size))
        build(self.out_proj, (None, self.config.hidden_size))

    def call(self, features: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = self.dropout(features[:, 0], training=training)
        x = tf.tanh(self.dense(x))
        x = self.dropout(x, training=training)
        return self.out_proj(x)
