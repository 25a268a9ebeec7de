"""Chunked, checkpointed token log-probs and per-position KL equal a full-logits brute force,
values and gradients."""

import pytest
import torch

from segtool.core.kl import token_logprobs_and_kl
from segtool.core.logprobs import token_logprobs


def _setup(seed=0, n=37, h=8, v=50):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64).requires_grad_()
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=gen)
    return hidden, weight, targets


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_token_logprobs_match_full_log_softmax(chunk):
    hidden, weight, targets = _setup()
    full = torch.log_softmax(hidden @ weight.t(), -1).gather(1, targets[:, None]).squeeze(1)
    got = token_logprobs(hidden, weight, targets, chunk)
    assert torch.allclose(got.double(), full, atol=1e-5)
    g_full = torch.autograd.grad(full.sum(), (hidden, weight))
    g_got = torch.autograd.grad(got.sum(), (hidden, weight))
    assert all(torch.allclose(a, b.double(), atol=1e-4) for a, b in zip(g_full, g_got))


def test_kl_matches_brute_force_and_is_zero_against_itself():
    hidden, weight, targets = _setup()
    ref_h, ref_w, _ = _setup(seed=1)
    logp, kl = token_logprobs_and_kl(hidden, weight, targets, ref_h, ref_w, chunk_size=8)
    lp = torch.log_softmax(hidden @ weight.t(), -1)
    lr = torch.log_softmax(ref_h @ ref_w.t(), -1)
    brute = (lp.exp() * (lp - lr)).sum(-1)
    assert torch.allclose(kl.double(), brute, atol=1e-5) and torch.all(kl > 0)
    assert torch.allclose(logp.double(), lp.gather(1, targets[:, None]).squeeze(1), atol=1e-5)
    g = torch.autograd.grad(kl.sum(), (hidden, weight, ref_h), allow_unused=True)
    g_brute = torch.autograd.grad(brute.sum(), (hidden, weight))
    assert torch.allclose(g[0].double(), g_brute[0], atol=1e-4) and torch.allclose(g[1].double(), g_brute[1], atol=1e-4)
    assert g[2] is None  # nothing flows into the reference
    _, self_kl = token_logprobs_and_kl(hidden, weight, targets, hidden, weight, chunk_size=8)
    assert torch.allclose(self_kl, torch.zeros_like(self_kl), atol=1e-6)
