"""``xlmr finetune | evaluate | predict``: the functions behind the three task commands, and their shared flags.

``finetune`` trains a checkpoint for one of the six tasks in one backend and publishes a complete folder (model,
tokenizer, ``xlmr_task.json``, ``metrics.json``, ``train_log.jsonl``) in one rename; ``evaluate`` and ``predict``
reload it. Validation metrics are always computed from the predictions ``predict`` writes (the pipelines'
outputs for the labelled tasks, with QA answers picked by run_qa's rule; per-record losses for the language
models), so metrics recomputed from ``predict``'s file equal ``metrics.json``.

Example (defaults for the embedded checkpoint: its 128-token window, windows overlapping by a quarter):
    >>> from xlmr.common.config import XLMRobertaConfig
    >>> s = task_settings("question-answering", XLMRobertaConfig.from_pretrained("xlmr/assets/default"), None)
    >>> s.max_length, s.doc_stride, s.max_answer_length
    (128, 32, 30)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from xlmr.backends import check_backend, import_backend, model_class
from xlmr.common import distributed
from xlmr.common.checkpoint import save_pretrained
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.io import atomic_directory, atomic_write_text
from xlmr.common.weights import parameter_shapes
from xlmr.common.tasks import ARCHITECTURES, TASKS, check_task
from xlmr.common.tasks.batches import lm_targets, steps_per_epoch, training_batches
from xlmr.common.tasks.evaluation import score
from xlmr.common.tasks.features import record_blocks, training_features
from xlmr.common.tasks.inference import postprocess_answers
from xlmr.common.tasks.labels import LabelSpace
from xlmr.common.tasks.records import Dataset, DataError, read_records
from xlmr.common.tasks import schedule
from xlmr.common.tasks.settings import TaskSettings

DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")


# ------------------------------------------------------------------------------------------------ settings
def _tokenizer(model: str):
    from xlmr import XLMRobertaTokenizerFast

    return XLMRobertaTokenizerFast.from_pretrained(model)


def _window(config: XLMRobertaConfig, max_length: int | None) -> int:
    window = min(config.max_sequence_length, 512)
    if max_length is None:
        return window
    if max_length > config.max_sequence_length:
        raise ValueError(f"--max-length {max_length} exceeds the model's window of {config.max_sequence_length} "
                         f"tokens (max_position_embeddings {config.max_position_embeddings})")
    return max_length


def task_settings(task: str, config: XLMRobertaConfig, saved: TaskSettings | None, **flags: Any) -> TaskSettings:
    """The processing settings: flags given win, then those saved by finetune, then the defaults."""
    base = saved.to_dict() if saved is not None and saved.task == task else {"task": task}
    given = {k: v for k, v in flags.items() if v is not None}
    base.update(given)
    base["max_length"] = _window(config, base.get("max_length"))
    if "doc_stride" not in base:
        base["doc_stride"] = base["max_length"] // 4
    return TaskSettings.from_dict(base)


# ------------------------------------------------------------------------------------------------ predictions
def _language_model_predictions(task: str, backend: str, model: Any, tokenizer: Any, dataset: Dataset,
                                settings: TaskSettings) -> list[dict[str, Any]]:
    """Per record: the mean loss over its predicted tokens and their count. A record is scored on its own, in
    consecutive windows; masked-LM masks it with a generator seeded by (seed, record index), so the same file
    always gets the same masks."""
    mlm = _mlm_options(tokenizer, settings)
    pieces, owners = [], []  # (ids, labels) per window, and the record each belongs to
    for index, record in enumerate(dataset.records):
        rng = np.random.default_rng([settings.seed, index])
        for ids in record_blocks(tokenizer, record.fields["text"], settings.max_length):
            batch = lm_targets({"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)}, task,
                               mlm, rng)
            pieces.append((batch["input_ids"][0], batch["labels"][0]))
            owners.append(index)
    totals = np.zeros(len(dataset.records))
    counts = np.zeros(len(dataset.records), np.int64)
    # The backend's length-bucketed batch runner (jitted in flax); a bucket of 2048 tokens holds 64 MB of logits
    # over a 8k vocabulary.
    outputs = import_backend(backend).encode_batched(model, [p[0] for p in pieces], max_tokens=2048)
    for (ids, labels), owner, out in zip(pieces, owners, outputs):
        logits = out["logits"].astype(np.float64)
        if task == "causal-lm":
            logits, labels = logits[:-1], labels[1:]
        keep = labels != -100
        if not keep.any():
            continue
        chosen = logits[keep]
        top = chosen.max(-1, keepdims=True)
        log_z = (top + np.log(np.exp(chosen - top).sum(-1, keepdims=True)))[:, 0]
        totals[owner] += float((log_z - chosen[np.arange(len(chosen)), labels[keep]]).sum())
        counts[owner] += int(keep.sum())
    return [{"loss": float(t / c) if c else 0.0, "num_tokens": int(c)} for t, c in zip(totals, counts)]


def _pipeline_predictions(task: str, backend: str, model: Any, tokenizer: Any, dataset: Dataset,
                          settings: TaskSettings, space: LabelSpace | None) -> list[Any]:
    """The HF-shaped outputs of ``xlmr.pipeline`` for each record."""
    import xlmr

    records = [r.fields for r in dataset.records]
    if task == "text-classification":
        pipe = xlmr.pipeline(task, model=model, backend=backend, tokenizer=tokenizer, max_length=settings.max_length)
        inputs = [{"text": r["text"], "text_pair": r["text_pair"]} if r.get("text_pair") is not None else r["text"]
                  for r in records]
        if space is not None and space.kind == "multi_label_classification":
            return pipe(inputs, top_k=None, function_to_apply="sigmoid")
        if space is not None and space.kind == "regression":
            return pipe(inputs, function_to_apply="none")
        return pipe(inputs)
    if task == "token-classification":
        pipe = xlmr.pipeline(task, model=model, backend=backend, tokenizer=tokenizer, max_length=settings.max_length)
        return pipe([r["tokens"] for r in records], is_split_into_words=True, aggregation_strategy="first",
                    stride=settings.doc_stride)
    if task == "question-answering":
        pipe = xlmr.pipeline(task, model=model, backend=backend, tokenizer=tokenizer, max_length=settings.max_length)
        # windows as the pipeline cuts them; answers picked as HF's run_qa post-processing does (logit sums over
        # the n best starts and ends, spans not widened to words, the lowest null score against the best span)
        pairs = [(r["question"], r["context"]) for r in records]
        windows = pipe.answer_windows(pairs, pipe.settings(doc_stride=settings.doc_stride,
                                                           max_question_len=settings.max_length))
        return [postprocess_answers(group, context, settings.n_best_size, settings.max_answer_length,
                                    settings.has_no_answer, settings.null_score_diff_threshold)
                for group, (_, context) in zip(windows, pairs)]
    pipe = xlmr.pipeline(task, model=model, backend=backend, tokenizer=tokenizer, max_length=settings.max_length)
    return pipe([{"prompt": r["prompt"], "choices": r["choices"]} for r in records])


def predictions(task: str, backend: str, model: Any, tokenizer: Any, dataset: Dataset, settings: TaskSettings,
                space: LabelSpace | None) -> list[Any]:
    """One prediction per record of ``dataset`` (what ``predict`` writes, and what metrics are computed from)."""
    if task in ("masked-lm", "causal-lm"):
        return _language_model_predictions(task, backend, model, tokenizer, dataset, settings)
    return _pipeline_predictions(task, backend, model, tokenizer, dataset, settings, space)


def _mlm_options(tokenizer: Any, settings: TaskSettings) -> dict[str, Any]:
    return {"special_ids": tokenizer.all_special_ids, "vocab_size": len(tokenizer),
            "mask_token_id": tokenizer.mask_token_id, "probability": settings.mlm_probability}


# ------------------------------------------------------------------------------------------------ finetune
def _progress(total: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="finetune", unit="step", file=sys.stderr,
                disable=quiet or not sys.stderr.isatty())


@dataclasses.dataclass
class Prepared:
    """Everything a fine-tuning run needs before a framework is involved: the same for every backend."""

    task: str
    model: str                      # the starting checkpoint folder
    tokenizer: Any
    settings: TaskSettings
    space: LabelSpace | None
    train_set: Dataset
    validation_set: Dataset
    features: list[dict[str, np.ndarray]]
    saved_config: XLMRobertaConfig  # the config written with the result (labels, problem_type, decoder flag)
    overrides: dict[str, Any]       # config changes for training (those, plus dropout 0 with --no-dropout)

    @property
    def architecture(self) -> str:
        return ARCHITECTURES[self.task]


def prepare(task: str, model: str, train: str, validation: str, *, seed: int = 42, no_dropout: bool = False,
            max_length: int | None = None, doc_stride: int | None = None, max_answer_length: int | None = None,
            mlm_probability: float | None = None, label_all_tokens: bool = False, n_best_size: int | None = None,
            null_score_diff_threshold: float | None = None) -> Prepared:
    """Read and check the data, build the label space, settings and training features."""
    check_task(task)
    config = XLMRobertaConfig.from_pretrained(model)
    tokenizer = _tokenizer(model)
    settings = task_settings(task, config, None, max_length=max_length, doc_stride=doc_stride,
                             max_answer_length=max_answer_length, mlm_probability=mlm_probability,
                             label_all_tokens=label_all_tokens, seed=seed, n_best_size=n_best_size,
                             null_score_diff_threshold=null_score_diff_threshold)
    train_set, validation_set = read_records(train, task), read_records(validation, task)
    space = LabelSpace.from_training(train_set)
    if space is not None:
        space.check(validation_set)
        settings.labels = space.to_dict()
    if task == "question-answering":
        settings.has_no_answer = any(not r.fields["answers"]["text"]
                                     for d in (train_set, validation_set) for r in d.records)
    features = training_features(train_set, tokenizer, settings, space)
    if not features:
        raise DataError(f"{train}: no training features after tokenisation")
    overrides: dict[str, Any] = {}
    if space is not None:
        overrides = {"id2label": space.id2label, "label2id": space.label2id, "num_labels": len(space.names),
                     "problem_type": space.problem_type}
    if task == "causal-lm":
        overrides["is_decoder"] = True  # causal attention: without it a token sees the one it must predict
    saved_config = config.replace(**overrides, architectures=[ARCHITECTURES[task]])
    if no_dropout:
        overrides.update({name: 0.0 for name in DROPOUT_FIELDS})
    return Prepared(task, model, tokenizer, settings, space, train_set, validation_set, features, saved_config,
                    overrides)


def load_for_training(prepared: Prepared, backend: str, seed: int, bf16: bool = False) -> Any:
    """The task's class in ``backend`` from the starting checkpoint; a head it lacks (or of another size) is
    initialised from ``seed``, the same in every backend, with HF's warning. ``bf16``: built for bfloat16
    compute on float32 parameters (``xlmr.<backend>.training.precision``)."""
    precision = importlib.import_module(f"xlmr.{backend}.training").precision
    with warnings.catch_warnings(), precision(bf16) as options:
        warnings.simplefilter("always")
        return model_class(backend, prepared.architecture).from_pretrained(
            prepared.model, seed=seed, ignore_mismatched_sizes=True, **prepared.overrides, **options)


def batch_source(prepared: Prepared, training: schedule.TrainingSettings) -> Callable[[int], Any]:
    """``batches(epoch)``: the shared, seeded batches of one epoch."""
    mlm = _mlm_options(prepared.tokenizer, prepared.settings) if prepared.task == "masked-lm" else None
    return lambda epoch: training_batches(prepared.features, prepared.task, training.batch_size, training.seed,
                                         epoch, prepared.tokenizer.pad_token_id, mlm)


def train_in(backend: str, net: Any, prepared: Prepared, training: schedule.TrainingSettings,
             on_step: Callable[[int, float], None], plan: distributed.Plan | None = None,
             engine: Any = None) -> Any:
    """Run ``xlmr.<backend>.training.train`` on the prepared data; returns the trained model (a new one after
    FSDP). ``plan`` and ``engine`` spread it out (``xlmr.common.distributed``, ``xlmr.<backend>.distributed``)."""
    per_epoch = steps_per_epoch(len(prepared.features), training.batch_size)
    module = importlib.import_module(f"xlmr.{backend}.training")
    return module.train(net, batch_source(prepared, training), training, per_epoch, on_step, plan=plan,
                        task=prepared.task, engine=engine) or net


def finetune(task: str, backend: str, model: str, train: str, validation: str, output: str, *, epochs: int = 3,
             batch_size: int = 16, learning_rate: float = 5e-5, weight_decay: float = 0.0,
             warmup_ratio: float = 0.0, max_length: int | None = None, seed: int = 42, no_dropout: bool = False,
             doc_stride: int | None = None, max_answer_length: int | None = None,
             mlm_probability: float | None = None, label_all_tokens: bool = False, logging_steps: int = 10,
             n_best_size: int | None = None, null_score_diff_threshold: float | None = None,
             force: bool = False, quiet: bool = False, on_step: Callable[[int, float], None] | None = None,
             gradient_accumulation_steps: int = 1, save_steps: int = 0, resume_from: str | None = None,
             fsdp: bool = False, mesh: str | None = None, strategy: str | None = None,
             cpu_devices: int | None = None, bf16: bool = False,
             gradient_checkpointing: bool = False) -> dict[str, float] | None:
    """Fine-tune ``model`` (a checkpoint folder) for ``task`` in ``backend``; write ``output``; return the
    validation metrics. ``on_step(step, loss)`` is called after every update (tests use it).

    Distributed runs (``fsdp``, ``mesh``, ``strategy``, ``cpu_devices``: see ``xlmr.common.distributed``):
    ``batch_size`` is the global batch of one update, split over the replicas and ``gradient_accumulation_steps``
    micro-batches; only rank 0 validates and writes, and the other ranks return None."""
    check_task(task)
    check_backend(backend)
    # --- distributed hook: engine and plan, checked before any work -------------------------------------------
    options = distributed.check_options(backend, fsdp=fsdp, mesh=mesh, strategy=strategy, cpu_devices=cpu_devices)
    engine = importlib.import_module(f"xlmr.{backend}.distributed").Engine.from_options(**options)
    plan = distributed.Plan(world=engine.world, rank=engine.rank, accumulation=gradient_accumulation_steps,
                            save_steps=save_steps, output=os.path.abspath(output))
    plan.micro_batch_size(batch_size)
    training = schedule.TrainingSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                         weight_decay=weight_decay, warmup_ratio=warmup_ratio, seed=seed,
                                         no_dropout=no_dropout, logging_steps=logging_steps, bf16=bf16,
                                         gradient_checkpointing=gradient_checkpointing)
    output = os.path.abspath(output)
    existed = os.path.exists(output)
    plan.resume_path = distributed.resolve_resume(resume_from, output)
    if existed and not force and plan.resume_path is None:
        raise FileExistsError(f"--output {output} already exists" + (" and holds no checkpoint to resume"
                              if resume_from == "auto" else "") + "; pass --force to replace it")
    prepared = prepare(task, model, train, validation, seed=seed, no_dropout=no_dropout, max_length=max_length,
                       doc_stride=doc_stride, max_answer_length=max_answer_length,
                       mlm_probability=mlm_probability, label_all_tokens=label_all_tokens, n_best_size=n_best_size,
                       null_score_diff_threshold=null_score_diff_threshold)
    per_epoch = steps_per_epoch(len(prepared.features), training.batch_size)
    total = per_epoch * training.epochs
    shapes = {k: list(v) for k, v in parameter_shapes(prepared.saved_config, prepared.architecture).items()}
    plan.template = distributed.TrainerState(0, 0, 0, task, backend, prepared.architecture, shapes, total)
    if plan.resume_path is not None:
        plan.resume = distributed.TrainerState.load(plan.resume_path)
        plan.resume.check_matches(plan.resume_path, task, backend, prepared.architecture, shapes, total)
    with engine.scope():  # tf: variables of a strategy's model are made inside its scope
        net = load_for_training(prepared, backend, seed, bf16)

    log: list[dict[str, Any]] = plan.resume.extra.get("log", []) if plan.resume is not None else []
    plan.template.extra = {"log": log}  # the log so far travels in each checkpoint
    window: list[float] = []
    bar = _progress(total, quiet)

    def step_done(step: int, loss: float) -> None:
        window.append(loss)
        bar.update(1)
        if step % training.logging_steps == 0 or step == total:
            log.append({"step": step, "epoch": round(step / per_epoch, 4), "loss": float(np.mean(window)),
                        "learning_rate": schedule.learning_rate(step - 1, training, total)})
            bar.set_postfix(loss=f"{log[-1]['loss']:.4f}")
            window.clear()
        if on_step is not None:
            on_step(step, loss)

    started = time.perf_counter()
    bar.update(plan.start_step)
    net = train_in(backend, net, prepared, training, step_done, plan, engine)
    bar.close()
    seconds = time.perf_counter() - started
    if not plan.is_writer:
        engine.close()
        return None

    outputs = predictions(task, backend, net, prepared.tokenizer, prepared.validation_set, prepared.settings,
                          prepared.space)
    metrics = score(task, prepared.validation_set, outputs, prepared.space)
    # Everything is built in a hidden sibling folder and renamed onto --output last: an interrupted run leaves
    # no --output (or the old one, with --force).
    # --output may hold this run's checkpoints, or those it resumed from: they are kept (hard links) below
    with atomic_directory(output, overwrite=force or not existed or plan.resume_path is not None) as folder:
        distributed.keep_checkpoints(output, folder)
        save_pretrained(folder, prepared.saved_config, net.canonical_state(), prepared.architecture)
        prepared.tokenizer.save_pretrained(folder)
        prepared.settings.save(folder)
        atomic_write_text(os.path.join(folder, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
        atomic_write_text(os.path.join(folder, "train_log.jsonl"), "".join(json.dumps(x) + "\n" for x in log))
        atomic_write_text(os.path.join(folder, "train_args.json"), json.dumps(
            {"task": task, "backend": backend, "model": os.path.abspath(model), "train": os.path.abspath(train),
             "validation": os.path.abspath(validation), "train_seconds": round(seconds, 3), "steps": total,
             "world": plan.world, "gradient_accumulation_steps": plan.accumulation,
             **dataclasses.asdict(training)}, indent=2) + "\n")
    engine.close()
    return metrics


# ------------------------------------------------------------------------------------------------ evaluate / predict
def _load(task: str, backend: str, model: str, flags: dict[str, Any], quantize: str | None = None):
    check_task(task)
    check_backend(backend)
    config = XLMRobertaConfig.from_pretrained(model)
    saved = TaskSettings.load(model)
    settings = task_settings(task, config, saved, **flags)
    space = LabelSpace.from_dict(settings.labels) if settings.labels else None
    if space is None and task in ("text-classification", "token-classification"):
        names = [config.id2label[i] for i in sorted(config.id2label)]
        space = (LabelSpace.for_tags([names]) if task == "token-classification" else
                 LabelSpace(config.problem_type or "single_label_classification", names))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # a causal LM is scored with causal attention even from a checkpoint saved as an encoder
        extra = {"is_decoder": True} if task == "causal-lm" else {}
        if quantize is not None:
            extra["quantize"] = quantize
        net = model_class(backend, ARCHITECTURES[task]).from_pretrained(model, seed=settings.seed, **extra)
    return net, _tokenizer(model), settings, space


def evaluate(task: str, backend: str, model: str, data: str, quantize: str | None = None,
             **flags: Any) -> dict[str, float]:
    """The metrics of ``model`` (a finetune output) on ``data``, with finetune's processing settings unless
    ``flags`` (max_length, doc_stride, max_answer_length, n_best_size, null_score_diff_threshold,
    mlm_probability) say otherwise; ``quantize`` ("int8",
    "bf16") loads the model so (``xlmr.common.quantization``)."""
    net, tokenizer, settings, space = _load(task, backend, model, flags, quantize)
    dataset = read_records(data, task)
    if space is not None:
        space.check(dataset)
    return score(task, dataset, predictions(task, backend, net, tokenizer, dataset, settings, space), space)


def predict(task: str, backend: str, model: str, data: str, output: str, **flags: Any) -> int:
    """Write one JSON line per record of ``data`` into ``output`` (atomically); returns the number written."""
    net, tokenizer, settings, space = _load(task, backend, model, flags)
    dataset = read_records(data, task, labels_required=False)
    outputs = predictions(task, backend, net, tokenizer, dataset, settings, space)
    atomic_write_text(output, "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outputs))
    return len(outputs)


# ------------------------------------------------------------------------------------------------ command line
def add_common(parser: argparse.ArgumentParser, data_flags: tuple[str, ...]) -> None:
    parser.add_argument("task", choices=TASKS, help="the task")
    parser.add_argument("--backend", required=True, choices=("pt", "tf", "flax"))
    parser.add_argument("--model", required=True, help="checkpoint folder (with tokenizer files)")
    for flag in data_flags:
        parser.add_argument(f"--{flag}", required=True, metavar="FILE", help="JSON Lines file")


def add_processing(parser: argparse.ArgumentParser, default_note: str) -> None:
    group = parser.add_argument_group(f"processing ({default_note})")
    group.add_argument("--max-length", type=int, help="tokens per window (default: the model's window, <= 512)")
    group.add_argument("--doc-stride", type=int, help="overlap of consecutive windows (default: max-length / 4)")
    group.add_argument("--max-answer-length", type=int, help="longest QA answer in tokens (default: 30)")
    group.add_argument("--n-best-size", type=int, help="QA decoding: start/end candidates per window (default: 20)")
    group.add_argument("--null-score-diff-threshold", type=float,
                       help="QA with unanswerable questions: answer nothing when the null score beats the best span "
                            "by more than this (default: 0.0)")
    group.add_argument("--mlm-probability", type=float, help="masked-LM masking rate (default: 0.15)")


def processing_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_length": args.max_length, "doc_stride": args.doc_stride,
            "max_answer_length": args.max_answer_length, "mlm_probability": args.mlm_probability,
            "n_best_size": args.n_best_size, "null_score_diff_threshold": args.null_score_diff_threshold}
