"""Length-sorted batching under a padded-token budget (little padding, no per-row forward)."""

from __future__ import annotations

import numpy as np


def length_sorted_batches(lengths, batch_tokens: int) -> list[np.ndarray]:
    """Group indices longest-first so that len(batch) * max_len(batch) <= batch_tokens.

    A sequence longer than the budget still gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < order.size:
        longest = int(lengths[order[start]])
        size = max(1, batch_tokens // max(longest, 1))
        batches.append(order[start : start + size])
        start += size
    return batches
