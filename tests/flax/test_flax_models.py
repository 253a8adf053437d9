"""xlmr.flax against Hugging Face transformers 4.57.6 (PyTorch classes, and Flax classes where they exist) and
against xlmr.pt, on checkpoints HF writes during the test; plus loading, saving and input errors.

Every model here has the same tiny shape and every call the same input shape, so JAX compiles each primitive
once for the whole module (eager dispatch caches by shape).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import warnings

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import xlmr.flax as F
from reference import TINY
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import TOLERANCE_FP32
from xlmr.common.inputs import check_inputs
from xlmr.common.loading import WeightsError
from xlmr.common.weights import ARCHITECTURES, parameter_shapes

ATOL = TOLERANCE_FP32
POSITION_TYPES = ("absolute", "relative_key", "relative_key_query")
SHAPE = TINY


def tiny_config(**overrides) -> XLMRobertaConfig:
    return XLMRobertaConfig(**{**SHAPE, **overrides})


def hf_model(architecture: str, config: XLMRobertaConfig, seed: int = 0):
    """HF's PyTorch class with random weights, every tensor (biases, LayerNorms too) perturbed off its init
    value so that a swapped or untransposed tensor cannot hide behind zeros and ones."""
    data = config.to_dict()
    data.pop("model_type")
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(transformers.XLMRobertaConfig(**data, attn_implementation="eager"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


class Zoo:
    """HF models saved by HF into folders, and ours loaded from them, built once per module."""

    def __init__(self, root):
        self.root, self.cache = root, {}

    def get(self, architecture: str, **overrides):
        key = (architecture, tuple(sorted(overrides.items())))
        if key not in self.cache:
            config = tiny_config(is_decoder=architecture == "XLMRobertaForCausalLM", **overrides)
            hf = hf_model(architecture, config)
            folder = os.path.join(self.root, f"{architecture}-{len(self.cache)}")
            hf.save_pretrained(folder)
            ours = getattr(F, architecture).from_pretrained(folder)
            self.cache[key] = (hf, ours, folder)
        return self.cache[key]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return Zoo(str(tmp_path_factory.mktemp("flax_zoo")))


# One batch for every test: padding in the second row, both token types.
RNG = np.random.default_rng(0)
IDS = RNG.integers(3, 99, (2, 7))
IDS[:, 0] = 0
IDS[1, 5:] = 1
MASK = (IDS != 1).astype(np.int64)
TOKEN_TYPES = RNG.integers(0, 2, (2, 7))
INPUTS = dict(input_ids=IDS, attention_mask=MASK, token_type_ids=TOKEN_TYPES)
# Multiple choice: (batch 1, 2 choices, 7) flattens to the same (2, 7).
MC_INPUTS = {k: v[None] for k, v in INPUTS.items()}
LABELS = {
    "XLMRobertaModel": {},
    "XLMRobertaForCausalLM": dict(labels=np.where(MASK == 1, IDS, -100)),
    "XLMRobertaForMaskedLM": dict(labels=np.array([[-100, 7, -100, 9, -100, -100, 3], [5, -100, -100, 8, -100, -100, -100]])),
    "XLMRobertaForSequenceClassification": dict(labels=np.array([1, 0])),
    "XLMRobertaForMultipleChoice": dict(labels=np.array([1])),
    "XLMRobertaForTokenClassification": dict(labels=np.where(MASK == 1, IDS % 2, -100)),
    # 30 is past the sequence: clamped to 7 and ignored, as HF does.
    "XLMRobertaForQuestionAnswering": dict(start_positions=np.array([2, 30]), end_positions=np.array([4, 3])),
}


def inputs_for(architecture: str) -> dict:
    return dict(MC_INPUTS if architecture == "XLMRobertaForMultipleChoice" else INPUTS)


def to_torch(kwargs: dict) -> dict:
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        return max(max_diff(x, y) for x, y in zip(a, b))
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    a = np.asarray(a)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def assert_outputs_match(ours, theirs, fields, atol=ATOL):
    for field in fields:
        assert field in ours, f"missing {field}"
        d = max_diff(ours[field], theirs[field])
        assert d <= atol, f"{field}: max-abs difference {d:.3g} > {atol}"


# ------------------------------------------------------------------------------------------------ HF PyTorch parity
@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_outputs_hidden_states_attentions_and_loss_match_hf_pytorch(zoo, architecture, position_embedding_type):
    hf, ours, _ = zoo.get(architecture, position_embedding_type=position_embedding_type)
    kwargs = dict(inputs_for(architecture), **LABELS[architecture], output_hidden_states=True, output_attentions=True)
    extra = dict(use_cache=False) if architecture == "XLMRobertaForCausalLM" else {}
    with torch.no_grad():
        theirs = hf(**to_torch(kwargs), **extra)
    out = ours(**kwargs)
    fields = [k for k in theirs.keys() if k != "past_key_values"]
    assert set(fields) == set(out.keys()) - {"past_key_values"}
    assert_outputs_match(out, theirs, fields)
    assert len(out.hidden_states) == SHAPE["num_hidden_layers"] + 1
    assert out.attentions[0].shape == (2, SHAPE["num_attention_heads"], 7, 7)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_outputs_match_hf_flax_class_loading_our_flax_msgpack(zoo, tmp_path, architecture):
    # HF's Flax classes have absolute positions only. The folder is written by save_pretrained(format="flax").
    hf, ours, _ = zoo.get(architecture)
    ours.save_pretrained(tmp_path, format="flax")
    assert sorted(os.listdir(tmp_path)) == ["config.json", "flax_model.msgpack"]
    hf_flax, params = getattr(transformers, "Flax" + architecture).from_pretrained(tmp_path, _do_init=False)
    kwargs = dict(inputs_for(architecture), output_hidden_states=True, output_attentions=True)
    theirs = hf_flax(**kwargs, params=params)
    out = ours(**kwargs)
    fields = [k for k in theirs.keys() if k in out and k != "past_key_values"]
    assert "hidden_states" in fields and "attentions" in fields
    assert_outputs_match(out, theirs, fields)


@pytest.mark.parametrize("hidden_act", ["gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu",
                                        "swish", "tanh"])
def test_every_activation_matches_hf(zoo, hidden_act):
    hf, ours, _ = zoo.get("XLMRobertaModel", hidden_act=hidden_act)
    with torch.no_grad():
        theirs = hf(**to_torch(INPUTS))
    assert_outputs_match(ours(**INPUTS), theirs, ["last_hidden_state", "pooler_output"])


@pytest.mark.parametrize("num_labels,labels,problem", [
    (1, np.array([0.5, -1.25], np.float32), "regression"),
    (3, np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32), "multi_label"),
    (3, np.array([[0.5, 2.0, -1.0], [1.0, 0.0, 3.0]], np.float32), "regression"),
])
def test_sequence_classification_losses_match_hf(zoo, num_labels, labels, problem):
    overrides = dict(num_labels=num_labels)
    if num_labels > 1 and problem == "regression":
        overrides["problem_type"] = "regression"
    hf, ours, _ = zoo.get("XLMRobertaForSequenceClassification", **overrides)
    with torch.no_grad():
        theirs = hf(**to_torch(dict(INPUTS, labels=labels)))
    assert_outputs_match(ours(**INPUTS, labels=labels), theirs, ["loss", "logits"])


def test_untied_lm_head_has_its_own_decoder_and_matches_hf(zoo):
    hf, ours, _ = zoo.get("XLMRobertaForMaskedLM", tie_word_embeddings=False)
    assert "lm_head.decoder.weight" in ours.canonical_state()
    assert not np.array_equal(ours.canonical_state()["lm_head.decoder.weight"],
                              ours.canonical_state()["roberta.embeddings.word_embeddings.weight"])
    with torch.no_grad():
        theirs = hf(**to_torch(INPUTS))
    assert_outputs_match(ours(**INPUTS), theirs, ["logits"])


def test_tied_lm_head_decodes_with_the_word_embeddings(zoo):
    _, ours, _ = zoo.get("XLMRobertaForMaskedLM")
    assert "lm_head.decoder.weight" not in ours.canonical_state()
    ours2 = F.XLMRobertaForMaskedLM(ours.config)
    ours2.load_canonical_state(ours.canonical_state())
    ours2.roberta.embeddings.word_embeddings.embedding[...] = ours2.roberta.embeddings.word_embeddings.embedding[...] * 2
    assert max_diff(ours2(**INPUTS).logits, ours(**INPUTS).logits) > 1e-3


def test_head_mask_inputs_embeds_and_position_ids_match_hf(zoo):
    hf, ours, _ = zoo.get("XLMRobertaModel")
    head_mask = np.array([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 1.0]], np.float32)
    embeds = np.asarray(ours.embeddings.word_embeddings.embedding[...])[IDS]
    positions = np.broadcast_to(np.arange(3, 10), (2, 7))
    for kwargs in (dict(INPUTS, head_mask=head_mask), dict(INPUTS, head_mask=head_mask[0]),
                   dict(inputs_embeds=embeds, attention_mask=MASK), dict(INPUTS, position_ids=positions)):
        with torch.no_grad():
            theirs = hf(**to_torch(kwargs), output_attentions=True)
        assert_outputs_match(ours(**kwargs, output_attentions=True), theirs,
                             ["last_hidden_state", "pooler_output", "attentions"])


def test_padding_tokens_get_the_padding_position_and_real_tokens_count_from_pad_plus_one():
    from xlmr.common.inputs import position_ids_from_input_ids as reference
    from xlmr.flax.layers import position_ids_from_input_ids

    for past in (0, 3):
        assert np.array_equal(np.asarray(position_ids_from_input_ids(IDS, 1, past)), reference(IDS, 1, past))
    assert np.asarray(position_ids_from_input_ids(IDS, 1))[1].tolist() == [2, 3, 4, 5, 6, 1, 1]


def test_return_dict_false_gives_hf_tuple_order(zoo):
    hf, ours, _ = zoo.get("XLMRobertaForCausalLM")
    kwargs = dict(INPUTS, output_hidden_states=True, use_cache=False)
    with torch.no_grad():
        theirs = hf(**to_torch(kwargs), return_dict=False)
    out = ours(**kwargs, return_dict=False)
    assert isinstance(out, tuple) and len(out) == len(theirs) == 2
    assert max_diff(out[0], theirs[0]) <= ATOL and max_diff(out[1], theirs[1]) <= ATOL


def test_config_output_flags_are_the_defaults(zoo):
    _, ours, _ = zoo.get("XLMRobertaForTokenClassification")
    model = F.XLMRobertaForTokenClassification(ours.config.replace(output_hidden_states=True, return_dict=False))
    out = model(**INPUTS)
    assert isinstance(out, tuple) and len(out) == 2 and len(out[1]) == SHAPE["num_hidden_layers"] + 1


# ------------------------------------------------------------------------------------------------ xlmr.pt parity
@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_outputs_match_xlmr_pt_on_the_same_checkpoint(zoo, architecture, position_embedding_type):
    pt = pytest.importorskip("xlmr.pt")
    _, ours, folder = zoo.get(architecture, position_embedding_type=position_embedding_type)
    theirs_model = getattr(pt, architecture).from_pretrained(folder)
    kwargs = dict(inputs_for(architecture), **LABELS[architecture], output_hidden_states=True,
                  output_attentions=True)
    with torch.no_grad():
        theirs = theirs_model(**to_torch(kwargs))
    out = ours(**kwargs)
    assert set(out.keys()) == set(theirs.keys())
    assert_outputs_match(out, theirs, [k for k in out.keys() if k != "past_key_values"])


def test_same_seed_gives_the_same_weights_as_xlmr_pt_and_hf_initialisation():
    pt = pytest.importorskip("xlmr.pt")
    config = tiny_config()
    ours = F.XLMRobertaForMaskedLM(config).canonical_state()  # no rngs: seed 0
    theirs = pt.XLMRobertaForMaskedLM(config, seed=0).canonical_state()
    assert list(ours) == list(parameter_shapes(config, "XLMRobertaForMaskedLM"))
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    # HF's init: normal(0, 0.02) matrices, zero biases, unit LayerNorm scales, zero padding rows.
    assert abs(ours["roberta.encoder.layer.0.attention.self.query.weight"].std() - 0.02) < 0.004
    assert not ours["lm_head.bias"].any() and (ours["roberta.embeddings.LayerNorm.weight"] == 1).all()
    assert not ours["roberta.embeddings.word_embeddings.weight"][config.pad_token_id].any()


def test_rngs_seed_the_initialisation():
    config = tiny_config()
    a = F.XLMRobertaModel(config, rngs=nnx.Rngs(params=1)).canonical_state()
    b = F.XLMRobertaModel(config, rngs=nnx.Rngs(params=1)).canonical_state()
    c = F.XLMRobertaModel(config, rngs=nnx.Rngs(params=2)).canonical_state()
    name = "encoder.layer.0.output.dense.weight"
    assert np.array_equal(a[name], b[name]) and not np.array_equal(a[name], c[name])


def test_parameter_paths_follow_the_flax_scheme():
    from xlmr.common.weights import to_scheme_name

    model = F.XLMRobertaForSequenceClassification(tiny_config(position_embedding_type="relative_key"))
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    expected = {to_scheme_name(n, "flax") for n in parameter_shapes(model.config, model.architecture)}
    assert paths == expected
    assert "roberta.encoder.layer.1.attention.self.distance_embedding.embedding" in paths
    assert "roberta.embeddings.LayerNorm.scale" in paths and "classifier.out_proj.kernel" in paths


# ------------------------------------------------------------------------------------------------ loading, saving
@pytest.mark.parametrize("format", ["safetensors", "pt", "tf", "flax"])
def test_save_pretrained_round_trips_every_format_and_hf_pytorch_reads_safetensors(zoo, tmp_path, format):
    hf, ours, _ = zoo.get("XLMRobertaForTokenClassification")
    ours.save_pretrained(tmp_path, format=format)
    back = F.XLMRobertaForTokenClassification.from_pretrained(tmp_path)
    assert max_diff(back(**INPUTS).logits, ours(**INPUTS).logits) == 0.0
    if format == "safetensors":
        assert "model.safetensors" in os.listdir(tmp_path)
        reloaded = transformers.XLMRobertaForTokenClassification.from_pretrained(tmp_path).eval()
        with torch.no_grad():
            assert max_diff(ours(**INPUTS).logits, reloaded(**to_torch(INPUTS)).logits) <= ATOL


def test_loads_pytorch_bin_and_flax_msgpack_written_by_hf(zoo, tmp_path):
    hf, ours, _ = zoo.get("XLMRobertaForMaskedLM")
    hf.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert "pytorch_model.bin" in os.listdir(tmp_path / "bin")
    from_bin = F.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "bin")
    ours.save_pretrained(tmp_path / "ours", format="flax")
    hf_flax, params = transformers.FlaxXLMRobertaForMaskedLM.from_pretrained(tmp_path / "ours", _do_init=False)
    hf_flax.save_pretrained(tmp_path / "msgpack", params=params)  # HF's own msgpack writer
    from_msgpack = F.XLMRobertaForMaskedLM.from_pretrained(tmp_path / "msgpack")
    with torch.no_grad():
        reference = hf(**to_torch(INPUTS)).logits
    for model in (from_bin, from_msgpack):
        assert max_diff(model(**INPUTS).logits, reference) <= ATOL


def test_new_head_is_initialised_with_a_warning_naming_it(zoo):
    _, _, folder = zoo.get("XLMRobertaForMaskedLM")
    with pytest.warns(UserWarning, match=r"newly initialised.*classifier\.out_proj\.weight"):
        model = F.XLMRobertaForSequenceClassification.from_pretrained(folder, num_labels=3)
    assert model(**INPUTS).logits.shape == (2, 3)
    # The encoder came from the checkpoint: same hidden states as the masked-LM model's encoder.
    _, mlm, _ = zoo.get("XLMRobertaForMaskedLM")
    h1 = model(**INPUTS, output_hidden_states=True).hidden_states[-1]
    h2 = mlm(**INPUTS, output_hidden_states=True).hidden_states[-1]
    assert max_diff(h1, h2) == 0.0


def test_missing_encoder_weight_and_misshaped_tensor_raise_naming_them(zoo, tmp_path):
    from safetensors.numpy import load_file, save_file

    _, _, folder = zoo.get("XLMRobertaModel")
    state = load_file(os.path.join(folder, "model.safetensors"))
    missing = {k: v for k, v in state.items() if k != "encoder.layer.1.output.dense.weight"}
    save_file(missing, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match=r"missing weight encoder\.layer\.1\.output\.dense\.weight"):
        F.XLMRobertaModel.from_pretrained(tmp_path)
    state["pooler.dense.weight"] = state["pooler.dense.weight"][:, :16].copy()
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"pooler\.dense\.weight has shape \(32, 16\)"):
        F.XLMRobertaModel.from_pretrained(tmp_path)
    model = F.XLMRobertaModel(tiny_config())
    with pytest.raises(WeightsError, match=r"missing weight pooler\.dense\.bias"):
        model.load_canonical_state({k: v for k, v in model.canonical_state().items() if k != "pooler.dense.bias"})


def test_param_dtype_is_the_storage_dtype_and_bf16_checkpoints_save_as_float32(zoo):
    import jax.numpy as jnp

    _, ours, folder = zoo.get("XLMRobertaModel")
    model = F.XLMRobertaModel.from_pretrained(folder, param_dtype=jnp.bfloat16)
    assert model.encoder.layer[0].attention.self.query.kernel[...].dtype == jnp.bfloat16
    state = model.canonical_state()
    assert state["pooler.dense.weight"].dtype == np.float32
    assert max_diff(state["pooler.dense.weight"], ours.canonical_state()["pooler.dense.weight"]) < 1e-2


# ------------------------------------------------------------------------------------------------ outputs as pytrees
def test_outputs_are_pytrees_with_their_field_names(zoo):
    _, ours, _ = zoo.get("XLMRobertaForQuestionAnswering")
    out = ours(**INPUTS, **LABELS["XLMRobertaForQuestionAnswering"])
    leaves, treedef = jax.tree_util.tree_flatten(out)
    assert len(leaves) == 3
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, out)
    assert type(doubled) is type(out) and list(doubled) == ["loss", "start_logits", "end_logits"]
    assert max_diff(doubled.start_logits, 2 * np.asarray(out.start_logits)) == 0.0
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(out)[0]]
    assert paths == [".loss", ".start_logits", ".end_logits"]


# ------------------------------------------------------------------------------------------------ bad inputs
def eager_message(config, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        check_inputs(config, **kwargs)
    return str(info.value)


# Each case spoils one tensor of a full set, so that checked_call compiles one program for all of them.
POSITIONS = np.broadcast_to(np.arange(2, 9), (2, 7))
GOOD = dict(input_ids=IDS, attention_mask=MASK, token_type_ids=TOKEN_TYPES, position_ids=POSITIONS)
BAD = {
    "input_ids": (dict(GOOD, input_ids=np.where(IDS == IDS[0, 3], 99, IDS)), "input_ids holds 99 at (0, 3)",
                  "vocab_size=99"),
    "token_type_ids": (dict(GOOD, token_type_ids=np.where(TOKEN_TYPES == 0, 0, 2)), "token_type_ids holds 2",
                       "type_vocab_size=2"),
    "position_ids": (dict(GOOD, position_ids=POSITIONS + 33), "position_ids holds 40 at (0, 5)",
                     "max_position_embeddings=40"),
    "negative id": (dict(GOOD, input_ids=np.where(IDS == IDS[1, 2], -4, IDS)), "input_ids holds -4 at (1, 2)",
                    "[0, 99)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_values_raise_the_common_message_naming_value_and_limit(zoo, case):
    kwargs, value, limit = BAD[case]
    _, ours, _ = zoo.get("XLMRobertaModel")
    with pytest.raises(ValueError) as info:
        ours(**kwargs)
    assert value in str(info.value) and limit in str(info.value)
    assert str(info.value) == eager_message(ours.config, **kwargs)
    # Under jit the values are unknown; checked_call checks them on device with the very same text.
    with pytest.raises(ValueError) as traced:
        F.checked_call(ours, **kwargs)
    assert str(traced.value) == str(info.value)


def test_jit_does_not_see_values_but_checked_call_passes_good_inputs_through(zoo):
    import jax.numpy as jnp

    _, ours, _ = zoo.get("XLMRobertaModel")
    forward = nnx.jit(lambda m, ids: m(input_ids=ids).last_hidden_state)
    forward(ours, BAD["input_ids"][0]["input_ids"])  # documented: no error under jit (JAX gathers do not raise)
    good = F.checked_call(ours, **GOOD)
    eager = ours(**{k: jnp.asarray(v) for k, v in GOOD.items()})  # JAX arrays work as numpy ones do
    assert max_diff(good.last_hidden_state, eager.last_hidden_state) <= ATOL
    assert max_diff(eager.last_hidden_state, ours(**GOOD).last_hidden_state) == 0.0


def test_checked_call_in_train_mode_draws_the_dropout_masks_an_eager_call_draws():
    import copy

    config = XLMRobertaConfig(**{**TINY, "type_vocab_size": 1})
    model = F.XLMRobertaModel(config)
    model.train()
    twin = copy.deepcopy(model)
    ids = np.array([[0, 5, 6, 7, 2]])
    for _ in range(2):  # the second call must see the rng state the first one advanced, in both
        checked = F.checked_call(model, input_ids=ids).last_hidden_state
        eager = twin(input_ids=ids).last_hidden_state
        assert max_diff(checked, eager) <= ATOL
    assert max_diff(F.checked_call(model, input_ids=ids).last_hidden_state, checked) > 1e-3  # new masks


def test_too_long_sequence_raises_eagerly_and_at_trace_time(zoo):
    _, ours, _ = zoo.get("XLMRobertaModel")
    config = ours.config
    long_ids = np.full((1, config.max_sequence_length + 1), 5)
    expected = eager_message(config, input_ids=long_ids)
    assert "exceeds the position limit 38" in expected and "39" in expected
    with pytest.raises(ValueError) as info:
        ours(input_ids=long_ids)
    assert str(info.value) == expected
    with pytest.raises(ValueError) as traced:  # shapes are static: checked while tracing
        nnx.jit(lambda m, ids: m(input_ids=ids).last_hidden_state)(ours, long_ids)
    assert str(traced.value) == expected


def test_mask_shape_and_multiple_choice_rank_errors(zoo):
    _, ours, _ = zoo.get("XLMRobertaModel")
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 6\)"):
        ours(input_ids=IDS, attention_mask=MASK[:, :6])
    _, mc, _ = zoo.get("XLMRobertaForMultipleChoice")
    with pytest.raises(ValueError, match=r"multiple choice takes input_ids of shape \(batch, num_choices"):
        mc(input_ids=IDS)


def test_arguments_past_config_are_keyword_only_and_question_answering_needs_two_labels():
    from xlmr.common.config import XLMRobertaConfig as Config

    config = Config(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
    with pytest.raises(TypeError):
        F.XLMRobertaModel(config, False)  # "no pooler" or "seed 0"? Neither: keywords only
    assert "pooler.dense.weight" not in F.XLMRobertaModel(config, seed=0, add_pooling_layer=False).canonical_state()
    with pytest.raises(ValueError, match="XLMRobertaForQuestionAnswering needs config.num_labels=2"):
        F.XLMRobertaForQuestionAnswering(config.replace(num_labels=3), seed=0)
