"""``xlmr.pipeline(task, model=..., backend=...)``: Hugging Face's pipeline tasks on any of the three backends.

Tasks (HF's names and output shapes): fill-mask, text-classification (alias sentiment-analysis),
token-classification (alias ner), question-answering, multiple-choice, feature-extraction, text-generation.
Everything after the forward pass is framework-free (``xlmr.common.tasks.inference``), so the same inputs give
the same labels, spans and tokens in every backend.

Example:
    >>> import xlmr
    >>> fill = xlmr.pipeline("fill-mask", backend="pt", top_k=1)    # the embedded default checkpoint
    >>> [sorted(c) for c in fill("Everyone has the right to <mask>.")]
    [['score', 'sequence', 'token', 'token_str']]
"""

from __future__ import annotations

import importlib
from typing import Any

from xlmr.pipelines.base import Pipeline

# task -> (module, class); modules load on use
TASKS = {
    "fill-mask": ("fill_mask", "FillMaskPipeline"),
    "text-classification": ("text_classification", "TextClassificationPipeline"),
    "token-classification": ("token_classification", "TokenClassificationPipeline"),
    "question-answering": ("question_answering", "QuestionAnsweringPipeline"),
    "multiple-choice": ("multiple_choice", "MultipleChoicePipeline"),
    "feature-extraction": ("feature_extraction", "FeatureExtractionPipeline"),
    "text-generation": ("text_generation", "TextGenerationPipeline"),
}
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def pipeline_class(task: str) -> type[Pipeline]:
    """The class that runs ``task`` (an HF task name or alias)."""
    name = ALIASES.get(task, task)
    if name not in TASKS:
        known = ", ".join(list(TASKS) + list(ALIASES))
        raise ValueError(f"unknown task {task!r}; choose from {known}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(f"xlmr.pipelines.{module}"), cls)


def pipeline(task: str, model: Any = None, backend: str | None = None, tokenizer: Any = None,
             max_length: int | None = None, **task_defaults: Any) -> Pipeline:
    """A callable ``pipe(inputs, **kwargs)`` for ``task``.

    ``model``: a checkpoint folder (loaded with the task's class in ``backend``; default the embedded checkpoint)
    or a loaded xlmr model (its backend is used). ``backend``: "pt", "tf" or "flax" (default: the first
    installed). ``tokenizer``: a folder or an ``XLMRobertaTokenizerFast`` (default: the model's folder).
    ``max_length``: tokens per window (default: what the model and tokenizer allow). Other keyword arguments
    become the task's defaults (``top_k=3``, ``aggregation_strategy="simple"``, ...).
    """
    return pipeline_class(task)(model=model, backend=backend, tokenizer=tokenizer, max_length=max_length,
                                **task_defaults)


__all__ = ["ALIASES", "TASKS", "Pipeline", "pipeline", "pipeline_class"]
