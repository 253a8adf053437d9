"""Framework-free data processing: bad records, label spaces, alignment, QA windows, masking, batches, schedule."""

import json
import math
import os

import numpy as np
import pytest

from xlmr import XLMRobertaTokenizerFast
from xlmr.common.tasks import batches, features
from xlmr.common.tasks.labels import LabelSpace
from xlmr.common.tasks.records import DataError, read_records
from xlmr.common.tasks.schedule import TrainingSettings, decays, learning_rate
from xlmr.common.tasks.settings import TaskSettings

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "xlmr", "assets", "default")


@pytest.fixture(scope="module")
def tok():
    return XLMRobertaTokenizerFast.from_pretrained(DEFAULT)


def write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("task, rows, message", [
    ("text-classification", [{"text": "a", "label": "x"}, {"label": "y"}], r"line 2: missing field 'text'"),
    ("token-classification", [{"tokens": ["a", "b"], "tags": ["O"]}], r"line 1: field 'tags' has 1 tags for 2 tokens"),
    ("question-answering", [{"id": "1", "question": "q", "context": "abc def",
                             "answers": {"text": ["def"], "answer_start": [3]}}],
     r"line 1: field 'answers.answer_start' 3 points at \" de\" in the context, not at the answer \"def\""),
    ("multiple-choice", [{"prompt": "p", "choices": ["a", "b"], "label": 2}], r"line 1: field 'label' must be"),
    ("masked-lm", ["{not json"], r"line 1: not valid JSON"),
    ("token-classification", [{"tokens": ["a b"], "tags": ["O"]}], r"field 'tokens' word 0 .* white space"),
    ("multiple-choice", [{"prompt": "p", "choices": ["a", "b"], "label": 0},
                         {"prompt": "p", "choices": ["a", "b", "c"], "label": 0}], r"line 2: field 'choices' has 3"),
])
def test_bad_records_name_file_line_and_field(tmp_path, task, rows, message):
    path = write(tmp_path, rows)
    with pytest.raises(DataError, match=message) as e:
        read_records(path, task)
    assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_empty_file_is_refused(tmp_path):
    path = write(tmp_path, [])
    with pytest.raises(DataError, match="no records"):
        read_records(path, "causal-lm")


def test_validation_label_unseen_in_training(tmp_path):
    train = read_records(write(tmp_path, [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], "t.jsonl"),
                         "text-classification")
    valid = read_records(write(tmp_path, [{"text": "a", "label": "x"}, {"text": "c", "label": "z"}], "v.jsonl"),
                         "text-classification")
    with pytest.raises(DataError, match=r"v.jsonl: line 2: field 'label' is 'z', which the training file never"):
        LabelSpace.from_training(train).check(valid)


def test_mixed_label_kinds_are_refused(tmp_path):
    data = read_records(write(tmp_path, [{"text": "a", "label": ["x"]}, {"text": "b", "label": "y"}]),
                        "text-classification")
    with pytest.raises(DataError, match="line 2: field 'label'"):
        LabelSpace.from_training(data)


def test_doc_stride_too_large_for_max_length():
    with pytest.raises(ValueError, match="--doc-stride 60 is too large for --max-length 64"):
        TaskSettings("question-answering", max_length=64, doc_stride=60)


def test_question_leaving_no_room_for_the_stride(tmp_path, tok):
    data = read_records(write(tmp_path, [{"id": "1", "question": "word " * 40, "context": "abc",
                                          "answers": {"text": [], "answer_start": []}}]), "question-answering")
    with pytest.raises(DataError, match=r"line 1: field 'question' has \d+ tokens, which leaves"):
        features.question_answering(data, tok, TaskSettings("question-answering", max_length=48, doc_stride=16))


# ------------------------------------------------------------------------------------------------ label spaces
def test_label_spaces():
    assert LabelSpace.for_labels([1, 0, 1]).names == ["0", "1"]
    assert LabelSpace.for_labels([0.5, 2]).kind == "regression"
    multi = LabelSpace.for_labels([["b", "a"], ["c"]])
    assert (multi.kind, multi.names) == ("multi_label_classification", ["a", "b", "c"])
    tags = LabelSpace.for_tags([["NOUN", "VERB"]])
    assert (tags.iob2, tags.names) == (False, ["NOUN", "VERB"])


# ------------------------------------------------------------------------------------------------ features
def test_word_labels_on_first_piece_or_every_piece(tok):
    words = ["Universal", "Declaration", "of", "Human", "Rights"]
    text = " ".join(words)
    ids = [1, 2, 0, 1, 2]
    first = features.word_labels(tok, words, ids, max_length=64, stride=8)[0]
    enc = tok(text, return_offsets_mapping=True)
    assert first["input_ids"].tolist() == enc["input_ids"]
    # the pieces that start a word (their offset covers the word's first character) carry the word's label
    _, owner, starts = features.word_index_of_chars(words)
    expected = [-100] * len(enc["input_ids"])
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and s <= starts[owner[s]]:
            expected[t] = ids[owner[s]]
    assert first["labels"].tolist() == expected
    assert sorted(set(first["labels"].tolist()) - {-100}) == [0, 1, 2]
    assert (first["labels"] != -100).sum() == len(words)
    every = features.word_labels(tok, words, ids, 64, 8, continuation_ids=[0, 2, 2])[0]
    pieces = [t for t in range(1, len(expected) - 1) if expected[t] == -100]
    assert pieces and all(every["labels"][t] == [0, 2, 2][ids[owner[enc["offset_mapping"][t][0]]]] for t in pieces)


def test_long_sentences_become_overlapping_windows_each_word_labelled_once_per_first_piece(tok):
    words = [f"word{i}" for i in range(80)]
    windows = features.word_labels(tok, words, list(range(80)), max_length=32, stride=8)
    assert len(windows) > 2 and all(len(w["input_ids"]) <= 32 for w in windows)
    seen = set(np.concatenate([w["labels"] for w in windows]).tolist()) - {-100}
    assert seen == set(range(80))


def test_qa_features_point_at_the_answer_or_cls(tmp_path, tok):
    context = " ".join(f"Paragraph number {i} says something." for i in range(30))
    answer = "Paragraph number 17 says something."
    start = context.index(answer)
    path = write(tmp_path, [{"id": "a", "question": "Which one?", "context": context,
                             "answers": {"text": [answer], "answer_start": [start]}}])
    settings = TaskSettings("question-answering", max_length=48, doc_stride=16)
    feats = features.question_answering(read_records(path, "question-answering"), tok, settings)
    assert len(feats) > 3
    hits = [f for f in feats if f["start_positions"] > 0]
    assert hits and all(f["end_positions"] == 0 for f in feats if f["start_positions"] == 0)
    for f in hits:
        span = f["input_ids"][f["start_positions"]:f["end_positions"] + 1]
        assert tok.decode(span.tolist()).strip() == answer


def test_multiple_choice_packs_choices(tmp_path, tok):
    path = write(tmp_path, [{"prompt": "Everyone", "choices": ["a", "bb cc dd"], "label": 1}])
    (f,) = features.multiple_choice(read_records(path, "multiple-choice"), tok, TaskSettings("multiple-choice"))
    assert f["input_ids"].shape[0] == 2 and f["labels"] == 1
    assert f["input_ids"][0].tolist()[:len(tok("Everyone", "a")["input_ids"])] == tok("Everyone", "a")["input_ids"]


def test_lm_blocks_concatenate_and_split(tmp_path, tok):
    path = write(tmp_path, [{"text": "word " * 30}, {"text": "other " * 30}])
    data = read_records(path, "causal-lm")
    blocks = features.language_model_blocks(data, tok, TaskSettings("causal-lm", max_length=16, doc_stride=4))
    stream = sum((tok(r.fields["text"])["input_ids"] for r in data.records), [])
    assert np.concatenate([b["input_ids"] for b in blocks]).tolist() == stream[:sum(len(b["input_ids"]) for b in
                                                                                    blocks)]
    assert all(len(b["input_ids"]) == 16 for b in blocks[:-1])


# ------------------------------------------------------------------------------------------------ batches
def test_masking_rates_specials_and_seed():
    ids = np.random.default_rng(1).integers(5, 8000, (64, 128))
    ids[:, 0], ids[:, -1] = 0, 2
    special = batches.special_token_mask(ids, [0, 1, 2, 3])
    masked, labels = batches.mask_tokens(ids, special, 8002, 3, 0.15, np.random.default_rng(7))
    chosen = labels != -100
    assert not chosen[special].any()
    assert abs(chosen.mean() - 0.15 * 126 / 128) < 0.01
    assert abs((masked[chosen] == 3).mean() - 0.8) < 0.03
    kept = (masked[chosen] == ids[chosen]).mean()
    assert 0.07 < kept < 0.13   # 10% unchanged (and a few random draws equal to the original)
    assert (masked[~chosen] == ids[~chosen]).all() and (labels[chosen] == ids[chosen]).all()
    again = batches.mask_tokens(ids, special, 8002, 3, 0.15, np.random.default_rng(7))
    assert (again[0] == masked).all()


def test_epoch_order_is_a_seeded_permutation():
    a, b = batches.epoch_order(10, 42, 0), batches.epoch_order(10, 42, 1)
    assert sorted(a) == list(range(10)) and (a != b).any() and (batches.epoch_order(10, 42, 0) == a).all()


def test_training_batches_cover_every_feature_once_per_epoch():
    feats = [{"input_ids": np.arange(3 + i % 5), "labels": np.int64(i)} for i in range(10)]
    got = list(batches.training_batches(feats, "text-classification", 4, 0, 0, pad_token_id=1))
    assert [len(b["labels"]) for b in got] == [4, 4, 2]
    assert sorted(np.concatenate([b["labels"] for b in got]).tolist()) == list(range(10))
    assert all(b["input_ids"].shape[1] % batches.PAD_TO_MULTIPLE_OF == 0 for b in got)


# ------------------------------------------------------------------------------------------------ schedule
def test_schedule_matches_transformers_linear_schedule_with_warmup():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    s = TrainingSettings(learning_rate=3e-4, warmup_ratio=0.15)
    total = 37
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=s.learning_rate)
    hf = transformers.get_linear_schedule_with_warmup(opt, math.ceil(0.15 * total), total)
    for k in range(total):
        assert learning_rate(k, s, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        hf.step()


def test_no_decay_set_matches_hf_trainer():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.trainer_pt_utils import get_parameter_names
    from transformers.pytorch_utils import ALL_LAYERNORM_LAYERS

    cfg = transformers.XLMRobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=20, max_position_embeddings=40)
    for cls in (transformers.XLMRobertaForMaskedLM, transformers.XLMRobertaForTokenClassification):
        model = cls(cfg)
        names = {n for n, _ in model.named_parameters()}  # a tied decoder weight is listed once, as the embedding
        hf = {n for n in get_parameter_names(model, ALL_LAYERNORM_LAYERS) if "bias" not in n} & names
        ours = {n for n in names if decays(n)}
        assert ours == hf
