"""Shared constants of the pipeline tests (no tests here): the tiny configs of every task class and the texts.

Kept out of conftest.py so that test modules can import them by a name no other test folder uses.
"""

from __future__ import annotations

import json
import os

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
MAX_LENGTH = 38  # positions 40 - padding_idx 1 - 1: short, so that ordinary sentences need several windows
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# Shared with HF's classes: initializer_range 0.2 gives decisive logits, so labels do not hinge on float noise.
TINY = dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=MAX_LENGTH + 2, initializer_range=0.2)
ARCHITECTURES = {
    "fill-mask": ("XLMRobertaForMaskedLM", {}),
    "text-classification": ("XLMRobertaForSequenceClassification",
                            {"id2label": {0: "negative", 1: "neutral", 2: "positive"}}),
    "token-classification": ("XLMRobertaForTokenClassification",
                             {"id2label": dict(enumerate(NER_LABELS))}),
    "question-answering": ("XLMRobertaForQuestionAnswering", {}),
    "multiple-choice": ("XLMRobertaForMultipleChoice", {}),
    "feature-extraction": ("XLMRobertaModel", {}),
    "text-generation": ("XLMRobertaForCausalLM", {"is_decoder": True}),
}


def texts() -> list[str]:
    with open(os.path.join(FIXTURES, "texts.json"), encoding="utf-8") as f:
        return [r["text"] for r in json.load(f)]
