"""xlmr.common: config, weight-name table, initialisation, loading policy, input checks, outputs, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from xlmr.common import weights as W
from xlmr.common.config import ConfigError, XLMRobertaConfig
from xlmr.common.init import initial_weights
from xlmr.common.inputs import check_inputs, position_ids_from_input_ids, position_ids_from_length
from xlmr.common.io import atomic_directory, atomic_path, atomic_write_text
from xlmr.common.loading import WeightsError, resolve_weights
from xlmr.common import outputs as O

from reference import TINY  # noqa: E402


# ------------------------------------------------------------------------------------------------ config
def test_import_xlmr_loads_no_framework():
    code = ("import sys, xlmr, xlmr.common.config, xlmr.common.weights, xlmr.common.loading, xlmr.common.inputs;"
            "import xlmr.common.outputs, xlmr.common.init;"
            "print(sorted(m for m in ('torch','tensorflow','jax','flax','keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_default_config_is_xlm_roberta_base():
    transformers = pytest.importorskip("transformers")
    ours = XLMRobertaConfig()
    # HF's class defaults are BERT's; xlm-roberta-base's config.json overrides these four.
    hf = transformers.XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1,
                                       layer_norm_eps=1e-5)
    for f in dataclasses.fields(XLMRobertaConfig):
        if f.name in ("extra", "architectures", "num_labels", "id2label", "label2id", "problem_type"):
            continue
        assert getattr(ours, f.name) == getattr(hf, f.name), f.name
    assert ours.num_labels == hf.num_labels == 2


def test_config_round_trips_through_hf(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.XLMRobertaConfig(**TINY, num_labels=3, position_embedding_type="relative_key_query",
                                       is_decoder=True, problem_type="single_label_classification",
                                       classifier_dropout=0.2, architectures=["XLMRobertaForMaskedLM"])
    hf.save_pretrained(tmp_path / "hf")
    ours = XLMRobertaConfig.from_pretrained(tmp_path / "hf")
    assert ours.num_labels == 3 and ours.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert ours.position_embedding_type == "relative_key_query" and ours.is_decoder
    assert ours.classifier_dropout == 0.2 and ours.hidden_size == 32
    assert "transformers_version" in ours.extra  # an unknown field survives
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.XLMRobertaConfig.from_pretrained(tmp_path / "ours")
    for key in ("hidden_size", "num_labels", "id2label", "label2id", "position_embedding_type", "is_decoder",
                "classifier_dropout", "problem_type", "architectures", "layer_norm_eps", "vocab_size"):
        assert getattr(back, key) == getattr(hf, key), key


def test_unknown_fields_survive_round_trip(tmp_path):
    data = {**TINY, "model_type": "xlm-roberta", "my_field": {"a": [1, 2]}, "torch_dtype": "float32"}
    cfg = XLMRobertaConfig.from_dict(data)
    assert cfg.extra == {"my_field": {"a": [1, 2]}, "torch_dtype": "float32"}
    cfg.save_pretrained(tmp_path)
    again = XLMRobertaConfig.from_pretrained(tmp_path)
    assert again == cfg and json.loads((tmp_path / "config.json").read_text())["my_field"] == {"a": [1, 2]}


def test_named_shapes_match_published_sizes():
    base, large = XLMRobertaConfig.named("base"), XLMRobertaConfig.named("xlm-roberta-large")
    n_base = sum(int(np.prod(s)) for s in W.parameter_shapes(base, "XLMRobertaModel").values())
    n_large = sum(int(np.prod(s)) for s in W.parameter_shapes(large, "XLMRobertaModel").values())
    # The paper's table: 270M and 550M parameters (HF reports 278M / 560M with pooler and position table).
    assert 277_000_000 < n_base < 279_000_000
    assert 559_000_000 < n_large < 561_000_000
    assert XLMRobertaConfig.named("xxl").hidden_size == 4096


@pytest.mark.parametrize("field,value,needle", [
    ("hidden_size", 30, "not divisible by num_attention_heads=4"),
    ("hidden_act", "gleu", "hidden_act='gleu' is not one of"),
    ("position_embedding_type", "rotary", "position_embedding_type='rotary'"),
    ("vocab_size", 0, "vocab_size=0 must be a positive integer"),
    ("num_hidden_layers", -1, "num_hidden_layers=-1"),
    ("pad_token_id", 99, "pad_token_id=99 is not a token id in [0, vocab_size=99)"),
    ("pad_token_id", True, "pad_token_id=True is not a token id"),
    ("eos_token_id", False, "eos_token_id=False is not a token id"),
    ("layer_norm_eps", float("inf"), "layer_norm_eps=inf must be a positive finite number"),
    ("layer_norm_eps", float("nan"), "layer_norm_eps=nan"),
    ("initializer_range", float("inf"), "initializer_range=inf"),
    ("num_hidden_layers", 10**9, "num_hidden_layers=1000000000 exceeds the limit 1024"),
    ("vocab_size", 2**40, f"vocab_size={2**40} exceeds the limit {2**24}"),
    ("max_position_embeddings", 10**12, "max_position_embeddings=1000000000000 exceeds the limit"),
    ("num_labels", 10**9, "num_labels=1000000000 must be an integer in [1, 65536]"),
    ("label2id", {"a": "x"}, "label2id maps 'a' to 'x', which is not an integer id"),
    ("label2id", {"a": 1.5}, "label2id maps 'a' to 1.5"),
    ("label2id", ["a"], "label2id must map names to integer ids"),
    ("id2label", {"zero": "a"}, "id2label must map integer ids to names"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob=1.5 must be a probability"),
    ("layer_norm_eps", 0, "layer_norm_eps=0"),
    ("problem_type", "ranking", "problem_type='ranking'"),
    ("is_decoder", "yes", "is_decoder='yes' must be true or false"),
])
def test_invalid_config_field_is_named(field, value, needle):
    with pytest.raises(ConfigError, match=None) as e:
        XLMRobertaConfig(**{**TINY, field: value})
    assert needle in str(e.value)


def test_malformed_json_names_file_and_position(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "hidden_size": 32,\n  "vocab_size": ,\n}')
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig.from_pretrained(tmp_path)
    assert str(path) in str(e.value) and "line 3, column 17" in str(e.value)


def test_invalid_field_in_file_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "num_attention_heads": 5}))
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(e.value) and "num_attention_heads=5" in str(e.value)


def _write_config(folder, text: bytes | str) -> str:
    path = folder / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_non_utf8_config_names_file_and_byte(tmp_path):
    path = _write_config(tmp_path, json.dumps(TINY).encode("utf-16"))
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig.from_pretrained(tmp_path)
    assert str(e.value) == f"{path}: not UTF-8 text (byte 0xff at offset 0); config.json must be UTF-8 JSON"


def test_non_integer_label_id_in_file_names_file_and_field(tmp_path):
    path = _write_config(tmp_path, json.dumps({**TINY, "label2id": {"pos": "one", "neg": 0}}))
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig.from_pretrained(tmp_path)
    assert str(e.value).startswith(f"{path}: config field label2id maps 'pos' to 'one'")


@pytest.mark.parametrize("model_type,accepted", [
    ("xlm-roberta", True), ("roberta", True), ("bert", False), ("xlm-roberta-xl", False), (["xlm-roberta"], False)])
def test_model_type_must_name_this_architecture(tmp_path, model_type, accepted):
    path = _write_config(tmp_path, json.dumps({**TINY, "model_type": model_type}))
    if accepted:
        config = XLMRobertaConfig.from_pretrained(tmp_path)
        assert config.to_dict()["model_type"] == model_type  # written back as it was read
        return
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig.from_pretrained(tmp_path)
    assert str(e.value).startswith(f"{path}: field model_type={model_type!r} is not one of xlm-roberta, roberta")


def test_parameter_count_is_bounded_and_matches_the_weight_table():
    for config in (XLMRobertaConfig.named("xxl"), XLMRobertaConfig(**TINY, add_cross_attention=True, is_decoder=True)):
        shapes = W.parameter_shapes(config, "XLMRobertaModel")
        assert config.num_encoder_parameters == sum(int(np.prod(s)) for s in shapes.values())
    # Each field within its own limit, the product far over MAX_PARAMETERS.
    with pytest.raises(ConfigError) as e:
        XLMRobertaConfig(hidden_size=2**16, num_attention_heads=16, intermediate_size=2**18, num_hidden_layers=1024)
    assert "encoder parameters, over the limit 68,719,476,736" in str(e.value)
    assert "num_hidden_layers=1024" in str(e.value)


def test_config_bomb_is_refused_before_allocating(tmp_path):
    """num_hidden_layers=1e9 in config.json: refused in a process limited to 1 GiB of address space."""
    path = _write_config(tmp_path, json.dumps({**TINY, "num_hidden_layers": 10**9}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
            "from xlmr.common.loading import load_pretrained\n"
            "try:\n    load_pretrained(sys.argv[1], 'XLMRobertaModel')\n"
            "except ValueError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (f"ConfigError {path}: config field num_hidden_layers=1000000000 exceeds the "
                                  f"limit 1024 (xlmr.common.config.SIZE_LIMITS)"), out.stderr[-2000:]


def test_missing_config_names_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json in checkpoint folder"):
        XLMRobertaConfig.from_pretrained(tmp_path)


def test_num_labels_and_id2label_agree():
    assert XLMRobertaConfig(num_labels=5).id2label[4] == "LABEL_4"
    assert XLMRobertaConfig(id2label={"0": "neg", "1": "pos"}).label2id == {"neg": 0, "pos": 1}
    with pytest.raises(ConfigError, match="num_labels=3 disagrees with id2label"):
        XLMRobertaConfig(num_labels=3, id2label={0: "a", 1: "b"})
    assert XLMRobertaConfig(num_labels=2).replace(num_labels=4).num_labels == 4


def test_max_sequence_length_is_positions_after_padding_index():
    assert XLMRobertaConfig().max_sequence_length == 512  # 514 rows, positions 2..513


# ------------------------------------------------------------------------------------------------ weight table
def _all_names(config):
    return {n for a in W.ARCHITECTURES for n in W.parameter_shapes(config, a)}


@pytest.mark.parametrize("scheme", W.SCHEMES)
def test_every_weight_round_trips_through_every_scheme(scheme):
    cfg = XLMRobertaConfig(**TINY, position_embedding_type="relative_key", add_cross_attention=True,
                           tie_word_embeddings=False)
    names = _all_names(cfg)
    mapped = {W.to_scheme_name(n, scheme) for n in names}
    assert len(mapped) == len(names)  # no two weights collide
    for n in names:
        assert W.from_scheme_name(W.to_scheme_name(n, scheme), scheme) == n


def test_scheme_names_match_hf_tf_and_flax_conventions():
    assert W.to_scheme_name("roberta.encoder.layer.3.attention.self.query.weight", "hf_tf") == \
        "roberta/encoder/layer_._3/attention/self/query/kernel"
    assert W.to_scheme_name("roberta.embeddings.word_embeddings.weight", "hf_tf") == \
        "roberta/embeddings/word_embeddings/weight"
    assert W.to_scheme_name("roberta.embeddings.position_embeddings.weight", "hf_tf") == \
        "roberta/embeddings/position_embeddings/embeddings"
    assert W.to_scheme_name("embeddings.LayerNorm.weight", "hf_flax") == "embeddings.LayerNorm.scale"
    assert W.to_scheme_name("lm_head.bias", "tf") == "lm_head.bias"


def test_linear_kernels_are_transposed_outside_pytorch():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    name = "qa_outputs.weight"
    assert W.to_scheme_array(w, name, "pt") is w
    np.testing.assert_array_equal(W.to_scheme_array(w, name, "flax"), w.T)
    np.testing.assert_array_equal(W.from_scheme_array(w.T, name, "tf"), w)
    emb = "roberta.embeddings.word_embeddings.weight"
    assert W.to_scheme_array(w, emb, "tf") is w


def test_parameter_names_match_hf_pytorch_state_dicts():
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")  # HF's modeling code is PyTorch's
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(**TINY, position_embedding_type="relative_key_query", is_decoder=True,
                           add_cross_attention=True, num_labels=3)
    hf_cfg = transformers.XLMRobertaConfig(**{k: v for k, v in cfg.to_dict().items() if k != "extra"})
    for arch in W.ARCHITECTURES:
        if arch == "XLMRobertaForQuestionAnswering":
            cfg = cfg.replace(num_labels=2)
            hf_cfg.num_labels = 2  # HF's setter resets id2label
        model = getattr(transformers, arch)(hf_cfg)
        hf = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        hf.pop("lm_head.decoder.weight", None)  # tied to the word embeddings
        hf.pop("lm_head.decoder.bias", None)    # alias of lm_head.bias
        assert hf == W.parameter_shapes(cfg, arch), arch


def test_question_answering_needs_two_labels():
    with pytest.raises(ValueError, match="needs config.num_labels=2 .* got num_labels=3"):
        W.parameter_shapes(XLMRobertaConfig(**TINY, num_labels=3), "XLMRobertaForQuestionAnswering")


def test_unknown_tensor_name_is_reported():
    with pytest.raises(KeyError, match="'roberta.encoder.layer.0.foo.weight' is not an XLM-R weight"):
        W.kind_of("roberta.encoder.layer.0.foo.weight")


# ------------------------------------------------------------------------------------------------ init
def test_initialisation_follows_hf_rules():
    cfg = XLMRobertaConfig(**TINY, initializer_range=0.05)
    w = initial_weights(W.parameter_shapes(cfg, "XLMRobertaForMaskedLM"), cfg, seed=3)
    emb = w["roberta.embeddings.word_embeddings.weight"]
    assert np.all(emb[cfg.pad_token_id] == 0) and np.all(w["roberta.embeddings.position_embeddings.weight"][1] == 0)
    big = np.concatenate([v.ravel() for k, v in w.items() if k.endswith("dense.weight")])
    assert abs(big.std() - 0.05) < 0.003 and abs(big.mean()) < 0.003
    assert np.all(w["roberta.embeddings.LayerNorm.weight"] == 1) and np.all(w["lm_head.bias"] == 0)
    assert all(v.dtype == np.float32 for v in w.values())


def test_initialisation_depends_on_seed_and_name_only():
    cfg = XLMRobertaConfig(**TINY)
    whole = initial_weights(W.parameter_shapes(cfg, "XLMRobertaForSequenceClassification"), cfg, seed=7)
    alone = initial_weights({"classifier.dense.weight": (32, 32)}, cfg, seed=7)
    np.testing.assert_array_equal(whole["classifier.dense.weight"], alone["classifier.dense.weight"])
    other = initial_weights({"classifier.dense.weight": (32, 32)}, cfg, seed=8)
    assert not np.allclose(other["classifier.dense.weight"], alone["classifier.dense.weight"])


# ------------------------------------------------------------------------------------------------ loading policy
def _mlm_state(cfg):
    return initial_weights(W.parameter_shapes(cfg, "XLMRobertaForMaskedLM"), cfg, seed=1)


def test_mlm_checkpoint_loads_into_task_class_with_warning_for_new_head():
    cfg = XLMRobertaConfig(**TINY)
    state = _mlm_state(cfg)
    with pytest.warns(UserWarning, match="classifier.dense.weight, classifier.dense.bias"):
        weights, report = resolve_weights(state, cfg, "XLMRobertaForSequenceClassification", source="x.safetensors")
    assert report.initialized == ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                                  "classifier.out_proj.bias"]
    assert "lm_head.dense.weight" in report.unexpected
    np.testing.assert_array_equal(weights["roberta.encoder.layer.1.output.dense.weight"],
                                  state["roberta.encoder.layer.1.output.dense.weight"])


def test_head_checkpoint_loads_into_bare_model_and_back():
    cfg = XLMRobertaConfig(**TINY)
    state = _mlm_state(cfg)
    with pytest.warns(UserWarning, match="pooler.dense.weight"):  # MLM checkpoints carry no pooler
        weights, _ = resolve_weights(state, cfg, "XLMRobertaModel")
    assert "embeddings.word_embeddings.weight" in weights
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back, report = resolve_weights({**weights, "lm_head.decoder.bias": state["lm_head.bias"],
                                        **{k: v for k, v in state.items() if k.startswith("lm_head")}},
                                       cfg, "XLMRobertaForMaskedLM")
    assert report.initialized == [] and "roberta.embeddings.word_embeddings.weight" in back


def test_missing_encoder_weight_is_an_error_naming_every_tensor():
    cfg = XLMRobertaConfig(**TINY)
    state = _mlm_state(cfg)
    del state["roberta.encoder.layer.1.attention.self.key.weight"], state["roberta.embeddings.LayerNorm.bias"]
    with pytest.raises(WeightsError) as e:
        resolve_weights(state, cfg, "XLMRobertaForMaskedLM", source="/ckpt/model.safetensors")
    msg = str(e.value)
    assert "/ckpt/model.safetensors" in msg and "2 problem(s)" in msg
    assert "missing weight roberta.encoder.layer.1.attention.self.key.weight (shape (32, 32))" in msg
    assert "roberta.embeddings.LayerNorm.bias" in msg


def test_misshaped_and_integer_tensors_are_errors():
    cfg = XLMRobertaConfig(**TINY)
    state = _mlm_state(cfg)
    state["roberta.encoder.layer.0.intermediate.dense.weight"] = np.zeros((36, 32), np.float32)
    state["lm_head.bias"] = np.zeros(99, np.int64)
    with pytest.raises(WeightsError) as e:
        resolve_weights(state, cfg, "XLMRobertaForMaskedLM")
    assert "roberta.encoder.layer.0.intermediate.dense.weight has shape (36, 32), the config gives (37, 32)" \
        in str(e.value)
    assert "lm_head.bias has dtype int64" in str(e.value)


def test_mismatched_head_is_reinitialised_only_on_request():
    cfg3 = XLMRobertaConfig(**TINY, num_labels=3)
    state = initial_weights(W.parameter_shapes(cfg3, "XLMRobertaForTokenClassification"), cfg3, seed=1)
    cfg5 = cfg3.replace(num_labels=5)
    with pytest.raises(WeightsError, match=r"classifier.weight has shape \(3, 32\), the config gives \(5, 32\)"):
        resolve_weights(state, cfg5, "XLMRobertaForTokenClassification")
    with pytest.warns(UserWarning, match="classifier.weight"):
        weights, report = resolve_weights(state, cfg5, "XLMRobertaForTokenClassification",
                                          ignore_mismatched_sizes=True)
    assert weights["classifier.weight"].shape == (5, 32) and report.mismatched == ["classifier.weight",
                                                                                   "classifier.bias"]


def test_untied_decoder_is_loaded_and_tied_decoder_dropped():
    cfg = XLMRobertaConfig(**TINY, tie_word_embeddings=False)
    state = initial_weights(W.parameter_shapes(cfg, "XLMRobertaForMaskedLM"), cfg, seed=2)
    weights, _ = resolve_weights(state, cfg, "XLMRobertaForMaskedLM")
    np.testing.assert_array_equal(weights["lm_head.decoder.weight"], state["lm_head.decoder.weight"])
    tied = cfg.replace(tie_word_embeddings=True)
    weights, report = resolve_weights(state, tied, "XLMRobertaForMaskedLM")
    assert "lm_head.decoder.weight" not in weights and "lm_head.decoder.weight" not in report.unexpected


# ------------------------------------------------------------------------------------------------ input checks
def test_out_of_range_id_names_value_index_and_limit():
    cfg = XLMRobertaConfig(**TINY)
    ids = np.array([[0, 5, 7], [3, 99, 2]])
    with pytest.raises(ValueError) as e:
        check_inputs(cfg, ids)
    assert str(e.value) == "input_ids holds 99 at (1, 1), outside [0, 99) set by config.vocab_size=99"
    with pytest.raises(ValueError, match=r"input_ids holds -1 at \(0, 0\)"):
        check_inputs(cfg, np.array([[-1, 2]]))


def test_sequence_over_position_limit_is_rejected():
    cfg = XLMRobertaConfig(**TINY)  # 40 positions, pad 1 -> 38 tokens
    check_inputs(cfg, np.zeros((1, 38), np.int64))
    with pytest.raises(ValueError, match=r"sequence length 39 exceeds the position limit 38 "
                                         r"\(config.max_position_embeddings=40"):
        check_inputs(cfg, np.zeros((1, 39), np.int64))
    with pytest.raises(ValueError, match=r"sequence length 1 \+ 38 cached exceeds the position limit 38"):
        check_inputs(cfg, np.zeros((1, 1), np.int64), past_length=38)


def test_token_types_positions_and_mask_shapes_are_checked():
    cfg = XLMRobertaConfig(**TINY)
    ids = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"token_type_ids holds 2 at \(0, 1\), outside \[0, 2\) set by "
                                         r"config.type_vocab_size=2"):
        check_inputs(cfg, ids, token_type_ids=np.array([[0, 2, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\), expected"):
        check_inputs(cfg, ids, attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="position_ids holds 40"):
        check_inputs(cfg, ids, position_ids=np.array([[2, 3, 40]] * 2))
    with pytest.raises(ValueError, match="must hold integers"):
        check_inputs(cfg, ids.astype(np.float32))


def test_mask_values_empty_inputs_and_caches_are_checked_without_a_framework():
    from xlmr.common.inputs import check_past_key_values
    cfg = XLMRobertaConfig(**TINY)
    ids = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"^attention_mask holds 0\.5 at \(1, 2\), which is neither 0"):
        check_inputs(cfg, ids, attention_mask=np.array([[1, 1, 1], [1, 1, 0.5]]))
    check_inputs(cfg, ids, attention_mask=np.array([[True, True, False]] * 2))
    with pytest.raises(ValueError, match=r"^input_ids has shape \(0, 3\): no sequences \(batch 0\)"):
        check_inputs(cfg, ids[:0])
    layer = (np.zeros((2, 4, 5, 8)), np.zeros((2, 4, 5, 8)))
    assert check_past_key_values(cfg, (layer, layer), ids) == 5
    assert check_past_key_values(cfg, None, ids) == 0
    with pytest.raises(ValueError, match=r"^past_key_values has 1 layers"):
        check_past_key_values(cfg, (layer,), ids)
    with pytest.raises(ValueError, match=r"^past_key_values\[0\]\[0\] \(key of layer 0\) has shape \(2, 4, 5, 8\), "
                                         r"expected \(3, 4, \?, 8\)"):
        check_past_key_values(cfg, (layer, layer), np.zeros((3, 1), np.int64))


@pytest.mark.parametrize("kwargs,message", [(dict(max_tokens=0), "max_tokens=0 must be a positive integer"),
                                            (dict(max_batch=0), "max_batch=0 must be a positive integer"),
                                            (dict(pad_to_multiple_of=-1), "pad_to_multiple_of=-1 must be")])
def test_bucket_limits_that_make_no_progress_are_refused(kwargs, message):
    from xlmr.common.batching import plan_buckets
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        plan_buckets([[0, 5, 2]], pad_token_id=1, **kwargs)


def test_padding_tokens_get_position_one():
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")  # HF's modeling code is PyTorch's
    from transformers.models.xlm_roberta.modeling_xlm_roberta import create_position_ids_from_input_ids
    ids = np.array([[0, 8, 9, 2, 1, 1], [0, 5, 2, 1, 1, 1]])
    ours = position_ids_from_input_ids(ids, padding_idx=1)
    theirs = create_position_ids_from_input_ids(torch.tensor(ids), padding_idx=1)
    np.testing.assert_array_equal(ours, theirs.numpy())
    np.testing.assert_array_equal(ours[1], [2, 3, 4, 1, 1, 1])
    np.testing.assert_array_equal(position_ids_from_input_ids(ids[:, :2], 1, past_length=4)[0], [6, 7])
    np.testing.assert_array_equal(position_ids_from_length(3, 1), [[2, 3, 4]])


# ------------------------------------------------------------------------------------------------ outputs
def test_output_fields_follow_hf_order():
    pytest.importorskip("transformers")
    pytest.importorskip("torch")  # transformers.modeling_outputs imports it
    import transformers.modeling_outputs as hf
    for cls in O.OUTPUT_CLASSES:
        theirs = [f.name for f in dataclasses.fields(getattr(hf, cls.__name__))]
        assert list(cls.FIELDS) == theirs, cls.__name__


def test_output_behaves_like_hf_model_output():
    out = O.SequenceClassifierOutput(logits=1, hidden_states=(2, 3))
    assert out.logits == 1 and out.loss is None and out[0] == 1 and out.to_tuple() == (1, (2, 3))
    assert list(out.keys()) == ["logits", "hidden_states"]
    rebuilt = type(out)((k, v) for k, v in out.items())
    assert rebuilt == out
    with pytest.raises(TypeError, match="no field"):
        O.MaskedLMOutput(start_logits=1)


# ------------------------------------------------------------------------------------------------ atomic writes
def test_crash_during_write_leaves_previous_file(tmp_path):
    path = tmp_path / "model.safetensors"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.safetensors"]


def test_atomic_directory_refuses_overwrite_and_replaces_whole(tmp_path):
    dst = tmp_path / "out"
    with atomic_directory(dst) as tmp:
        open(os.path.join(tmp, "a"), "w").close()
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_directory(dst):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(dst, overwrite=True) as tmp:
            open(os.path.join(tmp, "b"), "w").close()
            raise RuntimeError("crash")
    assert os.listdir(dst) == ["a"]
    with atomic_directory(dst, overwrite=True) as tmp:
        open(os.path.join(tmp, "b"), "w").close()
    assert os.listdir(dst) == ["b"] and sorted(os.listdir(tmp_path)) == ["out"]
