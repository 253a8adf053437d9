"""The seven XLM-R classes as ``torch.nn.Module``s, with HF's parameter names, arguments and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from xlmr.common import outputs as O
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.inputs import check_multiple_choice
from xlmr.common.loading import PreTrainedModel, initialising, without_initialisation
from xlmr.pt import losses
from xlmr.pt.checks import check_model_inputs, index_tensors, past_length_of
from xlmr.pt.fast_linear import linear
from xlmr.pt.heads import ClassificationHead, LMHead
from xlmr.pt.layers import Embeddings, Encoder, Pooler


# ------------------------------------------------------------------------------------------------ input helpers
def attention_bias(mask: torch.Tensor | None, query_length: int, past_length: int, causal: bool,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """Additive attention mask (batch or 1, 1, query, key): 0 where query i may see key j, dtype's minimum elsewhere.

    Key j is visible when ``mask[:, j]`` is set and, for a causal decoder, j <= past_length + i. Returns None when
    nothing is masked, which lets scaled_dot_product_attention run its unmasked kernel.
    """
    if mask is None and not causal:
        return None
    if mask is not None and not causal and mask.device.type == "cpu" and bool(mask.all()):
        return None
    key_length = past_length + query_length
    keep = torch.ones((1, 1, 1, key_length), dtype=torch.bool, device=device) if mask is None \
        else mask[:, None, None, :].to(device=device, dtype=torch.bool)
    if causal:
        query = torch.arange(past_length, key_length, device=device)[:, None]
        keep = keep & (torch.arange(key_length, device=device)[None, :] <= query)
    return torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill_(~keep, torch.finfo(dtype).min)


# ------------------------------------------------------------------------------------------------ base class
def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


class XLMRobertaPreTrainedModel(PreTrainedModel, nn.Module):
    """What every class shares: construction with HF's initialisation, weight tying and the checkpoint contract
    (``from_pretrained``, ``save_pretrained``, ``num_parameters``: ``xlmr.common.loading.PreTrainedModel``).

    ``Cls(config, *, seed=None, dtype=None)`` makes the layers (``make_layers``) and sets them to HF's random
    initialisation (``xlmr.common.init``: the same seed gives the same weights in the PyTorch, TensorFlow and
    Flax backends); ``seed=None`` draws one from torch's global generator, so ``torch.manual_seed`` governs it.
    Layers are made on the meta device and the weights assigned afterwards, so no time goes into torch's own
    initialisation. Under ``with torch.device("meta")`` or ``without_initialisation()`` nothing is assigned
    (``from_pretrained`` assigns a checkpoint's weights). ``from_pretrained`` also takes ``dtype=``.
    """

    architecture = "XLMRobertaModel"  # HF class name: selects the row set of xlmr.common.weights
    pretrained_options = ("dtype",)

    def __init__(self, config: XLMRobertaConfig, *, seed: int | None = None, dtype: torch.dtype | str | None = None,
                 **layer_options: Any):
        super().__init__()
        self.config = self.check_config(config)
        device = torch.get_default_device()
        with torch.device("meta"), without_initialisation():
            self.make_layers(config, **layer_options)
        if dtype is not None:
            self.to(dtype=_torch_dtype(dtype))  # still on the meta device: nothing is allocated
        self.tie_weights()
        if initialising() and device.type != "meta":
            self.initialise(int(torch.randint(0, 2**31 - 1, (), device="cpu")) if seed is None else seed)

    def make_layers(self, config: XLMRobertaConfig) -> None:
        """Create the submodules (on the meta device; their weights are assigned afterwards)."""
        raise NotImplementedError

    def tie_weights(self) -> None:
        """Share the LM head's decoder weight with the word embeddings (unless untied) and its bias with
        ``lm_head.bias``, as HF does."""
        head = getattr(self, "lm_head", None)
        if head is None:
            return
        head.decoder.bias = head.bias
        if self.config.tie_word_embeddings:
            head.decoder.weight = self.roberta.embeddings.word_embeddings.weight

    # -------------------------------------------------------------------------------------------- weights
    def canonical_state(self) -> dict[str, np.ndarray]:
        """{canonical (HF) name: numpy array} of every unique parameter; CPU float32 tensors are shared, not copied."""
        state = {}
        for name, p in self.named_parameters():
            t = p.detach().cpu()
            state[name] = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
        return state

    def load_canonical_state(self, weights: Mapping[str, Any]) -> None:
        """Make ``weights`` (canonical name -> array, exactly this model's parameters) the model's parameters, in
        each parameter's dtype and on its device (a meta parameter: the default device, or the CPU).

        The arrays replace the parameters (``assign``-style), so this also fills a model made on the meta device;
        a writeable CPU float32 array is viewed, not copied (``from_pretrained`` keeps the checkpoint's mapping).
        """
        self.check_canonical_state(weights)
        default = torch.get_default_device()
        default = torch.device("cpu") if default.type == "meta" else default
        for name, old in dict(self.named_parameters()).items():
            array = np.asarray(weights[name])
            value = torch.from_numpy(array if array.flags.writeable else array.copy())
            value = value.to(device=default if old.is_meta else old.device, dtype=old.dtype)
            module_name, _, leaf = name.rpartition(".")
            setattr(self.get_submodule(module_name), leaf, nn.Parameter(value, requires_grad=old.requires_grad))
        self.tie_weights()

    def apply_quantization(self, mode: str) -> Any:
        """``xlmr.pt.quantize.quantize(self, mode)``: the hook of ``from_pretrained(..., quantize=mode)``."""
        from xlmr.pt.quantize import quantize

        return quantize(self, mode)

    def checkpoint_dtype(self) -> str | None:
        """The parameters' dtype when half precision: ``save_pretrained`` writes the weights as they are."""
        return {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(next(self.parameters()).dtype)

    # -------------------------------------------------------------------------------------------- training
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them (same gradients)."""
        for module in self.modules():
            if isinstance(module, Encoder):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, Encoder):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(isinstance(m, Encoder) and m.gradient_checkpointing for m in self.modules())


# ------------------------------------------------------------------------------------------------ the encoder
class XLMRobertaModel(XLMRobertaPreTrainedModel):
    """The bare XLM-R encoder (or decoder, with ``config.is_decoder``): hidden states and the pooled first token.

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaModel
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaModel(config, seed=0).eval()
        >>> out = model(torch.tensor([[0, 5, 6, 2]]))
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((1, 4, 32), (1, 32))
    """

    architecture = "XLMRobertaModel"

    def make_layers(self, config: XLMRobertaConfig, add_pooling_layer: bool = True) -> None:
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        c = self.config
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        use_cache = (c.use_cache if use_cache is None else use_cache) and c.is_decoder
        _, length = check_model_inputs(c, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       past_key_values)
        past_length = past_length_of(past_key_values)
        input_ids, token_type_ids, position_ids = index_tensors(input_ids, token_type_ids, position_ids)

        if not c.is_decoder:
            encoder_hidden_states = None  # as in HF, only decoders attend to an encoder
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)
        length = hidden.shape[1]  # a size the ONNX tracer follows; check_model_inputs' Python int would be frozen into the graph
        bias = attention_bias(attention_mask, length, past_length, c.is_decoder, hidden.dtype, hidden.device)
        encoder_bias = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            encoder_bias = attention_bias(encoder_attention_mask, length, 0, False, hidden.dtype, hidden.device)
        if self.encoder.gradient_checkpointing and self.training:
            use_cache = False  # the cache would hold activations that checkpointing means to drop
        hidden, cache, all_hidden, attentions, cross = self.encoder(
            hidden, bias, self._head_mask(head_mask, hidden.dtype), encoder_hidden_states, encoder_bias,
            past_key_values, past_length, use_cache, output_attentions, output_hidden_states)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        if not return_dict:  # HF's tuple order puts the cache before the hidden states
            return tuple(v for v in (hidden, pooled, cache, all_hidden, attentions, cross) if v is not None)
        return O.BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden, past_key_values=cache,
            attentions=attentions, cross_attentions=cross)

    def _head_mask(self, head_mask, dtype):
        """[heads] or [layers, heads] (1 keeps a head) -> per layer a factor broadcasting over the probabilities."""
        if head_mask is None:
            return None
        if head_mask.dim() == 1:
            head_mask = head_mask[None].expand(self.config.num_hidden_layers, -1)
        return head_mask[:, None, :, None, None].to(dtype)


# ------------------------------------------------------------------------------------------------ language models
class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """XLM-R as a left-to-right language model (``config.is_decoder=True``), with a key/value cache.

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForCausalLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, is_decoder=True)
        >>> model = XLMRobertaForCausalLM(config, seed=0).eval()
        >>> ids = torch.tensor([[0, 5, 6, 7]])
        >>> full = model(ids).logits
        >>> step = model(ids[:, :3])
        >>> last = model(ids[:, 3:], past_key_values=step.past_key_values).logits
        >>> bool(torch.allclose(full[:, 3], last[:, 0], atol=1e-5))
        True
    """

    architecture = "XLMRobertaForCausalLM"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)

    def generate(self, input_ids, attention_mask=None, **settings):  # see xlmr.pt.generation
        from xlmr.pt.generation import generate
        return generate(self, input_ids, attention_mask, **settings)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                past_key_values=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        if labels is not None:
            use_cache = False
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        loss = losses.causal_lm_loss(logits, labels) if labels is not None else None
        result = O.CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """XLM-R with its masked-language-model head (the pre-training objective).

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForMaskedLM
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMaskedLM(config, seed=0).eval()
        >>> out = model(torch.tensor([[0, 5, 3, 2]]), labels=torch.tensor([[-100, -100, 6, -100]]))
        >>> tuple(out.logits.shape), out.loss.ndim
        ((1, 4, 100), 0)
    """

    architecture = "XLMRobertaForMaskedLM"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state, word_embeddings=self.roberta.embeddings.word_embeddings)
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()


# ------------------------------------------------------------------------------------------------ classifiers
class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """Sentence(-pair) classification or regression from the first token (``config.num_labels`` outputs).

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForSequenceClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=3)
        >>> model = XLMRobertaForSequenceClassification(config, seed=0).eval()
        >>> tuple(model(torch.tensor([[0, 5, 6, 2]]), labels=torch.tensor([1])).logits.shape)
        (1, 3)
    """

    architecture = "XLMRobertaForSequenceClassification"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.classifier = ClassificationHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(out.last_hidden_state)
        loss = losses.sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        result = O.SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                            attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """Scores each of several candidate continuations; inputs are (batch, num_choices, sequence).

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForMultipleChoice
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForMultipleChoice(config, seed=0).eval()
        >>> ids = torch.tensor([[[0, 5, 6, 2], [0, 7, 8, 2], [0, 9, 9, 2]]])
        >>> tuple(model(ids, labels=torch.tensor([2])).logits.shape)
        (1, 3)
    """

    architecture = "XLMRobertaForMultipleChoice"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None, position_ids=None,
                head_mask=None, inputs_embeds=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        shape = tuple(input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1])
        check_multiple_choice("input_ids" if input_ids is not None else "inputs_embeds", shape)
        flat = {name: None if t is None else t.reshape(-1, t.shape[-1])
                for name, t in dict(input_ids=input_ids, token_type_ids=token_type_ids,
                                    attention_mask=attention_mask, position_ids=position_ids).items()}
        if inputs_embeds is not None:
            inputs_embeds = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        out = self.roberta(
            **flat, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
        logits = linear(self.dropout(out.pooler_output), self.classifier).view(-1, shape[1])
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                             attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """A label per token (named entities, part of speech): dropout -> linear on every hidden state.

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForTokenClassification
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64, num_labels=5)
        >>> model = XLMRobertaForTokenClassification(config, seed=0).eval()
        >>> tuple(model(torch.tensor([[0, 5, 6, 2]])).logits.shape)
        (1, 4, 5)
    """

    architecture = "XLMRobertaForTokenClassification"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.classifier_dropout_rate)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
        logits = linear(self.dropout(out.last_hidden_state), self.classifier)
        loss = losses.cross_entropy(logits, labels) if labels is not None else None
        result = O.TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                         attentions=out.attentions)
        return result if return_dict else result.to_tuple()


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """Extractive question answering: a start and an end logit per token.

    Example:
        >>> import torch
        >>> from xlmr import XLMRobertaConfig
        >>> from xlmr.pt import XLMRobertaForQuestionAnswering
        >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                           intermediate_size=64)
        >>> model = XLMRobertaForQuestionAnswering(config, seed=0).eval()
        >>> ids, start, end = torch.tensor([[0, 5, 6, 2]]), torch.tensor([1]), torch.tensor([2])
        >>> out = model(ids, start_positions=start, end_positions=end)
        >>> tuple(out.start_logits.shape), tuple(out.end_logits.shape)
        ((1, 4), (1, 4))
    """

    architecture = "XLMRobertaForQuestionAnswering"

    def make_layers(self, config: XLMRobertaConfig) -> None:
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)  # num_labels is 2: start and end

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict)
        out = self.roberta(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, head_mask=head_mask, inputs_embeds=inputs_embeds, use_cache=False,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
        start_logits, end_logits = linear(out.last_hidden_state, self.qa_outputs).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        result = O.QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                                hidden_states=out.hidden_states, attentions=out.attentions)
        return result if return_dict else result.to_tuple()
