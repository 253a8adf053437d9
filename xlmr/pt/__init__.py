"""XLM-R in PyTorch: the seven classes of Hugging Face's ``modeling_xlm_roberta``, same names and numbers.

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt import XLMRobertaForMaskedLM
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = XLMRobertaForMaskedLM(config, seed=0).eval()
    >>> tuple(model(torch.tensor([[0, 5, 6, 2]])).logits.shape)
    (1, 4, 100)
"""

from xlmr.common.extras import require

require("pt")

from xlmr.pt.batched import encode_batched  # noqa: E402
from xlmr.pt.fast_linear import fast_path_enabled, set_fast_path  # noqa: E402
from xlmr.pt.models import (  # noqa: E402
    XLMRobertaForCausalLM,
    XLMRobertaForMaskedLM,
    XLMRobertaForMultipleChoice,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    XLMRobertaPreTrainedModel,
)

__all__ = [
    "XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification", "XLMRobertaForQuestionAnswering",
    "XLMRobertaPreTrainedModel", "set_fast_path", "fast_path_enabled", "encode_batched",
]
