"""The layer above the three backends: find, import and run one of them on numpy arrays.

Drivers (``xlmr parity``, ``xlmr convert --verify``, pipelines, tasks, export, serving) use these helpers instead of
importing a framework themselves, so that each stays importable without any framework and names the extra to
install when one is missing. ``xlmr.common`` never imports this module.

Example:
    >>> from xlmr.backends import BACKENDS, EXTRAS
    >>> BACKENDS, EXTRAS["tf"]
    (('pt', 'tf', 'flax'), 'tf')
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, Mapping

import numpy as np

from xlmr.common.extras import quiet_tensorflow

BACKENDS = ("pt", "tf", "flax")
# The module that must be importable for each backend, and the pip extra that installs it.
FRAMEWORK_MODULES = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}
EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}


class BackendNotInstalledError(ImportError):
    """A backend was asked for whose framework is not installed; the message names the extra."""


def _installed(module: str) -> bool:
    # A folder named like the framework on sys.path (a checkout's tests/flax) is a namespace package: find_spec
    # finds it, with no origin. Only a real package counts.
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


def installed_backends() -> list[str]:
    """The backends whose framework can be imported here, in ``BACKENDS`` order (nothing is imported)."""
    return [b for b in BACKENDS if _installed(FRAMEWORK_MODULES[b])]


def check_backend(backend: str) -> None:
    """Raise ValueError for an unknown backend name and BackendNotInstalledError for a missing framework."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if not _installed(FRAMEWORK_MODULES[backend]):
        raise BackendNotInstalledError(
            f"backend {backend!r} needs {FRAMEWORK_MODULES[backend]}, which is not installed for this Python "
            f"({os.sys.executable}); install it with: pip install 'xlmr[{EXTRAS[backend]}]'")


def import_backend(backend: str) -> Any:
    """``xlmr.pt``, ``xlmr.tf`` or ``xlmr.flax``, imported on demand."""
    check_backend(backend)
    return importlib.import_module(f"xlmr.{backend}")


def model_class(backend: str, architecture: str) -> Any:
    """The class named ``architecture`` (HF's name, e.g. ``XLMRobertaForMaskedLM``) in ``backend``."""
    return getattr(import_backend(backend), architecture)


def to_backend(backend: str, array: Any) -> Any:
    """A numpy array (or None) as the backend's tensor type."""
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    if backend == "pt":
        import torch

        return torch.from_numpy(array)
    if backend == "tf":
        quiet_tensorflow()
        import tensorflow as tf

        return tf.constant(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


def to_numpy(backend: str, tensor: Any, dtype: Any = None) -> np.ndarray:
    """A backend tensor as a numpy array (bf16/fp16 widened to float32, or to ``dtype`` when given)."""
    if backend == "pt":
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        array = tensor.numpy()
    elif backend == "tf":
        import tensorflow as tf

        if tensor.dtype.is_floating:
            tensor = tf.cast(tensor, tf.float32)
        array = tensor.numpy()
    else:
        array = np.asarray(tensor)
        if array.dtype.kind == "V" or array.dtype.name in ("bfloat16", "float16"):
            array = array.astype(np.float32)
    return array if dtype is None else array.astype(dtype)


def call_model(backend: str, model: Any, inputs: Mapping[str, Any], **flags: Any) -> Any:
    """Run ``model`` on numpy ``inputs`` without gradients or dropout, returning the backend's output object."""
    tensors = {k: to_backend(backend, v) for k, v in inputs.items() if v is not None}
    if backend == "pt":
        import torch

        with torch.no_grad():
            return model(**tensors, **flags)
    if backend == "tf":
        return model(**tensors, training=False, **flags)
    return model(**tensors, **flags)
