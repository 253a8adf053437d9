"""xlmr.common.trim and ``xlmr trim-vocab`` without a deep-learning framework: pieces kept, the rewritten
sentencepiece model, unchanged corpus tokenization, gathered rows, and the one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm

from xlmr.common.checkpoint import read_checkpoint
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast, read_sentencepiece_model
from xlmr.common.tokenization.slow import XLMRobertaTokenizer
from xlmr.common.trim import (
    TrimError, _spans, _unigram, plan_trim, read_corpus, rewrite_sentencepiece, trim_checkpoint)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
SPM = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")
TEXTS = [d["text"] for d in json.load(open(os.path.join(ROOT, "tests", "fixtures", "texts.json"), encoding="utf-8"))]
LATIN = [t for t in TEXTS if t.isascii() and "<" not in t]


def _model() -> bytes:
    with open(SPM, "rb") as f:
        return f.read()


def _digest(folder: str) -> dict[str, str]:
    return {n: hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(folder))}


def _write(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    """The embedded default checkpoint trimmed to every 2nd fixture line; the other lines are held out."""
    folder = tmp_path_factory.mktemp("trim")
    corpus = _write(folder / "corpus.txt", TEXTS)
    summary = trim_checkpoint(DEFAULT, str(folder / "out"), [corpus], holdout=2)
    selection, heldout = read_corpus([corpus]).split(2)
    return summary, selection.texts, heldout.texts


# ------------------------------------------------------------------------------------------------ the proto
def test_rewrite_with_every_piece_is_the_identity():
    model = _model()
    assert rewrite_sentencepiece(model, range(len(read_sentencepiece_model(model)[0]))) == model


def test_rewrite_keeps_kept_pieces_and_every_other_field_byte_for_byte():
    model = _model()
    keep = [0, 1, 2, 3, 10, 500, 7999]
    small = rewrite_sentencepiece(model, keep)
    pieces = [raw for number, raw in _spans(model) if number == 1]
    others = [(number, raw) for number, raw in _spans(model) if number != 1]
    assert [raw for number, raw in _spans(small) if number == 1] == [pieces[i] for i in keep]
    assert [(number, raw) for number, raw in _spans(small) if number != 1] == others
    processor = spm.SentencePieceProcessor(model_proto=small)
    full = spm.SentencePieceProcessor(model_file=SPM)
    assert [processor.id_to_piece(i) for i in range(len(keep))] == [full.id_to_piece(i) for i in keep]
    assert [processor.get_score(i) for i in range(len(keep))] == [full.get_score(i) for i in keep]


# ------------------------------------------------------------------------------------------------ choosing pieces
def test_plan_keeps_specials_corpus_pieces_and_the_score_range():
    model = _model()
    pieces = read_sentencepiece_model(model)[0]
    plan = plan_trim(model, LATIN)
    full = spm.SentencePieceProcessor(model_file=SPM)
    used = {i for t in LATIN for i in full.encode(t)}
    assert {0, 1, 2} | used <= set(plan.pieces)
    normal = [i for i, p in enumerate(pieces) if p[2] == 1]
    assert min(normal, key=lambda i: pieces[i][1]) in plan.pieces
    assert max(normal, key=lambda i: pieces[i][1]) in plan.pieces
    assert plan.old_ids[:4].tolist() == [0, 1, 2, 3] and plan.old_ids[-1] == len(pieces) + 1
    assert plan.old_ids[4:-1].tolist() == [i + 1 for i in plan.pieces[3:]]
    assert plan.vocab_size == len(plan.pieces) + 2  # + <pad> and <mask>; <unk>, <s>, </s> are both


def test_keep_top_adds_the_highest_scoring_pieces():
    model = _model()
    pieces = read_sentencepiece_model(model)[0]
    plan = plan_trim(model, ["x"], keep_top=300)
    top = sorted((i for i, p in enumerate(pieces) if p[2] == 1), key=lambda i: -pieces[i][1])[:300]
    base = set(plan_trim(model, ["x"]).pieces)
    assert set(top) <= set(plan.pieces) and set(plan.pieces) == base | set(top)


def test_min_count_drops_rare_corpus_pieces():
    model = _model()
    once, twice = plan_trim(model, LATIN), plan_trim(model, LATIN, min_count=2)
    assert set(twice.pieces) < set(once.pieces)


def _with_score(model: bytes, index: int, score: float) -> bytes:
    """``model`` with piece ``index``'s score replaced (test helper; field 2 of SentencePiece is a float32)."""
    out, k = [], 0
    for number, raw in _spans(model):
        if number == 1:
            if k == index:
                head = raw[:1]
                body = raw[1:]
                _, start = _varint_len(body)
                fields = b"".join(f if n != 2 else b"\x15" + struct.pack("<f", score) for n, f in _spans(body[start:]))
                raw = head + _encode_varint(len(fields)) + fields
            k += 1
        out.append(raw)
    return b"".join(out)


def _varint_len(buf: bytes) -> tuple[int, int]:
    from xlmr.common.tokenization.fast import _varint

    return _varint(buf, 0)


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_closure_keeps_the_pieces_a_kept_piece_splits_into():
    # Make a two-piece word the lowest-scoring piece, below the sum of its halves: it is kept (score range), its
    # own text now splits into the halves, and the closure must keep them.
    model = _model()
    pieces = read_sentencepiece_model(model)[0]
    index = {p: i for i, (p, _, _) in enumerate(pieces)}
    target = next(i for i, (p, _, kind) in enumerate(pieces) if kind == 1 and len(p) == 4 and p[:2] in index
                  and p[2:] in index and not p.startswith("\u2581") and p[:2] not in "xy" * 4)
    halves = index[pieces[target][0][:2]], index[pieces[target][0][2:]]
    crafted = _with_score(model, target, min(s for _, s, _ in pieces) - 50.0)
    plan = plan_trim(crafted, ["x"])
    assert target in plan.pieces and set(halves) <= set(plan.pieces) and plan.reasons["closure"] >= 1
    crafted_pieces = read_sentencepiece_model(crafted)[0]
    full, small = _unigram(crafted_pieces), _unigram([crafted_pieces[i] for i in plan.pieces])
    for new, i in enumerate(plan.pieces):  # every kept piece's text splits as it did
        if crafted_pieces[i][2] == 1:
            assert [plan.pieces[t.id] for t in small.tokenize(crafted_pieces[i][0])] == \
                   [t.id for t in full.tokenize(crafted_pieces[i][0])]


def test_bpe_models_are_refused():
    model = _model()
    spans = list(_spans(model))
    trainer = next(raw for n, raw in spans if n == 2)
    assert b"\x18\x01" in trainer  # TrainerSpec.model_type = UNIGRAM
    bpe = model.replace(trainer, trainer.replace(b"\x18\x01", b"\x18\x02", 1))
    with pytest.raises(TrimError, match="model type 2 is not a unigram model"):
        plan_trim(bpe, ["hello"])


# ------------------------------------------------------------------------------------------------ the checkpoint
def test_corpus_text_tokenizes_exactly_as_before_slow_and_fast(trimmed):
    summary, selection, heldout = trimmed
    old = summary["old_ids"]
    for cls in (XLMRobertaTokenizerFast, XLMRobertaTokenizer):
        full, small = cls.from_pretrained(DEFAULT), cls.from_pretrained(summary["destination"])
        for text in selection:
            assert old[small(text)["input_ids"]].tolist() == full(text)["input_ids"], text
        # held-out lines in other languages lose pieces: measured, not assumed
        assert sum(old[small(t)["input_ids"]].tolist() != full(t)["input_ids"] for t in heldout) > 0


def test_unknown_characters_keep_their_segmentation(tmp_path):
    corpus = _write(tmp_path / "c.txt", ["snow \u2603 man \u2603\u2603 and \U0001F600 ok", "more plain words"])
    summary = trim_checkpoint(DEFAULT, str(tmp_path / "out"), [corpus])
    full, small = XLMRobertaTokenizer.from_pretrained(DEFAULT), XLMRobertaTokenizer.from_pretrained(tmp_path / "out")
    for text in read_corpus([corpus]).texts + ["\u2603 plain words \U0001F600\u2603"]:
        ids = small(text)["input_ids"]
        assert summary["old_ids"][ids].tolist() == full(text)["input_ids"]
        assert (3 in ids) == ("\u2603" in text)


def test_trimmed_rows_are_the_source_rows_in_the_new_order(trimmed):
    summary = trimmed[0]
    old, dst = summary["old_ids"], summary["destination"]
    src_state, dst_state = read_checkpoint(DEFAULT), read_checkpoint(dst)
    for name in ("roberta.embeddings.word_embeddings.weight", "lm_head.bias"):
        np.testing.assert_array_equal(dst_state[name], src_state[name][old])
    for name, value in dst_state.items():
        if name not in ("roberta.embeddings.word_embeddings.weight", "lm_head.bias"):
            np.testing.assert_array_equal(value, src_state[name])
    config = XLMRobertaConfig.from_pretrained(dst)
    assert config.vocab_size == len(old) == summary["vocab_size"][1]
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(dst)
    assert len(tokenizer) == len(old) and tokenizer.mask_token_id == len(old) - 1
    assert summary["parameters"][1] == summary["parameters"][0] - (8002 - len(old)) * (64 + 1)
    assert summary["weights_bytes"][1] < summary["weights_bytes"][0]


def test_trim_never_touches_the_source_and_needs_force(tmp_path):
    corpus = _write(tmp_path / "c.txt", LATIN)
    before = _digest(DEFAULT)
    trim_checkpoint(DEFAULT, str(tmp_path / "out"), [corpus], to="flax")
    assert os.path.isfile(tmp_path / "out" / "flax_model.msgpack")
    with pytest.raises(TrimError, match="already exists; pass --force"):
        trim_checkpoint(DEFAULT, str(tmp_path / "out"), [corpus])
    trim_checkpoint(DEFAULT, str(tmp_path / "out"), [corpus], force=True)
    assert _digest(DEFAULT) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary folder left


# ------------------------------------------------------------------------------------------------ corpus files
def test_jsonl_corpus_with_language_filter(tmp_path):
    path = tmp_path / "c.jsonl"
    records = [{"text": "Hallo Welt", "iso639_3": "deu"}, {"text": "Hello", "bcp47": "en"},
               {"text": "Salut", "lang": "fr", "iso639_3": "fra"}, {"text": "  ", "lang": "fr"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert read_corpus([path]).texts == ["Hallo Welt", "Hello", "Salut"]
    assert read_corpus([path], ["deu", "fr"]).texts == ["Hallo Welt", "Salut"]
    assert read_corpus([path]).where[1] == (str(path), 2)


@pytest.mark.parametrize("content, languages, message", [
    ("", None, "is empty"),
    ("\n  \n", None, "is empty"),
    ('{"text": "a", "lang": "de"}\n', ["fr"], "is empty: no non-blank line in languages fr"),
    ('{"text": "a"}\n{"txt": "b"}\n', None, r"c\.txt:2: a JSON Lines record needs a string field 'text'"),
    ('{"text": "a"}\n{oops\n', None, r"c\.txt:2: not a JSON object"),
    ('{"text": "a"}\n', ["de"], r"c\.txt:1: --languages given but the record has none of the fields"),
    ("plain line\n", ["de"], "this is a plain text file"),
])
def test_corpus_errors_name_the_file_and_line(tmp_path, content, languages, message):
    path = tmp_path / "c.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrimError, match=message):
        read_corpus([path], languages)


def test_corpus_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(TrimError, match=r"c\.txt:2: not UTF-8"):
        read_corpus([path])


# ------------------------------------------------------------------------------------------------ the command
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "xlmr.cli.main", "trim-vocab", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env)


def test_command_errors_are_one_line(tmp_path):
    empty = _write(tmp_path / "empty.txt", [""])
    specials = _write(tmp_path / "specials.txt", ["<mask><mask>", "<s></s>"])
    good = _write(tmp_path / "good.txt", LATIN)
    out = str(tmp_path / "out")
    cases = [
        ([DEFAULT, out, "--corpus", empty], "is empty"),
        ([DEFAULT, out, "--corpus", specials], "uses no sentencepiece piece"),
        ([DEFAULT, out, "--corpus", good, "--min-count", "100000"], "uses no sentencepiece piece"),
        ([DEFAULT, out, "--corpus", good, "--keep-top", "9000"], "--keep-top 9000 is larger than the vocabulary"),
        ([DEFAULT, out, "--corpus", str(tmp_path / "missing.txt")], "missing.txt does not exist"),
        ([str(tmp_path / "nowhere"), out, "--corpus", good], "does not exist"),
    ]
    for args, message in cases:
        result = _cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert not os.path.exists(out)
    result = _cli(DEFAULT, out, "--corpus", good, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["vocab_size"][1] < summary["vocab_size"][0] == 8002
    result = _cli(DEFAULT, out, "--corpus", good)
    assert result.returncode == 2 and "already exists; pass --force" in result.stderr


def test_docstring_examples_run(monkeypatch):
    import doctest

    from xlmr.cli import trim as cli_trim
    from xlmr.common import trim
    from xlmr.common.checkpoint import fairseq

    monkeypatch.chdir(ROOT)
    for module in (trim, fairseq, cli_trim):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
