"""Fine-tuning in Keras: ``compile`` with ``keras.optimizers.AdamW`` and ``fit`` on the model's own loss.

The data order, learning rate at every update, weight-decay set and gradient clipping come from
``xlmr.common.tasks`` and are the same as in ``xlmr.pt.training`` and ``xlmr.flax.training``. ``make_optimizer``
and the ``fit`` call are separate so that a ``tf.distribute`` strategy can build the model and optimizer inside
its ``scope()``.

Keras' Adam folds the bias corrections into the step size, so its epsilon is added to ``sqrt(v)`` where torch
and optax add it to ``sqrt(v_hat)``: its effective epsilon is ``eps * sqrt(1 - beta2**t)``, 30x below torch's at
the first step. That is not rounding: a parameter whose gradients are near eps (1e-9 is common in a fresh head)
moves several times farther, and the parity test saw 1e-4 relative loss differences after two steps.
``AdamW`` below scales Keras' epsilon by that factor, which makes the update torch's exactly.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForSequenceClassification
    >>> from xlmr.common.tasks.schedule import TrainingSettings
    >>> cfg = XLMRobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                        intermediate_size=37, max_position_embeddings=40, hidden_dropout_prob=0.0,
    ...                        attention_probs_dropout_prob=0.0)
    >>> model = XLMRobertaForSequenceClassification(cfg, seed=0)
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

import keras
import numpy as np
import tensorflow as tf

from xlmr.common.distributed import Plan, check_bf16, position
from xlmr.common.tasks.schedule import TrainingSettings, decays, warmup_steps
from xlmr.common.weights import parameter_shapes, to_scheme_name
from xlmr.tf.distributed import Engine


def bf16_supported() -> tuple[bool, str]:
    """Whether the device TensorFlow computes on has bfloat16 kernels (a CPU, or a GPU of compute capability 8+)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return True, "cpu"
    major, minor = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return major >= 8, f"{gpus[0].name} (compute capability {major}.{minor})"


@contextlib.contextmanager
def precision(bf16: bool):
    """Build the model to train inside this; it yields the ``from_pretrained`` options of the precision.
    With ``bf16`` the layers made here take Keras' "mixed_bfloat16" policy (float32 variables, bfloat16
    compute); the global policy is put back on leaving, so models made later are float32 again."""
    if not bf16:
        yield {}
        return
    check_bf16(*bf16_supported())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield {}
    finally:
        keras.config.set_dtype_policy(previous)


class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``xlmr.common.tasks.schedule.learning_rate`` as a Keras schedule of the optimizer's iteration count
    (0 at the first update, as torch's LambdaLR)."""

    def __init__(self, peak: float, warmup: int, total_steps: int):
        self.peak, self.warmup, self.total_steps = peak, warmup, total_steps

    def __call__(self, step):
        k = tf.cast(step, tf.float64)
        warm = k / max(1, self.warmup)
        decay = tf.maximum(tf.constant(0.0, tf.float64), (self.total_steps - k) / max(1, self.total_steps - self.warmup))
        return tf.cast(self.peak * tf.where(k < self.warmup, warm, decay), tf.float32)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total_steps": self.total_steps}


class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with epsilon added to ``sqrt(v_hat)`` as in torch and optax (see above), and
    dense embedding gradients.

    TensorFlow gives an embedding table's gradient as ``IndexedSlices`` (the rows of this batch's tokens), and
    Keras then updates only those rows; torch and optax update every row, since Adam's moments keep moving a row
    after its token left the batch. The parity test caught it: losses parted at the third update, once a batch
    lacked tokens of an earlier one. Densifying the slices makes the update the same.
    """

    def apply(self, grads, trainable_variables=None):
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        return super().apply(grads, trainable_variables)

    @property
    def epsilon(self):
        t = tf.cast(self.iterations + 1, tf.float32)
        return self._torch_epsilon * tf.sqrt(1.0 - tf.pow(tf.cast(self.beta_2, tf.float32), t))

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self._torch_epsilon = value

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self._torch_epsilon}


def make_optimizer(model: keras.Model, settings: TrainingSettings, total_steps: int,
                   clip: bool = True) -> keras.optimizers.AdamW:
    """AdamW with the linear schedule, global-norm clipping (unless ``clip`` is False: a distributed step clips
    the all-reduced gradient itself), and HF's no-decay set (biases, LayerNorm weights) excluded from weight
    decay by variable."""
    optimizer = AdamW(
        learning_rate=LinearSchedule(settings.learning_rate, warmup_steps(settings, total_steps), total_steps),
        weight_decay=settings.weight_decay, beta_1=settings.adam_beta1, beta_2=settings.adam_beta2,
        epsilon=settings.adam_epsilon, global_clipnorm=(settings.max_grad_norm or None) if clip else None)
    names = parameter_shapes(model.config, model.architecture)
    optimizer.exclude_from_weight_decay(
        var_list=[model.get_variable(to_scheme_name(n, "tf")) for n in names if not decays(n)])
    return optimizer


class _StepLosses(keras.callbacks.Callback):
    """Reports each update's own loss: Keras logs a running mean over the epoch, so the metrics are reset
    before every batch. Saves checkpoints through ``plan`` when asked."""

    def __init__(self, on_step: Callable[[int, float], None], start: int = 0,
                 save: Callable[[int], None] | None = None):
        super().__init__()
        self.on_step, self.step, self.save = on_step, start, save

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.on_step(self.step, float(logs["loss"]))
        if self.save is not None:
            self.save(self.step)


# --- distributed hook (xlmr.tf.distributed): the same loop on one device or a strategy's replicas ---------------
def train(model: keras.Model, batches: Callable[[int], Iterable[dict[str, np.ndarray]]],
          settings: TrainingSettings, steps_per_epoch: int, on_step: Callable[[int, float], None],
          plan: Plan | None = None, task: str = "", engine: Engine | None = None) -> keras.Model:
    """Train ``model`` in place for ``settings.epochs`` epochs of ``batches(epoch)``; ``on_step(step, loss)``
    after every update (step counts from 1). ``plan`` (``xlmr.common.distributed``) cuts each batch into
    micro-batches, saves checkpoints and resumes; ``engine`` runs the steps on its strategy's replicas (the
    model must have been built inside ``engine.scope()``)."""
    plan, engine = plan or Plan(), engine or Engine()
    keras.utils.set_random_seed(settings.seed)  # dropout masks
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    total = settings.epochs * steps_per_epoch
    with engine.scope():
        optimizer = make_optimizer(model, settings, total, clip=False)
        model.compile(optimizer=optimizer, jit_compile=False)
    engine.install_train_step(model, settings.max_grad_norm)
    if plan.resume_path is not None:
        engine.load(plan.resume_path, model, optimizer)
    start = plan.start_step

    def remaining():
        """The batches after the resumed position, epoch after epoch, in the shared order (fit keeps one
        iterator over them, so one Keras epoch of all the remaining steps is the same walk)."""
        first_epoch, skip = position(start, steps_per_epoch)
        for epoch in range(first_epoch, settings.epochs):
            for b, batch in enumerate(batches(epoch)):
                if epoch > first_epoch or b >= skip:
                    yield batch

    def save(step: int) -> None:
        if plan.should_save(step, total):
            plan.save(step, steps_per_epoch, lambda folder: engine.save(folder, model, optimizer))

    if total > start:
        model.fit(engine.dataset(remaining, plan, task), epochs=1,
                  steps_per_epoch=total - start, shuffle=False, verbose=0,
                  callbacks=[_StepLosses(on_step, start, save)])
    return model
