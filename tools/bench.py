#!/usr/bin/env python
"""Benchmark xlmr against Hugging Face transformers 4.57.6, side by side, reported as ratios.

    python tools/bench.py                 # everything (about 30-60 minutes on 2 cores)
    python tools/bench.py --quick         # base shape, 8x128, fp32 forward + mixed lengths + tokenizers
    python tools/bench.py --sections forward --shapes base --sizes 8x128 --json

Sections:
  peak       fp32 2048x2048 matmul GFLOP/s per framework: the machine's peak, measured in this run.
  forward    inference time of XLMRobertaModel per backend, named shape, batch x sequence and dtype: median of
             several runs after warm-up, tokens/s, GFLOP/s, share of the peak, and ours/HF in the same backend
             (HF runs interleaved with ours in one process for pt and flax; HF's TF class needs legacy Keras,
             so it runs in its own process).
  mixed      a batch of mixed lengths, padded to its longest vs. xlmr's length-bucketed ``encode_batched``.
  convert    tools/convert.py on a base-sized checkpoint (1.1 GB) for every source/target format pair, and
             ``from_pretrained`` per backend: seconds and peak RSS relative to the checkpoint size.
  tokenizer  slow and fast tokenizers, ours and HF's, on 3,000 multilingual paragraphs.
  memory     peak resident memory of one training step at xlm-roberta-large width, per backend, with and without
             activation checkpointing and with parameter sharding (tools/bench_memory.py).
  quant      fp32/bf16/int8 per backend and in ONNX Runtime vs HF fp32 and optimum + ORT int8 (tools/bench_quant.py).

Every measurement runs in a child process (one framework's threads and memory never disturb another's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF and XLA C++ chatter (CUDA probes) on stderr
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES = ("base", "large")
SIZES = ("1x128", "8x128", "32x128", "8x512")
DTYPES = ("float32", "bfloat16")
BACKENDS = ("pt", "tf", "flax")
SECTIONS = ("peak", "forward", "mixed", "convert", "tokenizer", "memory", "quant")
PARAGRAPHS = os.path.join(ROOT, "tools", "data", "paragraphs.json")
SPM_MODEL = os.path.join(ROOT, "tests", "fixtures", "sentencepiece.bpe.model")


# ================================================================================================ helpers
def encoder_flops(config, batch: int, length: int) -> float:
    """Multiply-adds x 2 of one encoder forward (the matmuls; softmax, norms and gathers are negligible)."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens = batch * length
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 2 * 2 * batch * length * length * h
    return n * per_layer + 2 * batch * h * h  # + pooler


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_worker(task: dict, env: dict | None = None, timeout: int = 3600) -> dict:
    """Run ``task`` in a child process; return its JSON result with the child's peak RSS added."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        lines = [l for l in err.strip().splitlines() if l.strip()]
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def reset_peak_rss() -> None:
    """Start this process's RSS high-water mark afresh. Linux carries it over fork and exec, so a worker started
    by a big parent would otherwise report the parent's peak (``clear_refs`` value 5 resets it)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """The RSS high-water mark since ``reset_peak_rss`` (Linux ``VmHWM``), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


# ================================================================================================ workers
def worker_peak(task: dict) -> dict:
    import numpy as np

    n, out = 2048, {}
    flop = 2 * n ** 3
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
        x = torch.from_numpy(a)
        out["torch (default)"] = flop / median_time(lambda: x @ x, 5) / 1e9
        if torch.backends.mkldnn.is_available():
            w = torch.ops.mkldnn._reorder_linear_weight(x, None) if hasattr(torch.ops.mkldnn, "_reorder_linear_weight") else x
            def onednn():
                return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
            try:
                onednn()
                out["torch (oneDNN)"] = flop / median_time(onednn, 5) / 1e9
            except Exception:  # noqa: BLE001 - the op's signature differs across torch versions
                pass
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(a)
        f = jax.jit(lambda m: m @ m)
        out["jax (XLA)"] = flop / median_time(lambda: f(xj).block_until_ready(), 5) / 1e9
    except ImportError:
        pass
    try:
        import tensorflow as tf

        xt = tf.constant(a)
        g = tf.function(lambda m: tf.matmul(m, m), jit_compile=True)
        out["tf (XLA)"] = flop / median_time(lambda: g(xt).numpy(), 5) / 1e9
    except ImportError:
        pass
    return {"gflops": out}


def _config(shape: str):
    from xlmr.common.config import XLMRobertaConfig

    return XLMRobertaConfig.named(shape, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _runner_ours(backend: str, config, dtype: str):
    """A callable (ids, mask) -> last hidden state, compiled the way the backend is meant to be served."""
    import numpy as np

    if backend == "pt":
        import torch
        from xlmr.pt import XLMRobertaModel

        torch.set_num_threads(os.cpu_count())
        model = XLMRobertaModel(config, seed=0).eval()
        if dtype == "bfloat16":
            model = model.to(torch.bfloat16)

        def run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
        return run
    if backend == "tf":
        import tensorflow as tf
        from xlmr.tf import XLMRobertaModel

        if dtype == "bfloat16":  # Keras' mixed policy: bf16 matmuls, float32 variables, softmax and LayerNorm
            import keras
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = XLMRobertaModel(config, seed=0)
        fn = tf.function(lambda i, m: model(input_ids=i, attention_mask=m, training=False)[0], jit_compile=True)
        return lambda ids, mask: fn(tf.constant(ids), tf.constant(mask)).numpy()
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from xlmr.flax import XLMRobertaModel

    kw = {"dtype": jnp.bfloat16, "param_dtype": jnp.bfloat16} if dtype == "bfloat16" else {}
    model = XLMRobertaModel(config, **kw)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(input_ids=i, attention_mask=m)[0])
    return lambda ids, mask: np.asarray(fn(state, jnp.asarray(ids), jnp.asarray(mask)))


def _runner_hf(backend: str, config, dtype: str):
    import numpy as np
    import transformers

    hf_config = transformers.XLMRobertaConfig(**{k: v for k, v in config.to_dict().items() if k != "extra"})
    if backend == "pt":
        import torch

        torch.manual_seed(0)
        model = transformers.XLMRobertaModel(hf_config).eval()
        if dtype == "bfloat16":
            model = model.to(torch.bfloat16)

        def run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
        return run
    if backend == "tf":
        import tensorflow as tf

        if dtype != "float32":
            raise NotImplementedError("HF's TF class has no bfloat16 path")
        model = transformers.TFXLMRobertaModel(hf_config)
        fn = tf.function(lambda i, m: model(input_ids=i, attention_mask=m, training=False)[0], jit_compile=True)
        return lambda ids, mask: fn(tf.constant(ids), tf.constant(mask)).numpy()
    import jax
    import jax.numpy as jnp

    model = transformers.FlaxXLMRobertaModel(hf_config, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    params = model.params
    if dtype == "bfloat16":
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.bfloat16), params)
    fn = jax.jit(lambda p, i, m: model(input_ids=i, attention_mask=m, params=p)[0])
    return lambda ids, mask: np.asarray(fn(params, jnp.asarray(ids), jnp.asarray(mask)))


def worker_forward(task: dict) -> dict:
    import numpy as np

    config = _config(task["shape"])
    impls = task["impls"]
    runners = {}
    for impl in impls:
        try:
            runners[impl] = (_runner_ours if impl == "ours" else _runner_hf)(task["backend"], config, task["dtype"])
        except (ImportError, NotImplementedError) as e:
            runners[impl] = str(e)
    results = []
    rng = np.random.default_rng(0)
    for size in task["sizes"]:
        b, s = (int(x) for x in size.split("x"))
        ids = rng.integers(5, config.vocab_size, (b, s)).astype(np.int32 if task["backend"] == "tf" else np.int64)
        mask = np.ones((b, s), ids.dtype)
        times = {impl: [] for impl in impls}
        live = {k: v for k, v in runners.items() if callable(v)}
        for fn in live.values():  # warm-up (and compilation)
            fn(ids, mask)
            fn(ids, mask)
        for _ in range(task["repeats"]):  # interleaved, so drift hits both alike
            for impl, fn in live.items():
                start = time.perf_counter()
                fn(ids, mask)
                times[impl].append(time.perf_counter() - start)
        entry = {"size": size, "flop": encoder_flops(config, b, s)}
        for impl in impls:
            entry[impl] = statistics.median(times[impl]) if times[impl] else runners[impl]
        results.append(entry)
    return {"results": results}


def mixed_sequences(config, count: int) -> list[list[int]]:
    """A long-tailed mix of token-id sequences, as in real traffic: most inputs short, a few near the limit."""
    import numpy as np

    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(60), 0.8, count).astype(int), 8, 512)
    return [list(rng.integers(5, config.vocab_size, n)) for n in lengths]


def worker_mixed(task: dict) -> dict:
    import numpy as np

    from xlmr.common.batching import padded_tokens, plan_buckets

    config = _config(task["shape"])
    seqs = mixed_sequences(config, task["count"])
    lengths = np.array([len(s) for s in seqs])
    backend = task["backend"]
    module = __import__(f"xlmr.{backend}", fromlist=["XLMRobertaModel", "encode_batched"])
    runner = _runner_ours(backend, config, "float32")
    batch = task["batch"]

    def padded():
        for start in range(0, len(seqs), batch):
            chunk = seqs[start:start + batch]
            width = max(len(c) for c in chunk)
            ids = np.full((len(chunk), width), config.pad_token_id, np.int64)
            mask = np.zeros_like(ids)
            for r, c in enumerate(chunk):
                ids[r, :len(c)], mask[r, :len(c)] = c, 1
            if backend == "tf":
                ids, mask = ids.astype(np.int32), mask.astype(np.int32)
            runner(ids, mask)

    buckets = plan_buckets(seqs, config.pad_token_id, max_tokens=task["max_tokens"])
    encode = getattr(module, "encode_batched", None)
    if encode is None:
        return {"error": f"xlmr.{backend} has no encode_batched"}
    model = module.XLMRobertaModel(config) if backend == "flax" else module.XLMRobertaModel(config, seed=0)
    if backend == "pt":
        model.eval()
    # The floor: the same model's time per token on one dense 8x128 batch (no padding), times the real tokens.
    dense = np.random.default_rng(1).integers(5, config.vocab_size, (8, 128))
    dense_ids, dense_mask = (dense.astype(np.int32), np.ones((8, 128), np.int32)) if backend == "tf" else \
        (dense, np.ones((8, 128), np.int64))
    t_dense = median_time(lambda: runner(dense_ids, dense_mask), task["repeats"], warmup=1)
    t_padded = median_time(padded, task["repeats"], warmup=1)
    t_bucketed = median_time(lambda: encode(model, seqs, max_tokens=task["max_tokens"]), task["repeats"], warmup=1)
    padded_total = sum(len(seqs[i:i + batch]) * max(len(c) for c in seqs[i:i + batch])
                       for i in range(0, len(seqs), batch))
    return {"sequences": len(seqs), "real_tokens": int(lengths.sum()), "padded_tokens_naive": padded_total,
            "padded_tokens_bucketed": padded_tokens(buckets), "seconds_naive": t_padded,
            "seconds_bucketed": t_bucketed, "seconds_real_tokens": t_dense * int(lengths.sum()) / dense.size}


def worker_make_checkpoint(task: dict) -> dict:
    from xlmr.common.checkpoint import save_pretrained
    from xlmr.common.config import XLMRobertaConfig
    from xlmr.common.init import initial_weights
    from xlmr.common.weights import parameter_shapes

    config = XLMRobertaConfig.named(task["shape"])
    arch = task["architecture"]
    save_pretrained(task["dst"], config, initial_weights(parameter_shapes(config, arch), config, seed=0), arch)
    return {"bytes": sum(os.path.getsize(os.path.join(task["dst"], f)) for f in os.listdir(task["dst"]))}


def worker_convert(task: dict) -> dict:
    from xlmr.common.convert import convert

    import xlmr.common.checkpoint  # noqa: F401  (what every conversion imports; not part of the measurement)
    base = current_rss_bytes()
    reset_peak_rss()
    start = time.perf_counter()
    convert(task["src"], task["dst"], task["to"], force=True, progress=False)
    return {"seconds": time.perf_counter() - start, "peak_rss": peak_rss_bytes(), "rss_before": base}


def worker_load(task: dict) -> dict:
    import importlib

    module = importlib.import_module(f"xlmr.{task['backend']}")
    base = current_rss_bytes()
    reset_peak_rss()
    start = time.perf_counter()
    model = module.XLMRobertaForMaskedLM.from_pretrained(task["path"])
    seconds, peak = time.perf_counter() - start, peak_rss_bytes()
    # Memory-mapped weights become resident when first used: the peak through one short forward pass too.
    import numpy as np
    ids = np.array([[0, 100, 200, 300, 2]], np.int32 if task["backend"] == "tf" else np.int64)
    if task["backend"] == "pt":
        import torch
        with torch.inference_mode():
            model(input_ids=torch.from_numpy(ids))
    else:
        model(input_ids=ids)
    return {"seconds": seconds, "peak_rss": peak, "rss_after_import": base, "peak_rss_forward": peak_rss_bytes()}


def worker_tokenizer(task: dict) -> dict:
    texts = json.load(open(PARAGRAPHS, encoding="utf-8"))
    folder = task["folder"]
    out = {}
    impls = []
    from xlmr.common.tokenization import XLMRobertaTokenizer
    from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

    impls += [("ours slow", XLMRobertaTokenizer.from_pretrained(folder)),
              ("ours fast", XLMRobertaTokenizerFast.from_pretrained(folder))]
    try:
        import transformers

        impls += [("HF slow", transformers.XLMRobertaTokenizer(vocab_file=SPM_MODEL)),
                  ("HF fast", transformers.XLMRobertaTokenizerFast.from_pretrained(folder))]
    except ImportError:
        pass
    chars = sum(len(t) for t in texts)
    for name, tok in impls:
        seconds = median_time(lambda: tok(texts, truncation=True, max_length=512), task["repeats"], warmup=1)
        out[name] = {"seconds": seconds, "paragraphs_per_s": len(texts) / seconds, "mchars_per_s": chars / seconds / 1e6}
    return {"paragraphs": len(texts), "results": out}


WORKERS = {"make_checkpoint": worker_make_checkpoint, "peak": worker_peak, "forward": worker_forward, "mixed": worker_mixed, "convert": worker_convert,
           "load": worker_load, "tokenizer": worker_tokenizer}


# ================================================================================================ sections
def section_peak() -> dict:
    return run_worker({"kind": "peak"})


def section_forward(args, peak: float) -> list[dict]:
    rows = []
    for shape in args.shapes:
        for dtype in args.dtypes:
            for backend in args.backends:
                if backend == "tf":  # HF's TF class needs legacy Keras: a process of its own
                    ours = run_worker({"kind": "forward", "backend": backend, "shape": shape, "dtype": dtype,
                                       "sizes": args.sizes, "repeats": args.repeats, "impls": ["ours"]})
                    hf = run_worker({"kind": "forward", "backend": backend, "shape": shape, "dtype": dtype,
                                     "sizes": args.sizes, "repeats": args.repeats, "impls": ["hf"]},
                                    env={"TF_USE_LEGACY_KERAS": "1"}) if args.hf else {"error": "--no-hf"}
                    if "error" in ours:
                        parts = ours
                    else:
                        parts = ours
                        for i, entry in enumerate(ours["results"]):
                            entry["hf"] = hf["results"][i]["hf"] if "results" in hf else hf["error"]
                else:
                    impls = ["ours", "hf"] if args.hf else ["ours"]
                    parts = run_worker({"kind": "forward", "backend": backend, "shape": shape, "dtype": dtype,
                                        "sizes": args.sizes, "repeats": args.repeats, "impls": impls})
                if "error" in parts:
                    rows.append({"shape": shape, "dtype": dtype, "backend": backend, "error": parts["error"]})
                    continue
                for entry in parts["results"]:
                    b, s = (int(x) for x in entry["size"].split("x"))
                    row = {"shape": shape, "dtype": dtype, "backend": backend, "size": entry["size"]}
                    for impl in ("ours", "hf"):
                        value = entry.get(impl)
                        if isinstance(value, float):
                            row[f"{impl}_s"] = value
                        elif value is not None:
                            row[f"{impl}_error"] = value
                    if "ours_s" in row:
                        row["tokens_per_s"] = b * s / row["ours_s"]
                        row["gflops"] = entry["flop"] / row["ours_s"] / 1e9
                        row["peak_share"] = row["gflops"] / peak if peak else None
                    if "ours_s" in row and "hf_s" in row:
                        row["ratio"] = row["ours_s"] / row["hf_s"]
                    rows.append(row)
                    print(_forward_line(row), file=sys.stderr, flush=True)
    return rows


def _forward_line(r: dict) -> str:
    if "error" in r:
        return f"{r['shape']:5} {r['dtype']:8} {r['backend']:4} error: {r['error']}"
    hf = f"{r['hf_s']:8.3f}" if "hf_s" in r else f"{'n/a':>8}"
    ratio = f"{r['ratio']:6.2f}" if "ratio" in r else f"{'n/a':>6}"
    share = f"{100 * r['peak_share']:5.0f}%" if r.get("peak_share") else "   n/a"
    return (f"{r['shape']:5} {r['dtype']:8} {r['backend']:4} {r['size']:7} {r['ours_s']:8.3f} {hf} {ratio} "
            f"{r['tokens_per_s']:9.0f} {r['gflops']:7.0f} {share}")


def section_mixed(args) -> list[dict]:
    rows = []
    for backend in args.backends:
        result = run_worker({"kind": "mixed", "backend": backend, "shape": "base", "count": 64, "batch": 8,
                             "max_tokens": 4096, "repeats": max(1, args.repeats // 2)})
        rows.append({"backend": backend, **result})
    return rows


def section_convert(args) -> dict:
    work = tempfile.mkdtemp(prefix="xlmr-bench-")
    try:
        sources = {"safetensors": os.path.join(work, "safetensors")}
        made = run_worker({"kind": "make_checkpoint", "shape": "base", "architecture": "XLMRobertaForMaskedLM",
                           "dst": sources["safetensors"]})
        if "error" in made:
            return {"error": f"making the checkpoint: {made['error']}"}
        size = made["bytes"]
        for fmt in ("pt", "tf", "flax"):
            sources[fmt] = os.path.join(work, fmt)
            r = run_worker({"kind": "convert", "src": sources["safetensors"], "dst": sources[fmt], "to": fmt})
            if "error" in r:
                return {"error": f"making the {fmt} source: {r['error']}"}
        pairs = []
        for src_fmt, src in sources.items():
            for to in sources:
                if to == src_fmt:
                    continue
                r = run_worker({"kind": "convert", "src": src, "dst": os.path.join(work, "out"), "to": to})
                pairs.append({"from": src_fmt, "to": to, **r,
                              **({"rss_ratio": (r["peak_rss"] - r["rss_before"]) / size} if "peak_rss" in r else {})})
                print(f"convert {src_fmt:11} -> {to:11} {r}", file=sys.stderr, flush=True)
                shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
        loads = []
        for backend in args.backends:
            r = run_worker({"kind": "load", "backend": backend, "path": sources["safetensors"]})
            if "peak_rss" in r:
                r["rss_ratio"] = (r["peak_rss"] - r["rss_after_import"]) / size
                r["rss_ratio_forward"] = (r["peak_rss_forward"] - r["rss_after_import"]) / size
            loads.append({"backend": backend, **r})
            print(f"from_pretrained {backend}: {r}", file=sys.stderr, flush=True)
        return {"checkpoint_bytes": size, "pairs": pairs, "loads": loads}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def section_tokenizer(args) -> dict:
    folder = tempfile.mkdtemp(prefix="xlmr-tok-")
    try:
        from xlmr.common.tokenization import XLMRobertaTokenizer

        XLMRobertaTokenizer(SPM_MODEL).save_pretrained(folder)
        from xlmr.common.tokenization.fast import XLMRobertaTokenizerFast

        XLMRobertaTokenizerFast(SPM_MODEL).save_pretrained(folder)
        return run_worker({"kind": "tokenizer", "folder": folder, "repeats": args.repeats})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ================================================================================================ report
def print_report(report: dict) -> None:
    print(f"\nmachine: {report['machine']}")
    peak = report.get("peak", {}).get("gflops", {})
    if peak:
        print("\nfp32 2048x2048 matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    if report.get("forward"):
        print("\nforward, XLMRobertaModel (median seconds; ratio = ours / HF in the same backend; share = of the "
              "peak matmul rate)")
        print(f"{'shape':5} {'dtype':8} {'bk':4} {'size':7} {'ours s':>8} {'HF s':>8} {'ratio':>6} "
              f"{'tokens/s':>9} {'GFLOP/s':>7} {'share':>6}")
        for r in report["forward"]:
            print(_forward_line(r))
    for r in report.get("mixed", []):
        if "error" in r:
            print(f"\nmixed lengths, {r['backend']}: error: {r['error']}")
            continue
        print(f"\nmixed lengths, {r['backend']}: {r['sequences']} sequences, {r['real_tokens']} real tokens; padded "
              f"batches of 8: {r['padded_tokens_naive']} tokens, {r['seconds_naive']:.2f} s; encode_batched: "
              f"{r['padded_tokens_bucketed']} tokens, {r['seconds_bucketed']:.2f} s "
              f"({r['seconds_naive'] / r['seconds_bucketed']:.2f}x faster); the real tokens at the dense 8x128 rate: "
              f"{r['seconds_real_tokens']:.2f} s (encode_batched costs {r['seconds_bucketed'] / r['seconds_real_tokens']:.2f}x that)")
    conv = report.get("convert")
    if conv and "error" not in conv:
        print(f"\nconvert.py on a base-sized MaskedLM checkpoint ({conv['checkpoint_bytes'] / 1e9:.2f} GB); "
              f"peak RSS = the process's peak while converting or loading, less what it held before (Python, the "
              f"framework's import), as a multiple of the checkpoint size")
        for p in conv["pairs"]:
            if "error" in p:
                print(f"  {p['from']:11} -> {p['to']:11} error: {p['error']}")
            else:
                print(f"  {p['from']:11} -> {p['to']:11} {p['seconds']:6.1f} s  peak RSS {p['rss_ratio']:.2f}x")
        for l in conv["loads"]:
            if "error" in l:
                print(f"  from_pretrained {l['backend']}: error: {l['error']}")
            else:
                print(f"  from_pretrained {l['backend']:4} {l['seconds']:6.1f} s  peak RSS {l['rss_ratio']:.2f}x "
                      f"(above {l['rss_after_import'] / 1e9:.2f} GB after importing the framework); "
                      f"{l['rss_ratio_forward']:.2f}x through a first forward pass")
    elif conv:
        print(f"\nconvert: error: {conv['error']}")
    tok = report.get("tokenizer")
    if tok and "results" in tok:
        print(f"\ntokenizers on {tok['paragraphs']} multilingual paragraphs")
        for name, r in tok["results"].items():
            print(f"  {name:10} {r['seconds']:7.3f} s  {r['paragraphs_per_s']:9.0f} paragraphs/s")
    if report.get("memory"):
        from bench_memory import print_memory
        print_memory(report["memory"])
    if "quant" in report:
        import bench_quant
        bench_quant.print_quant(report["quant"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sections", default=",".join(SECTIONS), type=_subset("--sections", SECTIONS),
                        metavar="LIST", help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--shapes", default=",".join(SHAPES), type=_subset("--shapes", SHAPES), metavar="LIST",
                        help=f"named model shapes for forward/mixed/convert, of {','.join(SHAPES)} (default: all)")
    parser.add_argument("--sizes", default=",".join(SIZES), type=_subset("--sizes", SIZES), metavar="LIST",
                        help=f"batch x sequence sizes for forward, of {','.join(SIZES)} (default: all)")
    parser.add_argument("--dtypes", default=",".join(DTYPES), type=_subset("--dtypes", DTYPES), metavar="LIST",
                        help=f"compute dtypes for forward, of {','.join(DTYPES)} (default: all)")
    parser.add_argument("--backends", default=",".join(BACKENDS), type=_subset("--backends", BACKENDS),
                        metavar="LIST", help=f"backends to measure, of {','.join(BACKENDS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=5, metavar="N",
                        help="timed runs per measurement after warm-up; the median is reported (default: 5)")
    parser.add_argument("--no-hf", dest="hf", action="store_false",
                        help="skip HF transformers' classes (no ours/HF ratios)")
    parser.add_argument("--quick", action="store_true",
                        help="base shape, 8x128, fp32; sections peak,forward,mixed,tokenizer; at most 3 repeats")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task["kind"]](task)))
        return 0
    if args.quick:
        args.shapes, args.sizes, args.dtypes = "base", "8x128", "float32"
        if not any(a.startswith("--sections") for a in (sys.argv[1:] if argv is None else argv)):
            args.sections = "peak,forward,mixed,tokenizer"
        args.repeats = min(args.repeats, 3)
    for name in ("sections", "shapes", "sizes", "dtypes", "backends"):
        value = getattr(args, name)
        setattr(args, name, value if isinstance(value, list) else _subset(f"--{name}", ())(value))

    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"{platform.platform()}, Python {platform.python_version()}"}
    try:
        report["machine"] = _cpu_name() + ", " + report["machine"]
    except OSError:
        pass
    peak = 0.0
    if "peak" in args.sections:
        report["peak"] = section_peak()
        peak = max(report["peak"].get("gflops", {"": 0.0}).values())
    if "forward" in args.sections:
        report["forward"] = section_forward(args, peak)
    if "mixed" in args.sections:
        report["mixed"] = section_mixed(args)
    if "convert" in args.sections:
        report["convert"] = section_convert(args)
    if "tokenizer" in args.sections:
        report["tokenizer"] = section_tokenizer(args)
    if "memory" in args.sections:
        from bench_memory import section_memory
        report["memory"] = section_memory(args.backends)
    if "quant" in args.sections:
        import bench_quant
        report["quant"] = bench_quant.section_quant(args, peak)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def _subset(flag: str, allowed: tuple[str, ...]):
    """An argparse type: a comma-separated subset of ``allowed`` (any names when ``allowed`` is empty)."""
    def parse(text: str) -> list[str]:
        items = [x for x in text.split(",") if x]
        bad = [x for x in items if allowed and x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{flag} takes a comma-separated subset of {','.join(allowed)}; "
                                             f"got {text!r}")
        return items
    return parse


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
