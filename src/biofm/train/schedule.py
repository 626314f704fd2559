"""Learning-rate schedules as multipliers of the peak learning rate."""

from __future__ import annotations

import math


def lr_factor(step: int, *, schedule: str, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier for optimizer step `step` (0-based).

    inverse_sqrt is Nucleotide Transformer's: linear warmup, then peak * sqrt(warmup / step).
    """
    s = step + 1
    if warmup > 0 and s <= warmup:
        return s / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return max(min_ratio, math.sqrt(max(warmup, 1) / s))
    if schedule == "cosine":
        progress = (s - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {schedule!r}")
