"""XLM-R in JAX / Flax NNX; numerically identical to ``xlmr.pt`` and ``xlmr.tf``.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import FlaxXLMRobertaForMaskedLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=37, max_position_embeddings=64)
    >>> FlaxXLMRobertaForMaskedLM(config)(input_ids=np.array([[0, 5, 2]])).logits.shape
    (1, 3, 100)

Importing this package imports JAX and Flax only, and registers the output classes as pytrees.
"""

from xlmr.common.extras import require

require("flax")

from xlmr.flax.batched import encode_batched  # noqa: E402
from xlmr.flax.checks import checked_call  # noqa: E402
from xlmr.flax.layers import KVCache  # noqa: E402
from xlmr.flax.models import (  # noqa: E402
    XLMRobertaForCausalLM,
    XLMRobertaForMaskedLM,
    XLMRobertaForMultipleChoice,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    XLMRobertaPreTrainedModel,
)

# HF's names for its Flax classes.
FlaxXLMRobertaPreTrainedModel = XLMRobertaPreTrainedModel
FlaxXLMRobertaModel = XLMRobertaModel
FlaxXLMRobertaForCausalLM = XLMRobertaForCausalLM
FlaxXLMRobertaForMaskedLM = XLMRobertaForMaskedLM
FlaxXLMRobertaForSequenceClassification = XLMRobertaForSequenceClassification
FlaxXLMRobertaForMultipleChoice = XLMRobertaForMultipleChoice
FlaxXLMRobertaForTokenClassification = XLMRobertaForTokenClassification
FlaxXLMRobertaForQuestionAnswering = XLMRobertaForQuestionAnswering

__all__ = [
    "XLMRobertaPreTrainedModel", "XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification", "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
    "FlaxXLMRobertaPreTrainedModel", "FlaxXLMRobertaModel", "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM", "FlaxXLMRobertaForSequenceClassification", "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForTokenClassification", "FlaxXLMRobertaForQuestionAnswering",
    "KVCache", "checked_call", "encode_batched",
]
