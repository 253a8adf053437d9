"""Input checks that run before any kernel: the shared ``xlmr.common.inputs`` checks on PyTorch tensors.

A PyTorch model executes eagerly, so every call checks its inputs on their values and raises the shared
ValueError (the same text as xlmr.tf and xlmr.flax). On an accelerator only the minimum and maximum of an id
tensor come back to the host (one reduction); the whole tensor only when one of them is out of range.

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt.checks import check_model_inputs
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> check_model_inputs(config, torch.tensor([[0, 5, 2]]), None, None, None, None, None)
    (1, 3)
    >>> check_model_inputs(config, torch.tensor([[0, 500, 2]]), None, None, None, None, None)
    Traceback (most recent call last):
    ...
    ValueError: input_ids holds 500 at (0, 1), outside [0, 100) set by config.vocab_size=100
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import check_inputs, check_past_key_values


def host_view(t: torch.Tensor | None, high: int | None = None) -> Any:
    """``t`` for ``check_inputs``, as numpy, without copying a device tensor to the host.

    With ``high`` None only the shape matters: a stand-in of that shape comes back (a zero-stride view). CPU tensors are
    viewed in place. On an accelerator only the minimum and maximum come back (one reduction); the tensor is
    copied only when one of them is outside [0, high), so that the error message can name the index.
    """
    if t is None:
        return None
    if high is None:
        return np.broadcast_to(np.zeros((), np.int64), tuple(t.shape))
    if t.device.type == "cpu":
        return t.detach().numpy()
    low, top = torch.stack(torch.aminmax(t.detach())).tolist() if t.numel() else (0, 0)
    if low < 0 or top >= high or t.is_floating_point():
        return t.detach().cpu().numpy()
    return np.broadcast_to(np.asarray(low, np.int64), tuple(t.shape))


def _mask_view(t: torch.Tensor | None) -> Any:
    """An attention mask for ``check_inputs``, as ``host_view`` does for ids: on an accelerator the tensor comes
    back only when it holds a value other than 0 and 1 (one reduction), else a stand-in of zeros."""
    if t is None:
        return None
    if t.device.type == "cpu" and t.dtype != torch.bfloat16:  # numpy has no bfloat16
        return t.detach().numpy()
    t = t.detach()
    if t.dtype == torch.bool or not ((t != 0) & (t != 1)).any():
        return np.broadcast_to(np.zeros((), np.int64), tuple(t.shape))
    return t.float().cpu().numpy()


# nn.Embedding takes int32 and int64 indices only; ids of any other integer dtype (checked first) are widened.
_INDEX_DTYPES = (torch.int32, torch.int64)


def index_tensors(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Ids, token types or positions of any integer dtype as int64 (int32 and int64 pass unchanged)."""
    return tuple(t if t is None or t.dtype in _INDEX_DTYPES else t.long() for t in tensors)


def past_length_of(past_key_values: Any) -> int:
    """Number of cached positions in HF's legacy cache (per layer: key, value[, cross key, cross value])."""
    return 0 if past_key_values is None else past_key_values[0][0].shape[2]


def check_model_inputs(config: XLMRobertaConfig, input_ids: Any, attention_mask: Any, token_type_ids: Any,
                       position_ids: Any, inputs_embeds: Any, past_key_values: Any) -> tuple[int, int]:
    """Raise the common ValueErrors (ids out of range, too long, mismatched shapes, empty inputs, a mask value
    other than 0 and 1, a cache of the wrong layers or shapes) before any kernel runs; returns (batch, length)."""
    check_past_key_values(config, past_key_values, input_ids if input_ids is not None else inputs_embeds)
    for name, t in (("input_ids", input_ids), ("token_type_ids", token_type_ids), ("position_ids", position_ids)):
        if t is not None and t.dtype == torch.bfloat16:  # numpy has no bfloat16 to carry the dtype's name
            raise ValueError(f"{name} must hold integers, got dtype bfloat16")
    return check_inputs(
        config, host_view(input_ids, config.vocab_size), _mask_view(attention_mask),
        host_view(token_type_ids, config.type_vocab_size), host_view(position_ids, config.max_position_embeddings),
        None if inputs_embeds is None else tuple(inputs_embeds.shape), past_length_of(past_key_values))
