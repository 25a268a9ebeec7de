"""Schmitt-trigger states, pivots, segments and masks (METHOD §7) on hand-written rewards."""

import torch

from segtool.core.adaptive import loss_mask, pivots, schmitt_states, segment_ends

# b = 0, delta = 0.5. Row 0: 0.2 (band, first token: >= b -> good), 1.0 good, 0.3 band keeps good,
# -0.7 bad, -0.2 band keeps bad, 0.6 good. Row 1 (4 real tokens): -0.1 band -> bad, -0.4 band keeps
# bad, 0.9 good, 0.0 band keeps good, then padding.
R = torch.tensor([[0.2, 1.0, 0.3, -0.7, -0.2, 0.6], [-0.1, -0.4, 0.9, 0.0, 5.0, 5.0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
STATES = [[True, True, True, False, False, True], [False, False, True, True, True, True]]


def test_hysteresis_states():
    assert schmitt_states(R, torch.zeros(2), 0.5).tolist() == STATES


def test_without_offset_every_crossing_flips():
    # Rewards jittering around b: with delta = 0 every sign change flips the state; a band of 0.5 absorbs it.
    noisy = torch.tensor([[0.1, -0.1, 0.1, -0.1]])
    assert schmitt_states(noisy, torch.zeros(1), 0.0).tolist() == [[True, False, True, False]]
    assert schmitt_states(noisy, torch.zeros(1), 0.5).tolist() == [[True, True, True, True]]


def test_pivots_and_segments():
    states = torch.tensor(STATES)
    assert pivots(states, MASK).nonzero().tolist() == [[0, 3], [0, 5], [1, 2]]
    # Row 0 runs: [0..2] [3..4] [5]; row 1: [0..1] [2..3] (padding ends the last run at 3).
    assert segment_ends(states, MASK).nonzero().tolist() == [[0, 2], [0, 4], [0, 5], [1, 1], [1, 3]]


def test_loss_mask_keeps_good_tokens_of_positive_and_bad_tokens_of_negative_samples():
    states = torch.tensor(STATES)
    keep = loss_mask(states, torch.tensor([True, False]), MASK)
    assert keep.int().tolist() == [[1, 1, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0]]


def test_per_token_baseline():
    b = torch.tensor([[0.0, 0.0, 1.0]])  # a running baseline may move with t
    assert schmitt_states(torch.tensor([[1.0, 0.8, 0.8]]), b, 0.1).tolist() == [[True, True, False]]


# -- per-token rewards, baselines and the trigger on them ----------------------------------------

from segtool.core.adaptive import band, baselines, implicit_token_rewards, value_token_rewards  # noqa: E402


def test_value_differences_telescope():
    # v_prompt = 0.5, values 1.0, 0.25, 0.75 -> r = 0.5, -0.75, 0.5; the sum is v_last - v_prompt = 0.25.
    r = value_token_rewards(torch.tensor([[1.0, 0.25, 0.75]]), torch.tensor([0.5]))
    assert r.tolist() == [[0.5, -0.75, 0.5]]


def test_implicit_reward_is_beta_times_the_log_ratio():
    # beta = 0.5: 0.5 * (-1 - -2) = 0.5 and 0.5 * (-3 - -1) = -1.
    r = implicit_token_rewards(torch.tensor([[-1.0, -3.0]]), torch.tensor([[-2.0, -1.0]]), 0.5)
    assert r.tolist() == [[0.5, -1.0]]


def test_baselines_by_hand():
    r = torch.tensor([[1.0, 3.0, -1.0, 9.0]])
    m = torch.tensor([[1, 1, 1, 0]])  # the last position is padding
    # sequence: (1 + 3 - 1) / 3 = 1 everywhere.
    assert baselines(r, m, "sequence").tolist() == [[1.0, 1.0, 1.0, 1.0]]
    # running: b_0 = 0, b_1 = 1, b_2 = (1 + 3) / 2 = 2, b_3 = (1 + 3 - 1) / 3 = 1 (padding excluded).
    assert baselines(r, m, "running").tolist() == [[0.0, 1.0, 2.0, 1.0]]
    # td, alpha 0.5: b_0 = 0, b_1 = 0 + 0.5 (1 - 0) = 0.5, b_2 = 0.5 + 0.5 (3 - 0.5) = 1.75,
    # b_3 = 1.75 + 0.5 (-1 - 1.75) = 0.375.
    assert baselines(r, m, "td", alpha=0.5).tolist() == [[0.0, 0.5, 1.75, 0.375]]


def test_band_classes_follow_eq_15():
    # b = 0, delta = 0.5: 0.6 good, 0.5 on the edge is neutral, -0.2 neutral, -0.7 bad.
    c = band(torch.tensor([[0.6, 0.5, -0.2, -0.7]]), torch.zeros(1, 4), 0.5)
    assert c.tolist() == [[1, 0, 0, -1]]


def test_hysteresis_keeps_the_state_through_the_neutral_band():
    # From good, a dip into the band (0.1, -0.4) stays good; only -0.6 < -0.5 flips to bad; the
    # climb back through the band (0.0, 0.4) stays bad until 0.7 > 0.5.
    r = torch.tensor([[0.9, 0.1, -0.4, -0.6, 0.0, 0.4, 0.7]])
    states = schmitt_states(r, torch.zeros(1), 0.5)
    assert states.tolist() == [[True, True, True, False, False, False, True]]
    assert pivots(states, torch.ones_like(r)).nonzero()[:, 1].tolist() == [3, 6]


def test_zero_offset_reduces_to_sign_changes():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(4, 50, generator=gen)
    b = baselines(r, torch.ones_like(r), "sequence")
    states = schmitt_states(r, b[:, 0], 0.0)
    assert torch.equal(states, r > b)  # no exact ties in random floats
    flips = torch.zeros_like(states)
    flips[:, 1:] = torch.sign(r - b)[:, 1:] != torch.sign(r - b)[:, :-1]
    assert torch.equal(pivots(states, torch.ones_like(r)), flips)


def test_mask_truth_table_sample_kind_by_token_state():
    """chosen/rejected x good/bad/neutral: neutral tokens belong to the segment the trigger keeps
    them in, so a neutral token after a good one counts as good and after a bad one as bad."""
    # b = 0, delta = 0.5; tokens: good, neutral (stays good), bad, neutral (stays bad).
    r = torch.tensor([[1.0, 0.2, -1.0, -0.2]] * 2)
    states = schmitt_states(r, torch.zeros(2), 0.5)
    classes = band(r, torch.zeros(2, 4), 0.5)
    assert classes[0].tolist() == [1, 0, -1, 0]
    keep = loss_mask(states, torch.tensor([True, False]), torch.ones(2, 4))
    table = {}
    for row, kind in enumerate(("chosen", "rejected")):
        for t, label in enumerate(("good", "neutral-in-good", "bad", "neutral-in-bad")):
            table[kind, label] = int(keep[row, t])
    assert table == {
        ("chosen", "good"): 1, ("chosen", "neutral-in-good"): 1, ("chosen", "bad"): 0, ("chosen", "neutral-in-bad"): 0,
        ("rejected", "good"): 0, ("rejected", "neutral-in-good"): 0, ("rejected", "bad"): 1, ("rejected", "neutral-in-bad"): 1,
    }


def test_adaptive_boundaries_are_state_runs_under_the_eos_policy():
    import numpy as np

    from segtool.core.boundaries import FlatLayout, boundary_mask, mask_to_ends

    # Two responses (EOS last): states G G B B G | EOS and B G | EOS.
    layout = FlatLayout.from_lengths(np.array([6, 3]))
    states = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1], dtype=bool)
    ends, counts = mask_to_ends(boundary_mask("adaptive", layout, states=states), layout)
    # Runs [0,1] [2,3] [4]; the last segment ends before EOS (default policy). Row 1: [0] [1].
    assert ends.tolist() == [1, 3, 4, 0, 1] and counts.tolist() == [3, 2]
    ends, _ = mask_to_ends(boundary_mask("adaptive", layout, states=states, eos_in_last_segment=True), layout)
    assert ends.tolist() == [1, 3, 5, 0, 2]  # the EOS closes the last run
