#!/usr/bin/env python
"""Convert an XLM-R checkpoint folder between Hugging Face's formats.

    python tools/convert.py SRC DST --to {safetensors,pt,tf,flax} [--dtype float32|float16|bfloat16]
                            [--verify] [--force] [--max-shard-size 2GB]

SRC holds a checkpoint in any of the four formats (sharded too); DST receives config.json, SRC's tokenizer files
and the weights under HF's standard name (model.safetensors, pytorch_model.bin, tf_model.h5,
flax_model.msgpack), loadable by HF transformers 4.57.6 and every xlmr backend. SRC is never modified; DST
appears whole or not at all. --verify runs both in their frameworks on a fixed multilingual batch and fails if
their outputs differ. Errors are one line on stderr, exit status 2 (1 when --verify finds a difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF and XLA C++ chatter (CUDA probes) on stderr

from xlmr.common.convert import DTYPES, FORMATS, ConversionError, convert, verify  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="source checkpoint folder")
    parser.add_argument("dst", help="destination folder (must not exist unless --force)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="cast floating tensors (default: keep)")
    parser.add_argument("--verify", action="store_true", help="compare outputs of SRC and DST")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    parser.add_argument("--max-shard-size", default=None, help="shard the output, e.g. 2GB (safetensors, pt)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        summary = convert(args.src, args.dst, args.to, dtype=args.dtype, force=args.force,
                          max_shard_size=args.max_shard_size)
        summary["seconds"] = round(time.perf_counter() - start, 3)
        if args.verify:
            try:
                summary["verify"] = verify(args.src, args.dst, summary["source_format"], args.to, args.dtype)
            except ConversionError as e:
                print(f"convert.py: {e}", file=sys.stderr)
                return 1
    except (ConversionError, OSError, ValueError, KeyError) as e:
        message = str(e).strip().replace("\n", "; ")
        print(f"convert.py: error: {message}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{summary['source']} ({summary['source_format']}, {summary['architecture']}, {summary['tensors']} "
              f"tensors, {summary['bytes'] / 2**20:.1f} MiB) -> {', '.join(summary['written'])} "
              f"in {summary['seconds']:.2f} s")
        if "verify" in summary:
            v = summary["verify"]
            print(f"verified: {v['backends'][0]} vs {v['backends'][1]}, max-abs difference {v['max_abs']:.3e} "
                  f"(tolerance {v['rule']}) on {v['inputs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
