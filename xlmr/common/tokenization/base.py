"""What the slow and the fast XLM-R tokenizers share: special tokens, the padding and truncation options, outputs
(lists or `np`/`pt`/`tf`/`jax` tensors) and the Hugging Face config files.

A subclass supplies the vocabulary (`convert_tokens_to_ids`, `convert_ids_to_tokens`, `get_vocab`, `vocab_size`,
`tokenize`), `_encode_batch` (texts to rows of ids, truncated and padded), `_decode` and `_save_model_files`.
Nothing here imports a deep-learning framework except the one `return_tensors` asks for, at call time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from xlmr.common.hub import user_stacklevel
from xlmr.common.io import atomic_write_text

SPM_FILE = "sentencepiece.bpe.model"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"  # HF's older record of added tokens: {"token": id}
MODEL_CONFIG_FILE = "config.json"

# Hugging Face's order, which fixes the order of `all_special_tokens` / `all_special_ids`.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
                              pad_token="<pad>", cls_token="<s>", mask_token="<mask>")
DEFAULT_MODEL_MAX_LENGTH = 512  # what the published xlm-roberta tokenizer configs say
# Hugging Face writes int(1e30) for "no known limit"; it treats anything above 1e20 that way, and so do we.
HF_NO_LIMIT = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
TENSOR_TYPES = ("np", "pt", "tf", "jax")
SPIECE_UNDERLINE = "\u2581"


@dataclass(frozen=True)
class SpecialToken:
    """A special token and how it matches in text, with the fields of HF's `AddedToken`.

    `lstrip` / `rstrip` swallow the whitespace left / right of the token (XLM-R's `<mask>` has `lstrip`);
    `normalized` says whether the fast tokenizer matches it before or after normalisation.

    >>> SpecialToken("<mask>", lstrip=True).to_dict()["lstrip"]
    True
    """

    content: str
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False
    single_word: bool = False
    special: bool = True

    def __post_init__(self) -> None:
        if self.single_word:
            raise NotImplementedError(f"special token {self.content!r}: single_word=True is not supported")

    @classmethod
    def coerce(cls, value: Any, name: str, **defaults: Any) -> "SpecialToken":
        """A token given as a string, a dict as HF writes it, or a SpecialToken / HF AddedToken."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value, **defaults)
        if isinstance(value, dict):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = set(value) - fields - {"__type"}
            if "content" not in value or unknown:
                raise ValueError(f"{name}: expected a string or a dict with 'content' and fields of "
                                 f"{sorted(fields)}, got {value!r}")
            return cls(**{k: v for k, v in value.items() if k in fields})
        if hasattr(value, "content"):  # tokenizers.AddedToken
            return cls(value.content, value.lstrip, value.rstrip, value.normalized, value.single_word)
        raise TypeError(f"{name} must be a string or a SpecialToken, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return self.content


@dataclass(frozen=True)
class EncodeOptions:
    """The resolved arguments of `__call__`, with HF's defaults and shorthands already applied."""

    add_special_tokens: bool
    padding: str
    truncation: str
    max_length: int | None
    stride: int
    pad_to_multiple_of: int | None
    return_token_type_ids: bool
    return_attention_mask: bool
    return_special_tokens_mask: bool
    return_offsets_mapping: bool
    return_overflowing_tokens: bool


def _choose(value: Any, name: str, allowed: Sequence[str], true: str, false: str) -> str:
    if value is True or value is False:
        return true if value else false
    value = getattr(value, "value", value)  # HF's PaddingStrategy / TruncationStrategy enums
    if value not in allowed:
        choices = ", ".join(["True", "False"] + [repr(a) for a in allowed])
        raise ValueError(f"{name}={value!r} is not a {name} strategy; use one of {choices}")
    return value


def resolve_options(padding: Any, truncation: Any, max_length: int | None, pad_to_multiple_of: int | None,
                    model_max_length: int) -> tuple[str, str, int | None]:
    """HF's rules: `max_length` alone turns on `longest_first`; a strategy without `max_length` uses the model's."""
    if max_length is not None and padding is False and truncation is None:
        truncation = True
    padding = _choose(padding, "padding", PADDING_STRATEGIES, "longest", "do_not_pad")
    truncation = _choose(truncation or False, "truncation", TRUNCATION_STRATEGIES, "longest_first",
                         "do_not_truncate")
    if max_length is None and (padding == "max_length" or truncation != "do_not_truncate"):
        max_length = model_max_length
    if (truncation != "do_not_truncate" and padding != "do_not_pad" and pad_to_multiple_of
            and max_length % pad_to_multiple_of):
        raise ValueError(f"truncation to max_length={max_length} and padding to a multiple of "
                         f"pad_to_multiple_of={pad_to_multiple_of} cannot both hold; make max_length a multiple")
    return padding, truncation, max_length


def check_truncation(strategy: str, max_length: int, first: int, second: int | None, n_special: int) -> None:
    """Raise when `strategy` cannot bring a text (`second` None) or a pair down to `max_length` tokens.

    `first` and `second` count the tokens of each text without special tokens; `n_special` is what gets added.
    """
    if strategy == "do_not_truncate" or first + (second or 0) + n_special <= max_length:
        return
    what = f"the first text has {first} tokens" + (f", the second {second}" if second is not None else "")
    if max_length < n_special:
        raise ValueError(f"max_length={max_length} is shorter than the {n_special} special tokens alone ({what})")
    budget = max_length - n_special
    if strategy == "only_second" and second is None:
        raise ValueError(f"truncation='only_second' shortens the second text of a pair, but a single text of "
                         f"{first} tokens (+{n_special} special) exceeds max_length={max_length}")
    kept, name = (second or 0, "second") if strategy == "only_first" else (first, "first")
    if strategy != "longest_first" and kept > budget:
        raise ValueError(f"truncation={strategy!r} cannot reach max_length={max_length}: {what}; after {n_special} "
                         f"special tokens {budget} are left, fewer than the {kept} tokens of the {name} text, which "
                         f"{strategy!r} does not shorten")


def truncate(ids: list[int], pair_ids: list[int] | None, strategy: str, max_length: int | None,
             n_special: int) -> tuple[list[int], list[int] | None]:
    """Hugging Face's slow-tokenizer truncation (from the right); impossible requests raise."""
    if strategy == "do_not_truncate" or max_length is None:
        return ids, pair_ids
    check_truncation(strategy, max_length, len(ids), None if pair_ids is None else len(pair_ids), n_special)
    excess = len(ids) + len(pair_ids or ()) + n_special - max_length
    if excess <= 0:
        return ids, pair_ids
    if strategy == "only_second":
        return ids, pair_ids[: len(pair_ids) - excess]
    if strategy == "only_first" or pair_ids is None:
        return ids[: len(ids) - excess], pair_ids
    # longest_first: first cut the longer text down to the shorter, then share the rest; an odd token comes
    # off the second text (HF's slow class; the fast one takes it from the longer text, see tokenizers).
    gap = min(abs(len(ids) - len(pair_ids)), excess)
    cut_first = (excess - gap) // 2 + (gap if len(ids) > len(pair_ids) else 0)
    cut_second = excess - cut_first
    return ids[: len(ids) - cut_first], pair_ids[: len(pair_ids) - cut_second]


def padded_length(lengths: Sequence[int], strategy: str, max_length: int | None, multiple: int | None) -> int:
    """The row length a batch is padded to (rows already longer keep their length)."""
    if strategy == "do_not_pad":
        return 0
    target = max(lengths, default=0) if strategy == "longest" else max_length
    if multiple and target % multiple:
        target += multiple - target % multiple
    return target


def _tensor_converter(return_tensors: str):
    if return_tensors == "np":
        return lambda a: a
    if return_tensors == "pt":
        import torch
        return torch.from_numpy
    if return_tensors == "tf":
        import tensorflow as tf
        return lambda a: tf.constant(a.astype(np.int32))  # HF's TF outputs are int32
    if return_tensors == "jax":
        import jax.numpy as jnp
        return lambda a: jnp.asarray(a.astype(np.int32))  # JAX's default integer width
    raise ValueError(f"return_tensors={return_tensors!r} is not supported; use one of {TENSOR_TYPES} or None")


def check_return_tensors(return_tensors: str | None) -> None:
    if return_tensors is not None and return_tensors not in TENSOR_TYPES:
        _tensor_converter(return_tensors)


def to_tensors(columns: dict[str, list], return_tensors: str) -> dict[str, Any]:
    convert = _tensor_converter(return_tensors)
    out = {}
    for key, rows in columns.items():
        lengths = sorted({len(row) for row in rows if isinstance(row, (list, tuple))})
        if len(lengths) > 1:
            raise ValueError(f"cannot make a {return_tensors!r} tensor of {key!r}: its rows have lengths {lengths}; "
                             f"pass padding=True (and truncation=True) to make them equal")
        out[key] = convert(np.asarray(rows, dtype=np.int64))
    return out


class BatchEncoding(dict):
    """The tokenizer's output: a dict (`input_ids`, `attention_mask`, ...) that also allows attribute access.

    From the fast tokenizer it keeps the `tokenizers` encodings, for `word_ids`, `tokens` and `sequence_ids`.

    >>> enc = BatchEncoding({"input_ids": [0, 2]})
    >>> enc.input_ids == enc["input_ids"]
    True
    """

    def __init__(self, data: dict[str, Any], encodings: list | None = None):
        super().__init__(data)
        self.encodings = encodings

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; it has {sorted(self)}") from None

    def _encoding(self, batch_index: int, what: str):
        if self.encodings is None:
            raise ValueError(f"{what}() needs the output of XLMRobertaTokenizerFast; the slow tokenizer keeps no "
                             f"alignment")
        return self.encodings[batch_index]

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word (whitespace-separated unit) each token comes from; None for special and padding tokens."""
        return self._encoding(batch_index, "word_ids").word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0 or 1 for tokens of the first or second text, None for special and padding tokens."""
        return self._encoding(batch_index, "sequence_ids").sequence_ids

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index, "tokens").tokens


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno} (character {e.pos}): "
                         f"{e.msg}") from None


def _read_object(path: str) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token_id(file: str, key: Any) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ValueError(f"{file}: token id {key!r} is not an integer") from None


def read_tokenizer_config(folder: str, overrides: dict[str, Any] | None = None
                          ) -> tuple[dict[str, Any], list[tuple[str, int, str]]]:
    """Constructor keyword arguments from `tokenizer_config.json` and `special_tokens_map.json` (either may be
    missing), and every token the folder's files add, as (file, id, content), for the tokenizer to check against
    its vocabulary (`added_tokens_decoder` of the config, `added_tokens.json`).

    A `model_max_length` above what the model beside it (`config.json`) can take is lowered to that, with a warning,
    unless `overrides` sets one.
    """
    config: dict[str, Any] = {}
    added: list[tuple[str, int, str]] = []
    for name in (CONFIG_FILE, SPECIAL_TOKENS_FILE):  # HF lets the special-tokens map win
        path = os.path.join(folder, name)
        if os.path.exists(path):
            data = _read_object(path)
            config.update(data)
            decoder = data.get("added_tokens_decoder", {})
            if not isinstance(decoder, dict) or not all(isinstance(e, dict) and "content" in e
                                                        for e in decoder.values()):
                raise ValueError(f"{path}: added_tokens_decoder must map ids to token objects with a content")
            added += [(path, _token_id(path, key), str(entry["content"])) for key, entry in decoder.items()]
    if config.get("additional_special_tokens"):
        raise NotImplementedError(f"{folder}: additional_special_tokens {config['additional_special_tokens']} "
                                  f"are not supported")
    path = os.path.join(folder, ADDED_TOKENS_FILE)
    if os.path.exists(path):
        added += [(path, _token_id(path, index), str(token)) for token, index in _read_object(path).items()]
    # Special-token flags live in `added_tokens_decoder`; the maps above may name the tokens by string only.
    flags = {entry["content"]: entry for entry in config.get("added_tokens_decoder", {}).values()}
    kwargs: dict[str, Any] = {}
    for name in SPECIAL_TOKEN_NAMES:
        if config.get(name) is not None:
            token = config[name]
            value = flags.get(token["content"] if isinstance(token, dict) else token, token)
            # A bare string keeps the class's default flags (the mask token's lstrip), as in HF.
            kwargs[name] = value if isinstance(value, str) else SpecialToken.coerce(value, f"{folder}: {name}")
    max_length = config.get("model_max_length")
    if isinstance(max_length, int) and not isinstance(max_length, bool) and 0 < max_length < HF_NO_LIMIT:
        kwargs["model_max_length"] = max_length
    if "clean_up_tokenization_spaces" in config:
        kwargs["clean_up_tokenization_spaces"] = bool(config["clean_up_tokenization_spaces"])
    if "model_max_length" not in (overrides or {}):
        limit = model_position_limit(folder)
        length = kwargs.get("model_max_length", DEFAULT_MODEL_MAX_LENGTH)
        if limit is not None and length > limit:
            warnings.warn(f"{folder}: the tokenizer's model_max_length={length} exceeds the {limit} tokens the model "
                          f"in {MODEL_CONFIG_FILE} takes (max_position_embeddings minus pad_token_id + 1); using "
                          f"{limit}", stacklevel=user_stacklevel())
            kwargs["model_max_length"] = limit
    return kwargs, added


def model_position_limit(folder: str) -> int | None:
    """The longest sequence the model in `folder` takes (`XLMRobertaConfig.max_sequence_length`), read from its
    `config.json`; None without one. A config.json that is unreadable is left for the model's loader to report."""
    path = os.path.join(folder, MODEL_CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(1 << 24))
        positions, pad = data["max_position_embeddings"], data.get("pad_token_id", 1)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (positions, pad)):
        return None
    return positions - pad - 1 if positions - pad - 1 > 0 else None


def clean_up_tokenization(text: str) -> str:
    """HF's `clean_up_tokenization_spaces`: glue English punctuation and contractions back on."""
    for spaced, glued in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(spaced, glued)
    return text


class TokenizerBase:
    """The API both XLM-R tokenizers share; see `XLMRobertaTokenizer` and `XLMRobertaTokenizerFast`."""

    model_input_names = ("input_ids", "attention_mask")
    # The mask token swallows the space before it, so "a <mask>" predicts "▁word" rather than "word".
    _special_defaults: dict[str, dict[str, bool]] = {"mask_token": {"lstrip": True}}

    def __init__(self, special_tokens: dict[str, Any], model_max_length: int | None = None,
                 clean_up_tokenization_spaces: bool = False):
        self._special = {}
        for name in SPECIAL_TOKEN_NAMES:
            value = special_tokens.get(name, DEFAULT_SPECIAL_TOKENS[name])
            self._special[name] = SpecialToken.coerce(value, name, **self._special_defaults.get(name, {}))
        self.model_max_length = DEFAULT_MODEL_MAX_LENGTH if model_max_length is None else int(model_max_length)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces

    def _check_added_tokens(self, added: list[tuple[str, int, str]]) -> None:
        """Refuse tokens added on top of XLM-R's vocabulary (the model has no row for them) and special tokens
        recorded under another id than the vocabulary's; `added` holds (file, id, content)."""
        for file, index, content in added:
            if content not in self.all_special_tokens:
                raise NotImplementedError(f"{file}: added token {content!r} (id {index}) is not supported; only "
                                          f"XLM-R's special tokens {self.all_special_tokens} are")
            if index != self.convert_tokens_to_ids(content):
                raise ValueError(f"{file}: special token {content!r} has id {index} there, but "
                                 f"{self.convert_tokens_to_ids(content)} in the vocabulary")

    # ------------------------------------------------------------------ special tokens
    @property
    def special_tokens(self) -> dict[str, SpecialToken]:
        return dict(self._special)

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys(t.content for t in self._special.values()))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 4 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None
                                         ) -> list[int]:
        """`<s> A </s>` or `<s> A </s></s> B </s>`."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep + sep + list(token_ids_1) + sep

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 where `build_inputs_with_special_tokens` puts a special token (or, already built, where one is)."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("already_has_special_tokens=True takes one built sequence, not a pair")
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None
                                             ) -> list[int]:
        """All zeros: XLM-R has a single token type."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    # ------------------------------------------------------------------ encoding
    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, stride: int = 0, pad_to_multiple_of: int | None = None,
                 return_tensors: str | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False) -> BatchEncoding:
        """Encode a text, a pair, or a batch of either (a list of texts and, for pairs, a list of second texts)."""
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        pairs = None if text_pair is None else (list(text_pair) if batched else [text_pair])
        self._check_texts(texts, pairs, batched)
        check_return_tensors(return_tensors)
        padding, truncation, max_length = resolve_options(padding, truncation, max_length, pad_to_multiple_of,
                                                          self.model_max_length)
        options = EncodeOptions(
            add_special_tokens=add_special_tokens, padding=padding, truncation=truncation, max_length=max_length,
            stride=stride, pad_to_multiple_of=pad_to_multiple_of,
            return_token_type_ids=bool(return_token_type_ids),
            return_attention_mask=return_attention_mask is not False,
            return_special_tokens_mask=return_special_tokens_mask, return_offsets_mapping=return_offsets_mapping,
            return_overflowing_tokens=return_overflowing_tokens)
        encoding = self._encode_batch(texts, pairs, options)
        columns, encodings = dict(encoding), encoding.encodings
        if return_tensors is not None:
            columns = to_tensors(columns, return_tensors)
        elif not batched and not return_overflowing_tokens:
            # Like HF: a single text gives flat lists; overflowing windows stay a batch.
            columns = {k: v[0] for k, v in columns.items()}
        return BatchEncoding(columns, encodings)

    @staticmethod
    def _check_texts(texts: list, pairs: list | None, batched: bool) -> None:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                where = f"text[{i}]" if batched else "text"
                raise TypeError(f"{where} must be a string, got {type(t).__name__}")
        if pairs is None:
            return
        if len(pairs) != len(texts):
            raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}")
        for i, t in enumerate(pairs):
            if not isinstance(t, str):
                where = f"text_pair[{i}]" if batched else "text_pair"
                raise TypeError(f"{where} must be a string, got {type(t).__name__}")

    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None, return_tensors: str | None = None) -> Any:
        """The `input_ids` of one text or pair (a list, or a (1, n) tensor with `return_tensors`)."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes one text (str), got {type(text).__name__}; call the tokenizer itself "
                            f"for batches")
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                    return_tensors=return_tensors, return_attention_mask=False)["input_ids"]

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """The text of a sequence of ids (a list, an array or a tensor)."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        ids = [ids] if isinstance(ids, int) else [int(i) for i in ids]
        text = self._decode(ids, skip_special_tokens)
        clean = clean_up_tokenization_spaces
        return clean_up_tokenization(text) if (self.clean_up_tokenization_spaces if clean is None else clean) else text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    # ------------------------------------------------------------------ vocabulary
    def __len__(self) -> int:
        return len(self.get_vocab())

    # ------------------------------------------------------------------ files
    def tokenizer_config(self) -> dict[str, Any]:
        """`tokenizer_config.json` as Hugging Face 4.57 writes it for XLM-R."""
        config: dict[str, Any] = {name: token.content for name, token in self._special.items()}
        unique = {token.content: token for token in self._special.values()}
        decoder = {self.convert_tokens_to_ids(content): token.to_dict() for content, token in unique.items()}
        config["added_tokens_decoder"] = {str(i): decoder[i] for i in sorted(decoder)}
        config.update(clean_up_tokenization_spaces=self.clean_up_tokenization_spaces, extra_special_tokens={},
                      model_max_length=self.model_max_length, sp_model_kwargs={},
                      tokenizer_class="XLMRobertaTokenizer")  # HF names the slow class for both
        return config

    def special_tokens_map(self) -> dict[str, Any]:
        """`special_tokens_map.json`: plain strings, or a dict for a token with non-default matching flags."""
        out = {}
        for name, token in self._special.items():
            flags = token.to_dict()
            del flags["special"]
            plain = not (token.lstrip or token.rstrip or token.normalized or token.single_word)
            out[name] = token.content if plain else flags
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write the model file(s), `tokenizer_config.json` and `special_tokens_map.json`, each atomically."""
        folder = os.fspath(save_directory)
        if os.path.isfile(folder):
            raise NotADirectoryError(f"save_pretrained needs a folder, but {folder} is a file")
        os.makedirs(folder, exist_ok=True)
        written = []
        for name, data in ((CONFIG_FILE, self.tokenizer_config()), (SPECIAL_TOKENS_FILE, self.special_tokens_map())):
            path = os.path.join(folder, name)
            atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path)
        return tuple(written) + tuple(self._save_model_files(folder))

    @staticmethod
    def _pretrained_folder(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> str:
        """The local folder for ``path``: a folder, ``"xlmr-default"`` or a Hub id (only config and tokenizer files
        are fetched; the Hub options are taken out of ``overrides``)."""
        from xlmr.common.hub import pop_hub_options, resolve

        folder = resolve(path, weights=False, **pop_hub_options(overrides if overrides is not None else {}))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"tokenizer folder {folder} is not a folder")
        return folder

    # ------------------------------------------------------------------ subclass hooks
    def _encode_batch(self, texts: list[str], pairs: list[str] | None, options: EncodeOptions) -> BatchEncoding:
        raise NotImplementedError

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    def _save_model_files(self, folder: str) -> list[str]:
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError


def _special_token_property(name: str) -> property:
    return property(lambda self: self._special[name].content, doc=f"The {name.replace('_', ' ')} (a string).")


def _special_id_property(name: str) -> property:
    return property(lambda self: self.convert_tokens_to_ids(self._special[name].content),
                    doc=f"The id of the {name.replace('_', ' ')}.")


for _name in SPECIAL_TOKEN_NAMES:
    setattr(TokenizerBase, _name, _special_token_property(_name))
    setattr(TokenizerBase, f"{_name}_id", _special_id_property(_name))
