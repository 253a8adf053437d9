"""Inference below float32 (xlmr/{pt,tf,flax}/quantize.py, xlmr/common/quantization.py).

Every quantized path is compared with float32 logits of the same checkpoint (xlmr-default: trained weights, so
top-1 predictions mean something) and with the other backends: within TOLERANCE of float32, top-1 predictions
equal to float32's and to the other backends' on at least TOP1_AGREEMENT of the positions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xlmr.common import quantization
from xlmr.common.quantization import MODES, TOLERANCE, TOP1_AGREEMENT

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("flax")

import xlmr.flax  # noqa: E402
import xlmr.pt  # noqa: E402
import xlmr.tf  # noqa: E402
from xlmr import XLMRobertaTokenizerFast  # noqa: E402
from xlmr.flax.quantize import quantize as quantize_flax, quantized_layers as layers_flax  # noqa: E402
from xlmr.pt.quantize import quantize as quantize_pt, quantized_layers as layers_pt  # noqa: E402
from xlmr.tf.quantize import quantize as quantize_tf, quantized_layers as layers_tf  # noqa: E402

BACKENDS = {"pt": xlmr.pt, "tf": xlmr.tf, "flax": xlmr.flax}
QUANTIZE = {"pt": quantize_pt, "tf": quantize_tf, "flax": quantize_flax}
SENTENCES = [
    "All human beings are born free and equal in dignity and rights.",
    "Everyone has the right to life, liberty and security of person.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
    "No one shall be held in slavery or servitude.",
]


@pytest.fixture(scope="module")
def batch():
    tokenizer = XLMRobertaTokenizerFast.from_pretrained("xlmr-default")
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="np")
    return np.asarray(encoded["input_ids"]), np.asarray(encoded["attention_mask"])


def load(backend: str, cls: str, mode: str | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classification head is new (seeded), and bf16 is slow here
        kwargs = {"num_labels": 3} if cls == "XLMRobertaForSequenceClassification" else {}
        if mode is not None:
            kwargs["quantize"] = mode
        return getattr(BACKENDS[backend], cls).from_pretrained("xlmr-default", **kwargs)


def logits(backend: str, model, batch) -> np.ndarray:
    ids, mask = batch
    if backend == "pt":
        with torch.inference_mode():
            return model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.float().numpy()
    if backend == "tf":
        return np.asarray(model.compiled_call(input_ids=ids, attention_mask=mask).logits, np.float32)
    return np.asarray(model(input_ids=ids, attention_mask=mask).logits, np.float32)


@pytest.fixture(scope="module")
def outputs(batch):
    """(backend, class, mode or "fp32") -> logits."""
    found = {}
    for cls in ("XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification"):
        for backend in BACKENDS:
            for mode in (None, *MODES):
                found[(backend, cls, mode or "fp32")] = logits(backend, load(backend, cls, mode), batch)
    return found


@pytest.mark.slow  # loads xlmr-default 18 times in three frameworks: about a minute on 2 cores
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cls", ["XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification"])
def test_within_tolerance_of_float32(outputs, cls, backend, mode):
    reference, found = outputs[(backend, cls, "fp32")], outputs[(backend, cls, mode)]
    difference = float(np.abs(found - reference).max())
    assert difference <= TOLERANCE[mode], f"{backend} {mode} {cls}: max-abs {difference} > {TOLERANCE[mode]}"
    assert difference > 0, f"{backend} {mode}: no difference from float32: the path did not run"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_top1_agrees_with_float32_and_across_backends(outputs, batch, mode):
    keep = batch[1].astype(bool)  # real tokens, not padding
    predicted = {b: outputs[(b, "XLMRobertaForMaskedLM", mode)].argmax(-1)[keep] for b in BACKENDS}
    fp32 = outputs[("pt", "XLMRobertaForMaskedLM", "fp32")].argmax(-1)[keep]
    for backend, labels in predicted.items():
        assert (labels == fp32).mean() >= TOP1_AGREEMENT, (backend, mode, (labels == fp32).mean())
    for a, b in (("pt", "tf"), ("pt", "flax"), ("tf", "flax")):
        agreement = (predicted[a] == predicted[b]).mean()
        assert agreement >= TOP1_AGREEMENT, f"{mode}: {a} and {b} agree on {agreement:.3f} of the positions"


@pytest.mark.slow
def test_float32_untouched(outputs, batch):
    """Quantizing models leaves float32 ones as they were: same logits, backends equal at 1e-5."""
    for cls in ("XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification"):
        again = logits("pt", load("pt", cls, None), batch)
        np.testing.assert_array_equal(again, outputs[("pt", cls, "fp32")])
        for backend in ("tf", "flax"):
            np.testing.assert_allclose(outputs[(backend, cls, "fp32")], again, atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_int8_layers_are_int8_and_the_rest_float(backend):
    model = load(backend, "XLMRobertaForMaskedLM", "int8")
    layers = {"pt": layers_pt, "tf": layers_tf, "flax": layers_flax}[backend](model)
    assert len(layers) == 6 * model.config.num_hidden_layers
    for path, layer in layers.items():
        if backend == "pt":
            assert isinstance(layer, torch.ao.nn.quantized.dynamic.Linear), path
            assert layer.weight().dtype == torch.qint8, path
        elif backend == "tf":
            assert layer.quantization_mode == "int8" and layer._kernel.dtype == "int8", path
        else:
            assert layer.kernel[...].dtype == np.int8, path
    embeddings = model.roberta.embeddings.word_embeddings
    table = {"pt": lambda: embeddings.weight, "tf": lambda: embeddings.embeddings,
             "flax": lambda: embeddings.embedding[...]}[backend]()
    assert str(table.dtype).endswith("float32")
    if backend == "pt":
        assert model.lm_head.decoder.weight.dtype == torch.float32
        assert model.lm_head.dense.weight.dtype == torch.float32
    elif backend == "tf":
        assert model.lm_head.dense.quantization_mode is None
    else:
        assert model.lm_head.dense.kernel[...].dtype == np.float32


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bad_mode_training_and_saving_refused(backend, tmp_path):
    cls = getattr(BACKENDS[backend], "XLMRobertaForMaskedLM")
    with pytest.raises(ValueError, match=r"^quantize='int4' is not a mode: choose one of 'int8', 'bf16'$"):
        cls.from_pretrained("xlmr-default", quantize="int4")
    model = load(backend, "XLMRobertaForMaskedLM", None)
    with pytest.raises(ValueError, match="quantize=None is not a mode"):
        QUANTIZE[backend](model, None)
    if backend != "tf":  # Keras has no training mode to refuse: training= is per call
        model.train()
        with pytest.raises(ValueError, match="training mode"):
            QUANTIZE[backend](model, "int8")
        model.eval()
    QUANTIZE[backend](model, "int8")
    with pytest.raises(ValueError, match=r"quantized already \(int8\)"):
        QUANTIZE[backend](model, "bf16")
    with pytest.raises(ValueError, match="save the float32 model"):
        model.save_pretrained(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_slower_path_warns_once(monkeypatch):
    monkeypatch.setattr(quantization, "_warned", set())
    plain = {"avx512f", "avx512_vnni"}
    with pytest.warns(RuntimeWarning, match=r"lacks avx512_bf16 and amx_bf16; this path took 3x the float32 time"):
        quantization.warn_if_slower("pt", "bf16", plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantization.warn_if_slower("pt", "bf16", plain)  # once per process
        assert quantization.warn_if_slower("pt", "bf16", plain | {"avx512_bf16"}) is None  # faster there
        assert quantization.warn_if_slower("flax", "int8", plain) is None
    assert "compiled_call" in quantization.slower_message(quantization.TF_EAGER, "int8", plain)
    assert "1.33x" in quantization.slower_message("tf", "bf16", {"amx_bf16"})


def test_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert quantization.cpu_flags(str(info)) == {"fpu", "avx512f", "avx512_vnni"}
    assert quantization.cpu_flags(str(tmp_path / "missing")) == frozenset()
    assert quantization.has_instructions("int8", quantization.cpu_flags(str(info)))
