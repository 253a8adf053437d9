"""xlmr.pt as a decoder: causal mask, cross-attention and the key/value cache, against HF and against itself."""

from __future__ import annotations

import pytest
import torch
from pt_support import POSITION_TYPES, assert_same, batch, hf_model, legacy, max_abs, ours_like, tiny_config

ATOL = 1e-5
CAUSAL = "XLMRobertaForCausalLM"


def decoder_config(position_embedding_type="absolute", cross=True):
    return tiny_config(is_decoder=True, add_cross_attention=cross, position_embedding_type=position_embedding_type)


def encoder_states(config, batch_size=3, length=5):
    g = torch.Generator().manual_seed(7)
    states = torch.randn(batch_size, length, config.hidden_size, generator=g)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    mask[1, 3:] = 0
    return states, mask


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize("cross", [False, True])
def test_decoder_full_pass_matches_hf(position_embedding_type, cross, tmp_path):
    """Causal mask with padding, cross-attention with a padded encoder mask, attentions and cross-attentions.

    HF 4.57 puts every query at position key_len - 1 for relative scores whenever a cache is kept, which is only
    right for one-token steps; the full pass is compared with use_cache=False (the cache is compared below).
    """
    config = decoder_config(position_embedding_type, cross)
    hf = hf_model(CAUSAL, config)
    ours = ours_like(CAUSAL, hf, config, tmp_path)  # through HF's checkpoint
    inputs = batch(config)
    if cross:
        inputs["encoder_hidden_states"], inputs["encoder_attention_mask"] = encoder_states(config)
    with torch.no_grad():
        for kwargs in (dict(output_attentions=True, output_hidden_states=True), {}):
            theirs = hf(**inputs, **kwargs, use_cache=False)
            mine = ours(**inputs, **kwargs, use_cache=False)
            assert_same(mine, theirs)
            if cross and kwargs:
                assert len(mine.cross_attentions) == config.num_hidden_layers
    # Causality: changing a later token does not change earlier logits. (Not for row 2's leading pads: a query
    # that may see no key gets uniform attention over all keys, in HF as here.)
    changed = dict(inputs, input_ids=inputs["input_ids"].clone())
    changed["input_ids"][:, 5] = 4
    with torch.no_grad():
        a, b = ours(**inputs).logits[:2], ours(**changed).logits[:2]
    assert max_abs(a[:, :5], b[:, :5]) == 0.0 and max_abs(a[:, 5:], b[:, 5:]) > 1e-3


@pytest.mark.parametrize("cross", [False, True])
def test_cache_matches_hf_legacy_layout_and_hf_step_decoding(cross):
    config = decoder_config("absolute", cross)
    hf = hf_model(CAUSAL, config)
    ours = ours_like(CAUSAL, hf, config)
    inputs = batch(config)
    extra = {}
    if cross:
        extra["encoder_hidden_states"], extra["encoder_attention_mask"] = encoder_states(config)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        theirs = hf(input_ids=ids[:, :6], attention_mask=mask[:, :6], **extra)
        mine = ours(input_ids=ids[:, :6], attention_mask=mask[:, :6], **extra)
        assert_same(mine, theirs)  # logits and past_key_values
        layer = mine.past_key_values[0]
        assert len(layer) == (4 if cross else 2)
        assert tuple(layer[0].shape) == (3, config.num_attention_heads, 6, config.head_dim)
        for t in range(6, 9):
            theirs = hf(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                        past_key_values=theirs.past_key_values, **extra)
            mine = ours(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                        past_key_values=mine.past_key_values, **extra)
            assert_same(mine, theirs)
            assert isinstance(mine.past_key_values, tuple)


@pytest.mark.parametrize("position_embedding_type", POSITION_TYPES)
@pytest.mark.parametrize("cross", [False, True])
def test_token_by_token_decoding_gives_the_full_pass_logits(position_embedding_type, cross):
    config = decoder_config(position_embedding_type, cross)
    ours = ours_like(CAUSAL, hf_model(CAUSAL, config), config)
    # Rows 0 and 1 (row 1 padded at the end). Row 2's leading pads would get other positions in steps than in
    # one pass: the position rule counts cached tokens as real ones, in HF as here.
    inputs = batch(config)
    ids, mask = inputs["input_ids"][:2], inputs["attention_mask"][:2]
    extra = {}
    if cross:
        states, enc_mask = encoder_states(config)
        extra["encoder_hidden_states"], extra["encoder_attention_mask"] = states[:2], enc_mask[:2]
    with torch.no_grad():
        full = ours(input_ids=ids, attention_mask=mask, use_cache=False, **extra).logits
        # A prompt of 3, a chunk of 2 (several queries after a cache), then one token at a time.
        out = ours(input_ids=ids[:, :3], attention_mask=mask[:, :3], **extra)
        pieces, start = [out.logits], 3
        for stop in (5, 6, 7, 8, 9):
            out = ours(input_ids=ids[:, start:stop], attention_mask=mask[:, :stop], past_key_values=out.past_key_values,
                       **extra)
            pieces.append(out.logits)
            start = stop
    assert max_abs(torch.cat(pieces, dim=1), full) <= ATOL


def test_decoder_with_inputs_embeds_continues_positions_after_the_cache():
    """Spec: positions for inputs_embeds run on from the cache (HF restarts them, which a cache makes wrong)."""
    config = decoder_config("absolute", cross=False)
    ours = ours_like(CAUSAL, hf_model(CAUSAL, config), config)
    ids = batch(config)["input_ids"][:1, 3:9]
    embeds = ours.roberta.embeddings.word_embeddings(ids).detach()
    with torch.no_grad():
        full = ours(inputs_embeds=embeds).logits
        first = ours(inputs_embeds=embeds[:, :4])
        rest = ours(inputs_embeds=embeds[:, 4:], past_key_values=first.past_key_values).logits
        assert max_abs(torch.cat([first.logits, rest], 1), full) <= ATOL
        assert max_abs(ours(input_ids=ids).logits, full) <= ATOL  # no padding: same positions as from ids


def test_causal_lm_with_labels_returns_loss_and_no_cache_like_hf():
    config = decoder_config("absolute", cross=False)
    hf = hf_model(CAUSAL, config)
    ours = ours_like(CAUSAL, hf, config)
    inputs = batch(config)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        theirs, mine = hf(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert "past_key_values" not in mine and theirs.past_key_values is None
    assert_same(mine, theirs)


def test_encoder_hidden_states_without_cross_attention_layers_is_an_error():
    config = decoder_config("absolute", cross=False)
    ours = ours_like(CAUSAL, hf_model(CAUSAL, config), config)
    states, _ = encoder_states(config)
    with pytest.raises(ValueError, match="add_cross_attention"):
        ours(**batch(config), encoder_hidden_states=states)


def test_hf_cache_holds_what_ours_holds_for_every_layer():
    config = decoder_config("absolute", cross=True)
    hf = hf_model("XLMRobertaModel", config)
    ours = ours_like("XLMRobertaModel", hf, config)
    inputs = batch(config)
    states, enc_mask = encoder_states(config)
    with torch.no_grad():
        theirs = legacy(hf(**inputs, encoder_hidden_states=states, encoder_attention_mask=enc_mask).past_key_values)
        mine = ours(**inputs, encoder_hidden_states=states, encoder_attention_mask=enc_mask).past_key_values
    assert len(mine) == len(theirs) == config.num_hidden_layers
    assert_same(mine, theirs)
