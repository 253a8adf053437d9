"""The input contract, the same in every installed backend: each bad input gets one ValueError whose text is
identical in xlmr.pt, xlmr.tf and xlmr.flax (the text comes from xlmr.common.inputs), before any kernel runs.

Every case is run in each backend and its message compared with one written out here, so a backend that drifts
(a raw framework error, a silent result, other wording) fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from xlmr import XLMRobertaConfig
from xlmr.backends import call_model, import_backend, installed_backends, model_class, to_backend, to_numpy

BACKENDS = installed_backends()
CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=40, type_vocab_size=2)
IDS = np.array([[0, 5, 6, 7, 2], [0, 8, 9, 2, 1]])
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])

_models: dict = {}


def model(backend: str, decoder: bool = False):
    """One tiny model per backend and kind, built once (seeded, so every backend's numbers are reproducible)."""
    key = (backend, decoder)
    if key not in _models:
        config = XLMRobertaConfig(**CONFIG, is_decoder=decoder)
        architecture = "XLMRobertaForCausalLM" if decoder else "XLMRobertaModel"
        built = model_class(backend, architecture)(config, seed=0)
        if backend == "pt":
            built.eval()
        _models[key] = built
    return _models[key]


def _tensors(backend: str, value):
    """numpy arrays, and tuples of them (a cache), as the backend's tensors."""
    if isinstance(value, tuple):
        return tuple(_tensors(backend, v) for v in value)
    return to_backend(backend, value) if isinstance(value, np.ndarray) else value


def run(backend: str, m, inputs: dict, **flags):
    """``xlmr.backends.call_model``, with caches (nested tuples) converted too."""
    if "past_key_values" not in inputs:
        return call_model(backend, m, inputs, **flags)
    tensors = {k: _tensors(backend, v) for k, v in inputs.items()}
    if backend == "tf":
        flags["training"] = False
    return m(**tensors, **flags)


def message_of(backend: str, inputs: dict, decoder: bool = False, **flags) -> str:
    with pytest.raises(ValueError) as e:
        run(backend, model(backend, decoder), inputs, **flags)
    return str(e.value)


pytestmark = pytest.mark.parametrize("backend", BACKENDS, ids=[f"backend_{b}" for b in BACKENDS])


# ---------------------------------------------------------------------------------------------- empty inputs
@pytest.mark.parametrize("inputs,expected", [
    (dict(input_ids=np.zeros((0, 5), np.int64)),
     "input_ids has shape (0, 5): no sequences (batch 0); a model call needs at least one token"),
    (dict(input_ids=np.zeros((2, 0), np.int64)),
     "input_ids has shape (2, 0): no tokens (sequence length 0); a model call needs at least one token"),
    (dict(input_ids=np.zeros((2, 0), np.int64), attention_mask=np.zeros((2, 0), np.int64)),
     "input_ids has shape (2, 0): no tokens (sequence length 0); a model call needs at least one token"),
    (dict(inputs_embeds=np.zeros((0, 3, 32), np.float32)),
     "inputs_embeds has shape (0, 3, 32): no sequences (batch 0); a model call needs at least one token"),
])
def test_empty_inputs_raise_the_same_value_error(backend, inputs, expected):
    assert message_of(backend, inputs) == expected


# ---------------------------------------------------------------------------------------------- attention mask
MASK_RULE = "which is neither 0 (masked) nor 1 (attended); HF masks out every value but 1, xlmr every value but 0, " \
            "so any other value is refused"


@pytest.mark.parametrize("mask,expected", [
    (np.array([[1, 2, 1, 1, 1], [1, 1, 1, 1, 0]]), "attention_mask holds 2 at (0, 1), "),
    (np.array([[1, 1, 1, 1, 1], [1, 1, 1, -1, 0]]), "attention_mask holds -1 at (1, 3), "),
    (np.array([[1, 1, 1, 1, 0.5], [1, 1, 1, 1, 0]], np.float32), "attention_mask holds 0.5 at (0, 4), "),
])
def test_mask_values_outside_zero_and_one_are_named_with_their_index(backend, mask, expected):
    assert message_of(backend, dict(input_ids=IDS, attention_mask=mask)) == expected + MASK_RULE


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.float32])
def test_masks_of_zeros_and_ones_in_any_dtype_give_the_int_mask_result(backend, dtype):
    m = model(backend)
    reference = to_numpy(backend, call_model(backend, m, dict(input_ids=IDS, attention_mask=MASK)).last_hidden_state)
    out = call_model(backend, m, dict(input_ids=IDS, attention_mask=MASK.astype(dtype))).last_hidden_state
    np.testing.assert_allclose(to_numpy(backend, out), reference, atol=1e-6)


BAD_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 2, 1, 0]])
TRACED_CASES = [(dict(input_ids=IDS, attention_mask=BAD_MASK), "attention_mask holds 2 at (1, 2), " + MASK_RULE),
                (dict(input_ids=IDS, attention_mask=BAD_MASK.astype(np.float32) / 4),
                 "attention_mask holds 0.25 at (0, 0), " + MASK_RULE),
                (dict(input_ids=IDS.copy(), attention_mask=MASK), None)]  # ids made bad below: the reference check
TRACED_CASES[2][0]["input_ids"][0, 3] = 120


@pytest.mark.parametrize("inputs,expected", TRACED_CASES)
def test_checked_call_checks_mask_values_as_it_checks_ids(backend, inputs, expected):
    """Compiled calls (tf ``compiled_call``, flax ``checked_call`` with checkify) raise the eager message."""
    if backend == "pt":
        pytest.skip("PyTorch runs eagerly: the eager checks above are its only checks")
    expected = expected or "input_ids holds 120 at (0, 3), outside [0, 99) set by config.vocab_size=99"
    with pytest.raises(ValueError) as e:
        import_backend(backend).checked_call(model(backend), **{k: to_backend(backend, v) for k, v in inputs.items()})
    assert str(e.value) == expected


@pytest.mark.parametrize("inputs,expected", TRACED_CASES[:2])
def test_tf_function_asserts_mask_values_with_the_same_text(backend, inputs, expected):
    if backend != "tf":
        pytest.skip("tf.function graphs only")
    import tensorflow as tf
    m = model(backend)
    spec = tf.TensorSpec([None, None], tf.int64)
    mask_spec = tf.TensorSpec([None, None], tf.as_dtype(inputs["attention_mask"].dtype))
    traced = tf.function(lambda ids, mask: m(input_ids=ids, attention_mask=mask).last_hidden_state,
                         input_signature=[spec, mask_spec])
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        traced(inputs["input_ids"], inputs["attention_mask"])
    assert expected in e.value.message
    # XLA drops asserts: there a bad mask, like a bad id, poisons the output with NaN instead.
    compiled = tf.function(lambda ids, mask: m(input_ids=ids, attention_mask=mask).last_hidden_state,
                           jit_compile=True)
    assert np.isnan(compiled(inputs["input_ids"], inputs["attention_mask"]).numpy()).all()
    assert not np.isnan(compiled(inputs["input_ids"], MASK.astype(inputs["attention_mask"].dtype)).numpy()).any()
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        traced(np.zeros((2, 0), np.int64), np.zeros((2, 0), inputs["attention_mask"].dtype))
    assert "input_ids has shape (2, 0): no tokens (sequence length 0)" in e.value.message


# ---------------------------------------------------------------------------------------------- id dtypes
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.uint64])
def test_ids_of_every_integer_dtype_give_the_int64_result(backend, dtype):
    m = model(backend)
    reference = to_numpy(backend, call_model(backend, m, dict(input_ids=IDS)).last_hidden_state)
    inputs = dict(input_ids=IDS.astype(dtype), token_type_ids=np.zeros_like(IDS, dtype),
                  position_ids=np.broadcast_to(np.arange(2, 7, dtype=dtype), IDS.shape))
    # The positions given are those the model derives for row 0 (no padding there).
    explicit = to_numpy(backend, call_model(backend, m, inputs).last_hidden_state)
    np.testing.assert_allclose(explicit[0], reference[0], atol=1e-5)
    implicit = to_numpy(backend, call_model(backend, m, dict(input_ids=IDS.astype(dtype))).last_hidden_state)
    np.testing.assert_allclose(implicit, reference, atol=1e-6)


@pytest.mark.parametrize("name", ["input_ids", "token_type_ids", "position_ids"])
@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_non_integer_ids_name_the_tensor_and_dtype(backend, name, dtype):
    inputs = dict(input_ids=IDS)
    inputs[name] = (IDS if name == "input_ids" else np.ones_like(IDS)).astype(dtype)
    assert message_of(backend, inputs) == f"{name} must hold integers, got dtype {np.dtype(dtype).name}"


def test_out_of_range_unsigned_ids_are_caught_before_any_cast(backend):
    ids = IDS.astype(np.uint8)
    ids[1, 2] = 200
    assert message_of(backend, dict(input_ids=ids)) == \
        "input_ids holds 200 at (1, 2), outside [0, 99) set by config.vocab_size=99"


# ---------------------------------------------------------------------------------------------- past_key_values
def _cache(layers: int = 2, shape=(2, 4, 3, 8), **changed) -> tuple:
    """A legacy cache of zeros; ``changed`` maps "layer,part" to another shape for that one tensor."""
    return tuple(tuple(np.zeros(changed.get(f"{i},{j}", shape), np.float32) for j in range(2)) for i in range(layers))


@pytest.mark.parametrize("cache,expected", [
    (_cache(layers=1), "past_key_values has 1 layers; the model has num_hidden_layers=2, each a tuple (key, value) "
                       "of shape (batch, heads, past, head_dim)"),
    (_cache(layers=3), "past_key_values has 3 layers; the model has num_hidden_layers=2"),
    (_cache(**{"0,1": (2, 4, 3, 7)}), "past_key_values[0][1] (value of layer 0) has shape (2, 4, 3, 7), expected "
                                      "(2, 4, 3, 8): (batch, num_attention_heads, past length, head_dim)"),
    (_cache(**{"1,0": (2, 4, 5, 8)}), "past_key_values[1][0] (key of layer 1) has shape (2, 4, 5, 8), expected "
                                      "(2, 4, 3, 8)"),
    (_cache(shape=(1, 4, 3, 8)), "past_key_values[0][0] (key of layer 0) has shape (1, 4, 3, 8), expected "
                                 "(2, 4, ?, 8)"),
    (_cache(shape=(2, 2, 3, 16)), "past_key_values[0][0] (key of layer 0) has shape (2, 2, 3, 16), expected "
                                  "(2, 4, ?, 8)"),
    (_cache(shape=(2, 4, 8)), "past_key_values[0][0] (key of layer 0) has shape (2, 4, 8), expected (2, 4, ?, 8)"),
    (tuple((np.zeros((2, 4, 3, 8), np.float32),) for _ in range(2)),
     "past_key_values[0] holds 1 tensors; a layer's entry is (key, value), or (key, value, cross-attention key, "
     "cross-attention value)"),
])
def test_malformed_cache_names_past_key_values_layer_and_shapes(backend, cache, expected):
    inputs = dict(input_ids=IDS[:, :2], past_key_values=cache)
    assert message_of(backend, inputs, decoder=True, use_cache=True).startswith(expected)


def test_a_well_formed_cache_is_accepted_and_extends(backend):
    out = run(backend, model(backend, True), dict(input_ids=IDS[:, :2], past_key_values=_cache()), use_cache=True)
    assert tuple(np.shape(out.past_key_values[1][0])) == (2, 4, 5, 8)


def test_flax_kv_cache_is_checked_like_a_tuple_cache(backend):
    if backend != "flax":
        pytest.skip("KVCache is flax's preallocated cache")
    import jax.numpy as jnp
    m = model(backend, True)
    cache = m.init_cache(2, 8)
    mask = np.ones((2, 8), np.int64)
    mask[1, 6] = 3
    assert message_of(backend, dict(input_ids=IDS[:, :2], attention_mask=mask, past_key_values=cache),
                      decoder=True) == "attention_mask holds 3 at (1, 6), " + MASK_RULE
    short = type(cache)(layers=cache.layers[:1], index=cache.index)
    with pytest.raises(ValueError, match=r"^past_key_values has 1 layers; the model has num_hidden_layers=2"):
        m(input_ids=jnp.asarray(IDS[:, :2]), past_key_values=short)


# ---------------------------------------------------------------------------------------------- encode_batched
@pytest.mark.parametrize("kwargs,expected", [
    (dict(max_tokens=0), "max_tokens=0 must be a positive integer"),
    (dict(max_tokens=-8), "max_tokens=-8 must be a positive integer"),
    (dict(max_batch=0), "max_batch=0 must be a positive integer"),
    (dict(max_batch=2.5), "max_batch=2.5 must be a positive integer"),
])
def test_encode_batched_refuses_limits_that_make_no_progress(backend, kwargs, expected):
    encode_batched = import_backend(backend).encode_batched
    for sequences in ([[0, 5, 2], [0, 6, 7, 2]], []):
        with pytest.raises(ValueError) as e:
            encode_batched(model(backend), sequences, **kwargs)
        assert str(e.value) == expected
