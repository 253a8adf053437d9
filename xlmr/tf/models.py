"""The seven XLM-R classes as Keras 3 models (TensorFlow ops), with HF's variable paths, arguments and outputs.

How they run beyond a plain call (``fit``, ``compiled_call`` under XLA, SavedModel export) is
``xlmr.tf.runtime``; how bad input is caught in each execution mode, ``xlmr.tf.checks``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xlmr.common import outputs as O
from xlmr.common.checkpoint.base import release_pages
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import check_multiple_choice, check_past_key_values
from xlmr.common.loading import CheckpointWeights, PreTrainedModel, initialising, without_initialisation
from xlmr.common.weights import from_scheme_array, to_scheme_array, to_scheme_name
from xlmr.tf import checks, losses
from xlmr.tf.heads import ClassificationHead, LMHead
from xlmr.tf.layers import Embeddings, Encoder, Pooler, build, dense

from xlmr.tf.runtime import KerasRuntime, to_tensors, unpack_inputs

logger = logging.getLogger("xlmr")
_ASSIGN_BLOCK = 64 << 20  # bytes per assignment when loading a large tensor


# ------------------------------------------------------------------------------------------------ input helpers
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


# ------------------------------------------------------------------------------------------------ base class
class XLMRobertaPreTrainedModel(PreTrainedModel, KerasRuntime, keras.Model):
    """What every class shares: construction with HF's initialisation and the checkpoint contract
    (``from_pretrained``, ``save_pretrained``, ``num_parameters``: ``xlmr.common.loading.PreTrainedModel``);
    training, XLA and export come from ``xlmr.tf.runtime.KerasRuntime``.

    ``Cls(config, *, seed=None, name=None)`` makes the layers (``make_layers``), has Keras create every variable
    (``build``) and sets them to HF's initialisation (``xlmr.common.init``: the same seed gives the same weights
    in the PyTorch, TensorFlow and Flax backends); ``seed=None`` draws one from numpy's global generator, so
    ``keras.utils.set_random_seed`` governs it. Variables are reachable by the "tf" scheme of
    ``xlmr.common.weights``: ``model.get_variable("roberta.encoder.layer.0.attention.self.query.kernel")``.

    Bad input raises before any lookup: ValueError eagerly, InvalidArgumentError with the same text inside
    ``tf.function``; under XLA, which drops asserts, use ``compiled_call`` (checks on the host first, then runs
    the XLA function) — see ``XLMRobertaModel`` and ``xlmr.tf.checks``.
    """

    architecture = "XLMRobertaModel"  # HF class name: selects the row set of xlmr.common.weights

    def __init__(self, config: XLMRobertaConfig, *, seed: int | None = None, name: str | None = None,
                 **layer_options: Any):
        super().__init__(name=name)
        self.config = self.check_config(config)
        with without_initialisation():
            self.make_layers(config, **layer_options)
        self.build()  # Keras' step: create the variables
        if initialising():
            self.initialise(int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed))

    def make_layers(self, config: XLMRobertaConfig) -> None:
        """Create the sublayers (their variables come with ``build``, their values afterwards)."""
        raise NotImplementedError

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
                for n in self.parameter_shapes()}

    def canonical_state(self) -> dict[str, np.ndarray]:
        """{canonical (HF) name: numpy array in PyTorch's layout} of every unique parameter."""
        return {n: np.ascontiguousarray(from_scheme_array(self.get_variable(to_scheme_name(n, "tf")).numpy(), n,
                                                          "tf"))
                for n in self.parameter_shapes()}

    def load_canonical_state(self, weights: Mapping[str, Any]) -> None:
        """Assign ``weights`` (canonical name -> array, exactly this model's parameters) to the variables.

        Raises WeightsError naming every missing, unexpected or mis-shaped tensor before assigning anything.
        Arrays of a ``CheckpointWeights`` (memory-mapped by ``from_pretrained``, read by nobody else) have their
        file pages dropped once copied, so loading peaks near one copy of the weights.
        """
        self.check_canonical_state(weights)
        release_source = isinstance(weights, CheckpointWeights)
        shapes = self.parameter_shapes()
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

    def apply_quantization(self, mode: str) -> Any:
        """``xlmr.tf.quantize.quantize(self, mode)``: the hook of ``from_pretrained(..., quantize=mode)``."""
        from xlmr.tf.quantize import quantize

        return quantize(self, mode)

    # -------------------------------------------------------------------------------------------- training
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them
        (``tf.recompute_grad``; same gradients). Layers asked for attentions or a cache run as usual."""
        for module in self._flatten_layers():
            if isinstance(module, Encoder):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self._flatten_layers():
            if isinstance(module, Encoder):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(isinstance(m, Encoder) and m.gradient_checkpointing for m in self._flatten_layers())


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

    def make_layers(self, config: XLMRobertaConfig, add_pooling_layer: bool = True) -> None:
        self.embeddings = Embeddings(config, name="embeddings")
        self.encoder = Encoder(config, name="encoder")
        self.pooler = Pooler(config, name="pooler") if add_pooling_layer else None

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
            return self.call(**unpack_inputs(dict(locals())))
        c = self.config
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        use_cache = (c.use_cache if use_cache is None else use_cache) and c.is_decoder
        (input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, encoder_hidden_states,
         encoder_attention_mask, past_key_values) = map(to_tensors, (
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, encoder_hidden_states,
            encoder_attention_mask, past_key_values))
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        check_past_key_values(c, past_key_values, input_ids if input_ids is not None else inputs_embeds)
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
        if self.encoder.gradient_checkpointing and training:
            use_cache = False  # the cache would hold activations that checkpointing means to drop
        hidden, cache, all_hidden, attentions, cross = self.encoder(
            hidden, bias=bias, head_mask=self._head_mask(to_tensors(head_mask), hidden.dtype),
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


# ------------------------------------------------------------------------------------------------ language models
class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        if not config.is_decoder:
            logger.warning("If you want to use XLMRobertaForCausalLM as a standalone, add `is_decoder=True.`")
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, name="roberta")
        self.lm_head = LMHead(config, name="lm_head")

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
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        if labels is not None:
            use_cache = False
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        result = O.CausalLMOutputWithCrossAttentions(
            logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.causal_lm_loss(output["logits"], to_tensors(labels))


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, name="roberta")
        self.lm_head = LMHead(config, name="lm_head")

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.lm_head)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        result = O.MaskedLMOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.cross_entropy(output["logits"], to_tensors(labels))


# ------------------------------------------------------------------------------------------------ classifiers
class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, name="roberta")
        self.classifier = ClassificationHead(config, name="classifier")

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training)
        logits = self.classifier(out.last_hidden_state, training=training)
        result = O.SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.sequence_classification_loss(output["logits"], to_tensors(labels), self.config)


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, name="roberta")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.classifier = dense(1, "classifier")

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier, (None, self.config.hidden_size))

    def call(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None, position_ids=None,
             head_mask=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        input_ids, token_type_ids, attention_mask, position_ids, inputs_embeds = map(
            to_tensors, (input_ids, token_type_ids, attention_mask, position_ids, inputs_embeds))
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
        return losses.cross_entropy(output["logits"], to_tensors(labels))


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, name="roberta")
        self.dropout = keras.layers.Dropout(config.classifier_dropout_rate)
        self.classifier = dense(config.num_labels, "classifier")

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.classifier, (None, None, self.config.hidden_size))

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training)
        logits = self.classifier(self.dropout(out.last_hidden_state, training=training))
        result = O.TokenClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        if labels is not None:
            result.loss = self.hf_loss(result, labels)
        return result if return_dict else result.to_tuple()

    def hf_loss(self, output: Mapping[str, tf.Tensor], labels: Any) -> tf.Tensor:
        return losses.cross_entropy(output["logits"], to_tensors(labels))


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
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

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, name="roberta")
        self.qa_outputs = dense(config.num_labels, "qa_outputs")  # 2: start and end (common checks it)

    def build(self, input_shape: Any = None) -> None:
        build(self.roberta)
        build(self.qa_outputs, (None, None, self.config.hidden_size))

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
             inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        if isinstance(input_ids, Mapping):
            return self.call(**unpack_inputs(dict(locals())))
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training)
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
        start_positions, end_positions = map(to_tensors, labels)
        return losses.question_answering_loss(output["start_logits"], output["end_logits"], start_positions,
                                              end_positions)
