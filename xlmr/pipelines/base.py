"""What every pipeline shares: loading the model and tokenizer for a backend, and running length buckets.

A pipeline holds a model of one backend (``xlmr.backends`` imports the framework on first use), an
``XLMRobertaTokenizerFast`` (offsets are needed to point back into the text) and per-task defaults that a call's
keyword arguments override. Token-id sequences of mixed lengths run through ``xlmr.common.batching``'s buckets,
each padded only to its own longest member; results come back per sequence, unpadded, as numpy.

Example:
    >>> import xlmr
    >>> pipe = xlmr.pipeline("feature-extraction", backend="pt")     # the embedded default checkpoint
    >>> pipe.backend, pipe.max_length
    ('pt', 128)
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from xlmr import backends
from xlmr.common import batching

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "default")


def backend_of(model: Any) -> str | None:
    """The backend a loaded xlmr model belongs to (``xlmr.pt.models.X`` -> "pt"), or None for anything else."""
    parts = type(model).__module__.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "xlmr" and parts[1] in backends.BACKENDS else None


def load_tokenizer(tokenizer: Any, source: Any) -> Any:
    """A fast tokenizer from ``tokenizer`` (a folder, a tokenizer, or None to read the model's folder)."""
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

    if tokenizer is None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError("tokenizer=None works only when model is a checkpoint folder; with a loaded model pass "
                             "tokenizer= (a folder or an XLMRobertaTokenizerFast)")
        tokenizer = source
    if isinstance(tokenizer, (str, os.PathLike)):
        return XLMRobertaTokenizerFast.from_pretrained(tokenizer)
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise ValueError(f"tokenizer={type(tokenizer).__name__} has no character offsets; pipelines need an "
                         f"XLMRobertaTokenizerFast")
    return tokenizer


def load_model(model: Any, backend: str | None, architecture: str, **config_overrides: Any) -> tuple[Any, str]:
    """(model, backend) from a checkpoint folder (loaded with ``architecture``'s class) or a loaded xlmr model."""
    if model is None:
        model = DEFAULT_MODEL
    if isinstance(model, (str, os.PathLike)):
        if backend is None:
            installed = backends.installed_backends()
            if not installed:
                raise backends.BackendNotInstalledError(
                    "no backend is installed; install one with pip install 'xlmr[torch]' (or [tf], [flax])")
            backend = installed[0]
        return backends.model_class(backend, architecture).from_pretrained(model, **config_overrides), backend
    found = backend_of(model)
    if found is None:
        raise ValueError(f"model must be a checkpoint folder or an xlmr model, got {type(model).__name__}")
    if backend is not None and backend != found:
        raise ValueError(f"backend={backend!r} but model is a {found} model ({type(model).__module__})")
    have = getattr(model, "architecture", type(model).__name__)
    if have != architecture:
        raise ValueError(f"this pipeline needs an {architecture}, got an {have}")
    return model, found


class Pipeline:
    """Base class: ``pipe(inputs, **kwargs)`` runs the task; kwargs override the defaults given at creation.

    Subclasses set ``task``, ``architecture`` and ``defaults``, and implement ``__call__``.
    """

    task = ""
    architecture = ""
    defaults: dict[str, Any] = {}
    config_overrides: dict[str, Any] = {}

    def __init__(self, model: Any = None, backend: str | None = None, tokenizer: Any = None,
                 max_length: int | None = None, **task_defaults: Any):
        if backend is not None:
            backends.check_backend(backend)
        self.settings(**task_defaults)  # unknown or bad arguments fail before a model is loaded
        self.model, self.backend = load_model(model, backend, self.architecture, **self.config_overrides)
        self.tokenizer = load_tokenizer(tokenizer, model if model is not None else DEFAULT_MODEL)
        self.config = self.model.config
        limit = min(self.config.max_sequence_length, self.tokenizer.model_max_length or 10**9)
        if max_length is None:
            max_length = limit
        max_length = int(max_length) if isinstance(max_length, (int, np.integer)) else max_length
        if not isinstance(max_length, int) or isinstance(max_length, bool) or not 4 <= max_length <= limit:
            raise ValueError(f"max_length={max_length!r} must be an integer in [4, {limit}] (the model's "
                             f"max_sequence_length {self.config.max_sequence_length}, tokenizer model_max_length "
                             f"{self.tokenizer.model_max_length})")
        self.max_length = max_length
        self.task_defaults = task_defaults

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, max_length={self.max_length})"

    def settings(self, **kwargs: Any) -> dict[str, Any]:
        """Defaults, then the pipeline's task defaults, then this call's arguments; unknown names raise."""
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.task} pipeline got unknown argument(s) {', '.join(unknown)}; it takes "
                             f"{', '.join(sorted(self.defaults)) or 'none'}")
        merged = {**self.defaults, **getattr(self, "task_defaults", {}), **kwargs}
        self.check(merged)
        return merged

    def check(self, settings: dict[str, Any]) -> None:
        """Raise a one-line ValueError for a bad argument (subclasses)."""

    # -------------------------------------------------------------------------------------------- running
    def run(self, sequences: Sequence[Sequence[int]], fields: Sequence[str], choices: bool = False
            ) -> list[dict[str, np.ndarray]]:
        """The model's ``fields`` for each token-id sequence, unpadded, in input order, run in length buckets.

        ``choices``: the sequences are candidates of a multiple-choice model, which scores each one on its own;
        a bucket goes in as one example with that many choices.
        """
        results: list[dict[str, np.ndarray] | None] = [None] * len(sequences)
        limit = self.config.max_sequence_length
        for bucket in batching.plan_buckets(sequences, self.config.pad_token_id):
            # widths are rounded up to multiples of 8 (few shapes to compile); columns past the position limit
            # can only be padding, since every sequence fits
            inputs = {"input_ids": bucket.input_ids[:, :limit], "attention_mask": bucket.attention_mask[:, :limit]}
            if self.backend == "flax":
                # XLA compiles once per shape: rows are repeated up to a power of two so that few shapes occur
                extra = (1 << (len(bucket.indices) - 1).bit_length()) - len(bucket.indices)
                inputs = {k: np.concatenate([v, np.repeat(v[:1], extra, axis=0)]) for k, v in inputs.items()}
            if choices:
                inputs = {k: v[None] for k, v in inputs.items()}
            if self.backend == "flax":
                # one jitted program per bucket shape; eager JAX would compile every op for every new shape
                out = backends.import_backend("flax").checked_call(self.model, **inputs)
            else:
                out = backends.call_model(self.backend, self.model, inputs)
            arrays = {f: backends.to_numpy(self.backend, getattr(out, f), np.float32) for f in fields}
            if choices:
                arrays = {f: a.reshape(-1) for f, a in arrays.items()}
            for row, index in enumerate(bucket.indices):
                n = len(sequences[index])
                # token-level outputs (batch, seq[, features]) lose their padding; per-sequence ones are rows
                results[index] = {f: a[row, :n] if a.ndim == 3 or f in ("start_logits", "end_logits") else a[row]
                                  for f, a in arrays.items()}
        return results  # type: ignore[return-value]

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None, truncation: bool | str = True
               ) -> list[list[int]]:
        """Token ids with <s> ... </s> (and </s></s> between a pair), truncated to ``max_length``."""
        if not texts:
            return []
        return self.tokenizer(list(texts), None if pairs is None else list(pairs), truncation=truncation,
                              max_length=self.max_length)["input_ids"]

    def tokens_to_string(self, tokens: list[str]) -> str:
        return self.tokenizer.backend_tokenizer.decoder.decode(tokens)


def as_batch(inputs: Any, name: str, kind: type | tuple[type, ...]) -> tuple[list[Any], bool]:
    """(items, whether ``inputs`` was a list): one ``kind`` item or a non-empty list of them, else a ValueError."""
    if isinstance(inputs, kind):
        return [inputs], False
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, kind) for x in inputs):
        return list(inputs), True
    names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    raise ValueError(f"{name} must be a {names} or a non-empty list of them, got {type(inputs).__name__}"
                     + (" (empty)" if isinstance(inputs, (list, tuple)) and not inputs else ""))
