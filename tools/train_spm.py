"""Train the small multilingual sentencepiece model that the tokenizer tests use as a fixture.

The model has XLM-R's shape (a unigram model with `<unk>`, `<s>`, `</s>` as pieces 0, 1, 2, the nmt_nfkc
normaliser, no byte fallback), only much smaller, so that the fixture stays well under 1 MB.

Usage:

    python tools/train_spm.py --data ../shared/data/udhr.jsonl --out tests/fixtures/sentencepiece.bpe.model

The same data and flags give the same file, byte for byte: the training text is every paragraph of every
translation in file order (no random sampling), the trainer runs on one thread with a fixed seed.
"""

import argparse
import io
import json
import os
import tempfile

import sentencepiece as spm

SEED = 1234
TRAINER_FLAGS = dict(
    model_type="unigram",
    vocab_size=8000,
    # UDHR has ~4300 distinct characters, most of them Han; 0.9995 keeps every alphabet and syllabary and the
    # common Han characters while leaving room for sub-word pieces (a rare character is `<unk>`, as in XLM-R).
    character_coverage=0.9995,
    byte_fallback=False,
    normalization_rule_name="nmt_nfkc",
    add_dummy_prefix=True,
    remove_extra_whitespaces=True,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,  # fairseq puts <pad> at id 1 outside the sentencepiece model
    # UDHR paragraphs reach ~6 kB; the default 4192-byte cap would silently drop the longest ones.
    max_sentence_length=8192,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    num_threads=1,  # the pieces chosen depend on the thread count (measured: 1 vs 8 differ); pin it
    minloglevel=2,
)


def training_lines(data_path):
    """Every non-empty paragraph of every translation, in file order."""
    with open(data_path, encoding="utf-8") as f:
        for line in f:
            for paragraph in json.loads(line)["paragraphs"]:
                paragraph = paragraph.strip()
                if paragraph:
                    yield paragraph


def train(data_path, out_path):
    spm.set_random_generator_seed(SEED)
    # Feeding sentences and collecting the model in memory keeps temp paths out of the stored trainer_spec,
    # which would otherwise differ from run to run.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=training_lines(data_path), model_writer=model, **TRAINER_FLAGS)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    # Replace atomically so that an interrupted run never leaves a half-written fixture.
    fd, staged = tempfile.mkstemp(dir=out_dir, prefix=".train_spm.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.getvalue())
        os.replace(staged, out_path)
    except BaseException:
        os.unlink(staged)
        raise
    return out_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="udhr.jsonl: one JSON object a line with `paragraphs`")
    parser.add_argument("--out", required=True, help="where to write the model, e.g. sentencepiece.bpe.model")
    args = parser.parse_args()
    path = train(args.data, args.out)
    processor = spm.SentencePieceProcessor(model_file=path)
    print(f"wrote {path}: {processor.get_piece_size()} pieces, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
