"""Metrics from predictions: what ``predict`` writes (HF pipeline shapes) scored against the gold records.

``finetune`` and ``evaluate`` compute their metrics with ``score`` from the same prediction records that
``predict`` writes, so a user can recompute ``metrics.json`` from ``predict``'s file.

Example:
    >>> from xlmr.common.tasks.records import Dataset, Record
    >>> gold = Dataset("v.jsonl", "multiple-choice", [Record(1, {"prompt": "p", "choices": ["a", "b"], "label": 1})])
    >>> score("multiple-choice", gold, [{"label": 1, "scores": [0.2, 0.8]}], None)
    {'accuracy': 1.0}
    >>> entities_to_tags(["Ich", "bin", "here"], [{"entity_group": "eng", "start": 8, "end": 12}], iob2=True)
    ['O', 'O', 'B-eng']
"""

from __future__ import annotations

from typing import Any, Sequence

from xlmr.common.losses import MULTI_LABEL, REGRESSION
from xlmr.common.tasks import metrics
from xlmr.common.tasks.features import word_index_of_chars
from xlmr.common.tasks.labels import LabelSpace
from xlmr.common.tasks.records import Dataset

MULTI_LABEL_THRESHOLD = 0.5  # a sigmoid score above it means the label is predicted


def entities_to_tags(words: Sequence[str], entities: Sequence[dict[str, Any]], iob2: bool) -> list[str]:
    """Word tags from a token-classification pipeline's grouped entities (offsets into the words joined with
    single spaces): ``B-X`` on an entity's first word and ``I-X`` on the rest (or ``X`` throughout for a tag set
    that is not IOB2), ``O`` outside every entity."""
    _, owner, _ = word_index_of_chars(words)
    tags = ["O"] * len(words)
    for entity in entities:
        label = entity.get("entity_group", entity.get("entity"))
        if iob2 and label[:2] in ("B-", "I-"):
            label = label[2:]
        covered = sorted({int(owner[c]) for c in range(entity["start"], entity["end"]) if c < len(owner)})
        for k, w in enumerate(covered):
            tags[w] = (("B-" if k == 0 else "I-") + label) if iob2 else label
    return tags


def _check_count(dataset: Dataset, predictions: Sequence[Any]) -> None:
    if len(predictions) != len(dataset.records):
        raise ValueError(f"{dataset.path}: {len(dataset.records)} records but {len(predictions)} predictions")


def score(task: str, dataset: Dataset, predictions: Sequence[Any], space: LabelSpace | None) -> dict[str, float]:
    """The task's metrics for ``predictions`` (one per record of ``dataset``, as ``predict`` writes them)."""
    _check_count(dataset, predictions)
    records = [r.fields for r in dataset.records]
    if task == "text-classification":
        gold = [r["label"] for r in records]
        if space is not None and space.kind == REGRESSION:
            return metrics.regression_scores([float(g) for g in gold], [p["score"] for p in predictions])
        if space is not None and space.kind == MULTI_LABEL:
            chosen = [{x["label"] for x in p if x["score"] > MULTI_LABEL_THRESHOLD} for p in predictions]
            return {"micro_f1": metrics.micro_f1_sets([set(g) for g in gold], chosen)}
        predicted = [(p[0] if isinstance(p, list) else p)["label"] for p in predictions]
        gold = [str(g) for g in gold]
        return {"accuracy": metrics.accuracy(gold, predicted), "macro_f1": metrics.macro_f1(gold, predicted)}
    if task == "token-classification":
        iob2 = bool(space and space.iob2)
        predicted = [entities_to_tags(r["tokens"], p, iob2) for r, p in zip(records, predictions)]
        return metrics.entity_scores([r["tags"] for r in records], predicted)
    if task == "question-answering":
        best = [(p[0] if isinstance(p, list) else p)["answer"] for p in predictions]
        return metrics.squad_scores([r["answers"]["text"] for r in records], best)
    if task == "multiple-choice":
        return {"accuracy": metrics.accuracy([r["label"] for r in records], [p["label"] for p in predictions])}
    total = sum(p["loss"] * p["num_tokens"] for p in predictions)
    return metrics.lm_scores(total, sum(p["num_tokens"] for p in predictions))
