"""``generate``: greedy or sampled continuation of a prompt with XLMRobertaForCausalLM and its key/value cache.

The loop, the stopping rule and the sampling are ``xlmr.common.tasks.inference.generate_ids`` (numpy, shared by
the three backends); this module only runs the model: the prompt once, then one token per step, on the
fixed-size cache of ``model.init_cache(batch, prompt length + max_new_tokens)`` under ``jax.jit``, so a batch
shape compiles twice (prompt and step) whatever the number of steps.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaForCausalLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64, is_decoder=True)
    >>> model = XLMRobertaForCausalLM(config)
    >>> out = generate(model, np.array([[0, 5, 6]]), max_new_tokens=4, eos_token_id=-1)
    >>> out.shape, np.asarray(out)[:, :3].tolist()
    ((1, 7), [[0, 5, 6]])
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlmr.common.tasks.inference import check_prompt, generate_ids


def _host(x: Any) -> Any:
    return np.asarray(x) if isinstance(x, jax.Array) else x


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _forward(graphdef: Any, params: Any, rest: Any, ids: jax.Array, mask: jax.Array, positions: jax.Array,
             cache: Any) -> tuple[jax.Array, Any]:
    # The model goes in as a pure pytree (nnx.split): jax.jit's dispatch is cheaper per step than nnx.jit's.
    model = nnx.merge(graphdef, params, rest)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                return_dict=True, deterministic=True)
    return out.logits[:, -1].astype(jnp.float32), out.past_key_values


def generate(model: Any, input_ids: Any, attention_mask: Any = None, max_new_tokens: int = 20,
             do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int | None = None, eos_token_id: int | None = None, pad_token_id: int | None = None
             ) -> jax.Array:
    """The prompt ``input_ids`` (batch, length; left-padded, with ``attention_mask``, for mixed lengths) and up
    to ``max_new_tokens`` new tokens per row, as a (batch, length + generated) int32 array.

    Greedy by default; ``do_sample`` draws with ``temperature``, ``top_k`` and ``top_p`` from a numpy Generator
    seeded with ``seed``. A row stops at ``eos_token_id`` (config's by default) and is padded with
    ``pad_token_id`` afterwards. Positions count each row's real tokens, as the model's own forward does, so a
    step's logits are those of ``model(prompt + generated)`` at its last token.
    """
    if not model.config.is_decoder:
        raise ValueError("generate needs config.is_decoder=True (load with is_decoder=True): an encoder sees the "
                         "tokens to its right")
    prompt = _host(input_ids)
    batch, length = check_prompt(prompt, _host(attention_mask), model.config.vocab_size)[0].shape
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    slots = length + max_new_tokens if isinstance(max_new_tokens, int) else length
    cache = None

    def forward(ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        nonlocal cache
        if cache is None:
            cache = model.init_cache(batch, slots)
        # A KVCache's mask covers all its slots; those not yet written are hidden by the causal mask.
        full = np.zeros((batch, slots), np.int32)
        full[:, :mask.shape[1]] = mask
        logits, cache = _forward(graphdef, params, rest, jnp.asarray(ids, jnp.int32), jnp.asarray(full),
                                 jnp.asarray(positions, jnp.int32), cache)
        return np.asarray(logits)

    ids = generate_ids(forward, prompt, _host(attention_mask), model.config, max_new_tokens, do_sample,
                       temperature, top_k, top_p, seed, eos_token_id, pad_token_id)
    return jnp.asarray(ids)
