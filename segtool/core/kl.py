"""Token log-probabilities together with the exact per-position KL(pi || pi_ref) over the
vocabulary, chunked and checkpointed like ``core.logprobs`` (rejection sampling's KL term, eq. 7 of
arXiv 2411.00809). The KL is the full sum over the vocabulary, not a sampled estimate: the kept
best-of-k sample is not a sample of pi, so k1/k3 estimators on it would be biased.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _logits(hidden, weight, bias, softcap):
    z = hidden @ weight.t()
    if bias is not None:
        z = z + bias
    z = z.float()
    return torch.tanh(z / softcap) * softcap if softcap is not None else z


def _chunk(hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, softcap):
    log_p = torch.log_softmax(_logits(hidden, weight, bias, softcap), dim=-1)
    with torch.no_grad():
        log_ref = torch.log_softmax(_logits(ref_hidden, ref_weight, ref_bias, softcap), dim=-1)
    kl = (log_p.exp() * (log_p - log_ref)).sum(-1)
    return log_p.gather(1, targets[:, None]).squeeze(1), kl


def token_logprobs_and_kl(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          ref_hidden: torch.Tensor, ref_weight: torch.Tensor, chunk_size: int = 256,
                          softcap: float | None = None, bias: torch.Tensor | None = None,
                          ref_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi(target) [N], KL(pi(.|s) || pi_ref(.|s)) [N]) float32 at each row.

    hidden [N, H] / weight [V, H]: the trained policy (differentiable); ref_hidden [N, H'] /
    ref_weight [V, H']: the reference model's, no gradient flows into them.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    ref = (ref_hidden.detach(), ref_weight.detach(), ref_bias.detach() if ref_bias is not None else None)
    logps, kls = [], []
    for s in range(0, hidden.shape[0], chunk_size):
        sl = slice(s, s + chunk_size)
        args = (hidden[sl], weight, bias, targets[sl], ref[0][sl], ref[1], ref[2], softcap)
        lp, kl = checkpoint(_chunk, *args, use_reentrant=False) if grad else _chunk(*args)
        logps.append(lp)
        kls.append(kl)
    if not logps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(kls)
