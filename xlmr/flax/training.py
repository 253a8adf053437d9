"""Fine-tuning in JAX/Flax NNX: ``nnx.Optimizer`` over ``optax.adamw`` with an optax schedule and a decay mask.

The data order, learning rate at every update, weight-decay set and gradient clipping come from
``xlmr.common.tasks`` and are the same as in ``xlmr.pt.training`` and ``xlmr.tf.training``. The update is one
``jax.jit`` function of the split (graph, state) pair, Flax's fast path (``nnx.jit`` re-walks the object graph on
every call); a sharded run can give that function ``in_shardings`` for the batch and the state.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaForSequenceClassification
    >>> from xlmr.common.tasks.schedule import TrainingSettings
    >>> cfg = XLMRobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                        intermediate_size=37, max_position_embeddings=40, hidden_dropout_prob=0.0,
    ...                        attention_probs_dropout_prob=0.0)
    >>> model = XLMRobertaForSequenceClassification(cfg)
    >>> batch = {"input_ids": np.array([[0, 5, 2], [0, 6, 2]]), "attention_mask": np.ones((2, 3), np.int64),
    ...          "labels": np.array([0, 1])}
    >>> losses = []
    >>> model = train(model, lambda epoch: [batch], TrainingSettings(epochs=5, learning_rate=1e-2), 1,
    ...               lambda step, loss: losses.append(loss))
    >>> len(losses), losses[-1] < losses[0]
    (5, True)
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from xlmr.common.distributed import Plan, check_bf16, position, split_batch
from xlmr.common.tasks.schedule import TrainingSettings, decays, warmup_steps
from xlmr.common.weights import from_scheme_name
from xlmr.flax.distributed import Engine


def bf16_supported() -> tuple[bool, str]:
    """Whether JAX's default device computes in bfloat16 (CPU, TPU, or a GPU of compute capability 8+)."""
    device = jax.devices()[0]
    capability = getattr(device, "compute_capability", None)
    if device.platform != "gpu" or capability is None:
        return True, device.platform
    return float(capability) >= 8.0, f"{device} (compute capability {capability})"


@contextlib.contextmanager
def precision(bf16: bool):
    """Build the model to train inside this; it yields the ``from_pretrained`` options of the precision:
    with ``bf16``, an NNX model computing in bfloat16 on float32 parameters (its softmax and LayerNorm
    statistics stay float32, and so does the loss)."""
    if bf16:
        check_bf16(*bf16_supported())
    yield {"dtype": jnp.bfloat16, "param_dtype": jnp.float32} if bf16 else {}


def linear_schedule(settings: TrainingSettings, total_steps: int) -> Callable:
    """``xlmr.common.tasks.schedule.learning_rate`` of optax's update count (0 at the first update)."""
    warmup, peak = warmup_steps(settings, total_steps), settings.learning_rate

    def schedule(count):
        k = jnp.asarray(count, jnp.float32)
        warm = k / max(1, warmup)
        decay = jnp.maximum(0.0, (total_steps - k) / max(1, total_steps - warmup))
        return peak * jnp.where(k < warmup, warm, decay)

    return schedule


def _path_name(path) -> str:
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
    if keys and keys[-1] == "value":  # the array inside an nnx.Variable
        keys = keys[:-1]
    return ".".join(str(k) for k in keys)


def decay_mask(params):
    """True for the parameters that get weight decay (all but HF's no-decay set), by canonical name."""
    return jax.tree_util.tree_map_with_path(lambda path, _: decays(from_scheme_name(_path_name(path), "flax")),
                                            params)


def make_optimizer(model: nnx.Module, settings: TrainingSettings, total_steps: int) -> nnx.Optimizer:
    """Global-norm clipping, then AdamW with the linear schedule and the decay mask."""
    adamw = optax.adamw(linear_schedule(settings, total_steps), b1=settings.adam_beta1, b2=settings.adam_beta2,
                        eps=settings.adam_epsilon, weight_decay=settings.weight_decay, mask=decay_mask)
    tx = optax.chain(optax.clip_by_global_norm(settings.max_grad_norm), adamw) if settings.max_grad_norm else adamw
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def make_train_step(model: nnx.Module, optimizer: nnx.Optimizer, engine: Engine | None = None) -> Callable:
    """A jitted ``step(state, batch) -> (loss, state)`` over the split (model, optimizer) pair. ``batch`` is a
    dict, or a tuple of micro-batches with their loss weights (``step(state, micros, weights)``: gradient
    accumulation inside one compiled update). ``engine`` gives the state and batch shardings of a mesh."""
    graph, state = nnx.split((model, optimizer))
    engine = engine or Engine()

    def step(state, batch, weights=None):
        model, optimizer = nnx.merge(graph, state)
        if weights is None:
            loss, grads = nnx.value_and_grad(lambda m: m(**batch).loss)(model)
        else:
            loss, grads = 0.0, None
            for i, micro in enumerate(batch):
                part, g = nnx.value_and_grad(lambda m: m(**micro).loss)(model)
                loss = loss + part * weights[i]
                g = jax.tree.map(lambda x: x * weights[i], g)
                grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        optimizer.update(model, grads)
        return loss, nnx.state((model, optimizer))

    if engine.mesh is None:
        return jax.jit(step)
    state_shardings, replicated, compiled = engine.state_shardings(state), engine.replicated(), {}

    def sharded(state, batch, weights=None):
        micros = (batch,) if weights is None else batch
        batch_sharding = engine.batch_sharding(micros)
        key = (batch_sharding.spec, weights is None)
        if key not in compiled:
            compiled[key] = jax.jit(step, in_shardings=(state_shardings, batch_sharding) + (
                () if weights is None else (replicated,)), out_shardings=(replicated, state_shardings))
        return compiled[key](state, *((batch,) if weights is None else (batch, weights)))

    sharded.state_shardings = state_shardings
    return sharded


# --- distributed hook (xlmr.flax.distributed): the same loop on one device or a mesh ---------------------------
def train(model: nnx.Module, batches: Callable[[int], Iterable[dict[str, np.ndarray]]],
          settings: TrainingSettings, steps_per_epoch: int, on_step: Callable[[int, float], None],
          plan: Plan | None = None, task: str = "", engine: Engine | None = None) -> nnx.Module:
    """Train ``model`` in place for ``settings.epochs`` epochs of ``batches(epoch)``; ``on_step(step, loss)``
    after every update (step counts from 1). ``plan`` (``xlmr.common.distributed``) cuts each batch into
    micro-batches, saves checkpoints and resumes; ``engine`` shards the state and batches over its mesh."""
    plan, engine = plan or Plan(), engine or Engine()
    nnx.reseed(model, dropout=settings.seed)  # dropout masks
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    total = settings.epochs * steps_per_epoch
    optimizer = make_optimizer(model, settings, total)
    step_fn = make_train_step(model, optimizer, engine)
    state = engine.put(nnx.state((model, optimizer)), getattr(step_fn, "state_shardings", None))
    if plan.resume_path is not None:
        state = engine.load(plan.resume_path, state)
    step = plan.start_step
    first_epoch, skip = position(step, steps_per_epoch)
    for epoch in range(first_epoch, settings.epochs):
        for b, batch in enumerate(batches(epoch)):
            if epoch == first_epoch and b < skip:
                continue
            if plan.accumulation > 1:
                pieces = split_batch(batch, task, 0, 1, plan.accumulation)
                loss, state = step_fn(state, tuple({k: jnp.asarray(v) for k, v in p.items()} for p, _ in pieces),
                                      jnp.asarray([w for _, w in pieces], jnp.float32))
            else:
                loss, state = step_fn(state, {k: jnp.asarray(v) for k, v in batch.items()})
            step += 1
            on_step(step, float(loss))
            if plan.should_save(step, total):
                plan.save(step, steps_per_epoch, lambda folder: engine.save(folder, state))
    nnx.update((model, optimizer), jax.device_put(state, jax.devices()[0]) if engine.mesh is not None else state)
    model.eval()
    return model
