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
