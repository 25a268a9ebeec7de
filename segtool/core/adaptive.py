"""Adaptive segment-level reward (arXiv 2411.00809, METHOD §7): Schmitt-trigger token states, pivot
tokens, segments and loss masks. Tensors are [B, T] over response positions, ``mask`` 1 on real tokens.

A token is good when r_t > b + delta, bad when r_t < b - delta, and otherwise keeps the previous
token's state (hysteresis: the neutral band never flips a state). The paper leaves the first
token's state open when it falls in the band; here it takes the side of b it lies on (r_0 >= b: good).
"""

from __future__ import annotations

import torch

from .modes import BASELINES


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


# -- per-token rewards and baselines (METHOD §7) -------------------------------------------------


def value_token_rewards(values: torch.Tensor, prompt_values: torch.Tensor) -> torch.Tensor:
    """r_i = v_i - v_{i-1} from a dense reward model's values at response positions.

    values [B, T] (response-aligned); prompt_values [B]: v at the last prompt token, the v_{-1}
    of the first response token. The r_i of a response telescope to v_{n-1} - v_{-1}.
    """
    prev = torch.cat([prompt_values[:, None].to(values.dtype), values[:, :-1]], dim=1)
    return values - prev


def implicit_token_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO implicit reward per token, r_i = beta (log pi(y_i) - log pi_ref(y_i)); [B, T]."""
    return beta * (logp.float() - ref_logp.float())


def baselines(rewards: torch.Tensor, mask: torch.Tensor, kind: str, alpha: float = 0.1) -> torch.Tensor:
    """Baseline b_t of every token, [B, T], from the row's own rewards (``mask`` 1 on scored tokens).

    sequence: the sequence reward spread evenly over its tokens, sum_i r_i / n (constant in t);
    running:  the mean of the rewards before t, b_0 = 0;
    td:       a TD(0) estimate of the per-token reward, b_0 = 0, b_{t+1} = b_t + alpha (r_t - b_t).
    Padding never moves a baseline.
    """
    m = mask.to(rewards.dtype)
    r = rewards * m
    if kind == "sequence":
        mean = r.sum(1) / m.sum(1).clamp(min=1)
        return mean[:, None].expand_as(rewards).clone()
    if kind == "running":
        before_sum = torch.cumsum(r, 1) - r
        before_n = torch.cumsum(m, 1) - m
        return torch.where(before_n > 0, before_sum / before_n.clamp(min=1), torch.zeros_like(r))
    if kind == "td":
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"td baseline needs 0 < alpha <= 1, got {alpha}")
        out = torch.empty_like(r)
        b = torch.zeros(r.shape[0], dtype=r.dtype, device=r.device)
        for t in range(r.shape[1]):  # T steps over [B] vectors
            out[:, t] = b
            b = b + alpha * (r[:, t] - b) * m[:, t]
        return out
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def band(rewards: torch.Tensor, baseline: torch.Tensor, delta: float) -> torch.Tensor:
    """Each token's own class (paper eq. 15): +1 good (r > b + delta), -1 bad (r < b - delta),
    0 neutral (inside the band, where the trigger keeps the previous state). int8 [B, T]."""
    good = (rewards > baseline + delta).to(torch.int8)
    bad = (rewards < baseline - delta).to(torch.int8)
    return good - bad
