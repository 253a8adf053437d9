"""Helpers of the task tests: a tiny checkpoint with the default tokenizer, and small slices of the committed task
datasets (tests never read ../shared)."""

from __future__ import annotations

import itertools
import json
import os

from xlmr.backends import installed_backends
from xlmr.common.checkpoint import save_pretrained
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.init import initial_weights
from xlmr.common.weights import parameter_shapes

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
DATA = os.path.join(ROOT, "tools", "data", "tasks")
BACKENDS = installed_backends()


def make_tiny_checkpoint(folder: str, seed: int = 0) -> str:
    """A randomly initialised 2-layer, 32-wide MLM checkpoint over the default checkpoint's 8002-piece
    tokenizer, with a 128-token window."""
    from xlmr import XLMRobertaTokenizerFast

    config = XLMRobertaConfig(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37, max_position_embeddings=130)
    architecture = "XLMRobertaForMaskedLM"
    save_pretrained(folder, config, initial_weights(parameter_shapes(config, architecture), config, seed),
                    architecture)
    XLMRobertaTokenizerFast.from_pretrained(DEFAULT).save_pretrained(folder)
    return folder


def subset(tmp_path, task: str, split: str, count: int, name: str | None = None) -> str:
    """The first ``count`` records of a committed dataset, as a file under ``tmp_path``."""
    with open(os.path.join(DATA, task, f"{split}.jsonl"), encoding="utf-8") as f:
        lines = list(itertools.islice(f, count))
    path = os.path.join(str(tmp_path), name or f"{task}-{split}-{count}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return path


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
