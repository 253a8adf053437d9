"""Run an XLM-R StableHLO export with only JAX and numpy: no xlmr, no Flax. Copied into every export folder.

    python run_stablehlo.py EXPORT_DIR 0,35378,8,2 0,17,2      # token ids per row; prints the outputs' shapes

or from Python, with this file on the path (or copied into your project)::

    from run_stablehlo import load
    run = load("EXPORT_DIR")
    outputs = run(input_ids=ids, attention_mask=mask)   # {"logits": array, ...}

The folder holds ``model.stablehlo`` (``jax.export``'s serialized program, with symbolic batch and sequence
dimensions), ``weights.npz`` (its first argument: {name: array}) and ``export.json`` (input and output names).
The weights are an argument rather than constants in the program: the program stays a few hundred KB whatever
the model's size, serialization never meets flatbuffers' 2 GB limit, and the weights load once for every call.

Example:
    >>> import numpy as np
    >>> from run_stablehlo import load                                       # doctest: +SKIP
    >>> run = load("exported")                                              # doctest: +SKIP
    >>> sorted(run(input_ids=np.array([[0, 5, 2]]), attention_mask=np.array([[1, 1, 1]])))  # doctest: +SKIP
    ['logits']
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PROGRAM, WEIGHTS, MANIFEST = "model.stablehlo", "weights.npz", "export.json"


def load_weights(directory: str) -> dict[str, Any]:
    """{name: array} of ``weights.npz``; numpy stores bfloat16 as raw 2-byte records, which are viewed back."""
    with np.load(os.path.join(directory, WEIGHTS)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return {name: a.view(jnp.bfloat16) if a.dtype == np.dtype("V2") else a for name, a in arrays.items()}


def load(directory: str) -> Callable[..., dict[str, np.ndarray]]:
    """A function taking the export's inputs by name (int arrays) and returning {output name: numpy array}."""
    with open(os.path.join(directory, PROGRAM), "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    names = [t["name"] for t in manifest["inputs"]]
    weights = jax.device_put(load_weights(directory))

    def run(**inputs: Any) -> dict[str, np.ndarray]:
        unknown = sorted(set(inputs) - set(names))
        missing = [n for n in names if n not in inputs and n != "token_type_ids"]
        if unknown or missing:
            raise TypeError(f"inputs are {names}; got unknown {unknown}, missing {missing}")
        ids = np.asarray(inputs["input_ids"])
        if ids.shape[-1] > manifest["max_length"]:  # JAX's own error for the shape constraint does not say which
            raise ValueError(f"input_ids has sequences of {ids.shape[-1]} tokens, over the export's limit of "
                             f"{manifest['max_length']} (max_length in {MANIFEST})")
        tensors = [np.asarray(inputs[n], np.int32) if n in inputs else np.zeros(ids.shape, np.int32) for n in names]
        return {k: np.asarray(v) for k, v in exported.call(weights, *tensors).items()}

    return run


def _main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(os.path.join(argv[0], MANIFEST), encoding="utf-8") as f:
        pad = json.load(f).get("pad_token_id", 1)
    rows = [[int(t) for t in row.split(",")] for row in argv[1:]]
    width = max(map(len, rows))
    ids = np.array([r + [pad] * (width - len(r)) for r in rows])
    mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    for name, value in load(argv[0])(input_ids=ids, attention_mask=mask).items():
        print(name, value.shape, value.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
