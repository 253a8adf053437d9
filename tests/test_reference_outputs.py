"""The shipped reference outputs of the embedded checkpoint: cross-checked by every backend, and what a single
installed backend is compared with by ``xlmr parity``."""

from __future__ import annotations

import numpy as np
import pytest

from xlmr.backends import installed_backends
from xlmr.cli import parity
from xlmr.cli.main import main


@pytest.mark.parametrize("backend", installed_backends())
def test_every_backend_agrees_with_the_shipped_reference(backend):
    reference = parity.reference_outputs(parity.DEFAULT_CHECKPOINT)
    assert reference is not None and set(reference) == set(parity.ARCHITECTURES)
    _, rows = parity.check_checkpoint(parity.DEFAULT_CHECKPOINT, [backend], reference=reference, progress=False)
    assert len(rows) == 7 and all(r.pair == f"{backend}-ref" for r in rows)
    assert all(r.passed for r in rows), [(r.architecture, r.max_abs, r.worst) for r in rows if not r.passed]
    assert all(r.outputs >= 2 for r in rows)  # logits and loss at least


def test_a_single_backend_is_checked_against_the_reference(monkeypatch, capsys):
    backend = installed_backends()[0]
    monkeypatch.setattr(parity, "installed_backends", lambda: [backend])
    assert main(["parity", "--classes", "XLMRobertaForSequenceClassification"]) == 0
    out = capsys.readouterr().out
    assert f"{backend}-ref" in out and f"all outputs agree: backends {backend} and the shipped reference" in out


def test_a_wrong_reference_fails(monkeypatch, capsys):
    backend = installed_backends()[0]
    real = parity.reference_outputs

    def skewed(checkpoint):
        out = real(checkpoint)
        out["XLMRobertaForMaskedLM"]["logits"] = out["XLMRobertaForMaskedLM"]["logits"] + np.float32(1e-3)
        return out

    monkeypatch.setattr(parity, "installed_backends", lambda: [backend])
    monkeypatch.setattr(parity, "reference_outputs", skewed)
    assert main(["parity", "--classes", "XLMRobertaForMaskedLM"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_one_backend_on_a_checkpoint_without_reference_names_the_extras(monkeypatch, capsys, tmp_path):
    import shutil

    folder = tmp_path / "mine"
    shutil.copytree(parity.DEFAULT_CHECKPOINT, folder, ignore=shutil.ignore_patterns(parity.REFERENCE_FILE))
    monkeypatch.setattr(parity, "installed_backends", lambda: ["pt"])
    assert main(["parity", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"xlmr parity: error: parity compares backends, and only pt is installed; {folder} ships no "
                   "reference outputs to compare with: add a second backend with pip install 'xlmr[tf]' or "
                   "pip install 'xlmr[flax]'")


def test_isolated_backends_give_the_same_rows_as_in_process():
    backends = installed_backends()[:2]
    classes = ["XLMRobertaForSequenceClassification"]
    _, direct = parity.check_checkpoint(parity.DEFAULT_CHECKPOINT, backends, classes, isolate=False, progress=False)
    _, isolated = parity.check_checkpoint(parity.DEFAULT_CHECKPOINT, backends, classes, isolate=True, progress=False)
    assert [(r.pair, r.max_abs, r.worst) for r in direct] == [(r.pair, r.max_abs, r.worst) for r in isolated]
