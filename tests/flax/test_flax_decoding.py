"""Decoding with a key/value cache in xlmr.flax: HF's legacy growing tuples (eager and under jit, exchanged with
HF and xlmr.pt) and the fixed-length KVCache (under jit, one compilation); all against one full pass and against
HF transformers 4.57.6, with cross-attention and every position embedding type."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import xlmr.flax as F
from reference import TINY
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import TOLERANCE_FP32

ATOL = TOLERANCE_FP32
SHAPE = {**TINY, "is_decoder": True, "add_cross_attention": True}

RNG = np.random.default_rng(1)
IDS = RNG.integers(3, 99, (2, 6))
IDS[:, 0] = 0
ENCODER = RNG.standard_normal((2, 5, 32)).astype(np.float32)
ENCODER_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
CROSS = dict(encoder_hidden_states=ENCODER, encoder_attention_mask=ENCODER_MASK)


def max_diff(a, b) -> float:
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    a = np.asarray(a)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{position type: (HF PyTorch CausalLM, ours, folder)}, HF weights perturbed off their init values."""
    out = {}
    for kind in ("absolute", "relative_key", "relative_key_query"):
        config = XLMRobertaConfig(**SHAPE, position_embedding_type=kind)
        data = config.to_dict()
        data.pop("model_type")
        torch.manual_seed(0)
        hf = transformers.XLMRobertaForCausalLM(transformers.XLMRobertaConfig(**data, attn_implementation="eager"))
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(0.05 * torch.randn_like(p))
        folder = str(tmp_path_factory.mktemp(kind))
        hf.eval().save_pretrained(folder)
        out[kind] = (hf, F.XLMRobertaForCausalLM.from_pretrained(folder), folder)
    return out


def hf_full_pass(hf, ids=IDS):
    with torch.no_grad():  # use_cache=False: HF 4.57's relative positions are wrong for multi-token cached passes
        return hf(input_ids=torch.tensor(ids), encoder_hidden_states=torch.tensor(ENCODER),
                  encoder_attention_mask=torch.tensor(ENCODER_MASK), use_cache=False).logits


@pytest.mark.parametrize("kind", ["absolute", "relative_key", "relative_key_query"])
def test_full_pass_with_cross_attention_matches_hf(models, kind):
    hf, ours, _ = models[kind]
    out = ours(input_ids=IDS, **CROSS, output_attentions=True, use_cache=False)
    assert max_diff(out.logits, hf_full_pass(hf)) <= ATOL
    assert len(out.cross_attentions) == 2 and out.cross_attentions[0].shape == (2, 4, 6, 5)
    # The masked encoder positions get no attention.
    assert float(np.abs(np.asarray(out.cross_attentions[1])[1, :, :, 3:]).max()) == 0.0


@pytest.mark.parametrize("kind", ["absolute", "relative_key", "relative_key_query"])
def test_growing_cache_token_by_token_equals_full_pass_and_hf_steps(models, kind):
    hf, ours, _ = models[kind]
    full = hf_full_pass(hf)
    out = ours(input_ids=IDS[:, :4], **CROSS)  # a four-token prompt, then one token at a time
    past, logits = out.past_key_values, [out.logits]
    for t in range(4, 6):
        out = ours(input_ids=IDS[:, t:t + 1], **CROSS, past_key_values=past)
        past = out.past_key_values
        logits.append(out.logits)
    assert max_diff(jnp.concatenate(logits, axis=1), full) <= ATOL
    # HF's legacy layout: per layer (self key, self value, cross key, cross value), (batch, heads, seq, head_dim).
    assert len(past) == 2 and [tuple(t.shape) for t in past[0]] == [(2, 4, 6, 8), (2, 4, 6, 8), (2, 4, 5, 8),
                                                                    (2, 4, 5, 8)]
    # HF decoding one token at a time from the start (its cached relative positions are right for single tokens).
    hf_past, hf_logits = None, []
    with torch.no_grad():
        for t in range(6):
            o = hf(input_ids=torch.tensor(IDS[:, t:t + 1]), encoder_hidden_states=torch.tensor(ENCODER),
                   encoder_attention_mask=torch.tensor(ENCODER_MASK), past_key_values=hf_past, use_cache=True)
            hf_past, _ = o.past_key_values, hf_logits.append(o.logits)
    assert max_diff(jnp.concatenate(logits, axis=1), torch.cat(hf_logits, dim=1)) <= ATOL
    legacy = hf_past.to_legacy_cache()
    for ours_layer, hf_layer in zip(past, legacy):
        for a, b in zip(ours_layer, hf_layer):
            assert max_diff(a, b) <= ATOL


def test_cache_tuples_are_exchangeable_with_hf_and_xlmr_pt(models):
    hf, ours, folder = models["absolute"]
    full = hf_full_pass(hf)
    with torch.no_grad():  # HF's prompt cache continues in ours
        prompt = hf(input_ids=torch.tensor(IDS[:, :4]), encoder_hidden_states=torch.tensor(ENCODER),
                    encoder_attention_mask=torch.tensor(ENCODER_MASK), use_cache=True)
    past = tuple(tuple(t.numpy() for t in layer) for layer in prompt.past_key_values.to_legacy_cache())
    step = ours(input_ids=IDS[:, 4:5], **CROSS, past_key_values=past)
    assert max_diff(step.logits[:, 0], full[:, 4]) <= ATOL
    pt = pytest.importorskip("xlmr.pt")
    theirs = pt.XLMRobertaForCausalLM.from_pretrained(folder)
    mine = tuple(tuple(torch.tensor(np.asarray(t)) for t in layer) for layer in step.past_key_values)
    with torch.no_grad():  # our cache continues in xlmr.pt
        last = theirs(input_ids=torch.tensor(IDS[:, 5:6]), encoder_hidden_states=torch.tensor(ENCODER),
                      encoder_attention_mask=torch.tensor(ENCODER_MASK), past_key_values=mine, use_cache=True)
    assert max_diff(last.logits[:, 0], full[:, 5]) <= ATOL


def test_growing_cache_works_under_nnx_jit_with_a_retrace_per_length(models):
    hf, ours, _ = models["relative_key_query"]
    traces = []

    @nnx.jit
    def step(model, ids, past):
        traces.append((ids.shape, None if past is None else past[0][0].shape[2]))
        out = model(input_ids=ids, past_key_values=past, **CROSS)
        return out.logits, out.past_key_values

    prompt, past = step(ours, IDS[:, :5], None)
    last, past = step(ours, IDS[:, 5:], past)
    assert max_diff(jnp.concatenate([prompt, last], axis=1), hf_full_pass(hf)) <= ATOL
    assert traces == [((2, 5), None), ((2, 1), 5)]  # the tuples grow: a new shape each step (KVCache avoids it)


def test_fixed_cache_under_jit_compiles_once_for_all_steps_and_equals_full_pass(models):
    hf, ours, _ = models["relative_key_query"]
    traces = []

    @nnx.jit
    def step(model, ids, cache):
        traces.append(ids.shape)
        out = model(input_ids=ids, past_key_values=cache, **CROSS)
        return out.logits, out.past_key_values

    cache = ours.init_cache(batch_size=2, max_length=10)
    logits, cache = step(ours, IDS[:, :3], cache)  # prompt: also fills the cross-attention keys/values
    pieces = [logits]
    for t in range(3, 6):
        logits, cache = step(ours, IDS[:, t:t + 1], cache)
        pieces.append(logits)
    assert max_diff(jnp.concatenate(pieces, axis=1), hf_full_pass(hf)) <= ATOL
    assert traces == [(2, 3), (2, 1)]  # one compilation for the prompt, one for every later token
    assert int(cache.index) == 6 and cache.max_length == 10
    assert cache.layers[0][0].shape == (2, 4, 10, 8) and len(cache.layers[0]) == 4


def test_fixed_cache_with_left_padding_mask_and_positions_matches_full_pass(models):
    hf, ours, _ = models["absolute"]
    ids = IDS.copy()
    ids[1, :2] = 1  # left padding in the second row
    mask = (ids != 1).astype(np.int64)
    positions = np.where(mask == 1, np.cumsum(mask, axis=1) + 1, 1)
    with torch.no_grad():
        full = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                  position_ids=torch.tensor(positions), use_cache=False).logits
    cache_mask = np.concatenate([mask, np.ones((2, 4), np.int64)], axis=1)  # the mask covers the whole cache
    cache, pieces = ours.init_cache(2, 10), []
    for t in range(6):
        out = ours(input_ids=ids[:, t:t + 1], attention_mask=cache_mask, position_ids=positions[:, t:t + 1],
                   past_key_values=cache)
        cache = out.past_key_values
        pieces.append(out.logits)
    real = mask[:, :, None] == 1  # logits at padded positions are meaningless in both
    assert max_diff(np.where(real, jnp.concatenate(pieces, axis=1), 0), np.where(real, full.numpy(), 0)) <= ATOL


def test_cache_overflow_and_limits_raise_eagerly_and_under_checked_call(models):
    _, ours, _ = models["absolute"]
    cache = dataclasses.replace(ours.init_cache(2, 10), index=jnp.array(7, jnp.int32))  # 7 slots filled
    message = "KVCache holds 7 of its 10 positions; 5 more do not fit"
    with pytest.raises(ValueError, match=message):
        ours(input_ids=IDS[:, :5], past_key_values=cache)
    with pytest.raises(ValueError, match=message):  # under jit the index is a tracer: checked on device
        F.checked_call(ours, input_ids=IDS[:, :5], past_key_values=cache)
    with pytest.raises(ValueError, match="exceeds the position limit 38"):
        ours.init_cache(2, 39)
    with pytest.raises(ValueError, match=r"sequence length 1 \+ 38 cached exceeds the position limit 38"):
        ours(input_ids=IDS[:, :1], past_key_values=((np.zeros((2, 4, 38, 8), np.float32),) * 2,) * 2)
    encoder = F.XLMRobertaModel(XLMRobertaConfig(**{**SHAPE, "is_decoder": False, "add_cross_attention": False}))
    with pytest.raises(ValueError, match="init_cache needs config.is_decoder=True"):
        encoder.init_cache(2, 8)


def test_cache_is_returned_only_for_decoders_with_use_cache_and_without_labels(models):
    _, ours, _ = models["absolute"]
    assert "past_key_values" in ours(input_ids=IDS)
    assert "past_key_values" not in ours(input_ids=IDS, use_cache=False)
    out = ours(input_ids=IDS, labels=IDS)
    assert "past_key_values" not in out and float(out.loss) > 0
    encoder = F.XLMRobertaModel(XLMRobertaConfig(**{**SHAPE, "is_decoder": False, "add_cross_attention": False}))
    assert "past_key_values" not in encoder(input_ids=IDS, use_cache=True)
