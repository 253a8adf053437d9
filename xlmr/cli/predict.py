"""Predict for every record of a JSON Lines file; one JSON line per record, in the HF pipeline's output shape.

    xlmr predict token-classification --backend tf --model runs/ner --data test.jsonl --output predictions.jsonl

text-classification: {"label", "score"} (multi-label: a list of them for every label; regression: the value as
"score"); token-classification: the entity groups (aggregation "first") with start/end into the words joined by
single spaces; question-answering: {"answer", "start", "end", "score"} ("" for no answer); multiple-choice:
{"label": index, "scores"}; masked-lm and causal-lm: {"loss", "num_tokens"} of the record.
"""

from __future__ import annotations

import argparse
import sys

from xlmr.cli import tasks

HELP = "write a task's predictions for a JSON Lines file (HF pipeline output shapes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks.add_common(parser, ("data",))
    parser.add_argument("--output", required=True, metavar="FILE.jsonl", help="predictions, one JSON line a record")
    tasks.add_processing(parser, "defaults: those finetune saved in the checkpoint's xlmr_task.json")


def run(args: argparse.Namespace) -> int:
    count = tasks.predict(args.task, args.backend, args.model, args.data, args.output, **tasks.processing_flags(args))
    print(f"{args.output}: {count} predictions", file=sys.stderr)
    return 0
