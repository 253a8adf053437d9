"""SavedModel export of the Keras classes: a ``serving_default`` signature with HF's input and output names.

Written with Keras' ``ExportArchive``, so TF Serving and ``tf.saved_model.load`` read it with no xlmr or Keras
code. The signature takes int32 tensors with unknown batch and sequence dimensions (TF Serving's convention for
token ids) and returns a dict of the named outputs.

Example:
    >>> import tempfile, numpy as np, tensorflow as tf
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForSequenceClassification
    >>> from xlmr.tf.export import export
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = XLMRobertaForSequenceClassification(config, seed=0)
    >>> folder = tempfile.mkdtemp()
    >>> files = export(model, folder)
    >>> serve = tf.saved_model.load(folder).signatures["serving_default"]
    >>> ids = tf.constant([[0, 5, 6, 2]], tf.int32)
    >>> tuple(serve(input_ids=ids, attention_mask=tf.ones_like(ids))["logits"].shape)
    (1, 2)
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import keras
import tensorflow as tf

from xlmr.common.export_spec import export_spec

SIGNATURE = "serving_default"


def serving_function(model: keras.Model) -> Any:
    """A ``tf.function`` with the export's named int32 inputs (None dimensions) returning {output name: tensor}."""
    spec = export_spec(model.config, model.architecture, "int32")
    signature = [{t.name: tf.TensorSpec([None] * len(t.axes), tf.int32, name=t.name) for t in spec.inputs}]
    flags = dict(output_attentions=False, output_hidden_states=False, return_dict=True, training=False)
    if "use_cache" in inspect.signature(model.call).parameters:
        flags["use_cache"] = False

    @tf.function(input_signature=signature)
    def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = model(**inputs, **flags)
        return {name: out[name] for name in spec.output_names}

    return serve


def export(model: keras.Model, path: str | os.PathLike, *, opset: int | None = None) -> list[str]:
    """Write ``model`` as a SavedModel into the folder ``path`` (signature ``serving_default``, also callable as
    ``loaded.serving_default({name: tensor})``); returns the top-level entries written. ``opset`` is ONNX's and
    must be None here."""
    if opset is not None:
        raise ValueError(f"opset={opset} is an ONNX setting; a SavedModel has none")
    serve = serving_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve)  # one endpoint: each one costs a trace of the model when saving
    before = set(os.listdir(path)) if os.path.isdir(path) else set()
    archive.write_out(os.fspath(path), verbose=False)
    return sorted(set(os.listdir(path)) - before)
