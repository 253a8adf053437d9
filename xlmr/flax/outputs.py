"""The common output classes, registered as JAX pytrees so that jitted and differentiated functions return them.

``xlmr.common`` imports no framework, so the registration lives here; importing ``xlmr.flax`` performs it.
A flattened output keeps its field names (the non-None ones, in HF's order) as static data.
"""

from __future__ import annotations

import jax

from xlmr.common.outputs import (
    OUTPUT_CLASSES,
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

__all__ = ["ModelOutput", *(cls.__name__ for cls in OUTPUT_CLASSES)]


def _register(cls: type[ModelOutput]) -> None:
    def flatten_with_keys(out):
        names = tuple(out.keys())
        return [(jax.tree_util.GetAttrKey(n), out[n]) for n in names], names

    def flatten(out):
        names = tuple(out.keys())
        return [out[n] for n in names], names

    def unflatten(names, values):
        return cls(zip(names, values))

    try:
        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    except ValueError:  # already registered (module reloaded)
        pass


for _cls in (ModelOutput, *OUTPUT_CLASSES):
    _register(_cls)
