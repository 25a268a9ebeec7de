"""Schedules: the learning rate over optimiser steps (linear warm-up, then cosine decay to a floor; METHOD §3
defaults), and the prompts of each sampling iteration."""

from __future__ import annotations

import math

import numpy as np


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


def iteration_prompts(train_idx: np.ndarray, iteration: int, rollout_batch: int, seed: int) -> np.ndarray:
    """Prompts of iteration ``iteration`` (0-based): consecutive slices of a per-episode shuffle."""
    per_episode = len(train_idx) // rollout_batch
    episode, k = divmod(iteration, per_episode)
    order = train_idx[np.random.default_rng([seed, episode]).permutation(len(train_idx))]
    return order[k * rollout_batch : (k + 1) * rollout_batch]
