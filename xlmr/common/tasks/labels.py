"""Label spaces: what the training file's labels are (classes, regression, multi-label, tag sets) and their ids.

The label space is read from the training file only; a validation label it lacks is an error naming the line,
since a model cannot predict a class it never had an output for.

Example:
    >>> space = LabelSpace.for_tags([["B-eng", "I-eng", "O"], ["B-deu"]])
    >>> space.names, space.iob2
    (['O', 'B-deu', 'I-deu', 'B-eng', 'I-eng'], True)
    >>> LabelSpace.for_labels(["neg", "pos", "neg"]).kind
    'single_label_classification'
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

from xlmr.common.losses import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from xlmr.common.tasks.records import Dataset, DataError

TAGS = "tags"
_IOB = re.compile(r"^[BI]-.+$")


def _kind(label: Any) -> str:
    return "list" if isinstance(label, list) else type(label).__name__


@dataclasses.dataclass
class LabelSpace:
    kind: str                 # REGRESSION, SINGLE_LABEL, MULTI_LABEL or TAGS
    names: list[str]          # id -> name
    iob2: bool = False        # tags look like B-X / I-X / O

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @property
    def problem_type(self) -> str | None:
        """The config's ``problem_type`` for sequence classification (None for the other heads)."""
        return self.kind if self.kind in (REGRESSION, SINGLE_LABEL, MULTI_LABEL) else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LabelSpace":
        return cls(**data)

    # ---------------------------------------------------------------------------------------------- building
    @classmethod
    def for_labels(cls, labels: Sequence[Any]) -> "LabelSpace":
        """Classes from string/int labels, regression from floats, multi-label from lists of strings."""
        if any(isinstance(x, list) for x in labels):
            return cls(MULTI_LABEL, sorted({n for x in labels for n in x}))
        if any(isinstance(x, float) for x in labels):
            return cls(REGRESSION, ["LABEL_0"])
        return cls(SINGLE_LABEL, [str(x) for x in sorted(set(labels), key=lambda x: (isinstance(x, str), x))])

    @classmethod
    def for_tags(cls, sequences: Sequence[Sequence[str]]) -> "LabelSpace":
        """The tag set; when every tag is ``O``, ``B-X`` or ``I-X`` it is IOB2, completed so that each type has
        both its B- and I- tag (the model may need the one training lacked), O first, then by type."""
        tags = {t for s in sequences for t in s}
        if tags and all(t == "O" or _IOB.match(t) for t in tags):
            types = sorted({t[2:] for t in tags if t != "O"})
            return cls(TAGS, ["O"] + [f"{p}-{x}" for x in types for p in "BI"], iob2=True)
        return cls(TAGS, sorted(tags))

    @classmethod
    def from_training(cls, dataset: Dataset) -> "LabelSpace | None":
        """The label space of a training file (None for tasks without labels to map)."""
        if dataset.task == "text-classification":
            labels = [r.fields["label"] for r in dataset.records]
            first = _kind(labels[0])
            for record, label in zip(dataset.records, labels):
                if not {first, _kind(label)} in ({"list"}, {"float"}, {"float", "int"}, {"int"}, {"int", "str"},
                                                 {"str"}):
                    raise DataError(f"{dataset.where(record, 'label')} is {label!r} but line {dataset.records[0].line}"
                                    f" has {labels[0]!r}: a file's labels must be all classes (strings or ints), all "
                                    "numbers (regression) or all lists of strings (multi-label)")
            return cls.for_labels(labels)
        if dataset.task == "token-classification":
            return cls.for_tags([r.fields["tags"] for r in dataset.records])
        return None

    # ---------------------------------------------------------------------------------------------- checking
    def check(self, dataset: Dataset) -> None:
        """Raise DataError at the first record of ``dataset`` whose label the space lacks or cannot hold."""
        known = set(self.names)
        for record in dataset.records:
            if dataset.task == "token-classification" and "tags" in record.fields:
                for i, tag in enumerate(record.fields["tags"]):
                    if tag not in known:
                        raise DataError(f"{dataset.where(record, 'tags')} tag {i} is {tag!r}, which the training "
                                        f"file never uses (known: {', '.join(self.names)})")
            elif dataset.task == "text-classification" and "label" in record.fields:
                label = record.fields["label"]
                if self.kind == REGRESSION:
                    ok = isinstance(label, (int, float)) and not isinstance(label, bool)
                elif self.kind == MULTI_LABEL:
                    ok = isinstance(label, list) and set(label) <= known
                else:
                    ok = not isinstance(label, (list, float)) and str(label) in known
                if not ok:
                    raise DataError(f"{dataset.where(record, 'label')} is {label!r}, which the training file never "
                                    f"uses (training labels: {self.describe()})")

    def describe(self) -> str:
        if self.kind == REGRESSION:
            return "floats (regression)"
        names = ", ".join(self.names[:20]) + (", ..." if len(self.names) > 20 else "")
        return f"lists of {names}" if self.kind == MULTI_LABEL else names
