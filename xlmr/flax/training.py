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
    >>> train(model, lambda epoch: [batch], TrainingSettings(epochs=5, learning_rate=1e-2), 1,
    ...       lambda step, loss: losses.append(loss))
    >>> len(losses), losses[-1] < losses[0]
    (5, True)
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from xlmr.common.tasks.schedule import TrainingSettings, decays, warmup_steps
from xlmr.common.weights import from_scheme_name


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


def make_train_step(model: nnx.Module, optimizer: nnx.Optimizer) -> Callable:
    """A jitted ``step(state, batch) -> (loss, state)`` over the split (model, optimizer) pair."""
    graph, _ = nnx.split((model, optimizer))

    @jax.jit
    def step(state, batch):
        model, optimizer = nnx.merge(graph, state)
        loss, grads = nnx.value_and_grad(lambda m: m(**batch).loss)(model)
        optimizer.update(model, grads)
        return loss, nnx.state((model, optimizer))

    return step


def train(model: nnx.Module, batches: Callable[[int], Iterable[dict[str, np.ndarray]]],
          settings: TrainingSettings, steps_per_epoch: int, on_step: Callable[[int, float], None]) -> None:
    """Train ``model`` in place for ``settings.epochs`` epochs of ``batches(epoch)``; ``on_step(step, loss)``
    after every update (step counts from 1)."""
    nnx.reseed(model, dropout=settings.seed)  # dropout masks
    model.train()
    optimizer = make_optimizer(model, settings, settings.epochs * steps_per_epoch)
    step_fn = make_train_step(model, optimizer)
    state = nnx.state((model, optimizer))
    step = 0
    for epoch in range(settings.epochs):
        for batch in batches(epoch):
            loss, state = step_fn(state, {k: jnp.asarray(v) for k, v in batch.items()})
            step += 1
            on_step(step, float(loss))
    nnx.update((model, optimizer), state)
    model.eval()
