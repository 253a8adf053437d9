"""``xlmr convert`` of a fairseq folder (model.pt + dict.txt + sentencepiece.bpe.model) against HF's outputs.

fairseq is not installable here, so the fixtures are written from the documented layout (see the docstring of
xlmr/common/checkpoint/fairseq.py): an HF model's weights under fairseq's names, with fairseq's argument
namespace (fairseq < 0.10: ``decoder.``, fused ``in_proj``, ``emb_layer_norm``, legacy torch.save) or its config
dict (newer: ``encoder.``, ``q/k/v_proj``, ``layernorm_embedding``, zip torch.save, a pickled omegaconf
DictConfig built from omegaconf's pickle layout).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import enum
import os
import re
import subprocess
import sys
import types
import typing

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xlmr.common.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from xlmr.common.checkpoint.fairseq import read_fairseq  # noqa: E402
from xlmr.common.convert import convert  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPM = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")
TINY = dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5)
TEXTS = ["Everyone has the right to life, liberty and security of person.", "Jeder hat das Recht auf Leben.",
         "Всеки човек има право на живот."]
ATOL = 1e-5


# ------------------------------------------------------------------------------------------------ fixtures
def _pieces() -> list[str]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=SPM)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def fairseq_state(hf_state: dict, layers: int, new: bool, head: str | None = None) -> dict:
    """HF PyTorch weights under fairseq's names (old or new layout); the LM head weight is embed_tokens itself."""
    p = "encoder" if new else "decoder"
    e = f"{p}.sentence_encoder"
    sd = collections.OrderedDict()
    sd[f"{e}.embed_tokens.weight"] = hf_state["roberta.embeddings.word_embeddings.weight"]
    sd[f"{e}.embed_positions.weight"] = hf_state["roberta.embeddings.position_embeddings.weight"]
    for leaf in ("weight", "bias"):
        sd[f"{e}.{'layernorm_embedding' if new else 'emb_layer_norm'}.{leaf}"] = \
            hf_state[f"roberta.embeddings.LayerNorm.{leaf}"]
    for n in range(layers):
        h, f = f"roberta.encoder.layer.{n}", f"{e}.layers.{n}"
        for leaf in ("weight", "bias"):
            q, k, v = (hf_state[f"{h}.attention.self.{x}.{leaf}"] for x in ("query", "key", "value"))
            if new:
                sd[f"{f}.self_attn.k_proj.{leaf}"], sd[f"{f}.self_attn.v_proj.{leaf}"] = k, v
                sd[f"{f}.self_attn.q_proj.{leaf}"] = q
            else:
                sd[f"{f}.self_attn.in_proj_{leaf}"] = torch.cat([q, k, v])
            sd[f"{f}.self_attn.out_proj.{leaf}"] = hf_state[f"{h}.attention.output.dense.{leaf}"]
            sd[f"{f}.self_attn_layer_norm.{leaf}"] = hf_state[f"{h}.attention.output.LayerNorm.{leaf}"]
            sd[f"{f}.fc1.{leaf}"] = hf_state[f"{h}.intermediate.dense.{leaf}"]
            sd[f"{f}.fc2.{leaf}"] = hf_state[f"{h}.output.dense.{leaf}"]
            sd[f"{f}.final_layer_norm.{leaf}"] = hf_state[f"{h}.output.LayerNorm.{leaf}"]
    if new:
        sd[f"{e}.version"] = torch.tensor([3.0])
    g = torch.Generator().manual_seed(1)
    lm = {k[len("lm_head."):]: v for k, v in hf_state.items() if k.startswith("lm_head.")} or {
        "dense.weight": torch.randn(32, 32, generator=g), "dense.bias": torch.randn(32, generator=g),
        "layer_norm.weight": torch.randn(32, generator=g), "layer_norm.bias": torch.randn(32, generator=g),
        "bias": torch.randn(8002, generator=g)}
    for leaf in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"):
        sd[f"{p}.lm_head.{leaf}"] = lm[leaf]
    sd[f"{p}.lm_head.weight"] = sd[f"{e}.embed_tokens.weight"]
    if head:
        for part in ("dense", "out_proj"):
            for leaf in ("weight", "bias"):
                sd[f"classification_heads.{head}.{part}.{leaf}"] = hf_state[f"classifier.{part}.{leaf}"]
    return sd


def model_args(**overrides) -> dict:
    return {**dict(arch="roberta_base", encoder_embed_dim=32, encoder_layers=2, encoder_attention_heads=4,
                   encoder_ffn_embed_dim=37, max_positions=64, activation_fn="gelu", pooler_activation_fn="tanh",
                   dropout=0.1, attention_dropout=0.1, pooler_dropout=0.0, encoder_normalize_before=False,
                   untie_weights_roberta=False), **overrides}


def training_state() -> dict:
    """What fairseq saves beside the model: plain containers, numbers and optimizer tensors."""
    return {"optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam",
                                   "lr_scheduler_state": {"best": 3.25}, "num_updates": 100}],
            "extra_state": {"train_iterator": {"epoch": 2, "iterations_in_epoch": 0}, "val_loss": np.float64(3.25)},
            "last_optimizer_state": {"state": {0: {"step": 100, "exp_avg": torch.zeros(4)}},
                                     "param_groups": [{"lr": [1e-4], "betas": (0.9, 0.98)}]}}


def write_folder(folder, state: dict, args=None, cfg=None, legacy: bool = True, dictionary=None) -> str:
    os.makedirs(folder, exist_ok=True)
    checkpoint = {"args": args, "model": state, **training_state()}
    if cfg is not None:
        checkpoint["cfg"] = cfg
    torch.save(checkpoint, os.path.join(folder, "model.pt"), _use_new_zipfile_serialization=not legacy)
    lines = dictionary if dictionary is not None else _pieces()[3:]
    with open(os.path.join(folder, "dict.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{p} {1000 - i % 900}\n" for i, p in enumerate(lines)))
    with open(SPM, "rb") as src, open(os.path.join(folder, "sentencepiece.bpe.model"), "wb") as dst:
        dst.write(src.read())
    return str(folder)


@contextlib.contextmanager
def fake_omegaconf():
    """Stand-ins pickled under omegaconf's and fairseq's module names, with omegaconf's pickle state layout
    (BaseContainer/Node ``__getstate__``: ``_metadata``, ``_parent``, ``_content`` or ``_val``)."""
    names = ["omegaconf", "omegaconf.dictconfig", "omegaconf.nodes", "omegaconf.base", "fairseq",
             "fairseq.dataclass", "fairseq.dataclass.constants"]
    modules = {n: types.ModuleType(n) for n in names}

    def make(module, name, base=object):
        cls = type(name, (base,), {"__getstate__": lambda self: dict(self.__dict__)})
        cls.__module__, cls.__qualname__ = module, name
        setattr(modules[module], name, cls)
        return cls

    classes = types.SimpleNamespace(
        DictConfig=make("omegaconf.dictconfig", "DictConfig"), AnyNode=make("omegaconf.nodes", "AnyNode"),
        IntegerNode=make("omegaconf.nodes", "IntegerNode"), Metadata=make("omegaconf.base", "Metadata"),
        ContainerMetadata=make("omegaconf.base", "ContainerMetadata"))
    backend = enum.Enum("DDP_BACKEND_CHOICES", {"c10d": "c10d", "no_c10d": "no_c10d"})
    backend.__module__ = "fairseq.dataclass.constants"
    modules["fairseq.dataclass.constants"].DDP_BACKEND_CHOICES = backend
    classes.backend = backend
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(modules)
    try:
        yield classes
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def dict_config(c, content: dict, parent=None):
    node = c.DictConfig()
    meta = c.ContainerMetadata()
    meta.__dict__.update(ref_type=typing.Any, object_type=dict, optional=True, key=None, flags={},
                         flags_root=False, resolver_cache=collections.defaultdict(dict), key_type=typing.Any,
                         element_type=typing.Any)
    node.__dict__.update(_metadata=meta, _parent=parent, _content={})
    for key, value in content.items():
        if isinstance(value, dict):
            child = dict_config(c, value, node)
        else:
            child = (c.IntegerNode if isinstance(value, int) and not isinstance(value, bool) else c.AnyNode)()
            m = c.Metadata()
            m.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=key, flags={})
            child.__dict__.update(_metadata=m, _parent=node, _val=value)
        node._content[key] = child
    return node


def hf_reference(name: str, **config):
    torch.manual_seed(0)
    model = getattr(transformers, name)(transformers.XLMRobertaConfig(**{**TINY, **config})).eval()
    with torch.no_grad():  # fairseq's RoBERTa has no token types; HF's converter zeroes this row too
        model.roberta.embeddings.token_type_embeddings.weight.zero_()
    return model


def hf_outputs(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tokenizer = transformers.XLMRobertaTokenizer(SPM)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return batch["attention_mask"].numpy().astype(bool), out.hidden_states[-1].numpy(), out.logits.numpy()


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def mlm():
    model = hf_reference("XLMRobertaForMaskedLM")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model, state, hf_outputs(model)


def _check_mlm(dst: str, expected) -> None:
    mask, hidden, logits = expected
    model = transformers.XLMRobertaForMaskedLM.from_pretrained(dst).eval()
    _, new_hidden, new_logits = hf_outputs(model)
    assert np.abs(new_hidden - hidden)[mask].max() <= ATOL
    assert np.abs(new_logits - logits)[mask].max() <= ATOL
    hf_fast = transformers.XLMRobertaTokenizerFast.from_pretrained(dst)
    assert hf_fast(TEXTS)["input_ids"] == transformers.XLMRobertaTokenizer(SPM)(TEXTS)["input_ids"]


def test_old_layout_with_namespace_and_fused_qkv_matches_hf(mlm, tmp_path):
    model, state, expected = mlm
    src = write_folder(tmp_path / "fairseq", fairseq_state(state, 2, new=False),
                       args=argparse.Namespace(**model_args()))
    summary = convert(src, str(tmp_path / "out"), "safetensors")
    assert summary["architecture"] == "XLMRobertaForMaskedLM" and summary["source_format"] == "fairseq"
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors", "sentencepiece.bpe.model",
                                                    "special_tokens_map.json", "tokenizer.json",
                                                    "tokenizer_config.json"]
    _check_mlm(str(tmp_path / "out"), expected)


def test_new_layout_with_config_dict_and_split_qkv_matches_hf(mlm, tmp_path):
    model, state, expected = mlm
    cfg = {"common": {"fp16": True}, "task": {"_name": "masked_lm", "tokens_per_sample": 64},
           "model": {**model_args(), "_name": "roberta_base", "max_positions": "${task.tokens_per_sample}"}}
    src = write_folder(tmp_path / "fairseq", fairseq_state(state, 2, new=True), cfg=cfg, legacy=False)
    convert(src, str(tmp_path / "out"), "pt")
    _check_mlm(str(tmp_path / "out"), expected)


def test_pickled_omegaconf_dictconfig_is_read_as_plain_data(mlm, tmp_path):
    model, state, expected = mlm
    with fake_omegaconf() as c:
        cfg = dict_config(c, {"task": {"tokens_per_sample": 64},
                              "distributed_training": {"ddp_backend": c.backend.c10d},
                              "model": {**model_args(), "max_positions": "${task.tokens_per_sample}"}})
        src = write_folder(tmp_path / "fairseq", fairseq_state(state, 2, new=True), cfg=cfg, legacy=False)
    config, _, architecture, _ = read_fairseq(src)
    assert (config.num_attention_heads, config.num_hidden_layers, architecture) == (4, 2, "XLMRobertaForMaskedLM")
    convert(src, str(tmp_path / "out"), "safetensors")
    _check_mlm(str(tmp_path / "out"), expected)


def test_untied_lm_head_keeps_its_own_decoder(tmp_path):
    model = hf_reference("XLMRobertaForMaskedLM", tie_word_embeddings=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fs = fairseq_state(state, 2, new=True)
    fs["encoder.lm_head.weight"] = state["lm_head.decoder.weight"]
    src = write_folder(tmp_path / "fairseq", fs, args=argparse.Namespace(**model_args(untie_weights_roberta=True)))
    convert(src, str(tmp_path / "out"), "safetensors")
    assert "lm_head.decoder.weight" in read_checkpoint(tmp_path / "out")
    _check_mlm(str(tmp_path / "out"), hf_outputs(model))


def test_classification_head_becomes_sequence_classification(tmp_path):
    model = hf_reference("XLMRobertaForSequenceClassification", num_labels=3)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    src = write_folder(tmp_path / "fairseq", fairseq_state(state, 2, new=False, head="mnli"),
                       args=argparse.Namespace(**model_args()))
    summary = convert(src, str(tmp_path / "out"), "safetensors")
    assert summary["architecture"] == "XLMRobertaForSequenceClassification"
    assert not any(k.startswith("lm_head.") for k in read_checkpoint(tmp_path / "out"))
    ours = transformers.XLMRobertaForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    batch = transformers.XLMRobertaTokenizer(SPM)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert (ours(**batch).logits - model(**batch).logits).abs().max().item() <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("fmt, backend", [("tf", "tf"), ("flax", "flax")])
def test_converts_to_tf_and_flax_and_matches_hf(mlm, tmp_path, fmt, backend):
    from xlmr.backends import call_model, installed_backends, model_class, to_numpy

    if backend not in installed_backends():
        pytest.skip(f"{backend} not installed")
    model, state, (mask, hidden, logits) = mlm
    src = write_folder(tmp_path / "fairseq", fairseq_state(state, 2, new=False),
                       args=argparse.Namespace(**model_args()))
    convert(src, str(tmp_path / "out"), fmt)
    batch = transformers.XLMRobertaTokenizer(SPM)(TEXTS, padding=True, return_tensors="np")
    ours = model_class(backend, "XLMRobertaForMaskedLM").from_pretrained(tmp_path / "out")
    out = call_model(backend, ours, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                     output_hidden_states=True)
    assert np.abs(to_numpy(backend, out.hidden_states[-1]) - hidden)[mask].max() <= ATOL
    assert np.abs(to_numpy(backend, out.logits) - logits)[mask].max() <= ATOL


# ------------------------------------------------------------------------------------------------ refusals
def test_dictionary_that_disagrees_with_the_sentencepiece_model(mlm, tmp_path):
    _, state, _ = mlm
    lines = _pieces()[3:]
    lines[10] = "bogus"
    src = write_folder(tmp_path / "f", fairseq_state(state, 2, new=False), args=argparse.Namespace(**model_args()),
                       dictionary=lines)
    with pytest.raises(CheckpointError, match=rf"dict\.txt:11: 'bogus' \(fairseq id 14\) but .* has "
                                              rf"{re.escape(repr(_pieces()[13]))} at piece 13"):
        convert(src, str(tmp_path / "out"), "safetensors")
    src = write_folder(tmp_path / "g", fairseq_state(state, 2, new=False), args=argparse.Namespace(**model_args()),
                       dictionary=_pieces()[3:-1])
    with pytest.raises(CheckpointError, match=r"dict\.txt ends after 7996 lines"):
        convert(src, str(tmp_path / "out"), "safetensors")
    assert not os.path.exists(tmp_path / "out")


def test_pre_layernorm_architecture_is_refused_by_name(mlm, tmp_path):
    _, state, _ = mlm
    args = argparse.Namespace(**{**model_args(), "arch": "roberta_prenorm", "encoder_normalize_before": True})
    src = write_folder(tmp_path / "f", fairseq_state(state, 2, new=True), args=args)
    with pytest.raises(CheckpointError, match="fairseq architecture 'roberta_prenorm' with "
                                              r"encoder_normalize_before=True \(pre-LayerNorm, as XLM-R XL"):
        convert(src, str(tmp_path / "out"), "safetensors")


def test_model_pt_holding_code_is_refused_without_running_it(mlm, tmp_path):
    _, state, _ = mlm
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    src = write_folder(tmp_path / "f", fairseq_state(state, 2, new=False), args=argparse.Namespace(**model_args()))
    checkpoint = {"args": argparse.Namespace(**model_args()), "model": fairseq_state(state, 2, new=False),
                  "extra_state": {"hook": Evil()}}
    torch.save(checkpoint, os.path.join(src, "model.pt"))
    with pytest.raises(CheckpointError, match=r"refused to unpickle global (posix|os)\.system"):
        convert(src, str(tmp_path / "out"), "safetensors")
    torch.save({"args": argparse.Namespace(**model_args()), "model": {"layer": torch.nn.Linear(2, 2)}},
               os.path.join(src, "model.pt"))
    with pytest.raises(CheckpointError, match=r"refused to unpickle global torch\.nn\.modules\.linear\.Linear"):
        convert(src, str(tmp_path / "out"), "safetensors")
    assert not marker.exists() and not os.path.exists(tmp_path / "out")


def test_convert_command_errors_are_one_line(mlm, tmp_path):
    _, state, _ = mlm
    args = argparse.Namespace(**{**model_args(), "activation_fn": "relu"})
    src = write_folder(tmp_path / "f", fairseq_state(state, 2, new=False), args=args)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "xlmr.cli.main", "convert", src, str(tmp_path / "out"), "--to",
                             "safetensors"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "activation_fn='relu' is not an architecture xlmr implements" in result.stderr
    good = write_folder(tmp_path / "g", fairseq_state(state, 2, new=False), args=argparse.Namespace(**model_args()))
    result = subprocess.run([sys.executable, "-m", "xlmr.cli.main", "convert", good, str(tmp_path / "out"), "--to",
                             "pt", "--verify"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 2 and "--verify runs SRC in a backend" in result.stderr
    assert not os.path.exists(tmp_path / "out")
