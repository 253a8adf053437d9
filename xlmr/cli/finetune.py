"""Fine-tune a checkpoint for a task on JSON Lines data, in one backend, and publish the result atomically.

    xlmr finetune text-classification --backend pt --model xlmr/assets/default \\
        --train tools/data/tasks/text-classification/train.jsonl \\
        --validation tools/data/tasks/text-classification/validation.jsonl --output runs/langid

--output receives model.safetensors, config.json (id2label/label2id, problem_type), the tokenizer files,
xlmr_task.json (the processing settings evaluate and predict reuse), metrics.json and train_log.jsonl. The last
line on stdout is the validation metrics as JSON.
"""

from __future__ import annotations

import argparse
import json

from xlmr.cli import tasks

HELP = "fine-tune a checkpoint for a task (text/token classification, QA, multiple choice, masked/causal LM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks.add_common(parser, ("train", "validation"))
    parser.add_argument("--output", required=True, help="folder to create (refused if it exists, unless --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--learning-rate", type=float, default=5e-5)
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--warmup-ratio", type=float, default=0.0)
    train.add_argument("--seed", type=int, default=42, help="data order, new heads, dropout and masking")
    train.add_argument("--no-dropout", action="store_true", help="train with every dropout rate at 0")
    train.add_argument("--logging-steps", type=int, default=10, help="write train_log.jsonl every N updates")
    train.add_argument("--label-all-tokens", action="store_true",
                       help="token classification: label every piece of a word, not only its first")
    tasks.add_processing(parser, "defaults: see each flag")


def run(args: argparse.Namespace) -> int:
    metrics = tasks.finetune(
        args.task, args.backend, args.model, args.train, args.validation, args.output, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, seed=args.seed, no_dropout=args.no_dropout,
        label_all_tokens=args.label_all_tokens, logging_steps=args.logging_steps, force=args.force,
        **tasks.processing_flags(args))
    print(json.dumps(metrics))
    return 0
