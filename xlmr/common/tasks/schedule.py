"""The optimisation recipe every backend follows: AdamW, linear warmup then linear decay, HF's no-decay set.

The learning rate is a pure function of the update index ``k`` (0 for the first update), as
``torch.optim.lr_scheduler.LambdaLR`` applies it; Keras' ``LearningRateSchedule`` and optax's schedules are
called with the optimizer's iteration count, which also starts at 0, so the three backends use the same
rate at every update.

Example:
    >>> s = TrainingSettings(learning_rate=1e-3, warmup_ratio=0.25)
    >>> [round(learning_rate(k, s, total_steps=8), 6) for k in range(8)]
    [0.0, 0.0005, 0.001, 0.000833, 0.000667, 0.0005, 0.000333, 0.000167]
    >>> decays("roberta.encoder.layer.0.output.LayerNorm.weight"), decays("classifier.dense.weight")
    (False, True)
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class TrainingSettings:
    """Hyper-parameters of one fine-tuning run (HF Trainer's defaults where the issue names none).

    ``max_grad_norm``: the global gradient norm is clipped to it in every backend (torch ``clip_grad_norm_``,
    Keras ``global_clipnorm``, ``optax.clip_by_global_norm``), as HF's Trainer does by default; 0 turns it off.
    ``bf16``: matmuls in bfloat16 with float32 parameters, optimizer state, softmax, LayerNorm and loss (torch
    autocast, Keras' "mixed_bfloat16" policy, an NNX model with ``dtype=bfloat16, param_dtype=float32``).
    ``gradient_checkpointing``: each layer's activations are recomputed in the backward pass (same gradients).
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    seed: int = 42
    no_dropout: bool = False
    logging_steps: int = 10
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    bf16: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"--warmup-ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")


def warmup_steps(settings: TrainingSettings, total_steps: int) -> int:
    """HF's rule: ``ceil(warmup_ratio * total_steps)``."""
    return math.ceil(settings.warmup_ratio * total_steps)


def lr_factor(k: int, warmup: int, total_steps: int) -> float:
    """Multiplier of the peak rate at update ``k``: k / warmup during warmup, then linear decay to 0 at the end
    (HF's ``get_linear_schedule_with_warmup``)."""
    if k < warmup:
        return k / max(1, warmup)
    return max(0.0, (total_steps - k) / max(1, total_steps - warmup))


def learning_rate(k: int, settings: TrainingSettings, total_steps: int) -> float:
    """The learning rate of update ``k`` (0-based)."""
    return settings.learning_rate * lr_factor(k, warmup_steps(settings, total_steps), total_steps)


def decays(name: str) -> bool:
    """Whether a parameter (canonical HF name) gets weight decay: HF's Trainer exempts biases and LayerNorm
    weights."""
    return not (name.endswith("bias") or name.endswith(("LayerNorm.weight", "layer_norm.weight")))
