"""Fine-tune the embedded default checkpoint on every task dataset in every backend and print the README table.

    python tools/bench_tasks.py [--backends pt tf flax] [--tasks ...] [--out runs/bench]

Each run is ``xlmr finetune`` in a subprocess (wall time includes start-up and the validation pass); the
baseline comes from tools/data/tasks/baselines.json, or, for the language models, from ``xlmr evaluate`` of the
starting checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data", "tasks")
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
# task -> (headline metric, finetune flags)
RUNS = {
    "text-classification": ("accuracy", ["--epochs", "3"]),
    "token-classification": ("f1", ["--epochs", "2"]),
    "question-answering": ("f1", ["--epochs", "3", "--max-answer-length", "64"]),
    "multiple-choice": ("accuracy", ["--epochs", "3", "--batch-size", "8"]),
    "masked-lm": ("perplexity", ["--epochs", "2"]),
    "causal-lm": ("perplexity", ["--epochs", "2"]),
}
COMMON = ["--learning-rate", "5e-4", "--warmup-ratio", "0.1", "--batch-size", "16", "--seed", "42"]


def xlmr(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "xlmr", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"xlmr {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1], time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["pt", "tf", "flax"])
    parser.add_argument("--tasks", nargs="+", default=list(RUNS))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "bench"))
    args = parser.parse_args(argv)
    with open(os.path.join(DATA, "baselines.json")) as f:
        baselines = json.load(f)
    rows = []
    for task in args.tasks:
        metric, flags = RUNS[task]
        validation = os.path.join(DATA, task, "validation.jsonl")
        base = baselines[task]
        if metric == "perplexity":
            start, _ = xlmr("evaluate", task, "--backend", "pt", "--model", DEFAULT, "--data", validation)
            base = {"baseline": "starting checkpoint", **json.loads(start)}
        for backend in args.backends:
            line, seconds = xlmr("finetune", task, "--backend", backend, "--model", DEFAULT, "--train",
                                 os.path.join(DATA, task, "train.jsonl"), "--validation", validation,
                                 "--output", os.path.join(args.out, f"{task}-{backend}"), "--force", *COMMON, *flags)
            metrics = json.loads(line)
            rows.append((task, backend, metric, metrics[metric], seconds, base[metric], base["baseline"]))
            print(json.dumps({"task": task, "backend": backend, "seconds": round(seconds, 1), **metrics}), flush=True)
    print("\n| task | backend | validation metric | reached | wall time | baseline |")
    print("|---|---|---|---|---|---|")
    for task, backend, metric, value, seconds, base, how in rows:
        fmt = (lambda v: f"{v:.1f}") if metric in ("f1", "perplexity") and task != "token-classification" else (
            lambda v: f"{v:.3f}")
        print(f"| {task} | {backend} | {metric} | {fmt(value)} | {seconds:.0f} s | {fmt(base)} ({how}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
