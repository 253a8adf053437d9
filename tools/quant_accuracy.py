"""The validation metric of a fine-tuned checkpoint at float32, bf16 and int8, per backend, and the change.

    python tools/quant_accuracy.py TASK MODEL [--data FILE] [--backends pt tf flax] [--modes int8 bf16]

MODEL is an ``xlmr finetune`` output folder; FILE defaults to tools/data/tasks/TASK/validation.jsonl. Each row is
``xlmr.cli.tasks.evaluate`` (the evaluation ``xlmr evaluate`` runs) with ``quantize=`` the mode; prints one JSON
line per run and a markdown table whose "change" columns are quantized minus float32 in the same backend.

Example:
    >>> rows = [{"backend": "pt", "mode": "fp32", "accuracy": 0.5}, {"backend": "pt", "mode": "int8", "accuracy": 0.45}]
    >>> print(table("text-classification", rows).splitlines()[-1])
    | text-classification | pt | int8 | accuracy | 0.4500 | -0.0500 |
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# The metric each task's row reports (the others are in the JSON lines).
HEADLINE = {"text-classification": "accuracy", "token-classification": "f1", "question-answering": "f1",
            "multiple-choice": "accuracy", "masked-lm": "perplexity", "causal-lm": "perplexity"}


def measure(task: str, model: str, data: str, backends=("pt", "tf", "flax"), modes=("int8", "bf16")) -> list[dict]:
    """[{backend, mode, metric: value, ...}] for float32 and each of ``modes`` in each backend."""
    from xlmr.cli.tasks import evaluate

    rows = []
    for backend in backends:
        for mode in (None, *modes):
            metrics = evaluate(task, backend, model, data, quantize=mode)
            rows.append({"backend": backend, "mode": mode or "fp32", **metrics})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(task: str, rows: list[dict]) -> str:
    """Markdown rows: task, backend, mode, headline metric, value, change from the backend's float32."""
    metric = HEADLINE[task]
    base = {r["backend"]: r[metric] for r in rows if r["mode"] == "fp32"}
    lines = ["| task | backend | mode | metric | value | change |", "|---|---|---|---|---|---|"]
    for r in rows:
        change = "" if r["mode"] == "fp32" else f"{r[metric] - base[r['backend']]:+.4f}"
        lines.append(f"| {task} | {r['backend']} | {r['mode']} | {metric} | {r[metric]:.4f} | {change} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=sorted(HEADLINE))
    parser.add_argument("model", help="an xlmr finetune output folder")
    parser.add_argument("--data", help="JSON Lines (default: tools/data/tasks/TASK/validation.jsonl)")
    parser.add_argument("--backends", nargs="+", default=["pt", "tf", "flax"])
    parser.add_argument("--modes", nargs="+", default=["int8", "bf16"])
    args = parser.parse_args(argv)
    data = args.data or os.path.join(HERE, "data", "tasks", args.task, "validation.jsonl")
    print(table(args.task, measure(args.task, args.model, data, args.backends, args.modes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
