"""The oneDNN inference path (xlmr/pt/fast_linear.py): same numbers as the plain path, taken only where allowed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from pt_support import CLASSES, batch, hf_model, max_abs, ours_like, tiny_config

import xlmr.pt as xpt
from xlmr.pt import fast_linear

pytestmark = pytest.mark.skipif(not fast_linear._DTYPES, reason="this torch has no oneDNN linear")


@pytest.fixture(autouse=True)
def fresh_cache():
    fast_linear._packed.clear()
    yield
    xpt.set_fast_path(True)


def packed_layers(model) -> int:
    return sum(module in fast_linear._packed for module in model.modules())


def run(model, inputs, fast: bool):
    xpt.set_fast_path(fast)
    with torch.no_grad():
        return model(**inputs)


def inputs_for(name, config):
    return batch(config, 2, 7, choices=3) if name == "XLMRobertaForMultipleChoice" else batch(config)


@pytest.mark.parametrize("name", CLASSES)
def test_fast_path_gives_the_plain_path_numbers_for_every_class(name):
    config = tiny_config(name, hidden_size=64, intermediate_size=256, is_decoder=name == "XLMRobertaForCausalLM")
    hf = hf_model(name, config)
    model = ours_like(name, hf, config)
    inputs = inputs_for(name, config)
    fast, plain = run(model, inputs, True), run(model, inputs, False)
    assert packed_layers(model) > 0  # the fast path was taken
    for key in plain:
        if isinstance(plain[key], torch.Tensor):
            assert max_abs(fast[key], plain[key]) <= 1e-5, key
    with torch.no_grad():
        theirs = hf(**inputs)
    assert max_abs(fast[0], theirs[0]) <= 1e-5


@pytest.mark.parametrize("act", ["gelu", "relu", "gelu_new", "silu"])
def test_fused_and_unfused_activations_match_plain_path(act):
    config = tiny_config(hidden_act=act)
    model = xpt.XLMRobertaModel(config, seed=0).eval()
    inputs = batch(config)
    assert max_abs(run(model, inputs, True).last_hidden_state, run(model, inputs, False).last_hidden_state) <= 1e-5


def test_fast_path_is_skipped_in_training_with_autograd_and_when_switched_off():
    config = tiny_config()
    model = xpt.XLMRobertaForMaskedLM(config, seed=0)
    inputs = batch(config)
    model.train()
    with torch.no_grad():
        model(**inputs)
    assert packed_layers(model) == 0
    model.eval()
    out = model(**inputs)  # autograd on: must stay differentiable through F.linear
    assert out.logits.requires_grad and packed_layers(model) == 0
    run(model, inputs, fast=False)
    assert packed_layers(model) == 0
    xpt.set_fast_path(True)
    with torch.inference_mode():
        model(**inputs)
    assert packed_layers(model) > 0


def test_packed_weights_follow_in_place_changes_load_state_dict_and_tied_embeddings():
    config = tiny_config()
    model = xpt.XLMRobertaForMaskedLM(config, seed=0).eval()
    inputs = batch(config)
    before = run(model, inputs, True).logits
    with torch.no_grad():
        key, words = model.roberta.encoder.layer[0].attention.self.key.weight, model.roberta.embeddings.word_embeddings
        key.add_(torch.randn_like(key))
        words.weight.add_(torch.randn_like(words.weight))  # also the tied decoder
    after = run(model, inputs, True).logits
    assert max_abs(before, after) > 1e-3
    assert max_abs(after, run(model, inputs, False).logits) <= 1e-5
    other = xpt.XLMRobertaForMaskedLM(config, seed=1)
    model.load_state_dict(other.state_dict())
    assert max_abs(run(model, inputs, True).logits, run(other.eval(), inputs, False).logits) <= 1e-5


@pytest.mark.skipif(torch.bfloat16 not in fast_linear._DTYPES, reason="no bfloat16 oneDNN on this CPU")
def test_bfloat16_fast_path_matches_plain_bfloat16():
    config = tiny_config()
    model = xpt.XLMRobertaForMaskedLM(config, seed=0).eval().to(torch.bfloat16)
    inputs = batch(config)
    fast, plain = run(model, inputs, True).logits, run(model, inputs, False).logits
    assert packed_layers(model) > 0 and fast.dtype == torch.bfloat16
    assert max_abs(fast, plain) <= 2e-2


def test_environment_variable_switches_the_fast_path_off():
    code = "import xlmr.pt as x; print(x.fast_path_enabled())"
    env = dict(os.environ, XLMR_PT_FAST="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_weights_above_the_packing_limit_use_the_plain_matmul(monkeypatch):
    config = tiny_config()
    model = xpt.XLMRobertaForMaskedLM(config, seed=0).eval()
    inputs = batch(config)
    decoder_size = config.vocab_size * config.hidden_size
    monkeypatch.setattr(fast_linear, "MAX_PACKED", decoder_size - 1)  # as the 250k-word decoder of base
    fast = run(model, inputs, True).logits
    assert model.lm_head.decoder not in fast_linear._packed and model.lm_head.dense in fast_linear._packed
    assert max_abs(fast, run(model, inputs, False).logits) <= 1e-5
