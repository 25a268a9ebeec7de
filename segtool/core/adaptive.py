"""Adaptive segment-level reward (arXiv 2411.00809, METHOD §7): Schmitt-trigger token states, pivot
tokens, segments and loss masks. Tensors are [B, T] over response positions, ``mask`` 1 on real tokens.

A token is good when r_t > b + delta, bad when r_t < b - delta, and otherwise keeps the previous
token's state (hysteresis: the neutral band never flips a state). The paper leaves the first
token's state open when it falls in the band; here it takes the side of b it lies on (r_0 >= b: good).
"""

from __future__ import annotations

import torch


def schmitt_states(rewards: torch.Tensor, baseline: torch.Tensor, delta: float) -> torch.Tensor:
    """Good (True) / bad (False) state of every token. rewards [B, T]; baseline [B] or [B, T]."""
    b = baseline if baseline.dim() == 2 else baseline[:, None].expand_as(rewards)
    good, bad = rewards > b + delta, rewards < b - delta
    states = torch.empty_like(good)
    state = rewards[:, 0] >= b[:, 0]
    for t in range(rewards.shape[1]):  # T steps over [B] vectors
        state = torch.where(good[:, t], True, torch.where(bad[:, t], False, state))
        states[:, t] = state
    return states


def pivots(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pivot tokens: where the state flips from the previous token's (never the first token)."""
    flips = torch.zeros_like(states)
    flips[:, 1:] = states[:, 1:] != states[:, :-1]
    return flips & mask.bool()


def segment_ends(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: True on the last token of each maximal run of one state (and on the last real token)."""
    m = mask.bool()
    ends = torch.zeros_like(states)
    ends[:, :-1] = (states[:, :-1] != states[:, 1:]) | ~m[:, 1:]
    ends[:, -1] = True
    return ends & m


def loss_mask(states: torch.Tensor, positive: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep good tokens of positive samples (chosen / advantage > 0) and bad tokens of negative ones."""
    keep = torch.where(positive[:, None], states, ~states)
    return keep & mask.bool()
