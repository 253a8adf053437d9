"""``xlmr trim-vocab``: shrink a checkpoint's vocabulary to the sentencepiece pieces a corpus uses.

    xlmr trim-vocab SRC DST --corpus FILE [FILE ...] [--keep-top N] [--min-count K] [--languages CODE ...]
                    [--to FORMAT] [--verify] [--holdout N] [--backend pt|tf|flax] [--force] [--json]

The corpus is text (one example per line) or JSON Lines with a ``text`` field; ``--languages`` keeps JSON Lines
records whose ``lang``, ``language``, ``iso639_3`` or ``bcp47`` field is one of the codes. DST gets the weights
with the embedding rows (and the MLM decoder rows and bias) of the kept ids, a rewritten
``sentencepiece.bpe.model``, a matching ``tokenizer.json`` and config files; it loads in every xlmr backend and
in HF transformers. SRC is never modified; DST appears whole or not at all.

Kept: the special tokens; every piece the corpus uses (at least K times with --min-count); with --keep-top the N
highest-scoring pieces (a unigram score is the piece's log-frequency in the model's training data); the pieces
each kept piece's text splits into; the lowest- and highest-scoring pieces (they set sentencepiece's unknown and
user-defined scores). Corpus text tokenizes exactly as before. Text outside the corpus may not: a word whose
pieces were dropped splits into smaller kept pieces or <unk>.

--verify holds out every Nth corpus line (--holdout, default 10) from the choice, then checks, through a backend,
that the trimmed model on the trimmed tokenizer's ids gives the full model's hidden states (and its MLM logits
restricted to the kept rows) within the fp32 tolerance, and reports the share of held-out lines whose
tokenization changed. Exit status 1 when the check fails, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

import numpy as np

from xlmr.common.checkpoint import FORMATS
from xlmr.common.trim import TrimError, trim_checkpoint

HELP = "shrink a checkpoint's vocabulary to the pieces a corpus uses (sentencepiece model, tokenizer, weights)"
DEFAULT_HOLDOUT = 10
VERIFY_LINES = 64  # lines of each set run through both models
_HEAD_OUTPUTS = {"XLMRobertaModel": "last_hidden_state", "XLMRobertaForMaskedLM": "logits",
                 "XLMRobertaForCausalLM": "logits"}


def tokenization_changes(full: Any, trimmed: Any, old_ids: np.ndarray, texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` whose ids under ``trimmed``, mapped back to the full vocabulary, differ from ``full``'s.

    >>> from xlmr import XLMRobertaTokenizer
    >>> tok = XLMRobertaTokenizer("tests/fixtures/sentencepiece.bpe.model")
    >>> tokenization_changes(tok, tok, np.arange(len(tok)), ["Hi there", "Hallo"])
    []
    >>> tokenization_changes(tok, tok, np.arange(len(tok))[::-1], ["Hi there", "Hallo"])
    [0, 1]
    """
    if not texts:
        return []
    a = full(list(texts), add_special_tokens=True)["input_ids"]
    b = trimmed(list(texts), add_special_tokens=True)["input_ids"]
    return [i for i, (x, y) in enumerate(zip(a, b)) if old_ids[np.asarray(y, np.int64)].tolist() != list(x)]


def _padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask


def compare_models(src: str, dst: str, texts: Sequence[str], old_ids: np.ndarray, backend: str = "pt"
                   ) -> dict[str, float]:
    """Max-abs differences between the trimmed model on the trimmed tokenizer's ids and the full model on those
    ids mapped back (the full tokenizer's ids wherever tokenization is unchanged): last hidden state, and the
    head's output (MLM logits restricted to the kept rows)."""
    from xlmr.backends import call_model, model_class, to_numpy
    from xlmr.common.checkpoint import read_checkpoint
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
    from xlmr.common.weights import infer_architecture

    config = XLMRobertaConfig.from_pretrained(dst)
    architecture = infer_architecture(read_checkpoint(dst).keys(), config)
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(dst)
    rows = tokenizer(list(texts), truncation=True, max_length=config.max_sequence_length)["input_ids"]
    new_ids, mask = _padded(rows, config.pad_token_id)
    cls = model_class(backend, architecture)
    outputs = {}
    for name, path, ids in (("full", src, old_ids[new_ids]), ("trimmed", dst, new_ids)):
        model = cls.from_pretrained(path)
        out = call_model(backend, model, {"input_ids": ids, "attention_mask": mask}, output_hidden_states=True)
        head = _HEAD_OUTPUTS.get(architecture, "logits")
        outputs[name] = (to_numpy(backend, out.hidden_states[-1]), to_numpy(backend, getattr(out, head)))
        del model
    (full_hidden, full_head), (hidden, head) = outputs["full"], outputs["trimmed"]
    if architecture in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"):
        full_head = full_head[..., old_ids]
    real = mask.astype(bool)
    token_level = head.ndim == 3
    return {"hidden_states": float(np.max(np.abs(hidden - full_hidden)[real])),
            "head": float(np.max(np.abs(head - full_head)[real] if token_level else np.abs(head - full_head))),
            "lines": len(rows)}


def verify(summary: dict[str, Any], selection: Sequence[str], backend: str = "pt", min_count: int = 1
           ) -> dict[str, Any]:
    """The checks of ``--verify`` on a trim_checkpoint summary; raises TrimError when the models disagree."""
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.constants import tolerance
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
    from xlmr.common.tokenization.slow import XLMRobertaTokenizer

    src, dst, old_ids, heldout = summary["source"], summary["destination"], summary["old_ids"], summary["heldout"]
    result: dict[str, Any] = {"backend": backend, "heldout_lines": len(heldout)}
    for kind, cls in (("fast", XLMRobertaTokenizerFast), ("slow", XLMRobertaTokenizer)):
        full, trimmed = cls.from_pretrained(src), cls.from_pretrained(dst)
        corpus = tokenization_changes(full, trimmed, old_ids, selection)
        if corpus and min_count == 1:
            raise TrimError(f"--verify failed: {len(corpus)} corpus line(s) tokenize differently with the trimmed "
                            f"{kind} tokenizer, first {selection[corpus[0]]!r}")
        result[f"corpus_changed_{kind}"] = len(corpus)
        result[f"heldout_changed_{kind}"] = len(tokenization_changes(full, trimmed, old_ids, heldout))
    result["heldout_changed_share"] = result["heldout_changed_fast"] / len(heldout) if heldout else None
    config = XLMRobertaConfig.from_pretrained(src)
    limit = tolerance("float32", config.hidden_size >= 768)
    texts = list(selection[:VERIFY_LINES]) + list(heldout[:VERIFY_LINES])
    diffs = compare_models(src, dst, texts, old_ids, backend)
    result.update(max_abs=diffs, tolerance=limit)
    worst = max(("hidden_states", "head"), key=lambda k: diffs[k])
    if not diffs[worst] <= limit:
        raise TrimError(f"--verify failed: the trimmed model's {worst} differ from the full model's by "
                        f"{diffs[worst]:.3e} on {diffs['lines']} lines, over the tolerance {limit:g}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source checkpoint folder (with sentencepiece.bpe.model)")
    parser.add_argument("dst", help="destination folder (must not exist unless --force)")
    parser.add_argument("--corpus", nargs="+", required=True, metavar="FILE",
                        help="text files (a line each) or JSON Lines files with a 'text' field")
    parser.add_argument("--keep-top", type=int, default=0, metavar="N",
                        help="also keep the N highest-scoring (most frequent) pieces of the full model")
    parser.add_argument("--min-count", type=int, default=1, metavar="K",
                        help="keep a corpus piece only if it occurs at least K times (default 1)")
    parser.add_argument("--languages", nargs="+", metavar="CODE",
                        help="JSON Lines: keep records whose lang/language/iso639_3/bcp47 field is one of these")
    parser.add_argument("--to", choices=FORMATS, default=None, help="weights format (default: SRC's)")
    parser.add_argument("--verify", action="store_true", help="check the trimmed model against SRC")
    parser.add_argument("--holdout", type=int, default=None, metavar="N",
                        help=f"with --verify, hold out every Nth corpus line (default {DEFAULT_HOLDOUT}; 0: none)")
    parser.add_argument("--backend", default="pt", choices=("pt", "tf", "flax"), help="backend for --verify")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    holdout = args.holdout if args.holdout is not None else (DEFAULT_HOLDOUT if args.verify else 0)
    if holdout < 0:
        raise TrimError(f"--holdout {holdout} must be 0 or more")
    summary = trim_checkpoint(args.src, args.dst, args.corpus, keep_top=args.keep_top, min_count=args.min_count,
                              languages=args.languages, to=args.to, force=args.force, holdout=holdout)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    status = 0
    if args.verify:
        from xlmr.common.trim import read_corpus

        selection, _ = read_corpus(args.corpus, args.languages).split(holdout)
        try:
            summary["verify"] = verify(summary, selection.texts, args.backend, args.min_count)
        except TrimError as e:
            print(f"{args.prog}: {e}", file=sys.stderr)
            status = 1
    shown = {k: v for k, v in summary.items() if k not in ("old_ids", "heldout")}
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
        return status
    (v0, v1), (p0, p1) = summary["vocab_size"], summary["parameters"]
    (w0, w1), (f0, f1) = summary["weights_bytes"], summary["folder_bytes"]
    kept = ", ".join(f"{n} {k}" for k, n in summary["kept"].items() if n)
    print(f"{args.src} -> {args.dst} ({summary['architecture']}, {summary['format']}) in {summary['seconds']:.2f} s")
    print(f"  corpus: {summary['corpus_lines']} lines, {summary['corpus_tokens']} tokens; pieces kept: {kept}")
    print(f"  vocabulary {v0} -> {v1} ids; parameters {p0:,} -> {p1:,} ({p1 / p0:.1%})")
    print(f"  weights {_mib(w0)} -> {_mib(w1)}; folder {_mib(f0)} -> {_mib(f1)}")
    if "verify" in summary:
        v = summary["verify"]
        share = v["heldout_changed_share"]
        print(f"  verified ({v['backend']}): max-abs difference {v['max_abs']['hidden_states']:.2e} in hidden "
              f"states, {v['max_abs']['head']:.2e} in the head output on {v['max_abs']['lines']} lines "
              f"(tolerance {v['tolerance']:g}); corpus lines tokenized differently: {v['corpus_changed_fast']}")
        if share is not None:
            print(f"  held-out lines tokenized differently: {v['heldout_changed_fast']} of {v['heldout_lines']} "
                  f"({share:.1%}): text outside the corpus may lose pieces")
    return status
