"""``xlmr parity``: check that every installed backend gives the same outputs on a checkpoint, for all seven classes.

    xlmr parity                      # the small checkpoint shipped inside the package
    xlmr parity CKPT_DIR [...] --json

Each class is loaded from the checkpoint in pt, tf and flax (a head the checkpoint lacks is initialised from one
seed, identically in every backend), run on a fixed multilingual batch with labels, and every output (logits,
hidden states, attentions, pooler, loss, cache) is compared pairwise. Exits 1 if any pair differs by more than
the tolerance declared in ``xlmr.common.constants``, 2 on bad arguments or an unreadable checkpoint.

Backends are driven through ``xlmr.backends`` (numpy in, numpy out), which imports a framework only when used.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import argparse
import json
import time
import itertools
import multiprocessing
import sys
import os
import warnings
from typing import Any, Callable

import numpy as np

from xlmr.backends import BACKENDS, EXTRAS, call_model, installed_backends, model_class, to_numpy
from xlmr.common.checkpoint import FORMATS, find_checkpoint, iter_checkpoint, nonfinite
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.constants import tolerance
from xlmr.common.export_spec import class_config
from xlmr.common.hub import DEFAULT_FOLDER, resolve
from xlmr.common.weights import ARCHITECTURES

HELP = "check that every installed backend gives the same outputs on a checkpoint, for all seven classes"
# A fixed multilingual batch: several scripts and lengths, so that padding is exercised.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Le renard brun saute par-dessus le chien paresseux, puis il s'endort.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
]
DEFAULT_CHECKPOINT = DEFAULT_FOLDER
# Outputs of the embedded default checkpoint, computed once (tools/make_reference_outputs.py) and checked against
# all three backends by the test suite: with one backend installed, `xlmr parity` compares it with these.
REFERENCE_FILE = "reference_outputs.npz"
REFERENCE_VOCAB_STRIDE = 16
ISOLATE_BYTES = 256 * 2**20


# ------------------------------------------------------------------------------------------------ inputs
@dataclasses.dataclass
class Batch:
    inputs: dict[str, np.ndarray]
    source: str  # how the ids were made, for the report


def make_batch(checkpoint: str, config: XLMRobertaConfig, seed: int = 0, max_length: int = 64) -> Batch:
    """Tokenise ``SENTENCES`` with the checkpoint's tokenizer, or draw padded random ids when it has none."""
    max_length = min(max_length, config.max_sequence_length)
    tokenizer = _tokenizer(checkpoint)
    if tokenizer is not None:
        enc = tokenizer(SENTENCES, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        if ids.max() < config.vocab_size:
            return Batch({"input_ids": ids, "attention_mask": enc["attention_mask"].astype(np.int64)},
                         f"{len(SENTENCES)} multilingual sentences, tokenised with the checkpoint's tokenizer")
    rng = np.random.default_rng(seed)
    lengths = np.array([max_length, max_length // 2, max_length - 3, 5])
    special = {config.pad_token_id, config.bos_token_id, config.eos_token_id}
    low = max(special | {3}) + 1 if config.vocab_size > 8 else 0
    ids = rng.integers(low, config.vocab_size, (len(lengths), max_length))
    mask = (np.arange(max_length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, config.pad_token_id)
    return Batch({"input_ids": ids.astype(np.int64), "attention_mask": mask},
                 "random ids within the vocabulary, with padding (the checkpoint has no tokenizer files)")


def _tokenizer(checkpoint: str):
    from xlmr.common.tokenization import XLMRobertaTokenizer

    if not os.path.exists(os.path.join(checkpoint, "sentencepiece.bpe.model")):
        return None
    return XLMRobertaTokenizer.from_pretrained(checkpoint)


def inputs_for(architecture: str, batch: Batch, config: XLMRobertaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The batch shaped for a class, with labels so that the loss is compared too."""
    rng = np.random.default_rng(seed)
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    b, s = ids.shape
    if architecture == "XLMRobertaForMultipleChoice":
        pairs = b // 2 * 2
        return {"input_ids": ids[:pairs].reshape(-1, 2, s), "attention_mask": mask[:pairs].reshape(-1, 2, s),
                "labels": rng.integers(0, 2, pairs // 2)}
    out = {"input_ids": ids, "attention_mask": mask}
    if architecture in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM", "XLMRobertaForTokenClassification"):
        high = config.vocab_size if architecture != "XLMRobertaForTokenClassification" else config.num_labels
        labels = rng.integers(0, high, (b, s))
        out["labels"] = np.where(mask == 1, labels, -100)
    elif architecture == "XLMRobertaForSequenceClassification":
        out["labels"] = rng.integers(0, config.num_labels, b)
    elif architecture == "XLMRobertaForQuestionAnswering":
        out["start_positions"] = rng.integers(0, s, b)
        out["end_positions"] = rng.integers(0, s, b)
    return out


# ------------------------------------------------------------------------------------------------ adapters
def _flatten(prefix: str, value: Any, out: dict[str, np.ndarray], to_numpy: Callable) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}{k}", v, out, to_numpy)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out, to_numpy)
    else:
        out[prefix] = np.asarray(to_numpy(value), dtype=np.float32)  # compared in float64


def run_backend(backend: str, architecture: str, checkpoint: str, config: XLMRobertaConfig,
                inputs: dict[str, np.ndarray], seed: int = 0, dtype: str | None = None,
                format: str | None = None) -> dict[str, np.ndarray]:
    """Load ``checkpoint`` (its ``format`` weights, when it holds several) as ``architecture`` in ``backend`` and
    return every output as float32 numpy."""
    cls = model_class(backend, architecture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # new heads are expected here; the report says so
        kwargs = {"config": config, "seed": seed}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if format is not None:
            kwargs["format"] = format
        model = cls.from_pretrained(checkpoint, **kwargs)
    result = call_model(backend, model, inputs, output_hidden_states=True, output_attentions=True, return_dict=True)
    out: dict[str, np.ndarray] = {}
    _flatten("", result, out, lambda t: to_numpy(backend, t))
    return out


# ------------------------------------------------------------------------------------------------ comparison
@dataclasses.dataclass
class Row:
    architecture: str
    pair: str
    max_abs: float
    worst: str       # the output where the difference is largest
    tolerance: float
    outputs: int     # how many output tensors were compared

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: tuple[str, str] = ("first", "second"),
            ) -> tuple[float, str]:
    """(largest absolute difference, the output where it is) between two runs' outputs.

    NaN or inf in an output is no difference to measure: it gives inf and names the output, how many values
    and which run (``names``) holds them, never "differ by nan".
    """
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        return float("inf"), f"outputs differ in names: {only[:4]}"
    worst, name = 0.0, ""
    for key in a:
        if a[key].shape != b[key].shape:
            return float("inf"), f"{key}: shape {a[key].shape} vs {b[key].shape}"
        bad = [(who, found) for who, found in zip(names, (nonfinite(a[key]), nonfinite(b[key]))) if found]
        if bad:
            said = " and ".join(f"{count} in {who}" for who, (count, _) in bad)
            return float("inf"), f"{key} holds non-finite values (NaN/inf: {said}, first at index {bad[0][1][1]})"
        d = float(np.max(np.abs(a[key].astype(np.float64) - b[key]))) if a[key].size else 0.0
        if d > worst:
            worst, name = d, key
    return worst, name


def nonfinite_weights(checkpoint: str, format: str | None = None) -> list[str]:
    """'tensor NAME holds N NaN/inf values (first at index I)' for every such tensor of a checkpoint folder."""
    found = []
    for name, array in iter_checkpoint(checkpoint, format):
        bad = nonfinite(array)
        if bad:
            found.append(f"tensor {name} holds {bad[0]} NaN/inf value(s) (first at index {bad[1]})")
    return found


def _release(backend: str) -> None:
    """Free the model just run before the next one loads (Keras keeps layers alive in its global graph state)."""
    gc.collect()
    if backend == "tf":
        import keras

        keras.backend.clear_session()
    elif backend == "flax":
        import jax

        jax.clear_caches()
    gc.collect()


def _progress(total: int, enabled: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="class", file=sys.stderr, leave=False,
                disable=not (sys.stderr.isatty() if enabled is None else enabled))


def reference_outputs(checkpoint: str) -> dict[str, dict[str, np.ndarray]] | None:
    """The outputs shipped beside a checkpoint (``reference_outputs.npz``: ``CLASS/output`` keys), if any."""
    path = os.path.join(checkpoint, REFERENCE_FILE)
    if not os.path.isfile(path):
        return None
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            arch, _, name = key.partition("/")
            out.setdefault(arch, {})[name] = data[key]
    return out


def reference_subset(outputs: dict[str, np.ndarray], vocab_size: int) -> dict[str, np.ndarray]:
    """The outputs a reference file keeps: everything but the per-layer hidden states and attentions, and every
    16th vocabulary column of the LM logits (all of them would make the file 14 MB, for little more coverage)."""
    return {k: v[..., ::REFERENCE_VOCAB_STRIDE] if v.shape[-1:] == (vocab_size,) else v
            for k, v in outputs.items() if k.split(".")[0] not in ("hidden_states", "attentions", "cross_attentions")}


def _weights_bytes(checkpoint: str, format: str | None = None) -> int:
    return sum(os.path.getsize(f) for f in find_checkpoint(checkpoint, format)[1])


def _run_classes(backend: str, checkpoint: str, jobs: dict[str, tuple[XLMRobertaConfig, dict[str, np.ndarray]]],
                 seed: int, dtype: str | None, format: str | None = None,
                 done: Callable[[], Any] = lambda: None) -> dict[str, Any]:
    """Every class in one backend, releasing each model before the next loads."""
    out = {}
    for arch, (cfg, inputs) in jobs.items():
        out[arch] = run_backend(backend, arch, checkpoint, cfg, inputs, seed, dtype, format)
        _release(backend)
        done()
    return out


def run_backend_released(backend: str, architecture: str, checkpoint: str, config: XLMRobertaConfig,
                          inputs: dict[str, np.ndarray], isolate: bool | None = None) -> dict[str, np.ndarray]:
    """``run_backend`` that leaves no model behind: in a child process for checkpoints over ``ISOLATE_BYTES``
    (a framework keeps freed memory in its own pools), else in this one with the model released after."""
    if isolate is None:
        isolate = _weights_bytes(checkpoint) > ISOLATE_BYTES
    jobs = {architecture: (config, inputs)}
    if isolate:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_run_classes, backend, checkpoint, jobs, 0, None).result()[architecture]
    return _run_classes(backend, checkpoint, jobs, 0, None)[architecture]


def check_checkpoint(checkpoint: str, backends: list[str], architectures=ARCHITECTURES, seed: int = 0,
                     dtype: str = "float32", progress: bool | None = None,
                     reference: dict[str, dict[str, np.ndarray]] | None = None,
                     isolate: bool | None = None, format: str | None = None) -> tuple[Batch, list[Row]]:
    """Run every class in each backend, one backend at a time, and compare each pair of backends.

    With ``reference`` (outputs computed once and shipped, see ``reference_outputs``), each backend is also compared
    with it, so that a single installed backend can be checked. ``isolate`` runs each backend in a child process
    (default: when the weights pass ``ISOLATE_BYTES``), so that one framework's memory is gone before the next
    loads: frameworks keep freed memory in their own pools.
    """
    config = XLMRobertaConfig.from_pretrained(checkpoint)
    bad = nonfinite_weights(checkpoint, format)
    if bad:  # every backend would give NaN: the checkpoint is at fault, not a backend
        raise ValueError(f"{find_checkpoint(checkpoint, format)[1][0]}: {bad[0]}" +
                         (f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else "") +
                         "; outputs computed from it cannot be compared")
    batch = make_batch(checkpoint, config, seed)
    base_sized = config.hidden_size >= 768
    configs = {arch: class_config(arch, config) for arch in architectures}
    jobs = {arch: (cfg, inputs_for(arch, batch, cfg, seed)) for arch, cfg in configs.items()}
    compute = None if dtype == "float32" else dtype
    if isolate is None:  # a child process per backend returns all its memory; worth it only for big checkpoints
        isolate = _weights_bytes(checkpoint, format) > ISOLATE_BYTES
    results: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with _progress(len(backends) * len(architectures), progress) as bar:
        for backend in backends:
            bar.set_description(f"parity {backend}")
            if isolate:
                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                    results[backend] = pool.submit(_run_classes, backend, checkpoint, jobs, seed, compute,
                                                     format).result()
                bar.update(len(architectures))
            else:
                results[backend] = _run_classes(backend, checkpoint, jobs, seed, compute, format, bar.update)
    limit = tolerance(dtype, base_sized)
    rows = []
    for arch in architectures:
        for x, y in itertools.combinations(backends, 2):
            d, worst = compare(results[x][arch], results[y][arch], (x, y))
            rows.append(Row(arch, f"{x}-{y}", d, worst, limit, len(results[x][arch])))
        if reference is not None:
            for x in backends:
                d, worst = compare(reference_subset(results[x][arch], config.vocab_size), reference[arch],
                                   (x, "the reference outputs"))
                rows.append(Row(arch, f"{x}-ref", d, worst, limit, len(reference[arch])))
    return batch, rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", help="checkpoint folders (default: the embedded checkpoint)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of pt,tf,flax")
    parser.add_argument("--classes", default=None, help="comma-separated class names (default: all seven)")
    parser.add_argument("--seed", type=int, default=0, help="seed for new heads, labels and random ids")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="which weights to read when a folder holds several (default: the first of "
                             f"{', '.join(FORMATS)})")


def _second_backend_hint(installed: list[str]) -> str:
    missing = [b for b in BACKENDS if b not in installed]
    return " or ".join(f"pip install 'xlmr[{EXTRAS[b]}]'" for b in missing)


def run(args: argparse.Namespace) -> int:
    parser = args.parser
    wanted = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    installed = installed_backends()
    backends = [b for b in wanted if b in installed]
    if not backends:
        parser.error(f"none of the backends {','.join(wanted)} is installed for {sys.executable}; install one with "
                     f"{_second_backend_hint([])}")
    classes = args.classes.split(",") if args.classes else list(ARCHITECTURES)
    bad = sorted(set(classes) - set(ARCHITECTURES))
    if bad:
        parser.error(f"unknown class(es) {bad}; choose from {', '.join(ARCHITECTURES)}")

    report, failed = [], False
    for name in args.checkpoints or [DEFAULT_CHECKPOINT]:
        checkpoint = resolve(name)
        reference = None
        if len(backends) < 2:
            reference = reference_outputs(checkpoint) if args.seed == 0 else None
            if reference is None:
                raise ValueError(f"parity compares backends, and only {backends[0]} is "
                                 f"{'installed' if len(installed) < 2 else 'selected'}"
                                 + (f"; {name} ships no reference outputs to compare with" if args.seed == 0
                                    else "; reference outputs exist for --seed 0 only")
                                 + (f": add a second backend with {_second_backend_hint(installed)}"
                                    if len(installed) < 2 else ": pass --backends with two of them"))
        fmt, files = find_checkpoint(checkpoint, args.format)
        start = time.perf_counter()
        batch, rows = check_checkpoint(checkpoint, backends, classes, seed=args.seed, reference=reference,
                                       format=args.format)
        failed |= any(not r.passed for r in rows)
        report.append({"checkpoint": name, "folder": checkpoint, "weights": files, "format": fmt,
                       "inputs": batch.source, "shape": list(batch.inputs["input_ids"].shape),
                       "seconds": time.perf_counter() - start, "rows": [dict(vars(r), passed=r.passed) for r in rows]})

    if args.json:
        print(json.dumps({"passed": not failed, "backends": backends, "checkpoints": report}, indent=2))
    else:
        for entry in report:
            print(f"\n{entry['checkpoint']}\n  weights: {', '.join(entry['weights'])} ({entry['format']})"
                  f"\n  inputs: {entry['inputs']}, shape {tuple(entry['shape'])}, {entry['seconds']:.1f} s")
            print(f"  {'class':38} {'pair':9} {'max-abs diff':>13} {'tolerance':>10}  result  worst output")
            for r in entry["rows"]:
                verdict = "pass" if r["passed"] else "FAIL"
                print(f"  {r['architecture']:38} {r['pair']:9} {r['max_abs']:13.3e} {r['tolerance']:10.0e}  "
                      f"{verdict:6}  {r['worst']}")
        against = " and the shipped reference outputs" if len(backends) < 2 else ""
        print(f"\n{'FAILED' if failed else 'all outputs agree'}: backends {', '.join(backends)}{against}")
    return 1 if failed else 0
