"""Framework-free data processing for the six fine-tuning tasks: records, features, batches, schedule, metrics.

Each backend contributes only its training step (``xlmr/{pt,tf,flax}/training.py``); everything here is numpy and
the tokenizer, shared by all three so that they see the same features, the same batches in the same order and
the same learning rate at every step.

Example:
    >>> from xlmr.common.tasks import TASKS, ARCHITECTURES
    >>> ARCHITECTURES["token-classification"]
    'XLMRobertaForTokenClassification'
    >>> len(TASKS)
    6
"""

from __future__ import annotations

TASKS = ("text-classification", "token-classification", "question-answering", "multiple-choice", "masked-lm",
         "causal-lm")

# The HF class each task fine-tunes.
ARCHITECTURES = {
    "text-classification": "XLMRobertaForSequenceClassification",
    "token-classification": "XLMRobertaForTokenClassification",
    "question-answering": "XLMRobertaForQuestionAnswering",
    "multiple-choice": "XLMRobertaForMultipleChoice",
    "masked-lm": "XLMRobertaForMaskedLM",
    "causal-lm": "XLMRobertaForCausalLM",
}


def check_task(task: str) -> str:
    """Return ``task`` or raise ValueError naming the known tasks."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return task
