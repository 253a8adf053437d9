"""Fixtures shared by the whole suite: the tiny config, HF 4.57.6 reference checkpoints, and ``backend``.

``backend`` runs a test once per installed backend (pt, tf, flax) and skips the others, so one contract suite
(tests/test_contract.py) checks all three alike. What differs between frameworks is kept to the small adapters
at the end of this file (run a forward pass on numpy, take one optimizer step); the tests above them are
framework-free. The plain data (``TINY``, ``tiny_config``, ``hf_model``, ``numpy_batch``) lives in
tests/reference.py so that test modules can import it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from reference import hf_model, tiny_config  # noqa: E402

from xlmr.backends import BACKENDS, installed_backends, to_backend, to_numpy  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402

INSTALLED = installed_backends()
HERE = os.path.dirname(os.path.abspath(__file__))
# A backend's own test folder imports its framework at the top of every module; without that framework the folder
# is left out of collection (and said so in the header), as a single-backend install (`.[tf,test]`) needs.
BACKEND_FOLDERS = {os.path.join(HERE, b): b for b in BACKENDS}


def pytest_ignore_collect(collection_path, config):
    path = str(collection_path)
    for folder, backend in BACKEND_FOLDERS.items():
        if backend not in INSTALLED and (path == folder or path.startswith(folder + os.sep)):
            return True
    return None


def pytest_report_header(config):
    missing = [b for b in BACKENDS if b not in INSTALLED]
    return [f"xlmr backends installed: {', '.join(INSTALLED) or 'none'}"
            + (f"; left out: {', '.join(f'tests/{b}' for b in missing)}" if missing else "")]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """"pt", "tf" or "flax": every test taking it runs once per backend whose framework is installed."""
    if request.param not in INSTALLED:
        pytest.skip(f"backend {request.param} is not installed")
    return request.param


@pytest.fixture(name="tiny_config")
def tiny_config_fixture() -> Callable[..., XLMRobertaConfig]:
    """``tiny_config(name=None, **overrides)``: the suite's two-layer, 32-wide config."""
    return tiny_config


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory) -> Callable[..., tuple[Any, str, XLMRobertaConfig]]:
    """``hf_checkpoint(name, seed=0, **overrides)`` -> (HF model, folder, config): HF 4.57.6's PyTorch class
    ``name`` built from the tiny config with HF's init plus noise, saved once per session by HF's own
    ``save_pretrained`` (safetensors). Callers must not change the returned model; a test that trains takes a
    fresh one with ``hf_model``. Skips where torch or transformers is missing (a tf- or flax-only install)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    made: dict[tuple, tuple[Any, str, XLMRobertaConfig]] = {}

    def get(name: str, seed: int = 0, **overrides: Any) -> tuple[Any, str, XLMRobertaConfig]:
        key = (name, seed, tuple(sorted(overrides.items())))
        if key not in made:
            config = tiny_config(name, **overrides)
            model = hf_model(name, config, seed=seed, noise=0.05, attn_implementation="eager")
            folder = str(tmp_path_factory.mktemp(name.removeprefix("XLMRoberta")))
            model.save_pretrained(folder)
            made[key] = (model, folder, config)
        return made[key]

    return get


@pytest.fixture
def ops(backend: str) -> "Ops":
    """The adapters below bound to ``backend``: ``ops.cls(name)``, ``ops.outputs(model, inputs)``, ..."""
    return Ops(backend)


# ------------------------------------------------------------------------------------------------ adapters
class Ops:
    """What a contract test needs from a backend, in one framework-neutral shape (numpy in, numpy out)."""

    def __init__(self, backend: str):
        self.backend = backend

    def cls(self, name: str) -> Any:
        from xlmr.backends import model_class

        return model_class(self.backend, name)

    def build(self, name: str, config: XLMRobertaConfig, seed: int) -> Any:
        """``Cls(config, seed=seed)``: a class built with the common random initialisation."""
        return self.cls(name)(config, seed=seed)

    def from_pretrained(self, name: str, folder: str, **kwargs: Any) -> Any:
        return quiet_from_pretrained(self.cls(name), folder, **kwargs)

    def call(self, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> Any:
        return call(self.backend, model, inputs, **flags)

    def outputs(self, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> dict[str, np.ndarray]:
        return outputs(self.backend, model, inputs, **flags)

    def numpy(self, tensor: Any) -> np.ndarray:
        return to_numpy(self.backend, tensor)

    def sgd_step(self, model: Any, inputs: dict[str, np.ndarray], lr: float) -> float:
        return sgd_step(self.backend, model, inputs, lr)

    # HF's PyTorch reference, driven the same way (the names below are this module's functions)
    def hf_outputs(self, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> dict[str, np.ndarray]:
        return hf_outputs(model, inputs, **flags)

    def hf_sgd_step(self, model: Any, inputs: dict[str, np.ndarray], lr: float) -> float:
        return hf_sgd_step(model, inputs, lr)


def flatten(value: Any, to_array: Callable[[Any], np.ndarray], prefix: str = "",
            out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Nested outputs -> {"hidden_states.1": float64 array}; the cache (``past_key_values``) is left out."""
    out = {} if out is None else out
    if value is None:
        return out
    if isinstance(value, dict):  # our outputs and HF's ModelOutput are both dicts of their non-None fields
        for key, item in value.items():
            if key != "past_key_values":
                flatten(item, to_array, f"{prefix}{key}", out)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            flatten(item, to_array, f"{prefix}.{i}", out)
    else:
        out[prefix] = to_array(value).astype(np.float64)
    return out


def outputs(backend: str, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> dict[str, np.ndarray]:
    """One eval-mode forward pass of our ``model`` on numpy inputs: {output name: float64 array}."""
    return flatten(call(backend, model, inputs, **flags), lambda t: to_numpy(backend, t))


def hf_outputs(model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> dict[str, np.ndarray]:
    """The same for HF's PyTorch model."""
    import torch

    with torch.no_grad():
        out = model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}, **flags)
    return flatten(out, lambda t: t.detach().float().numpy())


def call(backend: str, model: Any, inputs: dict[str, np.ndarray], **flags: Any) -> Any:
    """The backend's output object for numpy ``inputs`` (no gradients, no dropout); ``flags`` (a cache,
    ``use_cache``, ``output_hidden_states``) are passed as they are."""
    tensors = {k: to_backend(backend, v) for k, v in inputs.items()}
    if backend == "pt":
        import torch

        with torch.no_grad():
            return model.eval()(**tensors, **flags)
    if backend == "tf":
        return model(**tensors, training=False, **flags)
    return model(**tensors, deterministic=True, **flags)


def sgd_step(backend: str, model: Any, inputs: dict[str, np.ndarray], lr: float) -> float:
    """One step of plain SGD on the class's own loss in train mode, in the framework's idiom; returns the loss.

    The test's config has no dropout, so train mode computes what eval mode does."""
    tensors = {k: to_backend(backend, v) for k, v in inputs.items()}
    if backend == "pt":
        import torch

        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        optimizer.zero_grad()
        loss = model(**tensors).loss
        loss.backward()
        optimizer.step()
        model.eval()
        return float(loss.detach())
    if backend == "tf":
        import keras
        import tensorflow as tf

        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            loss = model(**tensors, training=True).loss
        keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(tape.gradient(loss, variables), variables))
        return float(loss)
    import optax
    from flax import nnx

    model.train()
    optimizer = nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)
    loss, grads = nnx.value_and_grad(lambda m: m(**tensors).loss)(model)
    optimizer.update(model, grads)
    model.eval()
    return float(loss)


def hf_sgd_step(model: Any, inputs: dict[str, np.ndarray], lr: float) -> float:
    """The same step on HF's PyTorch model."""
    import torch

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    loss = model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}).loss
    loss.backward()
    optimizer.step()
    model.eval()
    return float(loss.detach())


def quiet_from_pretrained(cls: Any, folder: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with the framework's deprecation chatter silenced (warnings we test stay)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cls.from_pretrained(folder, **kwargs)
