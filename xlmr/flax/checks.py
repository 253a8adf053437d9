"""Input validation that also works under ``jit``: the traced counterpart of ``xlmr.common.inputs.check_inputs``.

A model called with concrete arrays validates them itself. Inside ``jax.jit`` / ``nnx.jit`` its inputs are
tracers: shapes (hence the sequence length against the position limit) are still checked when tracing, but
values are unknown, and an id outside the table would be gathered silently (JAX fills or clamps). Two remedies:

* validate before the jitted call (``xlmr.common.inputs.check_inputs`` on the numpy batch), or
* ``checked_call(model, **inputs)``: one jitted program that checks the values on device with
  ``jax.experimental.checkify`` and runs the model; it raises the same ValueError text as an eager call.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaModel, checked_call
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=37, max_position_embeddings=64)
    >>> model = XLMRobertaModel(config)
    >>> checked_call(model, input_ids=np.array([[0, 5, 2]])).last_hidden_state.shape
    (1, 3, 32)
    >>> checked_call(model, input_ids=np.array([[0, 500, 2]]))
    Traceback (most recent call last):
    ...
    ValueError: input_ids holds 500 at (0, 1), outside [0, 100) set by config.vocab_size=100
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import checkify

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import (
    check_inputs,
    check_mask_values,
    check_past_key_values,
    mask_value_message,
    out_of_range_message,
)
from xlmr.flax.layers import KVCache, past_length_of

_SUFFIX = " (`check` failed)"  # what checkify appends to a message


def is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


class _ShapeOnly:
    """A traced array's shape for ``check_inputs``, holding no values, so that the value checks pass. Unlike a
    zero array of that shape it also stands for symbolic dimensions (``jax.export``), which numpy cannot allocate."""

    def __init__(self, x: Any):
        self.shape, self.dtype = tuple(x.shape), x.dtype

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.zeros((0,), dtype or self.dtype)


def _host(x: Any) -> Any:
    """``x`` as numpy for ``check_inputs``; when traced (under jit) a stand-in of its shape and dtype, so shapes
    are still checked, with the same messages, while the value checks pass."""
    if x is None:
        return None
    return _ShapeOnly(x) if is_traced(x) else np.asarray(x)


def cache_overflow_message(length: int, past_length: Any, max_length: int) -> str:
    return (f"KVCache holds {past_length} of its {max_length} positions; {length} more do not fit "
            f"(build it with init_cache(batch_size, max_length) large enough)")


def check_model_inputs(config: XLMRobertaConfig, input_ids: Any, attention_mask: Any, token_type_ids: Any,
                       position_ids: Any, inputs_embeds: Any, past_key_values: Any) -> tuple[int, int]:
    """Raise the common ValueErrors (ids out of range, too long, mismatched shapes, empty inputs, a mask value
    other than 0 and 1, a cache of the wrong layers or shapes) for what is known now: everything when the inputs
    are concrete, shapes only when they are traced."""
    embeds_shape = None if inputs_embeds is None else tuple(np.shape(inputs_embeds))
    check_past_key_values(config, past_key_values.layers if isinstance(past_key_values, KVCache) else past_key_values,
                          input_ids if input_ids is not None else inputs_embeds)
    past_length = past_length_of(past_key_values)
    if isinstance(past_key_values, KVCache):
        max_length = past_key_values.max_length
        length = np.shape(input_ids)[1] if input_ids is not None else embeds_shape[1]
        known = None if is_traced(past_length) else int(past_length)
        if length + (known or 0) > max_length:
            raise ValueError(cache_overflow_message(length, known, max_length))
        batch = np.shape(past_key_values.layers[0][0])[0]
        if attention_mask is not None and tuple(np.shape(attention_mask)) != (batch, max_length):
            raise ValueError(f"attention_mask has shape {tuple(np.shape(attention_mask))}; with a KVCache it covers "
                             f"the whole cache: (batch, max_length) = {(batch, max_length)}")
        if attention_mask is not None:
            check_mask_values(_host(attention_mask))
        attention_mask, past_length = None, known or 0  # a KVCache's length is within the limit (init_cache)
    return check_inputs(config, _host(input_ids), _host(attention_mask), _host(token_type_ids), _host(position_ids),
                        embeds_shape, past_length)


def _template(tensor: str, ndim: int, high: int, field: str) -> str:
    """``out_of_range_message`` with ``{}`` where the value and the index go (the message names both)."""
    text = out_of_range_message(tensor, "{}", None, 0, high, field)
    index = "(" + ", ".join(["{}"] * ndim) + ("," if ndim == 1 else "") + ")"
    return text.replace("holds {}", "holds {} at " + index, 1)


def traced_checks(config: XLMRobertaConfig, inputs: dict[str, Any]) -> None:
    """checkify checks of the values ``check_inputs`` verifies eagerly (ids, token types, positions, mask values,
    cache room).

    Multiple-choice inputs (batch, choices, seq) are checked flattened, as the model sees them.
    """
    limits = {"input_ids": ("vocab_size", config.vocab_size),
              "token_type_ids": ("type_vocab_size", config.type_vocab_size),
              "position_ids": ("max_position_embeddings", config.max_position_embeddings)}
    for name, (field, high) in limits.items():
        x = inputs.get(name)
        if x is None:
            continue
        x = jnp.asarray(x)
        if x.ndim == 3:
            x = x.reshape(-1, x.shape[-1])
        bad = (x < 0) | (x >= high)
        first = jnp.argmax(bad.reshape(-1))
        index = jnp.unravel_index(first, x.shape)
        checkify.check(~bad.any(), _template(name, x.ndim, high, field), x.reshape(-1)[first], *index)
    mask = inputs.get("attention_mask")
    if mask is not None and jnp.asarray(mask).dtype != jnp.bool_:
        mask = jnp.asarray(mask)
        mask = mask.reshape(-1, mask.shape[-1]) if mask.ndim == 3 else mask
        bad = (mask != 0) & (mask != 1)
        first = jnp.argmax(bad.reshape(-1))
        index = jnp.unravel_index(first, mask.shape)
        # "{:g}" prints 2, -1 and 0.5 as the eager message does
        text = mask_value_message("{:g}", None).replace("{:g}", "{:g} at (" + ", ".join(["{}"] * mask.ndim) + ")", 1)
        checkify.check(~bad.any(), text, mask.reshape(-1)[first], *index)
    cache = inputs.get("past_key_values")
    if isinstance(cache, KVCache):
        ids = inputs.get("input_ids")
        length = (ids if ids is not None else inputs["inputs_embeds"]).shape[1]
        checkify.check(cache.index + length <= cache.max_length,
                       cache_overflow_message(length, "{}", cache.max_length), cache.index)


def _is_static(value: Any) -> bool:
    return value is None or isinstance(value, (bool, str))


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _checked_forward(graphdef: Any, params: Any, rest: Any, arrays: dict[str, Any], static: tuple) -> tuple:
    model = nnx.merge(graphdef, params, rest)
    error, _ = checkify.checkify(lambda a: traced_checks(model.config, a))(arrays)
    out = model(**arrays, **dict(static))
    return error, out, nnx.state(model, nnx.Not(nnx.Param))


def checked_call(model: nnx.Module, **inputs: Any) -> Any:
    """``model(**inputs)`` compiled once per input shape, with on-device value checks; raises ValueError.

    Booleans and None are compile-time constants; arrays (numpy or JAX), caches and labels are traced.
    The values are checked before the result is returned, so a bad batch never yields silent output. The model
    goes in as a pure pytree (``nnx.split``) under ``jax.jit``: the per-call cost of ``nnx.jit``'s graph
    bookkeeping (about 0.3 s on the base shape here) is avoided; state the call changes (dropout rng counts)
    is written back to ``model``.
    """
    arrays = {k: v for k, v in inputs.items() if not _is_static(v)}
    static = tuple(sorted((k, v) for k, v in inputs.items() if _is_static(v)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    error, out, rest = _checked_forward(graphdef, params, rest, arrays, static)
    message = error.get()
    if message is not None:
        raise ValueError(message.removesuffix(_SUFFIX))
    nnx.update(model, rest)
    return out
