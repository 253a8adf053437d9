"""Metrics against hand-computed values: seqeval's default chunking and scores, SQuAD v2, classification."""

import math

import pytest

from xlmr.common.tasks import metrics as M


@pytest.mark.parametrize("tags, chunks", [
    (["O", "I-PER", "I-PER"], [("PER", 1, 2)]),                       # I- after O opens a chunk
    (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),             # a change of type closes one
    (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),             # B- always opens
    (["B-PER", "I-PER", "O", "I-PER"], [("PER", 0, 1), ("PER", 3, 3)]),
    (["S-PER", "B-LOC", "E-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),     # IOBES prefixes, as seqeval reads them
    (["B-X", "E-X", "I-X"], [("X", 0, 1), ("X", 2, 2)]),              # I- after E- opens
    (["O", "O"], []),
])
def test_entities_follow_conlleval_rules(tags, chunks):
    assert M.entities(tags) == chunks


def test_entity_scores_match_seqeval_readme_example():
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = M.entity_scores(gold, pred)
    assert scores == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.8})


def test_chunks_do_not_cross_sentences():
    # flattened without a separator these would be one chunk I-PER I-PER; seqeval puts an O between sentences
    scores = M.entity_scores([["I-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert scores["f1"] == 1.0


def test_entity_scores_closed_form_with_partial_overlap():
    # gold: PER(0,1), LOC(3,3); predicted: PER(0,1), LOC(2,3), ORG(4,4) -> correct 1, p = 1/3, r = 1/2
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]]
    s = M.entity_scores(gold, pred)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert s["accuracy"] == pytest.approx(2 / 5)


def test_no_predicted_entities_score_zero_not_nan():
    s = M.entity_scores([["B-PER"]], [["O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)


def test_squad_normalisation_and_f1():
    assert M.normalize_answer("An  apple, THE pear!") == "apple pear"
    # gold {cat, sat}, predicted {cat, sat, down}: p = 2/3, r = 1, f1 = 0.8
    assert M.squad_scores([["The cat sat."]], ["cat sat down"]) == pytest.approx({"exact_match": 0.0, "f1": 80.0})
    # the best of several gold answers counts
    assert M.squad_scores([["dog", "a cat"]], ["Cat"]) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_no_answer_awareness():
    gold = [[], [], ["yes"]]
    assert M.squad_scores(gold, ["", "something", "yes"]) == pytest.approx(
        {"exact_match": 200 / 3, "f1": 200 / 3})
    assert M.squad_scores([["the"]], [""]) == {"exact_match": 100.0, "f1": 100.0}  # normalises to no answer


def test_classification_scores():
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert M.accuracy(gold, pred) == 0.5
    assert M.macro_f1(gold, pred) == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert M.micro_f1_sets([{"x", "y"}, set()], [{"x"}, {"y"}]) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))


def test_regression_scores():
    s = M.regression_scores([1, 2, 3], [1, 3, 2])
    assert s["mse"] == pytest.approx(2 / 3) and s["pearson"] == pytest.approx(0.5)


def test_lm_scores():
    s = M.lm_scores(3 * math.log(10.0), 3)
    assert s["perplexity"] == pytest.approx(10.0) and s["loss"] == pytest.approx(math.log(10.0))
    with pytest.raises(ValueError, match="no predicted tokens"):
        M.lm_scores(0.0, 0)
