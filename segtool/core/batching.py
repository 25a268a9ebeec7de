"""Length-sorted batching (little padding, no per-row forward): under a padded-token budget, or in
micro-batches of a fixed number of rows."""

from __future__ import annotations

import numpy as np


def length_sorted_batches(lengths, batch_tokens: int, packed: bool = False) -> list[np.ndarray]:
    """Group indices longest-first so that len(batch) * max_len(batch) <= batch_tokens (padded
    batches), or sum of lengths <= batch_tokens (``packed``: no padding to pay for).

    A sequence longer than the budget still gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < order.size:
        if packed:
            within = np.cumsum(lengths[order[start:]]) <= batch_tokens
            size = max(1, int(within.sum()))  # sorted longest-first: the running sum crosses once
        else:
            size = max(1, batch_tokens // max(int(lengths[order[start]]), 1))
        batches.append(order[start : start + size])
        start += size
    return batches


def micro_batches(indices, lengths, size: int) -> list[np.ndarray]:
    """``indices`` longest first (``lengths`` are theirs, in the same order; ties keep their order),
    in groups of ``size``."""
    ordered = np.asarray(indices)[np.argsort(-np.asarray(lengths), kind="stable")]
    return [ordered[k : k + size] for k in range(0, len(ordered), size)]


def pair_micro_batches(pairs, indices, size: int) -> list[np.ndarray]:
    """``micro_batches`` of preference pairs ``pairs[i]`` = (chosen, rejected), each side with a
    ``length``, by their longer side."""
    return micro_batches(indices, [max(pairs[i][0].length, pairs[i][1].length) for i in indices], size)
