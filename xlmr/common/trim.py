"""Vocabulary trimming: keep the sentencepiece pieces a corpus uses, and the embedding rows of those ids.

XLM-R's 250,002-row embedding matrix holds most of a base model's parameters; a deployment serving a few
languages needs a small share of the rows. A trimmed checkpoint is the same function on the kept ids: row ``i`` of
the new matrices is row ``old_ids[i]`` of the old ones, so the encoder sees identical vectors and the MLM logits
are the old logits restricted to the kept rows.

What is kept (``choose_pieces``), as sentencepiece piece indices:

* every piece that is not a NORMAL piece (``<unk>``, ``<s>``, ``</s>``, control, user-defined, byte pieces);
* every piece the corpus uses at least ``min_count`` times, and optionally the ``keep_top`` highest-scoring
  pieces (a unigram piece's score is its log-probability in the model's training data: its overall frequency);
* the closure: the pieces that each kept piece's own text splits into under the full model, repeated until
  nothing new appears, so every kept piece's text tokenizes as before;
* the lowest- and highest-scoring NORMAL pieces. Sentencepiece (and ``tokenizers``) score an unknown character
  ``min score - 10`` and a user-defined piece from the highest score; keeping both extremes keeps those scores.

Why the corpus still tokenizes as before: unigram segmentation is the best-scoring path through the lattice of
pieces matching the (normalised, vocabulary-independent) text. Trimming removes nodes from that lattice and
adds none, except an unknown node where a one-character piece was removed; such a node scores below every
piece, so any path through it is beaten by the same path through the removed piece, which the optimum already
beat. The optimum of the full lattice is still there, so it is still the optimum. BPE models merge by rank and
have no such property; XLM-R's tokenizer is a unigram model, and a BPE model is refused.

Ids keep fairseq's layout: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, kept piece ``j`` (in the original
order) at ``j + 1``, ``<mask>`` last.

Example:
    >>> model = open("tests/fixtures/sentencepiece.bpe.model", "rb").read()
    >>> plan = plan_trim(model, ["Everyone has the right to life."])
    >>> plan.vocab_size < 100, plan.old_ids[:4].tolist(), int(plan.old_ids[-1])
    (True, [0, 1, 2, 3], 8001)
    >>> small = rewrite_sentencepiece(model, plan.pieces)
    >>> len(read_sentencepiece_model(small)[0]) == len(plan.pieces)
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.tokenization.sentencepiece_model import (NORMAL, UNIGRAM, field_spans,
                                                         read_sentencepiece_model)
from xlmr.common.tokenization.slow import FAIRSEQ_IDS, FAIRSEQ_OFFSET

# JSON Lines fields --languages matches, in the order they are looked up (UDHR-style records carry several).
LANGUAGE_FIELDS = ("lang", "language", "iso639_3", "bcp47")
# Tensors with one row per vocabulary id (canonical names, head-model prefix).
VOCAB_TENSORS = ("roberta.embeddings.word_embeddings.weight", "lm_head.bias", "lm_head.decoder.weight")
_BATCH = 1024


class TrimError(ValueError):
    """A trim that cannot be done; the message is one line naming the file, line, field or limit."""


# ------------------------------------------------------------------------------------------------ corpus
@dataclasses.dataclass
class Corpus:
    """Corpus lines in file order, with the file and line number each came from (for messages)."""

    texts: list[str]
    where: list[tuple[str, int]]

    def split(self, every: int) -> tuple["Corpus", "Corpus"]:
        """(selection, held out): with ``every`` = N, every Nth line is held out; 0 holds out nothing.

        >>> Corpus(["a", "b", "c", "d"], [("c.txt", n) for n in range(1, 5)]).split(2)[1].texts
        ['b', 'd']
        """
        held = [every > 0 and i % every == every - 1 for i in range(len(self.texts))]
        pick = lambda keep: Corpus([t for t, h in zip(self.texts, held) if h == keep],  # noqa: E731
                                   [w for w, h in zip(self.where, held) if h == keep])
        return pick(False), pick(True)


def _language_of(record: dict) -> list[str]:
    return [str(record[f]) for f in LANGUAGE_FIELDS if isinstance(record.get(f), str)]


def read_corpus(files: Sequence[str | os.PathLike], languages: Sequence[str] | None = None) -> Corpus:
    """The non-blank lines of text files, or the ``text`` field of JSON Lines files (first non-blank character
    ``{``). ``languages`` keeps JSON Lines records whose ``lang``, ``language``, ``iso639_3`` or ``bcp47`` field is
    one of them; a record with none of those fields, or a plain text file, is an error then.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.jsonl")
    >>> _ = open(path, "w").write('{"text": "Hallo", "lang": "de"}\\n{"text": "Hi", "lang": "en"}\\n')
    >>> read_corpus([path], languages=["en"]).texts
    ['Hi']
    """
    if not files:
        raise TrimError("no corpus file given")
    wanted = set(languages or ())
    texts, where = [], []
    for file in map(os.fspath, files):
        if not os.path.isfile(file):
            raise TrimError(f"corpus file {file} does not exist")
        with open(file, "rb") as f:
            raw = f.read()
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise TrimError(f"{file}:{line}: not UTF-8 ({e.reason} at byte {e.start})") from None
        lines = content.splitlines()
        jsonl = content.lstrip().startswith("{")
        if wanted and not jsonl:
            raise TrimError(f"{file}: --languages needs JSON Lines records with a {'/'.join(LANGUAGE_FIELDS)} "
                            "field; this is a plain text file")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if jsonl:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TrimError(f"{file}:{number}: not a JSON object ({e.msg} at column {e.colno})") from None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise TrimError(f"{file}:{number}: a JSON Lines record needs a string field 'text'")
                if wanted:
                    codes = _language_of(record)
                    if not codes:
                        raise TrimError(f"{file}:{number}: --languages given but the record has none of the "
                                        f"fields {', '.join(LANGUAGE_FIELDS)}")
                    if not wanted.intersection(codes):
                        continue
                line = record["text"]
                if not line.strip():
                    continue
            texts.append(line)
            where.append((file, number))
    if not texts:
        names = ", ".join(map(os.fspath, files))
        chosen = f" in languages {', '.join(sorted(wanted))}" if wanted else ""
        raise TrimError(f"corpus {names} is empty: no non-blank line{chosen}")
    return Corpus(texts, where)


# ------------------------------------------------------------------------------------------------ pieces
def _unigram(pieces: list[tuple[str, float, int]]) -> Any:
    """The full model as a bare ``tokenizers`` Unigram over sentencepiece indices (for the closure)."""
    from tokenizers.models import Unigram

    return Unigram([(p, s) for p, s, _ in pieces], unk_id=0, byte_fallback=False)


def piece_counts(tokenizer: Any, texts: Sequence[str], size: int) -> np.ndarray:
    """How often each fairseq id occurs when the ``tokenizers`` pipeline ``tokenizer`` encodes ``texts``.

    >>> from xlmr import XLMRobertaTokenizerFast
    >>> tok = XLMRobertaTokenizerFast("tests/fixtures/sentencepiece.bpe.model")
    >>> counts = piece_counts(tok.backend_tokenizer, ["a a a"], len(tok))
    >>> int(counts[tok.convert_tokens_to_ids("\u2581a")]), int(counts.sum())
    (3, 3)
    """
    counts = np.zeros(size, np.int64)
    for start in range(0, len(texts), _BATCH):
        for encoding in tokenizer.encode_batch(list(texts[start:start + _BATCH]), add_special_tokens=False):
            if encoding.ids:
                counts += np.bincount(encoding.ids, minlength=size)
    return counts


@dataclasses.dataclass
class TrimPlan:
    """The pieces to keep and where each new id comes from.

    ``pieces``: sentencepiece indices kept, ascending; ``old_ids``: new fairseq id -> old fairseq id; ``reasons``:
    how many pieces each rule kept (a piece counts under the first rule that keeps it).
    """

    pieces: list[int]
    old_ids: np.ndarray
    reasons: dict[str, int]
    corpus_tokens: int

    @property
    def vocab_size(self) -> int:
        return len(self.old_ids)


def plan_trim(model: bytes, texts: Sequence[str], keep_top: int = 0, min_count: int = 1,
              source: str = "sentencepiece model", tokenizer: Any = None) -> TrimPlan:
    """Choose the pieces to keep for ``texts`` (see the module docstring); ``model`` is the sentencepiece file.

    ``tokenizer`` is the ``tokenizers`` pipeline that encodes the corpus (built from ``model`` when omitted).
    """
    pieces, model_type, _ = read_sentencepiece_model(model)
    if model_type != UNIGRAM:
        raise TrimError(f"{source}: sentencepiece model type {model_type} is not a unigram model (type 1); "
                        "trimming a BPE model would break its merges, and XLM-R's tokenizer is unigram")
    normal = [i for i, (_, _, kind) in enumerate(pieces) if kind == NORMAL]
    if keep_top < 0 or keep_top > len(normal):
        raise TrimError(f"--keep-top {keep_top} is larger than the vocabulary of {source} ({len(normal)} pieces "
                        "besides the special ones)" if keep_top > 0 else f"--keep-top {keep_top} is negative")
    if min_count < 1:
        raise TrimError(f"--min-count {min_count} must be at least 1")
    if tokenizer is None:
        from xlmr.common.tokenization.base import DEFAULT_SPECIAL_TOKENS, SpecialToken
        from xlmr.common.tokenization.fast import tokenizer_from_sentencepiece

        specials = [SpecialToken.coerce(v, k) for k, v in DEFAULT_SPECIAL_TOKENS.items()]
        tokenizer = tokenizer_from_sentencepiece(model, list({t.content: t for t in specials}.values()), source)
    mask_id = len(pieces) + FAIRSEQ_OFFSET
    counts = piece_counts(tokenizer, texts, mask_id + 1)
    used = [int(i) - FAIRSEQ_OFFSET for i in np.flatnonzero(counts >= min_count) if len(FAIRSEQ_IDS) <= i < mask_id]
    if not used:
        raise TrimError(f"the corpus ({len(texts)} lines) uses no sentencepiece piece of {source}"
                        + (f" at least {min_count} times" if min_count > 1 else " (every character is unknown)"))
    keep: dict[int, str] = {i: "special" for i, (_, _, kind) in enumerate(pieces) if kind != NORMAL}
    for i in used:
        keep.setdefault(i, "corpus")
    for i in sorted(normal, key=lambda i: -pieces[i][1])[:keep_top]:
        keep.setdefault(i, "top")
    for i in (min(normal, key=lambda i: pieces[i][1]), max(normal, key=lambda i: pieces[i][1])):
        keep.setdefault(i, "score range")
    full = _unigram(pieces)
    todo = [i for i in keep if pieces[i][2] == NORMAL]
    while todo:
        found = [token.id for i in todo for token in full.tokenize(pieces[i][0])]
        todo = [i for i in dict.fromkeys(found) if i not in keep]
        for i in todo:
            keep[i] = "closure"
    kept = sorted(keep)
    old = list(FAIRSEQ_IDS.values()) + [i + FAIRSEQ_OFFSET for i in kept if i >= len(FAIRSEQ_IDS) - 1] + [mask_id]
    reasons = {r: sum(1 for v in keep.values() if v == r) for r in ("special", "corpus", "top", "score range",
                                                                   "closure")}
    return TrimPlan(kept, np.asarray(old, np.int64), reasons, int(counts.sum()))


# ------------------------------------------------------------------------------------------------ files
_spans = field_spans  # the rewriter copies every field it does not change byte for byte


def rewrite_sentencepiece(model: bytes, keep: Iterable[int]) -> bytes:
    """The sentencepiece model with only the pieces at indices ``keep``, in their order, every other byte as is.

    Each kept piece keeps its bytes (text, score, type), and the trainer, normaliser and denormaliser specs are
    untouched (so ``trainer_spec.vocab_size`` still records the size the model was trained with).
    """
    wanted = set(keep)
    out, index = [], 0
    for number, raw in _spans(model):
        if number == 1:  # ModelProto.pieces
            if index in wanted:
                out.append(raw)
            index += 1
        else:
            out.append(raw)
    return b"".join(out)


def trim_state(state: Mapping[str, Any], config: XLMRobertaConfig, old_ids: np.ndarray
               ) -> tuple[dict[str, Any], XLMRobertaConfig]:
    """The tensors with every per-id row gathered in the new id order, and the config with the new vocab_size.

    ``state`` has canonical names (``normalise_names``); tensors without a vocabulary axis are passed through.

    >>> cfg = XLMRobertaConfig(vocab_size=5, hidden_size=2, num_hidden_layers=1, num_attention_heads=1,
    ...                        intermediate_size=2)
    >>> state = {"roberta.embeddings.word_embeddings.weight": np.arange(10.0).reshape(5, 2),
    ...          "lm_head.bias": np.arange(5.0)}
    >>> small, small_cfg = trim_state(state, cfg, np.array([0, 2, 4]))
    >>> small["lm_head.bias"].tolist(), small_cfg.vocab_size
    ([0.0, 2.0, 4.0], 3)
    """
    out = dict(state)
    for name in VOCAB_TENSORS:
        for key in (name, name[len("roberta."):]):
            if key in out:
                array = np.asarray(out[key])
                if array.shape[0] != config.vocab_size:
                    raise TrimError(f"tensor {key} has {array.shape[0]} rows but config.json gives vocab_size="
                                    f"{config.vocab_size}")
                out[key] = np.ascontiguousarray(array[old_ids])
    return out, config.replace(vocab_size=int(len(old_ids)))


def parameter_count(state: Mapping[str, Any]) -> int:
    """Elements in the unique tensors of a state dict (a tied decoder is not in it).

    >>> parameter_count({"a": np.zeros((3, 4)), "b": np.zeros(5)})
    17
    """
    return int(sum(np.asarray(v).size for v in state.values()))


def _file_bytes(folder: str) -> tuple[int, int]:
    """(bytes of the weight files, bytes of every file) in a checkpoint folder."""
    from xlmr.common.checkpoint import find_checkpoint

    weights = sum(os.path.getsize(f) for f in find_checkpoint(folder)[1])
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, n)))
    return weights, total


def trim_checkpoint(src: str, dst: str, corpus: Sequence[str], *, keep_top: int = 0, min_count: int = 1,
                    languages: Sequence[str] | None = None, to: str | None = None, force: bool = False,
                    holdout: int = 0) -> dict[str, Any]:
    """Write to ``dst`` the checkpoint ``src`` trimmed to the pieces the ``corpus`` files use; return a summary.

    ``dst`` gets the weights (format ``to``, default: the source's), ``config.json`` with the new vocab_size, the
    rewritten ``sentencepiece.bpe.model``, a matching ``tokenizer.json`` and the tokenizer configs. With
    ``holdout`` = N every Nth corpus line is left out of the choice (for ``xlmr trim-vocab --verify`` to measure
    text outside the corpus); the summary's ``heldout`` lists those lines. ``src`` is never modified; ``dst``
    appears whole or not at all, and an existing ``dst`` is replaced only when ``force``.

    >>> import tempfile
    >>> corpus = os.path.join(tempfile.mkdtemp(), "corpus.txt")
    >>> _ = open(corpus, "w").write("Everyone has the right to life.\\n")
    >>> summary = trim_checkpoint("xlmr/assets/default", os.path.join(tempfile.mkdtemp(), "small"), [corpus])
    >>> summary["vocab_size"][0], summary["vocab_size"][1] < 100, summary["format"]
    (8002, True, 'safetensors')
    """
    from xlmr.common.checkpoint import FORMATS, find_checkpoint, read_checkpoint, save_pretrained
    from xlmr.common.convert import check_separate, replaceable
    from xlmr.common.hub import resolve
    from xlmr.common.io import atomic_directory
    from xlmr.common.tokenization.base import SPM_FILE, read_tokenizer_config
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
    from xlmr.common.weights import infer_architecture, normalise_names

    if to is not None and to not in FORMATS:
        raise TrimError(f"unknown target format {to!r}; choose from {', '.join(FORMATS)}")
    if not os.path.isdir(src):
        try:  # "xlmr-default" or a Hub id
            src = resolve(src)
        except FileNotFoundError:
            raise TrimError(f"source checkpoint folder {src} does not exist") from None
    check_separate(src, dst)  # DST may not be, contain or lie inside SRC (real paths), with --force too
    if os.path.exists(dst) and not force:
        raise TrimError(f"destination {dst} already exists; pass --force to replace it")
    spm_path = os.path.join(src, SPM_FILE)
    if not os.path.isfile(spm_path):
        raise TrimError(f"{src} has no {SPM_FILE}: trimming rewrites the sentencepiece model, so it needs it")
    with open(spm_path, "rb") as f:
        model = f.read()
    special, _ = read_tokenizer_config(src)
    full = XLMRobertaTokenizerFast(spm_path, **special)
    config = XLMRobertaConfig.from_pretrained(src)
    if config.vocab_size != len(full):
        raise TrimError(f"{src}: config.json vocab_size={config.vocab_size} but its tokenizer has {len(full)} ids")
    texts = read_corpus(corpus, languages)
    chosen, heldout = texts.split(holdout)
    if not chosen.texts:
        raise TrimError(f"corpus has {len(texts.texts)} line(s), all held out by --holdout {holdout}")
    plan = plan_trim(model, chosen.texts, keep_top, min_count, spm_path, full.backend_tokenizer)

    fmt, _ = find_checkpoint(src)
    raw = read_checkpoint(src)
    architecture = infer_architecture(raw, config)
    state = normalise_names(raw, architecture)
    if config.tie_word_embeddings:
        state.pop("lm_head.decoder.weight", None)
    small, new_config = trim_state(state, config, plan.old_ids)
    with atomic_directory(dst, overwrite=force, replaceable=replaceable) as tmp:
        save_pretrained(tmp, new_config, small, architecture, format=to or fmt)
        new_spm = os.path.join(tmp, SPM_FILE)
        with open(new_spm, "wb") as f:
            f.write(rewrite_sentencepiece(model, plan.pieces))
        XLMRobertaTokenizerFast(new_spm, **special).save_pretrained(tmp)
    before, after = _file_bytes(src), _file_bytes(dst)
    return {"source": src, "destination": dst, "architecture": architecture, "format": to or fmt,
            "corpus_lines": len(chosen.texts), "corpus_tokens": plan.corpus_tokens, "heldout": heldout.texts,
            "vocab_size": [config.vocab_size, plan.vocab_size], "kept": plan.reasons,
            "parameters": [parameter_count(state), parameter_count(small)],
            "weights_bytes": [before[0], after[0]], "folder_bytes": [before[1], after[1]],
            "old_ids": plan.old_ids}


__all__ = ["Corpus", "LANGUAGE_FIELDS", "TrimError", "TrimPlan", "parameter_count", "piece_counts", "plan_trim",
           "read_corpus", "rewrite_sentencepiece", "trim_checkpoint", "trim_state"]
