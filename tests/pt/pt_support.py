"""PyTorch comparisons for the xlmr.pt tests (no tests here): torch batches, HF's cache layout, nested compare.

The tiny config and HF's reference models are the whole suite's (tests/reference.py, tests/conftest.py) and are
re-exported here for the pt test modules. Every numeric test compares xlmr.pt with Hugging Face transformers
4.57.6's PyTorch classes, built from a seed and handed over through a checkpoint HF writes (``save_pretrained``)
or through ``state_dict``.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import ATOL, CLASSES, POSITION_TYPES, hf_config, hf_model, tiny_config  # noqa: F401

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import xlmr.pt as xpt  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402


def ours_like(name: str, hf, config: XLMRobertaConfig, tmp_path=None):
    """Our class ``name`` holding HF's weights: through HF's checkpoint on disk when ``tmp_path`` is given,
    else through ``load_state_dict(strict=True)``."""
    cls = getattr(xpt, name)
    if tmp_path is not None:
        hf.save_pretrained(tmp_path)
        return cls.from_pretrained(tmp_path)
    model = cls(config, seed=0)
    model.load_state_dict(hf.state_dict(), strict=True)
    return model.eval()


def batch(config: XLMRobertaConfig, batch_size: int = 3, length: int = 9, seed: int = 0, choices: int | None = None):
    """ids with right padding in row 1 and left padding in row 2, their mask, and random token types."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch_size, length) if choices is None else (batch_size * choices, length)
    ids = torch.randint(3, config.vocab_size, shape, generator=g)
    ids[:, 0] = config.bos_token_id
    ids[1, length - 3:] = config.pad_token_id
    ids[2, :2] = config.pad_token_id
    mask = (ids != config.pad_token_id).long()
    types = torch.randint(0, config.type_vocab_size, shape, generator=g)
    if choices is not None:
        ids, mask, types = (t.view(batch_size, choices, length) for t in (ids, mask, types))
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def max_abs(a, b) -> float:
    a, b = (x.detach().float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in (a, b))
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item() if a.numel() else 0.0


def legacy(cache):
    """HF's cache object -> its legacy tuple layout (ours). HF pre-creates empty cross-attention layers, which
    its ``to_legacy_cache`` turns into (key, value, None, None); a cache without cross-attention has pairs."""
    if not hasattr(cache, "to_legacy_cache"):
        return cache
    return tuple(tuple(t for t in layer if t is not None) for layer in cache.to_legacy_cache())


def assert_same(ours, theirs, atol: float = ATOL, path: str = "output"):
    """Recursively compare tensors, tuples and output dicts; fields must match exactly by name."""
    if isinstance(theirs, dict) or hasattr(theirs, "keys"):
        theirs = {k: v for k, v in theirs.items() if v is not None}
        assert set(ours.keys()) == set(theirs.keys()), f"{path}: fields {sorted(ours.keys())} vs {sorted(theirs)}"
        for k in theirs:
            assert_same(ours[k], theirs[k], atol, f"{path}.{k}")
    elif isinstance(theirs, (tuple, list)) or hasattr(theirs, "to_legacy_cache"):
        theirs = legacy(theirs)
        assert isinstance(ours, tuple), f"{path}: {type(ours).__name__} is not a tuple"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items vs {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, atol, f"{path}[{i}]")
    else:
        diff = max_abs(ours, theirs)
        assert diff <= atol, f"{path}: max-abs difference {diff:.3g} > {atol}"
