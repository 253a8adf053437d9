"""Runs for tests/test_distributed.py, in a process of their own (the device split must happen before the
framework starts): ``python tests/distributed_runs.py BACKEND FOLDER [TASK]`` fine-tunes the same tiny job
(masked-LM by default; multiple-choice: the pooler and classifier path) several ways and prints, as one JSON
line, each run's logged losses and its largest parameter difference from the one-device run (a resumed run: from
the same run uninterrupted)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "xlmr", "assets", "default")
DATA = os.path.join(ROOT, "tools", "data", "tasks")
# records giving 20 features, 5 updates of 4: masked-LM windows of 32 tokens from 7 records; one per question
RECORDS = {"masked-lm": 7, "multiple-choice": 20}
FLAGS = dict(epochs=1, batch_size=4, max_length=32, no_dropout=True, logging_steps=1, learning_rate=1e-4,
             quiet=True)


def tiny_config():
    from xlmr import XLMRobertaConfig

    return XLMRobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=40)


class Interrupted(Exception):
    pass


def data(folder: str, task: str = "masked-lm") -> tuple[str, str]:
    with open(os.path.join(DATA, task, "train.jsonl"), encoding="utf-8") as f:
        lines = f.readlines()
    train, validation = os.path.join(folder, "train.jsonl"), os.path.join(folder, "validation.jsonl")
    count = RECORDS[task]
    with open(train, "w", encoding="utf-8") as f:
        f.writelines(lines[:count])
    with open(validation, "w", encoding="utf-8") as f:
        f.writelines(lines[count:count + 1])
    return train, validation


def weights(output: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(os.path.join(output, "model.safetensors"))


def losses(output: str) -> list[float]:
    with open(os.path.join(output, "train_log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["loss"] for line in f]


# Parameters whose exact gradient is 0 for a task, so that Adam divides rounding noise by its own size and moves
# them by up to the learning rate in a direction set by the order of a sum: multiple choice's classifier bias
# adds the same number to every choice's logit, and a softmax over the choices cancels it.
NOISE_ONLY = {"multiple-choice": ("classifier.bias",)}


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], task: str = "masked-lm") -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if k not in NOISE_ONLY.get(task, ()))


def run(backend: str, folder: str, runs: dict[str, dict], task: str = "masked-lm") -> dict:
    from xlmr.cli.tasks import finetune

    train, validation = data(folder, task)
    results, against = {}, {}
    for name, flags in runs.items():
        output = os.path.join(folder, name)
        against[name] = flags.pop("against", "single")
        stop = flags.pop("interrupt_at", None)
        if stop is not None:  # an interrupted run, then `--resume-from auto` into the same folder
            def on_step(step, loss):
                if step == stop:
                    raise Interrupted
            try:
                finetune(task, backend, MODEL, train, validation, output, on_step=on_step, **FLAGS, **flags)
            except Interrupted:
                pass
            results[name + ":checkpoints"] = sorted(n for n in os.listdir(output) if n.startswith("checkpoint-"))
            finetune(task, backend, MODEL, train, validation, output, resume_from="auto", **FLAGS, **flags)
        else:
            finetune(task, backend, MODEL, train, validation, output, **FLAGS, **flags)
    for name in runs:
        output = os.path.join(folder, name)
        reference = weights(os.path.join(folder, against[name]))
        results[name] = {"losses": losses(output), "max_diff": max_diff(reference, weights(output), task)}
    return results


def main() -> None:
    backend, folder = sys.argv[1], sys.argv[2]
    task = sys.argv[3] if len(sys.argv) > 3 else "masked-lm"
    if backend == "flax":
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        runs = {"single": {}, "data2": {"mesh": "data=2"}, "fsdp2": {"mesh": "data=1,fsdp=2"},
                "accumulate2": {"gradient_accumulation_steps": 2},
                "resumed": {"mesh": "data=2", "save_steps": 2, "interrupt_at": 4, "against": "data2"}}
    elif backend == "tf":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        runs = {"single": {}, "mirrored2": {"strategy": "mirrored"},
                "accumulate2": {"gradient_accumulation_steps": 2},
                "resumed": {"strategy": "mirrored", "save_steps": 2, "interrupt_at": 4, "against": "mirrored2"}}
    else:
        runs = {"single": {}, "accumulate2": {"gradient_accumulation_steps": 2},
                "resumed": {"save_steps": 2, "interrupt_at": 4}}
    if task != "masked-lm":  # the engines' equivalence on another head: one device against the split run
        runs = {name: flags for name, flags in runs.items() if name in ("single", "data2", "mirrored2")}
    print(json.dumps(run(backend, folder, runs, task)))


if __name__ == "__main__":
    main()
