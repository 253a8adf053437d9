"""The suite's shared test data: the tiny config, HF 4.57.6 reference models, and numpy batches.

Test modules import these names (``from reference import TINY``); ``conftest.py`` builds its fixtures on them.
Nothing here imports a framework at import time, so a single-backend install can import it: ``hf_model`` imports
torch and transformers when called, and a caller that needs them skips first (``pytest.importorskip``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from xlmr.common.config import XLMRobertaConfig  # noqa: E402

CLASSES = ("XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification",
           "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification", "XLMRobertaForQuestionAnswering")
POSITION_TYPES = ("absolute", "relative_key", "relative_key_query")
ATOL = 1e-5
# The one tiny shape of the suite: two layers, 32 wide, 40 positions (38 tokens), two token types. A test that
# needs another value overrides that field only ({**TINY, "vocab_size": 100}).
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40, type_vocab_size=2)


def tiny_config(name: str | None = None, **overrides) -> XLMRobertaConfig:
    """TINY with three labels; question answering gets its two (start and end)."""
    labels = 2 if name == "XLMRobertaForQuestionAnswering" else 3
    return XLMRobertaConfig(**{**TINY, "num_labels": labels, **overrides})


def hf_config(config: XLMRobertaConfig, **kwargs):
    """``config`` as HF's ``transformers.XLMRobertaConfig`` (HF's keyword arguments in ``kwargs``)."""
    import transformers

    data = config.to_dict()
    data.pop("model_type")
    data.pop("extra", None)
    return transformers.XLMRobertaConfig(**data, **kwargs)


def hf_model(name: str, config: XLMRobertaConfig, seed: int = 0, noise: float = 0.0, **kwargs):
    """HF's PyTorch class ``name`` with HF's own random init from ``seed``, in eval mode.

    ``noise`` > 0 moves every tensor off its init value (biases off 0, LayerNorm off 1), so that a swapped or
    untransposed tensor cannot hide behind zeros and ones."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, name)(hf_config(config, **kwargs))
    if noise:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(noise * torch.randn_like(p))
    return model.eval()


def numpy_batch(config: XLMRobertaConfig, batch_size: int = 3, length: int = 9, seed: int = 0,
                choices: int | None = None) -> dict[str, np.ndarray]:
    """int64 ids with right padding in row 1 and left padding in row 2, their mask, and random token types;
    ``choices`` gives multiple choice's (batch, choices, length)."""
    rng = np.random.default_rng(seed)
    rows = batch_size if choices is None else batch_size * choices
    ids = rng.integers(3, config.vocab_size, (rows, length))
    ids[:, 0] = config.bos_token_id
    ids[1, length - 3:] = config.pad_token_id
    ids[2, :2] = config.pad_token_id
    mask = (ids != config.pad_token_id).astype(np.int64)
    types = rng.integers(0, config.type_vocab_size, (rows, length))
    out = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if choices is not None:
        out = {k: v.reshape(batch_size, choices, length) for k, v in out.items()}
    return out


def labels_for(name: str, config: XLMRobertaConfig, inputs: dict[str, np.ndarray], seed: int = 0) -> dict:
    """Labels of the class's loss for ``inputs`` (HF's argument names); the base model has none."""
    rng = np.random.default_rng(seed + 1)
    ids = inputs["input_ids"]
    batch, length = ids.shape[0], ids.shape[-1]
    if name in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"):
        labels = np.where(inputs["attention_mask"] == 1, ids, -100) if "attention_mask" in inputs else ids.copy()
        return {"labels": labels}
    if name == "XLMRobertaForTokenClassification":
        return {"labels": rng.integers(0, config.num_labels, (batch, length))}
    if name == "XLMRobertaForSequenceClassification":
        return {"labels": rng.integers(0, config.num_labels, (batch,))}
    if name == "XLMRobertaForMultipleChoice":
        return {"labels": rng.integers(0, ids.shape[1], (batch,))}
    if name == "XLMRobertaForQuestionAnswering":
        return {"start_positions": rng.integers(0, length, (batch,)), "end_positions": rng.integers(0, length, (batch,))}
    return {}
