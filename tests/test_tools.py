"""tools/parity.py (the main job) and tools/convert.py, end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reference import TINY

from xlmr.cli import parity
from xlmr.common.checkpoint import WEIGHTS_NAMES, find_checkpoint, read_checkpoint
from xlmr.cli.convert import verify
from xlmr.common.convert import ConversionError, convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
# The tiny shape with the default checkpoint's vocabulary (its tokenizer), positions and epsilon.
TINY = {**TINY, "vocab_size": 8002, "max_position_embeddings": 66, "type_vocab_size": 1, "layer_norm_eps": 1e-5}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT)


def _digest(folder) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """A tiny MaskedLM written by HF transformers itself, with the test tokenizer beside it, and HF's logits."""
    transformers = pytest.importorskip("transformers")
    import torch

    from xlmr.common.tokenization import XLMRobertaTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf_mlm")
    model = transformers.XLMRobertaForMaskedLM(transformers.XLMRobertaConfig(**TINY)).eval()
    model.save_pretrained(folder)
    XLMRobertaTokenizer(os.path.join(FIXTURES, "sentencepiece.bpe.model")).save_pretrained(folder)
    ids = torch.tensor([[0, 100, 2000, 37, 2, 1, 1], [0, 5, 6, 7, 8, 9, 2]])
    mask = (ids != 1).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.numpy()
    return str(folder), ids.numpy(), mask.numpy(), logits


# ------------------------------------------------------------------------------------------------ parity.py
def test_parity_main_job_passes_on_the_embedded_checkpoint():
    result = _run("tools/parity.py", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["passed"] and report["backends"] == ["pt", "tf", "flax"]
    entry = report["checkpoints"][0]
    assert entry["checkpoint"] == parity.DEFAULT_CHECKPOINT
    assert "tokenised with the checkpoint's tokenizer" in entry["inputs"]
    rows = entry["rows"]
    assert len(rows) == 7 * 3 and {r["architecture"] for r in rows} == set(parity.ARCHITECTURES)
    assert all(r["max_abs"] <= r["tolerance"] == 1e-5 for r in rows)
    assert all(r["outputs"] >= 5 for r in rows)  # logits, every hidden state, every attention, loss, ...


def test_parity_uses_random_ids_when_checkpoint_has_no_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(1)
    config = transformers.XLMRobertaConfig(**{**TINY, "vocab_size": 120},
                                           position_embedding_type="relative_key_query")
    transformers.XLMRobertaModel(config).save_pretrained(tmp_path)
    result = _run("tools/parity.py", str(tmp_path), "--json", "--classes",
                  "XLMRobertaModel,XLMRobertaForQuestionAnswering")
    assert result.returncode == 0, result.stderr[-2000:]
    entry = json.loads(result.stdout)["checkpoints"][0]
    assert entry["inputs"].startswith("random ids within the vocabulary, with padding")
    assert len(entry["rows"]) == 2 * 3 and all(r["passed"] for r in entry["rows"])


def test_parity_fails_loudly_when_a_backend_differs(monkeypatch, capsys):
    from xlmr.cli.main import main

    real = parity.run_backend

    def skewed(backend, *args, **kwargs):
        out = real(backend, *args, **kwargs)
        if backend == "flax":
            out["logits"] = out["logits"] + 3e-4
        return out

    monkeypatch.setattr(parity, "run_backend", skewed)
    code = main(["parity", "--classes", "XLMRobertaForMaskedLM", "--backends", "pt,flax"])
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if "pt-flax" in line)
    assert code == 1 and "FAIL" in row and row.endswith("logits") and "FAILED" in text
    assert 2.9e-4 < float(row.split()[2]) < 3.1e-4


def test_compare_reports_the_worst_output_and_mismatched_names():
    a = {"logits": np.zeros((2, 3)), "hidden_states.0": np.ones(4)}
    b = {"logits": np.array([[0, 0, 0], [0, 2e-5, 0]]), "hidden_states.0": np.ones(4) + 1e-6}
    diff, worst = parity.compare(a, b)
    assert worst == "logits" and diff == pytest.approx(2e-5)
    diff, worst = parity.compare(a, {"logits": a["logits"]})
    assert diff == float("inf") and "hidden_states.0" in worst


def test_parity_rejects_missing_folder_in_one_line(tmp_path):
    result = _run("tools/parity.py", str(tmp_path / "nope"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"checkpoint folder {tmp_path / 'nope'} does not exist" in result.stderr


# ------------------------------------------------------------------------------------------------ convert.py
def _logits_in(backend: str, folder: str, ids, mask) -> np.ndarray:
    out = parity.run_backend(backend, "XLMRobertaForMaskedLM", folder,
                             __import__("xlmr").XLMRobertaConfig.from_pretrained(folder),
                             {"input_ids": ids, "attention_mask": mask})
    return out["logits"]


@pytest.mark.parametrize("to", ["safetensors", "pt", "tf", "flax"])
def test_convert_from_hf_safetensors_to_every_format_loads_in_its_framework(hf_checkpoint, tmp_path, to):
    src, ids, mask, hf_logits = hf_checkpoint
    before = _digest(src)
    dst = str(tmp_path / to)
    summary = convert(src, dst, to)
    assert _digest(src) == before  # the source is never modified
    files = sorted(os.listdir(dst))
    assert WEIGHTS_NAMES[to] in files and "config.json" in files
    assert {"sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json"} <= set(files)
    assert summary["architecture"] == "XLMRobertaForMaskedLM" and find_checkpoint(dst)[0] == to
    backend = {"safetensors": "flax", "pt": "pt", "tf": "tf", "flax": "flax"}[to]
    np.testing.assert_allclose(_logits_in(backend, dst, ids, mask), hf_logits, atol=1e-5, rtol=0)
    result = verify(src, dst, "safetensors", to)
    assert result["max_abs"] <= 1e-5 and result["backends"][0] == "pt"
    # a safetensors target is verified in another framework than the source's, a native format in its own
    assert result["backends"][1] == (backend if to != "safetensors" else "tf")


def test_convert_round_trip_through_every_format_is_bit_exact(hf_checkpoint, tmp_path):
    src = hf_checkpoint[0]
    reference = read_checkpoint(src)
    current = src
    for i, to in enumerate(["pt", "tf", "flax", "safetensors"]):
        nxt = str(tmp_path / f"{i}_{to}")
        convert(current, nxt, to)
        current = nxt
    back = read_checkpoint(current)
    assert sorted(back) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_hf_pytorch_loads_converted_checkpoints(hf_checkpoint, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    src, ids, mask, hf_logits = hf_checkpoint
    for to in ("pt", "safetensors"):
        dst = str(tmp_path / to)
        convert(src, dst, to)
        model = transformers.XLMRobertaForMaskedLM.from_pretrained(dst).eval()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
        np.testing.assert_allclose(logits, hf_logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype,numpy_name", [("bfloat16", "bfloat16"), ("float16", "float16")])
def test_convert_casts_dtype_and_verify_accepts_the_rounding(hf_checkpoint, tmp_path, dtype, numpy_name):
    src = hf_checkpoint[0]
    dst = str(tmp_path / dtype)
    result = _run("tools/convert.py", src, dst, "--to", "safetensors", "--dtype", dtype, "--verify", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert 0 < summary["verify"]["max_abs"] <= summary["verify"]["tolerance"]
    state = read_checkpoint(dst)
    assert {v.dtype.name for v in state.values()} == {numpy_name}
    ref = read_checkpoint(src)["roberta.encoder.layer.0.output.dense.weight"]
    got = state["roberta.encoder.layer.0.output.dense.weight"].astype(np.float32)
    assert 0 < np.max(np.abs(got - ref)) <= np.max(np.abs(ref)) * 2 ** -7  # one rounding step of bf16 at most


def test_convert_cli_verify_prints_the_comparison(hf_checkpoint, tmp_path):
    result = _run("tools/convert.py", hf_checkpoint[0], str(tmp_path / "out"), "--to", "flax", "--verify")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "flax_model.msgpack" in result.stdout and "verified:" in result.stdout


def test_verify_fails_when_outputs_differ(hf_checkpoint, tmp_path):
    from xlmr.common.checkpoint import save_pretrained
    from xlmr.common.config import XLMRobertaConfig

    src = hf_checkpoint[0]
    dst = str(tmp_path / "tampered")
    convert(src, dst, "pt")
    state = read_checkpoint(dst)
    state = {k: np.array(v) for k, v in state.items()}
    state["roberta.encoder.layer.1.output.dense.bias"][0] += 1e-2  # one feature: LayerNorm cannot absorb it
    save_pretrained(dst, XLMRobertaConfig.from_pretrained(dst), state, "XLMRobertaForMaskedLM", format="pt")
    with pytest.raises(ConversionError, match="--verify failed: .* differ by .* over the tolerance"):
        verify(src, dst, "safetensors", "pt")


def test_sharded_source_converts(hf_checkpoint, tmp_path):
    src, ids, mask, hf_logits = hf_checkpoint
    sharded = str(tmp_path / "sharded")
    convert(src, sharded, "pt", max_shard_size="200KB")
    fmt, files = find_checkpoint(sharded)
    assert fmt == "pt" and len(files) > 1
    dst = str(tmp_path / "single")
    convert(sharded, dst, "safetensors")
    np.testing.assert_allclose(_logits_in("pt", dst, ids, mask), hf_logits, atol=1e-5, rtol=0)


def test_convert_refuses_to_overwrite_without_force(hf_checkpoint, tmp_path):
    src = hf_checkpoint[0]
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    result = _run("tools/convert.py", src, str(dst), "--to", "pt")
    assert result.returncode == 2 and "already exists; pass --force" in result.stderr
    assert os.listdir(dst) == ["keep.txt"]
    result = _run("tools/convert.py", src, str(dst), "--to", "pt", "--force")  # keep.txt is not a checkpoint's
    assert result.returncode == 2 and "holds keep.txt, which --force would delete" in result.stderr
    assert os.listdir(dst) == ["keep.txt"]
    os.remove(dst / "keep.txt")
    (dst / "model.safetensors").write_bytes(b"stale")  # a folder of checkpoint files is replaced whole
    (dst / "config.json").write_text("{}")
    result = _run("tools/convert.py", src, str(dst), "--to", "pt", "--force")
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" not in os.listdir(dst) and "pytorch_model.bin" in os.listdir(dst)
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or old folder beside it


def test_crash_mid_conversion_leaves_no_destination(hf_checkpoint, tmp_path, monkeypatch):
    import xlmr.common.convert as checkpoint  # the name convert() calls

    real = checkpoint.save_pretrained

    def crash(directory, *args, **kwargs):
        real(directory, *args, **kwargs)
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint, "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        convert(hf_checkpoint[0], str(tmp_path / "out"), "tf")
    assert os.listdir(tmp_path) == []  # neither the destination nor a temporary folder


@pytest.mark.parametrize("case,needle", [
    ("missing", "source checkpoint folder {src} does not exist"),
    ("no_weights", "no weights in checkpoint folder {src}"),
    ("config_mismatch", "does not fit config.json"),
    ("hidden_mismatch", "has shape (32,), the config gives (48,)"),
    ("unknown_format", "invalid choice: 'onnx'"),
])
def test_convert_errors_are_one_line_without_traceback(hf_checkpoint, tmp_path, case, needle):
    import shutil

    src = str(tmp_path / "src")
    if case != "missing":
        shutil.copytree(hf_checkpoint[0], src)
    config_path = os.path.join(src, "config.json")
    if case == "no_weights":
        os.remove(os.path.join(src, "model.safetensors"))
    elif case in ("config_mismatch", "hidden_mismatch"):
        config = json.load(open(config_path))
        if case == "config_mismatch":  # a relative-position tensor in a checkpoint whose config says absolute
            from safetensors.numpy import save_file
            state = {k: np.array(v) for k, v in read_checkpoint(src).items()}
            state["roberta.encoder.layer.0.attention.self.distance_embedding.weight"] = np.zeros((131, 8), np.float32)
            save_file(state, os.path.join(src, "model.safetensors"))
        else:
            config["hidden_size"] = 48
        json.dump(config, open(config_path, "w"))
    args = [src, str(tmp_path / "dst"), "--to", "onnx" if case == "unknown_format" else "pt"]
    result = _run("tools/convert.py", *args)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert needle.format(src=src) in result.stderr
    if case != "unknown_format":
        assert len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "dst")
