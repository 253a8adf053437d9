"""Fine-tuning in PyTorch: a plain torch loop with ``torch.optim.AdamW`` and ``LambdaLR``.

The data order, learning rate at every update, weight-decay set and gradient clipping come from
``xlmr.common.tasks`` and are the same as in ``xlmr.tf.training`` and ``xlmr.flax.training``; only the framework
code differs. ``make_optimizer`` and ``train_step`` are separate so that a distributed engine can wrap the model
(DDP / FSDP) between them without touching the recipe.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt import XLMRobertaForSequenceClassification
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

import numpy as np
import torch

from xlmr.common.distributed import Plan, check_bf16, position, split_batch
from xlmr.common.tasks.schedule import TrainingSettings, decays, lr_factor, warmup_steps
from xlmr.pt.distributed import Engine


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """Whether autocast can compute in bfloat16 on ``device``, and the device's name for the error."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return torch.cuda.is_bf16_supported(), f"{device} (compute capability {major}.{minor})"
    return torch.amp.is_autocast_available(device.type), str(device)


@contextlib.contextmanager
def precision(bf16: bool):
    """Build the model to train inside this; it yields the ``from_pretrained`` options of the precision.
    PyTorch keeps float32 parameters and casts per operation (``torch.autocast`` in ``train_step``)."""
    if bf16:
        device = torch.get_default_device()
        check_bf16(*bf16_supported(torch.device("cpu") if device.type == "meta" else device))
    yield {}


def make_optimizer(model: torch.nn.Module, settings: TrainingSettings, total_steps: int):
    """AdamW over two groups (HF's no-decay set: biases and LayerNorm weights get no weight decay) and the
    linear warmup/decay schedule; LambdaLR applies ``lr_factor(k)`` to the k-th update, k from 0."""
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if decays(n)], "weight_decay": settings.weight_decay},
              {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
                                  eps=settings.adam_epsilon)
    warmup = warmup_steps(settings, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: lr_factor(k, warmup, total_steps))
    return optimizer, scheduler


def train_step(model: torch.nn.Module, optimizer, scheduler, batch, settings: TrainingSettings,
               loss_scale: float = 1.0) -> float:
    """One update on ``batch`` (numpy arrays, labels inside), or on a list of ``(micro-batch, weight)`` pieces
    (``xlmr.common.distributed.split_batch``: gradient accumulation, data parallelism); returns this process's
    share of the batch's loss. ``loss_scale`` undoes DDP/FSDP's averaging of gradients over the world."""
    device = next(model.parameters()).device
    pieces = [(batch, 1.0)] if isinstance(batch, dict) else batch
    total = 0.0
    for piece, weight in pieces:
        # bf16: matmuls in bfloat16 on float32 parameters; the losses cast their logits to float32 themselves
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            loss = model(**{k: torch.from_numpy(v).to(device) for k, v in piece.items()}).loss
        (loss * (weight * loss_scale) if (weight, loss_scale) != (1.0, 1.0) else loss).backward()
        total += float(loss.detach()) * weight
    if settings.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


# --- distributed hook (xlmr.pt.distributed): the same loop on one process or many ------------------------------
def train(model: torch.nn.Module, batches: Callable[[int], Iterable[dict[str, np.ndarray]]],
          settings: TrainingSettings, steps_per_epoch: int, on_step: Callable[[int, float], None],
          plan: Plan | None = None, task: str = "", engine: Engine | None = None) -> torch.nn.Module:
    """Train ``model`` in place for ``settings.epochs`` epochs of ``batches(epoch)``; ``on_step(step, loss)``
    after every update (step counts from 1). ``plan`` (``xlmr.common.distributed``) splits each batch over
    ``engine``'s processes and into micro-batches, saves checkpoints and resumes; returns the trained model
    (a new, unsharded one after FSDP)."""
    plan, engine = plan or Plan(), engine or Engine()
    torch.manual_seed(settings.seed)  # dropout masks
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    total = settings.epochs * steps_per_epoch
    wrapped = engine.wrap(model)
    optimizer, scheduler = make_optimizer(wrapped, settings, total)
    if plan.resume_path is not None:
        engine.load(plan.resume_path, wrapped, optimizer, scheduler)
    wrapped.train()
    step = plan.start_step
    first_epoch, skip = position(step, steps_per_epoch)
    for epoch in range(first_epoch, settings.epochs):
        for b, batch in enumerate(batches(epoch)):
            if epoch == first_epoch and b < skip:
                continue
            if plan.world > 1 or plan.accumulation > 1:
                batch = split_batch(batch, task, plan.rank, plan.world, plan.accumulation)
            step += 1
            on_step(step, engine.sum(train_step(wrapped, optimizer, scheduler, batch, settings, engine.loss_scale())))
            if plan.should_save(step, total):
                plan.save(step, steps_per_epoch, lambda folder: engine.save(folder, wrapped, optimizer, scheduler),
                          engine.barrier)
    model = engine.unwrap(wrapped, model)
    model.eval()
    return model
