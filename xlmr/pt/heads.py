"""Task heads on top of the encoder: the masked/causal LM head and the sentence classification head.

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt.heads import ClassificationHead, LMHead
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64, num_labels=3)
    >>> hidden, table = torch.randn(2, 5, 32), torch.nn.Embedding(100, 32)
    >>> tuple(LMHead(config)(hidden, word_embeddings=table).shape), tuple(ClassificationHead(config).eval()(hidden).shape)
    ((2, 5, 100), (2, 3))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xlmr.common.config import XLMRobertaConfig
from xlmr.pt.fast_linear import linear


class LMHead(nn.Module):
    """dense -> exact GELU -> LayerNorm -> decoder onto the vocabulary (+ ``bias``).

    As in HF, ``decoder.bias`` is the same Parameter as ``bias``, and ``decoder.weight`` is the word-embedding
    matrix unless ``config.tie_word_embeddings`` is False. The model ties them by sharing the Parameter
    (``tie_weights``: HF's state dict holds both names), so ``word_embeddings``, which the TensorFlow and Flax
    heads multiply by when tied, is here the table ``decoder.weight`` already is.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, features: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
        x = self.layer_norm(linear(features, self.dense, activation=F.gelu))  # GELU whatever config.hidden_act says
        return linear(x, self.decoder)


class ClassificationHead(nn.Module):
    """First token -> dropout -> dense -> tanh -> dropout -> out_proj (sentence-level classification)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.classifier_dropout_rate)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features[:, 0])
        x = self.dropout(torch.tanh(linear(x, self.dense)))
        return linear(x, self.out_proj)
