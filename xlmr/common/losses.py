"""Which loss a head uses: the decisions HF makes, taken once here; backends supply the tensor ops."""

from __future__ import annotations

from xlmr.common.config import XLMRobertaConfig

REGRESSION, SINGLE_LABEL, MULTI_LABEL = "regression", "single_label_classification", "multi_label_classification"


def sequence_problem_type(config: XLMRobertaConfig, labels_are_integers: bool) -> str:
    """HF's rule for XLMRobertaForSequenceClassification: an explicit ``config.problem_type`` wins; otherwise
    one label means regression (MSE), integer labels mean single-label (cross-entropy), float labels multi-label
    (BCE with logits)."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return REGRESSION
    return SINGLE_LABEL if labels_are_integers else MULTI_LABEL
