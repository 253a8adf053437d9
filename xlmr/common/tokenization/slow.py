"""XLMRobertaTokenizer: the "slow" XLM-R tokenizer, on the sentencepiece library, with fairseq's id layout."""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import sentencepiece as spm

from xlmr.common.io import atomic_write_bytes
from xlmr.common.tokenization.sentencepiece_model import MODEL_TYPES, UNIGRAM, model_type
from xlmr.common.tokenization.base import (
    DEFAULT_SPECIAL_TOKENS as _D,
    SPIECE_UNDERLINE,
    SPM_FILE,
    BatchEncoding,
    EncodeOptions,
    TokenizerBase,
    padded_length,
    read_tokenizer_config,
    truncate,
)

# fairseq's dictionary puts these four symbols first, so every sentencepiece piece moves up by one and
# sentencepiece's own <unk>, <s>, </s> (pieces 0, 1, 2) are shadowed; <mask> is appended after the last piece.
FAIRSEQ_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
FAIRSEQ_OFFSET = 1
SPM_SPECIAL_PIECES = ("<unk>", "<s>", "</s>")


def load_sentencepiece(model: bytes, source: str) -> spm.SentencePieceProcessor:
    """A sentencepiece processor for `model` (the file's bytes), checked for the layout XLM-R's ids assume."""
    try:
        processor = spm.SentencePieceProcessor(model_proto=model)
    except RuntimeError as e:
        raise ValueError(f"{source} is not a valid sentencepiece model ({str(e).strip() or 'unparsable'})") from None
    kind = model_type(model)
    if kind != UNIGRAM:
        # HF's slow class takes a BPE model and its fast converter builds a BPE pipeline from it, but no XLM-R
        # checkpoint uses one; both our classes refuse it, so that they can never disagree on it.
        raise ValueError(f"{source}: XLM-R's tokenizer is a unigram sentencepiece model; this one is "
                         f"{MODEL_TYPES.get(kind, 'unknown')} (model type {kind})")
    first = tuple(processor.id_to_piece(i) for i in range(min(3, processor.get_piece_size())))
    if first != SPM_SPECIAL_PIECES:
        raise ValueError(f"{source}: XLM-R's id layout needs sentencepiece pieces 0, 1, 2 to be "
                         f"{SPM_SPECIAL_PIECES}, found {first}")
    return processor


def read_model_file(path: str | os.PathLike) -> bytes:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sentencepiece model {path} does not exist")
    with open(path, "rb") as f:
        return f.read()


class XLMRobertaTokenizer(TokenizerBase):
    """XLM-R's tokenizer on the sentencepiece library, giving the ids of Hugging Face's `XLMRobertaTokenizer`.

    Ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, sentencepiece piece i at i + 1, `<mask>` last. Special tokens
    written in the text are kept whole; `<mask>` also swallows the whitespace before it.

    >>> tok = XLMRobertaTokenizer("tests/fixtures/sentencepiece.bpe.model")
    >>> batch = tok(["Everyone has the right to life.", "Hi <mask>"], padding=True, return_tensors="np")
    >>> batch["input_ids"].shape[0], int(batch["input_ids"][1, 0]), tok.decode(batch["input_ids"][1], True)
    (2, 0, 'Hi')
    """

    def __init__(self, vocab_file: str | os.PathLike, *, bos_token: Any = _D["bos_token"],
                 eos_token: Any = _D["eos_token"], sep_token: Any = _D["sep_token"], cls_token: Any = _D["cls_token"],
                 unk_token: Any = _D["unk_token"], pad_token: Any = _D["pad_token"],
                 mask_token: Any = _D["mask_token"], model_max_length: int | None = None,
                 clean_up_tokenization_spaces: bool = False):
        super().__init__(dict(bos_token=bos_token, eos_token=eos_token, sep_token=sep_token, cls_token=cls_token,
                              unk_token=unk_token, pad_token=pad_token, mask_token=mask_token),
                         model_max_length, clean_up_tokenization_spaces)
        self.vocab_file = os.fspath(vocab_file)
        self._model = read_model_file(self.vocab_file)  # kept so that saving writes the very same bytes
        self.sp_model = load_sentencepiece(self._model, self.vocab_file)
        self._ids = dict(FAIRSEQ_IDS, **{"<mask>": self.sp_model.get_piece_size() + FAIRSEQ_OFFSET})
        self._tokens = {i: token for token, i in self._ids.items()}
        by_length = sorted(self.all_special_tokens, key=len, reverse=True)  # leftmost-longest match
        self._special_pattern = re.compile("(" + "|".join(map(re.escape, by_length)) + ")")
        self._by_content = {t.content: t for t in self._special.values()}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "XLMRobertaTokenizer":
        """Read a folder as Hugging Face writes it: `sentencepiece.bpe.model` plus, if there, the two JSON configs."""
        folder = cls._pretrained_folder(path, overrides)
        model = os.path.join(folder, SPM_FILE)
        if not os.path.isfile(model):
            raise FileNotFoundError(f"{folder} has no {SPM_FILE}, the file XLMRobertaTokenizer reads "
                                    f"(looked for {model}); a folder with only tokenizer.json needs "
                                    f"XLMRobertaTokenizerFast")
        kwargs, added = read_tokenizer_config(folder, overrides)
        tokenizer = cls(model, **{**kwargs, **overrides})
        tokenizer._check_added_tokens(added)
        return tokenizer

    def __repr__(self) -> str:
        return (f"XLMRobertaTokenizer(vocab_file={self.vocab_file!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length})")

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size() + FAIRSEQ_OFFSET + 1

    def get_vocab(self) -> dict[str, int]:
        return {self._id_to_token(i): i for i in range(self.vocab_size)}

    def _token_to_id(self, token: str) -> int:
        if token in self._ids:
            return self._ids[token]
        piece = self.sp_model.piece_to_id(token)
        return piece + FAIRSEQ_OFFSET if piece else self._ids["<unk>"]  # piece 0 is sentencepiece's <unk>

    def _id_to_token(self, index: int) -> str:
        if index in self._tokens:
            return self._tokens[index]
        if not len(FAIRSEQ_IDS) <= index < self.vocab_size:
            raise IndexError(f"token id {index} is outside the vocabulary of {self.vocab_size} ids")
        return self.sp_model.id_to_piece(index - FAIRSEQ_OFFSET)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    # ------------------------------------------------------------------ text to tokens
    def _split(self, text: str) -> list[str]:
        """Text and special tokens alternating (text first), with the whitespace the special tokens swallow removed."""
        parts = self._special_pattern.split(text)
        for i in range(1, len(parts), 2):
            token = self._by_content[parts[i]]
            if token.lstrip:
                parts[i - 1] = parts[i - 1].rstrip()
            if token.rstrip:
                parts[i + 1] = parts[i + 1].lstrip()
        return parts

    def tokenize(self, text: str) -> list[str]:
        """Sentencepiece pieces, each stretch of text between special tokens encoded on its own (as HF does)."""
        tokens = []
        for i, part in enumerate(self._split(text)):
            tokens += [part] if i % 2 else self.sp_model.encode(part, out_type=str)
        return tokens

    def _text_to_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        unk = self._ids["<unk>"]
        for i, part in enumerate(self._split(text)):
            if i % 2:
                ids.append(self._token_to_id(part))
            elif part:
                ids += [p + FAIRSEQ_OFFSET if p else unk for p in self.sp_model.encode(part)]
        return ids

    def _encode_batch(self, texts: list[str], pairs: list[str] | None, options: EncodeOptions) -> BatchEncoding:
        for flag in ("return_offsets_mapping", "return_overflowing_tokens"):
            if getattr(options, flag):
                raise NotImplementedError(f"{flag} needs XLMRobertaTokenizerFast; the slow tokenizer keeps no "
                                          f"character offsets")
        n_special = self.num_special_tokens_to_add(pairs is not None) if options.add_special_tokens else 0
        rows, masks = [], []
        for i, text in enumerate(texts):
            ids = self._text_to_ids(text)
            pair_ids = None if pairs is None else self._text_to_ids(pairs[i])
            try:
                ids, pair_ids = truncate(ids, pair_ids, options.truncation, options.max_length, n_special)
            except ValueError as e:
                raise ValueError(f"text {i}: {e}" if len(texts) > 1 else str(e)) from None
            if options.add_special_tokens:
                rows.append(self.build_inputs_with_special_tokens(ids, pair_ids))
                masks.append(self.get_special_tokens_mask(ids, pair_ids))
            else:
                rows.append(ids + (pair_ids or []))
                masks.append([0] * len(rows[-1]))
        target = padded_length([len(r) for r in rows], options.padding, options.max_length,
                               options.pad_to_multiple_of)
        fill = [max(target - len(r), 0) for r in rows]
        columns = {"input_ids": [r + [self.pad_token_id] * n for r, n in zip(rows, fill)]}
        if options.return_token_type_ids:
            columns["token_type_ids"] = [[0] * (len(r) + n) for r, n in zip(rows, fill)]
        if options.return_attention_mask:
            columns["attention_mask"] = [[1] * len(r) + [0] * n for r, n in zip(rows, fill)]
        if options.return_special_tokens_mask:
            columns["special_tokens_mask"] = [m + [1] * n for m, n in zip(masks, fill)]
        return BatchEncoding(columns)

    # ------------------------------------------------------------------ ids to text
    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return "".join(self.convert_ids_to_tokens(ids, skip_special_tokens)).replace(SPIECE_UNDERLINE, " ").strip()

    # ------------------------------------------------------------------ files
    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None
                        ) -> tuple[str]:
        """Write `sentencepiece.bpe.model` (byte for byte the file this tokenizer was read from)."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + SPM_FILE)
        atomic_write_bytes(path, self._model)
        return (path,)

    def _save_model_files(self, folder: str) -> list[str]:
        return list(self.save_vocabulary(folder))
