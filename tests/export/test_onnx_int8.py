"""``xlmr export --format onnx --quantize int8``: ONNX Runtime's dynamic int8 of the encoder's MatMuls.

One export of the embedded default checkpoint (an MLM trained on UDHR, so its top-1 predictions mean something),
checked against the float32 PyTorch model on the fixed multilingual verify batches: the graph holds int8 weights
and integer MatMuls, the embeddings and the LM head stay float, the file is smaller, the logits are within the
declared int8 tolerance and the top-1 tokens agree at the rate measured when the tolerance was set.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from xlmr.cli import export as cli_export
from xlmr.cli.main import main
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.export_spec import export_spec

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "xlmr", "assets", "default")
# Measured on the verify batches (347 unmasked positions): 100%. A rate, since a near-tie may flip.
MIN_TOP1 = 0.98


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    out = {}
    for name, flags in (("fp32", []), ("int8", ["--quantize", "int8", "--verify"])):
        assert main(["export", DEFAULT, str(root / name), "--format", "onnx", "--task", "fill-mask", *flags]) == 0
        out[name] = str(root / name)
    return out


def _graph(folder: str):
    return onnx.load(os.path.join(folder, "model.onnx")).graph


def test_int8_graph_has_integer_weights_and_float_embeddings_and_head(exports):
    graph = _graph(exports["int8"])
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") == 12  # 2 layers x (q, k, v, attention output, intermediate, output)
    assert "DynamicQuantizeLinear" in ops
    weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(weights) == 12  # the rest are the per-channel zero points (all 0: symmetric)
    floats = {n.name for n in graph.node if n.op_type in ("MatMul", "Gather")}
    assert any("lm_head" in n and n.endswith("MatMul_1") for n in floats)  # the decoder
    assert any("word_embeddings" in n for n in floats)
    assert not any("lm_head" in n.name for n in graph.node if n.op_type == "MatMulInteger")


def test_int8_file_is_smaller(exports):
    sizes = {k: os.path.getsize(os.path.join(v, "model.onnx")) for k, v in exports.items()}
    # The encoder's float32 weights (2 x (4 x 64 x 64 + 2 x 64 x 128) x 4 bytes) shrink to a quarter, plus
    # per-channel scales and zero points; the 8002-row embedding and decoder stay float32 and dominate this model.
    encoder = 2 * (4 * 64 * 64 + 2 * 64 * 128) * 4
    assert sizes["fp32"] - sizes["int8"] > 0.5 * encoder
    manifest = open(os.path.join(exports["int8"], "export.json"), encoding="utf-8").read()
    assert '"quantize": "int8"' in manifest


def test_int8_logits_within_tolerance_and_top1_agrees_with_fp32_pytorch(exports):
    import warnings

    from xlmr.pt import XLMRobertaForMaskedLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = XLMRobertaForMaskedLM.from_pretrained(DEFAULT)
    config = XLMRobertaConfig.from_pretrained(DEFAULT)
    spec = export_spec(config, "XLMRobertaForMaskedLM")
    run = {k: cli_export.runtime("onnx", v, spec) for k, v in exports.items()}
    agree = counted = 0
    for inputs in cli_export.verify_batches(DEFAULT, config, "XLMRobertaForMaskedLM", spec):
        want = cli_export.reference("pt", model, inputs, spec)["logits"]
        np.testing.assert_allclose(run["fp32"](inputs)["logits"], want, atol=1e-4, rtol=0)
        got = run["int8"](inputs)["logits"]
        diff = np.abs(got - want).max()
        assert 0 < diff <= cli_export.INT8_VERIFY_RELATIVE * np.abs(want).max()
        keep = inputs["attention_mask"].astype(bool)
        same = (got.argmax(-1) == want.argmax(-1))[keep]
        agree, counted = agree + same.sum(), counted + same.size
    assert counted > 300 and agree / counted >= MIN_TOP1


def test_verify_fails_over_the_int8_tolerance_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_export, "INT8_VERIFY_RELATIVE", 1e-6)
    out = tmp_path / "out"
    assert main(["export", DEFAULT, str(out), "--format", "onnx", "--quantize", "int8", "--verify"]) == 1
    err = capsys.readouterr().err.strip()
    assert "onnx int8 export" in err and "was not written" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_verify_fails_under_the_top1_rate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_export, "INT8_MIN_TOP1", 1.01)
    assert main(["export", DEFAULT, str(tmp_path / "out"), "--format", "onnx", "--quantize", "int8",
                 "--verify"]) == 1
    assert "top-1" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--format", "savedmodel", "--quantize", "int8"], "--quantize int8 is for --format onnx"),
    (["--format", "onnx", "--quantize", "int4"], "unknown --quantize 'int4'"),
    (["--format", "onnx", "--quantize", "int8", "--dtype", "float16"], "--dtype float16 cannot be combined"),
])
def test_bad_quantize_is_one_line(tmp_path, capsys, flags, message):
    assert main(["export", DEFAULT, str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_int8_of_a_graph_with_external_data_verifies(tmp_path, monkeypatch):
    import xlmr.pt.export as pt_export

    monkeypatch.setattr(pt_export, "EXTERNAL_DATA_BYTES", 64 * 1024)  # stands for 2 GB: the default model passes it
    out = str(tmp_path / "out")
    summary = cli_export.export_checkpoint(DEFAULT, out, "onnx", verify_export=True, quantize="int8")
    assert summary["verify"]["top1"] >= MIN_TOP1
    manifest = open(os.path.join(out, "export.json"), encoding="utf-8").read()
    onnx_files = sorted(f for f in summary["files"] if f.startswith("model.onnx"))
    assert onnx_files == ["model.onnx", "model.onnx.data"] and all(f'"{f}"' in manifest for f in onnx_files)
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no scratch left behind
    ops = {n.op_type for n in onnx.load(os.path.join(out, "model.onnx")).graph.node}
    assert "MatMulInteger" in ops
