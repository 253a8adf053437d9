"""``xlmr evaluate`` / ``predict`` pick question-answering answers as HF's run_qa post-processing does (logit sums
over the n best starts and ends, spans kept to their tokens, the lowest null score against the best span), while
the pipeline keeps the pipeline's rules. Every expected value below is worked out by hand from the logits."""

from __future__ import annotations

import numpy as np
import pytest

from xlmr.common.tasks.inference import AnswerWindow, decode_answers, postprocess_answers
from xlmr.common.tasks.settings import TaskSettings

# <s> q </s> </s> | "«son derece» iyi": ▁ « son ▁de re ce » ▁iyi | </s>
CONTEXT = "«son derece» iyi"
OFFSETS = [None] * 4 + [(0, 0), (0, 1), (1, 4), (4, 7), (7, 9), (9, 11), (11, 12), (12, 16)] + [None]
WORDS = [None] * 4 + [0, 0, 0, 1, 1, 1, 1, 2] + [None]


def window(starts: dict[int, float], ends: dict[int, float], cls: float = 0.0) -> AnswerWindow:
    start, end = np.zeros(len(OFFSETS)), np.zeros(len(OFFSETS))
    start[0] = end[0] = cls
    for i, v in starts.items():
        start[i] = v
    for i, v in ends.items():
        end[i] = v
    return AnswerWindow(start, end, OFFSETS, WORDS)


def test_the_span_keeps_to_its_tokens_where_the_pipeline_widens_it_to_words():
    w = window({6: 8.0}, {9: 8.0})                      # "son" .. "ce"
    assert postprocess_answers([w], CONTEXT)["answer"] == "son derece"
    assert decode_answers([w], CONTEXT)[0]["answer"] == "«son derece»"   # HF's pipeline, align_to_words


def test_only_the_n_best_starts_and_ends_are_paired():
    # the best start (10, "»") lies after both end candidates and the best end (4) before both starts, so only
    # the second-best start (6) with the second-best end (9) makes a span
    w = window({10: 9.0, 6: 7.0}, {4: 9.0, 9: 6.0})
    assert postprocess_answers([w], CONTEXT, n_best_size=2)["answer"] == "son derece"
    # with one start candidate (10) and one end candidate (4) no valid pair is left: nothing to answer
    assert postprocess_answers([w], CONTEXT, n_best_size=1) == {"score": 0.0, "start": 0, "end": 0, "answer": ""}


def test_max_answer_length_counts_tokens_inclusively():
    w = window({6: 5.0}, {11: 5.0, 6: 1.0})              # 6..11 is 6 tokens; 6..6 is one
    assert postprocess_answers([w], CONTEXT, max_answer_length=6)["answer"] == "son derece» iyi"
    assert postprocess_answers([w], CONTEXT, max_answer_length=5)["answer"] == "son"


def test_windows_compete_on_logit_sums_not_on_per_window_probabilities():
    # window a: span logit sum 6 (p_start * p_end within a is high: the rest of a is flat at 0 but the span
    # stands out less); window b: sum 8, but b's other tokens are nearly as high, so b's probabilities are low
    a = window({6: 3.0}, {6: 3.0}, cls=-20)
    b = window({7: 4.0, 8: 3.9, 9: 3.9}, {9: 4.0, 8: 3.9, 10: 3.9}, cls=-20)
    assert postprocess_answers([a, b], CONTEXT)["answer"] == " derece"       # 4 + 4 > 3 + 3 (offsets keep the space of "▁de")
    assert decode_answers([a, b], CONTEXT, align_to_words=False)[0]["answer"] == "son"


def test_the_lowest_null_score_over_windows_against_the_best_span_with_its_threshold():
    a = window({6: 2.0}, {6: 2.0}, cls=5.0)              # null 10, best span 4
    b = window({7: 1.0}, {7: 1.0}, cls=1.5)              # null 3: the lowest, and the one that counts
    assert postprocess_answers([a, b], CONTEXT, with_no_answer=True)["answer"] == "son"      # 3 - 4 <= 0
    assert postprocess_answers([a, b], CONTEXT, with_no_answer=True,
                               null_score_diff_threshold=-1.5)["answer"] == ""             # -1 > -1.5
    assert postprocess_answers([a], CONTEXT, with_no_answer=True)["answer"] == ""          # 10 - 4 > 0
    assert postprocess_answers([a], CONTEXT)["answer"] == "son"                             # SQuAD v1: no null


def test_the_score_is_the_softmax_over_the_kept_candidates_and_the_null_one():
    w = window({6: 2.0}, {6: 1.0}, cls=0.5)
    out = postprocess_answers([w], CONTEXT, n_best_size=1, with_no_answer=True)
    # kept: the span (2 + 1 = 3) ranks above null (1.0); its probability is e^3 / (e^3 + e^1)
    assert out["answer"] == "son" and out["start"] == 1 and out["end"] == 4
    assert out["score"] == pytest.approx(np.exp(3) / (np.exp(3) + np.exp(1)), abs=1e-12)


@pytest.mark.parametrize("field, value", [("n_best_size", 0), ("n_best_size", 2.5),
                                          ("null_score_diff_threshold", float("nan")),
                                          ("null_score_diff_threshold", "1")])
def test_bad_decoding_settings_are_refused_in_one_line(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=f"^{flag} must be .*{value!r}"[:40]):
        TaskSettings("question-answering", **{field: value})


def test_predict_applies_the_decoding_flags_the_same_way_in_every_backend(tmp_path):
    """``xlmr predict`` on the default checkpoint (a seeded new QA head): the flags reach the decoder (one
    candidate each: the arg-max start and end; a 3-token limit holds), and every backend answers the same."""
    import json

    from xlmr import XLMRobertaTokenizerFast
    from xlmr.cli import tasks as T

    from task_support import BACKENDS, DEFAULT, read_jsonl, subset

    data = subset(tmp_path, "question-answering", "validation", 6)
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(DEFAULT)
    outputs = {}
    for backend in BACKENDS:
        for n_best, longest in ((1, 30), (20, 3)):
            path = str(tmp_path / f"{backend}-{n_best}.jsonl")
            T.predict("question-answering", backend, DEFAULT, data, path, n_best_size=n_best,
                      max_answer_length=longest)
            outputs[backend, n_best] = read_jsonl(path)
    for record, answer in zip(read_jsonl(data), outputs[BACKENDS[0], 20]):
        assert answer["answer"] == record["context"][answer["start"]:answer["end"]]
        offsets = tokenizer(record["context"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        inside = [o for o in offsets if answer["start"] <= o[0] and o[1] <= answer["end"] and o[1] > o[0]]
        assert answer["answer"] == "" or 1 <= len(inside) <= 3
    for n_best in (1, 20):
        first = outputs[BACKENDS[0], n_best]
        for backend in BACKENDS[1:]:
            other = outputs[backend, n_best]
            assert [a["answer"] for a in other] == [a["answer"] for a in first], json.dumps([first, other])
            assert max(abs(a["score"] - b["score"]) for a, b in zip(first, other)) < 1e-5
    # a single candidate has probability 1 (no null: this checkpoint's settings have no unanswerable data)
    assert all(abs(a["score"] - 1.0) < 1e-9 or a["answer"] == "" for a in outputs[BACKENDS[0], 1])
