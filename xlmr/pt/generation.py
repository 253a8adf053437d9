"""``generate``: greedy or sampled continuation of a prompt with XLMRobertaForCausalLM and its key/value cache.

The loop, the stopping rule and the sampling are ``xlmr.common.tasks.inference.generate_ids`` (numpy, shared by
the three backends); this module only runs the model: the prompt once, then one token per step on the cache.

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt import XLMRobertaForCausalLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64, is_decoder=True)
    >>> model = XLMRobertaForCausalLM(config, seed=0).eval()
    >>> out = generate(model, torch.tensor([[0, 5, 6]]), max_new_tokens=4, eos_token_id=-1)
    >>> tuple(out.shape), bool((out[:, :3] == torch.tensor([[0, 5, 6]])).all())
    ((1, 7), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xlmr.common.tasks.inference import generate_ids


def _host(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def generate(model: Any, input_ids: Any, attention_mask: Any = None, max_new_tokens: int = 20,
             do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int | None = None, eos_token_id: int | None = None, pad_token_id: int | None = None
             ) -> torch.Tensor:
    """The prompt ``input_ids`` (batch, length; left-padded, with ``attention_mask``, for mixed lengths) and up
    to ``max_new_tokens`` new tokens per row, as a (batch, length + generated) int64 tensor.

    Greedy by default; ``do_sample`` draws with ``temperature``, ``top_k`` and ``top_p`` from a numpy Generator
    seeded with ``seed``. A row stops at ``eos_token_id`` (config's by default) and is padded with
    ``pad_token_id`` afterwards. Positions count each row's real tokens, as the model's own forward does, so a
    step's logits are those of ``model(prompt + generated)`` at its last token.
    """
    if not model.config.is_decoder:
        raise ValueError("generate needs config.is_decoder=True (load with is_decoder=True): an encoder sees the "
                         "tokens to its right")
    device = next(model.parameters()).device
    past = None

    def forward(ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        nonlocal past
        tensors = {k: torch.from_numpy(v).to(device) for k, v in
                   dict(input_ids=ids, attention_mask=mask, position_ids=positions).items()}
        with torch.inference_mode():
            out = model(**tensors, past_key_values=past, use_cache=True, return_dict=True)
        past = out.past_key_values
        return out.logits[:, -1].float().cpu().numpy()

    ids = generate_ids(forward, _host(input_ids), _host(attention_mask), model.config, max_new_tokens, do_sample,
                       temperature, top_k, top_p, seed, eos_token_id, pad_token_id)
    return torch.from_numpy(ids)
