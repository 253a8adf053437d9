"""Flax's long-sequence attention (``tiled_attention``, one (batch, head) score matrix at a time) gives the numbers
of the batched form and of the PyTorch backend, at 1e-5, and is taken exactly when it should be."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402

import xlmr.flax.layers as layers  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.constants import TOLERANCE_FP32  # noqa: E402

LENGTH = 260  # past TILED_ATTENTION_MIN_LENGTH with a tiny model, so the default threshold itself is exercised
CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=LENGTH + 4)


def test_threshold_is_below_the_test_length():
    assert layers.TILED_ATTENTION_MIN_LENGTH <= LENGTH


def test_tiled_attention_equals_the_batched_softmax():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 7, 4)), jnp.float32) for _ in range(3))
    keep = np.ones((2, 7), bool)
    keep[1, 4:] = False
    bias = jnp.asarray(np.where(keep, 0.0, np.finfo(np.float32).min)[:, None, None, :], jnp.float32)
    context, probs = layers.tiled_attention(q, k, v, bias)
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k) / 2.0 + bias  # sqrt(head_dim 4)
    want_probs = jax.nn.softmax(scores, axis=-1)
    np.testing.assert_allclose(probs, want_probs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(context, jnp.einsum("bhqk,bhkd->bhqd", want_probs, v), atol=1e-6, rtol=0)
    assert float(jnp.abs(probs[1, :, :, 4:]).max()) == 0.0  # masked keys get nothing


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import xlmr.flax as F
    import xlmr.pt as P

    folder = str(tmp_path_factory.mktemp("tiled"))
    P.XLMRobertaModel(XLMRobertaConfig(**CONFIG), seed=0).save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return P.XLMRobertaModel.from_pretrained(folder).eval(), F.XLMRobertaModel.from_pretrained(folder)


def _inputs():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, CONFIG["vocab_size"], (2, LENGTH))
    mask = np.ones_like(ids)
    mask[1, 100:] = 0
    ids[1, 100:] = 1
    return ids, mask


def test_long_sequence_matches_pytorch_and_the_batched_path(models, monkeypatch):
    pt_model, flax_model = models
    ids, mask = _inputs()
    calls = []
    original = layers.tiled_attention
    monkeypatch.setattr(layers, "tiled_attention", lambda *a: calls.append(1) or original(*a))
    tiled = flax_model(input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask), output_attentions=True)
    assert len(calls) == CONFIG["num_hidden_layers"]
    with torch.inference_mode():
        want = pt_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                        output_attentions=True)
    np.testing.assert_allclose(np.asarray(tiled.last_hidden_state), want.last_hidden_state.numpy(),
                               atol=TOLERANCE_FP32, rtol=0)
    np.testing.assert_allclose(np.asarray(tiled.attentions[-1]), want.attentions[-1].numpy(), atol=TOLERANCE_FP32,
                               rtol=0)
    monkeypatch.setattr(layers, "TILED_ATTENTION_MIN_LENGTH", 10**9)
    batched = flax_model(input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert len(calls) == CONFIG["num_hidden_layers"]  # not taken below the threshold
    np.testing.assert_allclose(np.asarray(tiled.last_hidden_state), np.asarray(batched.last_hidden_state),
                               atol=TOLERANCE_FP32, rtol=0)


def test_head_mask_keeps_the_batched_path(models, monkeypatch):
    _, flax_model = models
    ids, mask = _inputs()
    monkeypatch.setattr(layers, "tiled_attention", lambda *a: pytest.fail("tiled path taken with a head mask"))
    head_mask = jnp.ones((CONFIG["num_hidden_layers"], CONFIG["num_attention_heads"]))
    flax_model(input_ids=jnp.asarray(ids[:, :LENGTH]), attention_mask=jnp.asarray(mask), head_mask=head_mask)
