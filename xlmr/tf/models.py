"""The seven XLM-R classes as Keras 3 models (TensorFlow ops), with HF's variable paths, arguments and outputs.

Execution modes (``xlmr.tf.checks`` says how bad input is caught in each):

* eager: ``model(input_ids=np.array(...))`` or ``model({"input_ids": ..., "labels": ...})``;
* ``tf.function``, also with unknown batch and sequence dimensions (``input_signature`` with None dims);
* XLA: ``model.compiled_call(...)`` (or ``xlmr.tf.checked_call(model, ...)``) checks the inputs on the host and runs
  a cached ``tf.function(jit_compile=True)`` traced once per set of arguments, with None dimensions;
* Keras training: ``model.compile(optimizer=...)`` then ``model.fit(dataset)`` trains on the model's own loss;
* export: ``model.export_saved_model(path)`` writes a SavedModel whose ``serving_default`` signature maps
  ``input_ids``, ``attention_mask`` to the logits.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xlmr.common import outputs as O
from xlmr.common.checkpoint.base import release_pages
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.init import initial_weights
from xlmr.common.inputs import check_multiple_choice
from xlmr.common.io import atomic_directory
from xlmr.common.loading import WeightsError, load_pretrained
from xlmr.common.weights import from_scheme_array, parameter_shapes, to_scheme_array, to_scheme_name
from xlmr.tf import checks, losses
from xlmr.tf.heads import ClassificationHead, LMHead
from xlmr.tf.layers import Embeddings, Encoder, Pooler, build, dense

logger = logging.getLogger("xlmr")

# Arguments of ``call`` that hold tensors; the others are Python flags (compile-time constants under XLA).
TENSOR_ARGUMENTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds",
                    "encoder_hidden_states", "encoder_attention_mask", "past_key_values", "labels",
                    "start_positions", "end_positions")
_ASSIGN_BLOCK = 64 << 20  # bytes per assignment when loading a large tensor
_CHECKED = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds", "past_key_values")


# ------------------------------------------------------------------------------------------------ input helpers
def _tensor(x: Any) -> Any:
    """numpy arrays, lists and tensors -> tensors (nested tuples too, for past_key_values); None stays None."""
    if x is None:
        return None
    return tf.nest.map_structure(lambda t: t if isinstance(t, (tf.Tensor, tf.Variable)) else tf.convert_to_tensor(t),
                                 x)


def _unpack(arguments: dict[str, Any]) -> dict[str, Any]:
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


def attention_bias(mask: tf.Tensor | None, query_length: Any, past_length: Any, causal: bool,
                   dtype: tf.DType) -> tf.Tensor | None:
    """Additive attention mask (batch or 1, 1, query or 1, key): 0 where query i may see key j, dtype's minimum
    elsewhere.

    Key j is visible when ``mask[:, j]`` is set and, for a causal decoder, j <= past_length + i. Returns None when
    nothing is masked.
    """
    if mask is None and not causal:
        return None
    keep = None if mask is None else tf.cast(mask, tf.bool)[:, None, None, :]
    if causal:
        key_length = past_length + query_length
        query = tf.range(query_length)[:, None] + past_length
        visible = (tf.range(key_length)[None, :] <= query)[None, None]
        keep = visible if keep is None else tf.logical_and(keep, visible)
    return tf.where(keep, tf.zeros((), dtype), tf.constant(dtype.min, dtype))


class _FunctionCache:
    """Holds compiled functions out of Keras' and SavedModel's object tracking (a plain object is not tracked)."""

    def __init__(self) -> None:
        self.functions: dict[Any, Any] = {}


# ------------------------------------------------------------------------------------------------ base class
class XLMRobertaPreTrainedModel(keras.Model):
    """What every class shares: building with HF's initialisation, loading and saving checkpoints, Keras training
    on the model's own loss, the checked XLA entry point and SavedModel export.

    ``Cls(config, seed=None)`` builds every variable in the constructor and sets it to HF's initialisation
    (``xlmr.common.init``: the same seed gives the same weights in the PyTorch, TensorFlow and Flax backends);
    ``seed=None`` draws one from numpy's global generator, so ``keras.utils.set_random_seed`` governs it.
    Variables are reachable by the "tf" scheme of ``xlmr.common.weights``: ``model.get_variable(
    "roberta.encoder.layer.0.attention.self.query.kernel")``.

    Bad input raises before any lookup: ValueError eagerly, InvalidArgumentError with the same text inside
    ``tf.function``; under XLA, which drops asserts, use ``compiled_call`` (checks on the host first, then runs
    the XLA function) — see ``XLMRobertaModel`` and ``xlmr.tf.checks``.
    """

    architecture = "XLMRobertaModel"  # HF class name: selects the row set of xlmr.common.weights
    serving_outputs: tuple[str, ...] = ("logits",)  # what the SavedModel's serving signature returns

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, *, _initialise: bool = True,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"{type(self).__name__} takes an xlmr.XLMRobertaConfig, got {type(config).__name__}")
        self.config = config
        self._xla = _FunctionCache()
        self._initialise, self._seed = _initialise, seed

    def post_init(self) -> None:
        """Build every variable, then (unless nested in another model) set them to HF's initial values."""
        self.build()
        if self._initialise:
            seed = int(np.random.randint(0, 2**31 - 1)) if self._seed is None else int(self._seed)
            shapes = parameter_shapes(self.config, self.architecture)
            self.load_canonical_state(initial_weights(shapes, self.config, seed))

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

    def _flags(self, output_attentions: bool | None, output_hidden_states: bool | None,
               return_dict: bool | None) -> tuple[bool, bool, bool]:
        c = self.config
        return (c.output_attentions if output_attentions is None else output_attentions,
                c.output_hidden_states if output_hidden_states is None else output_hidden_states,
                c.return_dict if return_dict is None else return_dict)

    # -------------------------------------------------------------------------------------------- weights
    def get_variable(self, name: str) -> keras.Variable:
        """A variable by its "tf" scheme path, e.g. ``roberta.encoder.layer.0.attention.self.query.kernel``."""
        node: Any = self
        for part in name.split("."):
            try:
                node = node[int(part)] if part.isdigit() else getattr(node, part)
            except (AttributeError, IndexError, TypeError):
                raise KeyError(f"{type(self).__name__} has no variable {name!r} (no {part!r} on the way)") from None
        if not isinstance(node, keras.Variable):
            raise KeyError(f"{type(self).__name__}: {name!r} is a {type(node).__name__}, not a variable")
        return node

    def named_variables(self) -> dict[str, keras.Variable]:
        """{"tf" scheme name: variable} for every parameter of the class, in the weight table's order."""
        return {to_scheme_name(n, "tf"): self.get_variable(to_scheme_name(n, "tf"))
                for n in parameter_shapes(self.config, self.architecture)}

    def canonical_state(self) -> dict[str, np.ndarray]:
        """{canonical (HF) name: numpy array in PyTorch's layout} of every unique parameter."""
        return {n: np.ascontiguousarray(from_scheme_array(self.get_variable(to_scheme_name(n, "tf")).numpy(), n,
                                                          "tf"))
                for n in parameter_shapes(self.config, self.architecture)}

    def load_canonical_state(self, weights: Mapping[str, Any], release_source: bool = False) -> None:
        """Assign ``weights`` (canonical name -> array, exactly this model's parameters) to the variables.

        ``release_source``: drop each array's file pages once copied (arrays memory-mapped from a checkpoint by
        ``from_pretrained``, which nobody else reads), so loading peaks near one copy of the weights.

        Raises WeightsError naming every missing, unexpected or mis-shaped tensor before assigning anything.
        """
        shapes = parameter_shapes(self.config, self.architecture)
        missing, unexpected = sorted(set(shapes) - set(weights)), sorted(set(weights) - set(shapes))
        problems = [f"missing {missing}, unexpected {unexpected}"] if missing or unexpected else []
        problems += [f"tensor {n} has shape {tuple(np.shape(weights[n]))}, the model has {tuple(s)}"
                     for n, s in shapes.items() if n in weights and tuple(np.shape(weights[n])) != tuple(s)]
        if problems:
            raise WeightsError(f"{type(self).__name__}.load_canonical_state: " + "; ".join(problems))
        for n in shapes:
            variable = self.get_variable(to_scheme_name(n, "tf"))
            value = to_scheme_array(np.asarray(weights[n]), n, "tf")
            # Row blocks of at most _ASSIGN_BLOCK bytes: no transient copy of a whole 0.77 GB embedding table.
            rows = max(1, _ASSIGN_BLOCK // max(1, value[:1].nbytes)) if value.ndim else 1
            if value.ndim == 0 or rows >= value.shape[0]:
                variable.assign(np.asarray(value, dtype=variable.dtype))
            else:
                # The raw op writes into the variable's buffer; ``variable[a:b].assign`` reads the variable first,
                # and the read's reference makes TF copy the whole buffer before every block.
                for start in range(0, value.shape[0], rows):
                    block = np.asarray(value[start:start + rows], variable.dtype)
                    tf.raw_ops.ResourceStridedSliceAssign(
                        ref=variable.value.handle, begin=[start] + [0] * (value.ndim - 1),
                        end=[start + len(block)] + list(value.shape[1:]), strides=[1] * value.ndim, value=block)
                    if release_source and value.flags.c_contiguous:  # a row block of the file: its pages alone
                        release_pages(value[start:start + rows])
            if release_source:
                release_pages(weights[n])

    def num_parameters(self) -> int:
        """Number of parameters, tied ones counted once."""
        return int(sum(np.prod(s) for s in parameter_shapes(self.config, self.architecture).values()))

    # -------------------------------------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, config: XLMRobertaConfig | None = None, seed: int = 0,
                        ignore_mismatched_sizes: bool = False, **config_overrides: Any) -> "XLMRobertaPreTrainedModel":
        """Load a checkpoint folder written by HF or xlmr (safetensors, pytorch_model.bin, tf_model.h5 or
        flax_model.msgpack, sharded or not).

        Head weights the checkpoint lacks are initialised from ``seed`` with a warning naming them; a missing
        encoder weight or a mis-shaped tensor raises ``WeightsError`` naming it. Keyword arguments override
        fields of the checkpoint's config (``num_labels=3``).
        """
        config, weights, _ = load_pretrained(path, cls.architecture, config=config, config_overrides=config_overrides,
                                             seed=seed, ignore_mismatched_sizes=ignore_mismatched_sizes)
        model = cls(config, _initialise=False)
        model.load_canonical_state(weights, release_source=True)
        return model

    def save_pretrained(self, path: str | os.PathLike, format: str = "safetensors") -> None:
        """Write config.json and the weights under HF's names (``format``: safetensors, pt, tf or flax);
        ``format="tf"`` writes ``tf_model.h5``, which HF's TF classes load."""
        from xlmr.common.checkpoint import save_pretrained

        save_pretrained(path, self.config, self.canonical_state(), self.architecture, format=format)

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
        past = 0 if past_key_values is None else int(np.shape(past_key_values[0][0])[2])
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
        tensors = {k: _tensor(v) for k, v in inputs.items() if k in TENSOR_ARGUMENTS and v is not None}
        static = tuple(sorted((k, v) for k, v in inputs.items() if k in flags))
        self.validate_inputs(**{k: tensors.get(k) for k in _CHECKED})
        specs = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), tensors)
        key = (tuple(sorted((k, str(v)) for k, v in specs.items())), static)
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


# ------------------------------------------------------------------------------------------------ the encoder
class XLMRobertaModel(XLMRobertaPreTrainedModel):
    """The bare XLM-R encoder (or decoder, with ``config.is_decoder``): hidden states and the pooled first token.

    Bad input (ids outside the vocabulary, too-long sequences, out-of-range token types or positions) is
    refused before any lookup, with the shared messages of ``xlmr.common.inputs``:

    * eagerly: ValueError;
    * inside ``tf.function``: ``tf.errors.InvalidArgumentError`` carrying the same text (asserts that run first);
    * under XLA (``jit_compile=True``), which drops asserts and clamps out-of-range gathers: call
      ``model.compiled_call(...)`` (or ``xlmr.tf.checked_call(model, ...)``), which checks on the host and raises
      the ValueError before entering the XLA function. Inside your own ``jit_compile`` function, bad input
      turns every output into NaN instead (a flag computed in the graph), so it cannot pass as plausible numbers.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaModel
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaModel(config, seed=0)
        >>> out = model(input_ids=np.array([[0, 5, 6, 2]]))
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((1, 4, 32), (1, 32))
        >>> model.compiled_call(input_ids=np.array([[0, 500, 2]]))
        Traceback (most recent call last):
        ...
        ValueError: input_ids holds 500 at (0, 1), outside [0, 100) set by config.vocab_size=100
    """

    architecture = "XLMRobertaModel"
    serving_outputs = ("last_hidden_state", "pooler_output")

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, add_pooling_layer: bool = True,
                 **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.embeddings = Embeddings(config, name="embeddings")
        self.encoder = Encoder(config, name="encoder")
        self.pooler = Pooler(config, name="pooler") if add_pooling_layer else None
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.embeddings)
        build(self.encoder)
        if self.pooler is not None:
            build(self.pooler)

    def get_input_embeddings(self) -> keras.layers.Layer:
        return self.embeddings.word_embeddings

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        c = self.config
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        use_cache = (c.use_cache if use_cache is None else use_cache) and c.is_decoder
        (input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, encoder_hidden_states,
         encoder_attention_mask, past_key_values) = map(_tensor, (
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, encoder_hidden_states,
            encoder_attention_mask, past_key_values))
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        past_length: Any = 0
        if past_key_values is not None:
            past_length = past_key_values[0][0].shape[2]
            if past_length is None:  # traced with an unknown cache length
                past_length = tf.shape(past_key_values[0][0])[2]
        batch, length = tf.unstack(tf.shape(input_ids if input_ids is not None else inputs_embeds)[:2])

        # Concrete inputs: the shared eager check (again, if __call__ already ran it: it is cheap, and ``call``
        # may be invoked directly). Traced ones get asserts (or, under XLA, a flag).
        bad_input = None
        if checks.is_concrete(input_ids, attention_mask, token_type_ids, position_ids, past_key_values):
            checks.check_concrete(c, input_ids, attention_mask, token_type_ids, position_ids,
                                  None if inputs_embeds is None else tuple(inputs_embeds.shape), int(past_length))
        else:
            asserts, bad_input = checks.traced_checks(c, input_ids, attention_mask, token_type_ids, position_ids,
                                                      batch, length, past_length)
            if asserts:  # every lookup waits for the asserts, so TF's own gather error cannot come first
                with tf.control_dependencies(asserts):
                    input_ids, token_type_ids, position_ids, inputs_embeds = (
                        None if t is None else tf.identity(t)
                        for t in (input_ids, token_type_ids, position_ids, inputs_embeds))
                bad_input = None
        input_ids, token_type_ids, position_ids = (
            None if t is None else tf.cast(t, tf.int32) for t in (input_ids, token_type_ids, position_ids))

        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                 inputs_embeds=inputs_embeds, past_length=past_length, training=training)
        if bad_input is not None:  # XLA dropped the asserts: poison everything downstream instead
            hidden = hidden * tf.where(bad_input, tf.constant(np.nan, hidden.dtype), tf.ones((), hidden.dtype))
        bias = attention_bias(attention_mask, length, past_length, c.is_decoder, hidden.dtype)
        encoder_bias = None
        if c.is_decoder and encoder_hidden_states is not None and encoder_attention_mask is not None:
            encoder_bias = attention_bias(encoder_attention_mask, length, 0, False, hidden.dtype)
        hidden, cache, all_hidden, attentions, cross = self.encoder(
            hidden, bias=bias, head_mask=self._head_mask(_tensor(head_mask), hidden.dtype),
            encoder_hidden_states=encoder_hidden_states if c.is_decoder else None, encoder_bias=encoder_bias,
            past_key_values=past_key_values, past_length=past_length, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, training=training)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        if not return_dict:  # HF's tuple order puts the cache before the hidden states
            return tuple(v for v in (hidden, pooled, cache, all_hidden, attentions, cross) if v is not None)
        return O.BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden, past_key_values=cache,
            attentions=attentions, cross_attentions=cross)

    def _head_mask(self, head_mask: tf.Tensor | None, dtype: tf.DType) -> tf.Tensor | None:
        """[heads] or [layers, heads] (1 keeps a head) -> per layer a factor broadcasting over the probabilities."""
        if head_mask is None:
            return None
        head_mask = tf.cast(head_mask, dtype)
        if head_mask.shape.rank == 1:
            head_mask = tf.repeat(head_mask[None], self.config.num_hidden_layers, axis=0)
        if head_mask.shape.rank != 2:
            raise ValueError(f"head_mask must have shape (heads,) or (layers, heads), got {tuple(head_mask.shape)}")
        return head_mask[:, None, :, None, None]


class _WithEncoder(XLMRobertaPreTrainedModel):
    """A task class: ``roberta`` (the encoder; with the pooler only where HF keeps it) plus a head."""

    add_pooling_layer = False

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.roberta = XLMRobertaModel(config, add_pooling_layer=self.add_pooling_layer, _initialise=False,
                                       name="roberta")

    def _encode(self, arguments: dict[str, Any], **extra: Any) -> O.BaseModelOutputWithPoolingAndCrossAttentions:
        names = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds",
                 "output_attentions", "output_hidden_states", "training")
        return self.roberta(**{k: arguments[k] for k in names}, **extra, return_dict=True)


# ------------------------------------------------------------------------------------------------ language models
class XLMRobertaForCausalLM(_WithEncoder):
    """XLM-R as a left-to-right language model (``config.is_decoder=True``), with a key/value cache in HF's legacy
    layout (per layer: self key, self value[, cross key, cross value]) and optional cross-attention.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForCausalLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, is_decoder=True)
        >>> model = XLMRobertaForCausalLM(config, seed=0)
        >>> ids = np.array([[0, 5, 6, 7]])
        >>> full = model(input_ids=ids).logits
        >>> step = model(input_ids=ids[:, :3])
        >>> last = model(input_ids=ids[:, 3:], past_key_values=step.past_key_values).logits
        >>> bool(np.allclose(full[:, 3], last[:, 0], atol=1e-5))
        True
    """

    architecture = "XLMRobertaForCausalLM"

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        if not config.is_decoder:
            logger.warning("If you want to use XLMRobertaForCausalLM as a standalone, add `is_decoder=True.`")
        self.lm_head = LMHead(config, name="lm_head")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.lm_head)

    def generate(self, input_ids, attention_mask=None, **settings):  # see xlmr.tf.generation
        from xlmr.tf.generation import generate
        return generate(self, input_ids, attention_mask, **settings)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
             past_key_values=None, use_cache=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        if labels is not None:
            use_cache = False
        out = self._encode(locals(), encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values,
                           use_cache=use_cache)
        logits = self.lm_head(out.last_hidden_state, tied_embeddings=self.roberta.embeddings.word_embeddings.embeddings)
        result = O.CausalLMOutputWithCrossAttentions(
            logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.causal_lm_loss(output["logits"], _tensor(labels))


class XLMRobertaForMaskedLM(_WithEncoder):
    """XLM-R with its masked-language-model head (the pre-training objective); loss ignores label -100.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForMaskedLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMaskedLM(config, seed=0)
        >>> out = model(input_ids=np.array([[0, 5, 3, 2]]), labels=np.array([[-100, -100, 6, -100]]))
        >>> tuple(out.logits.shape), out.loss.shape.rank
        ((1, 4, 100), 0)
    """

    architecture = "XLMRobertaForMaskedLM"

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.lm_head = LMHead(config, name="lm_head")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.lm_head)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        out = self._encode(locals(), encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask, use_cache=False)
        logits = self.lm_head(out.last_hidden_state, tied_embeddings=self.roberta.embeddings.word_embeddings.embeddings)
        result = O.MaskedLMOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.cross_entropy(output["logits"], _tensor(labels))


# ------------------------------------------------------------------------------------------------ classifiers
class XLMRobertaForSequenceClassification(_WithEncoder):
    """Sentence(-pair) classification or regression from the first token (``config.num_labels`` outputs); the loss
    (MSE, cross-entropy or BCE with logits) is chosen as HF does (``xlmr.common.losses``).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForSequenceClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=3)
        >>> model = XLMRobertaForSequenceClassification(config, seed=0)
        >>> tuple(model(input_ids=np.array([[0, 5, 6, 2]]), labels=np.array([1])).logits.shape)
        (1, 3)
    """

    architecture = "XLMRobertaForSequenceClassification"

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.classifier = ClassificationHead(config, name="classifier")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        out = self._encode(locals(), use_cache=False)
        logits = self.classifier(out.last_hidden_state, training=training)
        result = O.SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.sequence_classification_loss(output["logits"], _tensor(labels), self.config)


class XLMRobertaForMultipleChoice(_WithEncoder):
    """Scores each of several candidate continuations; inputs are (batch, num_choices, sequence).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForMultipleChoice
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMultipleChoice(config, seed=0)
        >>> ids = np.array([[[0, 5, 6, 2], [0, 7, 8, 2], [0, 9, 9, 2]]])
        >>> tuple(model(input_ids=ids, labels=np.array([2])).logits.shape)
        (1, 3)
    """

    architecture = "XLMRobertaForMultipleChoice"
    add_pooling_layer = True

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.classifier = dense(1, "classifier")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier, (None, self.config.hidden_size))

    def call(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None, position_ids=None,
             head_mask=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        input_ids, token_type_ids, attention_mask, position_ids, inputs_embeds = map(
            _tensor, (input_ids, token_type_ids, attention_mask, position_ids, inputs_embeds))
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        shape = tuple(reference.shape if input_ids is not None else reference.shape[:-1])
        check_multiple_choice("input_ids" if input_ids is not None else "inputs_embeds", shape)
        num_choices = tf.shape(reference)[1]
        flat = {name: None if t is None else tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))
                for name, t in dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                                    position_ids=position_ids, inputs_embeds=inputs_embeds).items()}
        out = self.roberta(**flat, head_mask=head_mask, use_cache=False, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, training=training)
        logits = tf.reshape(self.classifier(self.dropout(out.pooler_output, training=training)), (-1, num_choices))
        result = O.MultipleChoiceModelOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.cross_entropy(output["logits"], _tensor(labels))


class XLMRobertaForTokenClassification(_WithEncoder):
    """A label per token (named entities, part of speech): dropout -> linear on every hidden state.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForTokenClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=5)
        >>> model = XLMRobertaForTokenClassification(config, seed=0)
        >>> tuple(model(input_ids=np.array([[0, 5, 6, 2]])).logits.shape)
        (1, 4, 5)
    """

    architecture = "XLMRobertaForTokenClassification"

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        rate = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = keras.layers.Dropout(rate)
        self.classifier = dense(config.num_labels, "classifier")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier, (None, None, self.config.hidden_size))

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        out = self._encode(locals(), use_cache=False)
        logits = self.classifier(self.dropout(out.last_hidden_state, training=training))
        result = O.TokenClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.cross_entropy(output["logits"], _tensor(labels))


class XLMRobertaForQuestionAnswering(_WithEncoder):
    """Extractive question answering: a start and an end logit per token.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.tf import XLMRobertaForQuestionAnswering
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForQuestionAnswering(config, seed=0)
        >>> out = model(input_ids=np.array([[0, 5, 6, 2]]), start_positions=np.array([1]), end_positions=np.array([2]))
        >>> tuple(out.start_logits.shape), tuple(out.end_logits.shape)
        ((1, 4), (1, 4))
    """

    architecture = "XLMRobertaForQuestionAnswering"
    serving_outputs = ("start_logits", "end_logits")

    def __init__(self, config: XLMRobertaConfig, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        self.qa_outputs = dense(config.num_labels, "qa_outputs")  # 2: start and end (common checks it)
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.qa_outputs, (None, None, self.config.hidden_size))

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**_unpack(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict)
        out = self._encode(locals(), use_cache=False)
        start_logits, end_logits = tf.unstack(self.qa_outputs(out.last_hidden_state), num=2, axis=-1)
        result = O.QuestionAnsweringModelOutput(start_logits=start_logits, end_logits=end_logits,
                                                hidden_states=out.hidden_states, attentions=out.attentions)
        if start_positions is not None and end_positions is not None:
            result.loss = self.hf_loss(result, (start_positions, end_positions))
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        """``labels``: (start_positions, end_positions), or a dict with those keys (a Keras target)."""
        if isinstance(labels, Mapping):
            labels = (labels["start_positions"], labels["end_positions"])
        start_positions, end_positions = map(_tensor, labels)
        return losses.question_answering_loss(output["start_logits"], output["end_logits"], start_positions,
                                              end_positions)
