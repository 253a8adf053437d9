"""Output objects with Hugging Face's field names, shared by the three backends.

An output is a dict holding its non-None fields, in HF's order, with attribute access (``out.logits``) and
integer indexing into ``to_tuple()`` (``out[0]``), so code written against HF's outputs runs unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable


class ModelOutput(dict):
    """Base of every output class; ``FIELDS`` fixes the order of ``to_tuple()`` (HF's order).

    Example:
        >>> from xlmr.common.outputs import MaskedLMOutput
        >>> out = MaskedLMOutput(logits=[1.0], loss=None)
        >>> out.logits, out.loss, out.to_tuple()
        ([1.0], None, ([1.0],))
    """

    FIELDS: tuple[str, ...] = ()

    def __init__(self, items: Iterable[tuple[str, Any]] | dict | None = None, **fields: Any):
        # ``items`` lets tf.nest and jax.tree_util rebuild an output from (key, value) pairs.
        super().__init__()
        pairs = dict(items or {}, **fields)
        unknown = set(pairs) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}; fields: {self.FIELDS}")
        for name in self.FIELDS:
            if pairs.get(name) is not None:
                super().__setitem__(name, pairs[name])

    def __getattr__(self, name: str) -> Any:
        if name in type(self).FIELDS:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise KeyError(f"{type(self).__name__} has no field {name!r}")
        if value is None:
            self.pop(name, None)
        else:
            super().__setitem__(name, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self[name] for name in self.FIELDS if name in self)

    def __reduce__(self):
        return type(self), (list(self.items()),)


def _output(name: str, *fields: str) -> type[ModelOutput]:
    return type(name, (ModelOutput,), {"FIELDS": fields, "__doc__": f"HF's ``{name}``: {', '.join(fields)}."})


BaseModelOutputWithPoolingAndCrossAttentions = _output(
    "BaseModelOutputWithPoolingAndCrossAttentions",
    "last_hidden_state", "pooler_output", "hidden_states", "past_key_values", "attentions", "cross_attentions")
CausalLMOutputWithCrossAttentions = _output(
    "CausalLMOutputWithCrossAttentions",
    "loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions")
MaskedLMOutput = _output("MaskedLMOutput", "loss", "logits", "hidden_states", "attentions")
SequenceClassifierOutput = _output("SequenceClassifierOutput", "loss", "logits", "hidden_states", "attentions")
MultipleChoiceModelOutput = _output("MultipleChoiceModelOutput", "loss", "logits", "hidden_states", "attentions")
TokenClassifierOutput = _output("TokenClassifierOutput", "loss", "logits", "hidden_states", "attentions")
QuestionAnsweringModelOutput = _output(
    "QuestionAnsweringModelOutput", "loss", "start_logits", "end_logits", "hidden_states", "attentions")

OUTPUT_CLASSES = (BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions, MaskedLMOutput,
                  SequenceClassifierOutput, MultipleChoiceModelOutput, TokenClassifierOutput,
                  QuestionAnsweringModelOutput)
