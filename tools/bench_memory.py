#!/usr/bin/env python
"""The ``memory`` section of tools/bench.py: peak memory of ONE training step, per backend and device.

    python tools/bench.py --sections memory
    python tools/bench_memory.py [--depths 1,2,4] [--batch 8] [--length 512] [--backends pt,tf,flax] [--json]

The model is XLMRobertaForSequenceClassification at xlm-roberta-large's width (1024 wide, 16 heads, 4096
intermediate, vocabulary 250002, 514 positions), random weights, float32; the step is what ``xlmr finetune``
runs: forward, backward and the AdamW update (with global-norm clipping), on one batch of BATCH x LENGTH tokens.
Each configuration runs in a child process of its own:

  plain          one device.
  checkpointing  one device, ``gradient_checkpointing_enable()`` (each layer recomputed in the backward pass).
  sharded        pt: FSDP2 over 2 gloo processes (the figure is the larger rank's); flax: a ``data=1,fsdp=2``
                 mesh of 2 XLA host devices, which live in ONE process (the figure covers both; per device
                 is about half). TensorFlow has no parameter-sharding engine (MirroredStrategy replicates).

What is measured: the child builds the model (HF's initialisation draws every weight in numpy first, a transient
copy), collects garbage and reads its resident set (VmRSS: "model"); then it resets the kernel's high-water mark
(``/proc/self/clear_refs``) and runs the step; the step's figure is the new high-water mark (VmHWM) less
"model": gradients, AdamW moments, activations and the framework's workspace. Resident memory, not
allocator statistics: that is what the machine must have.

The real 24-layer depth needs 30 GB or more in some configurations, more than a shared test machine has, so
the step is measured at the ``--depths`` given (default 1, 2 and 4) and extrapolated linearly to 24 layers
through the two deepest (marked ~). Treat those as estimates: the peak is the larger of two phases, the
backward pass (activations and gradients, which grow with the depth) and the AdamW update (moments and
temporaries, set mostly by the 250002 x 1024 embedding at these depths), so at a few layers the slope can be
that of the update and understate 24 layers' activations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
             intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)
MODES = ("plain", "checkpointing", "sharded")
BACKENDS = ("pt", "tf", "flax")
TARGET_DEPTH = 24


# ------------------------------------------------------------------------------------------------ in the child
def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _batch(task: dict):
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(5, LARGE["vocab_size"], (task["batch"], task["length"]))
    ids[:, 0], ids[:, -1] = 0, 2
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": rng.integers(0, 2, task["batch"])}


def _config(task: dict):
    from xlmr import XLMRobertaConfig

    return XLMRobertaConfig(**{**LARGE, "num_hidden_layers": task["depth"]}, num_labels=2)


def _measure(build, step) -> dict:
    """``build()`` then one ``step(model)``: RSS of the built model, and the step's high-water mark above it."""
    import gc

    model = build()
    gc.collect()
    model_rss = _status("VmRSS")
    _reset_peak()
    loss = step(model)
    return {"model_bytes": model_rss, "step_bytes": _status("VmHWM") - model_rss, "loss": float(loss)}


def worker(task: dict) -> dict:
    from xlmr.common.tasks.schedule import TrainingSettings

    settings = TrainingSettings(epochs=1, batch_size=task["batch"], learning_rate=1e-5)
    batch, config, backend = _batch(task), _config(task), task["backend"]
    checkpointing = task["mode"] == "checkpointing"

    if backend == "pt":
        import torch

        from xlmr.common.distributed import split_batch
        from xlmr.pt import XLMRobertaForSequenceClassification
        from xlmr.pt.distributed import Engine
        from xlmr.pt.training import make_optimizer, train_step

        torch.set_num_threads(max(1, (os.cpu_count() or 2) // (2 if task["mode"] == "sharded" else 1)))
        engine = Engine.from_environment(fsdp=task["mode"] == "sharded")

        def build():
            model = XLMRobertaForSequenceClassification(config, seed=0).train()
            if checkpointing:
                model.gradient_checkpointing_enable()
            return engine.wrap(model)

        def step(model):
            optimizer, scheduler = make_optimizer(model, settings, 1)
            pieces = split_batch(batch, "text-classification", engine.rank, engine.world, 1) \
                if engine.world > 1 else batch
            return train_step(model, optimizer, scheduler, pieces, settings, engine.loss_scale())

        result = _measure(build, step)
        if engine.world > 1:  # every rank's figures; the report keeps the larger
            import torch.distributed as dist

            gathered = [None] * engine.world
            dist.all_gather_object(gathered, result)
            rank = engine.rank
            engine.close()
            if rank != 0:
                return None  # rank 0 reports for all (two ranks printing at once would interleave)
            return {k: max(g[k] for g in gathered) for k in ("model_bytes", "step_bytes")} | {
                "loss": gathered[0]["loss"], "ranks": engine.world}
        return result

    if backend == "tf":
        import tensorflow as tf

        from xlmr.tf import XLMRobertaForSequenceClassification
        from xlmr.tf.training import make_optimizer

        def build():
            model = XLMRobertaForSequenceClassification(config, seed=0)
            if checkpointing:
                model.gradient_checkpointing_enable()
            return model

        def step(model):
            optimizer = make_optimizer(model, settings, 1)
            tensors = {k: tf.constant(v) for k, v in batch.items()}

            @tf.function
            def update():
                with tf.GradientTape() as tape:
                    loss = model(**tensors, training=True)["loss"]
                optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
                return loss

            return update()

        return _measure(build, step)

    import jax.numpy as jnp
    from flax import nnx

    from xlmr.flax import XLMRobertaForSequenceClassification
    from xlmr.flax.distributed import Engine
    from xlmr.flax.training import make_optimizer, make_train_step

    engine = Engine.from_options(mesh={"data": 1, "fsdp": 2} if task["mode"] == "sharded" else None)

    def build():
        model = XLMRobertaForSequenceClassification(config, seed=0)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        return model

    def step(model):
        optimizer = make_optimizer(model, settings, 1)
        step_fn = make_train_step(model, optimizer, engine)
        state = engine.put(nnx.state((model, optimizer)), getattr(step_fn, "state_shardings", None))
        del optimizer
        loss, state = step_fn(state, {k: jnp.asarray(v) for k, v in batch.items()})
        return float(loss)

    return _measure(build, step)


# ------------------------------------------------------------------------------------------------ the parent
def _child(task: dict, timeout: int = 3600) -> dict:
    """Run ``task`` in a fresh process (two torch processes for pt's sharded mode)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    if task["backend"] == "flax" and task["mode"] == "sharded":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    if task["backend"] == "pt" and task["mode"] == "sharded":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   *command[1:]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode != 0 or not lines:
        err = [l for l in done.stderr.strip().splitlines() if l.strip()]
        return {"error": err[-1] if err else f"exit {done.returncode}"}
    return json.JSONDecoder().raw_decode(lines[0])[0]


def extrapolate(points: dict[int, float], depth: int = TARGET_DEPTH) -> float:
    """The affine fit through the two deepest measured depths, evaluated at ``depth``.

    >>> extrapolate({1: 5.0, 2: 7.0})
    51.0
    """
    (d1, v1), (d2, v2) = sorted(points.items())[-2:]
    return v2 + (v2 - v1) / (d2 - d1) * (depth - d2)


def section_memory(backends=BACKENDS, depths=(1, 2, 4), batch: int = 8, length: int = 512) -> dict:
    rows = []
    for backend in backends:
        for mode in MODES:
            if backend == "tf" and mode == "sharded":
                rows.append({"backend": backend, "mode": mode, "error": "no parameter sharding in tf.distribute"})
                continue
            measured = {d: _child({"backend": backend, "mode": mode, "depth": d, "batch": batch, "length": length})
                        for d in depths}
            row = {"backend": backend, "mode": mode, "measured": {str(d): m for d, m in measured.items()}}
            errors = [m["error"] for m in measured.values() if "error" in m]
            if errors:
                row["error"] = errors[0]
            rows.append(row)
    return {"batch": batch, "length": length, "depths": list(depths), "rows": rows}


def print_memory(memory: dict) -> None:
    depths = memory["depths"]
    print(f"\nmemory of one training step (forward + backward + AdamW), XLMRobertaForSequenceClassification at "
          f"xlm-roberta-large width, batch {memory['batch']} x {memory['length']} tokens, float32, GB of resident "
          f"memory: 'model' = after building, 'step' = the step's peak above that; measured at depths "
          f"{', '.join(map(str, depths))}, extrapolated linearly to {TARGET_DEPTH} layers (marked ~: rough, see "
          "the module docstring)")
    head = "".join(f" {'model@' + str(d):>9} {'step@' + str(d):>8}" for d in depths)
    print(f"{'backend':7} {'mode':13}{head} {'~model@24':>10} {'~step@24':>9} {'~peak@24':>9}")
    for r in memory["rows"]:
        if "error" in r:
            print(f"{r['backend']:7} {r['mode']:13} {r['error']}")
            continue
        cells = "".join(f" {r['measured'][str(d)]['model_bytes'] / 1e9:9.2f} "
                        f"{r['measured'][str(d)]['step_bytes'] / 1e9:8.2f}" if str(d) in r["measured"]
                        else f" {'-':>9} {'-':>8}" for d in depths)
        points = {int(d): m for d, m in r["measured"].items()}
        tail = ""
        if len(points) >= 2:  # through the two deepest measured depths
            model, step = (extrapolate({d: m[key] for d, m in points.items()}) for key in ("model_bytes", "step_bytes"))
            tail = f" {model / 1e9:10.2f} {step / 1e9:9.2f} {(model + step) / 1e9:9.2f}"
        print(f"{r['backend']:7} {r['mode']:13}{cells}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_memory.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--depths", default="1,2,4", help="layer counts to measure (default: 1,2,4)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(json.loads(args.worker))
        if result is not None:
            print(json.dumps(result))
        return 0
    memory = section_memory(args.backends.split(","), tuple(int(d) for d in args.depths.split(",")), args.batch,
                            args.length)
    print(json.dumps(memory, indent=2) if args.json else "", end="")
    if not args.json:
        print_memory(memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
