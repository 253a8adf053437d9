"""Data-parallel training in TensorFlow/Keras on ``tf.distribute``: ``MirroredStrategy`` over the local devices,
``MultiWorkerMirroredStrategy`` over the workers ``TF_CONFIG`` names; model and optimizer are built inside
``strategy.scope()`` and Keras ``fit`` runs the step on every replica.

``xlmr.tf.training.train`` calls these hooks. With a strategy, or gradient accumulation, the model gets a
``train_step`` that sums each replica's micro-batch gradients weighted by
``xlmr.common.distributed.split_batch``, all-reduces them, clips the global norm of the full gradient (Keras
would clip each replica's share before its own all-reduce, which is not what one device computes), and lets
the optimizer apply it. ``distribute_datasets_from_function`` hands each replica the rows ``split_batch``
gives its rank, so the split is the same as torch's and JAX's.

Example (no strategy: the default one, one replica):
    >>> engine = Engine.from_options()
    >>> engine.world, engine.rank, engine.strategy is None
    (1, 0, True)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Callable, Iterable

import numpy as np

from xlmr.common.distributed import Plan, split_batch, tf_config_worker

CHECKPOINT_PREFIX = "tf_state"   # tf.train.Checkpoint of model, optimizer and RNG under checkpoint-STEP/


def _cpu_devices(count: int) -> None:
    """Split the CPU into ``count`` logical devices; TensorFlow allows it only before its runtime starts."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise RuntimeError(f"--cpu-devices {count}: TensorFlow already started with {have} CPU device(s); "
                               "the split must come before any TensorFlow work") from None


class Engine:
    """The ``tf.distribute`` strategy of a run (None: Keras' default, one replica)."""

    def __init__(self, strategy: Any = None, rank: int = 0, workers: int = 1):
        self.strategy, self.rank, self.workers = strategy, rank, workers

    @classmethod
    def from_options(cls, strategy: str | None = None, cpu_devices: int | None = None) -> "Engine":
        """The engine of ``xlmr finetune --backend tf [--strategy mirrored|multiworker] [--cpu-devices N]``."""
        import tensorflow as tf

        if cpu_devices:
            _cpu_devices(cpu_devices)
        if strategy is None:
            return cls()
        if strategy == "multiworker":
            rank, workers = tf_config_worker(os.environ.get("TF_CONFIG"))
            chosen = tf.distribute.MultiWorkerMirroredStrategy()
            return cls(chosen, rank=rank, workers=workers)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return cls(tf.distribute.MirroredStrategy(devices))

    @property
    def world(self) -> int:
        return 1  # one process holds all local replicas; rows are split per replica in ``dataset``

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # -------------------------------------------------------------------------------------------- step and data
    def install_train_step(self, model, max_grad_norm: float) -> None:
        """Give ``model`` (compiled) the weighted, all-reduced, globally clipped step described above."""
        import tensorflow as tf
        from keras.src.optimizers.base_optimizer import clip_by_global_norm

        replicas = self.replicas

        def train_step(data):
            micros, weights = data
            variables = model.trainable_variables
            grads, loss = [tf.zeros_like(v) for v in variables], 0.0
            for i, micro in enumerate(micros):
                with tf.GradientTape() as tape:
                    part = model(micro, training=True)["loss"] * weights[i]
                grads = [a + tf.convert_to_tensor(g) if g is not None else a
                         for a, g in zip(grads, tape.gradient(part, variables))]
                loss = loss + part
            context = tf.distribute.get_replica_context()
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            if max_grad_norm:
                grads = clip_by_global_norm(grads, max_grad_norm)
            # the optimizer sums over replicas once more: hand it each replica's equal share
            model.optimizer.apply([g / replicas for g in grads], variables)
            return {"loss": context.all_reduce(tf.distribute.ReduceOp.SUM, loss)}

        model.train_step = train_step

    def dataset(self, batches: Callable[[], Iterable[dict[str, np.ndarray]]], plan: Plan, task: str):
        """Per replica: its micro-batches of each global batch and their loss weights."""
        import tensorflow as tf

        first = next(iter(batches()))
        spec = {k: tf.TensorSpec((None,) * v.ndim, tf.as_dtype(v.dtype)) for k, v in first.items()}
        signature = (tuple(spec for _ in range(plan.accumulation)), tf.TensorSpec((plan.accumulation,), tf.float32))
        world = self.replicas

        def for_worker(worker: int, local: int):
            def generate():
                for batch in batches():
                    for replica in range(local):  # consecutive elements go to consecutive local replicas
                        pieces = split_batch(batch, task, worker * local + replica, world, plan.accumulation)
                        yield tuple(p for p, _ in pieces), np.array([w for _, w in pieces], np.float32)

            return tf.data.Dataset.from_generator(generate, output_signature=signature)

        if self.strategy is None:
            return for_worker(0, 1)
        local = world // self.workers
        return self.strategy.distribute_datasets_from_function(
            lambda context: for_worker(context.input_pipeline_id, local))

    # -------------------------------------------------------------------------------------------- checkpoints
    def save(self, folder: str, model, optimizer) -> None:
        """Model and optimizer variables with ``tf.train.Checkpoint`` (TensorFlow's own format). Under
        MultiWorkerMirroredStrategy every worker must take part in the write, but only the chief's copy is kept:
        the others write into a temporary folder of their own and delete it (TensorFlow's recommended pattern),
        so ``folder`` holds one writer's files even on a file system the workers share."""
        import tensorflow as tf

        if self.rank == 0:
            tf.train.Checkpoint(model=model, optimizer=optimizer).write(os.path.join(folder, CHECKPOINT_PREFIX))
            return
        scratch = tempfile.mkdtemp(prefix=f"xlmr-worker{self.rank}-")
        try:
            tf.train.Checkpoint(model=model, optimizer=optimizer).write(os.path.join(scratch, CHECKPOINT_PREFIX))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def load(self, folder: str, model, optimizer) -> None:
        import tensorflow as tf

        with self.scope():
            optimizer.build(model.trainable_variables)
        status = tf.train.Checkpoint(model=model, optimizer=optimizer).read(os.path.join(folder, CHECKPOINT_PREFIX))
        status.assert_existing_objects_matched()

    def close(self) -> None:
        pass
