"""Records to training features: token ids and targets per task, the same numpy arrays for every backend.

A feature is a dict of numpy arrays without padding (``batches.collate`` pads a batch):

* text classification: ``input_ids``, ``labels`` (int class, float value, or multi-hot floats);
* token classification: ``input_ids``, ``labels`` per token (the word's tag on its first piece, -100 elsewhere,
  or on every piece with ``label_all_tokens``); documents longer than a window become overlapping windows;
* question answering: ``input_ids``, ``start_positions``, ``end_positions``: one feature per window of the
  context (``only_second`` truncation, ``doc_stride`` overlap); a window without the whole answer, or an example
  without one, points at the CLS token (index 0);
* multiple choice: ``input_ids`` (choices, length) and ``labels``;
* masked / causal LM: blocks of the concatenated token stream (masking happens per batch, in ``batches``).

Example:
    >>> from xlmr import XLMRobertaTokenizerFast
    >>> tok = XLMRobertaTokenizerFast.from_pretrained("xlmr/assets/default")
    >>> ids = tok("Everyone has rights")["input_ids"]
    >>> word_labels(tok, ["Everyone", "has", "rights"], [3, 0, 5], max_length=64, stride=8)[0]["labels"][:2]
    array([-100,    3])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xlmr.common.constants import IGNORE_INDEX
from xlmr.common.losses import MULTI_LABEL, REGRESSION
from xlmr.common.tasks.labels import LabelSpace
from xlmr.common.tasks.records import Dataset, DataError
from xlmr.common.tasks.settings import TaskSettings

PAIR_SPECIAL_TOKENS = 4  # <s> A </s></s> B </s>


def word_index_of_chars(words: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray]:
    """Words joined with single spaces; for each character the word it belongs to (a space belongs to the word
    after it, where sentencepiece puts its ``▁``), and each word's first character."""
    text = " ".join(words)
    owner = np.empty(len(text), np.int64)
    starts = np.empty(len(words), np.int64)
    position = 0
    for i, word in enumerate(words):
        if i:
            owner[position] = i
            position += 1
        starts[i] = position
        owner[position:position + len(word)] = i
        position += len(word)
    return text, owner, starts


def word_labels(tokenizer: Any, words: Sequence[str], label_ids: Sequence[int], max_length: int, stride: int,
                continuation_ids: Sequence[int] | None = None) -> list[dict[str, np.ndarray]]:
    """Windows over one pre-split sentence with its word labels aligned to pieces.

    The first piece of each word (the piece covering its first character, whichever window it falls in) gets
    the word's label; the other pieces get -100, or, when ``continuation_ids`` is given (``--label-all-tokens``),
    ``continuation_ids[label]`` (HF's run_ner turns B-X into I-X there)."""
    text, owner, starts = word_index_of_chars(words)
    enc = tokenizer(text, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True)
    features = []
    for w, ids in enumerate(enc["input_ids"]):
        labels = np.full(len(ids), IGNORE_INDEX, np.int64)
        for t, ((start, end), seq) in enumerate(zip(enc["offset_mapping"][w], enc.sequence_ids(w))):
            if seq is None or end <= start:
                continue
            word = int(owner[start])
            if start <= starts[word]:
                labels[t] = label_ids[word]
            elif continuation_ids is not None:
                labels[t] = continuation_ids[label_ids[word]]
        features.append({"input_ids": np.asarray(ids, np.int64), "labels": labels})
    return features


def _continuations(space: LabelSpace) -> list[int]:
    ids = space.label2id
    return [ids.get("I-" + name[2:], i) if space.iob2 and name.startswith("B-") else i
            for i, name in enumerate(space.names)]


def text_classification(dataset: Dataset, tokenizer: Any, settings: TaskSettings, space: LabelSpace):
    records = [r.fields for r in dataset.records]
    pairs = [r.get("text_pair") for r in records]
    if any(p is not None for p in pairs) and not all(p is not None for p in pairs):
        line = dataset.records[[p is None for p in pairs].index(True)].line
        raise DataError(f"{dataset.path}: line {line}: field 'text_pair' is missing while other records have one")
    enc = tokenizer([r["text"] for r in records], pairs if pairs[0] is not None else None,
                    truncation=True, max_length=settings.max_length)
    features = []
    for ids, r in zip(enc["input_ids"], records):
        label = r["label"]
        if space.kind == REGRESSION:
            target = np.float32(label)
        elif space.kind == MULTI_LABEL:
            target = np.zeros(len(space.names), np.float32)
            target[[space.label2id[x] for x in label]] = 1.0
        else:
            target = np.int64(space.label2id[str(label)])
        features.append({"input_ids": np.asarray(ids, np.int64), "labels": target})
    return features


def token_classification(dataset: Dataset, tokenizer: Any, settings: TaskSettings, space: LabelSpace):
    ids = space.label2id
    continuation = _continuations(space) if settings.label_all_tokens else None
    features = []
    for r in dataset.records:
        features += word_labels(tokenizer, r.fields["tokens"], [ids[t] for t in r.fields["tags"]],
                                settings.max_length, settings.doc_stride, continuation)
    return features


def check_question_room(dataset: Dataset, tokenizer: Any, settings: TaskSettings) -> None:
    """Raise DataError for the first question that leaves the context no more than ``doc_stride`` tokens."""
    lengths = [len(x) for x in tokenizer([r.fields["question"] for r in dataset.records],
                                         add_special_tokens=False)["input_ids"]]
    for record, n in zip(dataset.records, lengths):
        room = settings.max_length - PAIR_SPECIAL_TOKENS - n
        if room <= settings.doc_stride:
            raise DataError(f"{dataset.where(record, 'question')} has {n} tokens, which leaves {max(room, 0)} of "
                            f"--max-length {settings.max_length} for the context: not more than --doc-stride "
                            f"{settings.doc_stride}; raise --max-length or lower --doc-stride")


def question_answering(dataset: Dataset, tokenizer: Any, settings: TaskSettings, space: LabelSpace | None = None):
    check_question_room(dataset, tokenizer, settings)
    records = [r.fields for r in dataset.records]
    enc = tokenizer([r["question"] for r in records], [r["context"] for r in records], truncation="only_second",
                    max_length=settings.max_length, stride=settings.doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True)
    features = []
    for w, ids in enumerate(enc["input_ids"]):
        record = records[enc["overflow_to_sample_mapping"][w]]
        start = end = 0  # CLS: no answer in this window
        answers = record["answers"]
        if answers["text"]:
            first_char = answers["answer_start"][0]
            last_char = first_char + len(answers["text"][0])
            sequence = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            context = [t for t, s in enumerate(sequence) if s == 1]
            if offsets[context[0]][0] <= first_char and offsets[context[-1]][1] >= last_char:
                start = next(t for t in context if offsets[t][1] > first_char)
                end = next(t for t in reversed(context) if offsets[t][0] < last_char)
        features.append({"input_ids": np.asarray(ids, np.int64), "start_positions": np.int64(start),
                         "end_positions": np.int64(end)})
    return features


def multiple_choice(dataset: Dataset, tokenizer: Any, settings: TaskSettings, space: LabelSpace | None = None):
    features = []
    for r in dataset.records:
        choices = r.fields["choices"]
        enc = tokenizer([r.fields["prompt"]] * len(choices), choices, truncation="longest_first",
                        max_length=settings.max_length)
        width = max(len(x) for x in enc["input_ids"])
        ids = np.full((len(choices), width), tokenizer.pad_token_id, np.int64)
        for c, x in enumerate(enc["input_ids"]):
            ids[c, :len(x)] = x
        features.append({"input_ids": ids, "labels": np.int64(r.fields.get("label", 0))})
    return features


def language_model_blocks(dataset: Dataset, tokenizer: Any, settings: TaskSettings, space: LabelSpace | None = None):
    """HF's ``group_texts``: every text tokenised with its special tokens, concatenated, cut into blocks of
    ``max_length`` (the last, shorter block is kept when it holds at least two tokens)."""
    stream = np.concatenate([np.asarray(x, np.int64) for x in
                             tokenizer([r.fields["text"] for r in dataset.records])["input_ids"]])
    blocks = [stream[i:i + settings.max_length] for i in range(0, len(stream), settings.max_length)]
    return [{"input_ids": b} for b in blocks if len(b) >= 2]


def record_blocks(tokenizer: Any, text: str, max_length: int) -> list[np.ndarray]:
    """One text as consecutive non-overlapping windows of at most ``max_length`` tokens, each with <s> and </s>:
    how language-model evaluation scores a record on its own."""
    body = tokenizer(text, add_special_tokens=False)["input_ids"]
    step = max_length - 2
    return [np.asarray([tokenizer.cls_token_id, *body[i:i + step], tokenizer.sep_token_id], np.int64)
            for i in range(0, max(1, len(body)), step)]


TRAINING_FEATURES = {
    "text-classification": text_classification,
    "token-classification": token_classification,
    "question-answering": question_answering,
    "multiple-choice": multiple_choice,
    "masked-lm": language_model_blocks,
    "causal-lm": language_model_blocks,
}


def training_features(dataset: Dataset, tokenizer: Any, settings: TaskSettings,
                      space: LabelSpace | None) -> list[dict[str, np.ndarray]]:
    """The features of ``dataset`` for training on ``settings.task``."""
    return TRAINING_FEATURES[settings.task](dataset, tokenizer, settings, space)
