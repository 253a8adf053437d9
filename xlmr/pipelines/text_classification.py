"""``text-classification`` (alias ``sentiment-analysis``): a label and score per text or text pair.

Example:
    >>> import xlmr
    >>> classify = xlmr.pipeline("text-classification", backend="pt")   # default checkpoint: a new 2-label head
    >>> [sorted(r) for r in classify("Everyone has the right to life.")]
    [['label', 'score']]
    >>> len(classify({"text": "a", "text_pair": "b"}, top_k=None))
    2
"""

from __future__ import annotations

from typing import Any

from xlmr.common.tasks.inference import check_positive, classification_function, classification_scores, ranked_labels
from xlmr.pipelines.base import Pipeline, as_batch

_LEGACY = object()  # top_k not given: HF's legacy shape, the best label only


class TextClassificationPipeline(Pipeline):
    """HF's output shapes: without ``top_k`` a text gives ``[{"label", "score"}]``, a pair dict that dict, and a
    list of inputs one dict each; with ``top_k`` (None for all labels) each text gives a list, best first. ``function_to_apply`` is
    none, softmax or sigmoid; by default sigmoid for multi-label or single-output models, else softmax."""

    task = "text-classification"
    architecture = "XLMRobertaForSequenceClassification"
    defaults = {"top_k": _LEGACY, "function_to_apply": None}

    def check(self, settings: dict[str, Any]) -> None:
        if settings["top_k"] is not _LEGACY:
            check_positive("top_k", settings["top_k"], allow_none=True)
        classification_function(settings["function_to_apply"], None, 2)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        items, batched = as_batch(inputs, "inputs", (str, dict))
        texts, pairs = [], []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                extra = set(item) - {"text", "text_pair"}
                if "text" not in item or extra:
                    raise ValueError(f"inputs[{i}] must be a dict with keys text and optional text_pair, got keys "
                                     f"{sorted(item)}")
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            else:
                texts.append(item)
                pairs.append(None)
        ids: list[list[int] | None] = [None] * len(items)
        singles = [i for i, p in enumerate(pairs) if p is None]
        doubles = [i for i, p in enumerate(pairs) if p is not None]
        for group, second in ((singles, None), (doubles, [pairs[i] for i in doubles])):
            for i, seq in zip(group, self.encode([texts[i] for i in group], second)):
                ids[i] = seq
        function = classification_function(settings["function_to_apply"], self.config.problem_type,
                                           self.config.num_labels)
        top_k, legacy = settings["top_k"], settings["top_k"] is _LEGACY
        results = []
        for out in self.run(ids, ["logits"]):
            scores = classification_scores(out["logits"], function)
            ranked = ranked_labels(scores, self.config.id2label, 1 if legacy else top_k)
            results.append(ranked[0] if legacy else ranked)
        if batched:
            return results
        return [results[0]] if legacy and isinstance(inputs, str) else results[0]
