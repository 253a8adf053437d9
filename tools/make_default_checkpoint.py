#!/usr/bin/env python
"""Build the small checkpoint shipped in ``xlmr/assets/default`` (the parity check's default input).

    python tools/make_default_checkpoint.py --data ../shared/data/udhr.jsonl [--steps 300]

A 2-layer, 64-wide XLM-R with the test sentencepiece model (tests/fixtures/sentencepiece.bpe.model), initialised
with HF's scheme from seed 0 and then trained briefly as a masked LM on the UDHR in many languages, so that its
logits have real structure (a random model's outputs are nearly uniform, which makes a parity check too easy).
Deterministic on one machine; written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.io import atomic_directory  # noqa: E402

SPM = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")
OUT = os.path.join(ROOT, "xlmr", "assets", "default")


def training_batches(tokenizer, data: str, steps: int, batch: int, length: int, seed: int):
    """Masked-LM batches (15% of tokens; 80% <mask>, 10% random, 10% kept, as in the paper) from the UDHR."""
    paragraphs = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            paragraphs.extend(p for p in json.loads(line)["paragraphs"] if len(p) > 30)
    rng = np.random.default_rng(seed)
    vocab = len(tokenizer)
    for _ in range(steps):
        texts = [paragraphs[i] for i in rng.integers(0, len(paragraphs), batch)]
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
        ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
        special = np.isin(ids, [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id])
        chosen = (rng.random(ids.shape) < 0.15) & ~special
        labels = np.where(chosen, ids, -100)
        roll = rng.random(ids.shape)
        ids = np.where(chosen & (roll < 0.8), tokenizer.mask_token_id, ids)
        ids = np.where(chosen & (roll >= 0.8) & (roll < 0.9), rng.integers(4, vocab, ids.shape), ids)
        yield ids, mask, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="udhr.jsonl (one JSON object a line with 'paragraphs')")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()

    import torch

    from xlmr.common.tokenization import XLMRobertaTokenizer
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast
    from xlmr.pt import XLMRobertaForMaskedLM

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    tokenizer = XLMRobertaTokenizer(SPM)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=128, max_position_embeddings=130, type_vocab_size=1,
                              architectures=["XLMRobertaForMaskedLM"])
    model = XLMRobertaForMaskedLM(config, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    for step, (ids, mask, labels) in enumerate(training_batches(tokenizer, args.data, args.steps, 32, 128, 0)):
        loss = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     labels=torch.from_numpy(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  masked-LM loss {loss.item():.3f}", flush=True)
    model.eval()
    with atomic_directory(args.out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        # The tokenizer pads and truncates to what the model takes (128 here, not XLM-R's 512).
        XLMRobertaTokenizer(SPM, model_max_length=config.max_sequence_length).save_pretrained(tmp)
        XLMRobertaTokenizerFast(SPM, model_max_length=config.max_sequence_length).save_pretrained(tmp)
    print(f"wrote {args.out}: {sorted(os.listdir(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
