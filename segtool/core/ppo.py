"""PPO math for dense segment rewards (METHOD §5), pure tensors in and out.

Response tensors are [B, T] over response positions (right-padded, ``mask`` 1 on real tokens, the
EOS included). Segments are flat: ``ends`` [S] (index into the response), ``rows`` [S], in order.
"""

from __future__ import annotations

import math

import torch

from .modes import INTERPOLATIONS, REWARD_MODES


def segment_starts(ends: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """First response index of every segment: 0 for a row's first segment, else previous end + 1."""
    starts = torch.roll(ends, 1) + 1
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    return torch.where(first, torch.zeros_like(starts), starts)


def interpolate(seg_rewards: torch.Tensor, ends: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int],
                mode: str = "even") -> torch.Tensor:
    """Per-token rewards [B, T] from segment rewards [S] (paper §2.3).

    even (paper default): every token of segment t gets r_t / |a_t|; repeat: every token gets r_t;
    end: r_t on the segment's last token. Tokens in no segment (the EOS in dense modes) get 0.
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {mode!r}; choose one of {', '.join(INTERPOLATIONS)}")
    out = torch.zeros(shape, dtype=torch.float32, device=seg_rewards.device)
    r = seg_rewards.float()
    if mode == "end":
        out[rows, ends] = r
        return out
    starts = segment_starts(ends, rows)
    lengths = ends - starts + 1
    per_token = r / lengths if mode == "even" else r
    seg_of_token = torch.repeat_interleave(torch.arange(len(ends), device=ends.device), lengths)
    positions = torch.arange(int(lengths.sum()), device=ends.device) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths) + starts[seg_of_token]
    out[rows[seg_of_token], positions] = per_token[seg_of_token]
    return out


def place_on_eos(seq_rewards: torch.Tensor, eos_index: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bandit: each row's sequence reward on that row's own EOS position, 0 elsewhere. [B] -> [B, T]."""
    out = torch.zeros(shape, dtype=torch.float32, device=seq_rewards.device)
    out[torch.arange(shape[0], device=out.device), eos_index] = seq_rewards.float()
    return out


def shape_rewards(token_rewards: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                  beta: float, clamp: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards clamped to [-clamp, clamp] plus the per-token k1 KL penalty -beta (log pi - log pi_ref), kl)."""
    kl = (logp.float() - ref_logp.float()) * mask
    return (token_rewards.clamp(-clamp, clamp) - beta * kl) * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response positions -> (advantages, returns), [B, T].

    delta_t = r_t + gamma V_{t+1} - V_t (V = 0 past the last real token);
    A_t = delta_t + gamma lam A_{t+1}; returns = A + V.
    """
    values = values.float() * mask
    B, T = rewards.shape
    adv = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):  # T steps on [B] vectors: no per-token host sync
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v * (mask[:, t + 1] if t + 1 < T else 0) - values[:, t]
        last = (delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0)) * mask[:, t]
        adv[:, t] = last
    return adv, adv + values


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8, reduce=None) -> torch.Tensor:
    """(x - mean) / std over the masked entries of the whole buffer.

    ``reduce`` sums a tensor over data-parallel ranks (identity when None), so the statistics are
    those of the whole rollout batch when each rank holds a shard of it.
    """
    total = reduce or (lambda t: t)
    n = total(mask.sum())
    mean = total((x * mask).sum()) / n
    var = total((((x - mean) * mask) ** 2).sum()) / n
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def policy_loss(logp, old_logp, advantages, mask, clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate, -min(ratio A, clip(ratio) A), averaged over tokens; (loss, clip fraction)."""
    ratio = torch.exp(logp.float() - old_logp.float())
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    return loss, masked_mean((clipped < unclipped).float(), mask).detach()


def value_loss(values, old_values, returns, mask, clip: float = 0.2) -> torch.Tensor:
    """0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2), averaged over tokens."""
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)


def forking_mask(entropy: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Forking tokens (arXiv 2506.01939): of the n tokens ``mask`` keeps in the whole batch, exactly the
    ceil(ratio * n) of highest entropy (at least one when n > 0); ties go to the earlier token in row-major
    order. entropy, mask [B, T] -> [B, T] in mask's dtype."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"forking ratio must be in (0, 1], got {ratio}")
    keep = mask.bool()
    n = int(keep.sum())
    k = min(n, max(1, math.ceil(round(ratio * n, 6))))  # round: 0.3 * 10 is 3.0000000000000004 in floats
    h = entropy[keep].float()  # row-major
    top = torch.sort(-h, stable=True).indices[:k]  # stable: equal entropies keep row-major order
    chosen = torch.zeros(n, dtype=torch.bool, device=mask.device)
    chosen[top] = True
    out = torch.zeros_like(keep)
    out[keep] = chosen
    return out.to(mask.dtype)


class AdaptiveKL:
    """Ziegler et al. (2019) controller: beta *= 1 + clip((KL - target) / target, -0.2, 0.2) * n / horizon."""

    def __init__(self, beta: float, target: float, horizon: int):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        error = max(min((kl - self.target) / self.target, 0.2), -0.2)
        self.beta *= 1 + error * n_steps / self.horizon
        return self.beta


def value_clip(c) -> float:
    """The paper's value clip: 0.25 with dense rewards, 0.2 with bandit rewards (unless set). DPO token
    rewards (reward_source = dpo) are dense whatever the reward model's mode."""
    if c.value_clip:
        return c.value_clip
    return REWARD_MODES["token" if c.reward_source == "dpo" else c.reward_mode].value_clip
