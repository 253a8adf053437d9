"""xlmr: XLM-RoBERTa for PyTorch, TensorFlow and JAX/Flax, numerically identical across the three.

``import xlmr`` loads no deep-learning framework. Pick a backend explicitly::

    from xlmr.pt import XLMRobertaForMaskedLM      # PyTorch
    from xlmr.tf import XLMRobertaForMaskedLM      # TensorFlow / Keras 3
    from xlmr.flax import XLMRobertaForMaskedLM    # JAX / Flax NNX
"""

from __future__ import annotations

from typing import Any

from xlmr.common.config import XLMRobertaConfig

__version__ = "0.1.0"
__all__ = ["XLMRobertaConfig", "XLMRobertaTokenizer", "XLMRobertaTokenizerFast", "__version__"]


def __getattr__(name: str) -> Any:
    # The tokenizers pull in sentencepiece / tokenizers; load them on first use so that `import xlmr` stays cheap.
    if name == "XLMRobertaTokenizer":
        from xlmr.common.tokenization import XLMRobertaTokenizer
        return XLMRobertaTokenizer
    if name == "XLMRobertaTokenizerFast":
        from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
        return XLMRobertaTokenizerFast
    if name == "pipeline":
        from xlmr.pipelines import pipeline
        return pipeline
    raise AttributeError(f"module 'xlmr' has no attribute {name!r}")
