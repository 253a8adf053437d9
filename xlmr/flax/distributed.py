"""Data-parallel and sharded training in JAX: a ``Mesh`` with a ``data`` and an ``fsdp`` axis, ``NamedSharding``s
for the batch (its rows over both axes), the parameters and the optimizer state (over ``fsdp``), and one
``jax.jit`` with those shardings; Orbax writes and reads the sharded state.

``xlmr.flax.training.train`` calls these hooks; without a mesh they are no-ops. The jitted step computes the
loss of the whole global batch, whatever the mesh, so sharding changes where the arithmetic runs and the order
of a few sums, not the result. Several hosts join with ``jax.distributed.initialize`` from
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; each computes the same global batches.

Example (no mesh: everything on the default device):
    >>> engine = Engine.from_options()
    >>> engine.world, engine.rank, engine.mesh is None
    (1, 0, True)
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from xlmr.common.distributed import check_mesh, format_mesh, jax_cluster

ORBAX_DIR = "state"   # Orbax checkpoint of (parameters, optimizer state, RNG) under checkpoint-STEP/


def _cpu_devices(count: int) -> None:
    """Ask XLA for ``count`` host devices; effective only before JAX starts its CPU backend."""
    flag = f"--xla_force_host_platform_device_count={count}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


class Engine:
    """The mesh a run shards over (None: one device), and this process's index among the hosts."""

    world = 1  # the batch is one global array: no process-level split (xlmr.common.distributed.split_batch)

    def __init__(self, mesh: Any = None):
        import jax

        self.mesh = mesh
        self.rank = jax.process_index()

    @classmethod
    def from_options(cls, mesh: dict[str, int] | None = None, cpu_devices: int | None = None) -> "Engine":
        """The engine of ``xlmr finetune --backend flax [--mesh data=N,fsdp=M] [--cpu-devices N]``."""
        if cpu_devices:
            _cpu_devices(cpu_devices)
        cluster = jax_cluster(dict(os.environ))  # checked before JAX starts or waits for a coordinator
        import jax

        if cluster is not None and not jax.distributed.is_initialized():
            jax.distributed.initialize(*cluster)
        if mesh is None or int(np.prod(list(mesh.values()))) == 1:
            return cls(None)
        check_mesh(mesh, jax.device_count(), jax.default_backend())
        from jax.sharding import Mesh

        devices = np.asarray(jax.devices()).reshape(mesh["data"], mesh["fsdp"])
        return cls(Mesh(devices, ("data", "fsdp")))

    def scope(self):
        return contextlib.nullcontext()  # flax builds models anywhere (tf: inside the strategy's scope)

    def __repr__(self) -> str:
        return f"Engine(mesh={format_mesh(dict(self.mesh.shape)) if self.mesh is not None else None})"

    # -------------------------------------------------------------------------------------------- shardings
    def _spec(self, leaf) -> Any:
        """Parameters and optimizer moments: the first axis that splits evenly over ``fsdp``, else replicated."""
        from jax.sharding import NamedSharding, PartitionSpec

        fsdp = self.mesh.shape["fsdp"]
        shape = getattr(leaf, "shape", ())
        axis = next((i for i, n in enumerate(shape) if fsdp > 1 and n % fsdp == 0 and n >= fsdp), None)
        spec = [None] * len(shape)
        if axis is not None:
            spec[axis] = "fsdp"
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def state_shardings(self, state) -> Any:
        import jax

        return jax.tree.map(self._spec, state) if self.mesh is not None else None

    def batch_sharding(self, batches) -> Any:
        """Rows over (data, fsdp) when every micro-batch splits evenly; else replicated (a short last batch)."""
        from jax.sharding import NamedSharding, PartitionSpec

        if self.mesh is None:
            return None
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        rows = [len(b["input_ids"]) for b in batches]
        if all(r % shards == 0 for r in rows):
            return NamedSharding(self.mesh, PartitionSpec(("data", "fsdp")))
        return NamedSharding(self.mesh, PartitionSpec())

    def replicated(self) -> Any:
        from jax.sharding import NamedSharding, PartitionSpec

        return NamedSharding(self.mesh, PartitionSpec()) if self.mesh is not None else None

    def put(self, tree, sharding) -> Any:
        import jax

        return jax.device_put(tree, sharding) if sharding is not None else tree

    # -------------------------------------------------------------------------------------------- checkpoints
    def save(self, folder: str, state) -> None:
        """The (model, optimizer) state, sharded or not, with Orbax (every process takes part)."""
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(os.path.join(os.path.abspath(folder), ORBAX_DIR), _savable(state))
            checkpointer.wait_until_finished()

    def load(self, folder: str, state) -> Any:
        """``state`` with the saved values, each array in its current sharding."""
        import jax
        import orbax.checkpoint as ocp

        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(os.path.join(os.path.abspath(folder), ORBAX_DIR), target)
        return _restored(state, restored)

    def close(self) -> None:
        pass


def _savable(state):
    """PRNG key arrays as their raw uint32 data (Orbax stores plain arrays)."""
    import jax

    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _restored(template, restored):
    import jax

    return jax.tree.map(lambda t, r: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t)) if _is_key(t) else r,
                        template, restored)


def _is_key(x) -> bool:
    import jax

    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
