"""The three backends against each other: one checkpoint, loaded in xlmr.pt, xlmr.tf and xlmr.flax, gives the same
numbers everywhere.

* every class x every position embedding type x {encoder, decoder with cross-attention} x {padded, unpadded}: every
  output (logits, hidden states, attentions, cross-attentions, pooler, loss, past_key_values) agrees pairwise;
* checkpoints written by each backend (safetensors and its native format) load unchanged in the others;
* one backward pass gives the same gradient for every parameter (tied embeddings included);
* greedy decoding with a key/value cache gives the same tokens and logits (flax's jitted KVCache, tf's XLA call);
* the harness itself notices a 1e-3 change in one weight, so this suite can fail.

Tolerances come from ``xlmr.common.constants``; comparisons go through ``xlmr.cli.parity.compare``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import inspect
import itertools
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

import xlmr.flax as F  # noqa: E402
import xlmr.pt as P  # noqa: E402
import xlmr.tf as T  # noqa: E402
from reference import TINY  # noqa: E402
from xlmr.common.checkpoint import read_checkpoint, save_pretrained  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.constants import GRADIENT_ATOL, GRADIENT_RTOL, TOLERANCE_FP32  # noqa: E402
from xlmr.common.init import initial_weights  # noqa: E402
from xlmr.cli.parity import Batch, class_config, compare, inputs_for, run_backend  # noqa: E402
from xlmr.common.weights import ARCHITECTURES, from_scheme_array, from_scheme_name, parameter_shapes  # noqa: E402

BACKENDS = ("pt", "tf", "flax")
MODULES = {"pt": P, "tf": T, "flax": F}
NATIVE_FORMAT = {"pt": "pt", "tf": "tf", "flax": "flax"}
TOL = TOLERANCE_FP32

SHAPE = {**TINY, "num_labels": 3}
POSITIONS = ("absolute", "relative_key", "relative_key_query")
VARIANTS = {"encoder": {}, "decoder": dict(is_decoder=True, add_cross_attention=True)}
LENGTH, ENCODER_LENGTH = 7, 5
PAD = XLMRobertaConfig().pad_token_id


# ------------------------------------------------------------------------------------------------ checkpoints
def random_state(config: XLMRobertaConfig, architecture: str, seed: int = 0) -> dict[str, np.ndarray]:
    """HF's initialisation plus noise on every tensor: biases, LayerNorm and padding rows are no longer 0 or 1 (a
    transposed bias or a swapped gamma/beta would pass unnoticed on a fresh init), and the larger weights make the
    attention far from uniform, so relative-position terms move the outputs."""
    rng = np.random.default_rng(seed)
    return {name: (array + 0.1 * rng.standard_normal(array.shape)).astype(np.float32)
            for name, array in initial_weights(parameter_shapes(config, architecture), config, seed).items()}


def make_config(architecture: str, position: str, variant: str, **overrides: Any) -> XLMRobertaConfig:
    return class_config(architecture, XLMRobertaConfig(**SHAPE, position_embedding_type=position,
                                                       **VARIANTS[variant], **overrides))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``checkpoint(architecture, position, variant, **overrides)`` -> (folder, config): a random checkpoint of that
    class written once (safetensors, by ``xlmr.common.checkpoint``, no backend involved)."""
    folders: dict[tuple, tuple[str, XLMRobertaConfig]] = {}

    def get(architecture: str, position: str, variant: str, **overrides: Any) -> tuple[str, XLMRobertaConfig]:
        key = (architecture, position, variant, tuple(sorted(overrides.items())))
        if key not in folders:
            config = make_config(architecture, position, variant, **overrides)
            folder = str(tmp_path_factory.mktemp(f"{architecture}-{position}-{variant}"))
            save_pretrained(folder, config, random_state(config, architecture), architecture)
            folders[key] = (folder, config)
        return folders[key]

    return get


def load(backend: str, architecture: str, folder: str, config: XLMRobertaConfig) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(MODULES[backend], architecture).from_pretrained(folder, config=config)


# ------------------------------------------------------------------------------------------------ inputs
def signature(backend: str, architecture: str) -> set[str]:
    """Argument names of a class's forward, without the framework's own train/eval switch."""
    cls = getattr(MODULES[backend], architecture)
    method = getattr(cls, {"pt": "forward", "tf": "call", "flax": "__call__"}[backend])
    return set(inspect.signature(method).parameters) - {"self", "training", "deterministic"}


# Classes whose forward takes an encoder to attend to (checked against all three signatures below).
CROSS_CLASSES = {a for a in ARCHITECTURES if all("encoder_hidden_states" in signature(b, a) for b in BACKENDS)}


def make_inputs(architecture: str, config: XLMRobertaConfig, padded: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch for the class with labels: padded means right padding, token types 0/1 and (for a decoder with an
    encoder) a padded encoder mask; unpadded passes no masks at all (the default path)."""
    rng = np.random.default_rng(seed)
    rows = 4 if architecture == "XLMRobertaForMultipleChoice" else 3  # multiple choice: 2 examples x 2 choices
    lengths = np.array([LENGTH, 4, 6, 5][:rows]) if padded else np.full(rows, LENGTH)
    mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(3, config.vocab_size, (rows, LENGTH))
    ids[:, 0] = config.bos_token_id
    ids[np.arange(rows), lengths - 1] = config.eos_token_id
    ids = np.where(mask == 1, ids, config.pad_token_id)
    inputs = inputs_for(architecture, Batch({"input_ids": ids, "attention_mask": mask}, "random ids"), config, seed)
    if padded:
        inputs["token_type_ids"] = (np.arange(LENGTH) >= LENGTH // 2).astype(np.int64) * inputs["attention_mask"]
    else:
        del inputs["attention_mask"]
    if config.is_decoder and config.add_cross_attention and architecture in CROSS_CLASSES:
        inputs["encoder_hidden_states"] = rng.standard_normal((rows, ENCODER_LENGTH, config.hidden_size),
                                                              dtype=np.float32)
        if padded:
            keep = np.array([ENCODER_LENGTH, 3, 4][:rows])
            inputs["encoder_attention_mask"] = (np.arange(ENCODER_LENGTH)[None, :] < keep[:, None]).astype(np.int64)
    return inputs


# ------------------------------------------------------------------------------------------------ running
FLAGS = dict(output_hidden_states=True, output_attentions=True, return_dict=True)


def flatten(value: Any, prefix: str = "", out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Nested outputs -> {"hidden_states.1": float64 array}, named as ``xlmr.cli.parity.run_backend`` names them."""
    out = {} if out is None else out
    if value is None:
        return out
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}{key}", out)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            flatten(item, f"{prefix}.{i}", out)
    else:
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        out[prefix] = array.astype(np.float64)
    return out


def forward(backend: str, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> dict[str, np.ndarray]:
    """One eval-mode forward pass with every output switched on; numpy in, {name: float64 array} out."""
    flags = {**FLAGS, **flags}
    if backend == "pt":
        with torch.no_grad():
            return flatten(model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()},
                                 **flags))
    if backend == "tf":
        return flatten(model(**{k: tf.constant(v) for k, v in inputs.items()}, training=False, **flags))
    return flatten(model(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=True, **flags))


def all_outputs(backend: str, architecture: str, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the class; the causal LM drops its cache when given labels (as HF), so its
    past_key_values come from a second pass without them."""
    out = forward(backend, model, inputs)
    if architecture == "XLMRobertaForCausalLM" and "labels" in inputs:
        unlabelled = forward(backend, model, {k: v for k, v in inputs.items() if k != "labels"}, use_cache=True)
        out.update({k: v for k, v in unlabelled.items() if k.startswith("past_key_values.")})
    return out


def expected_names(architecture: str, config: XLMRobertaConfig, inputs: dict[str, np.ndarray]) -> set[str]:
    """The outputs each backend must return: without this, three backends that all drop one would agree."""
    layers = range(config.num_hidden_layers)
    names = {f"hidden_states.{i}" for i in range(config.num_hidden_layers + 1)} | {f"attentions.{i}" for i in layers}
    names |= {"XLMRobertaModel": {"last_hidden_state", "pooler_output"},
              "XLMRobertaForQuestionAnswering": {"start_logits", "end_logits", "loss"}}.get(
        architecture, {"logits", "loss"})
    cross = "encoder_hidden_states" in inputs
    if architecture in ("XLMRobertaModel", "XLMRobertaForCausalLM") and config.is_decoder:
        names |= {f"past_key_values.{i}.{j}" for i in layers for j in range(4 if cross else 2)}
        if cross:
            names |= {f"cross_attentions.{i}" for i in layers}
    return names


def disagreements(outputs: dict[str, dict[str, np.ndarray]], tol: float) -> list[str]:
    """For every pair of backends whose outputs differ by more than ``tol`` (``compare``), each output over it."""
    problems = []
    for a, b in itertools.combinations(outputs, 2):
        worst, name = compare(outputs[a], outputs[b])
        if worst <= tol:
            continue
        detail = [f"{k} by {np.max(np.abs(outputs[a][k] - outputs[b][k])):.3g}" for k in outputs[a]
                  if k in outputs[b] and outputs[a][k].shape == outputs[b][k].shape
                  and np.max(np.abs(outputs[a][k] - outputs[b][k]), initial=0.0) > tol]
        problems.append(f"{a} vs {b}: worst {name} ({worst:.3g} > {tol:g}); over tolerance: {', '.join(detail)}")
    return problems


# ------------------------------------------------------------------------------------------------ API parity
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_backend_takes_the_same_forward_arguments(architecture):
    names = {b: signature(b, architecture) for b in BACKENDS}
    assert names["pt"] == names["tf"] == names["flax"], names


def test_the_classes_that_take_an_encoder_are_model_causal_lm_and_masked_lm():
    assert CROSS_CLASSES == {"XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM"}


# ------------------------------------------------------------------------------------------------ outputs
# Ordered so that consecutive cases share (class, position, variant): the three models are loaded once for both
# padding variants.
CASES = [pytest.param(a, p, v, padded, id=f"{a.removeprefix('XLMRoberta')}-{p}-{v}-{'padded' if padded else 'full'}")
         for a in ARCHITECTURES for p in POSITIONS for v in VARIANTS for padded in (True, False)]
_LOADED: dict[tuple, dict[str, Any]] = {}


@pytest.mark.parametrize("architecture, position, variant, padded", CASES)
def test_one_checkpoint_gives_every_output_within_tolerance_in_all_backends(checkpoint, architecture, position,
                                                                           variant, padded):
    folder, config = checkpoint(architecture, position, variant)
    key = (architecture, position, variant)
    if key not in _LOADED:
        _LOADED.clear()  # keep only the models of the current case
        _LOADED[key] = {b: load(b, architecture, folder, config) for b in BACKENDS}
    inputs = make_inputs(architecture, config, padded)
    outputs = {b: all_outputs(b, architecture, model, inputs) for b, model in _LOADED[key].items()}

    assert set(outputs["pt"]) == expected_names(architecture, config, inputs)
    assert not disagreements(outputs, TOL)


# ------------------------------------------------------------------------------------------------ files
ROUND_TRIPS = [  # (class, position, variant, config overrides): together they hold every kind of weight
    ("XLMRobertaForCausalLM", "relative_key_query", "decoder", {}),      # cross-attention, distance tables, cache
    ("XLMRobertaForMaskedLM", "relative_key", "encoder", {"tie_word_embeddings": False}),  # own decoder matrix
    ("XLMRobertaForMultipleChoice", "absolute", "encoder", {}),           # pooler, 1-unit classifier
]


@pytest.mark.parametrize("architecture, position, variant, overrides", ROUND_TRIPS,
                         ids=[f"{a.removeprefix('XLMRoberta')}-{p}" for a, p, _, _ in ROUND_TRIPS])
@pytest.mark.parametrize("saver, format", [(b, f) for b in BACKENDS for f in ("safetensors", NATIVE_FORMAT[b])],
                         ids=[f"{b}-saves-{f}" for b in BACKENDS for f in ("safetensors", NATIVE_FORMAT[b])])
def test_a_checkpoint_saved_by_one_backend_loads_unchanged_in_every_backend(checkpoint, tmp_path, saver, format,
                                                                            architecture, position, variant,
                                                                            overrides):
    source, config = checkpoint(architecture, position, variant, **overrides)
    model = load(saver, architecture, source, config)
    inputs = make_inputs(architecture, config, padded=True)
    before = forward(saver, model, inputs)
    model.save_pretrained(tmp_path, format=format)

    # The bytes written hold exactly the saver's weights (pytorch_model.bin also holds HF's aliases of tied tensors).
    stored, state = read_checkpoint(tmp_path), model.canonical_state()
    assert set(state) == set(parameter_shapes(config, architecture))
    aliases = {"lm_head.decoder.bias": "lm_head.bias",
               "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight"}
    for name, array in stored.items():
        assert np.array_equal(array, state[name if name in state else aliases[name]]), name
    assert set(state) <= set(stored)

    after = {b: run_backend(b, architecture, str(tmp_path), config, inputs) for b in BACKENDS}
    assert compare(before, after[saver]) == (0.0, ""), "the saving backend reloads its own bytes bit for bit"
    for backend in BACKENDS:
        assert not disagreements({saver: before, f"{backend} (loaded)": after[backend]}, TOL)


# ------------------------------------------------------------------------------------------------ gradients
def gradients(backend: str, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """d loss / d parameter for one eval-mode (dropout off) pass, under canonical names in PyTorch's layout;
    parameters the loss does not reach get zeros."""
    if backend == "pt":
        model.eval().zero_grad(set_to_none=True)
        model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).loss.backward()
        return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
                for n, p in model.named_parameters()}
    if backend == "tf":
        variables = model.named_variables()  # {"tf" scheme name: variable}
        with tf.GradientTape() as tape:
            loss = model(**{k: tf.constant(v) for k, v in inputs.items()}, training=False).loss
        grads = tape.gradient(loss, list(variables.values()))
        out = {}
        for (name, variable), g in zip(variables.items(), grads):
            canonical = from_scheme_name(name, "tf")
            g = np.zeros(variable.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()
            out[canonical] = from_scheme_array(g, canonical, "tf")
        return out
    grads = nnx.grad(lambda m: m(**{k: jnp.asarray(v) for k, v in inputs.items()}, deterministic=True).loss)(model)
    out = {}
    for path, g in nnx.to_flat_state(grads):
        canonical = from_scheme_name(".".join(map(str, path)), "flax")
        out[canonical] = from_scheme_array(np.asarray(g[...]), canonical, "flax")
    return out


GRADIENT_CASES = [pytest.param(a, p, True, id=f"{a.removeprefix('XLMRoberta')}-{p}")
                  for a in ("XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification")
                  for p in ("absolute", "relative_key_query")]
# Pad tokens the attention mask does not hide (no mask given): their embedding rows are reached by the lookup.
# PyTorch's Embedding(padding_idx=pad) gives the padding row of the word and position tables no gradient.
GRADIENT_CASES += [pytest.param("XLMRobertaForSequenceClassification", "absolute", False,
                                id="ForSequenceClassification-absolute-pad_tokens_unmasked")]


@pytest.mark.parametrize("architecture, position, masked", GRADIENT_CASES)
def test_one_backward_pass_gives_the_same_gradient_for_every_parameter(checkpoint, architecture, position, masked):
    folder, config = checkpoint(architecture, position, "encoder")
    inputs = make_inputs(architecture, config, padded=True)
    if not masked:
        del inputs["attention_mask"]
    grads = {b: gradients(b, load(b, architecture, folder, config), inputs) for b in BACKENDS}

    names = set(parameter_shapes(config, architecture))
    for backend, g in grads.items():
        assert set(g) == names, f"{backend}: {sorted(set(g) ^ names)}"
    problems = []
    for a, b in itertools.combinations(BACKENDS, 2):
        for name in sorted(names):
            x, y = grads[a][name], grads[b][name]
            if x.shape != y.shape:
                problems.append(f"{a} vs {b}: {name} has shapes {x.shape} vs {y.shape}")
                continue
            excess = np.abs(x - y) - (GRADIENT_ATOL + GRADIENT_RTOL * np.abs(y))
            if excess.max() > 0:
                where = tuple(int(i) for i in np.unravel_index(np.argmax(excess), excess.shape))
                problems.append(f"{a} vs {b}: {name} differs by {np.max(np.abs(x - y)):.3g} at {where}")
    assert not problems, "\n".join(problems)
    assert np.abs(grads["pt"]["roberta.embeddings.word_embeddings.weight"]).max() > 1e-4  # not trivially zero

    if architecture == "XLMRobertaForMaskedLM":
        # Tied decoder: tokens absent from the batch reach the word-embedding gradient only through the output
        # projection, so their rows are nonzero in every backend.
        absent = sorted(set(range(3, config.vocab_size)) - set(inputs["input_ids"].ravel().tolist()))
        for backend, g in grads.items():
            rows = g["roberta.embeddings.word_embeddings.weight"][absent]
            assert np.all(np.abs(rows).max(axis=1) > 0), backend


# ------------------------------------------------------------------------------------------------ decoding
PROMPT_LENGTH, STEPS, XLA_STEPS = 4, 8, 2


def decoder_inputs(config: XLMRobertaConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    prompt = rng.integers(3, config.vocab_size, (2, PROMPT_LENGTH))
    prompt[:, 0] = config.bos_token_id
    cross = dict(encoder_hidden_states=rng.standard_normal((2, ENCODER_LENGTH, config.hidden_size), dtype=np.float32),
                 encoder_attention_mask=np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]))
    return prompt, cross


def call(backend: str, model: Any, **inputs: Any) -> Any:
    if backend == "pt":
        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
    if backend == "tf":
        return model(**inputs, training=False)
    return model(**inputs)


def greedy(step, prompt: np.ndarray, steps: int = STEPS) -> tuple[np.ndarray, list[np.ndarray]]:
    """Prompt, then ``steps`` one-token calls on the previous call's cache; ``step(ids, past) -> (last logits,
    past)``. Returns the steps + 1 chosen tokens and the logits each was chosen from."""
    logits, past = step(prompt, None)
    chosen, history = [], []
    while True:
        history.append(np.asarray(logits, np.float64))
        chosen.append(np.argmax(history[-1], axis=-1))
        if len(chosen) == steps + 1:
            return np.stack(chosen, axis=1), history
        logits, past = step(chosen[-1][:, None].astype(prompt.dtype), past)


def eager_step(backend: str, model: Any, cross: dict[str, np.ndarray]):
    def step(ids, past):
        out = call(backend, model, input_ids=ids, past_key_values=past, use_cache=True, **cross)
        logits = out.logits.numpy() if backend != "flax" else np.asarray(out.logits)
        return logits[:, -1], out.past_key_values
    return step


def flax_jit_step(model: Any, cross: dict[str, np.ndarray]):
    """Flax's fixed-length KVCache under nnx.jit: one compilation for the prompt, one shared by every later token."""
    @nnx.jit
    def run(model, ids, cache, encoder_hidden_states, encoder_attention_mask):
        out = model(input_ids=ids, past_key_values=cache, encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask)
        return out.logits[:, -1], out.past_key_values

    def step(ids, cache):
        cache = model.init_cache(ids.shape[0], PROMPT_LENGTH + STEPS) if cache is None else cache
        return run(model, jnp.asarray(ids), cache, **{k: jnp.asarray(v) for k, v in cross.items()})
    return step


def tf_compiled_step(model: Any, cross: dict[str, np.ndarray]):
    def step(ids, past):
        out = model.compiled_call(input_ids=ids, past_key_values=past, use_cache=True, **cross)
        return out.logits.numpy()[:, -1], out.past_key_values
    return step


@pytest.mark.parametrize("position", ["absolute", "relative_key_query"])
def test_cached_greedy_decoding_gives_the_same_tokens_and_logits_in_every_backend(checkpoint, position):
    folder, config = checkpoint("XLMRobertaForCausalLM", position, "decoder")
    prompt, cross = decoder_inputs(config)
    models = {b: load(b, "XLMRobertaForCausalLM", folder, config) for b in BACKENDS}
    runs = {b: greedy(eager_step(b, m, cross), prompt) for b, m in models.items()}
    runs["flax (nnx.jit, KVCache)"] = greedy(flax_jit_step(models["flax"], cross), prompt)
    if position == "relative_key_query":  # XLA compiles once per cache length: a few steps are enough
        runs["tf (compiled_call)"] = greedy(tf_compiled_step(models["tf"], cross), prompt, steps=XLA_STEPS)

    tokens, logits = runs["pt"]
    for name, (other_tokens, other_logits) in runs.items():
        np.testing.assert_array_equal(other_tokens, tokens[:, :other_tokens.shape[1]],
                                      err_msg=f"{name} chose other tokens than pt")
        for t, (x, y) in enumerate(zip(other_logits, logits)):
            assert np.max(np.abs(x - y)) <= TOL, f"{name} vs pt at step {t}: {np.max(np.abs(x - y)):.3g}"
    # The choices are not ties that rounding could flip: the winner leads the runner-up by far more than TOL.
    margins = [np.diff(np.sort(step, axis=-1)[:, -2:], axis=-1).min() for step in logits]
    assert min(margins) > 100 * TOL

    # Each backend's cached logits equal its own pass over the whole sequence.
    sequence = np.concatenate([prompt, tokens[:, :-1]], axis=1)
    for backend, model in models.items():
        full = np.asarray(call(backend, model, input_ids=sequence, use_cache=False, **cross).logits, np.float64)
        cached = np.stack(runs[backend][1], axis=1)
        assert np.max(np.abs(full[:, PROMPT_LENGTH - 1:] - cached)) <= TOL, backend


# ------------------------------------------------------------------------------------------------ the harness
def perturbed(model: Any, name: str, index: tuple[int, ...], delta: float = 1e-3) -> Any:
    """``model`` with one element of one canonical weight moved by ``delta`` (through the public state API)."""
    state = {k: np.array(v, copy=True) for k, v in model.canonical_state().items()}
    state[name][index] += delta
    model.load_canonical_state(state)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_compare_reports_a_one_weight_change_of_1e3_and_names_the_output(checkpoint, backend):
    folder, config = checkpoint("XLMRobertaForMaskedLM", "relative_key", "encoder")
    inputs = make_inputs("XLMRobertaForMaskedLM", config, padded=True)
    reference = "flax" if backend != "flax" else "pt"
    expected = forward(reference, load(reference, "XLMRobertaForMaskedLM", folder, config), inputs)

    # The output bias of one token: only that token's logits move, by exactly the change (and the loss with them).
    model = perturbed(load(backend, "XLMRobertaForMaskedLM", folder, config), "lm_head.bias", (7,))
    got = forward(backend, model, inputs)
    worst, name = compare(got, expected)
    assert name == "logits" and abs(worst - 1e-3) < TOL
    assert disagreements({backend: got, reference: expected}, TOL)
    assert compare({k: v for k, v in got.items() if k.startswith(("hidden_states", "attentions"))},
                   {k: v for k, v in expected.items() if k.startswith(("hidden_states", "attentions"))})[0] <= TOL

    # A LayerNorm shift in the last layer: its hidden state and everything after move, the earlier ones do not.
    model = perturbed(load(backend, "XLMRobertaForMaskedLM", folder, config),
                      "roberta.encoder.layer.1.output.LayerNorm.bias", (3,))
    got = forward(backend, model, inputs)
    before = ("hidden_states.0", "hidden_states.1", "attentions.0", "attentions.1")
    assert compare({k: got[k] for k in before}, {k: expected[k] for k in before})[0] <= TOL
    worst, name = compare(got, expected)
    assert worst >= 1e-3 - TOL and name not in before
    assert np.max(np.abs(got["hidden_states.2"] - expected["hidden_states.2"])) >= 1e-3 - TOL


def test_compare_reports_a_missing_output_by_name():
    a = {"logits": np.zeros(3), "loss": np.zeros(())}
    worst, name = compare(a, {"logits": np.zeros(3)})
    assert worst == float("inf") and "loss" in name
    worst, name = compare(a, {"logits": np.zeros(4), "loss": np.zeros(())})
    assert worst == float("inf") and name.startswith("logits: shape")
