"""The heads' losses, with HF's semantics (mean over the targets that are not ignored), in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import IGNORE_INDEX
from xlmr.common.losses import MULTI_LABEL, REGRESSION, SINGLE_LABEL, sequence_problem_type


def _check_targets(labels: jax.Array, num_classes: int, ignore_index: int) -> None:
    # torch raises for a target outside [0, classes); a JAX gather would clamp silently. Checked when concrete.
    if isinstance(labels, jax.core.Tracer):
        return
    a = np.asarray(labels)
    bad = (a != ignore_index) & ((a < 0) | (a >= num_classes))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"labels hold {a[index]} at {index}, outside [0, {num_classes}) and not the ignore "
                         f"index {ignore_index}")


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """Mean cross-entropy over the labels that are not ``ignore_index`` (NaN when all are, as torch)."""
    num_classes = logits.shape[-1]
    labels = jnp.asarray(labels).reshape(-1)
    _check_targets(labels, num_classes, ignore_index)
    log_probs = jax.nn.log_softmax(logits.reshape(-1, num_classes).astype(jnp.float32), axis=-1)
    keep = labels != ignore_index
    targets = jnp.where(keep, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(keep, nll, 0.0)) / jnp.sum(keep)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean((predictions.astype(jnp.float32) - jnp.asarray(targets, jnp.float32)) ** 2)


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean binary cross-entropy on logits, in the overflow-free form torch uses."""
    x, y = logits.astype(jnp.float32), jnp.asarray(targets, jnp.float32)
    return jnp.mean(jnp.maximum(x, 0.0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))


def causal_lm_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Next-token prediction: the logits at position t are scored against the label at t + 1."""
    return cross_entropy(logits[:, :-1], jnp.asarray(labels)[:, 1:])


def sequence_classification_loss(logits: jax.Array, labels: jax.Array, config: XLMRobertaConfig) -> jax.Array:
    """MSE (regression), cross-entropy (single label) or BCE with logits (multi-label), chosen as HF does."""
    labels = jnp.asarray(labels)
    problem = sequence_problem_type(config, labels.dtype in (jnp.int32, jnp.int64))
    if problem == REGRESSION:
        if config.num_labels == 1:
            return mse(jnp.squeeze(logits), jnp.squeeze(labels))
        return mse(logits, labels)
    if problem == SINGLE_LABEL:
        return cross_entropy(logits, labels)
    if problem == MULTI_LABEL:
        return binary_cross_entropy_with_logits(logits, labels)
    raise ValueError(f"config.problem_type={problem!r} is not one of {REGRESSION}, {SINGLE_LABEL}, {MULTI_LABEL}")


def question_answering_loss(start_logits, end_logits, start_positions, end_positions) -> jax.Array:
    """Mean of the start and end cross-entropies; positions outside the sequence are clamped to its length and
    then ignored."""
    start_positions, end_positions = jnp.asarray(start_positions), jnp.asarray(end_positions)
    if start_positions.ndim > 1:
        start_positions = start_positions.squeeze(-1)
    if end_positions.ndim > 1:
        end_positions = end_positions.squeeze(-1)
    ignored = start_logits.shape[1]
    start = cross_entropy(start_logits, jnp.clip(start_positions, 0, ignored), ignore_index=ignored)
    end = cross_entropy(end_logits, jnp.clip(end_positions, 0, ignored), ignore_index=ignored)
    return (start + end) / 2
