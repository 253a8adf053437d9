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

import re
import sys
import tempfile

from xlmr.common.extras import quiet_tensorflow, require

require("tf")

# TF 2.21 writes its start-up notices (oneDNN, missing CUDA drivers, CPU features, ``failed call to cuInit``)
# through absl before TF_CPP_MIN_LOG_LEVEL is read, so the variable alone does not silence them. Unless the user
# chose a level, TensorFlow is imported (and its devices probed) with file descriptor 2 captured, and whatever is
# not such a log line is written back to stderr.
_TF_LOG_LINE = re.compile(r"(?:[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
                          r"|WARNING: All log messages before absl::InitializeLog\(\) is called.*"
                          r"|To enable the following instructions: .*rebuild TensorFlow.*)")


def _import_tensorflow_quietly() -> None:
    user_chose = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    quiet_tensorflow()
    if user_chose or "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (Keras loads a second TF library, which logs again)
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe happens here, not at the first op
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not _TF_LOG_LINE.fullmatch(line)]
            if rest:
                print("\n".join(rest), file=sys.stderr)


_import_tensorflow_quietly()

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
