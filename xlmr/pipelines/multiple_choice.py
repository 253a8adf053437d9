"""``multiple-choice``: which of several candidate continuations fits a prompt.

Example:
    >>> import xlmr
    >>> choose = xlmr.pipeline("multiple-choice", backend="pt")   # default checkpoint: a new choice head
    >>> out = choose({"prompt": "Everyone has the right to", "choices": ["life.", "blue."]})
    >>> sorted(out), len(out["scores"]), round(sum(out["scores"]), 6)
    (['label', 'scores'], 2, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlmr.common.tasks.inference import softmax
from xlmr.pipelines.base import Pipeline, as_batch


class MultipleChoicePipeline(Pipeline):
    """Each (prompt, choice) pair is scored on its own, as the model does; the output is the chosen index and
    the softmax over the choices: ``{"label": i, "scores": [...]}`` (HF has no pipeline for this task)."""

    task = "multiple-choice"
    architecture = "XLMRobertaForMultipleChoice"
    defaults: dict[str, Any] = {}

    def __call__(self, inputs: dict | list[dict], **kwargs: Any) -> Any:
        self.settings(**kwargs)
        items, batched = as_batch(inputs, "inputs", dict)
        prompts, choices, owner = [], [], []
        for i, item in enumerate(items):
            options = item.get("choices")
            if not isinstance(item.get("prompt"), str) or not isinstance(options, (list, tuple)) or not options \
                    or not all(isinstance(c, str) for c in options):
                raise ValueError(f"inputs[{i}] must be {{'prompt': str, 'choices': [str, ...]}} with at least one "
                                 f"choice, got {item!r}"[:200])
            prompts += [item["prompt"]] * len(options)
            choices += list(options)
            owner += [i] * len(options)
        logits = np.array([out["logits"] for out in self.run(self.encode(prompts, choices), ["logits"],
                                                              choices=True)])
        owner = np.array(owner)
        results = []
        for i in range(len(items)):
            scores = softmax(logits[owner == i])
            results.append({"label": int(scores.argmax()), "scores": [float(s) for s in scores]})
        return results if batched else results[0]
