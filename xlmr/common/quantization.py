"""Inference below float32 (``quantize="int8"`` or ``"bf16"``): the modes, what the CPU offers, the measured cost
of each path, the tolerances the tests hold the three backends to, and the one warning, written once.

Each backend's ``quantize(model, mode)`` (``xlmr/{pt,tf,flax}/quantize.py``) does the tensor work; this module
decides nothing framework-specific. Two paths:

* ``int8``: dynamic int8 for the encoder's Linear/Dense layers (query, key, value, attention output,
  intermediate, output): int8 weights with one scale per output channel, activations quantized at every call,
  an int8 x int8 -> int32 matmul, rescaled in float32. Embeddings, LayerNorm, the pooler, the task heads and the
  LM head's decoder stay float32 (the decoder is a vocabulary-wide matmul whose scores feed a softmax over 250k
  words; the heads are small and feed the metric directly).
* ``bf16``: bfloat16 compute with float32 softmax and LayerNorm statistics.

"Never a slower path silently": whether a path is faster depends on the CPU's instructions (``avx512_bf16``,
``amx_bf16`` for bf16; ``avx512_vnni``, ``avx_vnni``, ``amx_int8`` for int8) and on the backend. ``MEASURED``
holds the time ratio quantized/float32 measured for each backend and mode on a CPU with and without the
instructions; ``quantize`` reads ``/proc/cpuinfo`` once and, where the ratio for this CPU is above 1, warns once
per process and backend/mode naming the ratio and where it was measured. A table rather than a benchmark at
first use: a micro-benchmark on a shared or busy machine measures the neighbours, costs seconds at every start
and makes the warning (and the tests) depend on the load.

Example:
    >>> check_mode("int8")
    'int8'
    >>> has_instructions("bf16", {"avx512f", "avx512_vnni"})
    False
    >>> expected_ratio("pt", "bf16", {"avx512f", "avx512_vnni"})[0] > 1
    True
    >>> check_mode("fp8")
    Traceback (most recent call last):
    ...
    ValueError: quantize='fp8' is not a mode: choose one of 'int8', 'bf16'
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Iterable

from xlmr.common.hub import user_stacklevel

MODES = ("int8", "bf16")

# Max-abs difference from the float32 logits allowed per mode, on xlmr-default's MaskedLM and sequence
# classification logits (tests/test_quantize.py, six UDHR sentences, 154 tokens). Measured there: bf16 0.04 (pt)
# to 0.07 (tf, flax); int8 0.06 (pt: one activation scale per call) and 0.02 (tf, flax: one per row); 0.13 for pt
# int8 on random ids. bf16 rounds every matmul input to 8 bits of mantissa, int8 to 255 levels.
TOLERANCE = {"bf16": 0.15, "int8": 0.25}
# Share of positions whose top-1 prediction (MaskedLM) or label (classification) must equal float32's, and must
# agree between any two backends at the same mode.
TOP1_AGREEMENT = 0.95

# Instructions that make a mode fast, as /proc/cpuinfo names them.
INSTRUCTIONS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}

# (backend, mode, CPU has INSTRUCTIONS[mode]) -> (time quantized / time float32, where measured).
# Base width (hidden 768; 2 of its 12 layers, the ratio is per layer), 8x128 tokens, median of 15 interleaved
# rounds; pt eager with oneDNN, tf and flax under XLA (jit). See docs/sections/quant_api.md for the runs.
TF_EAGER = "tf (eager or tf.function without XLA)"
_HERE = "2-core Intel Xeon (Ice Lake) with AVX512-VNNI, no AVX512-BF16, 2026-11-30"
_ISSUE = "2-core AMD EPYC with AVX512-BF16 and VNNI (2048x2048 matmuls, issue 17)"
MEASURED = {
    ("pt", "bf16", False): (3.0, _HERE),
    ("tf", "bf16", False): (1.1, _HERE),
    ("flax", "bf16", False): (1.1, _HERE),
    ("pt", "int8", True): (0.7, _HERE),
    ("tf", "int8", True): (0.75, _HERE),
    ("flax", "int8", True): (0.75, _HERE),
    ("pt", "bf16", True): (0.5, _ISSUE),
    ("tf", "bf16", True): (1.33, _ISSUE),
    ("flax", "bf16", True): (1.33, _ISSUE),
    # TensorFlow's own int8 matmul kernel, outside XLA (a 1024x768 by 768x3072 matmul, per-row quantization)
    (TF_EAGER, "int8", True): (8.5, _HERE),
    (TF_EAGER, "int8", False): (8.5, _HERE),
}
# What to do instead, where it is not "keep float32".
ADVICE = {TF_EAGER: "run the model through model.compiled_call(...) (XLA), where int8 is the faster path"}

_warned: set[tuple[str, str]] = set()


# The encoder's projections int8 replaces, as attribute paths inside one layer (the same names in every backend):
# self-attention, its output, cross-attention (decoders), the feed-forward pair.
PROJECTIONS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "crossattention.self.query", "crossattention.self.key", "crossattention.self.value",
               "crossattention.output.dense", "intermediate.dense", "output.dense")


def encoder_projections(layers: Iterable[Any]) -> dict[str, Any]:
    """{``layer.I.PATH``: module} of the ``PROJECTIONS`` present in the encoder's ``layers`` (any backend's)."""
    found = {}
    for i, layer in enumerate(layers):
        for path in PROJECTIONS:
            module = layer
            for name in path.split("."):
                module = getattr(module, name, None)
                if module is None:
                    break
            if module is not None:
                found[f"layer.{i}.{path}"] = module
    return found


def check_mode(mode: object) -> str:
    """``mode`` if it is one of MODES; a one-line ValueError naming the value and the choices otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"quantize={mode!r} is not a mode: choose one of {', '.join(map(repr, MODES))}")
    return mode


def check_quantizable(model_name: str, training: bool, current: str | None) -> None:
    """Refuse a model in training mode (the quantized layers are for inference: int8 weights have no gradient,
    bf16 weights would be trained at 8 bits of mantissa) and a model quantized already."""
    if training:
        raise ValueError(f"quantize: {model_name} is in training mode; quantized models are for inference only "
                         "(call model.eval() first, and fine-tune the float32 model)")
    if current is not None:
        raise ValueError(f"quantize: {model_name} is quantized already ({current}); load the float32 model again")


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags in ``path`` (empty where the file is missing: not Linux, or not x86)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def has_instructions(mode: str, flags: Iterable[str] | None = None) -> bool:
    """True when the CPU (``flags``; default: this one) has an instruction that makes ``mode`` fast."""
    flags = cpu_flags() if flags is None else set(flags)
    return any(f in flags for f in INSTRUCTIONS[check_mode(mode)])


def expected_ratio(backend: str, mode: str, flags: Iterable[str] | None = None) -> tuple[float, str] | None:
    """(time ratio quantized/float32, where measured) for this backend and mode on a CPU like this one; None
    where nothing was measured."""
    return MEASURED.get((backend, mode, has_instructions(mode, flags)))


def slower_message(backend: str, mode: str, flags: Iterable[str] | None = None) -> str | None:
    """The warning for a path measured slower than float32 on a CPU like this one; None where it is not."""
    found = expected_ratio(backend, mode, flags)
    if found is None or found[0] <= 1:
        return None
    ratio, where = found
    names = INSTRUCTIONS[mode]
    lacking = (f"has {' or '.join(n for n in names if n in (cpu_flags() if flags is None else set(flags)))}"
               if has_instructions(mode, flags) else f"lacks {' and '.join(names)}")
    advice = ADVICE.get(backend, "keep float32 for speed, or use this mode for memory only")
    return (f"xlmr.{backend} quantize={mode!r}: this CPU {lacking}; this path took {ratio:g}x the float32 time "
            f"where measured ({where}); {advice}")


def warn_if_slower(backend: str, mode: str, flags: Iterable[str] | None = None) -> str | None:
    """Warn, once per process and (backend, mode), when ``slower_message`` has something to say; return it."""
    message = slower_message(backend, mode, flags)
    if message is not None and (backend, mode) not in _warned:
        _warned.add((backend, mode))
        warnings.warn(message, RuntimeWarning, stacklevel=user_stacklevel())
    return message


def refuse_saving(mode: str | None) -> None:
    """``save_pretrained`` of a quantized model would write rounded weights as if they were the checkpoint's."""
    if mode is not None:
        raise ValueError(f"save_pretrained: this model is quantized ({mode}); save the float32 model it came from "
                         "(quantize again after loading it)")
