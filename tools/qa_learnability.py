#!/usr/bin/env python
"""Can a checkpoint learn extractive question answering here? Fine-tune it on one QA dataset and print its
validation SQuAD scores beside the best question-blind guess.

    python tools/qa_learnability.py --variant phrase-one-window [--backend pt] [--model xlmr/assets/default]
                                    [--epochs 3] [--learning-rate 1e-3] [--train-records 2000]

This is the experiment behind the one xfail of tests/tasks/test_learning.py. Besides the committed cross-lingual
dataset (``udhr``) it builds three easier variants from ../shared/data/udhr.jsonl, each a step further from
"understand the question" and closer to "find the same characters":

* ``copy``: the question is a paragraph and the context holds that very paragraph (same language) among others,
  in any of the aligned UDHR languages; 15% of contexts lack it;
* ``phrase``: the question is a 4-8 word phrase quoted from one paragraph, the context three paragraphs of the same
  language, the answer that phrase (15% unanswerable);
* ``phrase-one-window``: the same with short paragraphs (8-14 words), so the context fits one window, and always
  answerable.

Validation paragraphs are held out as in tools/make_task_data.py (index % 4 == 3). The question-blind baseline is
the better of "no answer" and "the context's first k words", k fitted on the validation records themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_task_data as data  # noqa: E402
from xlmr.common.tasks import metrics  # noqa: E402

VARIANTS = ("udhr", "copy", "phrase", "phrase-one-window")
UNANSWERABLE = 0.15


def question_blind_baseline(records: list[dict]) -> tuple[float, str]:
    gold = [r["answers"]["text"] for r in records]
    best = (metrics.squad_scores(gold, [""] * len(gold))["f1"], "no answer")
    for k in range(1, 65):
        f1 = metrics.squad_scores(gold, [" ".join(r["context"].split()[:k]) for r in records])["f1"]
        best = max(best, (f1, f"the context's first {k} words"))
    return best


def record(rid: str, question: str, paragraphs: list[str], answer: str | None) -> dict:
    context = " ".join(paragraphs)
    answers = {"text": [], "answer_start": []}
    if answer is not None:
        answers = {"text": [answer], "answer_start": [context.index(answer)]}
    return {"id": rid, "question": question, "context": context, "answers": answers}


def copy_records(p, tokenizer, validation: bool, rng) -> list[dict]:
    rows = []
    for language in sorted(p):
        every = data.body_indices(p, (language,), min_words=6, max_words=40)
        pool = [i for i in every if data.is_validation(i) == validation]
        if len(pool) < 5:
            continue
        for i in pool:
            if len(tokenizer(p[language][i])["input_ids"]) > 48:  # leaves the context room in a 128-token window
                continue
            picks = [int(x) for x in rng.choice([j for j in pool if j != i], 3, replace=False)]
            missing = rng.random() < UNANSWERABLE
            chosen = picks if missing else sorted(picks[:2] + [i])
            rows.append(record(f"{language}-{i}", p[language][i], [p[language][j] for j in chosen],
                               None if missing else p[language][i]))
    return rows


def phrase_records(p, validation: bool, rng, count: int, max_words: int, unanswerable: float) -> list[dict]:
    languages, rows = sorted(p), []
    while len(rows) < count:
        language = languages[rng.integers(len(languages))]
        pool = [i for i in data.body_indices(p, (language,), min_words=8, max_words=max_words)
                if data.is_validation(i) == validation]
        if len(pool) < 5:
            continue
        picks = [int(x) for x in rng.choice(pool, 4, replace=False)]
        missing = rng.random() < unanswerable
        chosen = sorted(picks[1:]) if missing else sorted(picks[:3])
        words = p[language][picks[0]].split()
        k = int(rng.integers(4, 9))
        s = int(rng.integers(0, len(words) - k + 1))
        phrase = " ".join(words[s:s + k])
        paragraphs = [p[language][j] for j in chosen]
        if " ".join(paragraphs).count(phrase) != (0 if missing else 1):
            continue
        rows.append(record(f"{language}-{len(rows)}", phrase, paragraphs, None if missing else phrase))
    return rows


def build(variant: str, folder: str, train_records: int) -> tuple[str, str]:
    """Write train.jsonl and validation.jsonl of ``variant`` into ``folder``; return their paths."""
    train, validation = os.path.join(folder, "train.jsonl"), os.path.join(folder, "validation.jsonl")
    if variant == "udhr":
        committed = os.path.join(ROOT, "tools", "data", "tasks", "question-answering")
        return os.path.join(committed, "train.jsonl"), os.path.join(committed, "validation.jsonl")
    from xlmr import XLMRobertaTokenizerFast

    p = data.aligned_languages(data.DEFAULT_UDHR)
    rng = np.random.default_rng(0)
    if variant == "copy":
        tokenizer = XLMRobertaTokenizerFast.from_pretrained(os.path.join(ROOT, "xlmr", "assets", "default"))
        rows = {"train": copy_records(p, tokenizer, False, rng)[:train_records],
                "validation": copy_records(p, tokenizer, True, rng)[:100]}
    else:
        one_window = variant == "phrase-one-window"
        words, unanswerable = (14, 0.0) if one_window else (40, UNANSWERABLE)
        rows = {"train": phrase_records(p, False, rng, train_records, words, unanswerable),
                "validation": phrase_records(p, True, rng, 200, words, unanswerable)}
    for path, name in ((train, "train"), (validation, "validation")):
        order = rng.permutation(len(rows[name]))
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(rows[name][j], ensure_ascii=False) + "\n" for j in order)
    return train, validation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="phrase-one-window")
    parser.add_argument("--backend", default="pt")
    parser.add_argument("--model", default=os.path.join(ROOT, "xlmr", "assets", "default"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-records", type=int, default=2000)
    args = parser.parse_args(argv)

    from xlmr.cli import tasks
    from xlmr.common.tasks.records import read_records

    with tempfile.TemporaryDirectory() as folder:
        train, validation = build(args.variant, folder, args.train_records)
        losses: list[float] = []
        began = time.perf_counter()
        reached = tasks.finetune("question-answering", args.backend, args.model, train, validation,
                                 os.path.join(folder, "out"), epochs=args.epochs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio,
                                 max_answer_length=64, quiet=True, on_step=lambda step, loss: losses.append(loss))
        seconds = time.perf_counter() - began
        base, guess = question_blind_baseline([r.fields for r in read_records(validation,
                                                                              "question-answering").records])
    tail = losses[-10:]
    print(json.dumps({"variant": args.variant, "backend": args.backend, "updates": len(losses),
                      "train_loss_first": round(losses[0], 3), "train_loss_last10": round(sum(tail) / len(tail), 3),
                      "f1": round(reached["f1"], 1), "exact_match": round(reached["exact_match"], 1),
                      "question_blind_f1": round(base, 1), "question_blind_guess": guess,
                      "seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
