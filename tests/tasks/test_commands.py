"""``xlmr finetune | evaluate | predict`` end to end on a tiny checkpoint: the published folder, metrics that
``evaluate`` and ``predict`` reproduce, one-line errors with exit status 2, and no half-written --output."""

from __future__ import annotations

import json
import os

import pytest

from xlmr.cli import tasks as T
from xlmr.cli.main import main
from xlmr.common.config import XLMRobertaConfig
from xlmr.common.tasks.evaluation import score
from xlmr.common.tasks.labels import LabelSpace
from xlmr.common.tasks.records import read_records

from task_support import read_jsonl, subset

TASKS = ("text-classification", "token-classification", "question-answering", "multiple-choice", "masked-lm",
         "causal-lm")
FLAGS = ["--epochs", "1", "--batch-size", "8", "--doc-stride", "16", "--logging-steps", "2", "--learning-rate", "1e-3"]


@pytest.mark.parametrize("task", TASKS)
def test_finetune_evaluate_predict_agree(task, tiny_checkpoint, tmp_path, capsys):
    train, validation = subset(tmp_path, task, "train", 24), subset(tmp_path, task, "validation", 8)
    out = str(tmp_path / "run")
    assert main(["finetune", task, "--backend", "pt", "--model", tiny_checkpoint, "--train", train,
                 "--validation", validation, "--output", out, *FLAGS,
                 "--max-length", "96" if task == "question-answering" else "64"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert json.loads(printed) == metrics
    for name in ("model.safetensors", "config.json", "tokenizer.json", "xlmr_task.json", "train_log.jsonl"):
        assert os.path.isfile(os.path.join(out, name)), name
    log = read_jsonl(os.path.join(out, "train_log.jsonl"))
    steps = json.load(open(os.path.join(out, "train_args.json")))["steps"]
    assert [x["step"] for x in log] == sorted({*range(2, steps + 1, 2), steps})  # every 2 steps, and the last
    assert set(log[0]) == {"step", "epoch", "loss", "learning_rate"}

    assert main(["evaluate", task, "--backend", "pt", "--model", out, "--data", validation]) == 0
    assert json.loads(capsys.readouterr().out.strip()) == pytest.approx(metrics, rel=1e-9)

    predictions = str(tmp_path / "predictions.jsonl")
    assert main(["predict", task, "--backend", "pt", "--model", out, "--data", validation,
                 "--output", predictions]) == 0
    settings = json.load(open(os.path.join(out, "xlmr_task.json")))
    space = LabelSpace.from_dict(settings["labels"]) if settings["labels"] else None
    recomputed = score(task, read_records(validation, task), read_jsonl(predictions), space)
    assert recomputed == pytest.approx(metrics, rel=1e-9)


def test_config_carries_labels_and_problem_type(tiny_checkpoint, tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": labels}) + "\n" for t, labels in
                             [("a b", ["x"]), ("c d", ["x", "y"]), ("e f", ["y"])]))
    out = str(tmp_path / "run")
    T.finetune("text-classification", "pt", tiny_checkpoint, str(train), str(train), out, epochs=1,
               max_length=32, doc_stride=8, quiet=True)
    config = XLMRobertaConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification"
    assert config.id2label == {0: "x", 1: "y"} and config.architectures == ["XLMRobertaForSequenceClassification"]
    assert config.hidden_dropout_prob == 0.1  # the checkpoint's own value is saved, whatever training used


@pytest.mark.parametrize("rows, message", [
    ([{"tokens": ["a", "b"], "tags": ["O"]}], r"train.jsonl: line 1: field 'tags' has 1 tags for 2 tokens"),
    ([{"tokens": ["a"]}], r"train.jsonl: line 1: missing field 'tags'"),
    ([], r"train.jsonl: no records"),
])
def test_bad_input_is_one_line_with_exit_status_2(tiny_checkpoint, tmp_path, capsys, rows, message):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    status = main(["finetune", "token-classification", "--backend", "pt", "--model", tiny_checkpoint,
                   "--train", str(train), "--validation", str(train), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert pytest.importorskip("re").search(message, err[0]), err[0]
    assert not os.path.exists(tmp_path / "o")


def test_unseen_validation_label_and_doc_stride_errors(tiny_checkpoint, tmp_path, capsys):
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_text(json.dumps({"tokens": ["a"], "tags": ["B-x"]}) + "\n")
    valid.write_text(json.dumps({"tokens": ["a"], "tags": ["B-y"]}) + "\n")
    base = ["finetune", "token-classification", "--backend", "pt", "--model", tiny_checkpoint, "--train",
            str(train), "--output", str(tmp_path / "o")]
    assert main(base + ["--validation", str(valid)]) == 2
    assert "valid.jsonl: line 1: field 'tags' tag 0 is 'B-y'" in capsys.readouterr().err
    assert main(base + ["--validation", str(train), "--max-length", "32", "--doc-stride", "30"]) == 2
    assert "--doc-stride 30 is too large for --max-length 32" in capsys.readouterr().err


def test_existing_output_is_refused_without_force(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    data = subset(tmp_path, "causal-lm", "train", 4)
    args = ["finetune", "causal-lm", "--backend", "pt", "--model", tiny_checkpoint, "--train", data,
            "--validation", data, "--output", str(out), "--max-length", "32", "--doc-stride", "8"]
    assert main(args) == 2 and "already exists; pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(args + ["--force"]) == 0 and not (out / "keep.txt").exists()


def test_interrupted_finetune_leaves_no_output(tiny_checkpoint, tmp_path, monkeypatch):
    data = subset(tmp_path, "masked-lm", "train", 16)
    out = tmp_path / "never"

    def interrupt(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.finetune("masked-lm", "pt", tiny_checkpoint, data, data, str(out), batch_size=2, max_length=32,
                   doc_stride=8, quiet=True, on_step=interrupt)
    # interrupted while publishing: after the weights are written, before the rename
    def broken(folder, *args, **kwargs):
        open(os.path.join(folder, "model.safetensors"), "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt):
        T.finetune("masked-lm", "pt", tiny_checkpoint, data, data, str(out), epochs=1, max_length=32,
                   doc_stride=8, quiet=True)
    assert sorted(os.listdir(tmp_path)) == sorted(["masked-lm-train-16.jsonl"])


def test_missing_head_is_initialised_with_a_warning(tiny_checkpoint, tmp_path):
    data = subset(tmp_path, "multiple-choice", "train", 4)
    prepared = T.prepare("multiple-choice", tiny_checkpoint, data, data, max_length=48, doc_stride=8)
    with pytest.warns(UserWarning, match="newly initialised .*classifier.weight"):
        T.load_for_training(prepared, "pt", seed=0)
