"""``generate``: greedy or sampled continuation of a prompt with XLMRobertaForCausalLM and its key/value cache.

The loop, the stopping rule and the sampling are ``xlmr.common.tasks.inference.generate_ids`` (numpy, shared by
the three backends); this module only runs the model: the prompt once, then one token per step on the cache,
each through a ``tf.function`` traced once per model (None batch and length dimensions).

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForCausalLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64, is_decoder=True)
    >>> model = XLMRobertaForCausalLM(config, seed=0)
    >>> out = generate(model, np.array([[0, 5, 6]]), max_new_tokens=4, eos_token_id=-1)
    >>> tuple(out.shape), out.numpy()[:, :3].tolist()
    ((1, 7), [[0, 5, 6]])
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import tensorflow as tf

from xlmr.common.tasks.inference import generate_ids

# model -> {"prompt" | "step": tf.function}; the functions hold the model weakly, so a model can still be freed
_FUNCTIONS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _host(x: Any) -> Any:
    return x.numpy() if isinstance(x, tf.Tensor) else x


def _function(model: Any, kind: str, past: Any = None) -> Any:
    """The cached tf.function running ``model`` on the prompt (``kind="prompt"``) or on one step with ``past``."""
    functions = _FUNCTIONS.setdefault(model, {})
    if kind not in functions:
        ref = weakref.ref(model)
        ids = tf.TensorSpec([None, None], tf.int32)
        signature = [ids, ids, ids]
        if kind == "step":
            signature.append(tf.nest.map_structure(
                lambda t: tf.TensorSpec([None, t.shape[1], None, t.shape[3]], t.dtype), past))

        def run(input_ids, attention_mask, position_ids, past_key_values=None):
            out = ref()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        past_key_values=past_key_values, use_cache=True, return_dict=True, training=False)
            return tf.cast(out.logits[:, -1], tf.float32), out.past_key_values

        functions[kind] = tf.function(run, input_signature=signature)
    return functions[kind]


def generate(model: Any, input_ids: Any, attention_mask: Any = None, max_new_tokens: int = 20,
             do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int | None = None, eos_token_id: int | None = None, pad_token_id: int | None = None
             ) -> tf.Tensor:
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
    past = None

    def forward(ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        nonlocal past
        tensors = [tf.constant(a, tf.int32) for a in (ids, mask, positions)]
        if past is None:
            logits, past = _function(model, "prompt")(*tensors)
        else:
            logits, past = _function(model, "step", past)(*tensors, past)
        return logits.numpy()

    ids = generate_ids(forward, _host(input_ids), _host(attention_mask), model.config, max_new_tokens, do_sample,
                       temperature, top_k, top_p, seed, eos_token_id, pad_token_id)
    return tf.constant(ids)
