"""Scaling out: 2-way data parallelism, parameter sharding, gradient accumulation and resumed runs give what
one device gives, in every backend (2 CPU processes for torch on gloo, 2 XLA host devices for JAX, 2 logical
CPUs for TensorFlow); and the plan's checks refuse bad runs before any work.

The job is masked-LM (tests/distributed_runs.py): replicas and micro-batches see different numbers of masked
tokens, so an unweighted mean of per-replica losses would be off; the weights of
``xlmr.common.distributed.split_batch`` make the split exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xlmr.backends import installed_backends
from xlmr.common import distributed
from xlmr.common.constants import TOLERANCE_FP32

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import distributed_runs  # noqa: E402

STEPS = 5
RESUME_TOLERANCE = 1e-6


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [distributed_runs.ROOT,
                                                                      os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=distributed_runs.ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _backend_runs(backend: str, folder) -> dict:
    result = _run([sys.executable, os.path.join(HERE, "distributed_runs.py"), backend, str(folder)])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_same_run(run: dict, reference_losses: list[float], tolerance: float) -> None:
    assert len(run["losses"]) == STEPS
    np.testing.assert_allclose(run["losses"], reference_losses, rtol=0, atol=tolerance)
    assert run["max_diff"] <= tolerance, run["max_diff"]


# ------------------------------------------------------------------------------------------------ the plan
def test_split_weights_make_the_global_mean_whatever_the_valid_counts():
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((7, 9)) < 0.3, rng.integers(0, 50, (7, 9)), -100)
    labels[5] = -100  # a row without a labelled token
    batch = {"input_ids": np.ones((7, 9), np.int64), "labels": labels}
    per_row_sum = (labels != -100).sum(1).astype(float)  # a loss whose per-token terms are all 1 per row
    for world, accumulation in ((1, 1), (2, 1), (1, 3), (2, 2), (4, 2)):
        pieces = [p for r in range(world) for p in distributed.split_batch(batch, "masked-lm", r, world,
                                                                             accumulation)]
        assert len(pieces) == world * accumulation
        assert abs(sum(w for _, w in pieces) - 1.0) < 1e-12
        # each piece's token mean of row index, weighted, equals the global token mean of row index
        mean = lambda b: float(((b["labels"] != -100) * np.arange(9)).sum() / max(1, (b["labels"] != -100).sum()))
        assert abs(sum(w * mean(p) for p, w in pieces) - mean(batch)) < 1e-12
        assert all(w == 0 or distributed.loss_units(p, "masked-lm") > 0 for p, w in pieces)
    assert per_row_sum.sum() == distributed.loss_units(batch, "masked-lm")


def test_an_empty_share_gets_a_weightless_row():
    batch = {"input_ids": np.ones((1, 3), np.int64), "labels": np.array([1])}
    (piece, weight), = distributed.split_batch(batch, "text-classification", 1, 2, 1)
    assert weight == 0.0 and len(piece["labels"]) == 1


def test_bad_plans_are_refused_in_one_line():
    with pytest.raises(ValueError, match="--batch-size 6 .* world size 4"):
        distributed.micro_batch_size(6, 4)
    with pytest.raises(ValueError, match="needs 4 devices but only 2"):
        distributed.check_mesh(distributed.parse_mesh("data=2,fsdp=2"), 2)
    with pytest.raises(ValueError, match="axes data, fsdp"):
        distributed.parse_mesh("model=2")
    with pytest.raises(ValueError, match="--fsdp is for --backend pt, not flax"):
        distributed.check_options("flax", fsdp=True)
    with pytest.raises(ValueError, match="--strategy is for --backend tf, not pt"):
        distributed.check_options("pt", strategy="mirrored")


def test_resume_refuses_another_task_or_shape(tmp_path):
    state = distributed.TrainerState(4, 0, 4, "masked-lm", "pt", "XLMRobertaForMaskedLM", {"w": [8, 4]}, 10)
    state.save(str(tmp_path))
    loaded = distributed.TrainerState.load(str(tmp_path))
    loaded.check_matches(str(tmp_path), "masked-lm", "pt", "XLMRobertaForMaskedLM", {"w": [8, 4]}, 10)
    with pytest.raises(ValueError, match="written for task 'masked-lm', this run has 'causal-lm'"):
        loaded.check_matches(str(tmp_path), "causal-lm", "pt", "XLMRobertaForMaskedLM", {"w": [8, 4]}, 10)
    with pytest.raises(ValueError, match=r"parameter w has shape \[8, 4\] there and \[8, 2\]"):
        loaded.check_matches(str(tmp_path), "masked-lm", "pt", "XLMRobertaForMaskedLM", {"w": [8, 2]}, 10)


def test_auto_resume_skips_a_checkpoint_killed_mid_save(tmp_path):
    state = distributed.TrainerState(2, 0, 2, "masked-lm", "pt", "XLMRobertaForMaskedLM", {}, 10)
    plan = distributed.Plan(save_steps=2, output=str(tmp_path), template=state)
    plan.save(2, 5, lambda folder: open(os.path.join(folder, "weights"), "w").close())
    os.makedirs(tmp_path / ".checkpoint-4.partial")   # a save that never reached its rename
    os.makedirs(tmp_path / "checkpoint-6")            # not a checkpoint: no trainer_state.json
    assert distributed.resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert distributed.TrainerState.load(str(tmp_path / "checkpoint-2")).step == 2
    assert distributed.resolve_resume("auto", str(tmp_path / "none")) is None


def test_finetune_refuses_a_batch_the_world_cannot_split(tmp_path):
    from xlmr.cli.tasks import finetune

    train, validation = distributed_runs.data(str(tmp_path))
    with pytest.raises(ValueError, match="--batch-size 5 .* --gradient-accumulation-steps 2"):
        finetune("masked-lm", "pt", distributed_runs.MODEL, train, validation, str(tmp_path / "out"), batch_size=5,
                 gradient_accumulation_steps=2)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ the engines
@pytest.mark.slow
@pytest.mark.skipif("pt" not in installed_backends(), reason="torch not installed")
def test_pt_ddp_fsdp_accumulation_and_resume_equal_one_process(tmp_path):
    runs = _backend_runs("pt", tmp_path)
    single = runs["single"]["losses"]
    _assert_same_run(runs["accumulate2"], single, TOLERANCE_FP32)
    assert runs["resumed:checkpoints"] == ["checkpoint-2"]
    _assert_same_run(runs["resumed"], single, RESUME_TOLERANCE)
    flags = ["masked-lm", "--backend", "pt", "--model", distributed_runs.MODEL, "--train",
             str(tmp_path / "train.jsonl"), "--validation", str(tmp_path / "validation.jsonl"), "--epochs", "1",
             "--batch-size", "4", "--max-length", "32", "--no-dropout", "--logging-steps", "1",
             "--learning-rate", "1e-4"]
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "xlmr", "finetune", *flags,
          "--output", str(tmp_path / "ddp")])
    _run([sys.executable, "-m", "xlmr", "finetune", *flags, "--nproc", "2", "--fsdp", "--save-steps", "4",
          "--output", str(tmp_path / "fsdp")])
    reference = distributed_runs.weights(str(tmp_path / "single"))
    ddp = distributed_runs.weights(str(tmp_path / "ddp"))
    for name in ("ddp", "fsdp"):
        run = {"losses": distributed_runs.losses(str(tmp_path / name)),
               "max_diff": distributed_runs.max_diff(reference if name == "ddp" else ddp,
                                                     distributed_runs.weights(str(tmp_path / name)))}
        _assert_same_run(run, single, TOLERANCE_FP32)
    assert os.path.isdir(tmp_path / "fsdp" / "checkpoint-4" / "dcp")  # sharded state, torch.distributed.checkpoint


@pytest.mark.slow
@pytest.mark.skipif("flax" not in installed_backends(), reason="jax/flax not installed")
def test_flax_mesh_sharding_accumulation_and_resume_equal_one_device(tmp_path):
    runs = _backend_runs("flax", tmp_path)
    single = runs["single"]["losses"]
    for name in ("data2", "fsdp2", "accumulate2"):
        _assert_same_run(runs[name], single, TOLERANCE_FP32)
    assert runs["resumed:checkpoints"] == ["checkpoint-2"]
    _assert_same_run(runs["resumed"], runs["data2"]["losses"], RESUME_TOLERANCE)


@pytest.mark.slow
@pytest.mark.skipif("tf" not in installed_backends(), reason="tensorflow not installed")
def test_tf_mirrored_accumulation_and_resume_equal_one_device(tmp_path):
    runs = _backend_runs("tf", tmp_path)
    single = runs["single"]["losses"]
    for name in ("mirrored2", "accumulate2"):
        _assert_same_run(runs[name], single, TOLERANCE_FP32)
    assert runs["resumed:checkpoints"] == ["checkpoint-2"]
    _assert_same_run(runs["resumed"], runs["mirrored2"]["losses"], RESUME_TOLERANCE)


@pytest.mark.parametrize("backend, flags, message", [
    ("flax", ["--mesh", "data=4"], "--mesh data=4,fsdp=1 needs 4 devices but only 1 cpu device"),
    ("tf", ["--nproc", "2"], "--nproc starts torch processes; --backend tf distributes over devices"),
    ("pt", ["--mesh", "data=2"], "--mesh is for --backend flax, not pt"),
])
def test_the_command_refuses_a_bad_engine_in_one_line(tmp_path, backend, flags, message):
    if backend not in installed_backends():
        pytest.skip(f"{backend} not installed")
    train, validation = distributed_runs.data(str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [distributed_runs.ROOT, os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "xlmr", "finetune", "masked-lm", "--backend", backend, "--model",
                             distributed_runs.MODEL, "--train", train, "--validation", validation, "--output",
                             str(tmp_path / "out"), *flags], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("xlmr finetune: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
