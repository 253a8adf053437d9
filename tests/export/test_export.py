"""``xlmr export``: every class in every format, run in its own runtime and compared with the PyTorch model.

The checkpoints are tiny (2 layers, 32 wide) with the embedded checkpoint's tokenizer, so ``--verify`` runs the
fixed multilingual sentences. Each export is checked twice: by ``--verify`` against the backend that wrote it, and
here against the PyTorch model on the same checkpoint (an independent implementation for SavedModel and StableHLO,
tested against HF in tests/pt).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from xlmr.cli import export as cli_export
from xlmr.cli.main import main
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.export_spec import FORMATS, TASKS, export_spec
from xlmr.common.weights import ARCHITECTURES

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")
pytest.importorskip("flax")

ASSETS = os.path.join(os.path.dirname(__file__), "..", "..", "xlmr", "assets", "default")
TOKENIZER = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
TINY = dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=130, type_vocab_size=2, num_labels=3)


def write_checkpoint(folder: str, architecture: str) -> str:
    """A checkpoint of ``architecture`` (all its weights, seed 0) with the embedded tokenizer."""
    import xlmr.pt as xpt

    labels = 2 if architecture == "XLMRobertaForQuestionAnswering" else 3
    config = XLMRobertaConfig(**{**TINY, "num_labels": labels}, architectures=[architecture],
                              is_decoder=architecture == "XLMRobertaForCausalLM")
    getattr(xpt, architecture)(config, seed=0).save_pretrained(folder)
    for name in TOKENIZER:
        shutil.copyfile(os.path.join(ASSETS, name), os.path.join(folder, name))
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: write_checkpoint(str(root / arch), arch) for arch in ARCHITECTURES}


def pt_outputs(checkpoint: str, architecture: str, inputs: dict) -> dict:
    """The PyTorch model's named outputs on ``inputs``: the independent reference."""
    from xlmr.backends import model_class

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model_class("pt", architecture).from_pretrained(checkpoint)
    spec = export_spec(model.config, architecture)
    return cli_export.reference("pt", model, inputs, spec)


def assert_close(got: dict, expected: dict, atol: float = 1e-5) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        np.testing.assert_allclose(got[name], expected[name], atol=atol, rtol=0, err_msg=name)


# ------------------------------------------------------------------------------------------------ 7 classes x 3
@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_class_exports_and_verifies_in_its_runtime(checkpoints, tmp_path, format, architecture):
    checkpoint, out = checkpoints[architecture], str(tmp_path / "out")
    summary = cli_export.export_checkpoint(checkpoint, out, format, verify_export=True)
    assert summary["architecture"] == architecture  # inferred from config.architectures
    assert summary["verify"]["max_abs"] <= 1e-5
    assert len({tuple(s) for s in summary["verify"]["shapes"]}) == 2  # two batch sizes and sequence lengths

    manifest = json.load(open(os.path.join(out, "export.json")))
    config = XLMRobertaConfig.from_pretrained(out)
    spec = export_spec(config, architecture)
    assert [t["name"] for t in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [t["name"] for t in manifest["outputs"]] == list(spec.output_names)
    assert os.path.exists(os.path.join(out, "tokenizer.json"))

    batches = cli_export.verify_batches(checkpoint, config, architecture, spec)
    run = cli_export.runtime(format, out, spec)
    for inputs in batches:
        assert_close(run(inputs), pt_outputs(checkpoint, architecture, inputs))


# ------------------------------------------------------------------------------------------------ axes
LONG = 128  # the position limit of TINY (130 - pad_token_id - 1); the pt trace ran at length 8


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_no_axis_is_frozen_at_trace_time(checkpoints, tmp_path, format):
    # The causal LM builds its mask from the sequence length: a length taken as a Python int at trace time would
    # be frozen into the graph (it was, in the ONNX export, before the fix this test pins).
    architecture = "XLMRobertaForCausalLM"
    checkpoint, out = checkpoints[architecture], str(tmp_path / "out")
    cli_export.export_checkpoint(checkpoint, out, format)
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 8000, (3, LONG))
    mask = np.ones_like(ids)
    mask[1, LONG // 3:] = 0
    ids[1, LONG // 3:] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": rng.integers(0, 2, ids.shape) * mask}
    spec = export_spec(XLMRobertaConfig.from_pretrained(out), architecture)
    got = cli_export.runtime(format, out, spec)(inputs)
    assert got["logits"].shape == (3, LONG, 8002)
    assert_close(got, pt_outputs(checkpoint, architecture, inputs))


def test_stablehlo_refuses_a_sequence_past_the_position_limit(checkpoints, tmp_path):
    out = str(tmp_path / "out")
    cli_export.export_checkpoint(checkpoints["XLMRobertaForSequenceClassification"], out, "stablehlo")
    spec = export_spec(XLMRobertaConfig.from_pretrained(out), "XLMRobertaForSequenceClassification")
    ids = np.full((1, LONG + 1), 5)
    with pytest.raises(ValueError, match="129 tokens, over the export's limit of 128"):
        cli_export.runtime("stablehlo", out, spec)({"input_ids": ids, "attention_mask": np.ones_like(ids),
                                                     "token_type_ids": np.zeros_like(ids)})


def test_stablehlo_loader_runs_without_xlmr(checkpoints, tmp_path):
    architecture = "XLMRobertaForTokenClassification"
    out = str(tmp_path / "out")
    cli_export.export_checkpoint(checkpoints[architecture], out, "stablehlo")
    # A fresh interpreter in which xlmr, flax, torch and tensorflow cannot be imported: only JAX and numpy.
    script = ("import sys, numpy as np\n"
              "for name in ('xlmr', 'flax', 'torch', 'tensorflow'):\n    sys.modules[name] = None\n"
              "sys.path.insert(0, '.')\n"
              "from run_stablehlo import load\n"
              "ids = np.array([[0, 3537, 8, 2], [0, 17, 2, 1]]); mask = (ids != 1).astype(int)\n"
              "np.save(sys.argv[1], load('.')(input_ids=ids, attention_mask=mask)['logits'])\n")
    result = tmp_path / "logits.npy"
    subprocess.run([sys.executable, "-c", script, str(result)], cwd=out, check=True, timeout=300)
    ids = np.array([[0, 3537, 8, 2], [0, 17, 2, 1]])
    expected = pt_outputs(checkpoints[architecture], architecture,
                          {"input_ids": ids, "attention_mask": (ids != 1).astype(int), "token_type_ids": 0 * ids})
    np.testing.assert_allclose(np.load(result), expected["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("weights", ["tf", "flax"])
def test_any_checkpoint_format_is_a_source(checkpoints, tmp_path, weights):
    from xlmr.common.convert import convert

    architecture = "XLMRobertaForTokenClassification"
    source = str(tmp_path / "source")
    convert(checkpoints[architecture], source, weights)  # tf_model.h5 or flax_model.msgpack, read by pt here
    summary = cli_export.export_checkpoint(source, str(tmp_path / "out"), "onnx", verify_export=True)
    spec = export_spec(XLMRobertaConfig.from_pretrained(source), architecture)
    inputs = cli_export.verify_batches(source, XLMRobertaConfig.from_pretrained(source), architecture, spec)[0]
    assert summary["verify"]["max_abs"] <= 1e-5
    assert_close(cli_export.runtime("onnx", str(tmp_path / "out"), spec)(inputs),
                 pt_outputs(checkpoints[architecture], architecture, inputs))


# ------------------------------------------------------------------------------------------------ external data
def test_onnx_weights_move_to_external_data_past_the_threshold(checkpoints, tmp_path, monkeypatch):
    import xlmr.pt.export as pt_export

    monkeypatch.setattr(pt_export, "EXTERNAL_DATA_BYTES", 64 * 1024)  # stands for 2 GB: the tiny model passes it
    checkpoint, out = checkpoints["XLMRobertaForMaskedLM"], str(tmp_path / "out")
    summary = cli_export.export_checkpoint(checkpoint, out, "onnx", verify_export=True)
    assert "model.onnx.data" in summary["files"]
    graph, data = (os.path.getsize(os.path.join(out, f)) for f in ("model.onnx", "model.onnx.data"))
    assert graph < 200_000 < data  # the weights (8002 x 32 embeddings alone: 1 MB) left the protobuf


def test_onnx_stays_one_file_under_the_threshold(checkpoints, tmp_path):
    summary = cli_export.export_checkpoint(checkpoints["XLMRobertaForMaskedLM"], str(tmp_path / "out"), "onnx")
    assert "model.onnx.data" not in summary["files"]


# ------------------------------------------------------------------------------------------------ errors
def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_unknown_format_is_one_line(checkpoints, tmp_path, capsys):
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaModel"], str(tmp_path / "o"), "--format", "tflite"])
    assert "unknown format 'tflite'" in err and "onnx, savedmodel, stablehlo" in err


@pytest.mark.parametrize("format,module,extra", [("savedmodel", "tensorflow", "tf"), ("stablehlo", "flax", "flax"),
                                                 ("onnx", "onnx", "export")])
def test_missing_framework_names_the_extra(checkpoints, tmp_path, capsys, monkeypatch, format, module, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaModel"], str(tmp_path / "o"), "--format", format])
    assert f"pip install 'xlmr[{extra}]'" in err and module in err
    assert not os.path.exists(tmp_path / "o")


def test_verify_without_its_runtime_is_one_line(checkpoints, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaModel"], str(tmp_path / "o"), "--format", "onnx",
                                  "--verify"])
    assert "--verify" in err and "onnxruntime" in err and "pip install 'xlmr[export]'" in err


def test_task_without_its_head_is_refused(checkpoints, tmp_path, capsys):
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaForMaskedLM"], str(tmp_path / "o"),
                                  "--format", "onnx", "--task", "question-answering"])
    assert "cannot serve question-answering" in err and "qa_outputs.weight" in err and "fill-mask" in err
    assert not os.path.exists(tmp_path / "o")


def test_unknown_task_and_wrong_backend_are_one_line(checkpoints, tmp_path, capsys):
    ckpt = checkpoints["XLMRobertaForMaskedLM"]
    err = one_line_error(capsys, ["export", ckpt, str(tmp_path / "o"), "--format", "onnx", "--task", "summarize"])
    assert "unknown task 'summarize'" in err and "fill-mask" in err
    err = one_line_error(capsys, ["export", ckpt, str(tmp_path / "o"), "--format", "onnx", "--backend", "tf"])
    assert "written from the pt backend" in err


def test_float16_onnx_verifies_relative_to_its_outputs(checkpoints, tmp_path):
    out = str(tmp_path / "o")
    summary = cli_export.export_checkpoint(checkpoints["XLMRobertaForSequenceClassification"], out, "onnx",
                                           dtype="float16", verify_export=True)
    check = summary["verify"]
    assert check["max_abs"] <= check["tolerance"] < 1e-3  # not bf16's absolute 5e-2: logits here are ~0.02
    assert json.load(open(os.path.join(out, "export.json")))["outputs"][0]["dtype"] == "float16"


def test_bfloat16_without_cpu_kernels_is_one_line(checkpoints, tmp_path, capsys):
    # onnxruntime's CPU provider has no bfloat16 Add/MatMul/LayerNormalization kernels.
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaForSequenceClassification"],
                                  str(tmp_path / "o"), "--format", "onnx", "--dtype", "bfloat16"])
    assert "bfloat16" in err and "CPU" in err and "onnxruntime" in err
    assert not os.path.exists(tmp_path / "o")


def test_existing_out_needs_force_and_is_left_alone(checkpoints, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    err = one_line_error(capsys, ["export", checkpoints["XLMRobertaModel"], str(out), "--format", "onnx"])
    assert "already exists" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep"
    assert main(["export", checkpoints["XLMRobertaModel"], str(out), "--format", "onnx", "--force"]) == 0
    assert sorted(os.listdir(out)) == sorted(["config.json", "export.json", "model.onnx", *TOKENIZER])
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary sibling left behind


def test_verify_exits_1_on_a_difference_and_writes_nothing(checkpoints, tmp_path, capsys, monkeypatch):
    real = cli_export.reference

    def off_by_a_little(*args):  # the model's outputs moved by 1e-3: what a broken export would look like
        return {k: v + 1e-3 for k, v in real(*args).items()}

    monkeypatch.setattr(cli_export, "reference", off_by_a_little)
    out = tmp_path / "o"
    assert main(["export", checkpoints["XLMRobertaForSequenceClassification"], str(out), "--format", "onnx",
                 "--verify"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--verify failed" in err and "1.000e-03" in err and "logits" in err
    assert not out.exists()


def test_out_holding_the_checkpoint_is_refused_even_with_force(checkpoints, tmp_path, capsys):
    checkpoint = checkpoints["XLMRobertaModel"]
    before = sorted(os.listdir(checkpoint))
    for out in (checkpoint, os.path.dirname(checkpoint)):
        err = one_line_error(capsys, ["export", checkpoint, out, "--format", "onnx", "--force"])
        assert "is or contains the checkpoint folder" in err
    assert sorted(os.listdir(checkpoint)) == before


def test_cli_error_is_one_line_in_a_real_process(checkpoints, tmp_path):
    result = subprocess.run([sys.executable, "-m", "xlmr", "export", checkpoints["XLMRobertaModel"],
                             str(tmp_path / "o"), "--format", "coreml"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "xlmr export: error: unknown format 'coreml'; choose from onnx, savedmodel, stablehlo"]


def test_task_names_cover_the_seven_classes():
    assert sorted(TASKS.values()) == sorted(ARCHITECTURES)
