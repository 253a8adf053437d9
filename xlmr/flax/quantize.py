"""JAX/Flax inference below float32: ``quantize(model, "int8")`` and ``quantize(model, "bf16")``.

* int8: each of the encoder's ``nnx.Linear`` layers is replaced by an int8 layer holding an int8 kernel with one
  scale per output channel (absmax / 127); at each call the activations are quantized per row (absmax over the
  hidden axis), multiplied by ``jax.lax.dot_general(..., preferred_element_type=int32)`` and rescaled in
  float32: the same scheme as Keras' ``Dense.quantize("int8")`` in ``xlmr.tf.quantize``. Under ``jax.jit`` XLA
  CPU compiles the int8 dot to VNNI code; measured 0.8x the float32 matmul time on an AVX512-VNNI Xeon.
* bf16: every module's compute ``dtype`` set to bfloat16 (what ``dtype=jnp.bfloat16`` at construction does):
  parameters stay float32 and are cast per op, softmax and LayerNorm statistics stay float32. Logits come out in
  bfloat16.

Embeddings, LayerNorm, the pooler, the task heads and the LM head decoder stay float32 under int8. A model whose
dropout is active (``model.train()``) is refused. Where the mode was measured slower than float32 on a CPU like
this one, a warning says so once (``xlmr.common.quantization``).

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaForMaskedLM
    >>> from xlmr.flax.quantize import quantize, quantized_layers
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = quantize(XLMRobertaForMaskedLM(config, seed=0), "int8")
    >>> len(quantized_layers(model))
    12
    >>> tuple(model(input_ids=np.array([[0, 5, 6, 2]])).logits.shape)
    (1, 4, 100)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xlmr.common.quantization import check_mode, encoder_projections, check_quantizable, warn_if_slower

def quantize(model: Any, mode: str) -> Any:
    """``model`` (an xlmr.flax model in eval mode) made ready for ``mode`` inference in place, and returned."""
    mode = check_mode(mode)
    training = any(not m.deterministic for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Dropout))
    check_quantizable(type(model).__name__, training, getattr(model, "quantization", None))
    if mode == "bf16":
        for _, module in nnx.iter_modules(model):
            if hasattr(module, "dtype"):
                module.dtype = jnp.dtype(jnp.bfloat16)
    else:
        for path, layer in quantized_layers(model).items():
            parent, _, name = path.rpartition(".")
            setattr(_find(_encoder(model), parent), name, _Int8Linear(layer))
    model.quantization = mode
    warn_if_slower("flax", mode)
    return model


def quantized_layers(model: Any) -> dict[str, Any]:
    """{path inside the encoder: layer} of the encoder projections ``quantize(model, "int8")`` replaces."""
    return encoder_projections(_encoder(model).layer)


def _encoder(model: Any) -> Any:
    return getattr(model, "roberta", model).encoder


def _find(module: Any, path: str) -> Any:
    """The module at a dotted ``path`` (numbers index nnx.List layers), e.g. ``layer.0.attention.self``."""
    for name in path.split("."):
        module = module[int(name)] if name.isdigit() else getattr(module, name)
    return module


class _Int8(nnx.Variable):
    """A quantized kernel or its scales: not an ``nnx.Param``, so optimizers and ``canonical_state`` skip it."""


def _absmax_int8(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """(int8 values, float32 scale) with x ~ values * scale, one scale per slice along ``axis``."""
    scale = jnp.maximum(jnp.max(jnp.abs(x), axis=axis, keepdims=True), 1e-12) / 127.0
    return jnp.clip(jnp.round(x / scale), -127, 127).astype(jnp.int8), scale.astype(jnp.float32)


class _Int8Linear(nnx.Module):
    """An ``nnx.Linear``'s int8 replacement: per-output-channel int8 kernel, per-row int8 activations."""

    def __init__(self, layer: nnx.Linear):
        kernel, scale = _absmax_int8(jnp.asarray(layer.kernel[...], jnp.float32), axis=0)  # (in, out), (1, out)
        self.kernel, self.scale = _Int8(kernel), _Int8(scale)
        self.bias = layer.bias
        self.dtype = layer.dtype or jnp.float32

    def __call__(self, x: jax.Array) -> jax.Array:
        values, row_scale = _absmax_int8(x.astype(jnp.float32), axis=-1)
        y = jax.lax.dot_general(values, self.kernel[...], (((x.ndim - 1,), (0,)), ((), ())),
                                preferred_element_type=jnp.int32)
        y = y.astype(jnp.float32) * (row_scale * self.scale[...])
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)
