"""The framework-free half of data-parallel training: who gets which rows, what each row's loss weighs, where
checkpoints live, and the checks that refuse a bad plan before any work starts.

Every backend's engine (``xlmr/{pt,tf,flax}/distributed.py``) splits the SAME global batch (the shared
permutation of ``xlmr.common.tasks.batches``, collated once, so every piece has the same padded width) with
``split_batch`` and weighs each piece's mean loss by ``weight = units(piece) / units(global batch)``. A
"unit" is what the model's loss averages over: a labelled token for token-level tasks, an example otherwise.
The weighted sum of the pieces' mean losses is then exactly the global batch's mean loss, whatever the number
of valid tokens on each replica or micro-batch, so gradients and updates equal one device's (to fp32 rounding).

Example:
    >>> import numpy as np
    >>> batch = {"input_ids": np.ones((4, 3), np.int64),
    ...          "labels": np.array([[1, -100, -100], [1, 1, 1], [1, 1, -100], [1, -100, -100]])}
    >>> pieces = split_batch(batch, "token-classification", rank=0, world=2, accumulation=1)
    >>> [(p["labels"].shape[0], round(w, 4)) for p, w in pieces]   # rows 0 and 2: 3 of 7 labelled tokens
    [(2, 0.4286)]
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any, Callable

import numpy as np

from xlmr.common.constants import IGNORE_INDEX
from xlmr.common.io import atomic_write_text

TOKEN_LEVEL = ("token-classification", "masked-lm", "causal-lm")
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
MESH_AXES = ("data", "fsdp")


# ------------------------------------------------------------------------------------------------ the plan
@dataclasses.dataclass
class Plan:
    """How one run is spread out: ``world`` data-parallel replicas (processes or devices), this process's
    ``rank``, ``accumulation`` micro-batches per update, and checkpointing.

    >>> Plan(world=2, accumulation=2).micro_batch_size(8)
    2
    """

    world: int = 1
    rank: int = 0
    accumulation: int = 1
    save_steps: int = 0
    output: str | None = None
    template: "TrainerState | None" = None   # the run's identity, written into every checkpoint
    resume: "TrainerState | None" = None
    resume_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("world", "accumulation"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                flag = "--gradient-accumulation-steps" if name == "accumulation" else "world size"
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")
        if not isinstance(self.save_steps, int) or self.save_steps < 0:
            raise ValueError(f"--save-steps must be a non-negative integer, got {self.save_steps!r}")

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def start_step(self) -> int:
        return self.resume.step if self.resume is not None else 0

    def should_save(self, step: int, total_steps: int) -> bool:
        """Every ``save_steps`` updates, except the last (the final model is written anyway)."""
        return bool(self.save_steps) and step % self.save_steps == 0 and step < total_steps

    def save(self, step: int, steps_per_epoch: int, write: Callable[[str], None],
             barrier: Callable[[], None] = lambda: None) -> str:
        """Write ``output/checkpoint-STEP``: ``write(folder)`` puts the framework's state in (on every rank
        that takes part), then this rank 0 adds ``trainer_state.json`` and renames the hidden temporary folder
        into place, so a run killed mid-save leaves the previous checkpoints as they were."""
        final = checkpoint_path(self.output, step)
        tmp = os.path.join(self.output, f".{CHECKPOINT_PREFIX}{step}.partial")
        if self.is_writer:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        barrier()
        write(tmp)
        barrier()
        if self.is_writer:
            epoch, batch = position(step, steps_per_epoch)
            dataclasses.replace(self.template, step=step, epoch=epoch, batch=batch, world=self.world).save(tmp)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
        barrier()
        return final

    def micro_batch_size(self, batch_size: int) -> int:
        """Rows per replica and micro-batch; the global ``batch_size`` must split evenly."""
        return micro_batch_size(batch_size, self.world, self.accumulation)


def micro_batch_size(batch_size: int, world: int, accumulation: int = 1) -> int:
    """``batch_size / (world * accumulation)``, or a one-line error when it does not divide.

    >>> micro_batch_size(16, 2, 4)
    2
    """
    if batch_size % (world * accumulation):
        raise ValueError(f"--batch-size {batch_size} (the global batch per update) is not divisible by the world "
                         f"size {world} x --gradient-accumulation-steps {accumulation} = {world * accumulation}")
    return batch_size // (world * accumulation)


# ------------------------------------------------------------------------------------------------ splitting
def loss_units(batch: dict[str, np.ndarray], task: str) -> int:
    """How many terms the model's mean loss averages over in ``batch``: labelled tokens for token-level tasks
    (causal-LM labels are shifted by one inside the model, so the first column never counts), rows otherwise.

    >>> loss_units({"labels": np.array([[5, 6, -100]])}, "causal-lm"), loss_units({"labels": np.ones(3)}, "x")
    (1, 3)
    """
    labels = batch["labels"] if "labels" in batch else batch.get("start_positions")
    if task in TOKEN_LEVEL:
        if task == "causal-lm":
            labels = labels[:, 1:]
        return int((labels != IGNORE_INDEX).sum())
    return int(len(labels))


def _rows(batch: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in batch.items()}


def split_batch(batch: dict[str, np.ndarray], task: str, rank: int, world: int, accumulation: int
                ) -> list[tuple[dict[str, np.ndarray], float]]:
    """This rank's ``accumulation`` micro-batches of the global ``batch``, each with its loss weight.

    Rank ``r`` takes rows ``r, r + world, ...`` (torch's DistributedSampler's rule, applied to each global batch
    of the shared order), then cuts them into ``accumulation`` consecutive micro-batches. A piece that would
    carry no loss term (an empty share of a short last batch, or a masked-LM micro-batch without a masked
    token) is given one row that does carry one and weight 0: every replica still runs the same collective
    operations, the row adds nothing to the update, and no mean over zero terms (NaN) is ever taken.
    """
    total = loss_units(batch, task)
    rows = np.arange(len(batch["input_ids"]))[rank::world]
    pieces = []
    filler = None
    for part in np.array_split(rows, accumulation):
        piece = _rows(batch, part)
        units = loss_units(piece, task) if len(part) else 0
        if units == 0:
            if filler is None:
                filler = next((i for i in range(len(batch["input_ids"]))
                               if loss_units(_rows(batch, np.array([i])), task) > 0), 0)
            pieces.append((_rows(batch, np.array([filler])), 0.0))
        else:
            pieces.append((piece, units / total))
    return pieces


# ------------------------------------------------------------------------------------------------ mesh
def parse_mesh(text: str) -> dict[str, int]:
    """``"data=2,fsdp=2"`` -> ``{"data": 2, "fsdp": 2}`` (missing axes are 1).

    >>> parse_mesh("data=2")
    {'data': 2, 'fsdp': 1}
    """
    mesh = {axis: 1 for axis in MESH_AXES}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\w+)=(\d+)", part)
        if not match or match.group(1) not in MESH_AXES:
            raise ValueError(f"--mesh {text!r}: expected AXIS=SIZE[,AXIS=SIZE] with axes {', '.join(MESH_AXES)}, "
                             f"got {part!r}")
        if int(match.group(2)) < 1:
            raise ValueError(f"--mesh {text!r}: axis {match.group(1)} must be at least 1")
        mesh[match.group(1)] = int(match.group(2))
    return mesh


def check_mesh(mesh: dict[str, int], device_count: int, platform: str = "cpu") -> None:
    """A mesh needs exactly as many devices as the product of its axes; fewer is an error."""
    size = int(np.prod(list(mesh.values())))
    if size > device_count:
        raise ValueError(f"--mesh {format_mesh(mesh)} needs {size} devices but only {device_count} {platform} "
                         "device(s) are visible (on CPU set XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{size} before starting)")
    if size < device_count and size != 1:
        raise ValueError(f"--mesh {format_mesh(mesh)} uses {size} of the {device_count} visible devices; "
                         "give a mesh over all of them")


def format_mesh(mesh: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in mesh.items())


# ------------------------------------------------------------------------------------------------ checkpoints
def checkpoint_path(output: str, step: int) -> str:
    """``output/checkpoint-STEP`` (HF Trainer's name).

    >>> checkpoint_path("runs/x", 20)
    'runs/x/checkpoint-20'
    """
    return os.path.join(output, f"{CHECKPOINT_PREFIX}{step}")


def latest_checkpoint(output: str) -> str | None:
    """The complete checkpoint with the highest step under ``output``, or None. Half-written ones live under
    hidden temporary names until their final rename, so they are never picked."""
    if not os.path.isdir(output):
        return None
    steps = []
    for name in os.listdir(output):
        match = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", name)
        if match and os.path.isfile(os.path.join(output, name, STATE_FILE)):
            steps.append(int(match.group(1)))
    return checkpoint_path(output, max(steps)) if steps else None


def resolve_resume(resume_from: str | None, output: str) -> str | None:
    """The checkpoint folder ``--resume-from`` names: a path, or ``auto`` for the latest under ``output``
    (none yet: a fresh start)."""
    if resume_from is None:
        return None
    if resume_from == "auto":
        return latest_checkpoint(output)
    if not os.path.isfile(os.path.join(resume_from, STATE_FILE)):
        raise FileNotFoundError(f"--resume-from {resume_from}: not a checkpoint folder (no {STATE_FILE})")
    return resume_from


@dataclasses.dataclass
class TrainerState:
    """What a checkpoint records besides the framework's own state: the update count, the run it belongs to
    (task, backend, architecture, parameter shapes) and the data position (``epoch``, ``batch`` within it).

    >>> s = TrainerState(step=5, epoch=1, batch=2, task="text-classification", backend="pt",
    ...                  architecture="XLMRobertaForSequenceClassification", shapes={"w": [2, 3]})
    >>> TrainerState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    True
    """

    step: int
    epoch: int
    batch: int
    task: str
    backend: str
    architecture: str
    shapes: dict[str, list[int]]
    total_steps: int = 0
    world: int = 1
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainerState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str) -> None:
        atomic_write_text(os.path.join(folder, STATE_FILE), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, folder: str) -> "TrainerState":
        with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def check_matches(self, folder: str, task: str, backend: str, architecture: str,
                      shapes: dict[str, list[int]], total_steps: int) -> None:
        """Refuse to resume a checkpoint written by another task, backend, model shape or schedule."""
        for name, mine, theirs in (("task", task, self.task), ("backend", backend, self.backend),
                                   ("architecture", architecture, self.architecture),
                                   ("total steps", total_steps, self.total_steps)):
            if mine != theirs:
                raise ValueError(f"--resume-from {folder}: written for {name} {theirs!r}, this run has {mine!r}")
        for name in sorted(set(shapes) | set(self.shapes)):
            if list(shapes.get(name, [])) != list(self.shapes.get(name, [])):
                raise ValueError(f"--resume-from {folder}: parameter {name} has shape {self.shapes.get(name)} "
                                 f"there and {shapes.get(name)} in this model")


def position(step: int, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, batch index within it) of the batch after ``step`` updates.

    >>> position(7, 3)
    (2, 1)
    """
    return divmod(step, steps_per_epoch)


def keep_checkpoints(output: str, folder: str) -> None:
    """Hard-link ``output``'s checkpoints into ``folder``, the new ``output`` about to replace it, so that
    publishing the final model keeps them (a link costs no copy; the old folder is removed only after the
    rename)."""
    if not os.path.isdir(output):
        return
    for name in os.listdir(output):
        if re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"\d+", name):
            shutil.copytree(os.path.join(output, name), os.path.join(folder, name), copy_function=os.link)


# ------------------------------------------------------------------------------------------------ cluster settings
JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def tf_config_worker(text: str | None) -> tuple[int, int]:
    """(this worker's index, number of workers) from ``TF_CONFIG``, or a one-line error naming what is wrong,
    before TensorFlow waits for a cluster that cannot form.

    >>> tf_config_worker('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    (1, 2)
    >>> tf_config_worker('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    Traceback (most recent call last):
    ValueError: --strategy multiworker: TF_CONFIG task index 3 is outside the 1 worker(s) of cluster.worker
    """
    prefix = "--strategy multiworker: TF_CONFIG"
    if not text:
        raise ValueError(f"{prefix} is not set; it must name the cluster and this task, e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{prefix} is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{prefix} must be a JSON object, got {type(config).__name__}")
    workers = (config.get("cluster") or {}).get("worker") if isinstance(config.get("cluster"), dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ValueError(f"{prefix} cluster.worker must be a non-empty list of \"host:port\" strings, got {workers!r}")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief"):
        raise ValueError(f"{prefix} task must be {{\"type\": \"worker\", \"index\": N}}, got {task!r}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError(f"{prefix} task index must be an integer, got {index!r}")
    chiefs = len((config.get("cluster") or {}).get("chief") or [])
    count = len(workers) if task["type"] == "worker" else chiefs
    if not 0 <= index < count:
        raise ValueError(f"{prefix} task index {index} is outside the {count} {task['type']}(s) of "
                         f"cluster.{task['type']}")
    return (index + chiefs if task["type"] == "worker" else index), len(workers) + chiefs


def jax_cluster(environ: dict[str, str]) -> tuple[str, int, int] | None:
    """(coordinator address, number of processes, this process's id) for ``jax.distributed.initialize``
    when all of ``JAX_ENV`` are set, None when none is, and a one-line error for a partial or bad set.

    >>> jax_cluster({}) is None
    True
    >>> jax_cluster({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES are set but JAX_PROCESS_ID is not: ...
    """
    given = [name for name in JAX_ENV if environ.get(name)]
    if not given:
        return None
    if len(given) < len(JAX_ENV):
        missing = [name for name in JAX_ENV if name not in given]
        raise ValueError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                         f"jax.distributed.initialize needs all of {', '.join(JAX_ENV)} (or none)")
    numbers = {}
    for name in JAX_ENV[1:]:
        try:
            numbers[name] = int(environ[name])
        except ValueError:
            raise ValueError(f"{name}={environ[name]!r} is not an integer") from None
    if numbers["JAX_NUM_PROCESSES"] < 1 or not 0 <= numbers["JAX_PROCESS_ID"] < numbers["JAX_NUM_PROCESSES"]:
        raise ValueError(f"JAX_PROCESS_ID={numbers['JAX_PROCESS_ID']} must be in [0, JAX_NUM_PROCESSES="
                         f"{numbers['JAX_NUM_PROCESSES']})")
    return environ["JAX_COORDINATOR_ADDRESS"], numbers["JAX_NUM_PROCESSES"], numbers["JAX_PROCESS_ID"]


# ------------------------------------------------------------------------------------------------ precision
def check_bf16(supported: bool, device: str) -> None:
    """``--bf16`` on a device that cannot compute in bfloat16 is refused before any work.

    >>> check_bf16(True, "cpu")
    >>> check_bf16(False, "cuda:0 (compute capability 7.5)")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --bf16: device cuda:0 (compute capability 7.5) has no bfloat16 support (...); drop --bf16
    """
    if not supported:
        raise ValueError(f"--bf16: device {device} has no bfloat16 support (needs a CPU, a TPU or a GPU of compute "
                         "capability 8.0 or more); drop --bf16")


# ------------------------------------------------------------------------------------------------ options
ENGINE_FLAGS = {"pt": ("fsdp",), "flax": ("mesh", "cpu_devices"), "tf": ("strategy", "cpu_devices")}
STRATEGIES = ("mirrored", "multiworker")


def check_options(backend: str, **options: Any) -> dict[str, Any]:
    """The engine options ``backend`` understands (flag -> value), refusing those of another engine.

    >>> check_options("flax", mesh="data=2", fsdp=False, strategy=None, cpu_devices=None)
    {'mesh': {'data': 2, 'fsdp': 1}}
    """
    given = {k: v for k, v in options.items() if v not in (None, False)}
    for name in given:
        if name not in ENGINE_FLAGS[backend]:
            owners = [b for b, flags in ENGINE_FLAGS.items() if name in flags]
            raise ValueError(f"--{name.replace('_', '-')} is for --backend {' or '.join(owners)}, not {backend}"
                             + (" (flax shards parameters with --mesh data=N,fsdp=M)" if name == "fsdp" else ""))
    if "mesh" in given:
        given["mesh"] = parse_mesh(given["mesh"])
    if "strategy" in given and given["strategy"] not in STRATEGIES:
        raise ValueError(f"--strategy {given['strategy']!r}: choose from {', '.join(STRATEGIES)}")
    if "cpu_devices" in given and (not isinstance(given["cpu_devices"], int) or given["cpu_devices"] < 1):
        raise ValueError(f"--cpu-devices must be a positive integer, got {given['cpu_devices']!r}")
    return given
