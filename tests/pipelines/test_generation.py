"""``generate`` on XLMRobertaForCausalLM in every backend: the same greedy tokens everywhere, HF 4.57.6's greedy
``generate`` on the same weights, the same samples for the same seed, and the uncached model as the check of
the cache, the left padding and the stopping rule."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xlmr import XLMRobertaConfig
from xlmr.backends import import_backend, installed_backends, to_numpy

BACKENDS = installed_backends()
CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=40, initializer_range=0.2, is_decoder=True)
PROMPTS = [[0, 5, 17, 33, 8, 61], [0, 40, 12], [0, 7]]  # different lengths: left padding


def left_padded(prompts: list[list[int]], pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, prompts))
    ids = np.array([[pad] * (width - len(p)) + p for p in prompts])
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from xlmr.pt import XLMRobertaForCausalLM

    path = str(tmp_path_factory.mktemp("causal"))
    XLMRobertaForCausalLM(XLMRobertaConfig(**CONFIG), seed=3).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(folder):
    return {b: import_backend(b).XLMRobertaForCausalLM.from_pretrained(folder) for b in BACKENDS}


def run(backend, model, *args, **kwargs) -> np.ndarray:
    return to_numpy(backend, model.generate(*args, **kwargs)).astype(np.int64)


def test_greedy_tokens_are_identical_in_every_backend_with_left_padding(models):
    ids, mask = left_padded(PROMPTS)
    out = {b: run(b, m, ids, mask, max_new_tokens=12, eos_token_id=-1) for b, m in models.items()}
    assert out["pt"].shape == (3, 6 + 12)
    for b in BACKENDS[1:]:
        np.testing.assert_array_equal(out["pt"], out[b], err_msg=b)


def test_every_greedy_token_is_the_argmax_of_the_uncached_model_on_the_text_so_far(models):
    """The independent number: the model's plain forward (no cache, no padding) on each unpadded row."""
    import torch

    ids, mask = left_padded(PROMPTS)
    out = run("pt", models["pt"], ids, mask, max_new_tokens=8, eos_token_id=-1)
    for row, prompt in enumerate(PROMPTS):
        text = list(prompt)
        for _ in range(8):
            with torch.no_grad():
                text.append(int(models["pt"](torch.tensor([text])).logits[0, -1].argmax()))
        assert out[row, ids.shape[1]:].tolist() == text[len(prompt):]


def test_greedy_equals_hf_generate_on_the_same_weights(folder, models):
    """HF numbers positions 0, 1, ... in generate (its generic rule for decoder LMs) where XLM-R's forward
    starts at padding_idx + 1; with HF's generic position_ids switched off, HF's generate keeps the model's
    own positions, which is what ours does, and the tokens must be equal."""
    import torch
    import transformers

    hf = transformers.XLMRobertaForCausalLM.from_pretrained(folder).eval()
    original = hf.prepare_inputs_for_generation

    def model_positions(*args, **kwargs):
        inputs = original(*args, **kwargs)
        inputs.pop("position_ids", None)
        return inputs

    hf.prepare_inputs_for_generation = model_positions
    prompts = np.array([[0, 5, 17, 33], [0, 40, 12, 9]])
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                          max_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=1).numpy()
    for b, m in models.items():
        np.testing.assert_array_equal(ref, run(b, m, prompts, max_new_tokens=10), err_msg=b)


def test_rows_stop_at_eos_and_are_padded_after_it(models):
    ids, mask = left_padded(PROMPTS)
    free = run("pt", models["pt"], ids, mask, max_new_tokens=10, eos_token_id=-1)
    new = free[:, ids.shape[1]:]
    eos = int(new[0, 2])  # make the third token of row 0 the end of sequence
    out = {b: run(b, m, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=1) for b, m in models.items()}
    for b in BACKENDS:
        got = out[b][:, ids.shape[1]:]
        for row in range(3):
            hits = np.flatnonzero(new[row] == eos)
            stop = int(hits[0]) + 1 if len(hits) else got.shape[1]
            assert got[row, :stop].tolist() == new[row, :stop].tolist()
            assert (got[row, stop:] == 1).all()
        if all((new[row] == eos).any() for row in range(3)):
            assert got.shape[1] < 10  # everyone stopped: no further steps


def test_samples_are_identical_in_every_backend_for_one_seed(models):
    ids, mask = left_padded(PROMPTS)
    settings = dict(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, eos_token_id=-1)
    out = {b: run(b, m, ids, mask, seed=7, **settings) for b, m in models.items()}
    for b in BACKENDS[1:]:
        np.testing.assert_array_equal(out["pt"], out[b], err_msg=b)
    np.testing.assert_array_equal(out["pt"], run("pt", models["pt"], ids, mask, seed=7, **settings))
    assert not np.array_equal(out["pt"], run("pt", models["pt"], ids, mask, seed=8, **settings))


def test_top_k_1_sampling_is_greedy(models):
    ids, mask = left_padded(PROMPTS)
    greedy = run("pt", models["pt"], ids, mask, max_new_tokens=6, eos_token_id=-1)
    np.testing.assert_array_equal(greedy, run("pt", models["pt"], ids, mask, max_new_tokens=6, eos_token_id=-1,
                                              do_sample=True, top_k=1, seed=0))


def test_flax_compiles_the_prompt_and_the_step_once_per_shape(models):
    if "flax" not in models:
        pytest.skip("flax not installed")
    from xlmr.flax.generation import _forward

    ids, mask = left_padded(PROMPTS)
    run("flax", models["flax"], ids, mask, max_new_tokens=5, eos_token_id=-1)
    before = _forward._cache_size()
    run("flax", models["flax"], ids, mask, max_new_tokens=5, eos_token_id=-1)
    assert _forward._cache_size() == before


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_new_tokens=36), "max_new_tokens=36 after a prompt of 3 tokens needs 39 positions; the model has 38"),
    (dict(max_new_tokens=0), "max_new_tokens=0 must be a positive integer"),
    (dict(top_k=-1), "top_k=-1 must be an integer >= 0"),
    (dict(top_p=1.5), "top_p=1.5 must be in (0, 1]"),
    (dict(temperature=-1.0), "temperature=-1.0 must be a number above 0"),
])
def test_bad_settings_get_one_line_errors_in_every_backend(models, kwargs, message):
    for b, m in models.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            m.generate(np.array([[0, 5, 6]]), **kwargs)


def test_bad_prompts_get_one_line_errors(models):
    m = models["pt"]
    with pytest.raises(ValueError, match=r"input_ids holds 120 at \(0, 1\), outside \[0, 99\)"):
        m.generate(np.array([[0, 120]]))
    with pytest.raises(ValueError, match="prompt row 1 has no token"):
        m.generate(np.array([[0, 5], [1, 1]]), np.array([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="input_ids must be a non-empty \\(batch, length\\) array"):
        m.generate(np.array([0, 5]))


def test_an_encoder_config_is_refused(folder):
    for b in BACKENDS:
        model = import_backend(b).XLMRobertaForCausalLM.from_pretrained(folder, is_decoder=False)
        with pytest.raises(ValueError, match="generate needs config.is_decoder=True"):
            model.generate(np.array([[0, 5]]))


def test_generation_modules_mirror_each_other():
    """Same public names, in the same order, with the same arguments."""
    import inspect

    signatures = {}
    for b in BACKENDS:
        module = __import__(f"xlmr.{b}.generation", fromlist=["generate"])
        signatures[b] = str(inspect.signature(module.generate)).split(" -> ")[0]
        assert os.path.basename(module.__file__) == "generation.py"
    assert len(set(signatures.values())) == 1, signatures
