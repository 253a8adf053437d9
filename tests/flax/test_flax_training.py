"""Training xlmr.flax: an optax AdamW step equal to torch's AdamW on HF's PyTorch class, fine-tuning that learns a
small task, pure parameter pytrees for jax.jit / jax.grad / sharding, dropout modes, and bfloat16 compute."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import xlmr.flax as F
from reference import TINY
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import GRADIENT_ATOL, GRADIENT_RTOL, TOLERANCE_BF16, TOLERANCE_FP32

ARCH = "XLMRobertaForSequenceClassification"
CONFIG = XLMRobertaConfig(**{**TINY, "type_vocab_size": 1, "num_labels": 2})

# A small learnable task: does the sequence contain token 7? Padding in every other row.
RNG = np.random.default_rng(0)
IDS = RNG.integers(8, 99, (16, 9))
IDS[:, 0], IDS[:, -1] = 0, 2
LABELS = (np.arange(16) % 2).astype(np.int64)
IDS[LABELS == 1, RNG.integers(1, 8, int(LABELS.sum()))] = 7
IDS[::2, 6:] = 1
MASK = (IDS != 1).astype(np.int64)
BATCH = dict(input_ids=IDS, attention_mask=MASK, labels=LABELS)

# One optimizer and one jitted step shared by the tests, so the step compiles once. AdamW's first step is
# lr * g / (|g| + eps): eps=1e-6 keeps float32 rounding of near-zero gradients from dominating the comparison.
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-6, 0.01
TX = optax.adamw(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)


@nnx.jit
def train_step(model, optimizer, batch):
    loss, grads = nnx.value_and_grad(lambda m: m(**batch).loss)(model)
    optimizer.update(model, grads)
    return loss


def hf_model():
    data = CONFIG.to_dict()
    data.pop("model_type")
    torch.manual_seed(0)
    model = getattr(transformers, ARCH)(transformers.XLMRobertaConfig(**data, attn_implementation="eager"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def torch_state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def ours_from(state: dict[str, np.ndarray]):
    model = getattr(F, ARCH)(CONFIG)
    model.load_canonical_state(state)
    return model


def test_optax_adamw_steps_match_torch_adamw_on_hf_pytorch():
    hf = hf_model()
    ours = ours_from(torch_state(hf))
    optimizer = nnx.Optimizer(ours, TX, wrt=nnx.Param)
    torch_optimizer = torch.optim.AdamW(hf.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    batch = {k: torch.tensor(v) for k, v in BATCH.items()}
    for _ in range(2):  # the second step also checks the moment estimates (magnitudes, not only signs)
        torch_optimizer.zero_grad()
        torch_loss = hf(**batch).loss
        torch_loss.backward()
        torch_optimizer.step()
        loss = train_step(ours, optimizer, BATCH)
        assert abs(float(loss) - float(torch_loss.detach())) <= TOLERANCE_FP32
    updated, reference = ours.canonical_state(), torch_state(hf)
    worst = max(float(np.abs(updated[k] - reference[k]).max()) for k in updated)
    assert worst <= TOLERANCE_FP32
    moved = max(float(np.abs(updated[k] - ours_from(torch_state(hf_model())).canonical_state()[k]).max())
                for k in updated)
    assert moved > 1e-3  # the weights did change: the comparison is not of two untouched models


def test_fine_tuning_reduces_the_loss_on_a_small_task():
    model = getattr(F, ARCH)(CONFIG, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, TX, wrt=nnx.Param)
    first = float(model(**BATCH).loss)
    for _ in range(60):
        loss = float(train_step(model, optimizer, BATCH))
    assert first > 0.6 and loss < 0.2 * first, (first, loss)
    predictions = np.asarray(model(input_ids=IDS, attention_mask=MASK).logits).argmax(-1)
    assert (predictions == LABELS).mean() == 1.0


def test_split_merge_gives_a_pure_pytree_for_jax_jit_grad_and_sharding():
    hf = hf_model()
    ours = ours_from(torch_state(hf))
    graphdef, params, rest = nnx.split(ours, nnx.Param, ...)

    def loss_fn(params, rest, batch, graphdef=graphdef):
        return nnx.merge(graphdef, params, rest)(**batch).loss

    # The GraphDef is hashable (the config inside it compares by value), so it can also be a static argument.
    loss, grads = jax.jit(jax.value_and_grad(loss_fn), static_argnames="graphdef")(params, rest, BATCH,
                                                                                  graphdef=graphdef)
    torch_loss = hf(**{k: torch.tensor(v) for k, v in BATCH.items()}).loss
    torch_loss.backward()
    assert abs(float(loss) - float(torch_loss.detach())) <= TOLERANCE_FP32
    # The gradient pytree has the parameters' structure; map its paths to canonical names via the model.
    grad_model = nnx.merge(graphdef, grads, rest)
    ours_grads = grad_model.canonical_state()
    for name, p in hf.named_parameters():
        np.testing.assert_allclose(ours_grads[name], p.grad.numpy(), atol=GRADIENT_ATOL, rtol=GRADIENT_RTOL,
                                   err_msg=name)
    # Sharding: place the parameters with a NamedSharding on a mesh of the local devices (replicated here; the
    # same code shards over several accelerators) and run the same jitted function on them.
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = jax.device_put(params, replicated)
    split_batch = len(IDS) % len(jax.devices()) == 0
    batch = jax.device_put(BATCH, NamedSharding(mesh, PartitionSpec("data")) if split_batch else replicated)
    assert all(leaf.sharding == replicated for leaf in jax.tree_util.tree_leaves(sharded))
    assert abs(float(jax.jit(loss_fn)(sharded, rest, batch)) - float(loss)) <= TOLERANCE_FP32


def test_dropout_acts_only_in_training_mode():
    hf = hf_model()
    ours = ours_from(torch_state(hf))
    inputs = dict(input_ids=IDS, attention_mask=MASK)
    with torch.no_grad():
        reference = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert np.abs(np.asarray(ours(**inputs).logits) - reference).max() <= TOLERANCE_FP32  # built in eval mode
    ours.train()
    a, b = np.asarray(ours(**inputs).logits), np.asarray(ours(**inputs).logits)
    assert np.abs(a - reference).max() > 1e-3 and np.abs(a - b).max() > 1e-3  # fresh masks each call
    assert np.abs(np.asarray(ours(**inputs, deterministic=True).logits) - reference).max() <= TOLERANCE_FP32
    ours.eval()
    assert np.abs(np.asarray(ours(**inputs).logits) - reference).max() <= TOLERANCE_FP32
    assert np.abs(np.asarray(ours(**inputs, deterministic=False).logits) - reference).max() > 1e-3
    # The same Rngs seed gives the same masks: training runs are reproducible.
    m1, m2 = getattr(F, ARCH)(CONFIG, rngs=nnx.Rngs(5)), getattr(F, ARCH)(CONFIG, rngs=nnx.Rngs(5))
    m1.train()
    m2.train()
    assert np.array_equal(np.asarray(m1(**inputs).logits), np.asarray(m2(**inputs).logits))


def test_bfloat16_compute_stays_within_bf16_tolerance_of_float32():
    hf = hf_model()
    state = torch_state(hf)
    fp32 = ours_from(state)
    inputs = dict(input_ids=IDS, attention_mask=MASK, labels=LABELS, output_attentions=True,
                  output_hidden_states=True)
    reference = fp32(**inputs)
    for param_dtype in (jnp.float32, jnp.bfloat16):
        model = getattr(F, ARCH)(CONFIG, dtype=jnp.bfloat16, param_dtype=param_dtype)
        model.load_canonical_state(state)
        out = model(**inputs)
        assert out.logits.dtype == jnp.bfloat16 and out.hidden_states[-1].dtype == jnp.bfloat16
        assert out.attentions[0].dtype == jnp.float32 and out.loss.dtype == jnp.float32  # softmax, loss in fp32
        for field in ("logits", "loss"):
            d = float(np.abs(np.asarray(out[field], np.float32) - np.asarray(reference[field])).max())
            assert d <= TOLERANCE_BF16, (param_dtype, field, d)
        d = max(float(np.abs(np.asarray(a, np.float32) - np.asarray(b)).max())
                for a, b in zip(out.attentions, reference.attentions))
        assert d <= TOLERANCE_BF16
