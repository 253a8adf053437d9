"""tools/qa_learnability.py builds its easier QA variants correctly: answers sit where ``answer_start`` says,
unanswerable contexts really lack the question's text, validation paragraphs never appear in training, and the
question-blind baseline is the closed-form best of its guesses."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import qa_learnability as Q  # noqa: E402


def fake_udhr(languages=("eng", "xyz"), paragraphs=40, words=10):
    """Aligned 'translations' whose words are all distinct, so every phrase occurs once."""
    return {lang: [" ".join(f"{lang}{i}w{j}" for j in range(words + i % 3)) for i in range(paragraphs)]
            for lang in languages}


def paragraph_of(text: str) -> int:
    return int(text.split()[0].split("w")[0][3:])


def test_phrase_records_place_answers_and_hold_out_validation_paragraphs():
    p = fake_udhr()
    for validation in (False, True):
        rows = Q.phrase_records(p, validation, np.random.default_rng(0), 60, 14, 0.5)
        assert len(rows) == 60
        unanswerable = 0
        for r in rows:
            context, question = r["context"], r["question"]
            assert {paragraph_of(x) % 4 == 3 for x in context.split(" ") if x.endswith("w0")} == {validation}
            if r["answers"]["text"]:
                start = r["answers"]["answer_start"][0]
                assert context[start:start + len(question)] == question == r["answers"]["text"][0]
                assert context.count(question) == 1
            else:
                unanswerable += 1
                assert question not in context
            assert 4 <= len(question.split()) <= 8
        assert 10 < unanswerable < 50


def test_copy_records_quote_a_whole_paragraph_of_the_same_language():
    class Pieces:  # every word one piece: no paragraph here is too long for the window
        def __call__(self, text):
            return {"input_ids": text.split()}

    rows = Q.copy_records(fake_udhr(), Pieces(), False, np.random.default_rng(1))
    assert rows and all(r["id"].split("-")[0] in ("eng", "xyz") for r in rows)
    for r in rows:
        assert r["question"].startswith(r["id"].split("-")[0])
        if r["answers"]["text"]:
            start = r["answers"]["answer_start"][0]
            assert r["context"][start:start + len(r["question"])] == r["question"]
        else:
            assert r["question"] not in r["context"]


def test_the_question_blind_baseline_is_the_best_of_no_answer_and_first_words():
    records = [{"context": "a b c d", "answers": {"text": ["a b"], "answer_start": [0]}},
               {"context": "e f g h", "answers": {"text": [], "answer_start": []}}]
    # "no answer": 50 (one of two right); first 2 words: 100 + 0 = 50; first 1 word: F1 2/3 + 0 -> 33.3
    f1, guess = Q.question_blind_baseline(records)
    assert abs(f1 - 50.0) < 1e-9 and guess in ("no answer", "the context's first 2 words")
    records[1]["answers"] = {"text": ["e f"], "answer_start": [0]}
    assert Q.question_blind_baseline(records) == (100.0, "the context's first 2 words")
