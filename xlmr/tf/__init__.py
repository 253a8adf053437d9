"""XLM-RoBERTa as Keras 3 models whose ops are TensorFlow, numerically identical to HF's PyTorch classes.

Needs Keras 3 with the TensorFlow backend. The classes are also exported under HF's TF names
(``TFXLMRobertaModel``, ...), so code written for ``transformers``' TF classes finds them.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForMaskedLM
    >>> cfg = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                        intermediate_size=37)
    >>> tuple(XLMRobertaForMaskedLM(cfg, seed=0)(input_ids=np.array([[0, 5, 6, 2]])).logits.shape)
    (1, 4, 100)
"""

from __future__ import annotations

import os

_FIX = ("set the environment variable KERAS_BACKEND=tensorflow before the first `import keras` (or "
        '"backend": "tensorflow" in ~/.keras/keras.json), or use xlmr.flax (JAX) / xlmr.pt (PyTorch)')

if os.environ.get("KERAS_BACKEND", "tensorflow") not in ("", "tensorflow"):
    raise ImportError(f"xlmr.tf runs on Keras' TensorFlow backend, but KERAS_BACKEND="
                      f"{os.environ['KERAS_BACKEND']!r}: {_FIX}")

import keras  # noqa: E402

if not keras.__version__.startswith("3."):  # pragma: no cover - depends on the installation
    raise ImportError(f"xlmr.tf needs Keras 3, found keras {keras.__version__}: pip install 'keras>=3'")
if keras.backend.backend() != "tensorflow":
    raise ImportError(f"xlmr.tf runs on Keras' TensorFlow backend, but Keras uses {keras.backend.backend()!r}: "
                      f"{_FIX}")

from xlmr.tf.batched import encode_batched  # noqa: E402
from xlmr.tf.checks import checked_call  # noqa: E402
from xlmr.tf.models import (  # noqa: E402
    XLMRobertaForCausalLM,
    XLMRobertaForMaskedLM,
    XLMRobertaForMultipleChoice,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    XLMRobertaPreTrainedModel,
)

# HF's TF class names.
TFXLMRobertaPreTrainedModel = XLMRobertaPreTrainedModel
TFXLMRobertaModel = XLMRobertaModel
TFXLMRobertaForCausalLM = XLMRobertaForCausalLM
TFXLMRobertaForMaskedLM = XLMRobertaForMaskedLM
TFXLMRobertaForSequenceClassification = XLMRobertaForSequenceClassification
TFXLMRobertaForMultipleChoice = XLMRobertaForMultipleChoice
TFXLMRobertaForTokenClassification = XLMRobertaForTokenClassification
TFXLMRobertaForQuestionAnswering = XLMRobertaForQuestionAnswering

__all__ = [
    "XLMRobertaPreTrainedModel", "XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification", "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
    "TFXLMRobertaPreTrainedModel", "TFXLMRobertaModel", "TFXLMRobertaForCausalLM", "TFXLMRobertaForMaskedLM",
    "TFXLMRobertaForSequenceClassification", "TFXLMRobertaForMultipleChoice", "TFXLMRobertaForTokenClassification",
    "TFXLMRobertaForQuestionAnswering", "checked_call", "encode_batched",
]
