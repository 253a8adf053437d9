"""Fixtures of the pipeline tests: tiny checkpoints of every task class, written by HF transformers 4.57.6 with
the test tokenizer, so that our pipelines (every backend) and HF's own pipelines read the same files."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from pipeline_support import ARCHITECTURES, FIXTURES, MAX_LENGTH, TINY  # noqa: E402


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
