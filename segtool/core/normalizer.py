"""Location-aware reward normalisers (METHOD §4) and their application (used by PPO).

A segment t of K in a response sits at location p = (t + 1) / K in (0, 1] (segment units, not
tokens). The paper's normaliser maps r -> (r - Mean(p)) / Std(p), with Mean(p) = w_mu log p + b_mu
and Std(p) = max(w_sigma log p + b_sigma, floor). Ablations (paper Table 5): ``none``, ``global``
(one mean/std over all segment rewards) and ``last`` (mean/std of each response's last segment
reward: the classical bandit normaliser), both applied to every segment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .modes import NORMALISER_KINDS


@dataclass(frozen=True)
class Normaliser:
    kind: str
    w_mu: float = 0.0
    b_mu: float = 0.0
    w_sigma: float = 0.0
    b_sigma: float = 1.0
    floor: float = 0.0
    mean: float = 0.0  # global / last
    std: float = 1.0  # global / last

    def __post_init__(self):
        if self.kind not in NORMALISER_KINDS:
            raise ValueError(f"unknown normaliser kind {self.kind!r}; choose one of {', '.join(NORMALISER_KINDS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def locations(k, K):
    """p = (k + 1) / K for segment index k (0-based) of K segments."""
    return (k + 1) / K


def bin_stats(p: np.ndarray, r: np.ndarray, decimals: int = 3) -> dict[str, np.ndarray]:
    """Per-bin (p rounded to ``decimals``) mean, population std (ddof 0) and count, bins ascending."""
    keys = np.round(np.asarray(p, dtype=np.float64), decimals)
    bins, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    r = np.asarray(r, dtype=np.float64)
    sums = np.bincount(inverse, weights=r)
    means = sums / counts
    var = np.bincount(inverse, weights=(r - means[inverse]) ** 2) / counts
    return {"p": bins, "mean": means, "std": np.sqrt(var), "count": counts}


def normalize(rewards: torch.Tensor, k: torch.Tensor, K: torch.Tensor, norm: Normaliser) -> torch.Tensor:
    """Normalised segment rewards. rewards, k, K: [S] (K = the segment count of each segment's response)."""
    r = rewards.float()
    if norm.kind == "none":
        return r
    if norm.kind in ("global", "last"):
        return (r - norm.mean) / norm.std
    log_p = torch.log(locations(k.double(), K.double())).float()
    mean = norm.w_mu * log_p + norm.b_mu
    std = torch.clamp(norm.w_sigma * log_p + norm.b_sigma, min=norm.floor)
    return (r - mean) / std
