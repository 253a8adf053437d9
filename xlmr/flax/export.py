"""StableHLO export of the Flax classes: ``jax.export`` with symbolic batch and sequence dimensions.

The folder gets ``model.stablehlo`` (the serialized ``jax.export.Exported``), ``weights.npz`` (the program's first
argument, {NNX parameter path: array}) and ``run_stablehlo.py``, a loader that needs only JAX and numpy. Weights
are an argument, not constants baked into the program: the program stays small whatever the model's size, never
meets the 2 GB limit of its flatbuffer, and a server loads the weights once. The ``sequence`` dimension is bounded
by the position table (``sequence <= max_sequence_length``), so JAX checks it at call time, and the program is
lowered for CPU, CUDA and TPU where JAX can lower for them.

Example:
    >>> import sys, tempfile, numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaForSequenceClassification
    >>> from xlmr.flax.export import export
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> folder = tempfile.mkdtemp()
    >>> export(XLMRobertaForSequenceClassification(config), folder)
    ['model.stablehlo', 'run_stablehlo.py', 'weights.npz']
    >>> sys.path.insert(0, folder)
    >>> from run_stablehlo import load_weights
    >>> import jax
    >>> exported = jax.export.deserialize(bytearray(open(f"{folder}/model.stablehlo", "rb").read()))
    >>> ids = np.array([[0, 5, 6, 2]], np.int32)
    >>> exported.call(load_weights(folder), ids, np.ones_like(ids))["logits"].shape
    (1, 2)
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlmr.common.export_spec import export_spec

PROGRAM, WEIGHTS, LOADER = "model.stablehlo", "weights.npz", "run_stablehlo.py"
PLATFORMS = ("cpu", "cuda", "tpu")


def _key(path: tuple) -> str:
    return "/".join(map(str, path))


def serving_function(model: nnx.Module) -> tuple[Any, dict[str, np.ndarray]]:
    """``(serve, weights)``: ``serve(weights, *inputs)`` runs the model on the export's inputs (in the spec's order)
    and returns {output name: array}; ``weights`` holds the parameters as numpy, keyed by NNX path."""
    spec = export_spec(model.config, model.architecture, "int32")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: dropout RNG state, a constant here
    flat = dict(nnx.to_flat_state(params))
    paths = {_key(path): path for path in flat}
    weights = {_key(path): np.asarray(variable[...]) for path, variable in flat.items()}
    flags = {"use_cache": False} if model.architecture == "XLMRobertaForCausalLM" else {}

    def serve(weights: dict[str, jax.Array], *tensors: jax.Array) -> dict[str, jax.Array]:
        state = nnx.from_flat_state({paths[k]: v for k, v in weights.items()})
        out = nnx.merge(graphdef, state, rest)(**dict(zip(spec.input_names, tensors)), return_dict=True,
                                               deterministic=True, **flags)
        return {name: out[name] for name in spec.output_names}

    return serve, weights


def export_program(model: nnx.Module, platforms: tuple[str, ...] = PLATFORMS) -> tuple[Any, dict[str, np.ndarray]]:
    """``(exported, weights)``: the ``jax.export.Exported`` program and the weights it takes first."""
    spec = export_spec(model.config, model.architecture, "int32")
    axes = spec.inputs[0].axes
    dims = jax.export.symbolic_shape(", ".join(axes), constraints=[f"sequence <= {spec.max_length}"])
    serve, weights = serving_function(model)
    weight_specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in weights.items()}
    input_specs = [jax.ShapeDtypeStruct(dims, jnp.int32) for _ in spec.inputs]
    exported = jax.export.export(jax.jit(serve), platforms=platforms)(weight_specs, *input_specs)
    return exported, weights


def export(model: nnx.Module, path: str | os.PathLike, *, opset: int | None = None,
           platforms: tuple[str, ...] = PLATFORMS) -> list[str]:
    """Write ``model.stablehlo``, ``weights.npz`` and ``run_stablehlo.py`` into the folder ``path``; returns
    their names. ``opset`` is ONNX's and must be None here."""
    if opset is not None:
        raise ValueError(f"opset={opset} is an ONNX setting; a StableHLO export has none")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    exported, weights = export_program(model, platforms)
    with open(os.path.join(path, PROGRAM), "wb") as f:
        f.write(exported.serialize())
    # numpy has no bfloat16 type: such arrays are stored as raw 2-byte records, which run_stablehlo.py views back.
    np.savez(os.path.join(path, WEIGHTS), **weights)
    shutil.copyfile(os.path.join(os.path.dirname(__file__), LOADER), os.path.join(path, LOADER))
    return sorted([PROGRAM, WEIGHTS, LOADER])
