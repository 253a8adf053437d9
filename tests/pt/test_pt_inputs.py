"""Bad input raises ValueError naming the tensor, the value and the limit, before any kernel runs."""

from __future__ import annotations

import pytest
import torch
from pt_support import batch, tiny_config

import xlmr.pt as xpt
from xlmr.pt import layers


@pytest.fixture
def model(monkeypatch):
    config = tiny_config(is_decoder=True)
    m = xpt.XLMRobertaForCausalLM(config, seed=0).eval()

    def no_kernels(*args, **kwargs):
        raise AssertionError("a kernel ran before the inputs were checked")

    monkeypatch.setattr(layers.Embeddings, "forward", no_kernels)  # the first module any forward reaches
    return m


def ids(*rows):
    return torch.tensor(rows)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=ids([0, 5, 99, 2])),
     r"input_ids holds 99 at \(0, 2\), outside \[0, 99\) set by config.vocab_size=99"),
    (dict(input_ids=ids([0, -3, 7, 2])), r"input_ids holds -3 at \(0, 1\), outside \[0, 99\)"),
    (dict(input_ids=ids([0, 5, 6, 2]), token_type_ids=ids([0, 0, 2, 0])),
     r"token_type_ids holds 2 at \(0, 2\), outside \[0, 2\) set by config.type_vocab_size=2"),
    (dict(input_ids=ids([0, 5, 6, 2]), position_ids=ids([2, 3, 40, 5])),
     r"position_ids holds 40 at \(0, 2\), outside \[0, 40\) set by config.max_position_embeddings=40"),
    (dict(input_ids=torch.ones(1, 39, dtype=torch.long)),
     r"sequence length 39 exceeds the position limit 38 \(config.max_position_embeddings=40"),
    (dict(input_ids=ids([0, 5, 6, 2]), attention_mask=ids([1, 1, 1])),
     r"attention_mask has shape \(1, 3\), expected \(batch, past \+ sequence\) = \(1, 4\)"),
    (dict(input_ids=ids([0, 5, 6, 2]), token_type_ids=ids([0, 0, 0])),
     r"token_type_ids has shape \(1, 3\), input has \(1, 4\)"),
    (dict(input_ids=torch.tensor([0, 5, 6])), r"input_ids must have shape \(batch, sequence\), got \(3,\)"),
    (dict(input_ids=ids([0, 5]), inputs_embeds=torch.zeros(1, 2, 32)), r"exactly one of input_ids and inputs_embeds"),
    (dict(inputs_embeds=torch.zeros(1, 2, 31)), r"inputs_embeds must have shape \(batch, sequence, hidden_size=32\)"),
    (dict(input_ids=ids([0.0, 5.0])), r"input_ids must hold integers"),
])
def test_bad_input_raises_value_error_naming_value_and_limit(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_sequence_too_long_counts_the_cache(model):
    config = model.config
    past = tuple((torch.zeros(1, 4, 36, 8), torch.zeros(1, 4, 36, 8)) for _ in range(config.num_hidden_layers))
    with pytest.raises(ValueError, match=r"sequence length 3 \+ 36 cached exceeds the position limit 38"):
        model(input_ids=ids([5, 6, 7]), past_key_values=past)
    short = tuple((k[:, :, :30], v[:, :, :30]) for k, v in past)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 3\), expected .* = \(1, 33\)"):
        model(input_ids=ids([5, 6, 7]), attention_mask=ids([1, 1, 1]), past_key_values=short)


def test_multiple_choice_needs_three_dimensional_inputs():
    config = tiny_config()
    model = xpt.XLMRobertaForMultipleChoice(config, seed=0)
    with pytest.raises(ValueError, match=r"input_ids of shape \(batch, num_choices, sequence\), got \(3, 9\)"):
        model(**batch(config))
    good = batch(config, 2, 5, choices=3)
    good["input_ids"][1, 2, 3] = 120
    with pytest.raises(ValueError, match=r"input_ids holds 120 at \(5, 3\)"):  # flattened (batch * choices) index
        model(**good)


class _DeviceTensor:
    """Stands for an accelerator tensor: reports a CUDA device; its data is a CPU tensor (this machine has no GPU)."""

    def __init__(self, data):
        self.data, self.shape, self.device = data, data.shape, torch.device("cuda")

    def detach(self):
        return self.data

    def numel(self):
        return self.data.numel()

    def is_floating_point(self):
        return self.data.is_floating_point()


def test_device_tensors_are_checked_by_a_min_max_reduction_without_a_host_copy():
    from xlmr.common.inputs import check_inputs
    from xlmr.pt.checks import host_view as _host

    good = _host(_DeviceTensor(torch.tensor([[0, 5, 98, 2]])), 99)
    assert good.shape == (1, 4) and good.strides == (0, 0)  # a stand-in, not a copy
    assert check_inputs(tiny_config(), good) == (1, 4)
    bad = _host(_DeviceTensor(torch.tensor([[0, 5, 99, 2]])), 99)  # out of range: copied, for the index
    with pytest.raises(ValueError, match=r"input_ids holds 99 at \(0, 2\)"):
        check_inputs(tiny_config(), bad)
