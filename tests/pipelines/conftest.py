"""Fixtures of the pipeline tests: tiny checkpoints of every task class, written by HF transformers 4.57.6 with
the test tokenizer, so that our pipelines (every backend) and HF's own pipelines read the same files."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

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


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """task -> folder with HF's model.safetensors, config.json and the tokenizer files."""
    import torch
    import transformers

    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

    tokenizer = XLMRobertaTokenizerFast(os.path.join(FIXTURES, "sentencepiece.bpe.model"),
                                        model_max_length=MAX_LENGTH)
    folders = {}
    for i, (task, (architecture, extra)) in enumerate(ARCHITECTURES.items()):
        folder = str(tmp_path_factory.mktemp(task))
        torch.manual_seed(i)
        config = transformers.XLMRobertaConfig(**TINY, **extra)
        getattr(transformers, architecture)(config).eval().save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[task] = folder
    return folders


@pytest.fixture(scope="session")
def hf_tokenizer(checkpoints):
    import transformers

    return transformers.XLMRobertaTokenizerFast.from_pretrained(checkpoints["fill-mask"])
