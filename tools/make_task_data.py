"""Build the six task datasets from the parallel UDHR text, deterministically (``tools/data/tasks/TASK/``).

    python tools/make_task_data.py [--udhr ../shared/data/udhr.jsonl] [--out tools/data/tasks]

The UDHR file holds the same paragraphs in 361 languages. Translations whose paragraph list lines up with the
English one (same count, same article numbers in every paragraph that has one) are treated as aligned by index.
Paragraph indices i % 4 == 3 are held out: validation sees paragraphs, in every language, that training never
saw. The tasks:

* text-classification: language identification of a paragraph among 8 languages (5 scripts);
* token-classification: word-level language identification in code-switched text: runs of words from
  paragraphs in 2-3 of 4 languages, joined; tags B-/I-LANG (IOB2); some records are longer than the 128-token
  window of the default checkpoint;
* question-answering: cross-lingual answer extraction (SQuAD v2 format): the question is a paragraph in one
  language, the context three paragraphs in another, the answer the question's translation; 15% of the
  contexts lack it (no answer);
* multiple-choice: the translation of a paragraph among four paragraphs of another language;
* masked-lm, causal-lm: paragraphs in 12 languages.

Only this tool reads the UDHR file; tests read its committed output. ``baselines.json`` beside the data gives the
chance/majority baseline of each validation set.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xlmr.common.tasks import metrics  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_UDHR = os.path.join(HERE, "..", "..", "shared", "data", "udhr.jsonl")
LANGID = ("eng", "deu_1996", "spa", "pol", "rus", "tur", "ind", "ell_monotonic")
CODE_SWITCH = ("eng", "deu_1996", "spa", "tur")
QUESTIONS, CONTEXTS = ("eng", "spa", "deu_1996"), ("pol", "rus", "tur", "ind", "cat")
PROMPTS, CHOICES = ("eng", "deu_1996"), ("spa", "pol", "tur", "ind", "rus")
LM = ("eng", "deu_1996", "spa", "pol", "rus", "tur", "ind", "ell_monotonic", "cat", "slk", "est", "lav")
SHORT_NAMES = {"deu_1996": "deu", "ell_monotonic": "ell"}


def short(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def aligned_languages(path: str) -> dict[str, list[str]]:
    """{key: paragraphs} of the translations aligned with English paragraph by paragraph."""
    with open(path, encoding="utf-8") as f:
        records = {r["key"]: r for r in map(json.loads, f)}
    english = records["eng"]["paragraphs"]
    numbers = [re.findall(r"\d+", p) for p in english]
    aligned = {}
    for key, record in records.items():
        paragraphs = record["paragraphs"]
        if len(paragraphs) == len(english) and all(
                re.findall(r"\d+", p) == n for p, n in zip(paragraphs, numbers) if n):
            aligned[key] = paragraphs
    return aligned


def is_validation(index: int) -> bool:
    return index % 4 == 3


def body_indices(paragraphs: dict[str, list[str]], keys, min_words: int = 6, max_words: int | None = None):
    """Indices of real paragraphs (not titles or 'Article N' headings) in every language of ``keys``."""
    english = paragraphs["eng"]
    chosen = []
    for i in range(len(english)):
        words = [len(paragraphs[k][i].split()) for k in keys]
        if min(words) >= min_words and (max_words is None or max(words) <= max_words):
            chosen.append(i)
    return chosen


def split(indices):
    return [i for i in indices if not is_validation(i)], [i for i in indices if is_validation(i)]


# ------------------------------------------------------------------------------------------------ the tasks
def text_classification(p, rng):
    out = {}
    for name, indices in zip(("train", "validation"), split(body_indices(p, LANGID))):
        rows = [{"text": p[k][i], "label": short(k)} for i in indices for k in LANGID]
        out[name] = [rows[j] for j in rng.permutation(len(rows))]
    labels = [r["label"] for r in out["validation"]]
    majority = collections.Counter(labels).most_common(1)[0][0]
    base = {"accuracy": metrics.accuracy(labels, [majority] * len(labels)),
            "macro_f1": metrics.macro_f1(labels, [majority] * len(labels))}
    return out, {"baseline": "majority class", **base}


def token_classification(p, rng):
    out = {}
    for name, indices in zip(("train", "validation"), split(body_indices(p, CODE_SWITCH))):
        count = 600 if name == "train" else 160
        rows = []
        for n in range(count):
            long = n % 10 == 0  # one record in ten outgrows a 128-token window
            segments = 4 if long else int(rng.integers(2, 4))
            langs, tokens, tags = [], [], []
            for s in range(segments):
                choices = [k for k in CODE_SWITCH if not langs or k != langs[-1]]
                lang = choices[int(rng.integers(len(choices)))]
                langs.append(lang)
                words = p[lang][int(rng.choice(indices))].split()
                size = int(rng.integers(12, 25)) if long else int(rng.integers(3, 10))
                start = int(rng.integers(0, max(1, len(words) - size)))
                piece = words[start:start + size]
                tokens += piece
                tags += [f"B-{short(lang)}"] + [f"I-{short(lang)}"] * (len(piece) - 1)
            rows.append({"tokens": tokens, "tags": tags})
        out[name] = rows
    gold = [r["tags"] for r in out["validation"]]
    majority = collections.Counter(t[2:] for s in gold for t in s if t != "O").most_common(1)[0][0]
    guess = [[f"B-{majority}"] + [f"I-{majority}"] * (len(s) - 1) for s in gold]
    return out, {"baseline": f"every sentence one {majority} entity", **metrics.entity_scores(gold, guess)}


def question_answering(p, rng):
    out, first = {}, []
    usable = body_indices(p, QUESTIONS + CONTEXTS, min_words=6, max_words=20)
    every = body_indices(p, QUESTIONS + CONTEXTS, min_words=6, max_words=60)
    for name, indices in zip(("train", "validation"), split(usable)):
        pool = [i for i in every if is_validation(i) == (name == "validation")]
        rows = []
        for i in indices:
            for q in QUESTIONS:
                for c in CONTEXTS:
                    others = [j for j in pool if j != i]
                    picks = [int(x) for x in rng.choice(others, 3, replace=False)]
                    impossible = rng.random() < 0.15
                    chosen = picks if impossible else sorted(picks[:2] + [i])
                    context = " ".join(p[c][j] for j in chosen)
                    answers = {"text": [], "answer_start": []}
                    if not impossible:
                        start = len(" ".join(p[c][j] for j in chosen[:chosen.index(i)]))
                        start += 1 if chosen.index(i) else 0
                        answers = {"text": [p[c][i]], "answer_start": [start]}
                        assert context[start:start + len(p[c][i])] == p[c][i]
                    rows.append({"id": f"{short(q)}-{short(c)}-{i}", "question": p[q][i], "context": context,
                                 "answers": answers})
                    if name == "validation":
                        first.append(p[c][chosen[0]])
        order = rng.permutation(len(rows))
        out[name] = [rows[j] for j in order]
        if name == "validation":
            first = [first[j] for j in order]
    gold = [r["answers"]["text"] for r in out["validation"]]
    empty = metrics.squad_scores(gold, [""] * len(gold))
    leading = metrics.squad_scores(gold, first)
    best = max((empty, "always no answer"), (leading, "the context's first paragraph"), key=lambda x: x[0]["f1"])
    return out, {"baseline": best[1], **best[0]}


def multiple_choice(p, rng):
    out = {}
    for name, indices in zip(("train", "validation"), split(body_indices(p, PROMPTS + CHOICES, max_words=40))):
        rows = []
        for i in indices:
            for q in PROMPTS:
                for c in CHOICES:
                    others = [int(j) for j in rng.choice([j for j in indices if j != i], 3, replace=False)]
                    label = int(rng.integers(4))
                    options = others[:label] + [i] + others[label:]
                    rows.append({"prompt": p[q][i], "choices": [p[c][j] for j in options], "label": label})
        out[name] = [rows[j] for j in rng.permutation(len(rows))]
    return out, {"baseline": "chance (1 of 4)", "accuracy": 0.25}


def language_modelling(p, rng):
    out = {}
    for name, indices in zip(("train", "validation"), split(body_indices(p, LM, min_words=4))):
        rows = [{"text": p[k][i]} for i in indices for k in LM]
        out[name] = [rows[j] for j in rng.permutation(len(rows))]
    return out, {"baseline": "the starting checkpoint, before fine-tuning (measured)"}


BUILDERS = {
    "text-classification": text_classification,
    "token-classification": token_classification,
    "question-answering": question_answering,
    "multiple-choice": multiple_choice,
    "masked-lm": language_modelling,
    "causal-lm": language_modelling,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--udhr", default=DEFAULT_UDHR)
    parser.add_argument("--out", default=os.path.join(HERE, "data", "tasks"))
    args = parser.parse_args(argv)
    paragraphs = aligned_languages(args.udhr)
    missing = sorted(set(LANGID + CODE_SWITCH + QUESTIONS + CONTEXTS + PROMPTS + CHOICES + LM) - set(paragraphs))
    if missing:
        raise SystemExit(f"{args.udhr}: no aligned translation for {', '.join(missing)}")
    baselines = {}
    for seed, (task, build) in enumerate(BUILDERS.items()):
        data, baselines[task] = build(paragraphs, np.random.default_rng(seed))
        os.makedirs(os.path.join(args.out, task), exist_ok=True)
        for name, rows in data.items():
            with open(os.path.join(args.out, task, f"{name}.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"{task}: {len(data['train'])} train, {len(data['validation'])} validation; {baselines[task]}")
    with open(os.path.join(args.out, "baselines.json"), "w", encoding="utf-8") as f:
        json.dump(baselines, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
