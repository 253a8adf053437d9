"""TensorFlow inference below float32: ``quantize(model, "int8")`` and ``quantize(model, "bf16")``.

* int8: Keras' own ``Dense.quantize("int8")`` on the encoder's Dense layers: int8 kernels with one scale per
  output channel (``AbsMaxQuantizer(axis=0)``), activations quantized per row at each call (absmax over the
  hidden axis), ``tf.matmul(int8, int8, output_type=int32)``, rescaled in float32. TensorFlow's CPU kernel for
  that matmul is slow outside XLA (measured 8.5x the float32 time; ``quantize`` warns once): run the model
  through ``compiled_call`` (``jit_compile=True``), where XLA compiles it to VNNI code.
* bf16: Keras' ``mixed_bfloat16`` policy set on every layer: float32 variables, bfloat16 compute, softmax in
  float32 (``layers.SelfAttention``) and LayerNorm statistics in float32 (Keras upcasts). Logits come out in
  bfloat16.

Embeddings, LayerNorm, the pooler, the task heads and the LM head decoder stay float32 under int8. The cached
XLA functions of ``compiled_call`` are dropped, so the next call traces the quantized layers. Keras layers have no
training mode to refuse (``training=`` is per call); the int8 kernels are not trainable. Where the mode was
measured slower than float32 on a CPU like this one, a warning says so once (``xlmr.common.quantization``).

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForMaskedLM
    >>> from xlmr.tf.quantize import quantize, quantized_layers
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = quantize(XLMRobertaForMaskedLM(config, seed=0), "int8")
    >>> len(quantized_layers(model))
    12
    >>> tuple(model.compiled_call(input_ids=np.array([[0, 5, 6, 2]])).logits.shape)
    (1, 4, 100)
"""

from __future__ import annotations

from typing import Any

from xlmr.common.quantization import TF_EAGER, check_mode, encoder_projections, check_quantizable, warn_if_slower

def quantize(model: Any, mode: str) -> Any:
    """``model`` (an xlmr.tf model) made ready for ``mode`` inference in place, and returned."""
    mode = check_mode(mode)
    check_quantizable(type(model).__name__, False, getattr(model, "quantization", None))
    if not model.built:  # Keras makes the variables at the first call; quantize needs them
        model.build()
    if mode == "bf16":
        for layer in model._flatten_layers(include_self=True):
            layer.dtype_policy = "mixed_bfloat16"
    else:
        for layer in quantized_layers(model).values():
            layer.quantize("int8")
    for layer in model._flatten_layers(include_self=True):
        layer.trainable = False
    if hasattr(model, "_xla"):  # compiled_call's functions traced the float32 layers
        model._xla.functions.clear()
    model.quantization = mode
    warn_if_slower("tf", mode)
    warn_if_slower(TF_EAGER, mode)
    return model


def quantized_layers(model: Any) -> dict[str, Any]:
    """{path inside the encoder: layer} of the encoder projections ``quantize(model, "int8")`` replaces."""
    return encoder_projections(_encoder(model).layer)


def _encoder(model: Any) -> Any:
    return getattr(model, "roberta", model).encoder

