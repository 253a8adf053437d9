"""Data-parallel and sharded training in PyTorch on ``torch.distributed``: DDP by default, FSDP2 (``fully_shard``)
with ``fsdp=True``, gloo on CPU and nccl on GPU, processes started by ``torchrun`` (or ``launch``, its API).

``xlmr.pt.training.train`` calls these hooks; with one process they are no-ops, so the same loop serves one
device and many. DDP and FSDP average gradients over the world, so each replica's loss is multiplied by the
world size on top of its weight from ``xlmr.common.distributed.split_batch``.

Example (one process: nothing to wrap):
    >>> import torch
    >>> engine = Engine.from_environment()
    >>> engine.world, engine.rank, engine.wrap(torch.nn.Linear(2, 2)).__class__.__name__
    (1, 0, 'Linear')
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

FRAMEWORK_FILE = "training_state.pt"   # optimizer, scheduler and RNG (model weights beside it)
MODEL_FILE = "model.pt"
SHARDED_DIR = "dcp"                    # torch.distributed.checkpoint folder under FSDP


def _engine_backend() -> str:
    if torch.cuda.is_available():
        if not dist.is_nccl_available():
            raise RuntimeError("torch.distributed: this torch build has no nccl backend for GPU training")
        return "nccl"
    if not dist.is_gloo_available():
        raise RuntimeError("torch.distributed: this torch build has no gloo backend, needed for CPU training")
    return "gloo"


class Engine:
    """One process's view of the run: world size, rank, and whether parameters are sharded (FSDP)."""

    def __init__(self, world: int = 1, rank: int = 0, fsdp: bool = False):
        self.world, self.rank, self.fsdp = world, rank, fsdp

    @classmethod
    def from_environment(cls, fsdp: bool = False) -> "Engine":
        """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            if not dist.is_available():
                raise RuntimeError("torch.distributed is not available in this torch build")
            if not dist.is_initialized():
                backend = _engine_backend()
                if backend == "nccl":
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                dist.init_process_group(backend)
            return cls(dist.get_world_size(), dist.get_rank(), fsdp)
        return cls(1, 0, fsdp)

    @classmethod
    def from_options(cls, fsdp: bool = False) -> "Engine":
        """The engine ``xlmr finetune --backend pt [--fsdp]`` runs on (its flags, checked by
        ``xlmr.common.distributed.check_options``)."""
        return cls.from_environment(fsdp=fsdp)

    def scope(self):
        return contextlib.nullcontext()  # torch builds models anywhere (tf: inside the strategy's scope)

    @property
    def distributed(self) -> bool:
        return self.world > 1 or self.fsdp and dist.is_initialized()

    # -------------------------------------------------------------------------------------------- model
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP, or FSDP2 with one unit per encoder layer and the rest at the root (torch's recommended layout)."""
        if not self.distributed:
            return model
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            from xlmr.pt.layers import Layer

            for module in model.modules():
                if isinstance(module, Layer):
                    fully_shard(module)
            fully_shard(model)
            return model
        return torch.nn.parallel.DistributedDataParallel(model)

    def loss_scale(self) -> float:
        return float(self.world)  # DDP and FSDP average gradients over the world

    def sum(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def unwrap(self, wrapped: torch.nn.Module, original: torch.nn.Module) -> torch.nn.Module:
        """A plain (unsharded) model with the trained weights on rank 0, the one that validates and writes
        (the full state is gathered there only)."""
        if not self.distributed or not self.fsdp:
            return original
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                      broadcast_from_rank0=False))
        if self.rank != 0:
            return original
        plain = type(original)(original.config, seed=0)
        names = dict(plain.named_parameters())
        plain.load_canonical_state({n: full[n].float().numpy() for n in names})
        return plain.train(original.training)

    # -------------------------------------------------------------------------------------------- checkpoints
    def save(self, folder: str, model: torch.nn.Module, optimizer, scheduler) -> None:
        """Model and optimizer (torch.save on rank 0; torch.distributed.checkpoint from every rank under FSDP),
        scheduler and RNG state, into ``folder`` (which every rank sees)."""
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
        if self.fsdp and self.distributed:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_state_dict

            model_state, optimizer_state = get_state_dict(model, optimizer)
            dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=os.path.join(folder, SHARDED_DIR))
            if self.rank == 0:
                torch.save({"scheduler": scheduler.state_dict(), "rng": rng}, os.path.join(folder, FRAMEWORK_FILE))
            return
        if self.rank == 0:
            inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
            torch.save(inner.state_dict(), os.path.join(folder, MODEL_FILE))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                       os.path.join(folder, FRAMEWORK_FILE))

    def load(self, folder: str, model: torch.nn.Module, optimizer, scheduler) -> None:
        saved = torch.load(os.path.join(folder, FRAMEWORK_FILE), weights_only=False)
        if os.path.isdir(os.path.join(folder, SHARDED_DIR)) != (self.fsdp and self.distributed):
            raise ValueError(f"--resume-from {folder}: written {'with' if not self.fsdp else 'without'} --fsdp "
                             f"sharding, this run is {'sharded' if self.fsdp else 'not sharded'}")
        if self.fsdp and self.distributed:
            import torch.distributed.checkpoint as dcp
            from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

            model_state, optimizer_state = get_state_dict(model, optimizer)
            state = {"model": model_state, "optimizer": optimizer_state}
            dcp.load(state, checkpoint_id=os.path.join(folder, SHARDED_DIR))
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        else:
            inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
            inner.load_state_dict(torch.load(os.path.join(folder, MODEL_FILE), weights_only=True))
            optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"]["torch"])
        np.random.set_state(saved["rng"]["numpy"])

    def close(self) -> None:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m xlmr ARGV`` in ``nproc`` processes through torchrun's API (``--nproc N``)."""
    try:
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    except ImportError as error:  # a torch without the elastic launcher
        raise RuntimeError(f"--nproc {nproc}: torch.distributed.run (torchrun) is not available: {error}") from None
    try:
        _engine_backend()
    except RuntimeError as error:
        raise RuntimeError(f"--nproc {nproc}: {str(error).removeprefix('torch.distributed: ')}") from None
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=f"xlmr-{os.getpid()}", max_restarts=0,
                          monitor_interval=0.1)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        elastic_launch(config, sys.executable)("-m", "xlmr", *argv)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        raise RuntimeError(f"--nproc {nproc}: rank {rank} failed with exit code {failure.exitcode} "
                           "(its error is printed above)") from None
    return 0
