#!/usr/bin/env python
"""Write ``xlmr/assets/default/reference_outputs.npz``: the embedded checkpoint's outputs for all seven classes.

    python tools/make_reference_outputs.py [--backend pt]

``xlmr parity`` compares a single installed backend with these; the test suite checks that every backend agrees
with them (tests/test_reference_outputs.py), so the file is cross-checked by all three. Rerun it whenever the
default checkpoint, its tokenizer or the parity batch changes.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xlmr.cli.parity import (DEFAULT_CHECKPOINT, REFERENCE_FILE, class_config, inputs_for,  # noqa: E402
                             make_batch, reference_subset, run_backend)
from xlmr.common.config import XLMRobertaConfig  # noqa: E402
from xlmr.common.io import atomic_path  # noqa: E402
from xlmr.common.weights import ARCHITECTURES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pt", choices=("pt", "tf", "flax"), help="backend that computes them")
    args = parser.parse_args(argv)
    config = XLMRobertaConfig.from_pretrained(DEFAULT_CHECKPOINT)
    batch = make_batch(DEFAULT_CHECKPOINT, config, seed=0)
    arrays = {}
    for arch in ARCHITECTURES:
        cfg = class_config(arch, config)
        out = run_backend(args.backend, arch, DEFAULT_CHECKPOINT, cfg, inputs_for(arch, batch, cfg, 0), 0)
        arrays.update({f"{arch}/{k}": v.astype(np.float32) for k, v in reference_subset(out, config.vocab_size).items()})
    target = os.path.join(DEFAULT_CHECKPOINT, REFERENCE_FILE)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    print(f"{target}: {len(arrays)} arrays, {os.path.getsize(target) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
