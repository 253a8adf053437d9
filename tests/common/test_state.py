"""check_state: one check of a set of tensors against expected shapes, one wording, every problem at once."""

from __future__ import annotations

import numpy as np
import pytest

from xlmr.common.checkpoint import CheckpointError
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.convert import ConversionError
from xlmr.common.weights import WeightsError, check_state

EXPECTED = {"embeddings.word_embeddings.weight": (10, 4), "pooler.dense.weight": (4, 4), "pooler.dense.bias": (4,)}


def test_every_problem_is_named_in_one_line():
    given = {"embeddings.word_embeddings.weight": np.zeros((10, 5), np.float32),   # mis-shaped
             "pooler.dense.bias": np.zeros(4, np.int64),                          # not a float
             "encoder.layer.0.output.dense.bias": np.zeros(4, np.float32),        # nobody expects it
             "roberta.foo": np.zeros(1, np.float32)}                              # no XLM-R weight at all
    with pytest.raises(WeightsError) as e:
        check_state(EXPECTED, given, "m.safetensors")
    message = str(e.value)
    assert "\n" not in message and message.startswith("m.safetensors: 5 problem(s): ")
    assert "missing weight pooler.dense.weight (shape (4, 4))" in message
    assert "tensor embeddings.word_embeddings.weight has shape (10, 5), the config gives (10, 4)" in message
    assert "tensor pooler.dense.bias has dtype int64, expected a floating-point type" in message
    assert "unexpected weight encoder.layer.0.output.dense.bias (shape (4,))" in message
    assert "unexpected tensor 'roberta.foo' is not an XLM-R weight" in message


def test_optional_tolerated_and_lenient_sets_pass_and_pairs_given_twice_fail():
    arrays = {n: np.zeros(s, np.float32) for n, s in EXPECTED.items()}
    check_state(EXPECTED, {k: v for k, v in arrays.items() if not k.startswith("pooler.")}, "x",
                optional=["pooler.dense.weight", "pooler.dense.bias"])
    check_state(EXPECTED, {**arrays, "extra.weight": np.zeros(1)}, "x", strict=False)
    check_state(EXPECTED, {**arrays, "lm_head.bias": np.zeros(7)}, "x", tolerated={"lm_head.bias": (7,)})
    with pytest.raises(WeightsError, match=r"tensor lm_head.bias has shape \(6,\), the config gives \(7,\)"):
        check_state(EXPECTED, {**arrays, "lm_head.bias": np.zeros(6)}, "x", tolerated={"lm_head.bias": (7,)})
    with pytest.raises(WeightsError, match="tensor pooler.dense.bias is given twice"):
        check_state(EXPECTED, [*arrays.items(), ("pooler.dense.bias", np.zeros(4))], "x")


@pytest.mark.parametrize("error", [WeightsError, CheckpointError, ConversionError])
def test_each_caller_keeps_its_error_class(error):
    with pytest.raises(error, match="src: 1 problem"):
        check_state(EXPECTED, {}, "src", optional=list(EXPECTED)[1:], error=error)


def test_classifier_dropout_falls_back_to_hidden_dropout_and_output_flags_to_the_config():
    assert XLMRobertaConfig(hidden_dropout_prob=0.2).classifier_dropout_rate == 0.2
    assert XLMRobertaConfig(hidden_dropout_prob=0.2, classifier_dropout=0.0).classifier_dropout_rate == 0.0
    config = XLMRobertaConfig(output_hidden_states=True, return_dict=False)
    assert config.output_flags(None, None, None) == (False, True, False)
    assert config.output_flags(True, False, True) == (True, False, True)
