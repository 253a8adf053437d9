#!/usr/bin/env python
"""Build the small corpus of ``xlmr trim-vocab``'s worked example, and measure what trimming keeps.

    python tools/make_trim_corpus.py --data ../shared/data/udhr.jsonl [--keys eng deu_1996 spa rus hin]
                                     [--out tools/data/trim_corpus.jsonl] [--measure]

Writes one JSON Lines record per UDHR paragraph of the chosen translations (``text``, ``key``, ``iso639_3``,
``bcp47``), so that ``--languages`` can pick among them. ``--measure`` prints, for that text: the pieces the
8000-piece test sentencepiece model keeps, the distinct words, and xlm-roberta-base's parameter count before and
after trimming to that many ids (the arithmetic of the README; xlm-roberta-base's own 250k-piece model is not
available offline, so its count is not measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xlmr.common.io import atomic_write_text  # noqa: E402

KEYS = ("eng", "deu_1996", "spa", "rus", "hin")
OUT = os.path.join(ROOT, "tools", "data", "trim_corpus.jsonl")
SPM = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")


def records(data: str, keys: list[str]) -> list[dict]:
    found = {}
    with open(data, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            if entry["key"] in keys:
                found[entry["key"]] = entry
    missing = [k for k in keys if k not in found]
    if missing:
        raise SystemExit(f"{data}: no translation with key {', '.join(missing)}")
    return [{"text": p, "key": k, "iso639_3": found[k]["iso639_3"], "bcp47": found[k]["bcp47"]}
            for k in keys for p in found[k]["paragraphs"] if p.strip()]


def measure(texts: list[str]) -> None:
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
    from xlmr.common.trim import plan_trim
    from xlmr.common.weights import parameter_shapes

    with open(SPM, "rb") as f:
        plan = plan_trim(f.read(), texts, tokenizer=XLMRobertaTokenizerFast(SPM).backend_tokenizer)
    words = {w for t in texts for w in t.split()}
    print(f"{len(texts)} paragraphs, {sum(len(t.split()) for t in texts)} words, {len(words)} distinct words")
    print(f"8000-piece test model: {plan.vocab_size} ids kept of 8002 ({plan.reasons})")
    base = XLMRobertaConfig.named("base")
    for name in ("XLMRobertaModel", "XLMRobertaForMaskedLM"):
        full = sum(int(__import__("math").prod(s)) for s in parameter_shapes(base, name).values())
        for ids in (plan.vocab_size, len(words) + 5):
            small = sum(int(__import__("math").prod(s))
                        for s in parameter_shapes(base.replace(vocab_size=ids), name).values())
            print(f"xlm-roberta-base {name}: {full:,} parameters; with {ids:,} ids: {small:,} "
                  f"({small / full:.1%}), fp32 {full * 4 / 2**20:.0f} -> {small * 4 / 2**20:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="udhr.jsonl (key, iso639_3, bcp47, paragraphs per line)")
    parser.add_argument("--keys", nargs="+", default=list(KEYS), help="UDHR translation keys")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--measure", action="store_true", help="print piece counts and the xlm-roberta-base sums")
    args = parser.parse_args()
    rows = records(args.data, args.keys)
    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} paragraphs of {', '.join(args.keys)} to {args.out}")
    if args.measure:
        measure([r["text"] for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
