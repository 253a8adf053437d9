"""``question-answering``: the span of a context that answers a question, over windows of a long context.

Example:
    >>> import xlmr
    >>> ask = xlmr.pipeline("question-answering", backend="pt")     # default checkpoint: a new QA head
    >>> out = ask(question="Who has the right to life?", context="Everyone has the right to life.")
    >>> sorted(out), out["answer"] == "Everyone has the right to life."[out["start"]:out["end"]]
    (['answer', 'end', 'score', 'start'], True)
"""

from __future__ import annotations

from typing import Any

from xlmr.common.tasks.inference import AnswerWindow, check_positive, decode_answers, token_windows
from xlmr.pipelines.base import Pipeline


class QuestionAnsweringPipeline(Pipeline):
    """HF's pipeline: ``<s> question </s></s> context window </s>``, windows sharing ``doc_stride`` tokens
    (default: half the room, at most 128), question cut to ``max_question_len`` tokens; each window scores spans
    of at most ``max_answer_len`` tokens by p(start) * p(end), spans widen to whole words, and the best
    ``top_k`` over all windows come back as ``{"score", "start", "end", "answer"}`` (a list when top_k > 1).
    With ``handle_impossible_answer`` the SQuAD v2 null score competes as answer "" at start = end = 0."""

    task = "question-answering"
    architecture = "XLMRobertaForQuestionAnswering"
    defaults = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_question_len": 64,
                "handle_impossible_answer": False, "align_to_words": True}

    def check(self, settings: dict[str, Any]) -> None:
        for name in ("top_k", "max_answer_len", "max_question_len"):
            check_positive(name, settings[name])
        if settings["doc_stride"] is not None:
            stride = settings["doc_stride"]
            if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
                raise ValueError(f"doc_stride={stride!r} must be an integer >= 0")
        for name in ("handle_impossible_answer", "align_to_words"):
            if not isinstance(settings[name], bool):
                raise ValueError(f"{name}={settings[name]!r} must be True or False")

    @staticmethod
    def _examples(inputs: Any, question: Any, context: Any) -> tuple[list[tuple[str, str]], bool]:
        if inputs is not None and (question is not None or context is not None):
            raise ValueError("pass either inputs ({'question', 'context'} dicts) or question= and context=, not both")
        if inputs is None:
            if isinstance(question, str) and isinstance(context, str):
                pairs, batched = [(question, context)], False
            elif isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
                if len(question) != len(context) or not question:
                    raise ValueError(f"question has {len(question)} items and context {len(context)}; they must "
                                     f"be the same non-zero number")
                pairs, batched = list(zip(question, context)), True
            elif isinstance(question, (list, tuple)) and isinstance(context, str):
                pairs, batched = [(q, context) for q in question], True
            else:
                raise ValueError(f"question= and context= must be strings (or lists of them), got "
                                 f"{type(question).__name__} and {type(context).__name__}")
        else:
            items, batched = ([inputs], False) if isinstance(inputs, dict) else (inputs, True)
            if not isinstance(items, (list, tuple)) or not items:
                raise ValueError(f"inputs must be a {{'question', 'context'}} dict or a non-empty list of them, got "
                                 f"{type(inputs).__name__}")
            pairs = []
            for i, item in enumerate(items):
                if not isinstance(item, dict) or set(item) != {"question", "context"}:
                    raise ValueError(f"inputs[{i}] must be a dict with keys question and context, got {item!r}"[:200])
                pairs.append((item["question"], item["context"]))
        for i, (q, c) in enumerate(pairs):
            for name, value in (("question", q), ("context", c)):
                if not isinstance(value, str) or not value.strip():
                    where = f"{name}[{i}]" if batched else name
                    raise ValueError(f"{where} must be a non-empty string, got {value!r}")
        return pairs, batched

    def __call__(self, inputs: Any = None, *, question: Any = None, context: Any = None, **kwargs: Any) -> Any:
        settings = self.settings(**kwargs)
        pairs, batched = self._examples(inputs, question, context)
        results = []
        for (q, c), group in zip(pairs, self.answer_windows(pairs, settings)):
            answers = decode_answers(group, c, settings["top_k"], settings["max_answer_len"],
                                     settings["handle_impossible_answer"], settings["align_to_words"])
            results.append(answers[0] if len(answers) == 1 else answers)
        return results if batched else results[0]

    def answer_windows(self, pairs: list[tuple[str, str]], settings: dict[str, Any]) -> list[list[AnswerWindow]]:
        """The windows of each (question, context) with their start and end logits (``settings``: the
        pipeline's, for ``max_question_len`` and ``doc_stride``). ``xlmr evaluate`` decodes them as run_qa does."""
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        sequences, windows = [], []
        for i, (q, c) in enumerate(pairs):
            q_ids = self.tokenizer(q, add_special_tokens=False)["input_ids"][:settings["max_question_len"]]
            enc = self.tokenizer(c, add_special_tokens=False, return_offsets_mapping=True)
            c_ids, offsets, words = list(enc["input_ids"]), enc["offset_mapping"], enc.word_ids()
            room = self.max_length - len(q_ids) - 4
            if room < 1:
                raise ValueError(f"question[{i}] takes {len(q_ids)} tokens; with max_length={self.max_length} no "
                                 f"room is left for the context (lower max_question_len)")
            stride = min(128, room // 2) if settings["doc_stride"] is None else settings["doc_stride"]
            if stride >= room:
                raise ValueError(f"doc_stride={stride} must be below the {room} context tokens a window holds "
                                 f"(max_length={self.max_length} less the question and 4 special tokens)")
            head = [cls] + q_ids + [sep, sep]
            for start, stop in token_windows(len(c_ids), room, stride):
                sequences.append(head + c_ids[start:stop] + [sep])
                outside = [None] * len(head)
                windows.append((i, outside + [tuple(o) for o in offsets[start:stop]] + [None],
                                outside + list(words[start:stop]) + [None]))
        outputs = self.run(sequences, ["start_logits", "end_logits"])
        grouped: list[list[AnswerWindow]] = [[] for _ in pairs]
        for (i, offsets, words), out in zip(windows, outputs):
            grouped[i].append(AnswerWindow(out["start_logits"], out["end_logits"], offsets, words))
        return grouped
