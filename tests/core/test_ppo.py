"""PPO math (METHOD §5) against hand-computed values."""

import math

import pytest
import torch

from segtool.core.ppo import (
    AdaptiveKL,
    forking_mask,
    gae,
    interpolate,
    place_on_eos,
    policy_loss,
    segment_starts,
    shape_rewards,
    value_clip,
    value_loss,
    whiten,
)

# Row 0: response of 5 (EOS at 4), segments [0,1] [2,3]; row 1: response of 3 (EOS at 2), segment [0,1].
ENDS, ROWS = torch.tensor([1, 3, 1]), torch.tensor([0, 0, 1])
R = torch.tensor([2.0, 4.0, 3.0])


def test_segment_starts():
    assert segment_starts(ENDS, ROWS).tolist() == [0, 2, 0]


def test_even_interpolation_splits_each_segment_reward_over_its_tokens():
    out = interpolate(R, ENDS, ROWS, (2, 5), "even")
    assert out.tolist() == [[1.0, 1.0, 2.0, 2.0, 0.0], [1.5, 1.5, 0.0, 0.0, 0.0]]
    assert out.sum(1).tolist() == [6.0, 3.0]  # the sum of segment rewards is kept (paper §2.3)


def test_repeat_and_end_interpolation():
    assert interpolate(R, ENDS, ROWS, (2, 5), "repeat").tolist() == [[2, 2, 4, 4, 0], [3, 3, 0, 0, 0]]
    assert interpolate(R, ENDS, ROWS, (2, 5), "end").tolist() == [[0, 2, 0, 4, 0], [0, 3, 0, 0, 0]]
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate(R, ENDS, ROWS, (2, 5), "cubic")


def test_bandit_reward_lands_on_each_rows_own_eos():
    out = place_on_eos(torch.tensor([5.0, -1.0]), torch.tensor([4, 2]), (2, 5))
    assert out.tolist() == [[0, 0, 0, 0, 5], [0, 0, -1, 0, 0]]


def test_shaping_clamps_then_adds_k1_kl_penalty():
    # kl = logp - ref = (0.5, 0, -1); clamp (12, -15, 1) -> (10, -10, 1); minus 0.1 kl -> (9.95, -10, 1.1)
    shaped, kl = shape_rewards(torch.tensor([[12.0, -15.0, 1.0]]), torch.tensor([[-1.0, -2.0, -3.0]]),
                               torch.tensor([[-1.5, -2.0, -2.0]]), torch.ones(1, 3), beta=0.1)
    assert torch.allclose(shaped, torch.tensor([[9.95, -10.0, 1.1]]))
    assert kl.tolist() == [[0.5, 0.0, -1.0]]


def test_gae_golden_with_padding():
    # Row 0 (gamma 1, lam 0.5): delta = (1 + 1 - 0.5, 0 + 1.5 - 1, 2 + 0 - 1.5) = (1.5, 0.5, 0.5);
    #   A2 = 0.5, A1 = 0.5 + 0.5 * 0.5 = 0.75, A0 = 1.5 + 0.5 * 0.75 = 1.875; returns = A + V.
    # Row 1 (last position padding): A1 = 2 + 0 - 1 = 1, A0 = (1 + 1 - 0.5) + 0.5 * 1 = 2; padding stays 0.
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[1.875, 0.75, 0.5], [2.0, 1.0, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[2.375, 1.75, 2.0], [2.5, 2.0, 0.0]]))


def test_whiten_ignores_padding():
    out = whiten(torch.tensor([1.0, 2.0, 3.0, 100.0]), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    s = math.sqrt(2 / 3)  # population std of (1, 2, 3)
    assert torch.allclose(out, torch.tensor([-1 / s, 0.0, 1 / s, 0.0]), atol=1e-5)


def test_policy_loss_clips_both_ways():
    # Token 1: ratio 1.5, A = 1 -> min(1.5, 1.2) = 1.2. Token 2: ratio 0.5, A = -1 -> min(-0.5, -0.8) = -0.8.
    # loss = mean(-1.2, 0.8) = -0.2; both tokens clipped.
    old = torch.tensor([[-1.0, -1.0]])
    logp = old + torch.log(torch.tensor([[1.5, 0.5]]))
    loss, clipfrac = policy_loss(logp, old, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), clip=0.2)
    assert abs(loss.item() + 0.2) < 1e-6 and clipfrac.item() == 1.0


def test_value_loss_takes_the_larger_of_clipped_and_unclipped():
    # V = 1, V_old = 0.5, R = 2, clip 0.2: (1 - 2)^2 = 1; clipped V = 0.7: (0.7 - 2)^2 = 1.69 -> 0.5 * 1.69
    loss = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.ones(1, 1), clip=0.2)
    assert abs(loss.item() - 0.845) < 1e-6


def test_adaptive_kl_controller():
    ctl = AdaptiveKL(beta=0.1, target=6.0, horizon=10000)
    assert abs(ctl.update(kl=12.0, n_steps=100) - 0.1 * (1 + 0.2 * 100 / 10000)) < 1e-12  # error clipped to 0.2
    assert ctl.update(kl=6.0, n_steps=100) == ctl.beta  # on target: unchanged


# -- forking tokens (arXiv 2506.01939) -----------------------------------------------------------

H = torch.tensor([[0.5, 3.0, 0.1, 2.0, 9.0],  # row 0: 4 real tokens (9.0 is padding)
                  [4.0, 1.0, 2.0, 0.0, 0.0]])  # row 1: 3 real tokens
MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.float32)


def test_forking_mask_keeps_exactly_the_top_ratio_of_the_whole_batch():
    # 7 real tokens: ceil(0.4 * 7) = 3, the three highest entropies of the batch (4.0, 3.0, 2.0 twice: the
    # earlier 2.0, row 0's, wins the tie). Row 0 keeps two, row 1 one: the share is the batch's, not each row's.
    out = forking_mask(H, MASK, 0.4)
    assert out.dtype == MASK.dtype
    assert out.tolist() == [[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]]
    assert forking_mask(H, MASK, 1.0).tolist() == MASK.tolist()
    assert forking_mask(H, MASK, 0.01).sum() == 1  # at least one token: ceil of a positive share
    for ratio in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):  # ceil(ratio * n) exactly, float noise aside (0.3 * 10)
        m = torch.ones(2, 5)
        assert int(forking_mask(torch.rand(2, 5), m, ratio).sum()) == math.ceil(round(ratio * 10, 6))
    with pytest.raises(ValueError, match="forking ratio"):
        forking_mask(H, MASK, 0.0)


def test_forking_mask_chooses_among_the_tokens_another_mask_keeps():
    appo = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 1, 0, 0]], dtype=torch.float32)  # 4 tokens, 3.0 4.0 and two low
    out = forking_mask(H, appo, 0.5)
    assert out.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert bool((out <= appo).all())
    ties = forking_mask(torch.ones(2, 5), torch.ones(2, 5), 0.3)  # all equal: the first three in row-major order
    assert ties.tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]


def test_dpo_token_rewards_take_the_dense_value_clip():
    from segtool.config.schema import PPOConfig

    assert value_clip(PPOConfig(reward_mode="bandit")) == 0.2
    assert value_clip(PPOConfig(reward_mode="bandit", reward_source="dpo")) == 0.25
    assert value_clip(PPOConfig(reward_mode="bandit", reward_source="dpo", value_clip=0.3)) == 0.3
