"""``xlmr convert``: convert an XLM-R checkpoint folder between Hugging Face's formats, and verify the result.

SRC holds a checkpoint in any of the four formats (sharded too); DST receives config.json, SRC's tokenizer files
and the weights under HF's standard name (model.safetensors, pytorch_model.bin, tf_model.h5,
flax_model.msgpack), loadable by HF transformers 4.57.6 and every xlmr backend. SRC is never modified, and DST
may not be, contain or lie inside SRC. DST appears whole or not at all, and is never replaced without --force,
even when it appears during the conversion; --force replaces only a folder of checkpoint, config and tokenizer
files (anything else there is named and the command refuses). A --dtype cast that overflows is refused.
--verify runs both in their frameworks on a fixed multilingual batch and fails if their outputs differ, or if
either holds NaN/inf weights (named). Errors are one line on stderr, exit status 2 (1 when --verify finds a difference).

The conversion itself is framework-free (``xlmr.common.convert.convert``); ``verify`` runs backends, so it lives
here, above them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from xlmr.cli.parity import (_progress, class_config, compare, inputs_for, installed_backends, make_batch,
                             nonfinite_weights, run_backend_released)
from xlmr.common.checkpoint import read_checkpoint
from xlmr.common.checkpoint.fairseq import is_fairseq_folder
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import tolerance
from xlmr.common.convert import DTYPES, FORMATS, ConversionError, convert
from xlmr.common.weights import infer_architecture

HELP = "convert a checkpoint folder between safetensors, pytorch_model.bin, tf_model.h5 and flax_model.msgpack"
# The framework that reads each format natively, for --verify; safetensors is read by any of them.
NATIVE_BACKEND = {"pt": "pt", "tf": "tf", "flax": "flax", "safetensors": None}
# --verify with a narrower dtype: the largest output difference allowed, relative to the largest output.
VERIFY_RELATIVE = {"float16": 5e-3, "bfloat16": 3e-2}


def verify(src: str, dst: str, src_format: str, dst_format: str, dtype: str | None = None,
           backends: list[str] | None = None) -> dict[str, Any]:
    """Run ``src`` and ``dst`` in their native frameworks on a fixed multilingual batch; compare the outputs.

    Returns the largest difference, the tolerance and the backends used; raises ConversionError on a mismatch.
    """
    available = backends or installed_backends()
    if not available:
        raise ConversionError("--verify needs at least one of torch, tensorflow, flax installed")

    def pick(fmt: str, avoid: str | None = None) -> str:
        native = NATIVE_BACKEND[fmt]
        if native is not None:
            if native not in available:
                raise ConversionError(f"--verify needs the {native} backend to read the {fmt} format")
            return native
        others = [b for b in available if b != avoid]
        return (others or available)[0]

    config = XLMRobertaConfig.from_pretrained(src)
    architecture = infer_architecture(read_checkpoint(src).keys(), config)
    for folder in (src, dst):  # NaN/inf weights make NaN outputs: name the weight, not "differ by nan"
        bad = nonfinite_weights(folder)
        if bad:
            more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
            raise ConversionError(f"--verify failed: {folder}: {bad[0]}{more}; its outputs cannot be compared")
    src_backend = pick(src_format)
    dst_backend = pick(dst_format, avoid=src_backend)
    cfg = class_config(architecture, config)
    batch = make_batch(src, cfg)
    inputs = inputs_for(architecture, batch, cfg)
    with _progress(2, None) as bar:  # one side at a time, each model gone before the other loads
        bar.set_description(f"verify {src_backend} (source)")
        a = run_backend_released(src_backend, architecture, src, cfg, inputs)
        bar.update()
        bar.set_description(f"verify {dst_backend} (converted)")
        b = run_backend_released(dst_backend, architecture, dst, cfg, inputs)
        bar.update()
    diff, worst = compare(a, b, (f"{src} ({src_backend})", f"{dst} ({dst_backend})"))
    if dtype in VERIFY_RELATIVE:
        scale = max(float(np.max(np.abs(v))) for v in a.values() if v.size)
        limit, rule = VERIFY_RELATIVE[dtype] * scale, f"{VERIFY_RELATIVE[dtype]} x largest output {scale:.3g}"
    else:
        limit = tolerance("float32", config.hidden_size >= 768)
        rule = f"{limit:g}"
    result = {"architecture": architecture, "backends": [src_backend, dst_backend], "max_abs": diff,
              "worst_output": worst, "tolerance": limit, "rule": rule, "inputs": batch.source}
    if diff == float("inf"):
        raise ConversionError(f"--verify failed: {worst}")
    if not diff <= limit:
        raise ConversionError(f"--verify failed: {src} ({src_backend}) and {dst} ({dst_backend}) differ by "
                              f"{diff:.3e} in {worst}, over the tolerance {rule}")
    return result



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source checkpoint folder (any HF format, or fairseq's model.pt + dict.txt + "
                        "sentencepiece.bpe.model)")
    parser.add_argument("dst", help="destination folder (must not exist unless --force)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="cast floating tensors (default: keep)")
    parser.add_argument("--verify", action="store_true", help="compare outputs of SRC and DST")
    parser.add_argument("--force", action="store_true",
                        help="replace DST if it is a folder of checkpoint, config and tokenizer files only")
    parser.add_argument("--max-shard-size", default=None, help="shard the output, e.g. 2GB (safetensors, pt)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler's kill, ``timeout``) unwinds like Ctrl-C, so the temporary folder is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    if args.verify and is_fairseq_folder(args.src):  # the reference would be fairseq itself, not installed here
        raise ConversionError(f"--verify runs SRC in a backend, which a fairseq folder ({args.src}) is not; convert "
                              "without --verify, then check DST with `xlmr parity DST`")
    start = time.perf_counter()
    try:
        with _terminate_as_interrupt():
            summary = convert(args.src, args.dst, args.to, dtype=args.dtype, force=args.force,
                              max_shard_size=args.max_shard_size)
    except (MemoryError, RecursionError) as e:  # a reader missed a bound: still one line, exit 2
        raise ConversionError(f"{args.src}: the checkpoint asks for more than this machine allows "
                              f"({type(e).__name__}); it is corrupt or hostile") from None
    summary["seconds"] = round(time.perf_counter() - start, 3)
    for name, bad in summary["nonfinite"].items():
        print(f"{args.prog}: warning: {summary['source']}: tensor {name} holds {bad['count']} NaN/inf value(s) "
              f"(first at index {tuple(bad['first_index'])}); copied as they are", file=sys.stderr)
    if args.verify:
        try:
            summary["verify"] = verify(args.src, args.dst, summary["source_format"], args.to, args.dtype)
        except ConversionError as e:
            print(f"{args.prog}: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{summary['source']} ({summary['source_format']}, {summary['architecture']}, {summary['tensors']} "
              f"tensors, {summary['bytes'] / 2**20:.1f} MiB) -> {', '.join(summary['written'])} "
              f"in {summary['seconds']:.2f} s")
        if summary["ignored"]:
            print(f"not read (a format read first is present): {', '.join(summary['ignored'])}")
        if "verify" in summary:
            v = summary["verify"]
            print(f"verified: {v['backends'][0]} vs {v['backends'][1]}, max-abs difference {v['max_abs']:.3e} "
                  f"(tolerance {v['rule']}) on {v['inputs']}")
    return 0
