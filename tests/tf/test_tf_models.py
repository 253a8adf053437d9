"""xlmr.tf against HF transformers 4.57.6's PyTorch classes (and xlmr.pt when present): numerics, losses, cache,
initialisation and checkpoints. HF writes the checkpoint in each test; xlmr.tf loads it with from_pretrained."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
torch = pytest.importorskip("torch")  # noqa: E402  (HF's reference classes are PyTorch)
transformers = pytest.importorskip("transformers")  # noqa: E402

import xlmr.tf as xtf  # noqa: E402
from reference import TINY  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.constants import TOLERANCE_FP32  # noqa: E402
from xlmr.common.init import initial_weight, initial_weights  # noqa: E402
from xlmr.common.loading import WeightsError  # noqa: E402
from xlmr.common.weights import ARCHITECTURES, parameter_shapes  # noqa: E402

try:
    import xlmr.pt as xpt
    HAVE_PT = hasattr(xpt, "XLMRobertaModel")
except ImportError:  # pragma: no cover
    xpt, HAVE_PT = None, False

TINY = {**TINY, "vocab_size": 100, "num_labels": 3}
_WORKDIR = tempfile.TemporaryDirectory(prefix="xlmr_tf_models_")

IDS = np.array([[0, 5, 6, 7, 8, 9, 2], [0, 11, 12, 2, 1, 1, 1]])
MASK = (IDS != 1).astype(np.int64)
TYPES = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]])
MC_IDS = np.stack([IDS, IDS[::-1], (IDS + 3) % 100 * MASK + (1 - MASK)], axis=1)  # (2 batch, 3 choices, 7)


def labels_for(architecture: str) -> dict[str, np.ndarray]:
    if architecture in ("XLMRobertaForMaskedLM", "XLMRobertaForTokenClassification"):
        labels = np.where(MASK == 1, IDS % 3, -100)
        labels[0, 2] = -100
        return {"labels": labels}
    if architecture == "XLMRobertaForCausalLM":
        return {"labels": np.where(MASK == 1, IDS, -100)}
    if architecture == "XLMRobertaForSequenceClassification":
        return {"labels": np.array([2, 0])}
    if architecture == "XLMRobertaForMultipleChoice":
        return {"labels": np.array([1, 2])}
    if architecture == "XLMRobertaForQuestionAnswering":  # 50 lies outside the sequence: clamped, then ignored
        return {"start_positions": np.array([1, 50]), "end_positions": np.array([3, 2])}
    return {}


def inputs_for(architecture: str) -> dict[str, np.ndarray]:
    if architecture == "XLMRobertaForMultipleChoice":
        return {"input_ids": MC_IDS, "attention_mask": (MC_IDS != 1).astype(np.int64)}
    return {"input_ids": IDS, "attention_mask": MASK, "token_type_ids": TYPES}


@functools.lru_cache(maxsize=None)
def hf_checkpoint(architecture: str, **overrides) -> tuple[object, str]:
    """An HF PyTorch model (seeded, eval mode) and the folder its save_pretrained wrote."""
    config = transformers.XLMRobertaConfig(**{**TINY, **overrides})
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config).eval()
    folder = tempfile.mkdtemp(dir=_WORKDIR.name)
    model.save_pretrained(folder)
    return model, folder


@functools.lru_cache(maxsize=None)
def loaded(architecture: str, **overrides):
    """(HF model, xlmr.tf model, xlmr.pt model or None), all from HF's checkpoint."""
    hf, folder = hf_checkpoint(architecture, **overrides)
    ours = getattr(xtf, architecture).from_pretrained(folder)
    pt = getattr(xpt, architecture).from_pretrained(folder) if HAVE_PT else None
    return hf, ours, pt


def run_hf(model, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})


def run_pt(model, **kwargs):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})


def to_numpy(x):
    if isinstance(x, (tuple, list)):
        return [to_numpy(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def assert_matches(ours, reference, fields, tol=TOLERANCE_FP32):
    for field in fields:
        mine, theirs = ours[field], reference[field]
        assert mine is not None and theirs is not None, field
        mine, theirs = to_numpy(mine), to_numpy(theirs)
        pairs = zip(mine, theirs) if isinstance(mine, list) else [(mine, theirs)]
        for a, b in pairs:
            assert np.shape(a) == np.shape(b), (field, np.shape(a), np.shape(b))
            assert np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0) <= tol, field


def output_fields(architecture: str) -> list[str]:
    main = {"XLMRobertaModel": ["last_hidden_state", "pooler_output"],
            "XLMRobertaForQuestionAnswering": ["start_logits", "end_logits", "loss"]}.get(
        architecture, ["logits", "loss"])
    return main + ["hidden_states", "attentions"]


# ------------------------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_class_matches_hf_pytorch_with_padding_hidden_states_attentions_and_loss(architecture):
    overrides = {"XLMRobertaForCausalLM": {"is_decoder": True},
                 "XLMRobertaForQuestionAnswering": {"num_labels": 2}}.get(architecture, {})
    hf, ours, pt = loaded(architecture, **overrides)
    kwargs = {**inputs_for(architecture), **labels_for(architecture), "output_hidden_states": True,
              "output_attentions": True}
    if architecture == "XLMRobertaForCausalLM":
        kwargs["use_cache"] = False
    mine = ours(**kwargs)
    fields = output_fields(architecture)
    assert_matches(mine, run_hf(hf, **kwargs), fields)
    if pt is not None:
        assert_matches(mine, run_pt(pt, **kwargs), fields)


@pytest.mark.parametrize("position_embedding_type", ["absolute", "relative_key", "relative_key_query"])
def test_every_position_embedding_type_matches_hf_pytorch(position_embedding_type):
    hf, ours, pt = loaded("XLMRobertaForMaskedLM", position_embedding_type=position_embedding_type)
    kwargs = dict(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES, labels=labels_for(
        "XLMRobertaForMaskedLM")["labels"], output_hidden_states=True, output_attentions=True)
    mine = ours(**kwargs)
    assert_matches(mine, run_hf(hf, **kwargs), ["logits", "loss", "hidden_states", "attentions"])
    if pt is not None:
        assert_matches(mine, run_pt(pt, **kwargs), ["logits", "loss", "hidden_states", "attentions"])


@pytest.mark.parametrize("problem,labels", [
    ("regression", np.array([0.5, -1.25], np.float32)),
    ("single_label_classification", np.array([2, 0])),
    ("multi_label_classification", np.array([[1, 0, 1], [0, 1, 1]], np.float32)),
])
def test_sequence_classification_losses_follow_hf_problem_types(problem, labels):
    num_labels = 1 if problem == "regression" else 3
    hf, ours, _ = loaded("XLMRobertaForSequenceClassification", num_labels=num_labels)
    mine = ours(input_ids=IDS, attention_mask=MASK, labels=labels)
    ref = run_hf(hf, input_ids=IDS, attention_mask=MASK, labels=labels)
    assert hf.config.problem_type == problem  # HF infers it from the labels, as common.losses does for us
    hf.config.problem_type = None
    assert_matches(mine, ref, ["logits", "loss"])


def test_question_answering_loss_ignores_positions_beyond_the_sequence_as_hf():
    hf, ours, _ = loaded("XLMRobertaForQuestionAnswering", num_labels=2)
    for start, end in [([1, 50], [3, 2]), ([[1], [-5]], [[60], [4]])]:  # (batch, 1) positions are squeezed
        kwargs = dict(input_ids=IDS, attention_mask=MASK, start_positions=np.array(start),
                      end_positions=np.array(end))
        assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["loss", "start_logits"])


@pytest.mark.parametrize("position_embedding_type", ["absolute", "relative_key_query"])
def test_decoder_with_cross_attention_matches_hf_and_its_cache_matches_the_full_pass(position_embedding_type):
    hf, ours, pt = loaded("XLMRobertaForCausalLM", is_decoder=True, add_cross_attention=True,
                          position_embedding_type=position_embedding_type)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 100, (2, 6))
    encoder_states = rng.standard_normal((2, 5, 32)).astype(np.float32)
    encoder_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = ids.copy()
    labels[0, 3] = -100
    common = dict(encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask)
    kwargs = dict(input_ids=ids, labels=labels, use_cache=False, output_attentions=True, output_hidden_states=True,
                  **common)
    mine = ours(**kwargs)
    fields = ["logits", "loss", "hidden_states", "attentions", "cross_attentions"]
    assert_matches(mine, run_hf(hf, **kwargs), fields)
    if pt is not None:
        assert_matches(mine, run_pt(pt, **kwargs), fields)

    # Token by token with the cache: the same logits as one pass, and as HF's own cached decoding.
    full = ours(input_ids=ids, **common).logits.numpy()
    past, steps, hf_past, hf_steps = None, [], None, []
    for t in range(ids.shape[1]):
        step = ours(input_ids=ids[:, t:t + 1], past_key_values=past, use_cache=True, **common)
        past = step.past_key_values
        steps.append(step.logits.numpy())
        hf_step = run_hf(hf, input_ids=ids[:, t:t + 1], past_key_values=hf_past, use_cache=True, **common)
        hf_past = hf_step.past_key_values
        hf_steps.append(hf_step.logits.numpy())
    assert len(past) == 2 and len(past[0]) == 4 and tuple(past[0][0].shape) == (2, 4, 6, 8)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=TOLERANCE_FP32, rtol=0)
    np.testing.assert_allclose(np.concatenate(steps, 1), np.concatenate(hf_steps, 1), atol=TOLERANCE_FP32, rtol=0)


def test_cache_continues_a_prompt_with_padding_like_hf():
    hf, ours, _ = loaded("XLMRobertaForCausalLM", is_decoder=True)
    prompt = run_hf(hf, input_ids=IDS[:, :4], attention_mask=MASK[:, :4], use_cache=True)
    mine = ours(input_ids=IDS[:, :4], attention_mask=MASK[:, :4], use_cache=True)
    step = dict(input_ids=IDS[:, 4:], attention_mask=MASK)
    ref = run_hf(hf, **step, past_key_values=prompt.past_key_values)
    assert_matches(ours(**step, past_key_values=mine.past_key_values), ref, ["logits"])


def test_head_mask_matches_hf():
    hf, ours, _ = loaded("XLMRobertaModel")
    for head_mask in (np.array([1.0, 0.0, 1.0, 0.5], np.float32), np.array([[1, 0, 1, 1], [0, 1, 1, 0]], np.float32)):
        kwargs = dict(input_ids=IDS, attention_mask=MASK, head_mask=head_mask, output_attentions=True)
        assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["last_hidden_state", "attentions"])


def test_inputs_embeds_and_explicit_position_ids_match_hf():
    hf, ours, _ = loaded("XLMRobertaModel")
    embeds = np.random.default_rng(1).standard_normal((2, 7, 32)).astype(np.float32)
    kwargs = dict(inputs_embeds=embeds, attention_mask=MASK)
    assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["last_hidden_state", "pooler_output"])
    positions = np.array([[2, 3, 4, 5, 6, 7, 8], [9, 8, 7, 6, 5, 4, 3]])
    kwargs = dict(input_ids=IDS, attention_mask=MASK, position_ids=positions)
    assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["last_hidden_state"])


def test_embeddings_follow_the_position_rule_in_closed_form_with_and_without_a_cache():
    # LayerNorm(word + token type + position), positions from xlmr.common.inputs' numpy rule: padding keeps
    # pad_token_id, real tokens count from pad_token_id + 1 (+ the cached length).
    from xlmr.common.inputs import position_ids_from_input_ids, position_ids_from_length
    _, ours, _ = loaded("XLMRobertaModel")
    table = {name.split(".")[1]: v.numpy() for name, v in ours.named_variables().items()
             if name.startswith("embeddings.") and name.endswith(".embeddings")}
    gamma = ours.get_variable("embeddings.LayerNorm.gamma").numpy()
    beta = ours.get_variable("embeddings.LayerNorm.beta").numpy()

    def layer_norm(x):
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(variance + ours.config.layer_norm_eps) * gamma + beta

    for past in (0, 3):
        positions = position_ids_from_input_ids(IDS, padding_idx=1, past_length=past)
        assert positions[1].tolist() == [2 + past, 3 + past, 4 + past, 5 + past, 1, 1, 1]
        expected = layer_norm(table["word_embeddings"][IDS] + table["token_type_embeddings"][TYPES]
                              + table["position_embeddings"][positions])
        got = ours.embeddings(input_ids=tf.constant(IDS), token_type_ids=tf.constant(TYPES), past_length=past)
        np.testing.assert_allclose(got.numpy(), expected, atol=TOLERANCE_FP32, rtol=0)
    embeds = table["word_embeddings"][IDS]
    expected = layer_norm(embeds + table["token_type_embeddings"][0]
                          + table["position_embeddings"][position_ids_from_length(7, padding_idx=1, past_length=2)])
    got = ours.embeddings(inputs_embeds=tf.constant(embeds), past_length=2)
    np.testing.assert_allclose(got.numpy(), expected, atol=TOLERANCE_FP32, rtol=0)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_fast", "quick_gelu", "relu", "silu", "tanh"])
def test_hidden_activations_match_hf(activation):
    hf, ours, _ = loaded("XLMRobertaModel", hidden_act=activation)
    kwargs = dict(input_ids=IDS, attention_mask=MASK)
    assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["last_hidden_state"])


def test_untied_lm_head_has_its_own_decoder_and_matches_hf():
    hf, ours, _ = loaded("XLMRobertaForMaskedLM", tie_word_embeddings=False)
    assert "lm_head.decoder.kernel" in ours.named_variables()
    kwargs = dict(input_ids=IDS, attention_mask=MASK)
    assert_matches(ours(**kwargs), run_hf(hf, **kwargs), ["logits"])
    kernel = ours.get_variable("lm_head.decoder.kernel").numpy()
    np.testing.assert_array_equal(kernel, hf.lm_head.decoder.weight.detach().numpy().T)


def test_tied_lm_head_decodes_with_the_word_embeddings():
    hf, ours, _ = loaded("XLMRobertaForMaskedLM")
    assert "lm_head.decoder.kernel" not in ours.named_variables()
    table = ours.get_variable("roberta.embeddings.word_embeddings.embeddings")
    before = ours(input_ids=IDS).logits.numpy()
    original = table.numpy()
    changed = original.copy()
    changed[50] = np.random.default_rng(0).standard_normal(32)  # token 50 is not in IDS: only its logit moves
    table.assign(changed)
    try:
        moved = np.abs(ours(input_ids=IDS).logits.numpy() - before).max(axis=(0, 1)) > 1e-4
    finally:
        table.assign(original)
    assert moved.tolist() == [i == 50 for i in range(100)]


def test_return_dict_false_returns_hf_tuples():
    hf, ours, _ = loaded("XLMRobertaModel")
    mine = ours(input_ids=IDS, attention_mask=MASK, output_hidden_states=True, return_dict=False)
    ref = run_hf(hf, input_ids=IDS, attention_mask=MASK, output_hidden_states=True, return_dict=False)
    assert len(mine) == len(ref) == 3
    for a, b in zip(mine[:2], ref[:2]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=TOLERANCE_FP32, rtol=0)
    hf, ours, _ = loaded("XLMRobertaForCausalLM", is_decoder=True)
    mine = ours(input_ids=IDS, labels=IDS, use_cache=True, return_dict=False)
    ref = run_hf(hf, input_ids=IDS, labels=IDS, use_cache=True, return_dict=False)
    assert len(mine) == 2 and len(ref) == 2  # labels switch the cache off, as in HF
    np.testing.assert_allclose(float(mine[0]), float(ref[0]), atol=TOLERANCE_FP32, rtol=0)


def test_dropout_applies_only_when_training():
    hf, ours, _ = loaded("XLMRobertaForSequenceClassification")
    evaluation = run_hf(hf, input_ids=IDS, attention_mask=MASK).logits.numpy()
    np.testing.assert_allclose(ours(input_ids=IDS, attention_mask=MASK).logits.numpy(), evaluation,
                               atol=TOLERANCE_FP32, rtol=0)
    np.testing.assert_allclose(ours(input_ids=IDS, attention_mask=MASK, training=False).logits.numpy(), evaluation,
                               atol=TOLERANCE_FP32, rtol=0)
    trained = ours(input_ids=IDS, attention_mask=MASK, training=True).logits.numpy()
    assert np.abs(trained - evaluation).max() > 1e-3
    # With every dropout rate at 0, training=True is the evaluation pass.
    hf0, ours0, _ = loaded("XLMRobertaForSequenceClassification", hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    np.testing.assert_allclose(ours0(input_ids=IDS, attention_mask=MASK, training=True).logits.numpy(),
                               run_hf(hf0, input_ids=IDS, attention_mask=MASK).logits.numpy(),
                               atol=TOLERANCE_FP32, rtol=0)


def test_loss_gradients_match_hf_pytorch():
    hf, ours, _ = loaded("XLMRobertaForMaskedLM", position_embedding_type="relative_key_query")
    labels = labels_for("XLMRobertaForMaskedLM")["labels"]
    hf.zero_grad(set_to_none=True)
    hf(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK), labels=torch.tensor(labels)).loss.backward()
    # Unused tables (the position table under relative positions) get no gradient in either framework: zeros.
    expected = {name: np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy()
                for name, p in hf.named_parameters()}
    hf.zero_grad(set_to_none=True)
    variables = ours.named_variables()
    with tf.GradientTape() as tape:
        loss = ours(input_ids=IDS, attention_mask=MASK, labels=labels, training=False).loss
    grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
    canonical = list(parameter_shapes(ours.config, "XLMRobertaForMaskedLM"))
    assert sorted(canonical) == sorted(expected)
    from xlmr.common.constants import GRADIENT_ATOL, GRADIENT_RTOL
    from xlmr.common.weights import from_scheme_array, to_scheme_name
    for name in canonical:
        grad = grads[to_scheme_name(name, "tf")]
        grad = np.zeros(variables[to_scheme_name(name, "tf")].shape, np.float32) if grad is None else \
            tf.convert_to_tensor(grad).numpy()
        np.testing.assert_allclose(from_scheme_array(grad, name, "tf"), expected[name], atol=GRADIENT_ATOL,
                                   rtol=GRADIENT_RTOL, err_msg=name)


# ------------------------------------------------------------------------------------------------ construction
def test_random_init_is_common_init_and_seed_none_follows_keras_seed():
    config = XLMRobertaConfig(**{**TINY, "num_labels": 2})
    model = xtf.XLMRobertaForTokenClassification(config, seed=7)
    expected = initial_weights(parameter_shapes(config, "XLMRobertaForTokenClassification"), config, 7)
    state = model.canonical_state()
    assert state.keys() == expected.keys()
    for name, array in expected.items():
        np.testing.assert_array_equal(state[name], array, err_msg=name)
    if HAVE_PT:
        for name, array in xpt.XLMRobertaForTokenClassification(config, seed=7).canonical_state().items():
            np.testing.assert_array_equal(state[name], array, err_msg=name)
    import keras
    keras.utils.set_random_seed(3)
    first = xtf.XLMRobertaModel(config).canonical_state()
    keras.utils.set_random_seed(3)
    second = xtf.XLMRobertaModel(config).canonical_state()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert model.num_parameters() == sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_variables_exist_after_construction_and_are_named_by_the_tf_scheme():
    hf, ours, _ = loaded("XLMRobertaForMaskedLM")
    kernel = ours.get_variable("roberta.encoder.layer.0.attention.self.query.kernel")
    assert kernel.path == "roberta/encoder/layer_0/attention/self/query/kernel"
    np.testing.assert_array_equal(kernel.numpy(),
                                  hf.roberta.encoder.layer[0].attention.self.query.weight.detach().numpy().T)
    gamma = ours.get_variable("roberta.encoder.layer.1.output.LayerNorm.gamma")
    np.testing.assert_array_equal(gamma.numpy(), hf.roberta.encoder.layer[1].output.LayerNorm.weight.detach().numpy())
    names = list(ours.named_variables())
    assert "lm_head.bias" in names and "roberta.embeddings.word_embeddings.embeddings" in names
    assert len(names) == len(ours.weights)  # every Keras variable is a named parameter, each once
    with pytest.raises(KeyError, match="no variable"):
        ours.get_variable("roberta.encoder.layer.7.attention.self.query.kernel")


def test_hf_tf_prefixed_names_are_the_same_classes():
    for architecture in ARCHITECTURES:
        assert getattr(xtf, "TF" + architecture) is getattr(xtf, architecture)


# ------------------------------------------------------------------------------------------------ checkpoints
def test_missing_head_is_initialised_from_the_seed_with_a_warning():
    hf, folder = hf_checkpoint("XLMRobertaModel")
    with pytest.warns(UserWarning, match=r"newly initialised.*classifier\.dense\.weight"):
        model = xtf.XLMRobertaForSequenceClassification.from_pretrained(folder, seed=5)
    config = model.config
    np.testing.assert_array_equal(model.canonical_state()["classifier.out_proj.weight"],
                                  initial_weight("classifier.out_proj.weight", (3, 32), config, 5))
    np.testing.assert_array_equal(model.get_variable("roberta.embeddings.word_embeddings.embeddings").numpy(),
                                  hf.embeddings.word_embeddings.weight.detach().numpy())


def test_missing_encoder_weight_is_an_error_naming_it(tmp_path):
    from safetensors.numpy import load_file, save_file
    _, folder = hf_checkpoint("XLMRobertaForMaskedLM")
    state = load_file(os.path.join(folder, "model.safetensors"))
    del state["roberta.encoder.layer.1.intermediate.dense.weight"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    with pytest.raises(WeightsError, match=r"missing weight roberta\.encoder\.layer\.1\.intermediate\.dense"
                                           r"\.weight"):
        xtf.XLMRobertaForMaskedLM.from_pretrained(tmp_path)


def test_mis_shaped_weight_is_an_error_naming_it():
    _, folder = hf_checkpoint("XLMRobertaForMaskedLM")
    with pytest.raises(WeightsError, match=r"intermediate\.dense\.weight has shape \(37, 32\), the config gives "
                                           r"\(40, 32\)"):
        xtf.XLMRobertaForMaskedLM.from_pretrained(folder, intermediate_size=40)
    config = XLMRobertaConfig(**TINY)
    model = xtf.XLMRobertaForMaskedLM(config, seed=0)
    state = model.canonical_state()
    state["lm_head.bias"] = np.zeros(7, np.float32)
    with pytest.raises(WeightsError, match=r"lm_head\.bias has shape \(7,\)"):
        model.load_canonical_state(state)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "tf", "flax"])
def test_save_pretrained_round_trips_every_format_and_hf_pytorch_reads_it(fmt, tmp_path):
    hf, ours, _ = loaded("XLMRobertaForMaskedLM")
    ours.save_pretrained(tmp_path, format=fmt)
    expected = run_hf(hf, input_ids=IDS, attention_mask=MASK).logits.numpy()
    again = xtf.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    np.testing.assert_allclose(again(input_ids=IDS, attention_mask=MASK).logits.numpy(), expected,
                               atol=TOLERANCE_FP32, rtol=0)
    if fmt in ("safetensors", "pt"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reread = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path).eval()
        np.testing.assert_allclose(run_hf(reread, input_ids=IDS, attention_mask=MASK).logits.numpy(), expected,
                                   atol=TOLERANCE_FP32, rtol=0)


def test_loading_in_row_blocks_gives_the_same_model(monkeypatch, tmp_path):
    # from_pretrained writes large tensors into their variables in row blocks, dropping each block's file pages;
    # with a tiny block every matrix goes that way, and the logits must still be HF's.
    hf, ours, _ = loaded("XLMRobertaForMaskedLM")
    ours.save_pretrained(tmp_path)
    monkeypatch.setattr(xtf.models, "_ASSIGN_BLOCK", 3 * 4 * 32)  # three rows of a 32-wide float32 matrix
    again = xtf.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    expected = run_hf(hf, input_ids=IDS, attention_mask=MASK).logits.numpy()
    np.testing.assert_allclose(again(input_ids=IDS, attention_mask=MASK).logits.numpy(), expected,
                               atol=TOLERANCE_FP32, rtol=0)
    for name, value in ours.canonical_state().items():
        np.testing.assert_array_equal(again.canonical_state()[name], value, err_msg=name)


_HF_TF_SCRIPT = r"""
import json, sys, numpy as np, transformers
ours_h5, pt_folder, hf_tf_out = sys.argv[1:4]
ids = np.array(json.loads(sys.argv[4]))
model = transformers.TFXLMRobertaForMaskedLM.from_pretrained(ours_h5)         # our tf_model.h5
logits = model(input_ids=ids, attention_mask=(ids != 1).astype("int32")).logits.numpy()
converted = transformers.TFXLMRobertaForMaskedLM.from_pretrained(pt_folder, from_pt=True)
converted.save_pretrained(hf_tf_out)                                           # HF's own tf_model.h5
print(json.dumps(logits.tolist()))
"""


def test_tf_h5_written_by_us_loads_in_hf_tf_class_and_hf_tf_h5_loads_in_ours(tmp_path):
    # HF's TF classes need tf-keras (TF_USE_LEGACY_KERAS=1), which must not meet our Keras 3: a subprocess.
    hf, ours, _ = loaded("XLMRobertaForMaskedLM")
    _, pt_folder = hf_checkpoint("XLMRobertaForMaskedLM")
    ours.save_pretrained(tmp_path / "ours", format="tf")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", _HF_TF_SCRIPT, str(tmp_path / "ours"), pt_folder,
                           str(tmp_path / "hf_tf"), json.dumps(IDS.tolist())],
                          env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = run_hf(hf, input_ids=IDS, attention_mask=MASK).logits.numpy()
    hf_tf_logits = np.array(json.loads(done.stdout.strip().splitlines()[-1]), np.float32)
    np.testing.assert_allclose(hf_tf_logits, expected, atol=TOLERANCE_FP32, rtol=0)
    assert os.path.exists(tmp_path / "hf_tf" / "tf_model.h5")
    from_hf_tf = xtf.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "hf_tf")
    np.testing.assert_allclose(from_hf_tf(input_ids=IDS, attention_mask=MASK).logits.numpy(), expected,
                               atol=TOLERANCE_FP32, rtol=0)


def test_import_with_another_keras_backend_raises_import_error_with_the_fix():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", "import xlmr.tf"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "ImportError: xlmr.tf runs on Keras' TensorFlow backend, but KERAS_BACKEND='jax'" in done.stderr
    assert "KERAS_BACKEND=tensorflow" in done.stderr


def test_arguments_past_config_are_keyword_only_and_question_answering_needs_two_labels():
    from xlmr.common.config import XLMRobertaConfig as Config

    config = Config(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
    with pytest.raises(TypeError):
        xtf.XLMRobertaModel(config, False)  # "no pooler" or "seed 0"? Neither: keywords only
    assert "pooler.dense.weight" not in xtf.XLMRobertaModel(config, seed=0, add_pooling_layer=False).canonical_state()
    with pytest.raises(ValueError, match="XLMRobertaForQuestionAnswering needs config.num_labels=2"):
        xtf.XLMRobertaForQuestionAnswering(config.replace(num_labels=3), seed=0)
