"""Every pipeline task in every backend: the same labels, spans and tokens, scores within 1e-5, and HF 4.57.6's
own pipelines on the same checkpoint as the reference for what they share with ours."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xlmr
from xlmr.backends import installed_backends

from conftest import MAX_LENGTH, texts

TOL = 1e-5
BACKENDS = installed_backends()
TEXTS = texts()
LONG = " ".join(TEXTS[:6])  # well over one window of 36 tokens

# task -> calls (inputs, kwargs) covering its arguments; every backend must answer each alike
CALLS: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "fill-mask": [
        ("Everyone has the right to <mask>.", {}),
        (["<mask> has the right to life.", "Everyone <mask> the <mask> to life, liberty."], {"top_k": 3}),
        ("Everyone has the right to <mask>.", {"targets": ["▁life", "▁liberty", "freedom"]}),
    ],
    "text-classification": [
        (TEXTS[:12], {}),
        (TEXTS[3], {"top_k": None}),
        ({"text": TEXTS[0], "text_pair": TEXTS[1]}, {"top_k": 2, "function_to_apply": "sigmoid"}),
    ],
    "token-classification": [
        (LONG, {"aggregation_strategy": s}) for s in ("none", "simple", "first", "average", "max")
    ] + [
        (TEXTS[:8], {"aggregation_strategy": "simple", "ignore_labels": []}),
        (TEXTS[0].split(), {"is_split_into_words": True, "aggregation_strategy": "first"}),
    ],
    "question-answering": [
        ({"question": TEXTS[0], "context": LONG}, {"top_k": 3}),
        ([{"question": q, "context": c} for q, c in zip(TEXTS[:4], TEXTS[4:8])],
         {"handle_impossible_answer": True, "max_answer_len": 5, "max_question_len": 12}),
    ],
    "multiple-choice": [
        ([{"prompt": TEXTS[0], "choices": TEXTS[1:4]}, {"prompt": TEXTS[4], "choices": TEXTS[5:7]}], {}),
    ],
    "feature-extraction": [
        (TEXTS[:10], {}),
        (TEXTS[2], {"pooling": "cls", "normalize": True}),
        (TEXTS[:3], {"pooling": None}),
    ],
    "text-generation": [
        (["Everyone has the right", TEXTS[1][:40], "A"], {"max_new_tokens": 6}),
        ("Everyone has the right", {"do_sample": True, "seed": 3, "top_k": 50, "top_p": 0.9, "temperature": 0.8,
                                    "max_new_tokens": 8}),
    ],
}


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal structure, strings and ints; floats within TOL."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float) and math.isclose(a, b, rel_tol=TOL, abs_tol=TOL), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


@pytest.fixture(scope="module")
def pipes(checkpoints):
    cache: dict[tuple[str, str], Any] = {}

    def get(task: str, backend: str) -> Any:
        if (task, backend) not in cache:
            cache[task, backend] = xlmr.pipeline(task, model=checkpoints[task], backend=backend)
        return cache[task, backend]
    return get


@pytest.mark.parametrize("task", list(CALLS))
def test_every_backend_gives_the_same_labels_spans_tokens_and_scores(pipes, task):
    if len(BACKENDS) < 2:
        pytest.skip("needs two backends")
    for inputs, kwargs in CALLS[task]:
        outputs = {b: pipes(task, b)(inputs, **kwargs) for b in BACKENDS}
        for b in BACKENDS[1:]:
            assert_same(outputs[BACKENDS[0]], outputs[b], f"{task} {kwargs} {BACKENDS[0]} vs {b}")


def test_a_batch_gives_what_each_input_gives_alone(pipes):
    """Length buckets must not change answers: each text alone (one bucket of one) is the independent number."""
    pipe = pipes("token-classification", "pt")
    batch = pipe(TEXTS[:10], aggregation_strategy="simple", ignore_labels=[])
    for text, got in zip(TEXTS[:10], batch):
        assert_same(pipe(text, aggregation_strategy="simple", ignore_labels=[]), got)
    embed = pipes("feature-extraction", "pt")
    for text, got in zip(TEXTS[:10], embed(TEXTS[:10])):
        assert_same(embed(text), got)


# ------------------------------------------------------------------------------------------------ HF comparisons
@pytest.fixture(scope="module")
def hf(checkpoints, hf_tokenizer):
    import transformers

    from conftest import ARCHITECTURES

    def get(task: str) -> Any:
        model = getattr(transformers, ARCHITECTURES[task][0]).from_pretrained(checkpoints[task]).eval()
        return transformers.pipeline(task, model=model, tokenizer=hf_tokenizer, framework="pt")
    return get


def plain(value: Any) -> Any:
    """HF's numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@pytest.mark.parametrize("inputs,kwargs", CALLS["fill-mask"])
def test_fill_mask_equals_hf(pipes, hf, inputs, kwargs):
    assert_same(plain(hf("fill-mask")(inputs, **kwargs)), pipes("fill-mask", "pt")(inputs, **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"top_k": 2, "function_to_apply": "none"},
                                    {"function_to_apply": "sigmoid"}])
def test_text_classification_equals_hf(pipes, hf, kwargs):
    ours, theirs = pipes("text-classification", "pt"), hf("text-classification")
    for inputs in (TEXTS[5], TEXTS[:6], {"text": TEXTS[0], "text_pair": TEXTS[1]}):
        # both truncate to the model's window (HF only when asked)
        assert_same(plain(theirs(inputs, truncation=True, **kwargs)), ours(inputs, **kwargs))


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_equals_hf(pipes, hf, strategy):
    ours, theirs = pipes("token-classification", "pt"), hf("token-classification")
    short = [t for t in TEXTS if len(ours.tokenizer(t)["input_ids"]) <= MAX_LENGTH][:6]
    assert len(short) == 6
    for text in short:
        mine = ours(text, aggregation_strategy=strategy, ignore_labels=[])
        ref = plain(theirs(text, aggregation_strategy=strategy, ignore_labels=[]))
        if strategy in ("first", "average", "max"):
            # HF joins the words of a group after decoding each, which drops the spaces between them
            # ("Everyonehas"); ours decodes the group's pieces together. Spans and scores are the same.
            for e in ref:
                e.pop("word")
            mine = [{k: v for k, v in e.items() if k != "word"} for e in mine]
        assert_same(ref, mine, text)
    words = short[0].split()
    # HF wraps the result of one list of words in a list (as if it were a batch); ours is that of one text
    assert_same(plain(theirs(words, is_split_into_words=True, aggregation_strategy="simple"))[0],
                ours(words, is_split_into_words=True, aggregation_strategy="simple"))


@pytest.mark.parametrize("strategy", ["simple", "max"])
def test_long_text_windows_merge_as_hf_with_stride(pipes, hf, strategy):
    ours, theirs = pipes("token-classification", "pt"), hf("token-classification")
    assert len(ours.tokenizer(LONG)["input_ids"]) > 3 * MAX_LENGTH
    ref = plain(theirs(LONG, aggregation_strategy=strategy, stride=10))
    mine = ours(LONG, aggregation_strategy=strategy, stride=10)
    if strategy == "max":
        ref, mine = ([{k: v for k, v in e.items() if k != "word"} for e in x] for x in (ref, mine))
    assert_same(ref, mine)
    assert max(e["end"] for e in mine) > len(LONG) * 0.9  # the end of the text is labelled, not cut off


def test_word_of_a_group_is_the_text_it_spans(pipes):
    for e in pipes("token-classification", "pt")(LONG, aggregation_strategy="average", ignore_labels=[]):
        assert e["word"] == LONG[e["start"]:e["end"]].strip()


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"handle_impossible_answer": True, "top_k": 2},
                                    {"max_answer_len": 3, "doc_stride": 5}])
def test_question_answering_equals_hf(pipes, hf, kwargs):
    ours, theirs = pipes("question-answering", "pt"), hf("question-answering")
    for question, context in ((TEXTS[0], TEXTS[1]), ("Who has rights?", LONG)):
        ref = theirs(question=question, context=context, max_seq_len=MAX_LENGTH, **{"doc_stride": 8, **kwargs})
        mine = ours(question=question, context=context, **{"doc_stride": 8, **kwargs})
        assert_same(plain(ref), mine, f"{question[:20]} {kwargs}")
        for answer in mine if isinstance(mine, list) else [mine]:
            assert context[answer["start"]:answer["end"]] == answer["answer"]


def test_feature_extraction_without_pooling_equals_hf(pipes, hf):
    ref = hf("feature-extraction")(TEXTS[:3], truncation=True)
    assert_same(plain(ref), pipes("feature-extraction", "pt")(TEXTS[:3], pooling=None))


def test_mean_pooling_and_normalize_follow_the_token_features(pipes):
    pipe = pipes("feature-extraction", "pt")
    tokens = np.array(pipe(TEXTS[4], pooling=None)[0])
    assert_same(tokens.mean(axis=0).tolist(), pipe(TEXTS[4]))
    unit = tokens[0] / np.linalg.norm(tokens[0])
    assert_same(unit.tolist(), pipe(TEXTS[4], pooling="cls", normalize=True))


def test_multiple_choice_scores_are_the_softmax_of_each_pair_alone(pipes, checkpoints):
    """The independent number: the model run on each (prompt, choice) pair as its own one-choice example."""
    import torch

    from xlmr.pt import XLMRobertaForMultipleChoice

    pipe = pipes("multiple-choice", "pt")
    model = XLMRobertaForMultipleChoice.from_pretrained(checkpoints["multiple-choice"])
    prompt, choices = TEXTS[0], TEXTS[1:4]
    logits = []
    for choice in choices:
        ids = pipe.tokenizer(prompt, choice, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        with torch.no_grad():
            logits.append(float(model(torch.tensor([[ids]])).logits[0, 0]))
    expected = np.exp(logits - np.max(logits))
    expected /= expected.sum()
    out = pipe({"prompt": prompt, "choices": choices})
    assert_same({"label": int(np.argmax(expected)), "scores": expected.tolist()}, out)


def test_text_generation_continues_what_the_model_predicts(pipes, checkpoints):
    """Each new token is the argmax of the model on the whole text so far (no cache): an independent check of
    the cached, batched, left-padded path."""
    import torch

    from xlmr.pt import XLMRobertaForCausalLM

    pipe = pipes("text-generation", "pt")
    model = XLMRobertaForCausalLM.from_pretrained(checkpoints["text-generation"])
    prompts = ["Everyone has the right", TEXTS[2][:50]]
    outputs = pipe(prompts, max_new_tokens=5)
    for prompt, out in zip(prompts, outputs):
        ids = [0] + pipe.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for _ in range(5):
            with torch.no_grad():
                token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == 2:
                break
        continuation = pipe.tokenizer.decode(ids, skip_special_tokens=True)[len(
            pipe.tokenizer.decode(ids[:1 + len(pipe.tokenizer(prompt, add_special_tokens=False)["input_ids"])],
                                  skip_special_tokens=True)):]
        assert out == [{"generated_text": prompt + continuation}]
    alone = pipe(prompts[1], max_new_tokens=5, return_full_text=False)[0]["generated_text"]
    assert outputs[1][0]["generated_text"] == prompts[1] + alone


def test_sampling_depends_on_the_seed_only(pipes):
    pipe = pipes("text-generation", "pt")
    kwargs = dict(do_sample=True, max_new_tokens=10, top_k=0, temperature=2.0)
    first, again = pipe("Everyone", seed=1, **kwargs), pipe("Everyone", seed=1, **kwargs)
    assert first == again
    assert len({pipe("Everyone", seed=s, **kwargs)[0]["generated_text"] for s in range(2, 6)}) > 1


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("task,call,message", [
    ("fill-mask", lambda p: p("no mask here"), "has no <mask>"),
    ("fill-mask", lambda p: p("a <mask>", top_k=0), "top_k=0 must be a positive integer"),
    ("fill-mask", lambda p: p("a <mask>", topk=2), "unknown argument(s) topk"),
    ("fill-mask", lambda p: p([]), "non-empty list"),
    ("text-classification", lambda p: p("a", function_to_apply="tanh"), "function_to_apply='tanh'"),
    ("text-classification", lambda p: p({"txt": "a"}), "keys text and optional text_pair"),
    ("token-classification", lambda p: p("a", aggregation_strategy="longest"), "aggregation_strategy='longest'"),
    ("token-classification", lambda p: p("a", stride=40), "stride=40 must be below the window of 36"),
    ("token-classification", lambda p: p("a b", is_split_into_words=True), "list of words"),
    ("question-answering", lambda p: p(question="", context="text"), "question must be a non-empty string"),
    ("question-answering", lambda p: p(question="q", context="  "), "context must be a non-empty string"),
    ("question-answering", lambda p: p(question="q", context="c", top_k=-1), "top_k=-1"),
    ("question-answering", lambda p: p(question="q", context="c", doc_stride=36), "doc_stride=36 must be below"),
    ("multiple-choice", lambda p: p({"prompt": "a", "choices": []}), "at least one choice"),
    ("feature-extraction", lambda p: p("a", pooling="max"), "pooling='max' is not one of"),
    ("text-generation", lambda p: p("a", max_new_tokens=40), "max_new_tokens=40 after a prompt of 2 tokens"),
    ("text-generation", lambda p: p("a", top_p=0), "top_p=0 must be in (0, 1]"),
    ("text-generation", lambda p: p("a", temperature=0), "temperature=0 must be a number above 0"),
])
def test_bad_input_gets_a_one_line_error_naming_it(pipes, task, call, message):
    with pytest.raises(ValueError) as info:
        call(pipes(task, "pt"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_task_and_aliases(checkpoints):
    with pytest.raises(ValueError, match="unknown task 'summarization'; choose from fill-mask"):
        xlmr.pipeline("summarization")
    from xlmr.pipelines import pipeline_class

    assert pipeline_class("ner").task == "token-classification"
    assert pipeline_class("sentiment-analysis").task == "text-classification"
    with pytest.raises(ValueError, match="aggregation_strategy='bad'"):
        xlmr.pipeline("ner", model=checkpoints["token-classification"], aggregation_strategy="bad")
    with pytest.raises(ValueError, match="max_length=100 must be an integer in \\[4, 38\\]"):
        xlmr.pipeline("ner", model=checkpoints["token-classification"], max_length=100)


def test_a_loaded_model_needs_its_class_and_a_tokenizer(checkpoints):
    from xlmr.pt import XLMRobertaForMaskedLM

    model = XLMRobertaForMaskedLM.from_pretrained(checkpoints["fill-mask"])
    with pytest.raises(ValueError, match="pass tokenizer="):
        xlmr.pipeline("fill-mask", model=model)
    with pytest.raises(ValueError, match="needs an XLMRobertaForTokenClassification, got an XLMRobertaForMaskedLM"):
        xlmr.pipeline("ner", model=model, tokenizer=checkpoints["fill-mask"])
    with pytest.raises(ValueError, match="backend='tf' but model is a pt model"):
        xlmr.pipeline("fill-mask", model=model, backend="tf", tokenizer=checkpoints["fill-mask"])
    pipe = xlmr.pipeline("fill-mask", model=model, tokenizer=checkpoints["fill-mask"])
    assert pipe.backend == "pt" and pipe("a <mask>", top_k=1)[0]["token"] >= 0
