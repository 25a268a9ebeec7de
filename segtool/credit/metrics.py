"""Credit-assignment metrics for one defect pair, and bootstrap intervals over pairs (numpy only).

A credit vector c holds one value per response token of the rejected answer (EOS excluded); the gold
defect is a boolean mask over the same tokens. Low credit should point at the defect, so the score of
a token is -c. A metric that is undefined for a pair (no gold token, no token outside the span, no
negative credit) is nan: means skip it and report how many pairs it left out.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def tokens_overlapping(offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    """[T] bool: tokens whose character range [s, e) overlaps the span [start, end).

    offsets: [T, 2] character offsets. A zero-width token (s == e) counts as the point s.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    s, e = offsets[:, 0], np.maximum(offsets[:, 1], offsets[:, 0] + 1)
    return (s < end) & (e > start)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse]


def token_auroc(credit: np.ndarray, in_span: np.ndarray) -> float:
    """P(score of a span token > score of a token outside), ties counting 1/2, score = -credit.

    The Mann-Whitney U statistic of the span tokens over n_pos * n_neg; nan when every token is
    inside the span or none is.
    """
    credit, in_span = np.asarray(credit, dtype=np.float64), np.asarray(in_span, dtype=bool)
    n_pos = int(in_span.sum())
    n_neg = in_span.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(-credit)
    u = ranks[in_span].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def unit_overlaps(unit_ends: np.ndarray, in_span: np.ndarray) -> np.ndarray:
    """[U] bool: which units (segments, given by inclusive end token indices in order) contain a span
    token. Token indices at or past len(in_span) (an EOS inside the last segment) are ignored."""
    ends = np.asarray(unit_ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    hits = np.concatenate([[0], np.cumsum(np.asarray(in_span, dtype=np.int64))])  # span tokens before index i
    n = len(in_span)
    return hits[np.clip(ends + 1, 0, n)] - hits[np.clip(starts, 0, n)] > 0


def pointing_game(unit_credit: np.ndarray, overlaps: np.ndarray) -> float:
    """1 when the lowest-credit unit overlaps the defect, 0 when not; with several units tied for
    the lowest credit, the fraction of them that overlap (the expected hit of a random tie-break).
    nan when there are no units or no unit overlaps the defect."""
    unit_credit, overlaps = np.asarray(unit_credit, dtype=np.float64), np.asarray(overlaps, dtype=bool)
    if unit_credit.size == 0 or not overlaps.any():
        return float("nan")
    lowest = unit_credit == unit_credit.min()
    return float(overlaps[lowest].mean())


def mass_in_span(credit: np.ndarray, in_span: np.ndarray) -> float:
    """Share of the negative credit that lands on the defect: sum over span tokens of max(0, -c)
    divided by the sum over all tokens; nan when no token has negative credit or no token is gold."""
    credit, in_span = np.asarray(credit, dtype=np.float64), np.asarray(in_span, dtype=bool)
    negative = np.maximum(0.0, -credit)
    total = negative.sum()
    if total <= 0 or not in_span.any():
        return float("nan")
    return float(negative[in_span].sum() / total)


def bootstrap_interval(values, seed: int, resamples: int = RESAMPLES, level: float = LEVEL) -> dict:
    """Mean of the defined (non-nan) per-pair values and its percentile bootstrap interval.

    Pairs are resampled with replacement ``resamples`` times (numpy default_rng(seed)); the interval
    is the (1 - level) / 2 and (1 + level) / 2 percentiles of the resampled means. Returns
    {mean, low, high, n (defined values), undefined (nan values)}; mean/low/high are nan when n is 0.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    out = {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": int(defined.size),
           "undefined": int(values.size - defined.size)}
    if defined.size == 0:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // defined.size)  # bounded memory for large files
    for first in range(0, resamples, chunk):
        k = min(chunk, resamples - first)
        means[first : first + k] = defined[rng.integers(0, defined.size, size=(k, defined.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    out.update(mean=float(defined.mean()), low=float(low), high=float(high))
    return out
