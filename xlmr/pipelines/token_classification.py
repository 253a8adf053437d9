"""``token-classification`` (alias ``ner``): labelled pieces, words or entity groups with character offsets.

Texts longer than the model's window are cut into overlapping windows (``stride`` tokens shared) whose entities
are merged, so nothing past the window is dropped. Offsets point into the original string; with
``is_split_into_words=True`` an input is a list of words, joined with single spaces, and offsets point into
that joined string.

Example:
    >>> import xlmr
    >>> tag = xlmr.pipeline("token-classification", backend="pt", aggregation_strategy="none", ignore_labels=[])
    >>> out = tag("Everyone has the right to life.")
    >>> sorted(out[0]), out[0]["start"], out[0]["end"]
    (['end', 'entity', 'index', 'score', 'start', 'word'], 0, 8)
"""

from __future__ import annotations

from typing import Any


from xlmr.common.tasks.inference import (
    AGGREGATION_STRATEGIES,
    aggregate_tokens,
    check_choice,
    default_stride,
    merge_windows,
    softmax,
    token_pieces,
    token_windows,
)
from xlmr.pipelines.base import Pipeline


class TokenClassificationPipeline(Pipeline):
    """HF's ``aggregation_strategy``: ``none`` (a dict per piece, with ``entity`` and ``index``), ``simple``
    (pieces grouped by label into ``entity_group``), ``first``/``average``/``max`` (pieces joined into words
    first). Labels in ``ignore_labels`` (``["O"]``) are left out. ``stride`` (default: half a window, at most
    128) is the overlap between windows of a long text."""

    task = "token-classification"
    architecture = "XLMRobertaForTokenClassification"
    defaults = {"aggregation_strategy": "none", "ignore_labels": ("O",), "stride": None,
                "is_split_into_words": False}

    def check(self, settings: dict[str, Any]) -> None:
        strategy = settings["aggregation_strategy"]
        check_choice("aggregation_strategy", str(getattr(strategy, "value", strategy)).lower(),
                     AGGREGATION_STRATEGIES)
        stride = settings["stride"]
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 0):
            raise ValueError(f"stride={stride!r} must be an integer >= 0")
        if not isinstance(settings["ignore_labels"], (list, tuple)):
            raise ValueError(f"ignore_labels={settings['ignore_labels']!r} must be a list of labels")

    def _inputs(self, inputs: Any, split: bool) -> tuple[list[Any], bool]:
        def is_words(x: Any) -> bool:
            return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(w, str) for w in x)

        if split:
            if is_words(inputs):
                return [list(inputs)], False
            if isinstance(inputs, (list, tuple)) and inputs and all(is_words(x) for x in inputs):
                return [list(x) for x in inputs], True
            raise ValueError("with is_split_into_words=True, inputs must be a non-empty list of words (strings) or "
                             "a list of such lists")
        if isinstance(inputs, str):
            return [inputs], False
        if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, str) for x in inputs):
            return list(inputs), True
        raise ValueError(f"inputs must be a string or a non-empty list of strings, got {type(inputs).__name__} "
                         f"(pass is_split_into_words=True for lists of words)")

    def _pieces(self, item: Any, split: bool) -> tuple[str, list[int], list[tuple[int, int]]]:
        """(text, content token ids, offsets into the text) without special tokens and without truncation."""
        if not split:
            enc = self.tokenizer(item, add_special_tokens=False, return_offsets_mapping=True)
            return item, list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        # Each word is encoded on its own, as HF does with pre-split words, then shifted into the joined text.
        enc = self.tokenizer(item, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets, start = [], [], 0
        for word, word_ids, word_offsets in zip(item, enc["input_ids"], enc["offset_mapping"]):
            ids += word_ids
            offsets += [(start + a, start + b) for a, b in word_offsets]
            start += len(word) + 1
        return " ".join(item), ids, offsets

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        strategy = str(getattr(settings["aggregation_strategy"], "value", settings["aggregation_strategy"])).lower()
        items, batched = self._inputs(inputs, settings["is_split_into_words"])
        size = self.max_length - 2
        stride = default_stride(size) if settings["stride"] is None else settings["stride"]
        if stride >= size:
            raise ValueError(f"stride={stride} must be below the window of {size} tokens (max_length={self.max_length}"
                             f" less <s> and </s>)")
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        texts, sequences, owners = [], [], []
        for i, item in enumerate(items):
            text, ids, offsets = self._pieces(item, settings["is_split_into_words"])
            texts.append((text, ids, offsets))
            for start, stop in token_windows(len(ids), size, stride):
                sequences.append([cls] + ids[start:stop] + [sep])
                owners.append((i, start, stop))
        outputs = self.run(sequences, ["logits"])
        per_text: list[list[dict[str, Any]]] = [[] for _ in items]
        windows = [0] * len(items)
        for (i, start, stop), out in zip(owners, outputs):
            text, ids, offsets = texts[i]
            scores = softmax(out["logits"][1:-1])
            pieces = token_pieces(text, ids[start:stop], self.tokenizer.convert_ids_to_tokens(ids[start:stop]),
                                  scores, offsets[start:stop], start + 1, self.tokenizer.unk_token_id)
            per_text[i] += aggregate_tokens(pieces, strategy, self.config.id2label, self.tokens_to_string,
                                            settings["ignore_labels"])
            windows[i] += 1
        results = [merge_windows(entities, strategy) if n > 1 else entities
                   for entities, n in zip(per_text, windows)]
        return results if batched else results[0]


