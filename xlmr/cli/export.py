"""``xlmr export``: write a checkpoint as ONNX, a SavedModel or StableHLO for serving, and verify it in its runtime.

    xlmr export CKPT OUT --format onnx [--task fill-mask] [--opset 17] [--dtype float16] [--verify]
    xlmr export CKPT OUT --format onnx --quantize int8 --verify   # ONNX Runtime dynamic int8 (see quantize_onnx)
    xlmr export CKPT OUT --format savedmodel --verify         # TF Serving, tf.saved_model.load
    xlmr export CKPT OUT --format stablehlo --verify          # jax.export; OUT/run_stablehlo.py needs only JAX

CKPT is a checkpoint folder in any of the four formats. The class comes from --task (a task name such as
fill-mask, or a class name), else from the config's ``architectures``; a task whose head the checkpoint lacks is
refused rather than exported with random weights. Each format is written by its backend (onnx from pt, savedmodel
from tf, stablehlo from flax). OUT gets the artifact, config.json, the tokenizer files and export.json (inputs and
outputs with their axes); it appears whole or not at all, and an existing OUT is replaced only with --force.

--verify runs the export in its own runtime (onnxruntime, ``tf.saved_model.load``, the deserialized jax export)
on a fixed multilingual batch with padding, at two sequence lengths and batch sizes, and compares every output
with the xlmr model at the tolerance of ``xlmr.common.constants``; on a difference nothing is written and the exit
status is 1. With --quantize int8 the ONNX graph is written in float32, then its encoder MatMuls are quantized
(``quantize_onnx``), and --verify compares the int8 graph with the float32 model at ``INT8_VERIFY_RELATIVE`` of
the largest output and requires top-1 agreement of at least ``INT8_MIN_TOP1`` on every logits output. Errors are
one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np

from xlmr.backends import call_model, check_backend, model_class, to_numpy
from xlmr.cli.convert import VERIFY_RELATIVE
from xlmr.cli.parity import Batch, inputs_for, make_batch
from xlmr.common.checkpoint import read_checkpoint
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import tolerance
from xlmr.common.convert import TOKENIZER_FILES
from xlmr.common.export_spec import (DTYPES, EXTRA, FORMATS, INPUT_DTYPE, MANIFEST, RUNTIME_MODULE, SOURCE_BACKEND,
                                     class_config, export_spec, missing_head_weights, resolve_task, servable_tasks,
                                     task_of)
from xlmr.common.hub import resolve
from xlmr.common.io import atomic_directory
from xlmr.common.weights import infer_architecture

HELP = "export a checkpoint to ONNX, SavedModel or StableHLO and verify it in its runtime"
# What the exporter itself imports, beyond the backend's framework.
EXPORTER_MODULES = {"onnx": ("onnx",), "savedmodel": (), "stablehlo": ()}
# --quantize: the modes, and the format each one is written for.
QUANTIZE = {"int8": "onnx"}
# --verify of an int8 graph against the float32 model. Dynamic int8 rounds each activation row and weight column
# to 1/127 of its largest value, so the error scales with the outputs: the bound is relative to the largest output,
# as for float16/bfloat16. Measured: 0.01-0.1% of the largest output on random tiny models of all seven classes,
# 0.5% on the default checkpoint's MLM logits, about 2% on a random base-shaped encoder (12 layers add up).
# Top-1 agreement is counted on the ``*logits`` outputs over the positions the mask keeps; near-ties may flip, so
# it is a rate (100% measured on the verify batches of all of the above).
INT8_VERIFY_RELATIVE = 0.05
INT8_MIN_TOP1 = 0.9


class VerifyError(RuntimeError):
    """The export's outputs differ from the model's; the message names the output, the batch and the difference."""


# ------------------------------------------------------------------------------------------------ checks
def _need(module: str, why: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{why} needs {module}, which is not installed; install it with: pip install 'xlmr[{extra}]'")


def check_format(format: str, backend: str | None, verify: bool, quantize: str | None = None) -> str:
    """The backend that writes ``format``; raises one-line errors for an unknown format, a backend that cannot write
    it, a --quantize mode the format has not, and a missing framework, exporter or runtime (naming the pip extra)."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise ValueError(f"unknown --quantize {quantize!r}; choose from {', '.join(QUANTIZE)}")
        if QUANTIZE[quantize] != format:
            raise ValueError(f"--quantize {quantize} is for --format {QUANTIZE[quantize]} (ONNX Runtime's dynamic "
                             f"quantization); format {format} has no quantized export")
    source = SOURCE_BACKEND[format]
    if backend is not None and backend != source:
        raise ValueError(f"format {format} is written from the {source} backend; --backend {backend} cannot write "
                         f"it (leave --backend out: any checkpoint format loads into {source})")
    try:
        check_backend(source)
    except ImportError as e:
        raise ImportError(f"format {format}: {e}") from None
    for module in EXPORTER_MODULES[format]:
        _need(module, f"format {format}", EXTRA[format])
    if verify:
        _need(RUNTIME_MODULE[format], f"--verify of format {format}", EXTRA[format])
    if quantize is not None:
        _need("onnxruntime", f"--quantize {quantize}", EXTRA[format])
    return source


def choose_architecture(checkpoint: str, config: XLMRobertaConfig, task: str | None) -> str:
    """The class to export: --task, else the checkpoint's own; refused when the checkpoint lacks its head."""
    names = list(read_checkpoint(checkpoint).keys())
    architecture = resolve_task(task) if task else infer_architecture(names, config)
    missing = missing_head_weights(names, config, architecture)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        can = servable_tasks(names, config)
        raise ValueError(f"checkpoint {checkpoint} cannot serve {task_of(architecture)} ({architecture}): it has no "
                         f"{shown}, which would be random; it can serve: {', '.join(can) or 'nothing'}")
    return architecture


# ------------------------------------------------------------------------------------------------ loading
def load_model(backend: str, architecture: str, checkpoint: str, config: XLMRobertaConfig, dtype: str) -> Any:
    """The xlmr model that is exported (and that --verify compares with), in ``dtype``."""
    cls = model_class(backend, architecture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # choose_architecture has refused missing heads already
        if dtype == "float32":
            return cls.from_pretrained(checkpoint, config=config)
        if backend == "pt":
            return cls.from_pretrained(checkpoint, config=config, dtype=dtype)
        if backend == "flax":
            return cls.from_pretrained(checkpoint, config=config, dtype=dtype, param_dtype=dtype)
        import keras  # Keras builds layers under the global dtype policy: compute in dtype, variables in float32

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(f"mixed_{dtype}")
        try:
            return cls.from_pretrained(checkpoint, config=config)
        finally:
            keras.config.set_dtype_policy(previous)


# ------------------------------------------------------------------------------------------------ runtimes
def runtime(format: str, folder: str, spec: Any) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Load the export in ``folder`` with its own runtime; returns inputs -> {output name: float32 array}.

    Raises RuntimeError (one line) when the runtime cannot run it, e.g. no CPU kernel for the dtype."""
    names = spec.input_names
    if format == "onnx":
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"),
                                                   providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's errors are its own classes, with the failing node in the message
            raise RuntimeError(f"onnxruntime {onnxruntime.__version__} (CPU) cannot load it: {_first_line(e)}") \
                from None
        return lambda inputs: dict(zip(spec.output_names, (np.asarray(a, np.float32) for a in session.run(
            list(spec.output_names), {n: inputs[n].astype(np.int64) for n in names}))))
    if format == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(folder).signatures["serving_default"]
        return lambda inputs: {k: tf.cast(v, tf.float32).numpy() for k, v in serve(
            **{n: tf.constant(inputs[n], tf.int32) for n in names}).items()}
    loader = importlib.util.spec_from_file_location("run_stablehlo", os.path.join(folder, "run_stablehlo.py"))
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)  # the standalone loader shipped in the folder: JAX and numpy only
    run = module.load(folder)
    return lambda inputs: {k: np.asarray(v, np.float32) for k, v in run(**{n: inputs[n] for n in names}).items()}


# ------------------------------------------------------------------------------------------------ int8
def int8_nodes(graph: Any) -> list[str]:
    """The MatMul nodes that ``quantize_onnx`` turns to int8: the encoder layers' Linear layers (a MatMul whose
    second input is a weight). The embeddings (Gather), the attention's activation x activation MatMuls, the
    pooler and every head, the LM head's decoder included, stay float32, as the issue asks unless measured
    otherwise (they are a few percent of the encoder's multiply-adds, and the decoder's 250k-row output is
    where int8 noise would flip the most predictions)."""
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node
            if n.op_type == "MatMul" and "/encoder/layer." in n.name and n.input[1] in weights]


def quantize_onnx(folder: str, files: list[str]) -> list[str]:
    """Replace the float32 ``model.onnx`` in ``folder`` with ONNX Runtime's dynamic int8 quantization of its
    encoder MatMuls (``int8_nodes``); returns the files now holding the model.

    Weights are int8 per output channel (symmetric, full range) and activations are quantized per tensor at run
    time to uint8 (DynamicQuantizeLinear -> MatMulInteger): u8 x s8 is the pair AVX512-VNNI's VPDPBUSD multiplies.
    Weights as uint8 (u8 x u8) ran at 0.90 of the float32 time at 8x128 on the base shape here, int8 at 0.52, with
    the same error (docs/sections/quant_bench.md). Raises RuntimeError (one line) when ONNX Runtime fails.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = os.path.join(folder, files[0])
    nodes = int8_nodes(onnx.load(source, load_external_data=False).graph)
    if not nodes:
        raise RuntimeError(f"--quantize int8: {source} has no encoder MatMul with a weight to quantize")
    scratch = tempfile.mkdtemp(prefix=".int8.", dir=folder)
    try:
        # The quantizer logs a suggestion to pre-process the model (shape inference) on every call.
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            quantize_dynamic(source, os.path.join(scratch, files[0]), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=False, op_types_to_quantize=["MatMul"],
                             nodes_to_quantize=nodes, use_external_data_format=len(files) > 1,
                             extra_options={"MatMulConstBOnly": True})
        except Exception as e:  # onnxruntime.quantization raises plain Exceptions naming the node
            raise RuntimeError(f"--quantize int8: onnxruntime {_ort_version()} could not quantize {source}: "
                               f"{_first_line(e)}") from None
        finally:
            logging.getLogger().setLevel(quiet)
        for name in files:
            os.remove(os.path.join(folder, name))
        written = sorted(os.listdir(scratch), key=lambda n: (n != files[0], n))
        for name in written:
            os.replace(os.path.join(scratch, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def top1_agreement(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], mask: np.ndarray) -> tuple[int, int]:
    """(agreeing, counted) arg-max positions over the last axis of every ``*logits`` output; token-level outputs
    count only the positions the attention mask keeps."""
    agree = total = 0
    for name, want in expected.items():
        if not name.endswith("logits") or name not in got or want.shape[-1] < 2:
            continue
        same = want.argmax(-1) == got[name].argmax(-1)
        if want.ndim >= 3 and same.shape == mask.shape:
            same = same[mask.astype(bool)]
        agree, total = agree + int(same.sum()), total + int(same.size)
    return agree, total


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) < 400 else text[:400] + "..."


# ------------------------------------------------------------------------------------------------ verify
def verify_batches(checkpoint: str, config: XLMRobertaConfig, architecture: str, spec: Any) -> list[dict]:
    """Two padded batches of the fixed multilingual sentences, of different sequence lengths and batch sizes."""
    full = make_batch(checkpoint, config)
    ids, mask = full.inputs["input_ids"], full.inputs["attention_mask"]
    lengths = mask.sum(1)
    short = np.argsort(lengths, kind="stable")[: max(4, len(lengths) // 2)]  # the shorter half, padded to its own
    width = int(lengths[short].max())                                      # longest: another sequence length
    if width == ids.shape[1]:
        width = max(2, width - 1)
    batches = [full, Batch({"input_ids": ids[short, :width], "attention_mask": mask[short, :width]}, full.source)]
    rng = np.random.default_rng(0)
    out = []
    for batch in batches:
        inputs = {k: v for k, v in inputs_for(architecture, batch, config).items() if k in spec.input_names}
        if "token_type_ids" in spec.input_names:
            kinds = rng.integers(0, config.type_vocab_size, inputs["input_ids"].shape)
            inputs["token_type_ids"] = np.where(inputs["attention_mask"] == 1, kinds, 0)
        out.append(inputs)
    return out


def reference(backend: str, model: Any, inputs: dict[str, np.ndarray], spec: Any) -> dict[str, np.ndarray]:
    flags = {"use_cache": False} if spec.architecture == "XLMRobertaForCausalLM" else {}
    if backend == "flax":  # jitted: eager JAX compiles every op on first use, much slower for a one-off batch
        from xlmr.flax import checked_call

        out = checked_call(model, **inputs, return_dict=True, **flags)
    else:
        out = call_model(backend, model, inputs, return_dict=True, **flags)
    return {name: to_numpy(backend, out[name], np.float32) for name in spec.output_names}


def verify(format: str, folder: str, backend: str, model: Any, spec: Any, batches: list[dict],
           dtype: str = "float32", run: Callable | None = None, quantize: str | None = None) -> dict[str, Any]:
    """Run the export in ``folder`` (or ``run``, its loaded runtime) on ``batches`` and compare with ``model``;
    raises VerifyError on a difference. With ``quantize="int8"`` the bound is ``INT8_VERIFY_RELATIVE`` of the
    largest output and the logits' top-1 agreement must reach ``INT8_MIN_TOP1``."""
    run = run or runtime(format, folder, spec)
    base_sized = model.config.hidden_size >= 768
    worst, where, limit, rule = 0.0, "", tolerance("float32", base_sized), f"{tolerance('float32', base_sized):g}"
    relative = INT8_VERIFY_RELATIVE if quantize == "int8" else VERIFY_RELATIVE.get(dtype)
    shapes, agree, counted = [], 0, 0
    for inputs in batches:
        expected, got = reference(backend, model, inputs, spec), run(inputs)
        shapes.append(list(inputs["input_ids"].shape))
        if relative is not None:
            # Half precision and int8, relative to the outputs' size as convert --verify does: an absolute bound
            # (5e-2) would pass any output of a freshly trained classifier, whose logits are a few hundredths.
            scale = max(float(np.max(np.abs(v))) for v in expected.values())
            floor = tolerance("float32", base_sized)
            limit = max(floor, relative * scale)
            rule = f"max({floor:g}, {relative} x largest output {scale:.3g})"
        if quantize is not None:
            a, c = top1_agreement(expected, got, inputs["attention_mask"])
            agree, counted = agree + a, counted + c
        for name in spec.output_names:
            if name not in got:
                raise VerifyError(f"--verify failed: the {format} export has no output {name!r} (it has "
                                  f"{sorted(got)})")
            if got[name].shape != expected[name].shape:
                raise VerifyError(f"--verify failed: {name} has shape {got[name].shape} in the {format} export, "
                                  f"{expected[name].shape} in the model, for inputs of shape {shapes[-1]}")
            diff = float(np.max(np.abs(got[name] - expected[name]))) if expected[name].size else 0.0
            if not diff <= worst:
                worst, where = diff, f"{name} at inputs of shape {tuple(shapes[-1])}"
    result = {"max_abs": worst, "worst_output": where, "tolerance": limit, "rule": rule, "shapes": shapes}
    label = f"{format} {quantize} export" if quantize else f"{format} export"
    if not worst <= limit:
        raise VerifyError(f"--verify failed: the {label} and the {backend} model differ by {worst:.3e} in "
                          f"{where}, over the tolerance {rule}")
    if counted:
        result["top1"] = agree / counted
        result["top1_counted"] = counted
        if result["top1"] < INT8_MIN_TOP1:
            raise VerifyError(f"--verify failed: the {label} agrees with the float32 {backend} model on the top-1 "
                              f"label at {agree} of {counted} positions ({agree / counted:.1%}), under the "
                              f"required {INT8_MIN_TOP1:.0%}")
    return result


# ------------------------------------------------------------------------------------------------ export
def export_checkpoint(checkpoint: str, out: str, format: str, *, task: str | None = None,
                      backend: str | None = None, opset: int | None = None, dtype: str = "float32",
                      verify_export: bool = False, force: bool = False,
                      quantize: str | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` as ``format`` (see the module docstring); returns a summary.

    Raises ValueError / ImportError / FileExistsError / RuntimeError with one-line messages, and VerifyError when
    ``verify_export`` finds a difference (then ``out`` is not written).
    """
    start = time.perf_counter()
    backend = check_format(format, backend, verify_export, quantize)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if quantize is not None and dtype != "float32":
        raise ValueError(f"--quantize {quantize} quantizes the float32 graph; --dtype {dtype} cannot be combined "
                         f"with it (leave --dtype out)")
    if opset is not None and format != "onnx":
        raise ValueError(f"--opset is an ONNX setting; format {format} has none")
    checkpoint = resolve(checkpoint)  # a folder, "xlmr-default" or a Hub id
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"checkpoint folder {checkpoint} does not exist")
    if os.path.exists(out) and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    real_out, real_checkpoint = os.path.realpath(out), os.path.realpath(checkpoint)
    if os.path.commonpath([real_out, real_checkpoint]) == real_out:  # replacing OUT would delete the source
        raise ValueError(f"OUT {out} is or contains the checkpoint folder {checkpoint}; choose another folder")
    config = XLMRobertaConfig.from_pretrained(checkpoint)
    architecture = choose_architecture(checkpoint, config, task)
    config = class_config(architecture, config)
    model = load_model(backend, architecture, checkpoint, config, dtype)
    spec = export_spec(config, architecture, INPUT_DTYPE[format], dtype)
    writer = importlib.import_module(f"xlmr.{backend}.export")
    summary: dict[str, Any] = {"checkpoint": checkpoint, "out": out, "format": format, "backend": backend,
                               "task": task_of(architecture), "architecture": architecture, "dtype": dtype,
                               "quantize": quantize}
    with atomic_directory(out, overwrite=force) as tmp:
        files = writer.export(model, tmp, opset=opset)
        if quantize is not None:
            files = quantize_onnx(tmp, files)
        config.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(checkpoint, name)):
                shutil.copyfile(os.path.join(checkpoint, name), os.path.join(tmp, name))
        manifest = {"format": format, "task": task_of(architecture), **spec.to_dict(), "dtype": dtype,
                    **({"quantize": quantize} if quantize else {}),
                    "pad_token_id": config.pad_token_id, "source_backend": backend, "files": files}
        if format == "onnx":
            import onnx

            manifest["opset"] = next(o.version for o in onnx.load(os.path.join(tmp, files[0]),
                                                                  load_external_data=False).opset_import
                                     if o.domain in ("", "ai.onnx"))
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        run = None
        if dtype != "float32" and importlib.util.find_spec(RUNTIME_MODULE[format]) is not None:
            try:  # refuse a dtype the runtime has no CPU kernels for, before publishing
                run = runtime(format, tmp, spec)
            except RuntimeError as e:
                raise RuntimeError(f"--dtype {dtype}: the {format} runtime on this CPU has no kernels for it ({e}); "
                                   f"export float32, or run the export where {dtype} kernels exist") from None
        if verify_export:
            summary["verify"] = verify(format, tmp, backend, model, spec,
                                       verify_batches(checkpoint, config, architecture, spec), dtype, run,
                                       quantize)
    summary.update(files=sorted(os.listdir(out)), opset=manifest.get("opset"),
                   seconds=round(time.perf_counter() - start, 3),
                   bytes=sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(out) for f in names))
    return summary


# ------------------------------------------------------------------------------------------------ command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder (any of the four weight formats)")
    parser.add_argument("out", help="output folder (must not exist unless --force)")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--task", default=None, help="task (fill-mask, text-classification, ...) or class name; "
                                                     "default: the checkpoint's own")
    parser.add_argument("--backend", default=None, help="source backend (default and only writer: onnx from pt, "
                                                        "savedmodel from tf, stablehlo from flax)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPES)}")
    parser.add_argument("--quantize", default=None, help="int8: ONNX Runtime dynamic int8 of the encoder's "
                                                         "MatMuls (format onnx only)")
    parser.add_argument("--verify", action="store_true", help="run the export in its runtime and compare")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        summary = export_checkpoint(args.checkpoint, args.out, args.format, task=args.task, backend=args.backend,
                                    opset=args.opset, dtype=args.dtype, verify_export=args.verify, force=args.force,
                                    quantize=args.quantize)
    except VerifyError as e:
        print(f"{args.prog}: {e}; {args.out} was not written", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    kind = f"{summary['dtype']}, quantized {summary['quantize']}" if summary["quantize"] else summary["dtype"]
    print(f"{summary['checkpoint']} ({summary['architecture']}, {summary['backend']}, {kind}) -> "
          f"{summary['out']}: {', '.join(summary['files'])} ({summary['bytes'] / 2**20:.1f} MiB) in "
          f"{summary['seconds']:.2f} s")
    if "verify" in summary:
        v = summary["verify"]
        print(f"verified in the {summary['format']} runtime at input shapes {v['shapes']}: max-abs difference "
              f"{v['max_abs']:.3e} (tolerance {v['rule']})"
              + (f", top-1 agreement {v['top1']:.1%} of {v['top1_counted']}" if "top1" in v else ""))
    return 0
