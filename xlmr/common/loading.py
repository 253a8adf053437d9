"""Matching a checkpoint's tensors to a class's parameters, and the model contract every backend fulfils.

``PreTrainedModel`` holds what the three backends' ``XLMRobertaPreTrainedModel`` share, written once:
``from_pretrained``, ``save_pretrained``, ``num_parameters`` and ``parameter_shapes``. A backend supplies two
hooks, ``canonical_state()`` ("give me the canonical state": {HF name: numpy array}) and
``load_canonical_state(weights)`` ("take this canonical state"), plus its constructor, which initialises the
weights unless called inside ``without_initialisation()``.

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

import contextlib
import contextvars
import dataclasses
import logging
import os
import warnings
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.hub import pop_hub_options, resolve, user_stacklevel
from xlmr.common.init import initial_weights
from xlmr.common.quantization import check_mode, refuse_saving
from xlmr.common.checkpoint import find_checkpoint, nonfinite, read_checkpoint, save_pretrained
from xlmr.common.weights import WeightsError, check_state, is_head_weight, normalise_names, parameter_shapes

logger = logging.getLogger("xlmr")

__all__ = ["WeightsError", "LoadReport", "resolve_weights", "load_pretrained", "PreTrainedModel",
           "CheckpointWeights", "without_initialisation", "initialising"]


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

    ``source`` names the file in messages. Raises WeightsError (``xlmr.common.weights.check_state``) listing
    all missing encoder weights, all mis-shaped tensors and all non-float tensors together.
    """
    expected = parameter_shapes(config, architecture)
    state = normalise_names(state, architecture)
    if config.tie_word_embeddings:
        state.pop("lm_head.decoder.weight", None)

    distances = [n for n in expected if n.endswith("distance_embedding.weight") and n not in state]
    if distances and os.path.basename(source).startswith("tf_model"):
        raise WeightsError(f"{source} ({architecture}): no distance_embedding weights, though config.json says "
                           f"position_embedding_type={config.position_embedding_type!r}: HF's TF classes ignore "
                           "relative positions and never save these weights, so this file cannot hold the model; "
                           "convert the PyTorch or safetensors checkpoint instead (xlmr convert SRC DST --to tf)")
    heads = [n for n in expected if is_head_weight(n, architecture)]
    mismatched: list[str] = []
    if ignore_mismatched_sizes:  # a head of another shape (num_labels changed) is re-initialised, not an error
        mismatched = [n for n in heads if n in state and tuple(np.shape(state[n])) != tuple(expected[n])]
    check_state(expected, {n: v for n, v in state.items() if n not in mismatched}, f"{source} ({architecture})",
                optional=heads, strict=False)
    weights = {n: np.asarray(state[n]).astype(dtype, copy=False)
               for n in expected if n in state and n not in mismatched}

    bad = [(n, found) for n, array in weights.items() if (found := nonfinite(array))]
    if bad:  # a model that computes NaN from its first layer on: say which weight, not what it later computes
        listed = "; ".join(f"{n}: {count} value(s), first at index {index}" for n, (count, index) in bad[:5])
        more = f"; and {len(bad) - 5} more tensor(s)" if len(bad) > 5 else ""
        warnings.warn(f"{source}: {len(bad)} weight(s) hold NaN or inf as {np.dtype(dtype).name}: {listed}{more}; "
                      "every output computed from them will be NaN", stacklevel=user_stacklevel())
    to_init = [n for n in expected if n not in weights]
    weights.update(initial_weights({n: expected[n] for n in to_init}, config, seed))
    weights = {n: weights[n].astype(dtype, copy=False) for n in expected}
    report = LoadReport(initialized=[n for n in to_init if n not in mismatched],
                        unexpected=sorted(set(state) - set(expected)), mismatched=mismatched)
    if report.initialized or report.mismatched:
        names = ", ".join(report.initialized + report.mismatched)
        warnings.warn(f"{architecture} from {source}: newly initialised (train before use): {names}",
                      stacklevel=user_stacklevel())
    if report.unexpected:
        logger.info("%s from %s: unused checkpoint tensors: %s", architecture, source, ", ".join(report.unexpected))
    return weights, report


def load_pretrained(
    path: str | os.PathLike,
    architecture: str,
    config: XLMRobertaConfig | None = None,
    config_overrides: dict[str, Any] | None = None,
    format: str | None = None,
    hub: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[XLMRobertaConfig, dict[str, np.ndarray], LoadReport]:
    """Read config and weights from a checkpoint folder (any of the four formats) for ``architecture``.

    Backends call this in ``from_pretrained`` and then copy the arrays into their parameters through the
    weight-name table. ``config`` replaces the folder's config.json; ``config_overrides`` (``num_labels=3``)
    change fields of whichever is used. ``path`` may be a folder, ``"xlmr-default"`` or a Hub id (``hub``: revision,
    cache_dir, token, local_files_only; see ``xlmr.common.hub``); ``format`` (safetensors, pt, tf, flax) picks one
    of several weight files in a folder. Other keyword arguments go to ``resolve_weights``.
    """
    path = resolve(path, format=format, **(hub or {}))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    overrides = config_overrides or {}
    if config is None:
        config = XLMRobertaConfig.from_pretrained(path, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    fmt, files = find_checkpoint(path, format)
    state = read_checkpoint(path, format)
    source = files[0] if len(files) == 1 else f"{path} ({fmt}, {len(files)} shards)"
    weights, report = resolve_weights(state, config, architecture, source=source, **kwargs)
    return config, weights, report


# ------------------------------------------------------------------------------------------------ the contract
_SKIP_INITIALISATION = contextvars.ContextVar("xlmr_skip_initialisation", default=False)


@contextlib.contextmanager
def without_initialisation() -> Iterator[None]:
    """Models constructed inside get no initial weights: ``from_pretrained`` assigns a checkpoint's instead, and
    a task class assigns its nested encoder's together with its head's (one draw from one seed)."""
    token = _SKIP_INITIALISATION.set(True)
    try:
        yield
    finally:
        _SKIP_INITIALISATION.reset(token)


def initialising() -> bool:
    """False inside ``without_initialisation()``: a constructor then leaves the weights to its caller."""
    return not _SKIP_INITIALISATION.get()


class CheckpointWeights(dict):
    """Arrays ``from_pretrained`` read (memory-mapped from the checkpoint's files, read by nobody else). A backend
    whose parameters copy them (TensorFlow, JAX) drops each array's file pages once copied, so that loading peaks
    near one copy of the weights; PyTorch's parameters view the mapping and keep them."""


class PreTrainedModel:
    """The contract of every backend's ``XLMRobertaPreTrainedModel`` (a mixin beside the framework's base class).

    A backend class provides ``config``, ``architecture`` (HF's class name: it selects the rows of
    ``xlmr.common.weights``), a constructor ``Cls(config, *, seed=None, ...)`` and the two hooks below; the
    checkpoint logic here is the same for the three.
    """

    architecture: ClassVar[str] = "XLMRobertaModel"
    # Keyword arguments of from_pretrained handed to the constructor: the framework's extras (dtype, ...).
    pretrained_options: ClassVar[tuple[str, ...]] = ()
    config: XLMRobertaConfig

    # -------------------------------------------------------------------------------------------- hooks
    def canonical_state(self) -> dict[str, np.ndarray]:
        """{canonical (HF PyTorch) name: numpy array in PyTorch's layout} of every unique parameter."""
        raise NotImplementedError

    def load_canonical_state(self, weights: Mapping[str, Any]) -> None:
        """Make ``weights`` (canonical name -> array, exactly ``parameter_shapes()``) the parameters; raises
        WeightsError naming every missing, unexpected or mis-shaped tensor before assigning anything."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- shared
    @classmethod
    def check_config(cls, config: Any) -> XLMRobertaConfig:
        """``config`` if the class can be built from it; TypeError or ValueError naming the problem otherwise
        (question answering needs ``num_labels=2``: a start and an end logit)."""
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"{cls.__name__} takes an xlmr.XLMRobertaConfig, got {type(config).__name__}")
        parameter_shapes(config, cls.architecture)
        return config

    def initialise(self, seed: int) -> None:
        """HF's random initialisation (``xlmr.common.init``): the same seed gives the same weights in every backend."""
        self.load_canonical_state(initial_weights(self.parameter_shapes(), self.config, seed))

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape of every unique parameter of this model, in module order."""
        shapes = parameter_shapes(self.config, self.architecture)
        if self.architecture == "XLMRobertaModel" and getattr(self, "pooler", None) is None:
            shapes = {k: v for k, v in shapes.items() if not k.startswith("pooler.")}
        return shapes

    def check_canonical_state(self, weights: Mapping[str, Any]) -> None:
        """What ``load_canonical_state`` checks first: exactly this model's tensors, each of its shape."""
        check_state(self.parameter_shapes(), weights, f"{type(self).__name__}.load_canonical_state")

    def num_parameters(self) -> int:
        """Number of parameters, tied ones counted once."""
        return int(sum(int(np.prod(s)) for s in self.parameter_shapes().values()))

    def checkpoint_dtype(self) -> str | None:
        """The dtype ``save_pretrained`` writes (None: float32, as ``canonical_state`` gives)."""
        return None

    def apply_quantization(self, mode: str) -> Any:
        """Hook of ``from_pretrained(..., quantize=mode)``: the backend's ``quantize(self, mode)``."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: XLMRobertaConfig | None = None, seed: int = 0,
                        ignore_mismatched_sizes: bool = False, **kwargs: Any) -> Any:
        """Load a checkpoint folder written by HF or xlmr (safetensors, pytorch_model.bin, tf_model.h5 or
        flax_model.msgpack, sharded or not), in inference mode.

        Head weights the checkpoint lacks are initialised from ``seed`` with a warning naming them; a missing
        encoder weight or a mis-shaped tensor raises ``WeightsError`` naming it. ``pretrained_options``
        (``dtype=`` ...) go to the constructor; ``format=`` picks one weights file of several; ``path`` may be
        ``"xlmr-default"`` or a Hub id, with huggingface_hub's ``revision``, ``cache_dir``, ``token`` and
        ``local_files_only``; other keyword arguments override fields of the checkpoint's config (``num_labels=3``).
        ``quantize="int8"`` or ``"bf16"`` returns the model quantized for inference (``xlmr.common.quantization``).
        """
        quantize = kwargs.pop("quantize", None)
        if quantize is not None:
            check_mode(quantize)  # before reading gigabytes
        options = {k: kwargs.pop(k) for k in cls.pretrained_options if k in kwargs}
        hub, format = pop_hub_options(kwargs), kwargs.pop("format", None)
        config, weights, _ = load_pretrained(path, cls.architecture, config=config, config_overrides=kwargs,
                                             format=format, hub=hub, seed=seed,
                                             ignore_mismatched_sizes=ignore_mismatched_sizes)
        with without_initialisation():
            model = cls(config, **options)
        model.load_canonical_state(CheckpointWeights(weights))
        if callable(getattr(model, "eval", None)):  # PyTorch and Flax modes; Keras decides per call (training=)
            model.eval()
        return model if quantize is None else model.apply_quantization(quantize)

    def save_pretrained(self, path: str | os.PathLike, format: str = "safetensors") -> None:
        """Write config.json and the weights under HF's names (``format``: safetensors, pt, tf or flax); "tf" writes
        ``tf_model.h5`` and "flax" ``flax_model.msgpack``, which HF's TF and Flax classes load."""
        refuse_saving(getattr(self, "quantization", None))
        save_pretrained(path, self.config, self.canonical_state(), self.architecture, format=format,
                        dtype=self.checkpoint_dtype())
