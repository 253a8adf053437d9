"""``feature-extraction``: sentence embeddings (mean or first-token pooling, optionally unit length), or every
token's hidden state as HF's pipeline gives them.

Example:
    >>> import xlmr
    >>> embed = xlmr.pipeline("feature-extraction", backend="pt", normalize=True)
    >>> vectors = embed(["Everyone has the right to life.", "Tout individu a droit à la vie."])
    >>> len(vectors), len(vectors[0]), round(sum(v * v for v in vectors[0]), 6)
    (2, 64, 1.0)
"""

from __future__ import annotations

from typing import Any

from xlmr.common.tasks.inference import POOLING, check_choice, pool
from xlmr.pipelines.base import Pipeline, as_batch


class FeatureExtractionPipeline(Pipeline):
    """``pooling="mean"`` (the default, as sentence-transformers' XLM-R models) averages the last hidden states
    over the text's tokens, ``"cls"`` takes the first; ``normalize=True`` scales to unit length; ``pooling=None``
    returns HF's raw features, ``[[token vector, ...]]`` per text. Texts are truncated to ``max_length``."""

    task = "feature-extraction"
    architecture = "XLMRobertaModel"
    defaults = {"pooling": "mean", "normalize": False}

    def check(self, settings: dict[str, Any]) -> None:
        if settings["pooling"] is not None:
            check_choice("pooling", settings["pooling"], POOLING)
        if not isinstance(settings["normalize"], bool):
            raise ValueError(f"normalize={settings['normalize']!r} must be True or False")

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        texts, batched = as_batch(inputs, "inputs", str)
        results = []
        for out in self.run(self.encode(texts), ["last_hidden_state"]):
            vectors = pool(out["last_hidden_state"], settings["pooling"], settings["normalize"]).tolist()
            results.append([vectors] if settings["pooling"] is None else vectors)
        return results if batched else results[0]
