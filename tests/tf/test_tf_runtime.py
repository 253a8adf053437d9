"""xlmr.tf in every way TensorFlow runs it: numpy and tensor inputs, tf.function with unknown dimensions, XLA,
Keras fit on the model's own loss, SavedModel export, and bad input refused before any kernel in each mode.
Reference numbers come from HF transformers 4.57.6's PyTorch classes on the same checkpoint."""

from __future__ import annotations

import functools
import os
import re
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
torch = pytest.importorskip("torch")  # noqa: E402  (HF's reference classes are PyTorch)
transformers = pytest.importorskip("transformers")  # noqa: E402

import xlmr.tf as xtf  # noqa: E402
from reference import TINY  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.constants import TOLERANCE_FP32  # noqa: E402

TINY = {**TINY, "vocab_size": 100}
_WORKDIR = tempfile.TemporaryDirectory(prefix="xlmr_tf_runtime_")
IDS = np.array([[0, 5, 6, 7, 8, 9, 2], [0, 11, 12, 2, 1, 1, 1]], np.int32)
MASK = (IDS != 1).astype(np.int32)
INT32_IDS = tf.TensorSpec([None, None], tf.int32)


@functools.lru_cache(maxsize=None)
def models(architecture: str, **overrides):
    """(HF PyTorch model, xlmr.tf model loaded from the checkpoint HF wrote)."""
    config = transformers.XLMRobertaConfig(**{**TINY, **overrides})
    torch.manual_seed(0)
    hf = getattr(transformers, architecture)(config).eval()
    folder = tempfile.mkdtemp(dir=_WORKDIR.name)
    hf.save_pretrained(folder)
    return hf, getattr(xtf, architecture).from_pretrained(folder)


def hf_logits(hf, ids, mask=None, field="logits"):
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(np.asarray(ids, np.int64)),
                 attention_mask=None if mask is None else torch.tensor(np.asarray(mask, np.int64)))
    return getattr(out, field).numpy()


def close(a, b, tol=TOLERANCE_FP32):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=0)


# ------------------------------------------------------------------------------------------------ execution modes
def test_numpy_arrays_and_tf_tensors_of_any_int_dtype_give_hf_outputs():
    hf, model = models("XLMRobertaForMaskedLM", position_embedding_type="relative_key_query")
    expected = hf_logits(hf, IDS, MASK)
    close(model(input_ids=IDS.astype(np.int64), attention_mask=MASK).logits, expected)
    close(model(input_ids=tf.constant(IDS), attention_mask=tf.constant(MASK, tf.float32)).logits, expected)
    close(model({"input_ids": IDS, "attention_mask": MASK}).logits, expected)


def test_tf_function_with_unknown_dimensions_matches_eager_and_traces_once_for_two_lengths():
    hf, model = models("XLMRobertaForMaskedLM", position_embedding_type="relative_key_query")
    traces = []

    @tf.function(input_signature=[INT32_IDS, INT32_IDS])
    def logits(input_ids, attention_mask):
        traces.append(1)
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    close(logits(IDS, MASK), hf_logits(hf, IDS, MASK))
    close(logits(IDS[:, :4], MASK[:, :4]), hf_logits(hf, IDS[:, :4], MASK[:, :4]))
    assert len(traces) == 1 and logits.experimental_get_tracing_count() == 1


def test_jit_compiled_function_matches_eager():
    hf, model = models("XLMRobertaForSequenceClassification", position_embedding_type="relative_key")
    compiled = tf.function(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits, jit_compile=True,
                           input_signature=[INT32_IDS, INT32_IDS])
    close(compiled(IDS, MASK), hf_logits(hf, IDS, MASK))
    close(compiled(IDS, MASK), model(input_ids=IDS, attention_mask=MASK).logits)
    close(compiled(IDS[:, :3], MASK[:, :3]), hf_logits(hf, IDS[:, :3], MASK[:, :3]))
    assert compiled.experimental_get_tracing_count() == 1


def test_compiled_call_matches_hf_and_traces_once_for_two_lengths():
    hf, model = models("XLMRobertaForTokenClassification", num_labels=5)
    close(xtf.checked_call(model, input_ids=IDS, attention_mask=MASK).logits, hf_logits(hf, IDS, MASK))
    close(model.compiled_call(input_ids=IDS[:, :5], attention_mask=MASK[:, :5]).logits,
          hf_logits(hf, IDS[:, :5], MASK[:, :5]))
    functions = list(model._xla.functions.values())
    assert len(functions) == 1 and functions[0].experimental_get_tracing_count() == 1


def test_cached_decoding_under_xla_matches_hf_full_pass():
    hf, model = models("XLMRobertaForCausalLM", is_decoder=True)
    ids = np.array([[0, 5, 6]], np.int32)  # XLA compiles once per cache length: keep it short
    past, steps = None, []
    for t in range(ids.shape[1]):
        step = model.compiled_call(input_ids=ids[:, t:t + 1], past_key_values=past, use_cache=True)
        past, steps = step.past_key_values, steps + [step.logits.numpy()]
    close(np.concatenate(steps, 1), hf_logits(hf, ids))


# ------------------------------------------------------------------------------------------------ Keras training
def _presence_task(n, length=10, seed=0):
    """Label = whether token 7 occurs: learnable from the tokens alone; half the examples have it."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(8, 100, (n, length)).astype(np.int32)
    ids[:, 0] = 0
    has = rng.random(n) < 0.5
    ids[has, rng.integers(1, length, has.sum())] = 7
    return ids, has.astype(np.int32)


def test_fit_on_the_models_own_loss_learns_a_small_task_and_evaluate_agrees_with_hf():
    keras.utils.set_random_seed(0)
    config = XLMRobertaConfig(**TINY, num_labels=2)
    model = xtf.XLMRobertaForSequenceClassification(config, seed=0)
    ids, labels = _presence_task(512)
    # Labels as the dataset's target: compute_loss applies the model's own (HF) loss.
    data = tf.data.Dataset.from_tensor_slices(({"input_ids": ids}, labels)).batch(32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(data, epochs=4, verbose=0, shuffle=False).history["loss"]
    assert history[0] > 0.5 and history[-1] < 0.5 * history[0], history  # chance level is ln 2 = 0.69

    # Labels inside the inputs dict: the forward pass computes the loss; one batch, so it is HF's batch loss.
    folder = tempfile.mkdtemp(dir=_WORKDIR.name)
    model.save_pretrained(folder)
    hf = transformers.XLMRobertaForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = hf(input_ids=torch.tensor(ids[:64].astype(np.int64)),
                      labels=torch.tensor(labels[:64].astype(np.int64))).loss
    batch = tf.data.Dataset.from_tensor_slices({"input_ids": ids[:64], "labels": labels[:64]}).batch(64)
    assert abs(model.evaluate(batch, verbose=0) - float(expected)) < 1e-5


def test_question_answering_trains_with_positions_as_the_target():
    config = XLMRobertaConfig(**TINY, num_labels=2)
    model = xtf.XLMRobertaForQuestionAnswering(config, seed=0)
    ids, _ = _presence_task(64)
    starts, ends = np.full(64, 2, np.int32), np.full(64, 3, np.int32)
    target = {"start_positions": starts, "end_positions": ends}
    data = tf.data.Dataset.from_tensor_slices(({"input_ids": ids}, target)).batch(64)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(model(input_ids=ids, start_positions=starts, end_positions=ends).loss)
    assert abs(before - np.log(10)) < 0.1  # a freshly initialised head is near uniform over 10 positions
    model.fit(data, epochs=5, verbose=0, shuffle=False)
    assert float(model(input_ids=ids, start_positions=starts, end_positions=ends).loss) < 0.5 * before


# ------------------------------------------------------------------------------------------------ export
def test_saved_model_round_trip_gives_identical_outputs():
    hf, model = models("XLMRobertaForSequenceClassification", position_embedding_type="relative_key")
    path = os.path.join(_WORKDIR.name, "saved")
    model.export_saved_model(path)
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](input_ids=tf.constant(IDS), attention_mask=tf.constant(MASK))
    np.testing.assert_array_equal(served["logits"].numpy(),
                                  model.serving_signature()(tf.constant(IDS), tf.constant(MASK))["logits"].numpy())
    close(served["logits"], hf_logits(hf, IDS, MASK))
    close(loaded.serve(tf.constant(IDS[:1, :4]), tf.constant(MASK[:1, :4]))["logits"],
          hf_logits(hf, IDS[:1, :4], MASK[:1, :4]))
    with pytest.raises(FileExistsError):
        model.export_saved_model(path)
    model.export_saved_model(path, overwrite=True)


# ------------------------------------------------------------------------------------------------ bad input
def _bad_inputs():
    too_high = IDS.copy()
    too_high[1, 2] = 150
    negative = IDS.copy()
    negative[0, 4] = -3
    types = np.zeros_like(IDS)
    types[1, 5] = 2
    return [
        (dict(input_ids=too_high), "input_ids holds 150 at (1, 2), outside [0, 100) set by config.vocab_size=100"),
        (dict(input_ids=negative), "input_ids holds -3 at (0, 4), outside [0, 100) set by config.vocab_size=100"),
        (dict(input_ids=IDS, token_type_ids=types),
         "token_type_ids holds 2 at (1, 5), outside [0, 2) set by config.type_vocab_size=2"),
        (dict(input_ids=np.zeros((1, 39), np.int32)),
         "sequence length 39 exceeds the position limit 38 (config.max_position_embeddings=40 minus "
         "pad_token_id+1=2)"),
    ]


@pytest.mark.parametrize("inputs,message", _bad_inputs())
def test_bad_input_raises_value_error_eagerly_and_under_compiled_call(inputs, message):
    _, model = models("XLMRobertaForMaskedLM")
    with pytest.raises(ValueError) as raised:
        model(**inputs)
    assert str(raised.value) == message
    with pytest.raises(ValueError) as raised:
        model(**{k: v.tolist() for k, v in inputs.items()})  # nested lists, too
    assert str(raised.value) == message
    with pytest.raises(ValueError) as raised:
        model.compiled_call(**inputs)
    assert str(raised.value) == message


@pytest.mark.parametrize("inputs,message", _bad_inputs())
def test_bad_input_inside_tf_function_fails_with_the_same_message(inputs, message):
    _, model = models("XLMRobertaForMaskedLM")
    signature = [INT32_IDS, INT32_IDS]

    @tf.function(input_signature=signature)
    def logits(input_ids, token_type_ids):
        return model(input_ids=input_ids, token_type_ids=token_type_ids).logits

    types = inputs.get("token_type_ids", np.zeros_like(inputs["input_ids"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(f"assertion failed: [{message}]")):
        logits(inputs["input_ids"], types)


def test_bad_ids_inside_a_users_own_xla_function_give_nan_not_plausible_numbers():
    _, model = models("XLMRobertaForMaskedLM")
    compiled = tf.function(lambda ids: model(input_ids=ids).logits, jit_compile=True)
    assert np.isfinite(compiled(tf.constant(IDS)).numpy()).all()
    bad = IDS.copy()
    bad[1, 2] = 150
    assert np.isnan(compiled(tf.constant(bad)).numpy()).all()


def test_multiple_choice_and_mask_shape_errors_name_the_shapes():
    _, model = models("XLMRobertaForMultipleChoice")
    with pytest.raises(ValueError, match=r"multiple choice takes input_ids of shape \(batch, num_choices, "
                                         r"sequence\), got \(2, 7\)"):
        model(input_ids=IDS)
    _, model = models("XLMRobertaModel")
    with pytest.raises(ValueError, match=re.escape("attention_mask has shape (2, 5), expected (batch, past + "
                                                   "sequence) = (2, 7)")):
        model(input_ids=IDS, attention_mask=MASK[:, :5])

    @tf.function(input_signature=[INT32_IDS, INT32_IDS])
    def hidden(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("attention_mask has shape (2, 5), expected "
                                                                       "(batch, past + sequence) = (2, 7)")):
        hidden(IDS, MASK[:, :5])
