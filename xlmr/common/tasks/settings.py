"""The processing settings a fine-tuning run used, saved beside the checkpoint as ``xlmr_task.json``.

``evaluate`` and ``predict`` start from them, so that they tokenise, window and decode exactly as the validation
pass of ``finetune`` did, and metrics recomputed from ``predict`` equal ``metrics.json``.

Example:
    >>> s = TaskSettings("question-answering", max_length=128, doc_stride=32)
    >>> TaskSettings.from_dict(s.to_dict()) == s
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from xlmr.common.io import atomic_write_text
from xlmr.common.tasks import check_task

FILENAME = "xlmr_task.json"


@dataclasses.dataclass
class TaskSettings:
    task: str
    max_length: int = 128
    doc_stride: int = 32               # overlap of consecutive windows, in tokens (the tokenizer's ``stride``)
    max_answer_length: int = 30        # longest answer span QA decoding considers, in tokens
    n_best_size: int = 20              # QA decoding: start and end candidates per window, answers kept (run_qa)
    null_score_diff_threshold: float = 0.0   # SQuAD v2: answer "" when null score - best span score exceeds it
    mlm_probability: float = 0.15
    label_all_tokens: bool = False
    seed: int = 42                     # seeds the fixed masking of masked-LM evaluation
    labels: dict[str, Any] | None = None   # a LabelSpace as a dict
    has_no_answer: bool = False        # QA training data has SQuAD v2 no-answer examples

    def __post_init__(self) -> None:
        check_task(self.task)
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"--max-length must be an integer >= 8, got {self.max_length!r}")
        if not isinstance(self.doc_stride, int) or self.doc_stride < 0:
            raise ValueError(f"--doc-stride must be a non-negative integer, got {self.doc_stride!r}")
        if self.doc_stride >= self.max_length - 4:
            raise ValueError(f"--doc-stride {self.doc_stride} is too large for --max-length {self.max_length}: "
                             f"windows overlap by doc-stride tokens, so it must be below {self.max_length - 4} "
                             "(max-length less the special tokens), and well below for QA, whose question takes room")
        if isinstance(self.n_best_size, bool) or not isinstance(self.n_best_size, int) or self.n_best_size < 1:
            raise ValueError(f"--n-best-size must be a positive integer, got {self.n_best_size!r}")
        if isinstance(self.null_score_diff_threshold, bool) or not isinstance(
                self.null_score_diff_threshold, (int, float)) or not np.isfinite(self.null_score_diff_threshold):
            raise ValueError(f"--null-score-diff-threshold must be a finite number, got "
                             f"{self.null_score_diff_threshold!r}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm-probability must be in (0, 1), got {self.mlm_probability!r}")
        if not isinstance(self.max_answer_length, int) or self.max_answer_length < 1:
            raise ValueError(f"--max-answer-length must be a positive integer, got {self.max_answer_length!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str | os.PathLike) -> None:
        atomic_write_text(os.path.join(folder, FILENAME), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "TaskSettings | None":
        """The settings saved in ``folder``, or None when it has none (a checkpoint not written by finetune)."""
        path = os.path.join(folder, FILENAME)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
