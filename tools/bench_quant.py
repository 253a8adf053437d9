#!/usr/bin/env python
"""The ``quant`` section of tools/bench.py: fp32, bf16 and int8 per backend and in ONNX Runtime, against HF fp32
and optimum + ONNX Runtime (fp32 and dynamic int8).

    python tools/bench.py --sections quant [--quick] [--repeats N]
    python tools/bench_quant.py [--quick] [--repeats N] [--json]     # the same, alone
    python tools/bench_quant.py --attention                          # the blocked-attention experiment

Speed runs the base encoder (12 layers, 768 wide, 12 heads, 3072; ``XLMRobertaModel``, random weights, seed 0)
at 1x128, 8x128, 8x512 and on bench.py's mixed-length batch (64 long-tailed sequences, sorted and cut into
batches of 8, each padded to its longest). The vocabulary is cut to 8002 rows for every path alike: a
feature-extraction forward gathers one embedding row per token, so its time does not depend on the vocabulary,
and five 1 GB copies of the 250k-row table would not fit beside other work. One child process per runtime
(pt, tf, flax, onnxruntime); inside it every path runs interleaved, size by size, so drift hits all alike:

  pt    ours fp32, bf16, int8 (``xlmr.pt.quantize``) and HF transformers' XLMRobertaModel fp32: the HF anchor
  tf    ours fp32, bf16, int8 under ``tf.function(jit_compile=True)``
  flax  ours fp32, bf16, int8 under ``jax.jit``
  ort   ``xlmr export`` fp32 and ``--quantize int8``, and optimum-onnx's export of HF's model
        (ORTModelForFeatureExtraction) fp32 and int8 (ORTQuantizer, ``AutoQuantizationConfig.avx512_vnni(
        is_static=False)``): the anchor to beat

Accuracy runs the embedded default checkpoint (``xlmr/assets/default``, an MLM trained on UDHR, so top-1 tokens
mean something) on the fixed multilingual verify batches of ``xlmr export`` (347 unmasked tokens): each path's
MLM logits against the same runtime's fp32 (ORT's against the fp32 PyTorch model, optimum's against HF's): the
max-abs logit difference and top-1 agreement.

bf16 and int8 come from ``xlmr.{pt,tf,flax}.quantize.quantize(model, mode)`` and ``from_pretrained(path,
quantize=mode)``; where a backend has no such module, bf16 falls back to bench.py's bf16 forward (pt ``.to``,
Keras' mixed policy, flax ``dtype``) and int8 is reported missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench  # noqa: E402  (tools/bench.py: shapes, runners, the mixed-length batch, the peak)

SIZES = ("1x128", "8x128", "8x512", "mixed")
MODES = ("float32", "bfloat16", "int8")
RUNTIMES = ("pt", "tf", "flax", "ort")
VOCAB = 8002
DEFAULT = os.path.join(ROOT, "xlmr", "assets", "default")
HF, OPT_FP32, OPT_INT8 = "HF fp32", "optimum ORT fp32", "optimum ORT int8"


# ================================================================================================ helpers
def run_worker(task: dict, timeout: int = 7200) -> dict:
    """``task`` in a child process of this file (one framework per process, as in bench.py)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)]
    # stderr passes through: the per-path lines are the progress of a run that takes most of an hour.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"the {task['kind']} worker failed with exit status {proc.returncode} (its error is above)"}
    return json.loads(lines[-1])


def base_config():
    from xlmr.common.config import XLMRobertaConfig

    return XLMRobertaConfig.named("base", vocab_size=VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def batches(size: str, config, int32: bool):
    """The inputs of one timed call: a list of (ids, mask) batches."""
    import numpy as np

    dtype = np.int32 if int32 else np.int64
    if size == "mixed":
        seqs = sorted(bench.mixed_sequences(config, 64), key=len)
        out = []
        for start in range(0, len(seqs), 8):
            chunk = seqs[start:start + 8]
            width = max(len(c) for c in chunk)
            ids = np.full((len(chunk), width), config.pad_token_id, dtype)
            mask = np.zeros_like(ids)
            for r, c in enumerate(chunk):
                ids[r, :len(c)], mask[r, :len(c)] = c, 1
            out.append((ids, mask))
        return out
    b, s = (int(x) for x in size.split("x"))
    ids = np.random.default_rng(0).integers(5, config.vocab_size, (b, s)).astype(dtype)
    return [(ids, np.ones_like(ids))]


def real_tokens(inputs) -> int:
    return int(sum(int(mask.sum()) for _, mask in inputs))


def interleave(paths: dict, sizes: list[str], config, repeats: int, int32: bool = False) -> list[dict]:
    """Median seconds per path and size, the paths run in turn at each repeat; a path that is a string is an
    error message, reported as such."""
    rows = []
    live = {k: v for k, v in paths.items() if callable(v)}
    for size in sizes:
        inputs = batches(size, config, int32)
        times = {k: [] for k in live}
        for name, fn in list(live.items()):
            try:
                for ids, mask in inputs:  # warm-up and compilation, per shape
                    fn(ids, mask)
            except Exception as e:  # a path that fails is reported, the others still run
                live.pop(name)
                paths[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        for _ in range(repeats):
            for name, fn in live.items():
                start = time.perf_counter()
                for ids, mask in inputs:
                    fn(ids, mask)
                times[name].append(time.perf_counter() - start)
        flop = sum(bench.encoder_flops(config, *ids.shape) for ids, _ in inputs)
        for name, value in paths.items():
            row = {"size": size, "path": name, "tokens": real_tokens(inputs), "flop": flop}
            if name in live and times[name]:
                row["seconds"] = statistics.median(times[name])
            else:
                row["error"] = value if isinstance(value, str) else "failed"
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    return rows


def _line(row: dict) -> str:
    if "seconds" not in row:
        return f"quant {row['size']:6} {row['path']:18} error: {row['error']}"
    return f"quant {row['size']:6} {row['path']:18} {row['seconds']:8.3f} s {row['tokens'] / row['seconds']:9.0f} tok/s"


# The mode names of ``quantize(model, mode)`` and ``from_pretrained(..., quantize=mode)``.
API_MODE = {"bfloat16": "bf16", "int8": "int8"}


def quantize_function(backend: str):
    """``xlmr.{backend}.quantize.quantize``, or a string saying why there is none."""
    try:
        module = importlib.import_module(f"xlmr.{backend}.quantize")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("xlmr"):
            return f"xlmr.{backend}.quantize is not installed in this tree"
        raise
    return module.quantize


def agreement(want, got, mask) -> dict:
    import numpy as np

    keep = mask.astype(bool)
    return {"max_abs": float(np.abs(got - want).max()), "agree": int((got.argmax(-1) == want.argmax(-1))[keep].sum()),
            "counted": int(keep.sum())}


def merge_accuracy(parts: list[dict]) -> dict:
    out = {"max_abs": max(p["max_abs"] for p in parts), "agree": sum(p["agree"] for p in parts),
           "counted": sum(p["counted"] for p in parts)}
    out["top1"] = out["agree"] / out["counted"]
    return out


# ================================================================================================ backends
def _ours(backend: str, config, mode: str):
    """(ids, mask) -> last hidden state of our XLMRobertaModel in ``mode``, compiled as bench.py serves it."""
    if mode == "float32":
        return bench._runner_ours(backend, config, "float32")
    quantize = quantize_function(backend)
    if isinstance(quantize, str):
        if mode == "bfloat16":  # bench.py's forward section has a bf16 path per backend
            return bench._runner_ours(backend, config, "bfloat16")
        return quantize
    import numpy as np

    if backend == "pt":
        import torch
        from xlmr.pt import XLMRobertaModel

        model = XLMRobertaModel(config, seed=0).eval()
        model = quantize(model, API_MODE[mode]) or model

        def run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
        return run
    if backend == "tf":
        import tensorflow as tf
        from xlmr.tf import XLMRobertaModel

        model = XLMRobertaModel(config, seed=0)
        model = quantize(model, API_MODE[mode]) or model
        fn = tf.function(lambda i, m: model(input_ids=i, attention_mask=m, training=False)[0], jit_compile=True)
        return lambda ids, mask: fn(tf.constant(ids), tf.constant(mask)).numpy()
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from xlmr.flax import XLMRobertaModel

    model = XLMRobertaModel(config)
    model = quantize(model, API_MODE[mode]) or model
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(input_ids=i, attention_mask=m)[0])
    return lambda ids, mask: np.asarray(fn(state, jnp.asarray(ids), jnp.asarray(mask)))


def _mlm_logits(backend: str, mode: str):
    """inputs -> MLM logits of the default checkpoint in ``mode``, or a string saying why there is no path."""
    import numpy as np

    from xlmr.backends import call_model, model_class, to_numpy

    from xlmr.cli.export import load_model
    from xlmr.common.config import XLMRobertaConfig

    cls = model_class(backend, "XLMRobertaForMaskedLM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "float32":
            model = cls.from_pretrained(DEFAULT)
        elif not isinstance(quantize_function(backend), str):
            model = cls.from_pretrained(DEFAULT, quantize=API_MODE[mode])
        elif mode == "bfloat16":  # xlmr export's bf16 load: pt/flax dtype=, Keras' mixed policy
            model = load_model(backend, "XLMRobertaForMaskedLM", DEFAULT, XLMRobertaConfig.from_pretrained(DEFAULT),
                               "bfloat16")
        else:
            return quantize_function(backend)
    if backend == "pt":
        model.eval()
    return lambda inputs: to_numpy(backend, call_model(backend, model, inputs, return_dict=True)["logits"],
                                   np.float32)


def accuracy_batches():
    from xlmr.cli.export import verify_batches
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.export_spec import export_spec

    config = XLMRobertaConfig.from_pretrained(DEFAULT)
    return verify_batches(DEFAULT, config, "XLMRobertaForMaskedLM", export_spec(config, "XLMRobertaForMaskedLM"))


def worker_backend(task: dict) -> dict:
    backend = task["backend"]
    accuracy = {}
    inputs = accuracy_batches()
    if backend == "tf":
        inputs = [{k: v.astype("int32") for k, v in batch.items()} for batch in inputs]
    base = _mlm_logits(backend, "float32")
    want = [base(b) for b in inputs]
    for mode in MODES[1:]:
        try:
            fn = _mlm_logits(backend, mode)
        except Exception as e:
            accuracy[mode] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        if isinstance(fn, str):
            accuracy[mode] = {"error": fn}
            continue
        accuracy[mode] = merge_accuracy([agreement(w, fn(b), b["attention_mask"]) for w, b in zip(want, inputs)])
    config = base_config()
    paths = {}
    for mode in MODES:
        try:
            paths[f"{backend} {mode}"] = _ours(backend, config, mode)
        except Exception as e:
            paths[f"{backend} {mode}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if backend == "pt":
        try:
            paths[HF] = bench._runner_hf("pt", config, "float32")
        except ImportError as e:
            paths[HF] = f"transformers is not installed: {e}"
    return {"rows": interleave(paths, task["sizes"], config, task["repeats"], int32=backend == "tf"),
            "accuracy": {f"{backend} {m}": a for m, a in accuracy.items()}}


# ================================================================================================ onnxruntime
def _session_runner(path: str):
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    first = session.get_outputs()[0].name

    def run(ids, mask):
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return session.run([first], {n: feed[n].astype(np.int64) for n in names})[0]
    return run


def _optimum(hf_folder: str, work: str, name: str, task: str):
    """optimum-onnx's export of the HF checkpoint ``hf_folder`` and its dynamic int8 quantization with the
    AVX512-VNNI preset: {"fp32": folder, "int8": folder}, or a string saying why not."""
    try:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
        import optimum.onnxruntime as ortmodels
    except ImportError as e:
        return f"optimum-onnx is not installed ({e}); pip install 'xlmr[bench]'"
    cls = getattr(ortmodels, "ORTModelForFeatureExtraction" if task == "feature-extraction" else
                  "ORTModelForMaskedLM")
    fp32, int8 = os.path.join(work, f"{name}-optimum-fp32"), os.path.join(work, f"{name}-optimum-int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls.from_pretrained(hf_folder, export=True).save_pretrained(fp32)
        quantizer = ORTQuantizer.from_pretrained(fp32)
        quantizer.quantize(save_dir=int8, quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False))
    return {"fp32": fp32, "int8": int8, "cls": cls}


def _onnx_file(folder: str) -> str:
    names = sorted(n for n in os.listdir(folder) if n.endswith(".onnx"))
    return os.path.join(folder, names[0])


def worker_ort(task: dict) -> dict:
    import torch
    import transformers

    from xlmr.cli.export import export_checkpoint

    work = tempfile.mkdtemp(prefix="xlmr-bench-quant-")
    try:
        # Accuracy: the default checkpoint's MLM, ours exported (fp32 reference: the PyTorch model) and optimum's.
        accuracy = {}
        inputs = accuracy_batches()
        from xlmr.pt import XLMRobertaForMaskedLM

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours_pt = XLMRobertaForMaskedLM.from_pretrained(DEFAULT).eval()
            hf_pt = transformers.XLMRobertaForMaskedLM.from_pretrained(DEFAULT).eval()
        with torch.inference_mode():
            want_ours = [ours_pt(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy() for b in inputs]
            want_hf = [hf_pt(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy() for b in inputs]
        for quantize in (None, "int8"):
            out = os.path.join(work, f"default-{quantize or 'fp32'}")
            export_checkpoint(DEFAULT, out, "onnx", task="fill-mask", quantize=quantize)
            run = _session_runner(os.path.join(out, "model.onnx"))
            accuracy[f"ort {quantize or 'float32'}"] = merge_accuracy(
                [agreement(w, run(b["input_ids"], b["attention_mask"]), b["attention_mask"])
                 for w, b in zip(want_ours, inputs)])
        opt = _optimum(DEFAULT, work, "default", "fill-mask")
        for kind in ("fp32", "int8"):
            name = OPT_FP32 if kind == "fp32" else OPT_INT8
            if isinstance(opt, str):
                accuracy[name] = {"error": opt}
                continue
            run = _session_runner(_onnx_file(opt[kind]))
            accuracy[name] = merge_accuracy([agreement(w, run(b["input_ids"], b["attention_mask"]),
                                                       b["attention_mask"]) for w, b in zip(want_hf, inputs)])
        del ours_pt, hf_pt

        # Speed: the base encoder, ours exported by xlmr export, HF's by optimum; the same random weights in both.
        config = base_config()
        from xlmr.pt import XLMRobertaModel

        ours = os.path.join(work, "base-ours")
        XLMRobertaModel(config, seed=0).save_pretrained(ours)
        hf_folder = os.path.join(work, "base-hf")
        transformers.XLMRobertaModel.from_pretrained(ours).save_pretrained(hf_folder)
        paths = {}
        for quantize in (None, "int8"):
            out = os.path.join(work, f"base-{quantize or 'fp32'}")
            export_checkpoint(ours, out, "onnx", quantize=quantize)
            paths[f"ort {quantize or 'float32'}"] = _session_runner(os.path.join(out, "model.onnx"))
        paths["ort bfloat16"] = "ONNX Runtime's CPU provider has no bfloat16 MatMul kernels (xlmr export --dtype " \
                                "bfloat16 refuses for that reason)"
        opt = _optimum(hf_folder, work, "base", "feature-extraction")
        for kind in ("fp32", "int8"):
            name = OPT_FP32 if kind == "fp32" else OPT_INT8
            if isinstance(opt, str):
                paths[name] = opt
                continue
            model = opt["cls"].from_pretrained(opt[kind], file_name=os.path.basename(_onnx_file(opt[kind])))

            def run(ids, mask, model=model):  # optimum's own forward, as users call it
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
            paths[name] = run
        return {"rows": interleave(paths, task["sizes"], config, task["repeats"]), "accuracy": accuracy}
    finally:
        shutil.rmtree(work, ignore_errors=True)


WORKERS = {"backend": worker_backend, "ort": worker_ort,
           "tf_attention": lambda task: tf_attention_experiment(task["repeats"])}


# ================================================================================================ section
def section_quant(args, peak: float = 0.0) -> dict:
    """Run every runtime's worker (``args.repeats``, ``args.quick``: 8x128 only) and return the report part."""
    sizes = ["8x128"] if getattr(args, "quick", False) else list(getattr(args, "quant_sizes", None) or SIZES)
    repeats = args.repeats
    start = time.perf_counter()
    rows, accuracy = [], {}
    for runtime in RUNTIMES:
        task = {"kind": "ort" if runtime == "ort" else "backend", "backend": runtime, "sizes": sizes,
                "repeats": repeats}
        result = run_worker(task)
        if "error" in result:
            rows.append({"path": runtime, "size": "*", "error": result["error"]})
            print(f"quant {runtime}: error: {result['error']}", file=sys.stderr, flush=True)
            continue
        rows += result["rows"]
        accuracy.update(result["accuracy"])
    return {"rows": rows, "accuracy": accuracy, "peak": peak, "sizes": sizes, "repeats": repeats,
            "seconds": time.perf_counter() - start}


def table(report: dict) -> str:
    """The markdown table: one row per path and size, tokens/s, ratios to the anchors, accuracy."""
    rows, accuracy, peak = report["rows"], report["accuracy"], report.get("peak") or 0.0
    timed = {(r["path"], r["size"]): r for r in rows if "seconds" in r}
    lines = ["| path | size | tokens/s | vs HF fp32 | vs optimum ORT int8 | share of fp32 peak | max-abs logit diff "
             "vs fp32 | top-1 agreement |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["size"] == "*":
            lines.append(f"| {r['path']} | all | error: {r['error']} | | | | | |")
            continue
        acc = accuracy.get(r["path"], {})
        if "float32" in r["path"] or r["path"] in (HF, OPT_FP32):
            diff, top1 = ("0 (reference)", "100%") if r["path"] != OPT_FP32 else \
                (f"{acc['max_abs']:.2e}" if "max_abs" in acc else "", f"{acc['top1']:.1%}" if "top1" in acc else "")
            if r["path"] == "ort float32" and "max_abs" in acc:
                diff, top1 = f"{acc['max_abs']:.2e}", f"{acc['top1']:.1%}"
        else:
            diff = f"{acc['max_abs']:.2e}" if "max_abs" in acc else acc.get("error", "")
            top1 = f"{acc['top1']:.1%} of {acc['counted']}" if "top1" in acc else ""
        if "seconds" not in r:
            lines.append(f"| {r['path']} | {r['size']} | n/a: {r['error']} | | | | {diff} | {top1} |")
            continue
        speed = r["tokens"] / r["seconds"]
        hf, anchor = timed.get((HF, r["size"])), timed.get((OPT_INT8, r["size"]))
        vs_hf = f"{hf['seconds'] / r['seconds']:.2f}x" if hf else "n/a"
        vs_anchor = f"{anchor['seconds'] / r['seconds']:.2f}x" if anchor else "n/a"
        share = f"{100 * r['flop'] / r['seconds'] / 1e9 / peak:.0f}%" if peak and "float32" in r["path"] else ""
        lines.append(f"| {r['path']} | {r['size']} | {speed:,.0f} | {vs_hf} | {vs_anchor} | {share} | {diff} | "
                     f"{top1} |")
    return "\n".join(lines)


def print_quant(report: dict) -> None:
    print(f"\n## quant (base encoder, vocab {VOCAB}; sizes {', '.join(report['sizes'])}; median of "
          f"{report['repeats']} interleaved runs; accuracy: default checkpoint's MLM logits vs fp32; "
          f"{report['seconds']:.0f} s; fp32 matmul peak {report.get('peak') or 0:.0f} GFLOP/s)\n")
    print(table(report))


# ================================================================================================ attention
def attention_experiment(repeats: int = 3, sizes: tuple[str, ...] = ("8x128", "8x256", "8x512")) -> list[dict]:
    """Flax's base encoder with the batched attention against ``tiled_attention`` (xlmr/flax/layers.py), both
    jitted in one process and timed interleaved; returns {size, batched_s, tiled_s, ratio, max_abs}.

    The TF side of the experiment (a key-tiled online softmax, and one (batch, head) at a time with
    ``tf.map_fn``) lost to TF's batched attention in an isolated 8x12x512x64 attention micro-benchmark (1.07-1.18x
    its time), so TF keeps the batched form; see docs/sections/quant_bench.md.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import xlmr.flax.layers as layers
    from xlmr.flax import XLMRobertaModel

    config = base_config()
    graphdef, state = nnx.split(XLMRobertaModel(config))

    def compiled(threshold: int):
        def forward(s, ids, mask):
            layers.TILED_ATTENTION_MIN_LENGTH = threshold  # read while tracing: fixed into this compilation
            return nnx.merge(graphdef, s)(input_ids=ids, attention_mask=mask)[0]
        return jax.jit(forward)

    saved = layers.TILED_ATTENTION_MIN_LENGTH
    out = []
    try:
        for size in sizes:
            fns = {"batched": compiled(10**9), "tiled": compiled(0)}
            b, s = (int(x) for x in size.split("x"))
            ids = jnp.asarray(np.random.default_rng(0).integers(5, config.vocab_size, (b, s)))
            mask = np.ones((b, s), np.int64)
            mask[1, s // 2:] = 0  # one padded row: the masked path
            mask = jnp.asarray(mask)
            results = {k: np.asarray(f(state, ids, mask)) for k, f in fns.items()}
            times = {k: [] for k in fns}
            for _ in range(repeats):
                for k, f in fns.items():
                    start = time.perf_counter()
                    np.asarray(f(state, ids, mask))
                    times[k].append(time.perf_counter() - start)
            row = {"size": size, **{f"{k}_s": statistics.median(v) for k, v in times.items()},
                   "max_abs": float(np.abs(results["tiled"] - results["batched"]).max())}
            row["ratio"] = row["tiled_s"] / row["batched_s"]
            out.append(row)
            print(f"attention {size}: batched {row['batched_s']:.3f} s, tiled {row['tiled_s']:.3f} s, "
                  f"tiled/batched {row['ratio']:.3f}, max-abs {row['max_abs']:.1e}", file=sys.stderr, flush=True)
    finally:
        layers.TILED_ATTENTION_MIN_LENGTH = saved
    return out


def tf_attention_experiment(repeats: int = 7, tile: int = 128) -> dict:
    """TF's attention core at the base shape's 8x512 (8 x 12 heads x 512 x 64), under ``tf.function(jit_compile=
    True)``, timed interleaved: the batched form the tf backend uses, a flash-style key-tiled online softmax
    (running max and sum over ``tile``-key blocks), and one (batch, head) at a time (``tf.map_fn``, flax's winner).
    Returns {variant: seconds} and each variant's max-abs difference from the batched form. None beat the batched
    form here (docs/sections/quant_bench.md), so xlmr/tf/layers.py keeps it."""
    import math

    import numpy as np
    import tensorflow as tf

    b, h, n, d = 8, 12, 512, 64
    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.standard_normal((b, h, n, d)), tf.float32) for _ in range(3))
    keep = np.ones((b, n), bool)
    keep[1, 300:] = False
    bias = tf.constant(np.where(keep, 0.0, np.finfo(np.float32).min)[:, None, None, :], tf.float32)
    scale = 1.0 / math.sqrt(d)

    def batched(q, k, v, bias):
        probs = tf.nn.softmax(tf.einsum("bhqd,bhkd->bhqk", q, k) * scale + bias, -1)
        return tf.einsum("bhqk,bhkd->bhqd", probs, v)

    def key_tiled(q, k, v, bias):
        top = tf.fill((b, h, n), -np.inf)
        total, acc = tf.zeros((b, h, n)), tf.zeros((b, h, n, d))
        for j in range(0, n, tile):
            scores = tf.einsum("bhqd,bhkd->bhqk", q, k[:, :, j:j + tile]) * scale + bias[..., j:j + tile]
            new_top = tf.maximum(top, tf.reduce_max(scores, -1))
            shrink, p = tf.exp(top - new_top), tf.exp(scores - new_top[..., None])
            total = total * shrink + tf.reduce_sum(p, -1)
            acc = acc * shrink[..., None] + tf.einsum("bhqk,bhkd->bhqd", p, v[:, :, j:j + tile])
            top = new_top
        return acc / total[..., None]

    def per_head(q, k, v, bias):
        flat = [tf.reshape(x, (b * h, n, d)) for x in (q, k, v)]
        rows = tf.reshape(tf.broadcast_to(bias, (b, h, 1, n)), (b * h, 1, n))
        one = lambda a: batched(a[0][None, None], a[1][None, None], a[2][None, None], a[3][None, None])[0, 0]
        return tf.reshape(tf.map_fn(one, (*flat, rows), fn_output_signature=tf.float32), (b, h, n, d))

    fns = {name: tf.function(f, jit_compile=True) for name, f in
           (("batched", batched), ("key_tiled", key_tiled), ("per_head", per_head))}
    outs = {name: f(q, k, v, bias).numpy() for name, f in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            start = time.perf_counter()
            f(q, k, v, bias).numpy()
            times[name].append(time.perf_counter() - start)
    result = {name: {"seconds": statistics.median(t), "ratio": statistics.median(t) / statistics.median(
        times["batched"]), "max_abs": float(np.abs(outs[name] - outs["batched"]).max())} for name, t in times.items()}
    print(f"tf attention core 8x12x512x64: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_quant.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="8x128 only")
    parser.add_argument("--sizes", dest="quant_sizes", default=",".join(SIZES), type=bench._subset("--sizes", SIZES),
                        metavar="LIST", help=f"of {','.join(SIZES)} (default: all)")
    parser.add_argument("--repeats", type=int, default=5, metavar="N", help="timed runs per path and size")
    parser.add_argument("--no-peak", dest="peak", action="store_false", help="skip the fp32 matmul peak")
    parser.add_argument("--attention", action="store_true", help="run only the blocked-attention experiment")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task["kind"]](task)))
        return 0
    if args.attention:
        print(json.dumps({"flax": attention_experiment(args.repeats),
                          "tf": run_worker({"kind": "tf_attention", "repeats": max(args.repeats, 5)})}, indent=2))
        return 0
    peak = 0.0
    if args.peak:
        peak = max(bench.section_peak().get("gflops", {"": 0.0}).values())
    report = section_quant(args, peak)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"machine: {bench._cpu_name()}, {os.cpu_count()} cores")
        print_quant(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
