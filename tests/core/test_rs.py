"""Rejection sampling (METHOD §6-7): best-of-k selection and the masked NLL + KL loss by hand."""

import pytest
import torch

from segtool.core.rs import best_of_k, rs_loss


def test_best_of_k_picks_each_prompts_best_and_breaks_ties_to_the_first():
    scores = torch.tensor([0.1, 0.7, 0.3, 2.0, 2.0, -1.0])  # two prompts, k = 3
    assert best_of_k(scores, 3).tolist() == [1, 3]
    with pytest.raises(ValueError):
        best_of_k(scores, 4)


def test_rs_loss_by_hand():
    logp = torch.tensor([-1.0, -2.0, -4.0])
    kl = torch.tensor([0.5, 1.0, 2.0])
    # beta = 0.1: per-token 1.05, 2.1, 4.2; all kept -> 7.35 / 3 = 2.45.
    assert rs_loss(logp, kl, torch.ones(3), 0.1).item() == pytest.approx(2.45)
    # ARS mask keeps tokens 0 and 2: (1.05 + 4.2) / 2 = 2.625.
    assert rs_loss(logp, kl, torch.tensor([1, 0, 1]), 0.1).item() == pytest.approx(2.625)
    # Accumulation: a micro-batch normalised by the global batch's 5 kept tokens.
    assert rs_loss(logp, kl, torch.tensor([1, 0, 1]), 0.1, normaliser=5).item() == pytest.approx(5.25 / 5)
