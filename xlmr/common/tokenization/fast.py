"""XLMRobertaTokenizerFast: the XLM-R tokenizer on Hugging Face's Rust `tokenizers` library, built from the
sentencepiece model (the same pipeline HF's converter builds) or read from `tokenizer.json`."""

from __future__ import annotations

import functools
import json
import os
import threading
from typing import Any, Sequence

try:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
except ImportError as e:  # an optional dependency: the slow tokenizer needs only sentencepiece
    raise ImportError("XLMRobertaTokenizerFast needs the `tokenizers` package: pip install 'xlmr[fast]'") from e

from xlmr.common.io import atomic_write_bytes, atomic_write_text
from xlmr.common.tokenization.sentencepiece_model import CONTROL, USER_DEFINED, read_sentencepiece_model
from xlmr.common.tokenization.slow import FAIRSEQ_IDS, FAIRSEQ_OFFSET, load_sentencepiece, read_model_file
from xlmr.common.tokenization.base import (
    DEFAULT_SPECIAL_TOKENS as _D,
    SPIECE_UNDERLINE,
    SPM_FILE,
    TOKENIZER_FILE,
    BatchEncoding,
    EncodeOptions,
    SpecialToken,
    TokenizerBase,
    check_truncation,
    read_json,
    read_tokenizer_config,
)

def tokenizer_from_sentencepiece(model: bytes, special_tokens: Sequence[SpecialToken], source: str) -> Tokenizer:
    """The `tokenizers` pipeline that reproduces sentencepiece + fairseq ids for XLM-R's unigram model."""
    load_sentencepiece(model, source)  # a readable error for a corrupt file, and the piece layout checked
    pieces, _, charsmap = read_sentencepiece_model(model)
    mask = next(t for t in special_tokens if t.content == "<mask>")
    vocab = [(token, 0.0) for token in FAIRSEQ_IDS] + [(p, score) for p, score, _ in pieces[3:]] + [(mask.content, 0.0)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=FAIRSEQ_IDS["<unk>"], byte_fallback=False))
    # sentencepiece's remove_extra_whitespaces: trailing spaces go, a run of spaces collapses to one "▁".
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), SPIECE_UNDERLINE)]
    tokenizer.normalizer = normalizers.Sequence(([normalizers.Precompiled(charsmap)] if charsmap else []) + steps)
    # "always": the slow tokenizer hands each stretch of text between special tokens to sentencepiece on its own,
    # and sentencepiece gives every one of them the dummy "▁" prefix.
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", FAIRSEQ_IDS["<s>"]), ("</s>", FAIRSEQ_IDS["</s>"])])
    # sentencepiece never splits control and user-defined pieces; neither may the fast tokenizer.
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=kind == CONTROL)
                          for p, _, kind in pieces if kind in (CONTROL, USER_DEFINED)])
    tokenizer.add_special_tokens([AddedToken(t.content, lstrip=t.lstrip, rstrip=t.rstrip, normalized=t.normalized,
                                             special=True) for t in special_tokens])
    return tokenizer


def read_tokenizer_json(path: str) -> Tokenizer:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file {path} does not exist")
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception
        read_json(path)  # names line and column when the JSON itself is malformed
        raise ValueError(f"{path} is not a `tokenizers` tokenizer.json: {e}") from None


def _steps(component: dict | None) -> list[dict]:
    """The steps of a normalizer or pre-tokenizer, a `Sequence` flattened; none for null."""
    if not component:
        return []
    if component.get("type") == "Sequence":
        inner = component.get("normalizers", component.get("pretokenizers", []))
        return [step for c in inner for step in _steps(c)]
    return [component]


# Normalisation steps that keep XLM-R's ids: sentencepiece's NFKC-based charsmap and whitespace handling. Lowercasing,
# accent stripping or BERT's cleaning change which pieces a text becomes.
XLMR_NORMALIZERS = ("Precompiled", "NFKC", "Strip", "Replace")


def check_pipeline(backend: Tokenizer, path: str, cls_token: str = _D["cls_token"], sep_token: str = _D["sep_token"]
                   ) -> None:
    """Refuse a tokenizer.json whose pipeline is not XLM-R's: a Unigram model, sentencepiece normalisation, a
    Metaspace("▁") pre-tokenizer and the `<s> A </s></s> B </s>` template. Raises ValueError naming what differs."""
    def refuse(what: str) -> None:
        raise ValueError(f"{path} is not an XLM-R tokenizer.json: {what}")

    def spec(component: Any) -> dict | None:  # a component's JSON, without serialising the whole vocabulary
        return None if component is None else json.loads(component.__getstate__())

    kind = type(backend.model).__name__
    if kind != "Unigram":
        refuse(f"its model is {kind}, XLM-R's is Unigram (a sentencepiece unigram vocabulary)")
    steps = _steps(spec(backend.normalizer))
    other = [step.get("type") for step in steps if step.get("type") not in XLMR_NORMALIZERS]
    if other:
        allowed = ", ".join(XLMR_NORMALIZERS)
        refuse(f"its normalizer has {', '.join(map(str, other))}, which XLM-R's ({allowed}) has not")
    pre = _steps(spec(backend.pre_tokenizer))
    metaspace = [step for step in pre if step.get("type") == "Metaspace"]
    if not metaspace or metaspace[0].get("replacement") != SPIECE_UNDERLINE or metaspace[0].get(
            "prepend_scheme", "always") == "never":
        found = ", ".join(str(step.get("type")) for step in pre) or "none"
        refuse(f"its pre-tokenizer is {found}, XLM-R's is Metaspace with replacement {SPIECE_UNDERLINE!r}")
    vocab = backend.get_vocab(with_added_tokens=True)
    cls_id, sep_id = vocab.get(cls_token), vocab.get(sep_token)
    # Truncation and padding saved in the file are dropped: each call sets its own (see `_configure`).
    backend.no_truncation()
    backend.no_padding()
    a, b = (backend.encode(t, add_special_tokens=False).ids for t in ("a", "b"))
    want = [cls_id] + a + [sep_id, sep_id] + b + [sep_id]
    got = backend.encode("a", "b").ids
    if got != want:
        refuse(f"its post-processor makes the pair ('a', 'b') into ids {got}, XLM-R's template <s> A </s></s> B </s> "
               f"gives {want}")


def check_vocabulary(backend: Tokenizer, path: str, processor: Any, model_path: str) -> None:
    """Refuse a tokenizer.json whose vocabulary is not the sentencepiece model's beside it (fairseq's ids)."""
    vocab = backend.get_vocab(with_added_tokens=False)
    expected = dict(FAIRSEQ_IDS)
    expected.update({processor.id_to_piece(i): i + FAIRSEQ_OFFSET for i in range(3, processor.get_piece_size())})
    expected.setdefault(_D["mask_token"], processor.get_piece_size() + FAIRSEQ_OFFSET)
    if vocab == expected:
        return
    for token, index in expected.items():
        if vocab.get(token) != index:
            raise ValueError(f"{path} does not match {model_path}: token {token!r} has id {vocab.get(token)} in the "
                             f"one and {index} in the other")
    extra = sorted(set(vocab) - set(expected))
    raise ValueError(f"{path} does not match {model_path}: it has {len(extra)} tokens the sentencepiece model lacks, "
                     f"first {extra[0]!r}")


def check_added_tokens(backend: Tokenizer, path: str) -> None:
    """Refuse tokens tokenizer.json adds past (or beside) its model's vocabulary: the model has no row for them."""
    vocab = backend.get_vocab(with_added_tokens=False)
    for index, token in sorted(backend.get_added_tokens_decoder().items()):
        if vocab.get(token.content) != index:
            raise NotImplementedError(f"{path}: added token {token.content!r} (id {index}) is not in the model's "
                                      f"vocabulary of {len(vocab)} tokens; added tokens are not supported")


def _serialised(method: Any) -> Any:
    """Run `method` holding the instance's lock. Truncation and padding are state on the Rust tokenizer, set per
    call (`_configure`); a second thread changing them while the first encodes (with the GIL released) would make
    `tokenizers` raise "Already borrowed", or worse, encode with the other call's settings."""
    @functools.wraps(method)
    def locked(self: "XLMRobertaTokenizerFast", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class XLMRobertaTokenizerFast(TokenizerBase):
    """XLM-R's tokenizer on the Rust `tokenizers` library, giving the ids of HF's `XLMRobertaTokenizerFast`.

    Adds what only an alignment-keeping tokenizer can give: `return_offsets_mapping`, `word_ids()`, and
    `return_overflowing_tokens` with `stride` (overlapping windows over a long text, as for QA contexts).

    >>> tok = XLMRobertaTokenizerFast("tests/fixtures/sentencepiece.bpe.model")
    >>> enc = tok("Everyone has the right to life.", return_offsets_mapping=True)
    >>> enc["input_ids"][0], enc["offset_mapping"][1], enc.word_ids()[1]
    (0, (0, 8), 0)
    >>> windows = tok("Everyone has the right to life.", max_length=6, truncation=True, stride=2,
    ...               return_overflowing_tokens=True)
    >>> len(windows["input_ids"]) > 1, set(windows["overflow_to_sample_mapping"])
    (True, {0})
    """

    # HF's fast class matches its mask token after normalisation, so "a   <mask>" keeps a "▁" before the mask
    # where the slow class keeps none; we follow each class (this only shows after a run of spaces).
    _special_defaults = {"mask_token": {"lstrip": True, "normalized": True}}

    def __init__(self, vocab_file: str | os.PathLike | None = None, tokenizer_file: str | os.PathLike | None = None,
                 *, bos_token: Any = _D["bos_token"], eos_token: Any = _D["eos_token"],
                 sep_token: Any = _D["sep_token"], cls_token: Any = _D["cls_token"], unk_token: Any = _D["unk_token"],
                 pad_token: Any = _D["pad_token"], mask_token: Any = _D["mask_token"],
                 model_max_length: int | None = None, clean_up_tokenization_spaces: bool = False):
        super().__init__(dict(bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                              unk_token=unk_token, pad_token=pad_token, mask_token=mask_token),
                         model_max_length, clean_up_tokenization_spaces)
        self._lock = threading.RLock()
        if vocab_file is None and tokenizer_file is None:
            raise ValueError("XLMRobertaTokenizerFast needs vocab_file (sentencepiece.bpe.model) or tokenizer_file "
                             "(tokenizer.json)")
        self.vocab_file = None if vocab_file is None else os.fspath(vocab_file)
        self._model = None if vocab_file is None else read_model_file(vocab_file)
        if tokenizer_file is not None:
            path = os.fspath(tokenizer_file)
            self._backend = read_tokenizer_json(path)
            check_pipeline(self._backend, path, self.cls_token, self.sep_token)
            check_added_tokens(self._backend, path)
            if self._model is not None:
                processor = load_sentencepiece(self._model, self.vocab_file)
                check_vocabulary(self._backend, path, processor, self.vocab_file)
        else:
            unique = {t.content: t for t in self._special.values()}.values()
            self._backend = tokenizer_from_sentencepiece(self._model, list(unique), self.vocab_file)
        missing = [t for t in self.all_special_tokens if self._backend.token_to_id(t) is None]
        if missing:
            raise ValueError(f"{tokenizer_file or vocab_file}: special tokens {missing} are not in the vocabulary")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "XLMRobertaTokenizerFast":
        """Read a folder as HF writes it: `tokenizer.json` and/or `sentencepiece.bpe.model`, and the JSON configs."""
        folder = cls._pretrained_folder(path, overrides)
        files = {name: os.path.join(folder, name) for name in (TOKENIZER_FILE, SPM_FILE)}
        found = {name: p for name, p in files.items() if os.path.isfile(p)}
        if not found:
            raise FileNotFoundError(f"{folder} has neither {TOKENIZER_FILE} nor {SPM_FILE}; XLMRobertaTokenizerFast "
                                    f"needs one of them (looked for {', '.join(files.values())})")
        kwargs, added = read_tokenizer_config(folder, overrides)
        tokenizer = cls(found.get(SPM_FILE), found.get(TOKENIZER_FILE), **{**kwargs, **overrides})
        tokenizer._check_added_tokens(added)
        return tokenizer

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._backend

    def __getstate__(self) -> dict[str, Any]:  # a lock cannot be pickled; each copy gets its own
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"XLMRobertaTokenizerFast(vocab_size={self.vocab_size}, model_max_length={self.model_max_length})"

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def _token_to_id(self, token: str) -> int:
        index = self._backend.token_to_id(token)
        return self._backend.token_to_id(self.unk_token) if index is None else index

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _id_to_token(self, index: int) -> str:
        token = self._backend.id_to_token(index)
        if token is None:
            raise IndexError(f"token id {index} is outside the vocabulary of {len(self)} ids")
        return token

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    # ------------------------------------------------------------------ encoding
    @_serialised
    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        self._configure(None)
        return self._backend.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    def _configure(self, options: EncodeOptions | None) -> None:
        """Set the backend's truncation and padding for this call (the backend keeps them between calls)."""
        backend = self._backend
        if options is None or options.truncation == "do_not_truncate":
            backend.no_truncation()
        else:
            try:
                backend.enable_truncation(options.max_length, stride=options.stride, strategy=options.truncation,
                                          direction="right")
            except Exception as e:  # tokenizers refuses a stride that leaves no room to move on
                raise ValueError(f"stride={options.stride} with max_length={options.max_length}: {e}") from None
        if options is None or options.padding == "do_not_pad":
            backend.no_padding()
        else:
            backend.enable_padding(direction="right", pad_id=self.pad_token_id, pad_type_id=0,
                                   pad_token=self.pad_token, pad_to_multiple_of=options.pad_to_multiple_of,
                                   length=options.max_length if options.padding == "max_length" else None)

    def _check_lengths(self, texts: list[str], pairs: list[str] | None, options: EncodeOptions, n_special: int
                       ) -> None:
        """Raise the error that names lengths for the first text that cannot be truncated as asked."""
        self._configure(None)
        firsts = self._backend.encode_batch(texts, add_special_tokens=False)
        seconds = None if pairs is None else self._backend.encode_batch(pairs, add_special_tokens=False)
        for i, first in enumerate(firsts):
            second = None if seconds is None else len(seconds[i].ids)
            try:
                check_truncation(options.truncation, options.max_length, len(first.ids), second, n_special)
            except ValueError as e:
                raise ValueError(f"text {i}: {e}" if len(texts) > 1 else str(e)) from None

    @_serialised
    def _encode_batch(self, texts: list[str], pairs: list[str] | None, options: EncodeOptions) -> BatchEncoding:
        n_special = self.num_special_tokens_to_add(pairs is not None) if options.add_special_tokens else 0
        if options.truncation != "do_not_truncate" and (
                options.max_length < n_special
                or (options.max_length == n_special and pairs is not None and options.truncation != "longest_first")):
            # tokenizers quietly skips truncation below the special-token count, and with nothing left for the
            # texts it empties both texts of a pair whatever the strategy; check those requests here instead.
            self._check_lengths(texts, pairs, options, n_special)
        self._configure(options)
        inputs = texts if pairs is None else list(zip(texts, pairs))
        try:
            encodings = self._backend.encode_batch(inputs, add_special_tokens=options.add_special_tokens)
        except Exception as e:  # tokenizers raises a bare Exception
            if "Truncation error" in str(e):
                self._check_lengths(texts, pairs, options, n_special)
            raise
        columns: dict[str, list] = {}
        if options.return_overflowing_tokens:
            windows, sample = [], []
            for i, encoding in enumerate(encodings):
                group = [encoding, *encoding.overflowing]
                windows += group
                sample += [i] * len(group)
            encodings = windows
            columns["overflow_to_sample_mapping"] = sample
        columns["input_ids"] = [e.ids for e in encodings]
        if options.return_token_type_ids:
            columns["token_type_ids"] = [e.type_ids for e in encodings]
        if options.return_attention_mask:
            columns["attention_mask"] = [e.attention_mask for e in encodings]
        if options.return_special_tokens_mask:
            columns["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if options.return_offsets_mapping:
            columns["offset_mapping"] = [e.offsets for e in encodings]
        return BatchEncoding(columns, encodings)

    # ------------------------------------------------------------------ ids to text
    @_serialised
    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------ files
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None
                        ) -> tuple[str]:
        """Write `sentencepiece.bpe.model`, which the slow tokenizer needs (only if this one was given it)."""
        if self._model is None:
            raise ValueError("this tokenizer was read from tokenizer.json alone, so it has no sentencepiece model to "
                             "save; load it with vocab_file=... to be able to write one")
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + SPM_FILE)
        atomic_write_bytes(path, self._model)
        return (path,)

    @_serialised
    def _save_model_files(self, folder: str) -> list[str]:
        self._configure(None)  # the per-call truncation and padding are not part of the saved tokenizer
        path = os.path.join(folder, TOKENIZER_FILE)
        atomic_write_text(path, self._backend.to_str(pretty=True))
        return [path] + (list(self.save_vocabulary(folder)) if self._model is not None else [])
