#!/usr/bin/env python
"""Check that every installed backend gives the same outputs on a checkpoint, for all seven classes.

    python tools/parity.py                      # the small checkpoint shipped inside the package
    python tools/parity.py CKPT_DIR [...] --json

Each class is loaded from the checkpoint in pt, tf and flax (a head the checkpoint lacks is initialised from one
seed, identically in every backend), run on a fixed multilingual batch with labels, and every output (logits,
hidden states, attentions, pooler, loss, cache) is compared pairwise. Exits 1 if any pair differs by more than
the tolerance declared in ``xlmr.common.constants``, 2 on bad arguments or an unreadable checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF and XLA C++ chatter (CUDA probes) on stderr

from xlmr.common.parity import BACKENDS, DEFAULT_CHECKPOINT, check_checkpoint, installed_backends  # noqa: E402
from xlmr.common.weights import ARCHITECTURES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parity.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint folders (default: the embedded checkpoint)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of pt,tf,flax")
    parser.add_argument("--classes", default=None, help="comma-separated class names (default: all seven)")
    parser.add_argument("--seed", type=int, default=0, help="seed for new heads, labels and random ids")
    args = parser.parse_args(argv)

    wanted = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    backends = [b for b in wanted if b in installed_backends()]
    if len(backends) < 2:
        parser.error(f"parity needs at least two installed backends; installed among {wanted}: {backends}")
    classes = args.classes.split(",") if args.classes else list(ARCHITECTURES)
    bad = sorted(set(classes) - set(ARCHITECTURES))
    if bad:
        parser.error(f"unknown class(es) {bad}; choose from {', '.join(ARCHITECTURES)}")

    report, failed = [], False
    for checkpoint in args.checkpoints or [DEFAULT_CHECKPOINT]:
        if not os.path.isdir(checkpoint):
            print(f"parity.py: error: checkpoint folder {checkpoint} does not exist", file=sys.stderr)
            return 2
        start = time.perf_counter()
        try:
            batch, rows = check_checkpoint(checkpoint, backends, classes, seed=args.seed)
        except (OSError, ValueError, KeyError) as e:
            print(f"parity.py: error: {checkpoint}: {e}", file=sys.stderr)
            return 2
        failed |= any(not r.passed for r in rows)
        report.append({"checkpoint": checkpoint, "inputs": batch.source,
                       "shape": list(batch.inputs["input_ids"].shape), "seconds": time.perf_counter() - start,
                       "rows": [dict(vars(r), passed=r.passed) for r in rows]})

    if args.json:
        print(json.dumps({"passed": not failed, "backends": backends, "checkpoints": report}, indent=2))
    else:
        for entry in report:
            print(f"\n{entry['checkpoint']}\n  inputs: {entry['inputs']}, shape {tuple(entry['shape'])}, "
                  f"{entry['seconds']:.1f} s")
            print(f"  {'class':38} {'pair':8} {'max-abs diff':>13} {'tolerance':>10}  result  worst output")
            for r in entry["rows"]:
                verdict = "pass" if r["passed"] else "FAIL"
                print(f"  {r['architecture']:38} {r['pair']:8} {r['max_abs']:13.3e} {r['tolerance']:10.0e}  "
                      f"{verdict:6}  {r['worst']}")
        print(f"\n{'FAILED' if failed else 'all outputs agree'}: backends {', '.join(backends)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
