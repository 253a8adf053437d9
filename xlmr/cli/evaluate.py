"""Score a fine-tuned checkpoint on a labelled JSON Lines file; prints the metrics as one JSON line.

    xlmr evaluate question-answering --backend flax --model runs/qa --data validation.jsonl

Processing settings default to those finetune saved beside the checkpoint (xlmr_task.json).
"""

from __future__ import annotations

import argparse
import json

from xlmr.cli import tasks

HELP = "compute a task's metrics for a checkpoint on a labelled JSON Lines file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks.add_common(parser, ("data",))
    tasks.add_processing(parser, "defaults: those finetune saved in the checkpoint's xlmr_task.json")


def run(args: argparse.Namespace) -> int:
    print(json.dumps(tasks.evaluate(args.task, args.backend, args.model, args.data, **tasks.processing_flags(args))))
    return 0
