"""XLM-R models in Flax NNX: the base model and the six task classes, with loading and saving.

Example:
    >>> import numpy as np
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.flax import XLMRobertaForSequenceClassification
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=37, max_position_embeddings=64)
    >>> model = XLMRobertaForSequenceClassification(config)          # HF's initialisation, seed 0
    >>> out = model(input_ids=np.array([[0, 5, 6, 2]]), labels=np.array([1]))
    >>> out.logits.shape, out.loss.shape
    ((1, 2), ())

Inputs may be numpy or JAX arrays. Called with concrete arrays, a model validates them first
(``xlmr.common.inputs.check_inputs``) and raises ValueError for ids, token types or positions out of range and
for sequences longer than the position table, because JAX gathers clamp or fill silently. Under ``jax.jit`` /
``nnx.jit`` the inputs are tracers: shapes, and so the sequence length against the limit, are still checked at
trace time, but values cannot be. Use ``xlmr.flax.checked_call`` (checkify, same messages) or validate before
the jitted call when inputs come from outside.

Numbers match HF's PyTorch classes to 1e-5 in float32 on CPU, where XLA's float32 matmuls are exact. On GPU
and TPU, XLA's default precision for float32 matmuls may be lower (TF32 / bf16 passes); for the same numbers
there, set ``jax.config.update("jax_default_matmul_precision", "highest")``.

Models are built in eval mode (dropout off); ``model.train()`` / ``model.eval()`` switch, and
``deterministic=`` on a call overrides for that call. Dropout draws from the ``nnx.Rngs`` the model was built
with (seed 0 when none was given).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xlmr.common.checkpoint.base import release_pages
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import check_multiple_choice, sequence_too_long_message
from xlmr.common.loading import CheckpointWeights, PreTrainedModel, initialising, without_initialisation
from xlmr.common.weights import from_scheme_array, from_scheme_name, to_scheme_array
from xlmr.flax import losses
from xlmr.flax.checks import check_model_inputs
from xlmr.flax import outputs as O
from xlmr.flax.heads import ClassificationHead, LMHead
from xlmr.flax.layers import Embeddings, Encoder, KVCache, Pooler, dropout, linear, past_length_of

SCHEME = "flax"


# ------------------------------------------------------------------------------------------------ input helpers
def attention_bias(mask: Any, query_length: int, past_length: Any, causal: bool,
                   key_length: int | None = None) -> jax.Array:
    """Additive attention mask (batch or 1, 1, query, key), float32: 0 where query i may see key j, float32's
    minimum elsewhere (scores are float32 whatever the compute dtype).

    Key j is visible when ``mask[:, j]`` is set and, for a causal decoder, j <= past_length + i. A KVCache has
    ``key_length`` slots of which past_length + query_length are filled; the rest are hidden too.
    """
    in_place = key_length is not None
    key_length = key_length if in_place else past_length + query_length
    keep = jnp.ones((1, 1, 1, key_length), bool) if mask is None else (jnp.asarray(mask) != 0)[:, None, None, :]
    columns, rows = jnp.arange(key_length)[None, :], past_length + jnp.arange(query_length)[:, None]
    if causal:
        keep = keep & (columns <= rows)
    elif in_place:
        keep = keep & (columns < past_length + query_length)
    return jnp.where(keep, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


class _StaticConfig:
    """Holds the config in the module tree, hashed and compared by value, so that the GraphDef of ``nnx.split``
    can be a static argument of ``jax.jit`` (the config dataclass itself is unhashable)."""

    __slots__ = ("config",)

    def __init__(self, config: XLMRobertaConfig):
        self.config = config

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _StaticConfig) and self.config == other.config

    def __hash__(self) -> int:
        return hash(self.config.to_json_string())


# ------------------------------------------------------------------------------------------------ base class
class XLMRobertaPreTrainedModel(PreTrainedModel, nnx.Module):
    """What every class shares: construction with HF's initialisation and the checkpoint contract
    (``from_pretrained``, ``save_pretrained``, ``num_parameters``: ``xlmr.common.loading.PreTrainedModel``).

    ``Cls(config, *, seed=None, rngs=None, dtype=jnp.float32, param_dtype=jnp.float32)`` makes the layers
    (``make_layers``) with zero parameters, then assigns HF's random initialisation from ``xlmr.common.init``
    with an int seed (``seed``; else drawn from ``rngs.params()``; else 0): the same seed gives the same weights
    in the PyTorch, TensorFlow and Flax backends. ``rngs`` also feeds dropout. ``dtype`` is the compute dtype
    (bfloat16 keeps softmax, LayerNorm statistics and losses in float32); ``param_dtype`` the storage dtype of
    the parameters. ``from_pretrained`` also takes ``dtype=`` and ``param_dtype=``.
    """

    architecture = "XLMRobertaModel"  # HF class name: selects the row set of xlmr.common.weights
    pretrained_options = ("dtype", "param_dtype")

    def __init__(self, config: XLMRobertaConfig, *, seed: int | None = None, rngs: nnx.Rngs | None = None,
                 dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, **layer_options: Any):
        self._config = _StaticConfig(self.check_config(config))
        self.dtype, self.param_dtype = jnp.dtype(dtype), jnp.dtype(param_dtype)  # also "bfloat16" etc.
        rngs, seed = self._streams(rngs, seed)
        with without_initialisation():
            self.make_layers(config, rngs, **layer_options)
        if initialising():
            self.initialise(seed)

    @property
    def config(self) -> XLMRobertaConfig:
        return self._config.config

    def _streams(self, rngs: nnx.Rngs | None, seed: int | None) -> tuple[nnx.Rngs, int]:
        """The random streams for dropout and the int seed of the initialisation (drawn before any layer is made,
        so that one ``nnx.Rngs`` gives one model)."""
        if rngs is None:
            return nnx.Rngs(0), 0 if seed is None else int(seed)
        if not initialising():  # a nested encoder or a checkpoint's model: nothing to draw
            return rngs, 0
        if seed is None:
            seed = int(jax.random.randint(rngs.params(), (), 0, np.iinfo(np.int32).max))
        if "dropout" not in rngs and "default" not in rngs:  # e.g. nnx.Rngs(params=1): dropout keys from params
            rngs = nnx.Rngs(params=rngs.params(), dropout=rngs.params())
        return rngs, int(seed)

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        """Create the submodules (with zero parameters; the weights are assigned afterwards)."""
        raise NotImplementedError

    def _kw(self, rngs: nnx.Rngs) -> dict[str, Any]:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype, rngs=rngs)

    # -------------------------------------------------------------------------------------------- weights
    def _named_params(self) -> dict[str, nnx.Param]:
        """{canonical name: Param} for every parameter (the NNX path, e.g. ``...query.kernel``, via the table)."""
        return {from_scheme_name(".".join(map(str, path)), SCHEME): node
                for path, node in nnx.iter_graph(self) if isinstance(node, nnx.Param)}

    def canonical_state(self) -> dict[str, np.ndarray]:
        """{canonical (HF) name: numpy array in PyTorch layout}; half-precision parameters come back as float32."""
        params = self._named_params()
        state = {}
        for name in self.parameter_shapes():
            array = np.asarray(params[name][...])
            if array.dtype != np.float64 and array.itemsize < 4:
                array = array.astype(np.float32)
            state[name] = from_scheme_array(array, name, SCHEME)
        return state

    def load_canonical_state(self, weights: Mapping[str, Any]) -> None:
        """Make ``weights`` (canonical name -> array, exactly this model's parameters) the model's parameters,
        cast to ``param_dtype``. WeightsError lists every missing, unexpected or mis-shaped tensor at once.

        Arrays of a ``CheckpointWeights`` (``from_pretrained``) have their file pages dropped once they are
        parameters, so loading peaks near one copy of the weights."""
        self.check_canonical_state(weights)
        release_source = isinstance(weights, CheckpointWeights)
        for name, param in self._named_params().items():
            param[...] = jnp.asarray(to_scheme_array(np.asarray(weights[name]), name, SCHEME), self.param_dtype)
            if release_source:
                release_pages(weights[name])

    def apply_quantization(self, mode: str) -> Any:
        """``xlmr.flax.quantize.quantize(self, mode)``: the hook of ``from_pretrained(..., quantize=mode)``."""
        from xlmr.flax.quantize import quantize

        return quantize(self, mode)

    # -------------------------------------------------------------------------------------------- training
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them (``nnx.remat``;
        same gradients). Set it before the training step is traced: jit sees the flag when it compiles."""
        for _, module in nnx.iter_graph(self):
            if isinstance(module, Encoder):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for _, module in nnx.iter_graph(self):
            if isinstance(module, Encoder):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(isinstance(m, Encoder) and m.gradient_checkpointing for _, m in nnx.iter_graph(self))

    # -------------------------------------------------------------------------------------------- decoding
    def init_cache(self, batch_size: int, max_length: int) -> KVCache:
        """A zeroed fixed-length KVCache, for decoding under jit with one compilation per input shape.

        Pass it as ``past_key_values``: each call writes its keys/values at the cache's index and returns the
        advanced cache as ``past_key_values``. An ``attention_mask``, when given, covers the whole cache:
        (batch, max_length). The legacy growing tuples work too (eagerly, or under jit with a retrace per length).
        """
        config = self.config
        if not config.is_decoder:
            raise ValueError("init_cache needs config.is_decoder=True: only decoders use a key/value cache (as HF)")
        if max_length > config.max_sequence_length:
            raise ValueError(sequence_too_long_message(max_length, 0, config))
        shape = (batch_size, config.num_attention_heads, max_length, config.head_dim)
        layers = tuple((jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype))
                       for _ in range(config.num_hidden_layers))
        return KVCache(layers, jnp.zeros((), jnp.int32))


# ------------------------------------------------------------------------------------------------ the encoder
class XLMRobertaModel(XLMRobertaPreTrainedModel):
    """The bare XLM-R encoder (or decoder, with ``config.is_decoder``): hidden states and the pooled first token.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaModel
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaModel(config)
        >>> out = model(np.array([[0, 5, 6, 2, 1]]), attention_mask=np.array([[1, 1, 1, 1, 0]]))
        >>> out.last_hidden_state.shape, out.pooler_output.shape
        ((1, 5, 32), (1, 32))
    """

    architecture = "XLMRobertaModel"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs, add_pooling_layer: bool = True) -> None:
        self.embeddings = Embeddings(config, **self._kw(rngs))
        self.encoder = Encoder(config, **self._kw(rngs))
        self.pooler = Pooler(config, **self._kw(rngs)) if add_pooling_layer else None

    def get_input_embeddings(self) -> nnx.Embed:
        return self.embeddings.word_embeddings

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                 use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                 deterministic=None):
        c = self.config
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        use_cache = (c.use_cache if use_cache is None else use_cache) and c.is_decoder
        _, length = check_model_inputs(c, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       past_key_values)
        past_length = past_length_of(past_key_values)
        input_ids, token_type_ids, position_ids = (None if x is None else jnp.asarray(x)
                                                   for x in (input_ids, token_type_ids, position_ids))
        inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)

        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length, deterministic)
        key_length = past_key_values.max_length if isinstance(past_key_values, KVCache) else None
        bias = attention_bias(attention_mask, length, past_length, c.is_decoder, key_length)
        encoder_bias = None
        if c.is_decoder and encoder_hidden_states is not None:
            encoder_hidden_states = jnp.asarray(encoder_hidden_states, self.dtype)
            if encoder_attention_mask is not None:
                encoder_bias = attention_bias(encoder_attention_mask, length, 0, False)
        else:
            encoder_hidden_states = None
        hidden, cache, all_hidden, attentions, cross = self.encoder(
            hidden, bias, self._head_mask(head_mask), encoder_hidden_states, encoder_bias, past_key_values,
            past_length, use_cache, output_attentions, output_hidden_states, deterministic)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        if not return_dict:  # HF's tuple order puts the cache before the hidden states
            return tuple(v for v in (hidden, pooled, cache, all_hidden, attentions, cross) if v is not None)
        return O.BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden, past_key_values=cache,
            attentions=attentions, cross_attentions=cross)

    def _head_mask(self, head_mask):
        """[heads] or [layers, heads] (1 keeps a head) -> per layer a factor broadcasting over the probabilities."""
        if head_mask is None:
            return None
        head_mask = jnp.asarray(head_mask, jnp.float32)
        if head_mask.ndim == 1:
            head_mask = jnp.broadcast_to(head_mask[None], (self.config.num_hidden_layers, head_mask.shape[0]))
        return head_mask[:, None, :, None, None]


# ------------------------------------------------------------------------------------------------ language models
class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """XLM-R as a left-to-right language model (``config.is_decoder=True``), with a key/value cache.

    Example (token-by-token decoding under jit with a fixed-length cache: one compilation):
        >>> import numpy as np
        >>> from flax import nnx
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForCausalLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, is_decoder=True)
        >>> model = XLMRobertaForCausalLM(config)
        >>> ids = np.array([[0, 5, 6, 7]])
        >>> step = nnx.jit(lambda m, ids, cache: m(ids, past_key_values=cache))
        >>> cache = model.init_cache(batch_size=1, max_length=8)
        >>> for t in range(4):
        ...     out = step(model, ids[:, t:t + 1], cache)
        ...     cache = out.past_key_values
        >>> bool(np.allclose(model(ids).logits[:, 3], out.logits[:, 0], atol=1e-5)), int(cache.index)
        (True, 4)
    """

    architecture = "XLMRobertaForCausalLM"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, **self._kw(rngs))
        self.lm_head = LMHead(config, **self._kw(rngs))

    def generate(self, input_ids, attention_mask=None, **settings):  # see xlmr.flax.generation
        from xlmr.flax.generation import generate
        return generate(self, input_ids, attention_mask, **settings)

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                 past_key_values=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                 return_dict=None, deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        if labels is not None:
            use_cache = False
        out = self.roberta(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
                           encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
                           past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, deterministic=deterministic)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        loss = losses.causal_lm_loss(logits, labels) if labels is not None else None
        result = O.CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """XLM-R with its masked-language-model head (the pre-training objective).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForMaskedLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMaskedLM(config)
        >>> out = model(np.array([[0, 5, 3, 2]]), labels=np.array([[-100, -100, 6, -100]]))
        >>> out.logits.shape, out.loss.ndim
        ((1, 4, 100), 0)
    """

    architecture = "XLMRobertaForMaskedLM"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, **self._kw(rngs))
        self.lm_head = LMHead(config, **self._kw(rngs))

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                 output_attentions=None, output_hidden_states=None, return_dict=None, deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
                           encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
                           use_cache=False, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, deterministic=deterministic)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()


# ------------------------------------------------------------------------------------------------ classifiers
class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """Sentence(-pair) classification or regression from the first token (``config.num_labels`` outputs).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForSequenceClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=3)
        >>> model = XLMRobertaForSequenceClassification(config)
        >>> model(np.array([[0, 5, 6, 2]]), labels=np.array([1])).logits.shape
        (1, 3)
    """

    architecture = "XLMRobertaForSequenceClassification"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, **self._kw(rngs))
        self.classifier = ClassificationHead(config, **self._kw(rngs))

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                 deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
                           use_cache=False, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, deterministic=deterministic)
        logits = self.classifier(out.last_hidden_state, deterministic)
        loss = losses.sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        result = O.SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                            attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """Scores each of several candidate continuations; inputs are (batch, num_choices, sequence).

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForMultipleChoice
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMultipleChoice(config)
        >>> ids = np.array([[[0, 5, 6, 2], [0, 7, 8, 2], [0, 9, 9, 2]]])
        >>> model(ids, labels=np.array([2])).logits.shape
        (1, 3)
    """

    architecture = "XLMRobertaForMultipleChoice"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, **self._kw(rngs))
        self.dropout = dropout(config.hidden_dropout_prob, rngs)
        self.classifier = linear(config.hidden_size, 1, **self._kw(rngs))

    def __call__(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None, position_ids=None,
                 head_mask=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
                 return_dict=None, deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        shape = tuple(np.shape(input_ids) if input_ids is not None else np.shape(inputs_embeds)[:-1])
        check_multiple_choice("input_ids" if input_ids is not None else "inputs_embeds", shape)
        flat = {name: None if t is None else jnp.asarray(t).reshape(-1, np.shape(t)[-1])
                for name, t in dict(input_ids=input_ids, token_type_ids=token_type_ids,
                                    attention_mask=attention_mask, position_ids=position_ids).items()}
        if inputs_embeds is not None:
            inputs_embeds = jnp.asarray(inputs_embeds).reshape(-1, *np.shape(inputs_embeds)[-2:])
        out = self.roberta(**flat, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True, deterministic=deterministic)
        pooled = self.dropout(out.pooler_output, deterministic=deterministic)
        logits = self.classifier(pooled).reshape(-1, shape[1])
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                             attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """A label per token (named entities, part of speech): dropout -> linear on every hidden state.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForTokenClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=5)
        >>> model = XLMRobertaForTokenClassification(config)
        >>> model(np.array([[0, 5, 6, 2]])).logits.shape
        (1, 4, 5)
    """

    architecture = "XLMRobertaForTokenClassification"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, **self._kw(rngs))
        self.dropout = dropout(config.classifier_dropout_rate, rngs)
        self.classifier = linear(config.hidden_size, config.num_labels, **self._kw(rngs))

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                 deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
                           use_cache=False, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, deterministic=deterministic)
        logits = self.classifier(self.dropout(out.last_hidden_state, deterministic=deterministic))
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                         attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """Extractive question answering: a start and an end logit per token.

    Example:
        >>> import numpy as np
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.flax import XLMRobertaForQuestionAnswering
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForQuestionAnswering(config)
        >>> out = model(np.array([[0, 5, 6, 2]]), start_positions=np.array([1]), end_positions=np.array([2]))
        >>> out.start_logits.shape, out.end_logits.shape
        ((1, 4), (1, 4))
    """

    architecture = "XLMRobertaForQuestionAnswering"

    def make_layers(self, config: XLMRobertaConfig, rngs: nnx.Rngs) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False, **self._kw(rngs))
        self.qa_outputs = linear(config.hidden_size, config.num_labels, **self._kw(rngs))  # 2: start and end

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                 inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                 output_hidden_states=None, return_dict=None, deterministic=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
                           use_cache=False, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True, deterministic=deterministic)
        logits = self.qa_outputs(out.last_hidden_state)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        result = O.QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                                hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()
