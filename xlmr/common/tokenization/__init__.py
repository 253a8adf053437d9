"""XLM-R's tokenizers, framework-free: ``XLMRobertaTokenizer`` (sentencepiece) and ``XLMRobertaTokenizerFast``
(the ``tokenizers`` library, imported only when the fast class is first used).

* ``base``: what both share (HF's call signature, padding and truncation, special tokens, tokenizer files);
* ``slow``: the sentencepiece tokenizer, with fairseq's id offsets;
* ``fast``: the ``tokenizers`` pipeline built from the sentencepiece model or read from ``tokenizer.json``.
"""

from __future__ import annotations

from typing import Any

from xlmr.common.tokenization.slow import XLMRobertaTokenizer

__all__ = ["XLMRobertaTokenizer", "XLMRobertaTokenizerFast"]


def __getattr__(name: str) -> Any:
    if name == "XLMRobertaTokenizerFast":
        from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

        return XLMRobertaTokenizerFast
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
