"""The weight-name table: canonical (Hugging Face PyTorch) names to every other naming scheme, as data.

Canonical names are those of HF's PyTorch classes: ``roberta.encoder.layer.0.attention.self.query.weight`` in a
head model, ``encoder.layer.0...`` in the bare ``XLMRobertaModel``. Every loader, saver, backend and
``tools/convert.py`` goes through this module; no other file spells a checkpoint name.

Schemes:
  ``pt``       xlmr.pt parameters (identical to HF PyTorch).
  ``tf``       xlmr.tf variables: the module path of PyTorch, Keras leaf names, kernels transposed.
  ``flax``     xlmr.flax NNX parameters: the module path of PyTorch, NNX leaf names, kernels transposed.
  ``hf_tf``    HF's TF classes (``tf_model.h5``), without the leading model-name scope.
  ``hf_flax``  HF's Flax classes (``flax_model.msgpack``), as a dotted path into the nested dict.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import numpy as np

from xlmr.common.config import XLMRobertaConfig

# Kinds of parameter; each scheme stores a kind under its own leaf name and layout.
LINEAR_W, LINEAR_B, EMBEDDING, NORM_W, NORM_B, VECTOR = (
    "linear_weight", "linear_bias", "embedding", "norm_weight", "norm_bias", "vector")

# The table. One row per parameter family: a pattern over canonical names (the optional ``roberta.`` prefix
# is stripped before matching) and its kind.
_L = r"encoder\.layer\.\d+\."
_ATTN = r"(?:attention|crossattention)\."
TABLE: list[tuple[str, str]] = [
    (r"embeddings\.(?:word|position|token_type)_embeddings\.weight", EMBEDDING),
    (r"embeddings\.LayerNorm\.weight", NORM_W),
    (r"embeddings\.LayerNorm\.bias", NORM_B),
    (_L + _ATTN + r"self\.(?:query|key|value)\.weight", LINEAR_W),
    (_L + _ATTN + r"self\.(?:query|key|value)\.bias", LINEAR_B),
    (_L + _ATTN + r"self\.distance_embedding\.weight", EMBEDDING),
    (_L + _ATTN + r"output\.dense\.weight", LINEAR_W),
    (_L + _ATTN + r"output\.dense\.bias", LINEAR_B),
    (_L + _ATTN + r"output\.LayerNorm\.weight", NORM_W),
    (_L + _ATTN + r"output\.LayerNorm\.bias", NORM_B),
    (_L + r"(?:intermediate|output)\.dense\.weight", LINEAR_W),
    (_L + r"(?:intermediate|output)\.dense\.bias", LINEAR_B),
    (_L + r"output\.LayerNorm\.weight", NORM_W),
    (_L + r"output\.LayerNorm\.bias", NORM_B),
    (r"pooler\.dense\.weight", LINEAR_W),
    (r"pooler\.dense\.bias", LINEAR_B),
    (r"lm_head\.(?:dense|decoder)\.weight", LINEAR_W),
    (r"lm_head\.dense\.bias", LINEAR_B),
    (r"lm_head\.layer_norm\.weight", NORM_W),
    (r"lm_head\.layer_norm\.bias", NORM_B),
    (r"lm_head\.bias", VECTOR),
    (r"classifier\.(?:dense|out_proj)\.weight", LINEAR_W),
    (r"classifier\.(?:dense|out_proj)\.bias", LINEAR_B),
    (r"classifier\.weight", LINEAR_W),
    (r"classifier\.bias", LINEAR_B),
    (r"qa_outputs\.weight", LINEAR_W),
    (r"qa_outputs\.bias", LINEAR_B),
]
_COMPILED = [(re.compile(p + r"\Z"), kind) for p, kind in TABLE]

# Leaf name of each kind in each scheme, and whether the array is transposed from PyTorch's (out, in) layout.
LEAVES: dict[str, dict[str, str]] = {
    "pt":      {LINEAR_W: "weight", LINEAR_B: "bias", EMBEDDING: "weight", NORM_W: "weight", NORM_B: "bias"},
    "tf":      {LINEAR_W: "kernel", LINEAR_B: "bias", EMBEDDING: "embeddings", NORM_W: "gamma", NORM_B: "beta"},
    "flax":    {LINEAR_W: "kernel", LINEAR_B: "bias", EMBEDDING: "embedding", NORM_W: "scale", NORM_B: "bias"},
    "hf_tf":   {LINEAR_W: "kernel", LINEAR_B: "bias", EMBEDDING: "embeddings", NORM_W: "gamma", NORM_B: "beta"},
    "hf_flax": {LINEAR_W: "kernel", LINEAR_B: "bias", EMBEDDING: "embedding", NORM_W: "scale", NORM_B: "bias"},
}
TRANSPOSED = {LINEAR_W}
SCHEMES = tuple(LEAVES)
# HF's TF embedding layer names its word-embedding matrix "weight", unlike every other embedding.
_HF_TF_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
_ROBERTA = "roberta."
# Buffers that old HF checkpoints carry and no class needs, and HF's second name for the LM head's bias.
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
LM_BIAS_ALIAS = "lm_head.decoder.bias"
_BUFFER = re.compile(r"(?:roberta\.)?(?:" + "|".join(re.escape(b) for b in BUFFERS) + r")")


def is_buffer(name: str) -> bool:
    """True for the position/token-type id buffers old HF checkpoints carry (with or without ``roberta.``)."""
    return _BUFFER.fullmatch(name) is not None


class UnknownWeightError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0])


def kind_of(name: str) -> str:
    """The kind of a canonical parameter name; UnknownWeightError names it when no row of the table matches."""
    body = name[len(_ROBERTA):] if name.startswith(_ROBERTA) else name
    for pattern, kind in _COMPILED:
        if pattern.match(body):
            return kind
    raise UnknownWeightError(f"tensor {name!r} is not an XLM-R weight (no row of xlmr.common.weights.TABLE matches)")


def to_scheme_name(name: str, scheme: str) -> str:
    """Canonical name -> the scheme's name (dotted; ``hf_tf`` uses ``/`` and ``layer_._N`` like HF's TF)."""
    kind = kind_of(name)
    path, leaf = name.rsplit(".", 1)
    if kind != VECTOR:
        leaf = LEAVES[scheme][kind]
    if scheme == "hf_tf":
        if name.endswith(_HF_TF_WORD_EMBEDDINGS):
            leaf = "weight"
        return re.sub(r"/layer/(\d+)/", r"/layer_._\1/", f"{path}.{leaf}".replace(".", "/"))
    return f"{path}.{leaf}"


def from_scheme_name(name: str, scheme: str) -> str:
    """The scheme's name -> canonical name; the inverse of ``to_scheme_name``."""
    dotted = re.sub(r"layer_\._(\d+)", r"layer/\1", name).replace("/", ".") if scheme == "hf_tf" else name
    path = dotted.rsplit(".", 1)[0]
    for candidate in (f"{path}.weight", f"{path}.bias", dotted):
        try:
            if to_scheme_name(candidate, scheme) == name:
                return candidate
        except UnknownWeightError:
            continue
    raise UnknownWeightError(f"tensor {name!r} ({scheme} naming) maps to no XLM-R weight")


def to_scheme_array(array: Any, name: str, scheme: str) -> Any:
    """Canonical layout -> the scheme's layout (works on numpy arrays and framework tensors with ``.T``)."""
    return array.T if scheme != "pt" and kind_of(name) in TRANSPOSED else array


def from_scheme_array(array: Any, name: str, scheme: str) -> Any:
    """The scheme's layout -> canonical layout; ``name`` is the canonical name."""
    return to_scheme_array(array, name, scheme)


# ------------------------------------------------------------------------------------------------ architectures
ARCHITECTURES = (
    "XLMRobertaModel", "XLMRobertaForCausalLM", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice", "XLMRobertaForTokenClassification", "XLMRobertaForQuestionAnswering",
)
# Heads that keep the pooler, as in HF (the others build ``roberta`` with add_pooling_layer=False).
WITH_POOLER = {"XLMRobertaModel", "XLMRobertaForMultipleChoice"}


def _linear(prefix: str, n_out: int, n_in: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}


def _norm(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def encoder_shapes(config: XLMRobertaConfig, pooler: bool = True) -> dict[str, tuple[int, ...]]:
    """Canonical names and shapes of the bare encoder (no ``roberta.`` prefix)."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        **_norm("embeddings.LayerNorm", h),
    }
    relative = config.position_embedding_type != "absolute"
    for n in range(config.num_hidden_layers):
        layer = f"encoder.layer.{n}"
        blocks = ["attention"] + (["crossattention"] if config.add_cross_attention else [])
        for block in blocks:
            for proj in ("query", "key", "value"):
                shapes.update(_linear(f"{layer}.{block}.self.{proj}", h, h))
            if relative and block == "attention":  # HF builds cross-attention with absolute positions
                shapes[f"{layer}.{block}.self.distance_embedding.weight"] = (
                    2 * config.max_position_embeddings - 1, config.head_dim)
            shapes.update(_linear(f"{layer}.{block}.output.dense", h, h))
            shapes.update(_norm(f"{layer}.{block}.output.LayerNorm", h))
        shapes.update(_linear(f"{layer}.intermediate.dense", i, h))
        shapes.update(_linear(f"{layer}.output.dense", h, i))
        shapes.update(_norm(f"{layer}.output.LayerNorm", h))
    if pooler:
        shapes.update(_linear("pooler.dense", h, h))
    return shapes


def head_shapes(config: XLMRobertaConfig, architecture: str) -> dict[str, tuple[int, ...]]:
    """Canonical names and shapes of a class's head (everything outside ``roberta.``)."""
    h = config.hidden_size
    if architecture == "XLMRobertaModel":
        return {}
    if architecture in ("XLMRobertaForCausalLM", "XLMRobertaForMaskedLM"):
        shapes = {**_linear("lm_head.dense", h, h), **_norm("lm_head.layer_norm", h),
                  "lm_head.bias": (config.vocab_size,)}
        if not config.tie_word_embeddings:
            shapes["lm_head.decoder.weight"] = (config.vocab_size, h)
        return shapes
    if architecture == "XLMRobertaForSequenceClassification":
        return {**_linear("classifier.dense", h, h), **_linear("classifier.out_proj", config.num_labels, h)}
    if architecture == "XLMRobertaForMultipleChoice":
        return _linear("classifier", 1, h)
    if architecture == "XLMRobertaForTokenClassification":
        return _linear("classifier", config.num_labels, h)
    if architecture == "XLMRobertaForQuestionAnswering":
        if config.num_labels != 2:  # HF sizes qa_outputs by num_labels and splits it into start and end
            raise ValueError(f"XLMRobertaForQuestionAnswering needs config.num_labels=2 (start and end logits), "
                             f"got num_labels={config.num_labels}")
        return _linear("qa_outputs", 2, h)
    raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")


def parameter_shapes(config: XLMRobertaConfig, architecture: str) -> dict[str, tuple[int, ...]]:
    """Every unique parameter of a class, canonical name -> shape, in module order.

    Tied and aliased tensors appear once: ``lm_head.decoder.weight`` only when untied, ``lm_head.decoder.bias``
    never (HF makes it the same tensor as ``lm_head.bias``).
    """
    encoder = encoder_shapes(config, pooler=architecture in WITH_POOLER)
    if architecture == "XLMRobertaModel":
        return encoder
    return {**{_ROBERTA + k: v for k, v in encoder.items()}, **head_shapes(config, architecture)}


def is_head_weight(name: str, architecture: str) -> bool:
    """True for weights a task class may initialise when a checkpoint lacks them: its head and the pooler."""
    if architecture == "XLMRobertaModel":
        return name.startswith("pooler.")
    return not name.startswith(_ROBERTA) or name.startswith(_ROBERTA + "pooler.")


def _strip_framework_prefix(name: str) -> str:
    for prefix in ("TF", "Flax"):
        if name.startswith(prefix + "XLMRoberta"):
            return name[len(prefix):]
    return name


def infer_architecture(names: Any, config: XLMRobertaConfig) -> str:
    """The class a checkpoint was saved from: ``config.architectures`` when it names one of ours (HF's TF/Flax
    prefixes accepted), else read off the tensor names."""
    for arch in config.architectures or []:
        if _strip_framework_prefix(arch) in ARCHITECTURES:
            return _strip_framework_prefix(arch)
    names = set(names)
    if any(n.startswith("lm_head.") for n in names):
        return "XLMRobertaForCausalLM" if config.is_decoder else "XLMRobertaForMaskedLM"
    if "classifier.out_proj.weight" in names:
        return "XLMRobertaForSequenceClassification"
    if "qa_outputs.weight" in names:
        return "XLMRobertaForQuestionAnswering"
    if "classifier.weight" in names:
        return "XLMRobertaForTokenClassification"
    return "XLMRobertaModel"


def normalise_names(state: Mapping[str, Any], architecture: str) -> dict[str, Any]:
    """Align the ``roberta.`` prefix with the class and fold HF's aliases and buffers away."""
    wants_prefix = architecture != "XLMRobertaModel"
    has_prefix = any(k.startswith(_ROBERTA) for k in state)
    out: dict[str, Any] = {}
    for name, value in state.items():
        if is_buffer(name):
            continue
        if wants_prefix and not has_prefix and name.split(".", 1)[0] in ("embeddings", "encoder", "pooler"):
            name = _ROBERTA + name
        elif not wants_prefix and has_prefix and name.startswith(_ROBERTA):
            name = name[len(_ROBERTA):]
        out[name] = value
    # HF's LM head shares one tensor between lm_head.bias and lm_head.decoder.bias; keep one.
    if LM_BIAS_ALIAS in out:
        alias = out.pop(LM_BIAS_ALIAS)
        out.setdefault("lm_head.bias", alias)
    return out


# ------------------------------------------------------------------------------------------------ state checks
class WeightsError(ValueError):
    """A set of tensors does not fit the class or config; the message names every offending tensor."""


def _dtype_problem(name: str, array: Any) -> str | None:
    try:
        kind = np.dtype(getattr(array, "dtype", np.float32))
    except TypeError:  # a framework dtype numpy does not know: the backend checks its own tensors
        return None
    if np.issubdtype(kind, np.floating) or kind.name == "bfloat16":
        return None
    return f"tensor {name} has dtype {kind}, expected a floating-point type"


def check_state(
    expected_shapes: Mapping[str, tuple[int, ...]],
    tensors: Mapping[str, Any] | Iterable[tuple[str, Any]],
    source: str,
    *,
    optional: Collection[str] = (),
    tolerated: Mapping[str, tuple[int, ...]] | None = None,
    strict: bool = True,
    error: type[Exception] = WeightsError,
) -> None:
    """Raise ``error`` naming, in one line, every tensor of ``tensors`` that does not fit ``expected_shapes``.

    The problems are: a name given twice (``tensors`` may be (name, array) pairs), an expected tensor missing
    (unless in ``optional``), a tensor of another shape, a tensor of a non-floating dtype and, with ``strict``,
    a tensor nobody expects (``tolerated`` names more tensors that may be present, shape-checked). ``source``
    starts the message: the file, folder or method.

    Example:
        >>> check_state({"a": (2,), "b": (3,)}, {"a": np.zeros(4), "c": np.zeros(1)}, "x.safetensors")
        Traceback (most recent call last):
        ...
        xlmr.common.weights.WeightsError: x.safetensors: 3 problem(s): missing weight b (shape (3,)); \
tensor a has shape (4,), the config gives (2,); unexpected tensor 'c' is not an XLM-R weight (no row of \
xlmr.common.weights.TABLE matches)
    """
    pairs = list(tensors.items()) if isinstance(tensors, Mapping) else list(tensors)
    counts = collections.Counter(name for name, _ in pairs)
    problems = [f"tensor {name} is given twice" for name, count in counts.items() if count > 1]
    given = dict(pairs)
    problems += [f"missing weight {name} (shape {tuple(shape)})" for name, shape in expected_shapes.items()
                 if name not in given and name not in optional]
    for name, array in given.items():
        shape = expected_shapes.get(name, None if tolerated is None else tolerated.get(name))
        if shape is None:
            if strict:
                try:
                    kind_of(name)
                    problems.append(f"unexpected weight {name} (shape {tuple(np.shape(array))})")
                except UnknownWeightError as e:
                    problems.append(f"unexpected {e}")
            continue
        if tuple(np.shape(array)) != tuple(shape):
            problems.append(f"tensor {name} has shape {tuple(np.shape(array))}, the config gives {tuple(shape)}")
        elif (why := _dtype_problem(name, array)) is not None:
            problems.append(why)
    if problems:
        raise error(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))
