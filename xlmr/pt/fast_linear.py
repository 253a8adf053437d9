"""Dense layers for CPU inference through oneDNN with prepacked weights.

``F.linear`` on x86 calls MKL's sgemm, which re-lays out the weight on every call, and adds the bias by first
copying it into every row of the output. oneDNN (``torch.ops.mkldnn._linear_pointwise``) with a weight reordered
once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``) skips both, fuses an exact GELU into
the matmul, and here the query, key and value projections run as one matmul. This is what ``torch.compile``
with ``freezing`` does for linear layers, done eagerly. Same numbers to float rounding: max-abs 0 to 3e-7 on
2-layer test configs, 5e-6 on a base model's hidden states (tests/test_pt_fast_path.py, ``pt_benchmark``).

Measured on a 2-core AVX-512 VM (base shape, 8x128 tokens): both MKL and oneDNN run these matmuls at 300-345
GFLOP/s, close to the FMA peak of two cores, so the gain on an idle machine is small (a few percent over HF);
with another process taking a core, oneDNN holds up better (about 0.6-0.7x HF's time). See the report of
``python -m pt_benchmark``.

The fast path is taken only where it gives the same results and autograd cannot see it: a CPU tensor of
float32 (or bfloat16 where oneDNN supports it), a module in eval mode, gradients off (``torch.no_grad()`` or
``torch.inference_mode()``), oneDNN built in, a weight small enough to be worth a packed copy (``MAX_PACKED``).
Everything else (GPU, training, autograd, tracing, compiling) uses ``F.linear``; a layer that is not an
``nn.Linear`` (a dynamically quantized one, ``xlmr.pt.quantize``) is called as the module it is.
Switch it off with ``xlmr.pt.set_fast_path(False)`` or the environment variable ``XLMR_PT_FAST=0``.

Packed weights are made lazily, at the first inference call, and cached per group of layers; the cache entry
is rebuilt when a weight or bias is changed in place (tensor ``_version``), replaced (``data_ptr``), or cast.
A packed copy costs as much memory as its weights (340 MB for the base encoder).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from xlmr.pt.fast_linear import linear
    >>> layer = nn.Linear(8, 4).eval()
    >>> x = torch.randn(3, 8)
    >>> with torch.no_grad():
    ...     bool(torch.allclose(linear(x, layer), layer(x), atol=1e-6))
    True
"""

from __future__ import annotations

import os
import weakref
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

_enabled = os.environ.get("XLMR_PT_FAST", "1") != "0"


def set_fast_path(enabled: bool) -> None:
    """Turn the oneDNN inference path on or off for every model in this process."""
    global _enabled
    _enabled = bool(enabled)


def fast_path_enabled() -> bool:
    return _enabled


def _supported_dtypes() -> tuple[torch.dtype, ...]:
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return ()
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return (torch.float32, torch.bfloat16)
    return (torch.float32,)


_DTYPES = _supported_dtypes()
# Largest weight (elements) worth a packed copy. A bigger matmul, such as the LM head's 250k-word decoder
# (192M elements), amortises MKL's own packing over its many columns: measured no faster with oneDNN, and a
# packed copy would cost another 768 MB.
MAX_PACKED = 2**24
# Activations oneDNN applies inside the matmul: (post-op, its algorithm argument).
_FUSED = {F.gelu: ("gelu", "none"), F.relu: ("relu", "")}

# First layer of a group -> {ids of the group's layers: (signature of the source tensors, packed weight, bias)}.
_packed: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def usable(x: torch.Tensor, *layers: nn.Linear) -> bool:
    """True when ``layers`` applied to ``x`` may take the oneDNN path."""
    first = layers[0]
    return (_enabled and all(isinstance(layer, nn.Linear) for layer in layers)
            and x.dtype in _DTYPES and x.device.type == "cpu" and not first.training
            and not torch.is_grad_enabled() and all(layer.bias is not None for layer in layers)
            and x.dtype == first.weight.dtype and sum(layer.weight.numel() for layer in layers) <= MAX_PACKED
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _signature(tensors) -> tuple:
    return tuple((t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for t in tensors)


def _pack(layers: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The group's weights concatenated and reordered for oneDNN, with the concatenated bias; cached."""
    sources = [t for layer in layers for t in (layer.weight, layer.bias) if t is not None]
    signature = _signature(sources)
    entries = _packed.setdefault(layers[0], {})
    key = tuple(id(layer) for layer in layers)
    entry = entries.get(key)
    if entry is None or entry[0] != signature:
        weight = torch.cat([layer.weight for layer in layers]) if len(layers) > 1 else layers[0].weight
        biases = [layer.bias for layer in layers]
        bias = None if any(b is None for b in biases) else torch.cat(biases) if len(biases) > 1 else biases[0]
        entry = entries[key] = (signature, torch.ops.mkldnn._reorder_linear_weight(weight.detach()),
                                None if bias is None else bias.detach().clone())
    return entry[1], entry[2]


def linear(x: torch.Tensor, layer: nn.Linear, activation: Callable | None = None) -> torch.Tensor:
    """``activation(layer(x))``; oneDNN with a packed weight (and the activation fused) where ``usable``."""
    if not usable(x, layer):
        y = F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else layer(x)
        return y if activation is None else activation(y)
    weight, bias = _pack((layer,))
    attr, algorithm = _FUSED.get(activation, ("none", ""))
    y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)
    return y if activation is None or activation in _FUSED else activation(y)


def linears(x: torch.Tensor, *layers: nn.Linear) -> tuple[torch.Tensor, ...]:
    """``tuple(layer(x) for layer in layers)``; on the oneDNN path, one matmul with the weights concatenated."""
    if not usable(x, *layers):
        return tuple(F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else layer(x)
                     for layer in layers)
    weight, bias = _pack(layers)
    y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return y.split([layer.out_features for layer in layers], dim=-1)
