"""The encoder of XLM-R (Conneau et al., 2020): embeddings, a stack of post-LayerNorm Transformer layers, pooler.

Module and attribute names are Hugging Face's, so ``state_dict()`` keys are HF's parameter names. Every dense
projection goes through ``fast_linear.linear``, which is ``torch.nn.functional.linear`` except during CPU
inference, where it uses oneDNN with prepacked weights (same numbers to rounding; see ``fast_linear.py``).

The modules are built with torch's default initialisation; the model classes (``models.py``) build them on the
meta device and assign HF's initialisation or a checkpoint's weights.

Example:
    >>> import torch
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.pt.layers import Embeddings, Encoder
    >>> config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                           intermediate_size=64)
    >>> embeddings, encoder = Embeddings(config).eval(), Encoder(config).eval()
    >>> hidden, cache, all_hidden, attentions, _ = encoder(embeddings(torch.tensor([[0, 5, 6, 2]])),
    ...                                                    output_attentions=True, output_hidden_states=True)
    >>> tuple(hidden.shape), len(all_hidden), tuple(attentions[0].shape), cache
    ((1, 4, 32), 3, (1, 4, 4, 4), None)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from xlmr.common.config import XLMRobertaConfig
from xlmr.pt.fast_linear import linear, linears


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# Activations by their HF names. "gelu" is the exact (erf) GELU; the tanh variants approximate it.
ACT = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": _gelu_fast,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int, past_length: int = 0) -> torch.Tensor:
    """Padding tokens get ``padding_idx``; real tokens count up from ``padding_idx + 1 + past_length``."""
    mask = input_ids.ne(padding_idx).int()
    return ((torch.cumsum(mask, dim=1).type_as(mask) + past_length) * mask).long() + padding_idx


class Embeddings(nn.Module):
    """word + token type (+ absolute position) embeddings -> LayerNorm -> dropout."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.padding_idx = config.pad_token_id
        self.absolute = config.position_embedding_type == "absolute"

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, past_length=0):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, length), dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.absolute:
            if position_ids is None and input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, self.padding_idx, past_length)
            elif position_ids is None:  # no ids, so no padding to see: positions run on after the cache
                start = self.padding_idx + 1 + past_length
                position_ids = torch.arange(start, start + length, device=inputs_embeds.device)[None]
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention, with optional relative-position scores (Shaw et al.; Huang et al.).

    ``bias`` is the additive mask, (batch, 1, query, key), 0 where attention is allowed and the dtype's minimum
    elsewhere. ``past_key_value`` holds the cached keys and values (batch, heads, past, head_dim): self-attention
    appends this step's to them; cross-attention reuses them instead of projecting the encoder states again.
    """

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None):
        super().__init__()
        position_embedding_type = position_embedding_type or config.position_embedding_type
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.position_embedding_type = position_embedding_type
        if position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.head_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, bias=None, head_mask=None, encoder_hidden_states=None, past_key_value=None,
                past_length=0, output_attentions=False):
        if encoder_hidden_states is None:
            q, k, v = map(self.split_heads, linears(hidden_states, self.query, self.key, self.value))
            if past_key_value is not None:
                k, v = torch.cat([past_key_value[0], k], dim=2), torch.cat([past_key_value[1], v], dim=2)
        else:
            q = self.split_heads(linear(hidden_states, self.query))
            if past_key_value is not None:
                k, v = past_key_value
            else:
                k, v = map(self.split_heads, linears(encoder_hidden_states, self.key, self.value))

        if self.position_embedding_type == "absolute" and head_mask is None and not output_attentions:
            p = self.dropout.p if self.training else 0.0
            context, probs = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p), None
        else:
            context, probs = self.eager(q, k, v, bias, head_mask, past_length)
        context = context.transpose(1, 2).reshape(hidden_states.shape[0], hidden_states.shape[1], -1)
        return context, probs, (k, v)

    def eager(self, q, k, v, bias, head_mask, past_length):
        """Attention written out, for what SDPA cannot do: relative positions, head_mask, returned probabilities."""
        scores = q @ k.transpose(-1, -2)
        if self.position_embedding_type != "absolute":
            # Distance of query i (absolute index past_length + i) from key j, shifted into the table's range.
            left = torch.arange(past_length, past_length + q.shape[2], device=q.device)[:, None]
            right = torch.arange(k.shape[2], device=q.device)[None, :]
            distance = self.distance_embedding(left - right + self.max_position_embeddings - 1).to(q.dtype)
            scores = scores + torch.einsum("bhld,lrd->bhlr", q, distance)
            if self.position_embedding_type == "relative_key_query":
                scores = scores + torch.einsum("bhrd,lrd->bhlr", k, distance)
        scores = scores / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + bias
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        probs = self.dropout(probs)
        if head_mask is not None:
            probs = probs * head_mask
        return probs @ v, probs


class SelfOutput(nn.Module):
    """Projection back to the residual stream: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig, in_features: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(linear(hidden_states, self.dense)) + input_tensor)


class Attention(nn.Module):
    """SelfAttention followed by SelfOutput (HF's ``attention.self`` / ``attention.output``)."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str | None = None):
        super().__init__()
        self.self = SelfAttention(config, position_embedding_type)
        self.output = SelfOutput(config)

    def forward(self, hidden_states, bias=None, head_mask=None, encoder_hidden_states=None, past_key_value=None,
                past_length=0, output_attentions=False):
        context, probs, key_value = self.self(hidden_states, bias, head_mask, encoder_hidden_states, past_key_value,
                                              past_length, output_attentions)
        return self.output(context, hidden_states), probs, key_value


class Intermediate(nn.Module):
    """The feed-forward block's expansion: dense -> activation."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT[config.hidden_act]

    def forward(self, hidden_states):
        return linear(hidden_states, self.dense, activation=self.activation)


class Output(SelfOutput):
    """The feed-forward block's contraction: dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config, in_features=config.intermediate_size)


class Layer(nn.Module):
    """One Transformer layer: self-attention, cross-attention (decoders given encoder states), feed-forward."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.attention = Attention(config)
        if config.add_cross_attention:
            if not config.is_decoder:
                raise ValueError("config.add_cross_attention=True needs config.is_decoder=True")
            # As in HF, cross-attention always uses plain dot products: no relative-position table.
            self.crossattention = Attention(config, position_embedding_type="absolute")
        self.intermediate = Intermediate(config)
        self.output = Output(config)
        self.is_decoder = config.is_decoder

    def forward(self, hidden_states, bias=None, head_mask=None, encoder_hidden_states=None, encoder_bias=None,
                past_key_value=None, past_length=0, output_attentions=False):
        """Returns (hidden_states, self-attention probs, cross-attention probs, this layer's cache entry)."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        hidden_states, self_probs, cache = self.attention(hidden_states, bias, head_mask, None, self_past,
                                                          past_length, output_attentions)
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError("encoder_hidden_states were passed, but the model has no cross-attention layers: "
                                 "build it with config.add_cross_attention=True")
            cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
            hidden_states, cross_probs, cross_cache = self.crossattention(
                hidden_states, encoder_bias, head_mask, encoder_hidden_states, cross_past, past_length,
                output_attentions)
            cache = cache + cross_cache
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_probs, cross_probs, cache


class Encoder(nn.Module):
    """The stack of layers; collects hidden states, attentions and the key/value cache as asked."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.layer = nn.ModuleList([Layer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, bias=None, head_mask=None, encoder_hidden_states=None, encoder_bias=None,
                past_key_values=None, past_length=0, use_cache=False, output_attentions=False,
                output_hidden_states=False):
        """Returns (last hidden state, cache, all hidden states, attentions, cross-attentions); None where not asked."""
        all_hidden = (hidden_states,) if output_hidden_states else None
        attentions = () if output_attentions else None
        cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        cache = () if use_cache else None
        for i, layer in enumerate(self.layer):
            args = (hidden_states, bias, None if head_mask is None else head_mask[i], encoder_hidden_states,
                    encoder_bias, None if past_key_values is None else past_key_values[i], past_length,
                    output_attentions)
            if self.gradient_checkpointing and self.training:
                # Recompute the layer in the backward pass; the RNG state is replayed so dropout masks match.
                hidden_states, probs, cross_probs, layer_cache = checkpoint(layer, *args, use_reentrant=False)
            else:
                hidden_states, probs, cross_probs, layer_cache = layer(*args)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
            if output_attentions:
                attentions = attentions + (probs,)
                if cross_attentions is not None:
                    cross_attentions = cross_attentions + (cross_probs,)
            if use_cache:
                cache = cache + (layer_cache,)
        return hidden_states, cache, all_hidden, attentions, cross_attentions


class Pooler(nn.Module):
    """tanh(dense(first token's hidden state))."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(linear(hidden_states[:, 0], self.dense))
