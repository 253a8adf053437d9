"""xlmr.pt's seven classes against HF transformers' PyTorch classes: outputs, losses, tuples, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pt_support import (
    ATOL, CLASSES, POSITION_TYPES, assert_same, batch, hf_model, max_abs, ours_like, tiny_config)

import xlmr.pt as xpt
from xlmr.common.inputs import position_ids_from_input_ids
from xlmr.pt.layers import ACT, position_ids_from_input_ids as pt_position_ids


def task_inputs(name: str, config, seed: int = 0) -> dict:
    """A padded batch for class ``name``, with labels for its loss (some of them ignored or out of range)."""
    g = torch.Generator().manual_seed(seed + 1)
    if name == "XLMRobertaForMultipleChoice":
        inputs = batch(config, batch_size=2, length=7, seed=seed, choices=3)
        return dict(inputs, labels=torch.tensor([2, 0]))
    inputs = batch(config, seed=seed)
    b, n = inputs["input_ids"].shape
    if name in ("XLMRobertaForCausalLM", "XLMRobertaForMaskedLM"):
        labels = inputs["input_ids"].clone()
        labels[0, :3] = -100
        labels[inputs["attention_mask"] == 0] = -100
        inputs["labels"] = labels
    elif name == "XLMRobertaForSequenceClassification":
        inputs["labels"] = torch.randint(0, config.num_labels, (b,), generator=g)
    elif name == "XLMRobertaForTokenClassification":
        labels = torch.randint(0, config.num_labels, (b, n), generator=g)
        labels[inputs["attention_mask"] == 0] = -100
        inputs["labels"] = labels
    elif name == "XLMRobertaForQuestionAnswering":
        # 40 lies beyond the sequence: HF clamps it to the length and ignores it.
        inputs["start_positions"] = torch.tensor([1, 40, 4])
        inputs["end_positions"] = torch.tensor([[3], [5], [8]])
    return inputs


def both(name, config, tmp_path=None, **hf_kwargs):
    hf = hf_model(name, config, **hf_kwargs)
    return hf, ours_like(name, hf, config, tmp_path)


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize("name", CLASSES)
def test_every_class_matches_hf_checkpoint_outputs_losses_hidden_states_and_attentions(
        name, position_embedding_type, tmp_path):
    config = tiny_config(name, position_embedding_type=position_embedding_type)
    hf, ours = both(name, config, tmp_path)
    inputs = task_inputs(name, config)
    with torch.no_grad():
        theirs = hf(**inputs, output_hidden_states=True, output_attentions=True)
        mine = ours(**inputs, output_hidden_states=True, output_attentions=True)
        # Without attentions requested, absolute positions take scaled_dot_product_attention in both.
        theirs_plain, mine_plain = hf(**inputs), ours(**inputs)
    assert type(mine).__name__ == type(theirs).__name__
    assert list(mine.keys()) == [k for k, v in theirs.items() if v is not None]
    assert_same(mine, theirs)
    assert_same(mine_plain, theirs_plain)
    if name != "XLMRobertaModel":
        assert mine.loss.ndim == 0 and torch.isfinite(mine.loss)


@pytest.mark.parametrize("name", CLASSES)
def test_return_dict_false_gives_hf_tuples(name):
    config = tiny_config(name, is_decoder=name == "XLMRobertaForCausalLM")
    hf, ours = both(name, config)
    inputs = task_inputs(name, config)
    with torch.no_grad():
        theirs = hf(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
        mine = ours(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
        if name == "XLMRobertaModel":  # with the cache: HF's tuple puts it before the hidden states
            decoder = tiny_config(is_decoder=True)
            hf_dec, ours_dec = both(name, decoder)
            plain = {k: v for k, v in inputs.items() if k != "labels"}
            theirs_dec = hf_dec(**plain, use_cache=True, output_hidden_states=True, return_dict=False)
            mine_dec = ours_dec(**plain, use_cache=True, output_hidden_states=True, return_dict=False)
            assert_same(mine_dec, theirs_dec)
    assert_same(mine, tuple(t for t in theirs if t is not None))


@pytest.mark.parametrize("problem, num_labels, labels", [
    ("regression", 1, torch.tensor([0.5, -1.0, 2.0])),
    ("regression", 3, torch.rand(3, 3)),
    ("single_label_classification", 3, torch.tensor([2, 0, 1])),
    ("multi_label_classification", 3, torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])),
    (None, 1, torch.tensor([0.5, -1.0, 2.0])),                      # one label: regression
    (None, 3, torch.tensor([2, 0, 1], dtype=torch.int32)),          # integers: single label
    (None, 3, torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])),   # floats: multi-label
])
def test_sequence_classification_losses_match_hf(problem, num_labels, labels):
    config = tiny_config(num_labels=num_labels, problem_type=problem)
    hf, ours = both("XLMRobertaForSequenceClassification", config)
    inputs = batch(config)
    with torch.no_grad():
        # HF's cross-entropy rejects int32 labels (after choosing single-label for them); ours casts them.
        theirs = hf(**inputs, labels=labels.long() if labels.dtype == torch.int32 else labels)
        mine = ours(**inputs, labels=labels)
    assert abs(mine.loss.item() - theirs.loss.item()) <= ATOL
    assert max_abs(mine.logits, theirs.logits) <= ATOL


def test_losses_equal_closed_forms():
    """Independent of HF: the loss formulas written out in numpy on our logits."""
    config = tiny_config()

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    inputs = task_inputs("XLMRobertaForCausalLM", config)
    out = xpt.XLMRobertaForCausalLM(config, seed=1).eval()(**inputs)
    logits, labels = out.logits.detach().numpy()[:, :-1], inputs["labels"].numpy()[:, 1:]
    keep = labels != -100
    nll = -np.take_along_axis(log_softmax(logits), np.where(keep, labels, 0)[..., None], -1)[..., 0]
    assert abs(out.loss.item() - nll[keep].mean()) <= ATOL

    config = tiny_config("XLMRobertaForQuestionAnswering")
    inputs = task_inputs("XLMRobertaForQuestionAnswering", config)
    out = xpt.XLMRobertaForQuestionAnswering(config, seed=1).eval()(**inputs)
    start = -log_softmax(out.start_logits.detach().numpy())[[0, 2], [1, 4]].mean()  # row 1 ignored (clamped 40)
    end = -log_softmax(out.end_logits.detach().numpy())[[0, 1, 2], [3, 5, 8]].mean()
    assert abs(out.loss.item() - (start + end) / 2) <= ATOL


@pytest.mark.parametrize("past_length", [0, 3])
def test_padding_tokens_get_the_padding_position_and_real_tokens_count_from_pad_plus_one(past_length):
    config = tiny_config()
    ids = batch(config)["input_ids"]
    from transformers.models.xlm_roberta.modeling_xlm_roberta import create_position_ids_from_input_ids

    ours = pt_position_ids(ids, config.pad_token_id, past_length)
    assert torch.equal(ours, create_position_ids_from_input_ids(ids, config.pad_token_id, past_length))
    assert np.array_equal(ours.numpy(), position_ids_from_input_ids(ids.numpy(), config.pad_token_id, past_length))
    assert ours[0, 0].item() == config.pad_token_id + 1 + past_length
    assert (ours[ids == config.pad_token_id] == config.pad_token_id).all()


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
def test_inputs_embeds_explicit_position_ids_and_head_mask_match_hf(position_embedding_type):
    config = tiny_config(position_embedding_type=position_embedding_type)
    hf, ours = both("XLMRobertaModel", config)
    inputs = batch(config)
    embeds = torch.randn(3, 9, config.hidden_size, generator=torch.Generator().manual_seed(3))
    positions = torch.arange(5, 14)[None].expand(3, -1)
    head_mask = torch.tensor([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        for kwargs in (dict(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]),
                       dict(inputs, position_ids=positions),
                       dict(inputs, head_mask=head_mask),
                       dict(inputs, head_mask=head_mask[0], output_attentions=True)):
            assert_same(ours(**kwargs), hf(**kwargs))


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("name", ["XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"])
def test_lm_head_decoder_is_tied_to_word_embeddings_unless_untied(name, tie, tmp_path):
    config = tiny_config(tie_word_embeddings=tie)
    hf, ours = both(name, config, tmp_path)
    head, words = ours.lm_head, ours.roberta.embeddings.word_embeddings
    assert head.decoder.bias is head.bias
    assert (head.decoder.weight is words.weight) == tie
    assert set(ours.state_dict()) == set(hf.state_dict())
    inputs = batch(config)
    with torch.no_grad():
        assert_same(ours(**inputs), hf(**inputs))
        # Tied: changing the word embeddings changes the decoder, as in HF.
        words.weight.add_(0.5)
        hf.roberta.embeddings.word_embeddings.weight.add_(0.5)
        assert_same(ours(**inputs), hf(**inputs))


@pytest.mark.parametrize("act", sorted(ACT))
def test_every_hidden_activation_matches_hf(act):
    config = tiny_config(hidden_act=act)
    hf, ours = both("XLMRobertaForMaskedLM", config)
    inputs = batch(config)
    with torch.no_grad():
        assert_same(ours(**inputs), hf(**inputs))


def test_outputs_follow_config_flags_by_default():
    config = tiny_config(output_hidden_states=True, output_attentions=True, return_dict=False)
    hf, ours = both("XLMRobertaForTokenClassification", config)
    inputs = batch(config)
    with torch.no_grad():
        mine, theirs = ours(**inputs), hf(**inputs)
    assert isinstance(mine, tuple) and len(mine) == 3 == len(theirs)
    assert_same(mine, theirs)


def test_arguments_past_config_are_keyword_only_and_question_answering_needs_two_labels():
    from xlmr.common.config import XLMRobertaConfig as Config

    config = Config(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
    with pytest.raises(TypeError):
        xpt.XLMRobertaModel(config, False)  # "no pooler" or "seed 0"? Neither: keywords only
    assert "pooler.dense.weight" not in xpt.XLMRobertaModel(config, seed=0, add_pooling_layer=False).canonical_state()
    with pytest.raises(ValueError, match="XLMRobertaForQuestionAnswering needs config.num_labels=2"):
        xpt.XLMRobertaForQuestionAnswering(config.replace(num_labels=3), seed=0)
