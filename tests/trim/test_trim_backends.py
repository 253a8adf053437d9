"""A trimmed checkpoint is the full model restricted to the kept ids: in every xlmr backend and in HF transformers
4.57.6, on the corpus, against HF's full model on the full tokenizer's ids (1e-5)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xlmr.backends import call_model, installed_backends, model_class, to_numpy  # noqa: E402
from xlmr.cli.trim import compare_models, verify  # noqa: E402
from xlmr.common.checkpoint import read_checkpoint, save_pretrained  # noqa: E402
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.trim import TrimError, read_corpus, trim_checkpoint  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
SPM = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")
TEXTS = [d["text"] for d in json.load(open(os.path.join(ROOT, "tests", "fixtures", "texts.json"), encoding="utf-8"))]
CORPUS = TEXTS[:40]
ATOL = 1e-5


def _hf_outputs(folder: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HF's own tokenizer (fast, from the folder's files) and HF's MaskedLM: (ids, mask, hidden, logits)."""
    tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    model = transformers.XLMRobertaForMaskedLM.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return (batch["input_ids"].numpy(), batch["attention_mask"].numpy().astype(bool),
            out.hidden_states[-1].numpy(), out.logits.numpy())


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trim")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    summary = trim_checkpoint(DEFAULT, str(folder / "out"), [str(corpus)])
    return summary, _hf_outputs(DEFAULT, read_corpus([str(corpus)]).texts), read_corpus([str(corpus)]).texts


def test_hf_transformers_loads_the_trimmed_checkpoint_and_tokenizer(trimmed):
    summary, (ids, mask, hidden, logits), texts = trimmed
    old = summary["old_ids"]
    new_ids, new_mask, new_hidden, new_logits = _hf_outputs(summary["destination"], texts)
    np.testing.assert_array_equal(old[new_ids], ids)  # HF's fast tokenizer on our tokenizer.json
    slow = transformers.XLMRobertaTokenizer.from_pretrained(summary["destination"])  # and on our spm model
    np.testing.assert_array_equal(old[slow(texts, padding=True, return_tensors="np")["input_ids"]], ids)
    assert np.abs(new_hidden - hidden)[mask].max() <= ATOL
    assert np.abs(new_logits - logits[..., old])[mask].max() <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("backend, fmt", [("pt", "pt"), ("tf", "tf"), ("flax", "flax")])
def test_every_backend_gives_the_full_models_outputs_on_the_corpus(trimmed, tmp_path, backend, fmt):
    if backend not in installed_backends():
        pytest.skip(f"{backend} is not installed")
    summary, (ids, mask, hidden, logits), texts = trimmed
    dst = str(tmp_path / fmt)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    again = trim_checkpoint(DEFAULT, dst, [str(corpus)], to=fmt)
    np.testing.assert_array_equal(again["old_ids"], summary["old_ids"])
    from xlmr import XLMRobertaTokenizerFast

    batch = XLMRobertaTokenizerFast.from_pretrained(dst)(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(summary["old_ids"][batch["input_ids"]], ids)
    model = model_class(backend, "XLMRobertaForMaskedLM").from_pretrained(dst)
    out = call_model(backend, model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                     output_hidden_states=True)
    assert np.abs(to_numpy(backend, out.hidden_states[-1]) - hidden)[mask].max() <= ATOL
    assert np.abs(to_numpy(backend, out.logits) - logits[..., summary["old_ids"]])[mask].max() <= ATOL


def test_untied_decoder_rows_are_trimmed_too(tmp_path):
    config = dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=130, type_vocab_size=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.XLMRobertaForMaskedLM(transformers.XLMRobertaConfig(**config)).eval()
    src = tmp_path / "src"
    hf.save_pretrained(src)
    transformers.XLMRobertaTokenizer(SPM).save_pretrained(src)
    assert "lm_head.decoder.weight" in read_checkpoint(src)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS[:10]) + "\n", encoding="utf-8")
    summary = trim_checkpoint(str(src), str(tmp_path / "dst"), [str(corpus)])
    old = summary["old_ids"]
    state = read_checkpoint(tmp_path / "dst")
    np.testing.assert_array_equal(state["lm_head.decoder.weight"], hf.lm_head.decoder.weight.detach().numpy()[old])
    ids, mask, hidden, logits = _hf_outputs(str(src), CORPUS[:10])
    _, _, new_hidden, new_logits = _hf_outputs(str(tmp_path / "dst"), CORPUS[:10])
    assert np.abs(new_logits - logits[..., old])[mask].max() <= ATOL


def test_verify_passes_and_fails_when_a_row_is_wrong(trimmed, tmp_path):
    summary, _, texts = trimmed
    result = verify(summary, texts[:8], backend="pt")
    assert result["max_abs"]["head"] <= ATOL and result["corpus_changed_fast"] == 0
    # A destination whose rows are in the wrong order must fail: swap two used rows.
    dst = tmp_path / "bad"
    config = XLMRobertaConfig.from_pretrained(summary["destination"])
    state = dict(read_checkpoint(summary["destination"]))
    rows = state["roberta.embeddings.word_embeddings.weight"].copy()
    rows[[5, 6]] = rows[[6, 5]]
    state["roberta.embeddings.word_embeddings.weight"] = rows
    save_pretrained(dst, config, state, "XLMRobertaForMaskedLM")
    for name in os.listdir(summary["destination"]):
        if not name.startswith(("model", "config")):
            with open(os.path.join(summary["destination"], name), "rb") as f, open(dst / name, "wb") as g:
                g.write(f.read())
    diffs = compare_models(DEFAULT, str(dst), texts[:8], summary["old_ids"])
    assert diffs["hidden_states"] > 1e-3
    with pytest.raises(TrimError, match="--verify failed"):
        verify({**summary, "destination": str(dst)}, texts[:8], backend="pt")


def test_sequence_classification_checkpoint_trims_and_verifies(tmp_path):
    config = dict(vocab_size=8002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=130, type_vocab_size=1, num_labels=3)
    torch.manual_seed(0)
    hf = transformers.XLMRobertaForSequenceClassification(transformers.XLMRobertaConfig(**config)).eval()
    src = tmp_path / "src"
    hf.save_pretrained(src)
    transformers.XLMRobertaTokenizer(SPM).save_pretrained(src)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS[:12]) + "\n", encoding="utf-8")
    summary = trim_checkpoint(str(src), str(tmp_path / "dst"), [str(corpus)], to="pt", holdout=3)
    assert summary["architecture"] == "XLMRobertaForSequenceClassification"
    selection = read_corpus([str(corpus)]).split(3)[0].texts
    result = verify(summary, selection, backend="pt")
    assert result["max_abs"]["head"] <= ATOL and result["heldout_lines"] == 4
    small = transformers.XLMRobertaForSequenceClassification.from_pretrained(tmp_path / "dst").eval()
    tokenizer = transformers.XLMRobertaTokenizerFast.from_pretrained(tmp_path / "dst")
    full_batch = transformers.XLMRobertaTokenizer(SPM)(selection, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = small(**tokenizer(selection, padding=True, return_tensors="pt")).logits
        assert (logits - hf(**full_batch).logits).abs().max().item() <= ATOL
