"""Input checks that run before any kernel, in the three ways a TensorFlow model executes.

* Eagerly: the tensors are concrete, so ``xlmr.common.inputs.check_inputs`` runs on their numpy values and raises
  the shared ValueError (the same text as xlmr.pt and xlmr.flax).
* Traced by ``tf.function``: shapes known at trace time are checked in Python (ValueError at trace time); values
  and unknown dimensions by ``tf.debugging.Assert`` ops that run before the gathers and fail with
  ``tf.errors.InvalidArgumentError`` carrying the same text, formatted in the graph from the common templates.
* Compiled by XLA (``jit_compile=True``): XLA drops Assert ops and has no string ops, and its gathers clamp
  out-of-range ids to the table's last row. There the checks reduce to one boolean flag, which the model turns
  into NaN outputs (so a bad id cannot pass as a plausible number), and ``checked_call(model, ...)`` (the same
  as ``model.compiled_call(...)``) runs the eager checks on the host before it enters the XLA function, raising
  the shared ValueError.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaModel, checked_call
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=37, max_position_embeddings=64)
    >>> model = XLMRobertaModel(config, seed=0)
    >>> tuple(checked_call(model, input_ids=np.array([[0, 5, 2]])).last_hidden_state.shape)
    (1, 3, 32)
    >>> checked_call(model, input_ids=np.array([[0, 500, 2]]))
    Traceback (most recent call last):
    ...
    ValueError: input_ids holds 500 at (0, 1), outside [0, 100) set by config.vocab_size=100
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import (
    check_inputs,
    empty_input_message,
    mask_value_message,
    out_of_range_message,
    sequence_too_long_message,
)

try:  # TF's own test for "this graph is being compiled by XLA"; private, so fall back to "maybe" if it moves.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _graph_in_xla
except ImportError:  # pragma: no cover - depends on the TF release
    _graph_in_xla = None


def in_xla_context() -> bool:
    """True when the current trace is compiled by XLA (or when TF no longer says, to stay XLA-safe)."""
    if tf.executing_eagerly():
        return False
    if _graph_in_xla is None:  # pragma: no cover
        return True
    return bool(_graph_in_xla(tf.compat.v1.get_default_graph()))


def is_concrete(*tensors: Any) -> bool:
    """True when every given input has a value now: eager execution, and no graph tensor or Keras symbol among
    them (numpy arrays, lists and eager tensors are concrete)."""
    if not tf.executing_eagerly():
        return False
    for t in tf.nest.flatten(tensors):
        if isinstance(t, keras.KerasTensor) or (tf.is_tensor(t) and not hasattr(t, "numpy")):
            return False
    return True


def check_concrete(config: XLMRobertaConfig, input_ids: Any, attention_mask: Any, token_type_ids: Any,
                   position_ids: Any, inputs_embeds_shape: tuple[int, ...] | None, past_length: int) -> None:
    """The shared eager check (``xlmr.common.inputs.check_inputs``) on numpy copies of the inputs."""
    as_np = lambda t: None if t is None else np.asarray(t)  # noqa: E731
    check_inputs(config, as_np(input_ids), as_np(attention_mask), as_np(token_type_ids), as_np(position_ids),
                 inputs_embeds_shape, past_length)


# ------------------------------------------------------------------------------------------------ traced checks
_SENTINELS = (-7_700_001, -7_700_002, -7_700_003, -7_700_004)


def _template(message: Callable[..., str], *args: Any) -> tuple[str, list[int]]:
    """Turn a common message function into a ``tf.strings.format`` template.

    ``args`` hold sentinel integers where the graph supplies values; returns the template (sentinels replaced
    by ``{}``) and which sentinels appear, in text order, so the caller passes the tensors in that order.
    """
    text = message(*args).replace("{", "{{").replace("}", "}}")
    found = sorted((text.find(str(s)), i) for i, s in enumerate(_SENTINELS) if str(s) in text)
    for _, i in found:
        text = text.replace(str(_SENTINELS[i]), "{}")
    return text, [i for _, i in found]


def _format(template: tuple[str, list[int]], values: list[tf.Tensor]) -> tf.Tensor:
    text, order = template
    return tf.strings.format(text, [values[i] for i in order])


def _first_bad(x: tf.Tensor, bad: tf.Tensor, dtype: tf.DType = tf.int64) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Value (as ``dtype``) and index (row-major first, as numpy's argwhere) of the first True in ``bad``; safe
    when empty."""
    flat_bad = tf.concat([tf.reshape(bad, [-1]), [True]], axis=0)
    flat = tf.argmax(tf.cast(flat_bad, tf.int32), output_type=tf.int64)
    value = tf.gather(tf.concat([tf.reshape(tf.cast(x, dtype), [-1]), tf.zeros([1], dtype)], axis=0), flat)
    dims = tf.maximum(tf.shape(x, out_type=tf.int64), 1)
    index = []
    stride = tf.constant(1, tf.int64)
    for k in reversed(range(x.shape.rank)):
        index.insert(0, (flat // stride) % dims[k])
        stride = stride * dims[k]
    return value, index


def _static_dtype_and_rank(name: str, x: tf.Tensor, ranks: tuple[int, ...]) -> None:
    if not x.dtype.is_integer:
        raise ValueError(f"{name} must hold integers, got dtype {x.dtype.name}")
    if x.shape.rank not in ranks:
        raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))}, got shape {tuple(x.shape)}")


def traced_checks(config: XLMRobertaConfig, input_ids: tf.Tensor | None, attention_mask: tf.Tensor | None,
                  token_type_ids: tf.Tensor | None, position_ids: tf.Tensor | None, batch: tf.Tensor,
                  length: tf.Tensor, past_length: Any) -> tuple[list[tf.Operation], tf.Tensor]:
    """Checks for a trace: returns (assert ops to run first, one boolean "inputs are bad" flag).

    Outside XLA the assert ops fail with the shared messages; under XLA the list is empty (XLA would drop them)
    and the caller acts on the flag instead.
    """
    xla = in_xla_context()
    static_len = tf.get_static_value(length)
    static_past = tf.get_static_value(past_length)
    if static_len is not None and static_past is not None and static_past + static_len > config.max_sequence_length:
        raise ValueError(sequence_too_long_message(int(static_len), int(static_past), config))

    name = "input_ids" if input_ids is not None else "inputs_embeds"
    static_shape = tuple(input_ids.shape) if input_ids is not None else (
        tf.get_static_value(batch), static_len, config.hidden_size)
    if None not in static_shape and 0 in static_shape[:2]:
        raise ValueError(empty_input_message(name, static_shape))

    checks: list[tuple[tf.Tensor, Callable[[], tf.Tensor]]] = []  # (bad flag, message builder)
    sizes = [tf.cast(batch, tf.int64), tf.cast(length, tf.int64)]
    dims = list(_SENTINELS[:2]) + ([] if input_ids is not None else [config.hidden_size])
    no_batch, no_tokens = (_template(empty_input_message, name, shape) for shape in (
        (0, *dims[1:]), (dims[0], 0, *dims[2:])))
    checks.append((tf.logical_or(sizes[0] == 0, sizes[1] == 0), lambda: tf.where(
        sizes[0] == 0, _format(no_batch, sizes), _format(no_tokens, sizes))))
    past = tf.cast(past_length, tf.int64)
    too_long = tf.cast(length, tf.int64) + past > config.max_sequence_length
    s0, s1 = _SENTINELS[:2]
    with_past = _template(sequence_too_long_message, s0, s1, config)
    without_past = _template(sequence_too_long_message, s0, 0, config)
    checks.append((too_long, lambda: tf.where(
        past > 0, _format(with_past, [tf.cast(length, tf.int64), past]),
        _format(without_past, [tf.cast(length, tf.int64)]))))

    ranges = [("input_ids", input_ids, config.vocab_size, "vocab_size", (2,)),
              ("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size", (2,)),
              ("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings", (1, 2))]
    for name, x, high, field, ranks in ranges:
        if x is None:
            continue
        _static_dtype_and_rank(name, x, ranks)
        bad = (x < 0) | (x >= high)

        def message(name=name, x=x, bad=bad, high=high, field=field) -> tf.Tensor:
            value, index = _first_bad(x, bad)
            sentinels = list(_SENTINELS[1:1 + len(index)])
            template = _template(out_of_range_message, name, _SENTINELS[0], sentinels, 0, high, field)
            return _format(template, [value] + index)

        checks.append((tf.reduce_any(bad), message))

    if attention_mask is not None:
        if attention_mask.shape.rank != 2:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected (batch, past + "
                             f"sequence)")
        mask_shape = tf.shape(attention_mask, out_type=tf.int64)
        want = tf.stack([tf.cast(batch, tf.int64), tf.cast(length, tf.int64) + past])
        # The text of xlmr.common.inputs.check_inputs, which builds it inline.
        checks.append((tf.reduce_any(tf.not_equal(mask_shape, want)), lambda: tf.strings.format(
            "attention_mask has shape ({}, {}), expected (batch, past + sequence) = ({}, {})",
            [mask_shape[0], mask_shape[1], want[0], want[1]])))
        if attention_mask.dtype != tf.bool:
            bad_mask = tf.logical_and(tf.not_equal(attention_mask, 0), tf.not_equal(attention_mask, 1))

            def mask_message() -> tf.Tensor:
                # float64 prints as %g does (2, -1, 0.5), like the eager message
                value, index = _first_bad(attention_mask, bad_mask, tf.float64)
                template = _template(mask_value_message, str(_SENTINELS[0]), list(_SENTINELS[1:3]))
                return _format(template, [value] + index)

            checks.append((tf.reduce_any(bad_mask), mask_message))

    flag = tf.reduce_any(tf.stack([bad for bad, _ in checks]))
    if xla:
        return [], flag
    asserts = [tf.debugging.Assert(tf.logical_not(bad), [message()]) for bad, message in checks]
    return asserts, flag


def checked_call(model: Any, **inputs: Any) -> Any:
    """``model(**inputs)`` compiled by XLA once per set of arguments, with the inputs checked first on the host;
    raises the shared ValueError on bad input. The same as ``model.compiled_call(**inputs)``."""
    return model.compiled_call(**inputs)
