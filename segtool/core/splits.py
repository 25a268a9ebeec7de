"""Seeded train/held-out splits of row positions (the held-out rows are never trained on)."""

from __future__ import annotations

import numpy as np


def fraction_split(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) positions, both sorted, about ``eval_fraction`` of ``n`` held out and at least
    one in each part (train-rm's split of preference pairs; ``n`` >= 2)."""
    if n < 2:
        raise ValueError(f"cannot split {n} rows into two non-empty parts")
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = min(max(1, round(eval_fraction * n)), n - 1)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def heldout_split(n: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) positions from one seeded shuffle: the train part in shuffled order, the
    held-out part sorted. Every policy stage (ppo, rs, dpo) holds out the same prompts."""
    if not 0 <= n_eval < n:
        raise ValueError(f"cannot hold out {n_eval} of {n} rows and keep one to train on")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    return perm[: n - n_eval], np.sort(perm[n - n_eval :])
