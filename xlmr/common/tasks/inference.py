"""Turning model outputs into answers, once for the three backends: numpy in, Python values out.

Everything the pipelines (``xlmr.pipeline``) and ``generate`` do after a forward pass lives here: softmax and
sigmoid scores, fill-mask candidates, token windows over long texts, token-classification aggregation (HF's
``none``/``simple``/``first``/``average``/``max``) and merging of windows, question-answering span decoding over
windows with a null score, sentence-embedding pooling, and generation's logits processors with seeded sampling.
Each backend only produces logits; sampling on the host from each step's logits with a seeded numpy Generator is
what makes sampled text identical across backends for the same seed.

Example:
    >>> import numpy as np
    >>> from xlmr.common.tasks.inference import softmax, token_windows
    >>> softmax(np.array([0.0, np.log(3.0)])).round(3).tolist()
    [0.25, 0.75]
    >>> token_windows(10, size=4, stride=1)      # tokenizers' overflow rule: step = size - stride
    [(0, 4), (3, 7), (6, 10)]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
CLASSIFICATION_FUNCTIONS = ("none", "softmax", "sigmoid")
POOLING = ("mean", "cls")


# ------------------------------------------------------------------------------------------------ scores
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, in float64 so that scores agree across backends to well below 1e-5."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, in float64.

    >>> sigmoid(np.array([0.0])).tolist()
    [0.5]
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a one-line ValueError naming the argument.

    >>> check_choice("pooling", "max", POOLING)
    Traceback (most recent call last):
    ...
    ValueError: pooling='max' is not one of 'mean', 'cls'
    """
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(repr(c) for c in choices)}")
    return value


def check_positive(name: str, value: Any, allow_none: bool = False) -> Any:
    """``value`` if it is an int >= 1 (or None when allowed), else a one-line ValueError naming the argument."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def classification_function(function_to_apply: str | None, problem_type: str | None, num_labels: int) -> str:
    """HF's choice when ``function_to_apply`` is None: sigmoid for multi-label or a single output, else softmax.

    >>> classification_function(None, None, 3), classification_function(None, "multi_label_classification", 3)
    ('softmax', 'sigmoid')
    """
    if function_to_apply is not None:
        return check_choice("function_to_apply", str(getattr(function_to_apply, "value", function_to_apply)).lower(),
                            CLASSIFICATION_FUNCTIONS)
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def classification_scores(logits: np.ndarray, function: str) -> np.ndarray:
    """Scores of one row of sequence-classification logits under ``function`` (none, softmax or sigmoid)."""
    if function == "sigmoid":
        return sigmoid(logits)
    if function == "softmax":
        return softmax(logits)
    return np.asarray(logits, np.float64)


def ranked_labels(scores: np.ndarray, id2label: dict[int, str], top_k: int | None) -> list[dict[str, Any]]:
    """[{"label", "score"}] best first, the first ``top_k`` (all with None); ties keep label order.

    >>> ranked_labels(np.array([0.2, 0.8]), {0: "no", 1: "yes"}, 1)
    [{'label': 'yes', 'score': 0.8}]
    """
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [{"label": id2label[int(i)], "score": float(scores[i])} for i in order]


# ------------------------------------------------------------------------------------------------ fill-mask
def fill_mask_candidates(logits: np.ndarray, top_k: int, target_ids: Sequence[int] | None = None
                         ) -> list[tuple[int, float]]:
    """(token id, probability) of the ``top_k`` likeliest tokens at one masked position, best first.

    With ``target_ids`` only those are ranked (probabilities stay those of the whole vocabulary, as in HF).

    >>> [(i, round(p, 6)) for i, p in fill_mask_candidates(np.log(np.array([0.1, 0.6, 0.3])), 2)]
    [(1, 0.6), (2, 0.3)]
    """
    probs = softmax(logits)
    ids = np.arange(probs.shape[-1]) if target_ids is None else np.asarray(list(target_ids), np.int64)
    order = np.argsort(-probs[ids], kind="stable")[:top_k]
    return [(int(ids[i]), float(probs[ids[i]])) for i in order]


# ------------------------------------------------------------------------------------------------ windows
def token_windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Windows [start, stop) of at most ``size`` tokens over ``n`` tokens, consecutive windows sharing ``stride``.

    The rule of ``tokenizers``' overflowing truncation (HF's ``return_overflowing_tokens`` with ``stride``): windows
    start every ``size - stride`` tokens until one reaches the end.
    """
    if size < 1:
        raise ValueError(f"a window must hold at least one token, got size={size} (max_length too small for the "
                         f"special tokens and the question)")
    if not 0 <= stride < size:
        raise ValueError(f"stride={stride} must be at least 0 and below the window of {size} tokens")
    windows = []
    for start in range(0, max(n, 1), size - stride):
        stop = min(start + size, n)
        windows.append((start, stop))
        if stop == n:
            break
    return windows


def default_stride(size: int) -> int:
    """Overlap between windows when none is given: half a window, at most 128 tokens (HF's QA ``doc_stride``)."""
    return min(128, size // 2)


# ------------------------------------------------------------------------------------------------ token classification
@dataclasses.dataclass
class TokenPiece:
    """One non-special token of a text, as token classification sees it."""

    index: int            # position in the text's whole encoding (<s> is 0), across windows
    token: str            # the vocabulary piece, e.g. "▁Every"
    scores: np.ndarray    # probabilities over the labels
    start: int            # character offsets into the text
    end: int
    is_subword: bool


def token_pieces(text: str, ids: Sequence[int], tokens: Sequence[str], scores: np.ndarray,
                 offsets: Sequence[tuple[int, int]], first_index: int, unk_id: int) -> list[TokenPiece]:
    """HF's ``gather_pre_entities`` for a tokenizer without word-continuation markers (XLM-R's unigram).

    A piece continues a word when it does not start the text and no space touches its first character; an
    unknown piece is shown as the text it covers and starts a word.

    >>> pieces = token_pieces("Everyone has", [5665, 129, 11], ["▁Everyone", "▁ha", "s"], np.eye(3)[[0, 1, 1]],
    ...                       [(0, 8), (8, 11), (11, 12)], first_index=1, unk_id=3)
    >>> [(p.index, p.is_subword) for p in pieces]
    [(1, False), (2, False), (3, True)]
    """
    pieces = []
    for i, (token_id, token, (start, end)) in enumerate(zip(ids, tokens, offsets)):
        subword = start > 0 and " " not in text[start - 1:start + 1]
        if token_id == unk_id:
            token, subword = text[start:end], False
        pieces.append(TokenPiece(first_index + i, token, scores[i], int(start), int(end), subword))
    return pieces


def _entity(label: str, score: float, word: str, start: int, end: int, index: int | None = None
            ) -> dict[str, Any]:
    entity: dict[str, Any] = {"entity": label, "score": float(score)}
    if index is not None:
        entity["index"] = index
    entity.update(word=word, start=start, end=end)
    return entity


def _word_entity(group: list[TokenPiece], strategy: str, id2label: dict[int, str],
                 tokens_to_string: Callable[[list[str]], str]) -> dict[str, Any]:
    """One word (a piece and its continuations) labelled by its first piece, the piece with the highest score,
    or the average of its pieces' scores."""
    if strategy == "first":
        scores = group[0].scores
    elif strategy == "max":
        scores = max(group, key=lambda p: p.scores.max()).scores
    else:
        scores = np.nanmean(np.stack([p.scores for p in group]), axis=0)
    best = int(scores.argmax())
    entity = _entity(id2label[best], scores[best], tokens_to_string([p.token for p in group]), group[0].start,
                     group[-1].end)
    entity["_tokens"] = [p.token for p in group]
    return entity


def _bio(label: str) -> tuple[str, str]:
    """("B" or "I", type) of a label; a label without a B-/I- prefix continues (HF's ``get_tag``)."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def _group(run: list[dict[str, Any]], tokens_to_string: Callable[[list[str]], str]) -> dict[str, Any]:
    tokens = [t for e in run for t in e.get("_tokens", [e["word"]])]
    return {"entity_group": run[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean(np.nanmean([e["score"] for e in run]))),
            "word": tokens_to_string(tokens), "start": run[0]["start"], "end": run[-1]["end"]}


def group_entities(entities: list[dict[str, Any]], tokens_to_string: Callable[[list[str]], str]
                   ) -> list[dict[str, Any]]:
    """Adjacent entities of one type merged into ``entity_group``s; a ``B-`` label always opens a new group."""
    groups, run = [], []
    for entity in entities:
        if run:
            bi, tag = _bio(entity["entity"])
            if not (tag == _bio(run[-1]["entity"])[1] and bi != "B"):
                groups.append(_group(run, tokens_to_string))
                run = []
        run.append(entity)
    if run:
        groups.append(_group(run, tokens_to_string))
    return groups


def aggregate_tokens(pieces: list[TokenPiece], strategy: str, id2label: dict[int, str],
                     tokens_to_string: Callable[[list[str]], str], ignore_labels: Sequence[str] = ("O",)
                     ) -> list[dict[str, Any]]:
    """HF's token-classification output for the pieces of one window under ``strategy``.

    ``none``: one entity per piece (with its ``index``); ``simple``: pieces grouped by label; ``first`` /
    ``average`` / ``max``: pieces first joined into words (one label per word), then grouped. Entities whose
    label is in ``ignore_labels`` are dropped. A group's ``word`` is the text of all its pieces (HF joins
    already-decoded words without their spaces).

    >>> pieces = token_pieces("Ana Lima", [1, 2, 3], ["▁Ana", "▁Li", "ma"], np.array(
    ...     [[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]]), [(0, 3), (3, 6), (6, 8)], 1, unk_id=0)
    >>> join = lambda tokens: "".join(tokens).replace("▁", " ").strip()
    >>> labels = {0: "O", 1: "B-PER", 2: "I-PER"}
    >>> [(e["entity_group"], e["word"], e["start"], e["end"]) for e in aggregate_tokens(pieces, "first", labels, join)]
    [('PER', 'Ana Lima', 0, 8)]
    >>> [e["entity"] for e in aggregate_tokens(pieces, "none", labels, join)]
    ['B-PER', 'I-PER']
    """
    check_choice("aggregation_strategy", strategy, AGGREGATION_STRATEGIES)
    if strategy in ("none", "simple"):
        entities = []
        for p in pieces:
            best = int(p.scores.argmax())
            entities.append(_entity(id2label[best], p.scores[best], p.token, p.start, p.end, p.index))
    else:
        entities, word = [], []
        for p in pieces:
            if word and not p.is_subword:
                entities.append(_word_entity(word, strategy, id2label, tokens_to_string))
                word = []
            word.append(p)
        if word:
            entities.append(_word_entity(word, strategy, id2label, tokens_to_string))
    if strategy != "none":
        entities = group_entities(entities, tokens_to_string)
    kept = [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore_labels]
    for e in kept:
        e.pop("_tokens", None)
    return kept


def merge_windows(entities: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
    """Entities of overlapping windows as one list in text order.

    Pieces (``none``) seen in two windows keep their better-scored copy; groups that overlap keep the longest
    span, then the higher score (HF's ``aggregate_overlapping_entities``).

    >>> merge_windows([{"start": 0, "end": 4, "score": 0.9}, {"start": 2, "end": 9, "score": 0.5},
    ...                {"start": 9, "end": 12, "score": 0.7}], "simple")
    [{'start': 2, 'end': 9, 'score': 0.5}, {'start': 9, 'end': 12, 'score': 0.7}]
    """
    if strategy == "none":
        best: dict[int, dict[str, Any]] = {}
        for e in entities:
            if e["index"] not in best or e["score"] > best[e["index"]]["score"]:
                best[e["index"]] = e
        return [best[i] for i in sorted(best)]
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged, previous = [], entities[0]
    for e in entities[1:]:
        if previous["start"] <= e["start"] < previous["end"]:
            longer = e["end"] - e["start"] - (previous["end"] - previous["start"])
            if longer > 0 or (longer == 0 and e["score"] > previous["score"]):
                previous = e
        else:
            merged.append(previous)
            previous = e
    merged.append(previous)
    return merged


# ------------------------------------------------------------------------------------------------ question answering
@dataclasses.dataclass
class AnswerWindow:
    """One window of a question-answering input: its logits and where its context tokens lie in the context."""

    start_logits: np.ndarray
    end_logits: np.ndarray
    offsets: Sequence[tuple[int, int] | None]   # character span in the context; None outside the context
    word_ids: Sequence[int | None]              # word of the context each token belongs to; None outside
    cls_index: int = 0


def window_spans(window: AnswerWindow, top_k: int, max_answer_len: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(starts, ends, scores, null score) of the ``top_k`` best answer spans of one window, as HF scores them.

    Start and end probabilities are softmaxes over the context tokens and the CLS token; a span's score is
    p(start) * p(end) with start <= end < start + ``max_answer_len``; the null score is p(CLS) * p(CLS).
    """
    desired = np.array([o is not None for o in window.offsets])
    allowed = desired.copy()
    allowed[window.cls_index] = True
    start = softmax(np.where(allowed, window.start_logits, -10000.0))
    end = softmax(np.where(allowed, window.end_logits, -10000.0))
    null = float(start[window.cls_index] * end[window.cls_index])
    start[~desired], end[~desired] = 0.0, 0.0
    candidates = np.tril(np.triu(start[:, None] * end[None, :]), max_answer_len - 1)
    flat = candidates.ravel()
    order = np.argsort(-flat, kind="stable")[:top_k]
    starts, ends = np.unravel_index(order, candidates.shape)
    keep = desired[starts] & desired[ends]
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], null


def _word_span(window: AnswerWindow, token: int, first: bool) -> int:
    """Character where the word holding ``token`` starts (``first``) or ends, within this window's tokens."""
    word = window.word_ids[token]
    same = [i for i, w in enumerate(window.word_ids) if w == word and window.offsets[i] is not None]
    return window.offsets[same[0]][0] if first else window.offsets[same[-1]][1]


def decode_answers(windows: Sequence[AnswerWindow], context: str, top_k: int = 1, max_answer_len: int = 15,
                   handle_impossible_answer: bool = False, align_to_words: bool = True) -> list[dict[str, Any]]:
    """The ``top_k`` answers over all windows of one (question, context): [{"score", "start", "end", "answer"}].

    Each window proposes ``2 * top_k + 10`` spans, widened to whole words (``align_to_words``); spans of equal
    text (ignoring case) add their scores; with ``handle_impossible_answer`` the lowest null score over the
    windows competes as the empty answer (start = end = 0), as in HF's pipeline.

    >>> context = "Paris is big"                       # <s> question </s> </s> ▁Paris ▁is ▁big </s>
    >>> offsets = [None, None, None, None, (0, 5), (5, 8), (8, 12), None]
    >>> words = [None, None, None, None, 0, 1, 2, None]
    >>> start, end = np.array([0, 0, 0, 0, 5.0, 0, 0, 0]), np.array([0, 0, 0, 0, 5.0, 0, 0, 0])
    >>> answer = decode_answers([AnswerWindow(start, end, offsets, words)], context)[0]
    >>> answer["answer"], answer["start"], answer["end"], round(answer["score"], 3)
    ('Paris', 0, 5, 0.961)
    """
    min_null, answers = 1e6, []
    for window in windows:
        starts, ends, scores, null = window_spans(window, 2 * top_k + 10 if align_to_words else top_k,
                                                  max_answer_len)
        min_null = min(min_null, null)
        for s, e, score in zip(starts, ends, scores):
            if align_to_words:
                begin, finish = _word_span(window, int(s), True), _word_span(window, int(e), False)
            else:
                begin, finish = window.offsets[s][0], window.offsets[e][1]
            text = context[begin:finish]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += float(score)
            else:
                answers.append({"score": float(score), "start": int(begin), "end": int(finish), "answer": text})
    if handle_impossible_answer:
        answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def postprocess_answers(windows: Sequence[AnswerWindow], context: str, n_best_size: int = 20,
                        max_answer_length: int = 30, with_no_answer: bool = False,
                        null_score_diff_threshold: float = 0.0) -> dict[str, Any]:
    """The answer of one example as HF's run_qa post-processing picks it (what ``evaluate`` and ``predict`` use;
    the pipeline keeps the pipeline's rules): {"answer", "start", "end", "score"}.

    In every window the ``n_best_size`` highest start logits are paired with the ``n_best_size`` highest end
    logits; a pair counts when both tokens lie in the context, end >= start and it spans at most
    ``max_answer_length`` tokens, and it scores start logit + end logit (logits, so windows compare directly).
    The text is the characters from the start token's first to the end token's last, not widened to words. The
    null score is the lowest CLS start + end logit over the windows; ``with_no_answer`` (SQuAD v2) answers "" when
    it exceeds the best span's score by more than ``null_score_diff_threshold``. ``score`` is the softmax
    probability of the answer among the ``n_best_size`` best candidates (and the null one).

    >>> offsets = [None, None, None, None, (0, 5), (5, 8), (8, 12), None]   # <s> q </s></s> Paris is big </s>
    >>> start, end = np.array([3.0, 0, 0, 0, 5, 1, 0, 0]), np.array([3.0, 0, 0, 0, 4, 0, 2, 0])
    >>> window = AnswerWindow(start, end, offsets, [None] * 4 + [0, 1, 2, None])
    >>> postprocess_answers([window], "Paris is big")["answer"]                       # 5 + 4 beats 3 + 3
    'Paris'
    >>> postprocess_answers([window], "Paris is big", with_no_answer=True, null_score_diff_threshold=-4)["answer"]
    ''
    """
    null_score, candidates = None, []
    for window in windows:
        start, end = np.asarray(window.start_logits, np.float64), np.asarray(window.end_logits, np.float64)
        null = float(start[window.cls_index] + end[window.cls_index])
        null_score = null if null_score is None else min(null_score, null)
        starts = np.argsort(-start, kind="stable")[:n_best_size]
        ends = np.argsort(-end, kind="stable")[:n_best_size]
        for s in starts:
            for e in ends:
                if window.offsets[s] is None or window.offsets[e] is None or e < s or e - s >= max_answer_length:
                    continue
                candidates.append((float(start[s] + end[e]), window.offsets[s][0], window.offsets[e][1]))
    answers = [{"score": score, "start": int(a), "end": int(b), "answer": context[a:b]} for score, a, b in candidates]
    null = {"score": null_score, "start": 0, "end": 0, "answer": ""}
    # run_qa ranks the null candidate with the spans, keeps the n best, and puts it back if it fell out
    answers = sorted(answers + ([null] if with_no_answer else []), key=lambda a: -a["score"])[:n_best_size]
    if with_no_answer and not any(a is null for a in answers):
        answers.append(null)
    if not answers:
        return {"score": 0.0, "start": 0, "end": 0, "answer": ""}
    probabilities = softmax(np.array([a["score"] for a in answers]))
    for a, p in zip(answers, probabilities):
        a["logit"], a["score"] = a["score"], float(p)
    best = next((a for a in answers if a["answer"]), None)
    if with_no_answer and (best is None or null_score - best["logit"] > null_score_diff_threshold):
        best = null
    best = best if best is not None else answers[0]
    return {k: best[k] for k in ("score", "start", "end", "answer")}


# ------------------------------------------------------------------------------------------------ embeddings
def pool(hidden: np.ndarray, pooling: str | None, normalize: bool) -> np.ndarray:
    """A sentence embedding from one sequence's hidden states (tokens, width): the mean over its tokens or the
    first (<s>) token, optionally scaled to unit length; ``pooling=None`` keeps every token's vector.

    >>> pool(np.array([[1.0, 0.0], [3.0, 0.0]]), "mean", True).tolist()
    [1.0, 0.0]
    """
    hidden = np.asarray(hidden, np.float64)
    if pooling is None:
        vectors = hidden
    else:
        vectors = hidden.mean(axis=0) if check_choice("pooling", pooling, POOLING) == "mean" else hidden[0]
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return vectors


# ------------------------------------------------------------------------------------------------ generation
def check_generation_arguments(max_new_tokens: int, do_sample: bool, temperature: float, top_k: int,
                               top_p: float) -> None:
    """One-line ValueErrors for decoding settings that cannot work."""
    check_positive("max_new_tokens", max_new_tokens)
    if not isinstance(do_sample, (bool, np.bool_)):
        raise ValueError(f"do_sample={do_sample!r} must be True or False")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be a number above 0")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k={top_k!r} must be an integer >= 0 (0 keeps every token)")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r} must be in (0, 1]")


def process_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """HF's sampling warpers in HF's order: divide by ``temperature``, keep the ``top_k`` best (ties at the k-th
    kept), keep the smallest set whose probability reaches ``top_p`` (at least one token); the rest get -inf.

    >>> process_logits(np.log(np.array([[0.5, 0.3, 0.2]])), top_p=0.6)[0].round(3).tolist()
    [-0.693, -1.204, -inf]
    """
    logits = np.asarray(logits, np.float64) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    if top_p < 1.0:
        order = np.argsort(logits, axis=-1, kind="stable")            # ascending, as HF's TopPLogitsWarper
        cumulative = np.cumsum(softmax(np.take_along_axis(logits, order, -1)), axis=-1)
        remove = cumulative <= 1 - top_p
        remove[:, -1] = False
        drop = np.zeros_like(remove)
        np.put_along_axis(drop, order, remove, -1)
        logits = np.where(drop, -np.inf, logits)
    return logits


def next_tokens(logits: np.ndarray, do_sample: bool, temperature: float, top_k: int, top_p: float,
                rng: np.random.Generator | None) -> np.ndarray:
    """The next token of each row: the argmax (greedy) or a draw from the processed distribution.

    A draw is the inverse CDF at one uniform number per row, so backends whose logits differ by float noise
    pick the same token.
    """
    if not do_sample:
        return np.argmax(logits, axis=-1).astype(np.int64)
    probs = softmax(process_logits(logits, temperature, top_k, top_p))
    cumulative = np.cumsum(probs, axis=-1)
    u = rng.random(len(probs)) * cumulative[:, -1]
    chosen = np.array([np.searchsorted(c, x, side="right") for c, x in zip(cumulative, u)])
    return np.minimum(chosen, probs.shape[-1] - 1).astype(np.int64)


def prompt_positions(attention_mask: np.ndarray, padding_idx: int) -> np.ndarray:
    """XLM-R's position ids of a (left-)padded prompt: padding_idx + 1, + 2, ... along each row's real tokens,
    padding_idx on padding, which is what the model computes itself for an unpadded row.

    >>> prompt_positions(np.array([[0, 1, 1], [1, 1, 1]]), padding_idx=1).tolist()
    [[1, 2, 3], [2, 3, 4]]"""
    return np.where(attention_mask != 0, np.cumsum(attention_mask, axis=1) + padding_idx, padding_idx)


def check_prompt(input_ids: Any, attention_mask: Any, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The prompt as int64 (batch, length) arrays and its mask (ones when None), with one-line errors."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"input_ids must be a non-empty (batch, length) array of token ids, got shape "
                         f"{ids.shape} and dtype {ids.dtype}")
    bad = np.argwhere((ids < 0) | (ids >= vocab_size))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"input_ids holds {int(ids[where])} at {where}, outside [0, {vocab_size}) set by "
                         f"config.vocab_size={vocab_size}")
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask has shape {mask.shape}; input_ids has {ids.shape}")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"prompt row {int(empty[0])} has no token (attention_mask is all zeros)")
    return ids.astype(np.int64), (mask != 0).astype(np.int64)


def generate_ids(forward: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], input_ids: Any,
                 attention_mask: Any, config: Any, max_new_tokens: int = 20, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None) -> np.ndarray:
    """The decoding loop every backend's ``generate`` runs: prompt, then one token per step on the cache.

    ``forward(ids, attention_mask, position_ids)`` runs the model on the new ids (the prompt, then one token),
    keeping its key/value cache between calls, and returns the last position's logits (batch, vocab) as numpy;
    ``attention_mask`` covers the cache and the new ids. Rows stop at ``eos_token_id`` (config's by default)
    and are padded with ``pad_token_id`` afterwards; decoding ends when every row has stopped or after
    ``max_new_tokens``. Returns (batch, prompt length + generated) int64 ids.

    A stand-in model that always predicts "previous token + 1", with eos 4 (row 1 is padded once it has stopped):

    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(vocab_size=10, max_sequence_length=16, max_position_embeddings=18,
    ...                          eos_token_id=4, pad_token_id=1)
    >>> def forward(ids, mask, positions):
    ...     return np.eye(10)[ids[:, -1] + 1]
    >>> generate_ids(forward, np.array([[1, 0, 2], [0, 1, 3]]), np.array([[0, 1, 1], [1, 1, 1]]), config,
    ...              max_new_tokens=5).tolist()
    [[1, 0, 2, 3, 4], [0, 1, 3, 4, 1]]
    """
    check_generation_arguments(max_new_tokens, do_sample, temperature, top_k, top_p)
    ids, mask = check_prompt(input_ids, attention_mask, config.vocab_size)
    limit = config.max_sequence_length
    if ids.shape[1] + max_new_tokens > limit:
        raise ValueError(f"max_new_tokens={max_new_tokens} after a prompt of {ids.shape[1]} tokens needs "
                         f"{ids.shape[1] + max_new_tokens} positions; the model has {limit} "
                         f"(config.max_position_embeddings={config.max_position_embeddings})")
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    pad = config.pad_token_id if pad_token_id is None else pad_token_id
    rng = np.random.default_rng(seed) if do_sample else None
    lengths = mask.sum(axis=1)
    logits = forward(ids, mask, prompt_positions(mask, config.pad_token_id))
    finished = np.zeros(len(ids), bool)
    generated = []
    for step in range(max_new_tokens):
        chosen = next_tokens(logits, do_sample, temperature, top_k, top_p, rng)
        if eos is not None:
            chosen = np.where(finished, pad, chosen)
            finished |= chosen == eos
        generated.append(chosen)
        if finished.all() or step == max_new_tokens - 1:
            break
        mask = np.concatenate([mask, np.ones((len(ids), 1), np.int64)], axis=1)
        lengths = lengths + 1
        logits = forward(chosen[:, None], mask, (lengths + config.pad_token_id)[:, None])
    return np.concatenate([ids, np.stack(generated, axis=1)], axis=1)
