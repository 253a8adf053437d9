"""bf16 training and activation checkpointing in every backend.

bf16 (``--bf16``): a few masked-LM updates in bfloat16 compute log losses within bfloat16's rounding of the
float32 run's (8 mantissa bits: relative 2e-2), the three backends' bf16 losses agree with each other as
closely, and the parameters stay float32. Activation checkpointing (``--gradient-checkpointing``): the same
loss and gradients as without, to 1e-6, dropout included (the recomputation replays the masks); and the
checkpointed runs of the three backends agree as their plain runs do.
"""

from __future__ import annotations

import importlib
import itertools
import os

import numpy as np
import pytest

from xlmr.backends import installed_backends
from xlmr.cli import tasks as T
from xlmr.common.checkpoint import save_pretrained
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import TOLERANCE_FP32
from xlmr.common.init import initial_weights
from xlmr.common.tasks.schedule import TrainingSettings
from xlmr.common.weights import parameter_shapes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tools", "data", "tasks", "masked-lm")
BACKENDS = installed_backends()
STEPS = 4
BF16_RTOL = 2e-2          # bfloat16 keeps 8 significant bits: 2^-8 = 4e-3 per rounding, a few roundings deep
CHECKPOINTING_ATOL = 1e-6


def _config(**changes) -> XLMRobertaConfig:
    return XLMRobertaConfig(**{**dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=37, max_position_embeddings=130), **changes})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A random 2-layer, 32-wide MLM checkpoint and 8 masked-LM windows of 32 tokens, dropout off."""
    from xlmr import XLMRobertaTokenizerFast

    folder = str(tmp_path_factory.mktemp("tiny"))
    config = _config()
    save_pretrained(folder, config, initial_weights(parameter_shapes(config, "XLMRobertaForMaskedLM"), config, 0),
                    "XLMRobertaForMaskedLM")
    XLMRobertaTokenizerFast.from_pretrained(os.path.join(ROOT, "xlmr", "assets", "default")).save_pretrained(folder)
    paths = {}
    for split, count in (("train", 6), ("validation", 2)):
        paths[split] = os.path.join(folder, f"{split}.jsonl")
        with open(os.path.join(DATA, f"{split}.jsonl"), encoding="utf-8") as f, open(paths[split], "w") as out:
            out.writelines(itertools.islice(f, count))
    data = T.prepare("masked-lm", folder, paths["train"], paths["validation"], seed=3, no_dropout=True, max_length=32)
    data.features = data.features[:2 * STEPS]
    return data


def _train(prepared, backend: str, **flags) -> tuple[np.ndarray, dict[str, np.ndarray], object]:
    training = TrainingSettings(epochs=1, batch_size=2, learning_rate=1e-3, seed=3, no_dropout=True, **flags)
    net = T.load_for_training(prepared, backend, seed=3, bf16=training.bf16)
    losses: list[float] = []
    net = T.train_in(backend, net, prepared, training, lambda step, loss: losses.append(loss))
    return np.array(losses), net.canonical_state(), net


def _float32_parameters(backend: str, net) -> bool:
    if backend == "pt":
        return all(str(p.dtype) == "torch.float32" for p in net.parameters())
    if backend == "tf":
        return all(v.dtype == "float32" for v in net.trainable_variables)
    from flax import nnx

    return all(str(p[...].dtype) == "float32" for _, p in nnx.iter_graph(net) if isinstance(p, nnx.Param))


# ------------------------------------------------------------------------------------------------ bf16
@pytest.mark.slow
@pytest.mark.skipif(not BACKENDS, reason="no backend")
def test_bf16_losses_follow_float32_within_bf16_rounding_in_every_backend(prepared):
    bf16 = {}
    for backend in BACKENDS:
        fp32_losses, fp32_state, _ = _train(prepared, backend)
        bf16[backend], state, net = _train(prepared, backend, bf16=True)
        assert len(bf16[backend]) == STEPS
        np.testing.assert_allclose(bf16[backend], fp32_losses, rtol=BF16_RTOL, err_msg=backend)
        assert not np.array_equal(bf16[backend], fp32_losses), f"{backend}: --bf16 changed nothing"
        assert _float32_parameters(backend, net), backend
        assert all(state[n].dtype == np.float32 for n in state)
    for a, b in itertools.combinations(BACKENDS, 2):
        np.testing.assert_allclose(bf16[a], bf16[b], rtol=BF16_RTOL, err_msg=f"bf16 {a} vs {b}")
    if "tf" in BACKENDS:
        import keras

        assert keras.config.dtype_policy().name == "float32"  # the policy was scoped to the bf16 model


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_on_a_device_without_it_is_refused_in_one_line(prepared, backend, monkeypatch):
    training = importlib.import_module(f"xlmr.{backend}.training")
    monkeypatch.setattr(training, "bf16_supported", lambda *a: (False, "gpu:0 (compute capability 7.0)"))
    with pytest.raises(ValueError, match=r"^--bf16: device gpu:0 \(compute capability 7.0\) has no bfloat16 "
                                         r"support .*; drop --bf16$"):
        T.load_for_training(prepared, backend, seed=3, bf16=True)


# ------------------------------------------------------------------------------------------------ checkpointing
def _gradients(backend: str, checkpointing: bool) -> tuple[float, list[np.ndarray]]:
    """Loss and gradients of a 2-layer masked LM with dropout 0.2, every parameter, in a fixed order."""
    from xlmr.backends import model_class

    config = _config(vocab_size=60, max_position_embeddings=40, hidden_dropout_prob=0.2,
                     attention_probs_dropout_prob=0.2)
    ids = np.array([[0, 5, 7, 9, 11, 2], [0, 6, 8, 2, 1, 1]])
    inputs = dict(input_ids=ids, attention_mask=(ids != 1).astype(np.int64),
                  labels=np.array([[-100, 5, -100, 9, -100, -100], [-100, -100, 8, -100, -100, -100]]))
    if backend == "tf":  # Keras' dropout layers draw their seeds when they are made
        import keras

        keras.utils.set_random_seed(5)
    model = model_class(backend, "XLMRobertaForMaskedLM")(config, seed=0)
    if checkpointing:
        model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing == checkpointing
    if backend == "pt":
        import torch

        model.train()
        torch.manual_seed(5)
        loss = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).loss
        loss.backward()
        return float(loss.detach()), [p.grad.numpy() for p in model.parameters()]
    if backend == "tf":
        import tensorflow as tf

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = model(**inputs, training=True)["loss"]
            return loss, tape.gradient(loss, model.trainable_variables)

        loss, grads = step()
        return float(loss), [np.asarray(tf.convert_to_tensor(g)) for g in grads]
    import jax
    from flax import nnx

    model.train()
    nnx.reseed(model, dropout=5)
    graph, state = nnx.split(model)
    loss, grads = jax.jit(lambda s: nnx.value_and_grad(lambda m: m(**inputs).loss)(nnx.merge(graph, s)))(state)
    return float(loss), [np.asarray(g) for g in jax.tree.leaves(grads)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients_with_dropout(backend):
    loss, grads = _gradients(backend, False)
    loss_ck, grads_ck = _gradients(backend, True)
    assert abs(loss - loss_ck) <= CHECKPOINTING_ATOL
    assert len(grads) == len(grads_ck) and any(np.abs(g).max() > 0 for g in grads)
    for g, h in zip(grads, grads_ck):
        np.testing.assert_allclose(h, g, rtol=0, atol=CHECKPOINTING_ATOL)


@pytest.mark.slow
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends")
def test_checkpointed_training_is_the_same_in_every_backend(prepared):
    runs = {}
    for backend in BACKENDS:
        plain_losses, plain_state, _ = _train(prepared, backend)
        losses, state, net = _train(prepared, backend, gradient_checkpointing=True)
        assert net.is_gradient_checkpointing
        np.testing.assert_allclose(losses, plain_losses, rtol=0, atol=CHECKPOINTING_ATOL, err_msg=backend)
        assert max(float(np.abs(state[n] - plain_state[n]).max()) for n in state) <= CHECKPOINTING_ATOL, backend
        runs[backend] = (losses, state)
    first = BACKENDS[0]
    for backend in BACKENDS[1:]:
        np.testing.assert_allclose(runs[backend][0], runs[first][0], rtol=0, atol=TOLERANCE_FP32)
        assert max(float(np.abs(runs[backend][1][n] - runs[first][1][n]).max())
                   for n in runs[first][1]) <= TOLERANCE_FP32, f"{backend} vs {first}"


def test_the_command_passes_bf16_and_checkpointing_to_finetune(monkeypatch):
    import argparse

    from xlmr.cli import finetune

    seen = {}
    monkeypatch.setattr(finetune.tasks, "finetune", lambda *args, **kwargs: seen.update(kwargs))
    parser = argparse.ArgumentParser()
    finetune.add_arguments(parser)
    common = ["masked-lm", "--backend", "flax", "--model", "m", "--train", "t", "--validation", "v", "--output", "o"]
    assert finetune.run(parser.parse_args(common + ["--bf16", "--gradient-checkpointing"])) == 0
    assert seen["bf16"] is True and seen["gradient_checkpointing"] is True
    assert finetune.run(parser.parse_args(common)) == 0
    assert seen["bf16"] is False and seen["gradient_checkpointing"] is False
