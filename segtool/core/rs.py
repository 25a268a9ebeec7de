"""Rejection sampling and its adaptive-mask variant ARS (METHOD §6–7; arXiv 2411.00809 eqs. 7, 11).

Per prompt, k responses are sampled and the reward model's best one is kept; the policy is trained
on it by NLL plus beta times the KL to the reference, both multiplied by the token mask M (all ones
for plain RS; for ARS, the kept sample's good-segment tokens).
"""

from __future__ import annotations

import torch


def best_of_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Index (into the flat [P * k] scores, prompt-major) of each prompt's best sample; ties go to
    the first sample. -> [P] long."""
    if k < 1 or scores.numel() % k:
        raise ValueError(f"{scores.numel()} scores do not split into groups of k = {k}")
    grouped = scores.reshape(-1, k)
    return torch.arange(grouped.shape[0], device=scores.device) * k + grouped.argmax(dim=1)


def rs_token_losses(logp: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token loss -log pi(y_i) + beta KL_i (eq. 7); flat [N] tensors."""
    return -logp.float() + beta * kl.float()


def rs_loss(logp: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float,
            normaliser: float | None = None) -> torch.Tensor:
    """Masked token loss sum over ``normaliser`` tokens (default: the kept tokens here).

    Gradient accumulation passes the kept-token count of the whole global batch as ``normaliser``,
    so that the accumulated loss is the global token mean.
    """
    m = mask.float()
    total = (rs_token_losses(logp, kl, beta) * m).sum()
    denom = float(m.sum()) if normaliser is None else float(normaliser)
    return total / max(denom, 1.0)
