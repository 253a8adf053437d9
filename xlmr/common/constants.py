"""Numbers every backend shares, declared once."""

from __future__ import annotations

# Label value that losses ignore (HF's CrossEntropyLoss default ignore_index).
IGNORE_INDEX = -100

# Cross-backend agreement, max-abs difference. fp32 on tiny test configs; base-sized fp32 accumulates more
# rounding over 12 layers of 768-wide sums; bf16 has an 8-bit mantissa, so compare it to fp32 loosely.
TOLERANCE_FP32 = 1e-5
TOLERANCE_FP32_BASE = 1e-4
TOLERANCE_BF16 = 5e-2
# One backward pass: gradients are sums over the batch, so allow a relative term as well.
GRADIENT_ATOL = 1e-5
GRADIENT_RTOL = 1e-4


def tolerance(dtype: str = "float32", base_sized: bool = False) -> float:
    """The max-abs tolerance for comparing two backends' outputs in ``dtype``."""
    if dtype in ("bfloat16", "float16"):
        return TOLERANCE_BF16
    return TOLERANCE_FP32_BASE if base_sized else TOLERANCE_FP32
