"""How a Keras model runs beyond a plain call: input checks before Keras' ``__call__``, training with ``fit`` on
the model's own loss, the checked XLA entry point and SavedModel export.

Execution modes (``xlmr.tf.checks`` says how bad input is caught in each):

* eager: ``model(input_ids=np.array(...))`` or ``model({"input_ids": ..., "labels": ...})``;
* ``tf.function``, also with unknown batch and sequence dimensions (``input_signature`` with None dims);
* XLA: ``model.compiled_call(...)`` (or ``xlmr.tf.checked_call(model, ...)``) checks the inputs on the host and runs
  a cached ``tf.function(jit_compile=True)`` traced once per set of arguments, with None dimensions;
* Keras training: ``model.compile(optimizer=...)`` then ``model.fit(dataset)`` trains on the model's own loss;
* export: ``model.export_saved_model(path)`` writes a SavedModel whose ``serving_default`` signature maps
  ``input_ids``, ``attention_mask`` to the logits.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.tf import XLMRobertaForSequenceClassification
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> model = XLMRobertaForSequenceClassification(config, seed=0)
    >>> tuple(model.compiled_call(input_ids=np.array([[0, 5, 6, 2]])).logits.shape)
    (1, 2)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xlmr.common.inputs import check_multiple_choice, check_past_key_values
from xlmr.common.io import atomic_directory
from xlmr.tf import checks

# Arguments of ``call`` that hold tensors; the others are Python flags (compile-time constants under XLA).
TENSOR_ARGUMENTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds",
                    "encoder_hidden_states", "encoder_attention_mask", "past_key_values", "labels",
                    "start_positions", "end_positions")
_CHECKED = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "past_key_values")

def to_tensors(x: Any) -> Any:
    """numpy arrays, lists and tensors -> tensors (nested tuples too, for past_key_values); None stays None."""
    if x is None:
        return None
    return tf.nest.map_structure(lambda t: t if isinstance(t, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(t),
                                 x)


def unpack_inputs(arguments: dict[str, Any]) -> dict[str, Any]:
    """``model({"input_ids": ..., "labels": ...})`` (what Keras' fit passes) -> keyword arguments of ``call``."""
    arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
    packed, arguments["input_ids"] = arguments["input_ids"], None
    for name, value in packed.items():
        if name not in arguments or name == "training":
            raise TypeError(f"unknown input {name!r} in the inputs dict; known: {', '.join(arguments)}")
        if arguments[name] is not None:
            raise ValueError(f"input {name!r} is given both in the inputs dict and as an argument")
        arguments[name] = value
    return arguments


class _FunctionCache:
    """Holds compiled functions out of Keras' and SavedModel's object tracking (a plain object is not tracked)."""

    def __init__(self) -> None:
        self.functions: dict[Any, Any] = {}



class KerasRuntime:
    """The Keras side of ``XLMRobertaPreTrainedModel`` (a mixin before ``keras.Model``): eager input checks,
    ``fit``'s loss hook, ``compiled_call`` and ``export_saved_model``. A class supplies ``hf_loss``."""

    serving_outputs: tuple[str, ...] = ("logits",)  # what the SavedModel's serving signature returns

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Concrete inputs are checked here, before Keras' __call__, so that the shared ValueError reaches the
        # caller as it is (Keras re-raises errors from ``call`` inside a longer message). Traced inputs are
        # checked in XLMRobertaModel.call (xlmr.tf.checks).
        if tf.executing_eagerly():
            arguments = inspect.signature(self.call).bind_partial(*args, **kwargs).arguments
            if isinstance(arguments.get("input_ids"), Mapping):  # Keras' fit passes the inputs as one dict
                arguments = {**arguments, "input_ids": None, **arguments["input_ids"]}
            given = {k: arguments.get(k) for k in _CHECKED}
            if checks.is_concrete(*given.values()):
                self.validate_inputs(**given)
        return super().__call__(*args, **kwargs)

    # -------------------------------------------------------------------------------------------- Keras training
    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> tf.Tensor:
        """Keras' loss hook: the model's own loss (HF's semantics) unless ``compile`` was given a ``loss``.

        Labels come inside ``x`` (``{"input_ids": ..., "labels": ...}``: the forward pass returns the loss) or as
        the target ``y`` (question answering: ``{"start_positions": ..., "end_positions": ...}`` or a pair).
        """
        if self._compile_loss is not None:  # the user chose a Keras loss: apply it to the primary output
            primary = y_pred[self.serving_outputs[0]] if isinstance(y_pred, Mapping) else y_pred
            return super().compute_loss(x, y, primary, sample_weight, training=training)
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}: sample weights need a Keras loss: pass loss=... to compile()")
        loss = y_pred.get("loss") if isinstance(y_pred, Mapping) else None
        if loss is None:
            if y is None:
                raise ValueError(f"{type(self).__name__}: no labels to compute the loss from; put them in the inputs "
                                 "dict ('labels') or give them as the dataset's target")
            loss = self.hf_loss(y_pred, y)
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype)
        return loss

    def predict_step(self, data: Any) -> Any:
        # Keras' tree utilities see our output objects as leaves; predict() concatenates plain dicts.
        outputs = super().predict_step(data)
        return dict(outputs) if isinstance(outputs, Mapping) else outputs

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        """The class's loss (HF's semantics) from its output and labels."""
        raise ValueError(f"{type(self).__name__} has no loss; compile() it with a Keras loss")

    # -------------------------------------------------------------------------------------------- checks, XLA
    def validate_inputs(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                        position_ids: Any = None, inputs_embeds: Any = None, past_key_values: Any = None) -> None:
        """The shared eager checks (``xlmr.common.inputs``) on concrete inputs of this class; raises ValueError."""
        as_np = lambda t: None if t is None else np.asarray(t)  # noqa: E731
        input_ids, attention_mask, token_type_ids, position_ids = map(
            as_np, (input_ids, attention_mask, token_type_ids, position_ids))
        embeds_shape = None if inputs_embeds is None else tuple(np.shape(inputs_embeds))
        if self.architecture == "XLMRobertaForMultipleChoice":  # checked flattened, as the encoder sees them
            shape = np.shape(input_ids) if input_ids is not None else (embeds_shape or ())[:-1]
            check_multiple_choice("input_ids" if input_ids is not None else "inputs_embeds", tuple(shape))
            flat = lambda a: None if a is None else a.reshape(-1, a.shape[-1])  # noqa: E731
            input_ids, attention_mask, token_type_ids, position_ids = map(
                flat, (input_ids, attention_mask, token_type_ids, position_ids))
            embeds_shape = None if embeds_shape is None else (-1, *embeds_shape[2:])
        past = check_past_key_values(self.config, past_key_values, input_ids if input_ids is not None else
                                     inputs_embeds)
        checks.check_concrete(self.config, input_ids, attention_mask, token_type_ids, position_ids, embeds_shape,
                              past)

    def compiled_call(self, **inputs: Any) -> Any:
        """``call`` compiled by XLA (``jit_compile=True``), with the input checks that XLA would drop done first.

        Takes ``call``'s keyword arguments. The inputs are checked on the host (the same ValueError as an eager
        call: out-of-range ids, token types and positions, too-long sequences, mis-shaped masks) and only then
        handed to the XLA function. That function is traced once per set of given arguments and flags, with None
        batch and sequence dimensions, so a new length does not retrace (XLA still compiles per shape).
        """
        flags = {"use_cache", "output_attentions", "output_hidden_states", "return_dict", "training"}
        unknown = set(inputs) - set(TENSOR_ARGUMENTS) - flags
        if unknown:
            raise TypeError(f"compiled_call got unknown argument(s) {sorted(unknown)}")
        tensors = {k: to_tensors(v) for k, v in inputs.items() if k in TENSOR_ARGUMENTS and v is not None}
        static = tuple(sorted((k, v) for k, v in inputs.items() if k in flags))
        self.validate_inputs(**{k: tensors.get(k) for k in _CHECKED})
        specs = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), tensors)
        key = (tuple(sorted((k, str(v)) for k, v in specs.items())), static)
        if not hasattr(self, "_xla"):
            self._xla = _FunctionCache()
        function = self._xla.functions.get(key)
        if function is None:
            def run(tensors: dict[str, tf.Tensor]) -> Any:
                return self(**tensors, **dict(static))

            function = tf.function(run, jit_compile=True, input_signature=[specs])
            self._xla.functions[key] = function
        return function(tensors)

    # -------------------------------------------------------------------------------------------- export
    def serving_signature(self) -> Any:
        """A ``tf.function`` taking ``input_ids`` and ``attention_mask`` (int32, None dims) and returning
        {field: tensor} for ``serving_outputs`` (logits for heads).

        ``export_saved_model`` writes it as ``serving_default``; by hand: ``tf.saved_model.save(model, path,
        signatures={"serving_default": model.serving_signature()})``.
        """
        rank = 3 if self.architecture == "XLMRobertaForMultipleChoice" else 2
        specs = [tf.TensorSpec([None] * rank, tf.int32, name="input_ids"),
                 tf.TensorSpec([None] * rank, tf.int32, name="attention_mask")]
        flags = dict(output_attentions=False, output_hidden_states=False, return_dict=True, training=False)
        if "use_cache" in inspect.signature(self.call).parameters:
            flags["use_cache"] = False

        @tf.function(input_signature=specs)
        def serve(input_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
            result = self(input_ids=input_ids, attention_mask=attention_mask, **flags)
            return {name: result[name] for name in self.serving_outputs}

        return serve

    def export_saved_model(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write a SavedModel: signature ``serving_default`` (``input_ids``, ``attention_mask`` -> outputs).

        The folder appears complete or not at all. Reload with ``tf.saved_model.load(path)`` and call
        ``loaded.signatures["serving_default"](input_ids=..., attention_mask=...)`` or ``loaded.serve(ids, mask)``.
        """
        serve = self.serving_signature()
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", serve)
        archive.add_endpoint("serving_default", serve)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            archive.write_out(tmp, verbose=False)

