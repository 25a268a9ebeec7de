"""Token log-probabilities from hidden states through the LM head in chunks, with gradients, for
training stages (PPO, DPO, rejection sampling).

No [N, vocab] float32 tensor is kept for the backward pass: each chunk runs under
``torch.utils.checkpoint``, so only its [chunk, H] inputs are saved and its logits are rebuilt
during backward. Peak extra memory is a few [chunk, vocab] float32 buffers, whatever N is.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def head_logits(hidden, weight, bias=None, softcap=None) -> torch.Tensor:
    """float32 logits hidden @ weight.T [+ bias], soft-capped (Gemma-2 style) when asked."""
    z = hidden @ weight.t()
    if bias is not None:
        z = z + bias
    z = z.float()
    if softcap is not None:
        z = torch.tanh(z / softcap) * softcap
    return z


def _chunk_logp(hidden, weight, targets, softcap, bias):
    log_p = torch.log_softmax(head_logits(hidden, weight, bias, softcap), dim=-1)
    return log_p.gather(1, targets[:, None]).squeeze(1)


def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 512,
                   softcap: float | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """log softmax(hidden @ weight.T [+ bias])[target] per row: hidden [N, H], weight [V, H],
    targets [N] -> [N] float32, differentiable w.r.t. hidden, weight and bias."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    out = []
    for s in range(0, hidden.shape[0], chunk_size):
        args = (hidden[s : s + chunk_size], weight, targets[s : s + chunk_size], softcap, bias)
        out.append(checkpoint(_chunk_logp, *args, use_reentrant=False) if grad else _chunk_logp(*args))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)
