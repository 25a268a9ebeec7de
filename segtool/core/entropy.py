"""Next-token entropy of a causal LM, computed from hidden states in chunks.

METHOD §2: H_j = entropy of pi_SFT(. | x, y_<=j) in float32, as logsumexp(z) - sum softmax(z) * z.
Only response positions are needed, and the full [batch, length, vocab] float32 logits tensor is
never built: hidden states are projected through the LM head ``chunk_size`` positions at a time.
Extra memory, whatever the sequence length: one chunk of logits in the model dtype
(chunk_size * vocab * dtype bytes) plus two float32 [block, vocab] buffers, a block being ~2 MiB of
rows on CPU and the whole chunk on GPU.
"""

from __future__ import annotations

import torch


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last dim, in float32.

    logits: [..., V] any float dtype. Returns [...] float32.
    H = logsumexp(z) - sum_v softmax(z)_v z_v = -sum_v p_v log p_v, with log p = z - logsumexp(z)
    from one fused log_softmax (stable for large |z|). Two float32 [..., V] buffers live at once:
    log p and p (reused in place for p * log p); this is ~1.5x faster than logsumexp + softmax.
    """
    log_p = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    p = log_p.exp()
    # Masked logits (-inf) have p = 0; clamping keeps 0 * log p at 0 instead of NaN.
    log_p.clamp_(min=torch.finfo(torch.float32).min)
    return -p.mul_(log_p).sum(dim=-1)


# On CPU the float32 passes of the entropy (cast, log_softmax, exp, multiply, sum) are memory-bound:
# done a few rows at a time they stay in cache and run several times faster than over a whole
# chunk. The LM-head matmul keeps the full chunk, where BLAS is efficient. All buffers are
# allocated once per call: fresh multi-MB tensors per chunk cost page faults on every chunk.
CPU_BLOCK_BYTES = 2 << 20


def _rows_per_block(device: torch.device, chunk: int, vocab: int) -> int:
    if device.type != "cpu":
        return chunk
    return max(1, min(chunk, CPU_BLOCK_BYTES // (vocab * 4)))


@torch.no_grad()
def chunked_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    chunk_size: int = 256,
    softcap: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entropy of softmax(hidden @ weight.T [+ bias]) row by row, ``chunk_size`` rows at a time.

    hidden: [N, H] final hidden states (after the backbone's last norm) at the positions wanted.
    weight: [V, H] LM head (output embedding) weight; bias: optional [V].
    softcap: final-logit soft-capping (Gemma-2 style): z = softcap * tanh(z / softcap).
    Returns [N] float32. Same math as ``entropy_from_logits``, written into preallocated buffers:
    one [chunk, V] logits buffer in the model dtype and two [block, V] float32 buffers.
    """
    return _chunked_pass(hidden, weight, None, chunk_size, softcap, bias)[1]


@torch.no_grad()
def chunked_logp_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 256,
    softcap: float | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and entropy at every row of ``hidden`` from one LM-head pass (PPO's reference pass).

    hidden: [N, H]; targets: [N] token ids (any value where no log-prob is wanted, e.g. 0).
    Returns (logp [N], entropy [N]), float32. Same chunking and buffers as ``chunked_entropy``.
    """
    return _chunked_pass(hidden, weight, targets, chunk_size, softcap, bias)


def _chunked_pass(hidden, weight, targets, chunk_size, softcap, bias) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(log p(target) or None without targets, entropy) of every row: the LM head a chunk at a time,
    the float32 softmax passes a cache-sized block at a time.

    One exponential per logit: with e = exp(z - max) and s = sum e, H = log s - sum e (z - max) / s
    and log p(target) = z_target - max - log s (log_softmax followed by exp would take two)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n, vocab = hidden.shape[0], weight.shape[0]
    logp_out = None if targets is None else torch.empty(n, dtype=torch.float32, device=hidden.device)
    ent_out = torch.empty(n, dtype=torch.float32, device=hidden.device)
    if n == 0:
        return logp_out, ent_out
    chunk = min(chunk_size, n)
    block = _rows_per_block(hidden.device, chunk, vocab)
    logits = torch.empty(chunk, vocab, dtype=hidden.dtype, device=hidden.device)
    cast = hidden.dtype != torch.float32  # float32 logits are worked on in place, no copy
    z32 = torch.empty(block, vocab, dtype=torch.float32, device=hidden.device) if cast else None
    exps = torch.empty(block, vocab, dtype=torch.float32, device=hidden.device)
    lowest = torch.finfo(torch.float32).min
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        z = logits[:rows]
        if bias is None:
            torch.mm(hidden[start : start + rows], weight.t(), out=z)
        else:
            torch.addmm(bias, hidden[start : start + rows], weight.t(), out=z)
        for row in range(0, rows, block):
            k = min(block, rows - row)
            at = slice(start + row, start + row + k)
            if cast:
                zk = z32[:k]
                zk.copy_(z[row : row + k])  # cast to float32
            else:
                zk = z[row : row + k]
            if softcap is not None:
                zk.div_(softcap).tanh_().mul_(softcap)
            zk.sub_(zk.amax(dim=1, keepdim=True))  # z - max <= 0
            e = torch.exp(zk, out=exps[:k])
            s = e.sum(dim=1)
            log_s = s.log()
            if logp_out is not None:
                logp_out[at] = zk.gather(1, targets[at, None]).squeeze(1) - log_s
            zk.clamp_(min=lowest)  # z = -inf has e = 0: 0 * (z - max) stays 0, not NaN
            ent_out[at] = log_s - e.mul_(zk).sum(dim=1).div_(s)
    return logp_out, ent_out
