"""Input rules shared by the backends: validation of concrete inputs and the position-id rule.

JAX clamps out-of-range gathers and TF on GPU returns zeros for them, so every backend checks ids here, before
any kernel runs, and raises the same ValueError. The messages are built by the ``*_message`` functions so that
traced checks (``tf.debugging``, ``checkify``) say the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlmr.common.config import XLMRobertaConfig


def out_of_range_message(tensor: str, value: Any, index: Any, low: int, high: int, field: str) -> str:
    where = f" at {tuple(int(i) for i in index)}" if index is not None else ""
    return f"{tensor} holds {value}{where}, outside [{low}, {high}) set by config.{field}={high}"


def sequence_too_long_message(length: int, past_length: int, config: XLMRobertaConfig) -> str:
    cached = f" + {past_length} cached" if past_length else ""
    return (f"sequence length {length}{cached} exceeds the position limit {config.max_sequence_length} "
            f"(config.max_position_embeddings={config.max_position_embeddings} minus pad_token_id+1="
            f"{config.pad_token_id + 1})")


def _check_range(tensor: str, array: Any, high: int, field: str, low: int = 0) -> None:
    a = np.asarray(array)
    if a.size == 0:
        return
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{tensor} must hold integers, got dtype {a.dtype}")
    bad = (a < low) | (a >= high)
    if bad.any():
        index = np.argwhere(bad)[0]
        raise ValueError(out_of_range_message(tensor, a[tuple(index)], index, low, high, field))


def check_inputs(
    config: XLMRobertaConfig,
    input_ids: Any = None,
    attention_mask: Any = None,
    token_type_ids: Any = None,
    position_ids: Any = None,
    inputs_embeds_shape: tuple[int, ...] | None = None,
    past_length: int = 0,
) -> tuple[int, int]:
    """Validate concrete inputs of one forward call; return (batch, sequence length).

    Raises ValueError naming the tensor, the value, its index, and the limit with the config field behind it.
    """
    if (input_ids is None) == (inputs_embeds_shape is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    shape = tuple(np.shape(input_ids)) if input_ids is not None else tuple(inputs_embeds_shape[:2])
    if input_ids is not None and len(shape) != 2:
        raise ValueError(f"input_ids must have shape (batch, sequence), got {shape}")
    if inputs_embeds_shape is not None and (len(inputs_embeds_shape) != 3
                                            or inputs_embeds_shape[2] != config.hidden_size):
        raise ValueError(f"inputs_embeds must have shape (batch, sequence, hidden_size={config.hidden_size}), "
                         f"got {tuple(inputs_embeds_shape)}")
    batch, length = shape
    if past_length + length > config.max_sequence_length:
        raise ValueError(sequence_too_long_message(length, past_length, config))
    if input_ids is not None:
        _check_range("input_ids", input_ids, config.vocab_size, "vocab_size")
    if token_type_ids is not None:
        if tuple(np.shape(token_type_ids)) != shape:
            raise ValueError(f"token_type_ids has shape {tuple(np.shape(token_type_ids))}, input has {shape}")
        _check_range("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
    if position_ids is not None:
        pshape = tuple(np.shape(position_ids))
        if pshape not in (shape, (1, length), (length,)):
            raise ValueError(f"position_ids has shape {pshape}, input has {shape}")
        _check_range("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings")
    if attention_mask is not None:
        mshape = tuple(np.shape(attention_mask))
        if mshape != (batch, past_length + length):
            expected = f"(batch, past + sequence) = {(batch, past_length + length)}"
            raise ValueError(f"attention_mask has shape {mshape}, expected {expected}")
    return batch, length


def check_multiple_choice(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ValueError(f"multiple choice takes {name} of shape (batch, num_choices, sequence), got {tuple(shape)}")


def position_ids_from_input_ids(input_ids: np.ndarray, padding_idx: int, past_length: int = 0) -> np.ndarray:
    """The reference rule, in numpy (backends implement it in tensor ops and test against this).

    Padding tokens get ``padding_idx``; real tokens count up from ``padding_idx + 1 + past_length`` in order.
    """
    mask = (np.asarray(input_ids) != padding_idx).astype(np.int64)
    return (np.cumsum(mask, axis=1) + past_length) * mask + padding_idx


def position_ids_from_length(length: int, padding_idx: int, past_length: int = 0) -> np.ndarray:
    """Positions for ``inputs_embeds`` (no ids, so no padding to detect): sequential after ``padding_idx``."""
    return np.arange(padding_idx + 1 + past_length, padding_idx + 1 + past_length + length)[None, :]
