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


def _backend_runs(backend: str, folder, task: str = "masked-lm") -> dict:
    result = _run([sys.executable, os.path.join(HERE, "distributed_runs.py"), backend, str(folder), task])
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


@pytest.mark.parametrize("text, message", [
    (None, "TF_CONFIG is not set"),
    ("{cluster", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "cluster.worker must be a non-empty"),
    ('{"cluster": {"worker": ["a:1"]}}', "task must be"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "task index must be an integer"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is outside the 2 worker"),
])
def test_multiworker_refuses_a_bad_tf_config_in_one_line(text, message):
    pattern = "^--strategy multiworker: TF_CONFIG " + message.removeprefix("TF_CONFIG ")
    with pytest.raises(ValueError, match=pattern) as error:
        distributed.tf_config_worker(text)
    assert "\n" not in str(error.value)


def test_a_chief_is_rank_zero_and_workers_follow():
    cluster = '{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:2"]}, "task": {"type": "%s", "index": %d}}'
    assert distributed.tf_config_worker(cluster % ("chief", 0)) == (0, 3)
    assert distributed.tf_config_worker(cluster % ("worker", 1)) == (2, 3)


@pytest.mark.parametrize("environ, message", [
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_COORDINATOR_ADDRESS is set but JAX_NUM_PROCESSES and JAX_PROCESS_ID"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}, "are set but JAX_COORDINATOR_ADDRESS is not"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, r"must be in \[0, "),
])
def test_a_partial_jax_cluster_environment_is_refused(environ, message):
    with pytest.raises(ValueError, match=message):
        distributed.jax_cluster(environ)
    assert distributed.jax_cluster({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
                                    "JAX_PROCESS_ID": "1"}) == ("h:1", 2, 1)


@pytest.mark.skipif("flax" not in installed_backends(), reason="jax/flax not installed")
def test_the_flax_engine_checks_the_cluster_environment_before_jax_waits(monkeypatch):
    from xlmr.flax.distributed import Engine

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS is set but"):
        Engine.from_options()


@pytest.mark.skipif("tf" not in installed_backends(), reason="tensorflow not installed")
def test_multiworker_finetune_without_tf_config_stops_before_any_work(tmp_path, monkeypatch):
    from xlmr.cli.tasks import finetune

    monkeypatch.delenv("TF_CONFIG", raising=False)
    train, validation = distributed_runs.data(str(tmp_path))
    with pytest.raises(ValueError, match="^--strategy multiworker: TF_CONFIG is not set"):
        finetune("masked-lm", "tf", distributed_runs.MODEL, train, validation, str(tmp_path / "out"),
                 strategy="multiworker")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif("pt" not in installed_backends(), reason="torch not installed")
def test_nproc_without_torchrun_or_gloo_is_refused_in_one_line(monkeypatch):
    import torch.distributed as dist

    from xlmr.pt import distributed as engine

    monkeypatch.setattr(dist, "is_gloo_available", lambda: False)
    monkeypatch.setattr(engine.torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="^--nproc 2: this torch build has no gloo backend"):
        engine.launch(2, ["finetune"])
    monkeypatch.setitem(sys.modules, "torch.distributed.launcher.api", None)  # import fails: no torchrun
    with pytest.raises(RuntimeError, match=r"^--nproc 2: torch.distributed.run \(torchrun\) is not available"):
        engine.launch(2, ["finetune"])


@pytest.mark.skipif("tf" not in installed_backends(), reason="tensorflow not installed")
def test_a_tf_worker_other_than_the_chief_keeps_no_checkpoint(tmp_path, monkeypatch):
    """MultiWorkerMirroredStrategy: every worker writes (a collective), the chief into the checkpoint folder,
    the others into a temporary folder they delete; so the folder holds the chief's files only."""
    import tempfile

    from xlmr.tf import XLMRobertaForMaskedLM
    from xlmr.tf.distributed import Engine
    from xlmr.tf.training import make_optimizer
    from xlmr.common.tasks.schedule import TrainingSettings

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = XLMRobertaForMaskedLM(distributed_runs.tiny_config(), seed=0)
    optimizer = make_optimizer(model, TrainingSettings(), 10)
    for rank in (1, 0):
        folder = tmp_path / f"rank{rank}"
        folder.mkdir()
        Engine(rank=rank).save(str(folder), model, optimizer)
        assert bool(os.listdir(folder)) == (rank == 0)
    assert os.listdir(scratch) == []


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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pt", "flax", "tf"])
def test_multiple_choice_split_over_two_replicas_equals_one_device(tmp_path, backend):
    """The pooler and classifier path (choices flattened into rows, one loss unit per question): DDP over 2
    gloo processes, a flax data=2 mesh, a tf 2-replica MirroredStrategy, each 5 updates against one device.
    Every parameter is compared but the classifier's bias, whose exact gradient is 0 here
    (``distributed_runs.NOISE_ONLY``)."""
    if backend not in installed_backends():
        pytest.skip(f"{backend} not installed")
    runs = _backend_runs(backend, tmp_path, "multiple-choice")
    single = runs["single"]["losses"]
    assert len(single) == STEPS and single[0] != single[-1]
    if backend != "pt":
        _assert_same_run(runs["data2" if backend == "flax" else "mirrored2"], single, TOLERANCE_FP32)
        return
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "xlmr", "finetune",
          "multiple-choice", "--backend", "pt", "--model", distributed_runs.MODEL, "--train",
          str(tmp_path / "train.jsonl"), "--validation", str(tmp_path / "validation.jsonl"), "--epochs", "1",
          "--batch-size", "4", "--max-length", "32", "--no-dropout", "--logging-steps", "1", "--learning-rate",
          "1e-4", "--save-steps", "2", "--output", str(tmp_path / "ddp")])
    run = {"losses": distributed_runs.losses(str(tmp_path / "ddp")),
           "max_diff": distributed_runs.max_diff(distributed_runs.weights(str(tmp_path / "single")),
                                                 distributed_runs.weights(str(tmp_path / "ddp")), "multiple-choice")}
    _assert_same_run(run, single, TOLERANCE_FP32)
    # rank 0 alone wrote the checkpoints and the model; no temporary folder is left behind
    assert sorted(os.listdir(tmp_path / "ddp" / "checkpoint-2")) == ["model.pt", "trainer_state.json",
                                                                      "training_state.pt"]
    assert [n for n in os.listdir(tmp_path / "ddp") if n.startswith(".")] == []
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ddp")]


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
