"""DPO / ADPO loss (METHOD §6-7) against hand-computed values."""

import math

import pytest
import torch

from segtool.core.dpo import dpo_loss, masked_sums


def test_dpo_loss_by_hand():
    # h = (-10 - -11) - (-12 - -11) = 1 - (-1) = 2; beta h = 0.5 * 2 = 1;
    # loss = -log sigma(1) = log(1 + e^-1) = 0.31326168751822286.
    out = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.5)
    assert out["loss"].item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-7)
    assert out["chosen_reward"].item() == pytest.approx(0.5) and out["rejected_reward"].item() == pytest.approx(-0.5)
    assert out["accuracy"].item() == 1.0


def test_label_smoothing_by_hand():
    # -(1 - e) log s(x) - e log s(-x) with -log s(-x) = -log s(x) + x: the loss is 0.31326 + e * 1 at x = 1.
    out = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.5, 0.1)
    assert out["loss"].item() == pytest.approx(math.log1p(math.exp(-1)) + 0.1, abs=1e-6)
    with pytest.raises(ValueError):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.5, 0.5)


def test_masked_sums_by_hand():
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0])
    rows = torch.tensor([0, 0, 0, 1, 1])
    assert masked_sums(logp, rows, 2).tolist() == [-6.0, -9.0]
    # mask keeps tokens 0, 2 of row 0 and token 4 of row 1: -1 - 3 = -4 and -5.
    assert masked_sums(logp, rows, 2, torch.tensor([1, 0, 1, 0, 1])).tolist() == [-4.0, -5.0]


def test_adpo_with_an_all_ones_mask_is_dpo():
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(4, 12, generator=gen).log_softmax(-1).flatten().requires_grad_()  # 4 sequences
    ref = torch.randn(48, generator=gen) - 3
    rows = torch.arange(4).repeat_interleave(12)

    def loss(weights):
        pol = masked_sums(logp, rows, 4, weights)
        r = masked_sums(ref, rows, 4, weights)
        return dpo_loss(pol[:2], pol[2:], r[:2], r[2:], 0.1, 0.05)["loss"].mean()

    plain, ones = loss(None), loss(torch.ones(48))
    g_plain = torch.autograd.grad(plain, logp)[0]
    g_ones = torch.autograd.grad(ones, logp)[0]
    assert plain.item() == ones.item() and torch.equal(g_plain, g_ones)
    # A real mask changes it, and masked tokens get no gradient.
    m = (torch.arange(48) % 3 != 0).float()
    g_masked = torch.autograd.grad(loss(m), logp)[0]
    assert torch.all(g_masked[m == 0] == 0) and not torch.allclose(g_masked, g_plain)
