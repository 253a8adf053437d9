"""Training behaviour: dropout only in train(), gradients equal to HF's, gradient checkpointing changes nothing."""

from __future__ import annotations

import pytest
import torch
from pt_support import batch, hf_model, max_abs, ours_like, tiny_config

import xlmr.pt as xpt

GRAD_ATOL = 1e-5


def mlm_inputs(config):
    inputs = batch(config)
    inputs["labels"] = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    return inputs


def test_dropout_is_active_only_in_train_mode():
    config = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    hf = hf_model("XLMRobertaForMaskedLM", config)
    ours = ours_like("XLMRobertaForMaskedLM", hf, config)
    inputs = batch(config)
    with torch.no_grad():
        evaluated = ours(**inputs).logits
        assert max_abs(ours(**inputs).logits, evaluated) == 0.0
        assert max_abs(evaluated, hf(**inputs).logits) <= 1e-5
        ours.train()
        first, second = ours(**inputs).logits, ours(**inputs).logits
    assert max_abs(first, second) > 1e-3 and max_abs(first, evaluated) > 1e-3


def test_train_mode_without_dropout_equals_eval_mode():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours = xpt.XLMRobertaForSequenceClassification(config, seed=0)
    inputs = batch(config)
    with torch.no_grad():
        assert max_abs(ours.train()(**inputs).logits, ours.eval()(**inputs).logits) <= 1e-6


@pytest.mark.parametrize("position_embedding_type", ["absolute", "relative_key_query"])
def test_gradients_match_hf(position_embedding_type):
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         position_embedding_type=position_embedding_type)
    hf = hf_model("XLMRobertaForMaskedLM", config)
    ours = ours_like("XLMRobertaForMaskedLM", hf, config).train()
    hf.train()
    inputs = mlm_inputs(config)
    ours(**inputs).loss.backward()
    hf(**inputs).loss.backward()
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        if theirs[name].grad is None:  # the position table, unused with relative positions
            assert p.grad is None, name
        else:
            assert max_abs(p.grad, theirs[name].grad) <= GRAD_ATOL, name


@pytest.mark.parametrize("name", ["XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients_with_dropout(name):
    config = tiny_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2,
                         is_decoder=name == "XLMRobertaForCausalLM")
    inputs = mlm_inputs(config)

    def grads(checkpointing):
        model = getattr(xpt, name)(config, seed=0).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing == checkpointing
        torch.manual_seed(123)  # same dropout masks: checkpointing replays the RNG state when it recomputes
        loss = model(**inputs).loss
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss_a, a = grads(False)
    loss_b, b = grads(True)
    assert abs(loss_a.item() - loss_b.item()) <= 1e-6
    assert a.keys() == b.keys()
    for n in a:
        assert max_abs(a[n], b[n]) <= GRAD_ATOL, n


def test_gradient_checkpointing_disable_and_cache_off_in_training():
    config = tiny_config(is_decoder=True)
    model = xpt.XLMRobertaForCausalLM(config, seed=0)
    model.gradient_checkpointing_enable()
    out = model.train()(**batch(config))
    assert "past_key_values" not in out  # checkpointing drops activations; a cache would keep them
    assert "past_key_values" in model.eval()(**batch(config))
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert tuple(model.train()(**batch(config)).past_key_values[0][0].shape) == (3, 4, 9, 8)
