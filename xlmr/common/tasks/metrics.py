"""Validation metrics, framework-free, with the definitions of the tools users compare against.

* classification: accuracy and macro-F1 (scikit-learn's: over the labels seen in gold or prediction);
  regression: MSE and Pearson's r; multi-label: micro-F1 over (example, label) pairs;
* token classification: entity-level precision, recall and F1 exactly as ``seqeval``'s default mode computes
  them (conlleval chunking: ``I-X`` after ``O`` opens a chunk, a change of type closes one), plus token accuracy;
* question answering: the official SQuAD v2 exact match and F1 (0-100), no-answer aware;
* multiple choice: accuracy; language modelling: mean loss per predicted token and its perplexity.

Example:
    >>> entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    [('PER', 0, 1), ('LOC', 3, 3), ('LOC', 4, 4)]
    >>> entity_scores([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])["f1"]
    0.0
    >>> squad_scores([["the Cat!"]], ["cat"])
    {'exact_match': 100.0, 'f1': 100.0}
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Sequence

import numpy as np


# ------------------------------------------------------------------------------------------------ classification
def accuracy(gold: Sequence, predicted: Sequence) -> float:
    """Fraction of equal pairs.

    >>> accuracy([1, 2, 3], [1, 2, 0])
    0.6666666666666666
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold values but {len(predicted)} predictions")
    return float(np.mean([g == p for g, p in zip(gold, predicted)])) if gold else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(gold: Sequence, predicted: Sequence) -> float:
    """Unweighted mean of per-label F1 over the labels in gold or prediction (scikit-learn's ``average="macro"``).

    >>> macro_f1(["a", "a", "b"], ["a", "b", "b"])
    0.6666666666666666
    """
    labels = sorted(set(gold) | set(predicted), key=str)
    scores = [_f1(sum(g == x and p == x for g, p in zip(gold, predicted)),
                  sum(g != x and p == x for g, p in zip(gold, predicted)),
                  sum(g == x and p != x for g, p in zip(gold, predicted))) for x in labels]
    return float(np.mean(scores)) if scores else 0.0


def micro_f1_sets(gold: Sequence[set], predicted: Sequence[set]) -> float:
    """Micro-F1 of multi-label predictions: counts over every (example, label) pair.

    >>> micro_f1_sets([{"a", "b"}, {"c"}], [{"a"}, {"c", "d"}])
    0.6666666666666666
    """
    tp = sum(len(g & p) for g, p in zip(gold, predicted))
    fp = sum(len(p - g) for g, p in zip(gold, predicted))
    fn = sum(len(g - p) for g, p in zip(gold, predicted))
    return _f1(tp, fp, fn)


def regression_scores(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """Mean squared error and Pearson's r (0 when either side is constant).

    >>> regression_scores([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    {'mse': 4.666666666666667, 'pearson': 1.0}
    """
    g, p = np.asarray(gold, np.float64), np.asarray(predicted, np.float64)
    mse = float(np.mean((g - p) ** 2))
    gc, pc = g - g.mean(), p - p.mean()
    denominator = math.sqrt(float((gc ** 2).sum() * (pc ** 2).sum()))
    return {"mse": mse, "pearson": float((gc * pc).sum() / denominator) if denominator > 0 else 0.0}


# ------------------------------------------------------------------------------------------------ seqeval
def _split(tag: str) -> tuple[str, str]:
    # seqeval's reading: the first character is the prefix, the type follows the first "-" (O has type "_").
    return tag[:1], tag[1:].split("-", 1)[-1] or "_"


def _chunk_ends(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
    if prefix in ("B", "S"):
        return True
    if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix not in ("O", ".") and prev_type != type_


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks (type, first, last) of one tag sequence, by conlleval's rules as seqeval's default applies
    them (IOB1/IOB2/IOBES prefixes; an ``I-`` after ``O`` or after another type starts a chunk)."""
    chunks, prev_prefix, prev_type, begin = [], "O", "", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, type_ = _split(tag)
        if _chunk_ends(prev_prefix, prefix, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_prefix, prefix, prev_type, type_):
            begin = i
        prev_prefix, prev_type = prefix, type_
    return chunks


def _flatten(sequences: Sequence[Sequence[str]]) -> list[str]:
    # seqeval joins sentences with an "O" between them, so that no chunk spans two sentences.
    return [tag for sentence in sequences for tag in list(sentence) + ["O"]]


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval's micro-averaged entity precision, recall and F1 (0 when undefined), and token accuracy."""
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
    true, pred = set(entities(_flatten(gold))), set(entities(_flatten(predicted)))
    correct = len(true & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in predicted for t in s]
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy(flat_gold, flat_pred)}


# ------------------------------------------------------------------------------------------------ SQuAD
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, drop punctuation, drop the articles a/an/the, collapse
    white space.

    >>> normalize_answer("  The  Right, to LIFE. ")
    'right to life'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(gold: str, predicted: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(predicted).split()
    if not g or not p:
        return float(g == p)  # a no-answer scores 1 only against a no-answer
    same = sum((collections.Counter(g) & collections.Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(gold_answers: Sequence[Sequence[str]], predicted: Sequence[str]) -> dict[str, float]:
    """SQuAD v2 exact match and F1 in percent, each the best over an example's gold answers; an example with no
    (non-empty) gold answer expects the empty prediction."""
    if len(gold_answers) != len(predicted):
        raise ValueError(f"{len(gold_answers)} examples but {len(predicted)} predictions")
    em, f1 = [], []
    for answers, prediction in zip(gold_answers, predicted):
        answers = [a for a in answers if normalize_answer(a)] or [""]
        em.append(max(float(normalize_answer(a) == normalize_answer(prediction)) for a in answers))
        f1.append(max(_token_f1(a, prediction) for a in answers))
    n = max(1, len(em))
    return {"exact_match": 100.0 * sum(em) / n, "f1": 100.0 * sum(f1) / n}


# ------------------------------------------------------------------------------------------------ language models
def lm_scores(total_loss: float, total_tokens: int) -> dict[str, float]:
    """Mean loss per predicted token and its perplexity.

    >>> lm_scores(math.log(4.0) * 10, 10)["perplexity"]
    4.0
    """
    if total_tokens <= 0:
        raise ValueError("no predicted tokens to score: the validation texts are empty after tokenisation")
    loss = total_loss / total_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
