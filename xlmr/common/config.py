"""XLM-R configuration: every field of a Hugging Face ``config.json``, validated, framework-free."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from xlmr.common.io import atomic_write_text

CONFIG_NAME = "config.json"

# Activations every backend implements, by their Hugging Face names.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu", "swish", "tanh")
POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
# HF's RobertaConfig describes the same network (XLMRobertaModel is a copy of RobertaModel), so its checkpoints
# load as they are. BERT is refused: its positions start at 0, not at pad_token_id + 1, so its position table
# would be read one row off; "xlm-roberta-xl" is a pre-LayerNorm variant this package does not implement.
MODEL_TYPES = ("xlm-roberta", "roberta")

# Upper bounds on the size fields, far above every published XLM-R (XXL: 48 layers, 4096 wide, 16384 inner,
# 250880 tokens, 10.7e9 parameters). They let a corrupt or hostile config.json be refused before anything is
# built from it: a per-layer table of 1e9 layers is gigabytes before a single weight is read.
SIZE_LIMITS = {"vocab_size": 2**24, "hidden_size": 2**16, "num_hidden_layers": 2**10, "num_attention_heads": 2**10,
               "intermediate_size": 2**18, "max_position_embeddings": 2**20, "type_vocab_size": 2**16}
MAX_LABELS = 2**16
MAX_PARAMETERS = 2**36  # 68.7e9: six times XXL
MAX_CONFIG_BYTES = 2**24  # a config.json is a few KB; 65536 label names fit many times over

# Named shapes of the published checkpoints. XL and XXL are published as HF's XLMRobertaXL, a pre-LayerNorm
# variant this package does not implement; the shapes are here for sizing (benchmarks, memory estimates).
NAMED_SHAPES: dict[str, dict[str, Any]] = {
    "base": dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=514),
    "large": dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=514),
    "xl": dict(vocab_size=250880, hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
               intermediate_size=10240, max_position_embeddings=514),
    "xxl": dict(vocab_size=250880, hidden_size=4096, num_hidden_layers=48, num_attention_heads=32,
                intermediate_size=16384, max_position_embeddings=514),
}


class ConfigError(ValueError):
    """A config field holds a value the model cannot be built with; the message names field, value and source."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_label_id(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())


def _label_id(value: Any) -> int:
    """A label id: an integer, or the string of one (JSON object keys are strings); nothing else."""
    if not _is_label_id(value):
        raise ValueError(value)
    return int(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class XLMRobertaConfig:
    """Hyper-parameters of an XLM-R model; defaults are those of xlm-roberta-base.

    Example:
        >>> from xlmr import XLMRobertaConfig
        >>> cfg = XLMRobertaConfig.named("base", num_labels=3)
        >>> cfg.hidden_size // cfg.num_attention_heads
        64
        >>> XLMRobertaConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    vocab_size: int = 250002
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    position_embedding_type: str = "absolute"
    use_cache: bool = True
    classifier_dropout: float | None = None
    is_decoder: bool = False
    add_cross_attention: bool = False
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    num_labels: int | None = None
    problem_type: str | None = None
    tie_word_embeddings: bool = True
    architectures: list[str] | None = None
    output_attentions: bool = False
    output_hidden_states: bool = False
    return_dict: bool = True
    # Fields of a config.json this package does not interpret; kept so that a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reconcile_labels()
        self.validate()

    def _reconcile_labels(self) -> None:
        if self.id2label is not None:
            if not isinstance(self.id2label, dict) or len(self.id2label) > MAX_LABELS:
                raise ConfigError(f"config field id2label must be an object of at most {MAX_LABELS} labels, got "
                                  f"{_short(self.id2label)}")
            try:
                self.id2label = {_label_id(k): str(v) for k, v in self.id2label.items()}
            except (TypeError, ValueError):
                raise ConfigError(f"config field id2label must map integer ids to names, got "
                                  f"{_short(self.id2label)}") from None
            if self.num_labels is not None and self.num_labels != len(self.id2label):
                raise ConfigError(
                    f"config field num_labels={self.num_labels} disagrees with id2label, which has "
                    f"{len(self.id2label)} entries")
        else:
            n = 2 if self.num_labels is None else self.num_labels
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LABELS:
                raise ConfigError(f"config field num_labels={_short(n)} must be an integer in [1, {MAX_LABELS}]")
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        else:
            if not isinstance(self.label2id, dict):
                raise ConfigError(f"config field label2id must map names to integer ids, got {_short(self.label2id)}")
            try:
                self.label2id = {str(k): _label_id(v) for k, v in self.label2id.items()}
            except (TypeError, ValueError):
                bad = next((k, v) for k, v in self.label2id.items() if not _is_label_id(v))
                raise ConfigError(f"config field label2id maps {bad[0]!r} to {_short(bad[1])}, which is not an "
                                  f"integer id") from None
        self.num_labels = len(self.id2label)

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value no backend can build a model from."""
        def fail(name: str, value: Any, why: str) -> None:
            raise ConfigError(f"config field {name}={value!r} {why}")

        for name, limit in SIZE_LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                fail(name, v, "must be a positive integer")
            if v > limit:
                fail(name, v, f"exceeds the limit {limit} (xlmr.common.config.SIZE_LIMITS)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            v = getattr(self, name)
            if v is None and name == "classifier_dropout":
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                fail(name, v, "must be a probability in [0, 1)")
        for name in ("initializer_range", "layer_norm_eps"):
            v = getattr(self, name)
            # Infinity would turn every LayerNorm output into zeros and NaN every output into NaN, silently.
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v < math.inf:
                fail(name, v, "must be a positive finite number")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size", self.hidden_size,
                 f"is not divisible by num_attention_heads={self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            fail("hidden_act", self.hidden_act, f"is not one of {', '.join(ACTIVATIONS)}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            fail("position_embedding_type", self.position_embedding_type,
                 f"is not one of {', '.join(POSITION_EMBEDDING_TYPES)}")
        # A boolean is an int to Python (True == 1), but in an id field it is a mistake, not a token id.
        if not _is_int(self.pad_token_id) or not 0 <= self.pad_token_id < self.vocab_size:
            fail("pad_token_id", self.pad_token_id, f"is not a token id in [0, vocab_size={self.vocab_size})")
        if self.max_position_embeddings < self.pad_token_id + 2:
            fail("max_position_embeddings", self.max_position_embeddings,
                 f"leaves no position for a token: positions start at pad_token_id + 1 = {self.pad_token_id + 1}")
        for name in ("bos_token_id", "eos_token_id"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or not 0 <= v < self.vocab_size):
                fail(name, v, f"is not a token id in [0, vocab_size={self.vocab_size})")
        if self.problem_type not in PROBLEM_TYPES:
            fail("problem_type", self.problem_type, f"is not one of {PROBLEM_TYPES}")
        for name in ("use_cache", "is_decoder", "add_cross_attention", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                fail(name, getattr(self, name), "must be true or false")
        if self.num_encoder_parameters > MAX_PARAMETERS:
            sizes = ", ".join(f"{name}={getattr(self, name)}" for name in SIZE_LIMITS)
            raise ConfigError(f"config implies {self.num_encoder_parameters:,} encoder parameters, over the limit "
                              f"{MAX_PARAMETERS:,} (xlmr.common.config.MAX_PARAMETERS): {sizes}")

    # ---------------------------------------------------------------- derived values
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_encoder_parameters(self) -> int:
        """Parameters of the encoder with its pooler (heads excluded), in closed form: nothing is allocated.

        >>> XLMRobertaConfig.named("base").num_encoder_parameters
        278043648
        """
        h, inner = self.hidden_size, self.intermediate_size
        attention = 4 * (h * h + h) + 2 * h  # query, key, value, output, LayerNorm
        layer = attention * (2 if self.add_cross_attention else 1) + 2 * h * inner + inner + h + 2 * h
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        return embeddings + self.num_hidden_layers * layer + h * h + h

    @property
    def max_sequence_length(self) -> int:
        """Longest sequence (cached tokens included) whose positions fit the position table.

        Positions start at ``pad_token_id + 1``, so the table of ``max_position_embeddings`` rows holds
        ``max_position_embeddings - pad_token_id - 1`` tokens: 512 for xlm-roberta-base.
        """
        return self.max_position_embeddings - self.pad_token_id - 1

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @property
    def classifier_dropout_rate(self) -> float:
        """Dropout of the classification heads: ``classifier_dropout``, or ``hidden_dropout_prob`` when unset (HF)."""
        return self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout

    def output_flags(self, output_attentions: bool | None, output_hidden_states: bool | None,
                     return_dict: bool | None) -> tuple[bool, bool, bool]:
        """A call's output flags: each argument, or the config's field of that name when the argument is None.

        Example:
            >>> XLMRobertaConfig(output_attentions=True).output_flags(None, True, False)
            (True, True, False)
        """
        return (self.output_attentions if output_attentions is None else output_attentions,
                self.output_hidden_states if output_hidden_states is None else output_hidden_states,
                self.return_dict if return_dict is None else return_dict)

    # ---------------------------------------------------------------- construction
    @classmethod
    def named(cls, shape: str, **overrides: Any) -> "XLMRobertaConfig":
        """A config with the shape of a published checkpoint: ``base``, ``large``, ``xl`` or ``xxl``."""
        key = shape.lower().replace("xlm-roberta-", "")
        if key not in NAMED_SHAPES:
            raise ConfigError(f"unknown named shape {shape!r}; known: {', '.join(NAMED_SHAPES)}")
        return cls(**{**NAMED_SHAPES[key], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "XLMRobertaConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        model_type = data.pop("model_type", "xlm-roberta")
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"{source}: field model_type={_short(model_type)} is not one of {', '.join(MODEL_TYPES)}"
                              f" (the architectures this package implements)")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: data.pop(k) for k in list(data) if k in known}
        kwargs.setdefault("extra", {}).update(data)
        if model_type != "xlm-roberta":
            kwargs["extra"]["model_type"] = model_type
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "XLMRobertaConfig":
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path} does not exist") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: over {MAX_CONFIG_BYTES} bytes, too large for a config.json")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                              f"config.json must be UTF-8 JSON") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        return cls.from_dict(data, source=path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "XLMRobertaConfig":
        """Read ``config.json`` from a checkpoint folder (or the file itself), ``"xlmr-default"`` or a Hub id (with
        huggingface_hub's ``revision``, ``cache_dir``, ``token``, ``local_files_only``); keyword overrides win."""
        from xlmr.common.hub import pop_hub_options, resolve

        path = resolve(path, weights=False, **pop_hub_options(overrides))
        file = os.path.join(path, CONFIG_NAME) if os.path.isdir(path) else path
        if os.path.isdir(path) and not os.path.exists(file):
            raise FileNotFoundError(f"no {CONFIG_NAME} in checkpoint folder {path}")
        config = cls.from_json_file(file)
        return config.replace(**overrides) if overrides else config

    def replace(self, **changes: Any) -> "XLMRobertaConfig":
        """A copy with some fields changed; changing num_labels resets the label names."""
        data = self.to_dict()
        if "num_labels" in changes and "id2label" not in changes:
            data.pop("id2label", None)
            data.pop("label2id", None)
        data.update(changes)
        return type(self).from_dict(data)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": "xlm-roberta"}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "num_labels"):
                continue
            out[f.name] = copy.deepcopy(getattr(self, f.name))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out.update(copy.deepcopy(self.extra))
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, CONFIG_NAME)
        atomic_write_text(path, self.to_json_string())
        return path
