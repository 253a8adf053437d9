"""Initialisation, state_dict interchange with HF, and checkpoints: from_pretrained / save_pretrained."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers
from pt_support import CLASSES, assert_same, batch, hf_model, max_abs, ours_like, tiny_config

import xlmr.pt as xpt
import xlmr.pt.models as pt_models
from xlmr.common.init import initial_weights
from xlmr.common.loading import WeightsError, resolve_weights
from xlmr.common.weights import parameter_shapes


@pytest.mark.parametrize("name", CLASSES)
def test_state_dict_loads_into_hf_and_back_strictly(name):
    config = tiny_config(name, tie_word_embeddings=name != "XLMRobertaForCausalLM")
    ours = getattr(xpt, name)(config, seed=4).eval()
    hf = hf_model(name, config, seed=9)
    assert list(ours.state_dict()) == list(hf.state_dict())  # same names, same order
    hf.load_state_dict(ours.state_dict(), strict=True)
    inputs = batch(config) if name != "XLMRobertaForMultipleChoice" else batch(config, 2, 7, choices=3)
    with torch.no_grad():
        assert_same(ours(**inputs), hf(**inputs))
    fresh = getattr(xpt, name)(config, seed=5)
    fresh.load_state_dict(hf.state_dict(), strict=True)
    with torch.no_grad():
        assert_same(fresh.eval()(**inputs), hf(**inputs))


@pytest.mark.parametrize("name", CLASSES)
def test_random_init_is_the_common_initialisation_under_canonical_names(name):
    config = tiny_config(name)
    state = getattr(xpt, name)(config, seed=3).canonical_state()
    expected = initial_weights(parameter_shapes(config, name), config, 3)
    assert list(state) != [] and set(state) == set(expected)
    for key, value in expected.items():
        assert np.array_equal(state[key], value), key


def test_init_has_hf_statistics_and_zero_padding_rows():
    config = tiny_config(vocab_size=2000, hidden_size=64)
    model = xpt.XLMRobertaForMaskedLM(config, seed=0)
    words = model.roberta.embeddings.word_embeddings.weight
    assert abs(words.std().item() - config.initializer_range) < 1e-3
    assert words[config.pad_token_id].abs().max().item() == 0.0
    assert model.roberta.embeddings.position_embeddings.weight[config.pad_token_id].abs().max().item() == 0.0
    assert torch.equal(model.lm_head.layer_norm.weight, torch.ones(64)) and not model.lm_head.bias.any()
    assert all(p.device.type == "cpu" and not p.is_meta for p in model.parameters())


def test_seed_none_draws_from_torch_global_generator():
    config = tiny_config()
    torch.manual_seed(11)
    a = xpt.XLMRobertaModel(config).canonical_state()
    torch.manual_seed(11)
    b = xpt.XLMRobertaModel(config).canonical_state()
    c = xpt.XLMRobertaModel(config).canonical_state()
    key = "encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(a[key], b[key]) and not np.array_equal(a[key], c[key])


def test_module_tree_is_hfs_so_state_dict_keys_are_hfs_for_every_option():
    for options in (dict(position_embedding_type="relative_key_query"), dict(is_decoder=True, add_cross_attention=True),
                    dict(tie_word_embeddings=False)):
        config = tiny_config(**options)
        for name in ("XLMRobertaModel", "XLMRobertaForCausalLM"):
            assert list(getattr(xpt, name)(config, seed=0).state_dict()) == list(hf_model(name, config).state_dict())


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("name", CLASSES)
def test_from_pretrained_reads_hf_checkpoints_in_eval_mode_without_random_init(name, safe, tmp_path, monkeypatch):
    config = tiny_config(name)
    hf = hf_model(name, config)
    hf.save_pretrained(tmp_path, safe_serialization=safe)

    def no_init(*args, **kwargs):
        raise AssertionError("from_pretrained ran a random initialisation")

    monkeypatch.setattr(pt_models.XLMRobertaPreTrainedModel, "initialise", no_init)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete checkpoint loads without "newly initialised" warnings
        ours = getattr(xpt, name).from_pretrained(tmp_path)
    assert not ours.training and all(not p.is_meta for p in ours.parameters())
    inputs = batch(config) if name != "XLMRobertaForMultipleChoice" else batch(config, 2, 7, choices=3)
    with torch.no_grad():
        assert_same(ours(**inputs), hf(**inputs))


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "tf", "flax"])
def test_save_pretrained_round_trips_every_format(fmt, tmp_path):
    config = tiny_config(tie_word_embeddings=False)
    ours = xpt.XLMRobertaForMaskedLM(config, seed=2)
    ours.save_pretrained(tmp_path, format=fmt)
    back = xpt.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    for key, value in ours.canonical_state().items():
        assert np.array_equal(back.canonical_state()[key], value), key


def test_hf_reads_what_save_pretrained_writes(tmp_path):
    config = tiny_config()
    ours = xpt.XLMRobertaForMaskedLM(config, seed=2).eval()
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["XLMRobertaForMaskedLM"]
    hf = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path).eval()
    inputs = batch(config)
    with torch.no_grad():
        assert_same(ours(**inputs), hf(**inputs))


def test_mlm_checkpoint_into_task_class_keeps_encoder_and_warns_naming_each_new_weight(tmp_path):
    config = tiny_config()
    mlm = hf_model("XLMRobertaForMaskedLM", config)
    mlm.save_pretrained(tmp_path)
    with pytest.warns(UserWarning) as record:
        ours = xpt.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5, seed=1)
    message = " ".join(str(w.message) for w in record)
    for new in ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                "classifier.out_proj.bias"):
        assert new in message
    assert "roberta.encoder" not in message
    assert ours.classifier.out_proj.weight.shape == (5, config.hidden_size)
    hf_seq = transformers.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5).eval()
    inputs = batch(config)
    with torch.no_grad():  # the encoder is the checkpoint's: same hidden states as HF's loaded model
        a = ours(**inputs, output_hidden_states=True).hidden_states
        b = hf_seq(**inputs, output_hidden_states=True).hidden_states
    assert_same(a, b)
    expected = initial_weights(parameter_shapes(ours.config, ours.architecture), ours.config, 1)
    assert np.array_equal(ours.canonical_state()["classifier.dense.weight"], expected["classifier.dense.weight"])


def test_missing_encoder_weight_is_an_error_naming_it(tmp_path):
    config = tiny_config()
    hf = hf_model("XLMRobertaForMaskedLM", config)
    hf.save_pretrained(tmp_path)
    state = {k: v for k, v in hf.state_dict().items()
             if k not in ("roberta.encoder.layer.1.output.dense.weight", "lm_head.decoder.weight",
                          "lm_head.decoder.bias")}
    safetensors.torch.save_file({k: v.clone() for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match=r"roberta\.encoder\.layer\.1\.output\.dense\.weight"):
        xpt.XLMRobertaForMaskedLM.from_pretrained(tmp_path)


def test_mis_shaped_weight_is_an_error_naming_it_and_both_shapes(tmp_path):
    config = tiny_config()
    hf_model("XLMRobertaModel", config).save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match=r"embeddings\.token_type_embeddings\.weight has shape \(2, 32\).*\(3, 32\)"):
        xpt.XLMRobertaModel.from_pretrained(tmp_path, type_vocab_size=3)


def test_from_pretrained_dtype_and_config_overrides(tmp_path):
    config = tiny_config()
    hf = hf_model("XLMRobertaForTokenClassification", config)
    hf.save_pretrained(tmp_path)
    model = xpt.XLMRobertaForTokenClassification.from_pretrained(tmp_path, dtype="bfloat16", hidden_dropout_prob=0.0)
    assert model.config.hidden_dropout_prob == 0.0
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    inputs = batch(config)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.dtype == torch.bfloat16
    assert max_abs(logits, hf(**inputs).logits) < 5e-2
    model.save_pretrained(tmp_path / "bf16")  # written in the model's dtype
    stored = safetensors.torch.load_file(tmp_path / "bf16" / "model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    back = xpt.XLMRobertaForTokenClassification.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), model.parameters()))


def test_resolve_weights_from_an_hf_state_dict_loads_like_load_state_dict():
    config = tiny_config(is_decoder=True, add_cross_attention=True)
    hf = hf_model("XLMRobertaForCausalLM", config)
    weights, report = resolve_weights({k: v.numpy() for k, v in hf.state_dict().items()}, config,
                                      "XLMRobertaForCausalLM")
    with torch.device("meta"):
        ours = xpt.XLMRobertaForCausalLM(config)
    ours.load_canonical_state(weights)
    assert report.initialized == [] and ours.lm_head.decoder.weight is ours.roberta.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert_same(ours.eval()(**batch(config), use_cache=False), hf(**batch(config), use_cache=False))
