"""The backend contract: every check here runs once per installed backend (the ``backend`` fixture), through the
public API only (``Cls(config, seed=...)``, ``from_pretrained``, ``save_pretrained``, HF's argument and output
names), with numpy in and numpy out through the adapters in conftest.py.

* every class agrees with HF 4.57.6's PyTorch class on every output (logits, hidden states, attentions, loss);
* ``save_pretrained`` in each of the four formats and ``from_pretrained`` give back the same bytes and outputs;
* bad inputs raise the same one-line message in every backend (the text of ``xlmr.common.inputs``);
* decoding token by token with ``past_key_values`` gives the logits of one causal pass;
* one SGD step gives HF's loss and HF's updated weights;
* a missing or mis-shaped encoder weight raises naming it; a missing head is initialised with a warning naming it.

Numbers come from HF (torch and transformers; skipped without them) or from ``xlmr.common`` (no framework), never
from the backend under test.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from reference import ATOL, CLASSES, labels_for, numpy_batch, tiny_config

from xlmr.common.checkpoint import FORMATS, read_checkpoint, save_pretrained
from xlmr.common.init import initial_weights
from xlmr.common.inputs import out_of_range_message, sequence_too_long_message
from xlmr.common.weights import parameter_shapes

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
FLAGS = dict(output_hidden_states=True, output_attentions=True)


def short(name: str) -> str:
    return name.removeprefix("XLMRoberta")


def class_inputs(name: str, config, labels: bool = True) -> dict[str, np.ndarray]:
    """A padded batch (left and right padding, both token types) for the class, with its labels."""
    inputs = numpy_batch(config, choices=2 if name == "XLMRobertaForMultipleChoice" else None)
    return {**inputs, **(labels_for(name, config, inputs) if labels else {})}


def worst(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> tuple[float, str]:
    """The largest absolute difference over the outputs both hold, and the output it is in."""
    diffs = {k: float(np.max(np.abs(ours[k] - theirs[k]), initial=0.0)) for k in theirs}
    name = max(diffs, key=diffs.get)
    return diffs[name], name


# ------------------------------------------------------------------------------------------------ HF parity
PARITY = [pytest.param(n, "absolute", id=short(n)) for n in CLASSES]
PARITY += [pytest.param("XLMRobertaForMaskedLM", p, id=f"MaskedLM-{p}") for p in ("relative_key", "relative_key_query")]


@pytest.mark.parametrize("name, position", PARITY)
def test_every_class_gives_hf_pytorch_outputs_hidden_states_attentions_and_loss(ops, hf_checkpoint, name, position):
    extra = dict(is_decoder=True) if name == "XLMRobertaForCausalLM" else {}
    hf, folder, config = hf_checkpoint(name, position_embedding_type=position, **extra)
    inputs = class_inputs(name, config)
    expected = ops.hf_outputs(hf, inputs, **FLAGS)
    got = ops.outputs(ops.from_pretrained(name, folder), inputs, **FLAGS)

    assert set(got) == set(expected), f"outputs {sorted(got)} vs HF's {sorted(expected)}"
    assert {"hidden_states.2", "attentions.1"} <= set(got) and ("loss" in got) == (name != "XLMRobertaModel")
    diff, where = worst(got, expected)
    assert diff <= ATOL, f"{where} differs from HF by {diff:.3g}"


# ------------------------------------------------------------------------------------------------ files
ROUND_TRIPS = [  # together they hold every kind of weight: an own decoder matrix, distance tables, the pooler
    pytest.param("XLMRobertaForMaskedLM", dict(tie_word_embeddings=False, position_embedding_type="relative_key_query"),
                 id="MaskedLM-untied-relative"),
    pytest.param("XLMRobertaForMultipleChoice", {}, id="MultipleChoice"),
]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name, overrides", ROUND_TRIPS)
def test_save_pretrained_then_from_pretrained_gives_back_the_same_tensors_and_outputs(ops, tmp_path, format, name,
                                                                                       overrides):
    config = tiny_config(name, **overrides)
    source = tmp_path / "source"
    # The weights come from xlmr.common (no backend), with noise so that no tensor is 0 or 1 everywhere.
    rng = np.random.default_rng(0)
    state = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
             for k, v in initial_weights(parameter_shapes(config, name), config, 0).items()}
    save_pretrained(source, config, state, name)
    model = ops.from_pretrained(name, str(source))
    inputs = class_inputs(name, config)
    before = ops.outputs(model, inputs)

    saved = tmp_path / format
    model.save_pretrained(saved, format=format)
    stored = read_checkpoint(saved)
    for key, array in state.items():
        assert key in stored, f"{format}: {key} was not written"
        assert stored[key].dtype == np.float32 and np.array_equal(stored[key], array), f"{format}: {key} changed"
    assert json.loads((saved / "config.json").read_text())["tie_word_embeddings"] == config.tie_word_embeddings

    after = ops.outputs(ops.from_pretrained(name, str(saved)), inputs)
    assert set(after) == set(before) and worst(after, before)[0] == 0.0


# ------------------------------------------------------------------------------------------------ input errors
def _ids(config, length=9):
    return numpy_batch(config, length=length)


BAD_INPUTS = {
    "id-out-of-range": (lambda c: {**_ids(c), "input_ids": np.where(np.arange(9) == 4, c.vocab_size, _ids(c)["input_ids"])},
                        lambda c: out_of_range_message("input_ids", c.vocab_size, (0, 4), 0, c.vocab_size, "vocab_size")),
    "negative-id": (lambda c: {"input_ids": np.full((2, 5), 5) - 6 * np.eye(2, 5, 3, dtype=np.int64)},
                    lambda c: out_of_range_message("input_ids", -1, (0, 3), 0, c.vocab_size, "vocab_size")),
    "token-type-out-of-range": (
        lambda c: {**_ids(c), "token_type_ids": np.full((3, 9), c.type_vocab_size)},
        lambda c: out_of_range_message("token_type_ids", c.type_vocab_size, (0, 0), 0, c.type_vocab_size,
                                       "type_vocab_size")),
    "too-long": (lambda c: _ids(c, c.max_sequence_length + 1),
                 lambda c: sequence_too_long_message(c.max_sequence_length + 1, 0, c)),
    "mask-shape": (lambda c: {**_ids(c), "attention_mask": np.ones((3, 8), np.int64)},
                   lambda c: "attention_mask has shape (3, 8), expected (batch, past + sequence) = (3, 9)"),
    "token-type-shape": (lambda c: {**_ids(c), "token_type_ids": np.zeros((3, 8), np.int64)},
                         lambda c: "token_type_ids has shape (3, 8), input has (3, 9)"),
    "ids-rank": (lambda c: {"input_ids": np.zeros((9,), np.int64) + 5},
                 lambda c: "input_ids must have shape (batch, sequence), got (9,)"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_the_same_one_line_message_in_every_backend(ops, case):
    config = tiny_config()
    make, message = BAD_INPUTS[case]
    model = ops.build("XLMRobertaForMaskedLM", config, seed=0)
    with pytest.raises(ValueError) as error:
        ops.call(model, make(config))
    assert str(error.value) == message(config)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ cache
@pytest.mark.parametrize("position", ["absolute", "relative_key_query"])
def test_decoding_token_by_token_with_the_cache_gives_the_logits_of_one_causal_pass(ops, position):
    name = "XLMRobertaForCausalLM"
    config = tiny_config(name, is_decoder=True, position_embedding_type=position)
    model = ops.build(name, config, seed=3)
    ids = np.random.default_rng(1).integers(3, config.vocab_size, (2, 8))
    full = ops.numpy(ops.call(model, {"input_ids": ids}, use_cache=False).logits)

    out = ops.call(model, {"input_ids": ids[:, :3]}, use_cache=True)  # a prompt, then one token at a time
    steps = [ops.numpy(out.logits)]
    for t in range(3, ids.shape[1]):
        out = ops.call(model, {"input_ids": ids[:, t:t + 1]}, past_key_values=out.past_key_values, use_cache=True)
        steps.append(ops.numpy(out.logits))
    cached = np.concatenate(steps, axis=1)

    assert cached.shape == full.shape == (2, 8, config.vocab_size)
    assert np.max(np.abs(cached - full)) <= ATOL
    # Causal: the prompt's logits do not depend on the tokens after it.
    other = ids.copy()
    other[:, 3:] = (other[:, 3:] + 1 - 3) % (config.vocab_size - 3) + 3
    changed = ops.numpy(ops.call(model, {"input_ids": other}, use_cache=False).logits)
    assert np.max(np.abs(changed[:, :3] - full[:, :3])) <= ATOL and np.max(np.abs(changed[:, 3:] - full[:, 3:])) > 1e-3
    # The cache holds (key, value) per layer, (batch, heads, length, head size) as HF's legacy layout.
    assert len(out.past_key_values) == config.num_hidden_layers
    assert tuple(ops.numpy(out.past_key_values[0][0]).shape) == (2, config.num_attention_heads, 8,
                                                                 config.hidden_size // config.num_attention_heads)


# ------------------------------------------------------------------------------------------------ training
LR = 0.5


@pytest.mark.parametrize("name", ["XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification"], ids=short)
def test_one_sgd_step_gives_hf_pytorch_loss_and_updated_weights(ops, hf_checkpoint, tmp_path, name):
    shared, folder, config = hf_checkpoint(name, **NO_DROPOUT)
    hf = type(shared).from_pretrained(folder, attn_implementation="eager")  # a copy to train: the fixture's is shared
    model = ops.from_pretrained(name, folder)
    inputs = class_inputs(name, config)
    initial = read_checkpoint(folder)

    hf_loss = ops.hf_sgd_step(hf, inputs, LR)
    loss = ops.sgd_step(model, inputs, LR)
    assert abs(loss - hf_loss) <= ATOL, f"loss {loss} vs HF's {hf_loss}"

    model.save_pretrained(tmp_path, format="safetensors")
    updated = read_checkpoint(tmp_path)
    reference = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    names = set(parameter_shapes(config, name))
    assert names <= set(updated)
    diffs = {k: float(np.max(np.abs(updated[k] - reference[k]))) for k in names}
    where = max(diffs, key=diffs.get)
    assert diffs[where] <= ATOL, f"{where} differs from HF's after one step by {diffs[where]:.3g}"
    moved = max(float(np.max(np.abs(updated[k] - initial[k]))) for k in names)
    assert moved > 1e-3, "the step did not change the weights: the comparison would be of two untouched models"


# ------------------------------------------------------------------------------------------------ weight errors
def write_checkpoint(folder, config, name: str, drop: str | None = None, reshape: str | None = None) -> dict:
    """A safetensors checkpoint of ``name`` from the common init, written without any checks (the common writer
    refuses broken states), optionally without one tensor or with one tensor cut short."""
    from safetensors.numpy import save_file

    state = initial_weights(parameter_shapes(config, name), config, 0)
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = np.ascontiguousarray(state[reshape][..., :-1])
    os.makedirs(folder, exist_ok=True)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    return state


def test_a_missing_encoder_weight_raises_naming_it(ops, tmp_path):
    config = tiny_config()
    missing = "roberta.encoder.layer.1.intermediate.dense.weight"
    write_checkpoint(tmp_path, config, "XLMRobertaForMaskedLM", drop=missing)
    with pytest.raises(ValueError, match=r"missing.*roberta\.encoder\.layer\.1\.intermediate\.dense\.weight") as error:
        ops.from_pretrained("XLMRobertaForMaskedLM", str(tmp_path))
    assert "model.safetensors" in str(error.value) and "(37, 32)" in str(error.value)


def test_a_mis_shaped_tensor_raises_naming_it_and_both_shapes(ops, tmp_path):
    config = tiny_config()
    bad = "encoder.layer.0.attention.self.query.weight"  # the base model's names have no roberta. prefix
    write_checkpoint(tmp_path, config, "XLMRobertaModel", reshape=bad)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.attention\.self\.query\.weight") as error:
        ops.from_pretrained("XLMRobertaModel", str(tmp_path))
    assert "(32, 31)" in str(error.value) and "(32, 32)" in str(error.value)


def test_a_missing_head_is_initialised_from_the_seed_with_a_warning_naming_it(ops, tmp_path):
    config = tiny_config()
    state = write_checkpoint(tmp_path / "mlm", config, "XLMRobertaForMaskedLM")
    name = "XLMRobertaForSequenceClassification"
    with pytest.warns(UserWarning, match="newly initialised") as record:
        model = ops.from_pretrained(name, str(tmp_path / "mlm"), seed=5)
    message = " ".join(str(w.message) for w in record)
    head = [k for k in parameter_shapes(config, name) if k.startswith("classifier.")]
    assert head and all(k in message for k in head) and "roberta." not in message

    model.save_pretrained(tmp_path / "out")
    loaded = read_checkpoint(tmp_path / "out")
    expected = initial_weights({k: parameter_shapes(config, name)[k] for k in head}, config, 5)
    for k in head:  # the head is the common initialisation from the seed, the encoder the checkpoint's
        assert np.array_equal(loaded[k], expected[k]), k
    for k in parameter_shapes(config, name):
        if k.startswith("roberta."):
            assert np.array_equal(loaded[k], state[k]), k
