"""Reading a task's JSON Lines file: one record a line, HF datasets' field names, checked field by field.

Every problem is a ``DataError`` (a ValueError) of one line naming the file, the line and the field, so that the
``xlmr`` command prints it as it is.

Example:
    >>> import json, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "train.jsonl")
    >>> _ = open(path, "w").write(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\\n")
    >>> try:
    ...     read_records(path, "token-classification")
    ... except DataError as e:
    ...     print(str(e).split(": ", 1)[1])
    line 1: field 'tags' has 1 tags for 2 tokens
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from xlmr.common.tasks import check_task


class DataError(ValueError):
    """A bad record or file; the message is one line: ``FILE: line N: field 'F': what is wrong``."""


@dataclasses.dataclass
class Record:
    line: int              # 1-based line number in the file
    fields: dict[str, Any]


@dataclasses.dataclass
class Dataset:
    path: str
    task: str
    records: list[Record]

    def where(self, record: Record, field: str | None = None) -> str:
        """``FILE: line N: field 'F'`` for messages."""
        return f"{self.path}: line {record.line}" + (f": field {field!r}" if field else "")

    def __len__(self) -> int:
        return len(self.records)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_text_classification(rec: dict, fail) -> None:
    for name in ("text", "text_pair"):
        if name == "text" or rec.get(name) is not None:
            if not isinstance(rec.get(name), str) or not rec[name].strip():
                fail(name, "must be a non-empty string")
    label = rec["label"]
    if isinstance(label, bool) or not (isinstance(label, (str, int, float)) or _is_str_list(label)):
        fail("label", f"must be a string, an int, a float or a list of strings, got {json.dumps(label)}")


def _check_token_classification(rec: dict, fail) -> None:
    tokens, tags = rec["tokens"], rec["tags"]
    if not _is_str_list(tokens) or not tokens:
        fail("tokens", "must be a non-empty list of strings")
    for i, word in enumerate(tokens):
        if not word or any(ch.isspace() for ch in word):
            fail("tokens", f"word {i} ({json.dumps(word)}) is empty or holds white space")
    if not _is_str_list(tags):
        fail("tags", "must be a list of strings")
    if len(tags) != len(tokens):
        fail("tags", f"has {len(tags)} tags for {len(tokens)} tokens")


def _check_question_answering(rec: dict, fail) -> None:
    if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
        fail("id", "must be a string")
    for name in ("question", "context"):
        if not isinstance(rec[name], str) or not rec[name].strip():
            fail(name, "must be a non-empty string")
    answers = rec["answers"]
    if not isinstance(answers, dict) or set(answers) != {"text", "answer_start"}:
        fail("answers", "must be {\"text\": [...], \"answer_start\": [...]}")
    texts, starts = answers["text"], answers["answer_start"]
    if not _is_str_list(texts) or not isinstance(starts, list) or len(texts) != len(starts):
        fail("answers", "needs lists 'text' and 'answer_start' of the same length")
    for text, start in zip(texts, starts):
        if not isinstance(start, int) or isinstance(start, bool) or not text:
            fail("answers", f"answer {json.dumps(text)} needs a non-empty text and an integer answer_start")
        found = rec["context"][start:start + len(text)]
        if found != text:
            fail("answers.answer_start", f"{start} points at {json.dumps(found)} in the context, "
                                         f"not at the answer {json.dumps(text)}")


def _check_multiple_choice(rec: dict, fail) -> None:
    if not isinstance(rec["prompt"], str) or not rec["prompt"].strip():
        fail("prompt", "must be a non-empty string")
    choices = rec["choices"]
    if not _is_str_list(choices) or len(choices) < 2 or not all(c.strip() for c in choices):
        fail("choices", "must be a list of at least 2 non-empty strings")
    label = rec["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        fail("label", f"must be the index of the right choice, in [0, {len(choices)}), got {json.dumps(label)}")


def _check_text(rec: dict, fail) -> None:
    if not isinstance(rec["text"], str) or not rec["text"].strip():
        fail("text", "must be a non-empty string")


REQUIRED = {
    "text-classification": ("text", "label"),
    "token-classification": ("tokens", "tags"),
    "question-answering": ("id", "question", "context", "answers"),
    "multiple-choice": ("prompt", "choices", "label"),
    "masked-lm": ("text",),
    "causal-lm": ("text",),
}
_CHECKS = {
    "text-classification": _check_text_classification,
    "token-classification": _check_token_classification,
    "question-answering": _check_question_answering,
    "multiple-choice": _check_multiple_choice,
    "masked-lm": _check_text,
    "causal-lm": _check_text,
}


def read_records(path: str | os.PathLike, task: str, labels_required: bool = True) -> Dataset:
    """Read and check ``path`` for ``task``. ``labels_required=False`` (predict) lets records lack their label
    fields (``label``, ``tags``, ``answers``)."""
    check_task(task)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    dataset = Dataset(path, task, [])
    required = REQUIRED[task]
    if not labels_required:
        required = tuple(f for f in required if f not in ("label", "tags", "answers"))
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(fields, dict):
                raise DataError(f"{path}: line {number}: a record must be a JSON object, got {type(fields).__name__}")
            record = Record(number, fields)

            def fail(field: str, why: str) -> None:
                raise DataError(f"{dataset.where(record, field)} {why}")

            for name in required:
                if name not in fields:
                    raise DataError(f"{dataset.where(record)}: missing field {name!r} (a {task} record needs "
                                    f"{', '.join(REQUIRED[task])})")
            if all(name in fields for name in REQUIRED[task]):
                _CHECKS[task](fields, fail)
            dataset.records.append(record)
    if not dataset.records:
        raise DataError(f"{path}: no records (the file is empty); a {task} file needs one JSON object a line")
    if task == "multiple-choice":
        counts = {len(r.fields["choices"]) for r in dataset.records}
        if len(counts) > 1:
            first = dataset.records[0]
            odd = next(r for r in dataset.records if len(r.fields["choices"]) != len(first.fields["choices"]))
            raise DataError(f"{dataset.where(odd, 'choices')} has {len(odd.fields['choices'])} choices, line "
                            f"{first.line} has {len(first.fields['choices'])}; every record needs the same number")
    return dataset
