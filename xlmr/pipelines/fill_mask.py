"""``fill-mask``: the likeliest tokens at each ``<mask>`` of a text.

Example:
    >>> import xlmr
    >>> fill = xlmr.pipeline("fill-mask", backend="pt")      # the embedded default checkpoint (an MLM)
    >>> out = fill("Everyone has the right to <mask>.", top_k=2)
    >>> len(out), sorted(out[0])
    (2, ['score', 'sequence', 'token', 'token_str'])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xlmr.common.tasks.inference import check_positive, fill_mask_candidates
from xlmr.pipelines.base import Pipeline, as_batch


class FillMaskPipeline(Pipeline):
    """HF's output: per mask a list of ``{"score", "token", "token_str", "sequence"}``, best first; a text with
    one mask gives that list, with several a list per mask. ``targets`` (a string or list) restricts the
    candidates; a target that is not a vocabulary piece is replaced by its first piece, as HF does."""

    task = "fill-mask"
    architecture = "XLMRobertaForMaskedLM"
    defaults = {"top_k": 5, "targets": None}

    def check(self, settings: dict[str, Any]) -> None:
        check_positive("top_k", settings["top_k"])
        targets = settings["targets"]
        if targets is not None and not isinstance(targets, str) and not (
                isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) for t in targets)):
            raise ValueError(f"targets={targets!r} must be a string or a non-empty list of strings")

    def target_ids(self, targets: str | Sequence[str] | None) -> list[int] | None:
        if targets is None:
            return None
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in [targets] if isinstance(targets, str) else targets:
            if target in vocab:
                ids.append(vocab[target])
                continue
            pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if pieces:
                ids.append(pieces[0])
        if not ids:
            raise ValueError(f"targets={targets!r}: none of them is or starts with a vocabulary piece")
        return sorted(set(ids))

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        texts, batched = as_batch(inputs, "inputs", str)
        targets = self.target_ids(settings["targets"])
        top_k = min(settings["top_k"], len(targets)) if targets is not None else settings["top_k"]
        ids = self.encode(texts)
        mask_id = self.tokenizer.mask_token_id
        for i, seq in enumerate(ids):
            if mask_id not in seq:
                raise ValueError(f"inputs[{i}] has no {self.tokenizer.mask_token} within its first {self.max_length} "
                                 f"tokens: {texts[i][:60]!r}")
        results = []
        for seq, out in zip(ids, self.run(ids, ["logits"])):
            seq = np.asarray(seq)
            masks = np.flatnonzero(seq == mask_id)
            rows = []
            for position in masks:
                row = []
                for token, score in fill_mask_candidates(out["logits"][position], top_k, targets):
                    filled = seq.copy()
                    filled[position] = token
                    # With several masks the others stay visible, so special tokens are kept (HF's rule).
                    text = self.tokenizer.decode(filled, skip_special_tokens=len(masks) == 1)
                    row.append({"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                                "sequence": text})
                rows.append(row)
            results.append(rows[0] if len(rows) == 1 else rows)
        return results if batched else results[0]
