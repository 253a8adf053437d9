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
import os
import sys

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
    scale = parser.add_argument_group("scaling out (see docs: Scaling out)")
    scale.add_argument("--bf16", action="store_true",
                       help="compute in bfloat16 on float32 parameters (pt autocast, tf mixed_bfloat16, flax dtype)")
    scale.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute each layer's activations in the backward pass: less memory, ~1/3 more time")
    scale.add_argument("--gradient-accumulation-steps", type=int, default=1, metavar="K",
                       help="split each update's --batch-size rows into K micro-batches")
    scale.add_argument("--save-steps", type=int, default=0, metavar="N",
                       help="write OUTPUT/checkpoint-STEP every N updates (0: never)")
    scale.add_argument("--resume-from", metavar="PATH|auto", help="continue from a checkpoint (auto: the latest)")
    scale.add_argument("--nproc", type=int, help="pt: start N processes through torchrun's API (DDP/FSDP)")
    scale.add_argument("--fsdp", action="store_true", help="pt: shard parameters with FSDP2 instead of DDP")
    scale.add_argument("--mesh", metavar="data=N[,fsdp=M]", help="flax: device mesh (batch over data, params over fsdp)")
    scale.add_argument("--strategy", choices=("mirrored", "multiworker"), help="tf: tf.distribute strategy")
    scale.add_argument("--cpu-devices", type=int, metavar="N",
                       help="tf, flax: split the CPU into N logical devices (testing on one machine)")


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def run(args: argparse.Namespace) -> int:
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        if args.backend != "pt":
            raise ValueError(f"--nproc starts torch processes; --backend {args.backend} distributes over devices "
                             "in one process (flax: --mesh, tf: --strategy)")
        if args.nproc < 1:
            raise ValueError(f"--nproc must be a positive integer, got {args.nproc}")
        from xlmr.pt.distributed import launch

        return launch(args.nproc, _without_nproc(sys.argv[sys.argv.index("finetune"):]))
    metrics = tasks.finetune(
        args.task, args.backend, args.model, args.train, args.validation, args.output, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, seed=args.seed, no_dropout=args.no_dropout,
        label_all_tokens=args.label_all_tokens, logging_steps=args.logging_steps, force=args.force,
        gradient_accumulation_steps=args.gradient_accumulation_steps, save_steps=args.save_steps,
        resume_from=args.resume_from, fsdp=args.fsdp, mesh=args.mesh, strategy=args.strategy,
        cpu_devices=args.cpu_devices, bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing,
        **tasks.processing_flags(args))
    if metrics is not None:  # rank 0 of a distributed run, or the only process
        print(json.dumps(metrics))
    return 0
