"""What an exported XLM-R model looks like from outside, the same in every format: task names, input and output
names with their axes, and which checkpoint can serve which task. Framework-free; the three backends' ``export``
modules and ``xlmr export`` read it from here.

Names follow Hugging Face: inputs ``input_ids``, ``attention_mask`` and, when the config has more than one token
type, ``token_type_ids``; outputs as the fields of HF's output classes (``logits``, ``start_logits`` and
``end_logits``, ``last_hidden_state`` and ``pooler_output``). Axes are named (``batch``, ``sequence``,
``choices``) where they vary and numbers where the config fixes them.

Example:
    >>> from xlmr import XLMRobertaConfig
    >>> from xlmr.common.export_spec import export_spec
    >>> spec = export_spec(XLMRobertaConfig(vocab_size=100, hidden_size=32, num_attention_heads=4, num_labels=3),
    ...                    "XLMRobertaForTokenClassification")
    >>> spec.input_names, spec.output_names, spec.outputs[0].axes
    (('input_ids', 'attention_mask'), ('logits',), ('batch', 'sequence', 3))
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from xlmr.common.config import XLMRobertaConfig
from xlmr.common.weights import ARCHITECTURES, is_head_weight, normalise_names, parameter_shapes

FORMATS = ("onnx", "savedmodel", "stablehlo")
DTYPES = ("float32", "float16", "bfloat16")
# The backend that writes each format (torch.onnx, Keras' ExportArchive, jax.export).
SOURCE_BACKEND = {"onnx": "pt", "savedmodel": "tf", "stablehlo": "flax"}
# The module each format's runtime needs, and the pip extra that installs it (with the exporter's own needs).
RUNTIME_MODULE = {"onnx": "onnxruntime", "savedmodel": "tensorflow", "stablehlo": "jax"}
EXTRA = {"onnx": "export", "savedmodel": "tf", "stablehlo": "flax"}
# Integer type of the inputs, by each runtime's convention: ONNX (and torch) index with int64; TF Serving's and
# JAX's defaults are int32 (JAX has no int64 unless x64 is switched on).
INPUT_DTYPE = {"onnx": "int64", "savedmodel": "int32", "stablehlo": "int32"}
# Task names as HF's pipelines and optimum's exporters spell them, and the class behind each.
TASKS = {
    "feature-extraction": "XLMRobertaModel",
    "text-generation": "XLMRobertaForCausalLM",
    "fill-mask": "XLMRobertaForMaskedLM",
    "text-classification": "XLMRobertaForSequenceClassification",
    "multiple-choice": "XLMRobertaForMultipleChoice",
    "token-classification": "XLMRobertaForTokenClassification",
    "question-answering": "XLMRobertaForQuestionAnswering",
}
# The manifest every export folder carries, next to config.json and the tokenizer files.
MANIFEST = "export.json"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output: its axes (a name where the size varies, an int where the config fixes it)."""

    name: str
    axes: tuple[str | int, ...]
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "axes": list(self.axes), "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """The inputs and outputs of one class's export; ``max_length`` bounds the ``sequence`` axis."""

    architecture: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_length: int

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """{tensor: {axis index: axis name}} for every named axis (``torch.onnx.export``'s ``dynamic_axes``)."""
        return {t.name: {i: a for i, a in enumerate(t.axes) if isinstance(a, str)} for t in self.inputs + self.outputs}

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs], "max_length": self.max_length}


def input_names(config: XLMRobertaConfig) -> tuple[str, ...]:
    """``input_ids``, ``attention_mask``, and ``token_type_ids`` when the config has more than one token type."""
    return ("input_ids", "attention_mask") + (("token_type_ids",) if config.type_vocab_size > 1 else ())


def export_spec(config: XLMRobertaConfig, architecture: str, input_dtype: str = "int64",
                output_dtype: str = "float32") -> ExportSpec:
    """The inputs and outputs of ``architecture`` under ``config`` (see the module docstring)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown class {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    token_axes: tuple[str, ...] = ("batch", "choices", "sequence") \
        if architecture == "XLMRobertaForMultipleChoice" else ("batch", "sequence")
    inputs = tuple(TensorSpec(name, token_axes, input_dtype) for name in input_names(config))
    h, v, n = config.hidden_size, config.vocab_size, config.num_labels
    outputs = {
        "XLMRobertaModel": [("last_hidden_state", ("batch", "sequence", h)), ("pooler_output", ("batch", h))],
        "XLMRobertaForCausalLM": [("logits", ("batch", "sequence", v))],
        "XLMRobertaForMaskedLM": [("logits", ("batch", "sequence", v))],
        "XLMRobertaForSequenceClassification": [("logits", ("batch", n))],
        "XLMRobertaForMultipleChoice": [("logits", ("batch", "choices"))],
        "XLMRobertaForTokenClassification": [("logits", ("batch", "sequence", n))],
        "XLMRobertaForQuestionAnswering": [("start_logits", ("batch", "sequence")),
                                           ("end_logits", ("batch", "sequence"))],
    }[architecture]
    return ExportSpec(architecture, inputs, tuple(TensorSpec(name, axes, output_dtype) for name, axes in outputs),
                      config.max_sequence_length)


def resolve_task(task: str) -> str:
    """A task name (``fill-mask``) or a class name (``XLMRobertaForMaskedLM``) -> the class name."""
    if task in TASKS:
        return TASKS[task]
    if task in ARCHITECTURES:
        return task
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)} (or a class name: "
                     f"{', '.join(ARCHITECTURES)})")


def task_of(architecture: str) -> str:
    """The task name of a class: ``XLMRobertaForMaskedLM`` -> ``fill-mask``."""
    return next(task for task, arch in TASKS.items() if arch == architecture)


def class_config(architecture: str, config: XLMRobertaConfig) -> XLMRobertaConfig:
    """The config a class runs under: question answering has two labels (start and end), the causal LM runs as a
    decoder (as HF advises)."""
    if architecture == "XLMRobertaForQuestionAnswering" and config.num_labels != 2:
        return config.replace(num_labels=2)
    if architecture == "XLMRobertaForCausalLM" and not config.is_decoder:
        return config.replace(is_decoder=True)
    return config


def missing_head_weights(names: Iterable[str], config: XLMRobertaConfig, architecture: str) -> list[str]:
    """The head (and pooler) weights ``architecture`` needs that a checkpoint with tensors ``names`` lacks: those
    ``from_pretrained`` would initialise at random. An export of such a head would serve random numbers."""
    present = normalise_names({name: None for name in names}, architecture)
    shapes = parameter_shapes(class_config(architecture, config), architecture)
    if config.tie_word_embeddings:
        present.setdefault("lm_head.decoder.weight", None)  # tied: the word embeddings stand for it
    return [n for n in shapes if n not in present and is_head_weight(n, architecture)]


def servable_tasks(names: Iterable[str], config: XLMRobertaConfig) -> list[str]:
    """The tasks whose every weight a checkpoint with tensors ``names`` holds."""
    names = list(names)
    return [task for task, arch in TASKS.items() if not missing_head_weights(names, config, arch)]
