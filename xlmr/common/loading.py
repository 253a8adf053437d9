"""Matching a checkpoint's tensors to a class's parameters: one policy for every backend.

``resolve_weights`` takes the canonical tensors a reader returned and gives back exactly the tensors the class
needs, or raises an error naming every problem at once:

* ``roberta.`` prefixes are added or stripped so that base-model and head checkpoints load into any class;
* aliases and buffers HF writes (``lm_head.decoder.bias``, tied ``lm_head.decoder.weight``,
  ``embeddings.position_ids``) are folded away;
* a missing encoder weight is an error, never a random initialisation;
* a missing head (or pooler) is initialised as HF does, from a seed, with a warning naming each tensor;
* a tensor of the wrong shape or a non-float dtype is an error naming the tensor, the shapes and the file;
* a weight holding NaN or inf (in the file, or after the cast to ``dtype``) warns, naming it and the first index.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from typing import Any, Mapping

import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.init import initial_weights
from xlmr.common.checkpoint import find_checkpoint, nonfinite, read_checkpoint
from xlmr.common.weights import is_head_weight, normalise_names, parameter_shapes

logger = logging.getLogger("xlmr")



class WeightsError(ValueError):
    """A checkpoint's tensors do not fit the class; the message lists every offending tensor."""


@dataclasses.dataclass
class LoadReport:
    initialized: list[str]   # head weights the checkpoint lacked, initialised from the seed
    unexpected: list[str]    # checkpoint tensors the class does not use
    mismatched: list[str]    # head weights of another shape, re-initialised (only with ignore_mismatched_sizes)


def resolve_weights(
    state: Mapping[str, Any],
    config: XLMRobertaConfig,
    architecture: str,
    *,
    source: str = "checkpoint",
    seed: int = 0,
    ignore_mismatched_sizes: bool = False,
    dtype: Any = np.float32,
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """The tensors ``architecture`` needs, as numpy arrays of ``dtype``, taken from ``state`` (canonical names).

    ``source`` names the file in messages. Raises WeightsError listing all missing encoder weights, all
    mis-shaped tensors and all non-float tensors together.
    """
    expected = parameter_shapes(config, architecture)
    state = normalise_names(state, architecture)
    if config.tie_word_embeddings:
        state.pop("lm_head.decoder.weight", None)

    missing = [n for n in expected if n not in state]
    fatal_missing = [n for n in missing if not is_head_weight(n, architecture)]
    problems = [f"missing encoder weight {n} (shape {expected[n]})" for n in fatal_missing]
    mismatched: list[str] = []
    weights: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        if name not in state:
            continue
        array = state[name]
        got = tuple(np.shape(array))
        if got != tuple(shape):
            if ignore_mismatched_sizes and is_head_weight(name, architecture):
                mismatched.append(name)
                continue
            problems.append(f"tensor {name} has shape {got}, the config gives {tuple(shape)}")
            continue
        kind = np.dtype(getattr(array, "dtype", np.float32))
        if not (np.issubdtype(kind, np.floating) or kind.name == "bfloat16"):
            problems.append(f"tensor {name} has dtype {kind}, expected a floating-point type")
            continue
        weights[name] = np.asarray(array).astype(dtype, copy=False)
    if problems:
        head = f"{source}: {len(problems)} problem(s) loading {architecture}:\n  "
        raise WeightsError(head + "\n  ".join(problems))

    bad = [(n, found) for n, array in weights.items() if (found := nonfinite(array))]
    if bad:  # a model that computes NaN from its first layer on: say which weight, not what it later computes
        listed = "; ".join(f"{n}: {count} value(s), first at index {index}" for n, (count, index) in bad[:5])
        more = f"; and {len(bad) - 5} more tensor(s)" if len(bad) > 5 else ""
        warnings.warn(f"{source}: {len(bad)} weight(s) hold NaN or inf as {np.dtype(dtype).name}: {listed}{more}; "
                      "every output computed from them will be NaN", stacklevel=3)
    to_init = [n for n in expected if n not in weights]
    weights.update(initial_weights({n: expected[n] for n in to_init}, config, seed))
    weights = {n: weights[n].astype(dtype, copy=False) for n in expected}
    report = LoadReport(initialized=[n for n in to_init if n not in mismatched],
                        unexpected=sorted(set(state) - set(expected)), mismatched=mismatched)
    if report.initialized or report.mismatched:
        names = ", ".join(report.initialized + report.mismatched)
        warnings.warn(f"{architecture} from {source}: newly initialised (train before use): {names}", stacklevel=3)
    if report.unexpected:
        logger.info("%s from %s: unused checkpoint tensors: %s", architecture, source, ", ".join(report.unexpected))
    return weights, report


def load_pretrained(
    path: str | os.PathLike,
    architecture: str,
    config: XLMRobertaConfig | None = None,
    config_overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[XLMRobertaConfig, dict[str, np.ndarray], LoadReport]:
    """Read config and weights from a checkpoint folder (any of the four formats) for ``architecture``.

    Backends call this in ``from_pretrained`` and then copy the arrays into their parameters through the
    weight-name table. ``config`` replaces the folder's config.json; ``config_overrides`` (``num_labels=3``)
    change fields of whichever is used. Other keyword arguments go to ``resolve_weights``.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    overrides = config_overrides or {}
    if config is None:
        config = XLMRobertaConfig.from_pretrained(path, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    fmt, files = find_checkpoint(path)
    state = read_checkpoint(path)
    source = files[0] if len(files) == 1 else f"{path} ({fmt}, {len(files)} shards)"
    weights, report = resolve_weights(state, config, architecture, source=source, **kwargs)
    return config, weights, report
