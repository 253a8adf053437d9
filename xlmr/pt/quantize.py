"""PyTorch inference below float32: ``quantize(model, "int8")`` and ``quantize(model, "bf16")``.

* int8: ``torch.ao.quantization.quantize_dynamic`` on the encoder's ``nn.Linear`` layers, with per-output-channel
  int8 weights (``per_channel_dynamic_qconfig``) and activations quantized at each call (FBGEMM/oneDNN x86
  kernels, VNNI where the CPU has it). torchao, the successor PyTorch points to, is not a dependency; torch.ao's
  eager dynamic quantization still works in torch 2.13 and measured 2x the float32 matmul speed on an AVX512-VNNI
  Xeon, but torch marks it deprecated: its DeprecationWarning is silenced here, and the day it is gone this is
  the one module to port. Differences from tf/flax: activations get one scale per call (asymmetric uint8 over
  the whole tensor) rather than one per row. The quantized layers are modules, not ``nn.Linear``:
  ``xlmr.pt.fast_linear`` calls them as modules.
* bf16: the parameters cast to bfloat16 (HF's ``torch_dtype=torch.bfloat16``); matmuls go through oneDNN with
  packed bf16 weights (``fast_linear``), softmax runs in float32 (``layers.SelfAttention``) and PyTorch's CPU
  LayerNorm accumulates its statistics in float32. Logits come out in bfloat16.

Embeddings, LayerNorm, the pooler, the task heads and the LM head decoder stay float32 under int8. Parameters lose
``requires_grad``; a model in training mode is refused. Where the mode was measured slower than float32 on a CPU
like this one, a warning says so once (``xlmr.common.quantization``).

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt import XLMRobertaForMaskedLM
    >>> from xlmr.pt.quantize import quantize, quantized_layers
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = quantize(XLMRobertaForMaskedLM(config, seed=0).eval(), "int8")
    >>> len(quantized_layers(model))
    12
    >>> tuple(model(torch.tensor([[0, 5, 6, 2]])).logits.shape)
    (1, 4, 100)
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from xlmr.common.quantization import check_mode, encoder_projections, check_quantizable, warn_if_slower

def quantize(model: Any, mode: str) -> Any:
    """``model`` (an xlmr.pt model in eval mode) made ready for ``mode`` inference in place, and returned."""
    mode = check_mode(mode)
    check_quantizable(type(model).__name__, model.training, getattr(model, "quantization", None))
    if mode == "bf16":
        model.to(torch.bfloat16)
    else:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        encoder = _encoder(model)
        with warnings.catch_warnings():  # torch.ao's deprecation notice: see the module docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
            quantize_dynamic(encoder, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    model.requires_grad_(False)
    model.quantization = mode
    warn_if_slower("pt", mode)
    return model


def quantized_layers(model: Any) -> dict[str, Any]:
    """{path inside the encoder: layer} of the encoder projections ``quantize(model, "int8")`` replaces."""
    return encoder_projections(_encoder(model).layer)


def _encoder(model: Any) -> Any:
    return getattr(model, "roberta", model).encoder

