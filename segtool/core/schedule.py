"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (METHOD §3 defaults)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup_ratio: float = 0.03, min_ratio: float = 0.1) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` steps.

    Warm-up: (step + 1) / W for the first W = ceil(warmup_ratio * total) steps; then
    min_ratio + (1 - min_ratio) * (1 + cos(pi * progress)) / 2, progress running 0 -> 1.
    """
    warmup = math.ceil(warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup - 1, 1)
    progress = min((step - warmup) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
