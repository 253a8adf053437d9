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


def mask_value_message(value: Any, index: Any) -> str:
    """For an attention mask value outside {0, 1}; ``value`` prints as ``%g`` (2, -1, 0.5), as tf and checkify do."""
    where = f" at {tuple(int(i) for i in index)}" if index is not None else ""
    shown = value if isinstance(value, str) else format(float(value), "g")
    # No braces in the text: tf.strings.format and str.format (checkify) would read them as placeholders.
    return (f"attention_mask holds {shown}{where}, which is neither 0 (masked) nor 1 (attended); HF masks out every "
            f"value but 1, xlmr every value but 0, so any other value is refused")


def empty_input_message(tensor: str, shape: tuple[int, ...]) -> str:
    what = "no sequences (batch 0)" if shape[0] == 0 else "no tokens (sequence length 0)"
    return f"{tensor} has shape {tuple(int(d) for d in shape)}: {what}; a model call needs at least one token"


def sequence_too_long_message(length: int, past_length: int, config: XLMRobertaConfig) -> str:
    cached = f" + {past_length} cached" if past_length else ""
    return (f"sequence length {length}{cached} exceeds the position limit {config.max_sequence_length} "
            f"(config.max_position_embeddings={config.max_position_embeddings} minus pad_token_id+1="
            f"{config.pad_token_id + 1})")


def _check_range(tensor: str, array: Any, high: int, field: str, low: int = 0) -> None:
    """Ids, token types and positions: any integer dtype (the backends cast them), values in [low, high)."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{tensor} must hold integers, got dtype {a.dtype}")
    if a.size == 0:
        return
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
    if batch == 0 or length == 0:
        raise ValueError(empty_input_message("input_ids" if input_ids is not None else "inputs_embeds",
                                             tuple(np.shape(input_ids)) if input_ids is not None
                                             else tuple(inputs_embeds_shape)))
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
        check_mask_values(attention_mask)
    return batch, length


def check_mask_values(attention_mask: Any) -> None:
    """Raise unless every value of the mask is 0 or 1 (any numeric dtype, bool included)."""
    m = np.asarray(attention_mask)
    if m.dtype == np.bool_:
        return
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"attention_mask must hold numbers, got dtype {m.dtype}")
    bad = (m != 0) & (m != 1)
    if bad.any():
        index = np.argwhere(bad)[0]
        raise ValueError(mask_value_message(m[tuple(index)], index))


_CACHE_PARTS = ("key", "value", "cross-attention key", "cross-attention value")


def check_past_key_values(config: XLMRobertaConfig, past_key_values: Any, inputs: Any = None) -> int:
    """Check a cache in HF's legacy layout and return its length (0 for None).

    One entry per layer, each ``(key, value)`` or, with cross-attention, ``(key, value, cross key, cross value)``,
    every tensor ``(batch, num_attention_heads, length, head_dim)``; the self-attention length is the same in every
    layer and the batch that of ``inputs`` (the ids or embeddings, when given). Shapes are read with ``np.shape``,
    so tensors of any framework (and traced ones) are never copied; an unknown (None) dimension matches anything.
    """
    if past_key_values is None:
        return 0
    layers = config.num_hidden_layers
    if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != layers:
        found = f"{len(past_key_values)} layers" if isinstance(past_key_values, (tuple, list)) else (
            f"a {type(past_key_values).__name__}")
        raise ValueError(f"past_key_values has {found}; the model has num_hidden_layers={layers}, each a tuple "
                         f"(key, value) of shape (batch, heads, past, head_dim)")
    batch = None if inputs is None else tuple(np.shape(inputs))[0]
    heads, head_dim = config.num_attention_heads, config.head_dim
    past = None
    for i, layer in enumerate(past_key_values):
        if not isinstance(layer, (tuple, list)) or len(layer) not in (2, 4):
            found = f"{len(layer)} tensors" if isinstance(layer, (tuple, list)) else f"a {type(layer).__name__}"
            raise ValueError(f"past_key_values[{i}] holds {found}; a layer's entry is (key, value), or (key, value, "
                             f"cross-attention key, cross-attention value)")
        for j, tensor in enumerate(layer):
            shape = tuple(None if d is None else int(d) for d in np.shape(tensor))
            length = past if j < 2 and past is not None else None
            expected = (batch, heads, length, head_dim)
            if len(shape) != 4 or any(e is not None and d is not None and d != e for d, e in zip(shape, expected)):
                want = ", ".join("?" if e is None else str(e) for e in expected)
                raise ValueError(f"past_key_values[{i}][{j}] ({_CACHE_PARTS[j]} of layer {i}) has shape {shape}, "
                                 f"expected ({want}): (batch, num_attention_heads, past length, head_dim)")
            if j == 0 and past is None:
                past = shape[2]
    return past


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
