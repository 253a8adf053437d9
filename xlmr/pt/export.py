"""ONNX export of the PyTorch classes: ``model.onnx`` with HF's input and output names and dynamic axes.

The exporter is ``torch.onnx.export(..., dynamo=False)``, the TorchScript tracer. torch 2.13's default, the
``torch.export``-based exporter, needs ``onnxscript`` (one more dependency) and cannot trace the models' host-side
input checks (they read ids as numpy to name a bad value); the tracer runs them once on the sample and records
the tensor ops, with sizes taken from ``tensor.shape`` so that the batch and sequence axes stay symbolic
(``tests/export`` runs an export traced at length 8 on longer inputs).

The trace runs on a padded sample, so the masked attention path is recorded (an all-ones mask would let the model
skip the mask). Above ``EXTERNAL_DATA_BYTES`` of weights the tensors go to ``model.onnx.data`` beside the graph
(ONNX's external data), since a protobuf cannot pass 2 GB.

Example:
    >>> import tempfile, numpy as np, onnxruntime
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt import XLMRobertaForSequenceClassification
    >>> from xlmr.pt.export import export
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = XLMRobertaForSequenceClassification(config, seed=0)
    >>> folder = tempfile.mkdtemp()
    >>> export(model, folder)
    ['model.onnx']
    >>> session = onnxruntime.InferenceSession(f"{folder}/model.onnx")
    >>> ids = np.array([[0, 5, 6, 7, 8, 9, 10, 11, 12, 2]])
    >>> session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0].shape
    (1, 2)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Any

import torch

from xlmr.common.export_spec import export_spec

ONNX_FILE = "model.onnx"
# ONNX 1.x opset 17 has LayerNormalization as one op; ONNX Runtime runs it since 1.14.
DEFAULT_OPSET = 17
# A protobuf holds at most 2 GiB; leave room for the graph itself.
EXTERNAL_DATA_BYTES = 2**31 - 2**26


class _Serving(torch.nn.Module):
    """The model with positional tensor inputs and a tuple of the named outputs, which is what the tracer takes."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...], output_names: tuple[str, ...]):
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, output_names

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flags = {"use_cache": False} if self.model.architecture == "XLMRobertaForCausalLM" else {}
        out = self.model(**dict(zip(self.input_names, tensors)), return_dict=True, **flags)
        return tuple(out[name] for name in self.output_names)


def serving_function(model: torch.nn.Module) -> torch.nn.Module:
    """A module taking the export's inputs positionally (in the spec's order) and returning its named outputs as a
    tuple: what ``torch.onnx.export`` traces."""
    spec = export_spec(model.config, model.architecture, "int64")
    return _Serving(model, spec.input_names, spec.output_names).eval()


def sample_inputs(spec: Any, config: Any, length: int = 8) -> tuple[torch.Tensor, ...]:
    """Two rows of ``length`` tokens (two choices each for multiple choice), the second padded."""
    rows = 2
    ids = torch.arange(length).remainder(config.vocab_size - 5).add(5).repeat(rows, 1)
    ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1, length // 2:] = 0
    ids[1, length // 2:] = config.pad_token_id
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if spec.architecture == "XLMRobertaForMultipleChoice":
        tensors = {k: v[None].expand(2, -1, -1).contiguous() for k, v in tensors.items()}
    return tuple(tensors[name] for name in spec.input_names)


def export(model: torch.nn.Module, path: str | os.PathLike, *, opset: int | None = None,
           external_data: bool | None = None) -> list[str]:
    """Write ``model`` as ``model.onnx`` into the folder ``path``; returns the files written.

    ``external_data``: None (default) puts the weights in ``model.onnx.data`` when they pass
    ``EXTERNAL_DATA_BYTES``; True or False forces the choice.
    """
    import onnx

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    spec = export_spec(model.config, model.architecture, "int64")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if external_data is None:
        external_data = weight_bytes > EXTERNAL_DATA_BYTES
    serving = serving_function(model)
    was_training = model.training
    model.eval()
    target = os.path.join(path, ONNX_FILE)
    scratch = tempfile.mkdtemp(prefix=".onnx.", dir=path)  # the tracer writes one file per tensor above 2 GB
    try:
        traced = os.path.join(scratch, ONNX_FILE)
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns that the input checks' numpy values become constants: they only check, by design.
            warnings.simplefilter("ignore")
            torch.onnx.export(serving, sample_inputs(spec, model.config), traced, dynamo=False,
                              input_names=list(spec.input_names), output_names=list(spec.output_names),
                              dynamic_axes=spec.dynamic_axes(), opset_version=opset or DEFAULT_OPSET,
                              do_constant_folding=True)
        if external_data:
            proto = onnx.load(traced)  # with its tensors, wherever the tracer put them
            onnx.save_model(proto, target, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=ONNX_FILE + ".data", size_threshold=1024)
        else:
            os.replace(traced, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        model.train(was_training)
    onnx.checker.check_model(target)  # by path: works for external data too
    return [ONNX_FILE, ONNX_FILE + ".data"] if external_data else [ONNX_FILE]
