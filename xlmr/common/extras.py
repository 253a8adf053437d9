"""Which pip extra brings which framework, and the checks that name it when a backend is imported without it.

Example:
    >>> from xlmr.common.extras import EXTRAS, missing_message
    >>> EXTRAS["flax"]
    ('flax', ('jax', 'flax', 'optax'))
    >>> missing_message("xlmr.flax", "flax", "jax")  # doctest: +ELLIPSIS
    "xlmr.flax needs jax, which is not installed for ...: pip install 'xlmr[flax]'"
"""

from __future__ import annotations

import importlib.util
import os
import sys

# backend -> (pip extra, modules it must be able to import)
EXTRAS = {"pt": ("torch", ("torch",)), "tf": ("tf", ("tensorflow", "keras")), "flax": ("flax", ("jax", "flax", "optax"))}


def missing_message(package: str, extra: str, module: str) -> str:
    return (f"{package} needs {module}, which is not installed for {sys.executable}: "
            f"pip install 'xlmr[{extra}]'")


def require(backend: str) -> None:
    """Raise ImportError naming the extra when a module ``xlmr.<backend>`` needs is missing (imports nothing)."""
    extra, modules = EXTRAS[backend]
    for module in modules:
        if sys.modules.get(module, True) is None or importlib.util.find_spec(module) is None:
            raise ImportError(missing_message(f"xlmr.{backend}", extra, module), name=module)


def quiet_tensorflow() -> None:
    """Silence TF's and XLA's C++ start-up logging (oneDNN notices, CUDA probes such as ``failed call to cuInit``)
    before TensorFlow is first imported; a value the user set is kept, so ``TF_CPP_MIN_LOG_LEVEL=0`` restores it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
