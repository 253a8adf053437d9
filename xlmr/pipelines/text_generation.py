"""``text-generation``: continue a prompt with a causal LM (greedy or sampled, with the key/value cache).

Example:
    >>> import xlmr
    >>> write = xlmr.pipeline("text-generation", backend="pt")   # default checkpoint loaded as a decoder
    >>> out = write("Everyone has the right", max_new_tokens=5)
    >>> sorted(out[0]), out[0]["generated_text"].startswith("Everyone has the right")
    (['generated_text'], True)
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from xlmr import backends
from xlmr.common import batching
from xlmr.common.tasks.inference import check_generation_arguments
from xlmr.pipelines.base import Pipeline, as_batch


class TextGenerationPipeline(Pipeline):
    """A prompt is ``<s>`` and its pieces (no ``</s>``: the text goes on); prompts of similar length run as one
    left-padded batch through the backend's ``generate``. Output per prompt: ``[{"generated_text": ...}]``, the
    prompt and its continuation (only the continuation with ``return_full_text=False``). Sampling draws on the
    host from a numpy Generator seeded with ``seed``, so the same inputs and seed give the same text in every
    backend. Checkpoints load with ``is_decoder=True``, which a causal LM needs."""

    task = "text-generation"
    architecture = "XLMRobertaForCausalLM"
    config_overrides = {"is_decoder": True}
    defaults = {"max_new_tokens": 20, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                "seed": None, "return_full_text": True}

    def check(self, settings: dict[str, Any]) -> None:
        check_generation_arguments(settings["max_new_tokens"], settings["do_sample"], settings["temperature"],
                                   settings["top_k"], settings["top_p"])
        seed = settings["seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed={seed!r} must be an integer >= 0 or None")
        if not isinstance(settings["return_full_text"], bool):
            raise ValueError(f"return_full_text={settings['return_full_text']!r} must be True or False")

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        texts, batched = as_batch(inputs, "inputs", str)
        full_text = settings.pop("return_full_text")
        prompts = [[self.tokenizer.bos_token_id] + self.tokenizer(t, add_special_tokens=False)["input_ids"]
                   for t in texts]
        generate = importlib.import_module(f"xlmr.{self.backend}.generation").generate
        pad = self.config.pad_token_id
        results: list[Any] = [None] * len(texts)
        for bucket in batching.plan_buckets(prompts, pad, pad_to_multiple_of=1):
            # plan_buckets pads on the right; a decoder continues from the last column, so move padding left
            ids, mask = bucket.input_ids.copy(), bucket.attention_mask.copy()
            for row, index in enumerate(bucket.indices):
                n = len(prompts[index])
                ids[row] = np.roll(ids[row], ids.shape[1] - n)
                mask[row] = np.roll(mask[row], ids.shape[1] - n)
            out = backends.to_numpy(self.backend, generate(self.model, ids, mask, **settings))
            for row, index in enumerate(bucket.indices):
                prompt = self.tokenizer.decode(prompts[index], skip_special_tokens=True)
                sequence = self.tokenizer.decode(out[row], skip_special_tokens=True)
                continuation = sequence[len(prompt):]
                results[index] = [{"generated_text": texts[index] + continuation if full_text else continuation}]
        return results if batched else results[0]
