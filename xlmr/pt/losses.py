"""The heads' losses, with HF's semantics (mean over the targets that are not ignored)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import IGNORE_INDEX
from xlmr.common.losses import MULTI_LABEL, REGRESSION, SINGLE_LABEL, sequence_problem_type


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over the labels that are not ``ignore_index``; logits (..., classes), in float32."""
    labels = labels.reshape(-1).to(logits.device, torch.long)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels, ignore_index=ignore_index)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token prediction: the logits at position t are scored against the label at t + 1."""
    return cross_entropy(logits[:, :-1], labels[:, 1:])


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: XLMRobertaConfig):
    """MSE (regression), cross-entropy (single label) or BCE with logits (multi-label), chosen as HF does."""
    labels = labels.to(logits.device)
    problem = sequence_problem_type(config, labels.dtype in (torch.long, torch.int))
    if problem == REGRESSION:
        labels = labels.to(logits.dtype)
        if config.num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem == SINGLE_LABEL:
        return cross_entropy(logits, labels)
    if problem == MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"config.problem_type={problem!r} is not one of {REGRESSION}, {SINGLE_LABEL}, {MULTI_LABEL}")


def question_answering_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Mean of the start and end cross-entropies; positions outside the sequence are clamped to its length and
    then ignored."""
    if start_positions.dim() > 1:
        start_positions = start_positions.squeeze(-1)
    if end_positions.dim() > 1:
        end_positions = end_positions.squeeze(-1)
    ignored = start_logits.shape[1]
    start = cross_entropy(start_logits, start_positions.clamp(0, ignored), ignore_index=ignored)
    end = cross_entropy(end_logits, end_positions.clamp(0, ignored), ignore_index=ignored)
    return (start + end) / 2
