"""The heads' losses, with HF's semantics (mean over the targets that are not ignored), in float32."""

from __future__ import annotations

import tensorflow as tf

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import IGNORE_INDEX
from xlmr.common.losses import MULTI_LABEL, REGRESSION, SINGLE_LABEL, sequence_problem_type


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor, ignore_index: int | tf.Tensor = IGNORE_INDEX) -> tf.Tensor:
    """``torch.nn.CrossEntropyLoss(ignore_index=...)``: logits (..., classes), integer labels (...).

    The mean runs over targets != ignore_index; with none left it is 0/0 = NaN, as in PyTorch.
    """
    classes = tf.shape(logits)[-1]
    logits = tf.reshape(tf.cast(logits, tf.float32), (-1, classes))
    labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
    keep = tf.not_equal(labels, tf.cast(ignore_index, tf.int32))
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.where(keep, labels, 0), logits=logits)
    kept = tf.cast(keep, tf.float32)
    return tf.reduce_sum(per_token * kept) / tf.reduce_sum(kept)


def mse(predictions: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """``torch.nn.MSELoss()``: mean squared error, targets broadcast against predictions."""
    predictions = tf.cast(predictions, tf.float32)
    return tf.reduce_mean(tf.square(predictions - tf.cast(targets, tf.float32)))


def binary_cross_entropy_with_logits(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """``torch.nn.BCEWithLogitsLoss()``: mean over every element."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(targets, tf.float32),
                                                                  logits=logits))


def causal_lm_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Next-token prediction: the logits at position t are scored against the label at t + 1."""
    return cross_entropy(logits[:, :-1], labels[:, 1:])


def sequence_classification_loss(logits: tf.Tensor, labels: tf.Tensor, config: XLMRobertaConfig) -> tf.Tensor:
    """MSE (regression), cross-entropy (single label) or BCE with logits (multi-label), chosen as HF does."""
    problem = sequence_problem_type(config, labels.dtype.is_integer)
    if problem == REGRESSION:
        if config.num_labels == 1:
            return mse(tf.squeeze(logits), tf.squeeze(labels))
        return mse(logits, labels)
    if problem == SINGLE_LABEL:
        return cross_entropy(logits, labels)
    if problem == MULTI_LABEL:
        return binary_cross_entropy_with_logits(logits, labels)
    raise ValueError(f"config.problem_type={problem!r} is not one of {REGRESSION}, {SINGLE_LABEL}, {MULTI_LABEL}")


def question_answering_loss(start_logits: tf.Tensor, end_logits: tf.Tensor, start_positions: tf.Tensor,
                            end_positions: tf.Tensor) -> tf.Tensor:
    """Mean of the start and end cross-entropies; positions outside the sequence are clamped to its length and
    then ignored."""
    ignored = tf.shape(start_logits)[1]
    losses = []
    for logits, positions in ((start_logits, start_positions), (end_logits, end_positions)):
        positions = tf.cast(positions, tf.int32)
        if positions.shape.rank is not None and positions.shape.rank > 1:
            positions = tf.squeeze(positions, -1)
        losses.append(cross_entropy(logits, tf.clip_by_value(positions, 0, ignored), ignore_index=ignored))
    return (losses[0] + losses[1]) / 2
