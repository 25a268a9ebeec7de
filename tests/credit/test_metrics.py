"""Credit-assignment metrics against hand-computed examples (segtool.credit.metrics)."""

import math

import numpy as np
import pytest

from segtool.credit import metrics as m


def test_auroc_minimum_inside_the_span_is_perfect():
    # scores -c = [-0.5, -0.2, 1.0, -0.3, -0.4]; the one span token (1.0) beats all 4 others: 4 / 4
    assert m.token_auroc([0.5, 0.2, -1.0, 0.3, 0.4], [False, False, True, False, False]) == 1.0


def test_auroc_minimum_outside_the_span():
    # scores -c = [1.0, -0.2, -0.1, -0.3, -0.5]; span {1, 2} vs outside {1.0, -0.3, -0.5}:
    # -0.2 beats -0.3 and -0.5, loses to 1.0 (2 wins); -0.1 likewise (2 wins): 4 / (2 * 3)
    assert m.token_auroc([-1.0, 0.2, 0.1, 0.3, 0.5], [False, True, True, False, False]) == pytest.approx(4 / 6)


def test_auroc_ties_count_one_half():
    # scores -c = [0, 0, 0, -1]; span {0}: tie with 0 (1/2), tie with 0 (1/2), beats -1 (1): 2 / 3
    assert m.token_auroc([0.0, 0.0, 0.0, 1.0], [True, False, False, False]) == pytest.approx(2 / 3)
    # a constant credit says nothing: every comparison is a tie
    assert m.token_auroc([0.3] * 5, [True, True, False, False, False]) == 0.5


def test_auroc_undefined_without_tokens_on_both_sides():
    assert math.isnan(m.token_auroc([1.0, -1.0], [True, True]))
    assert math.isnan(m.token_auroc([1.0, -1.0], [False, False]))


def test_auroc_equals_the_pairwise_definition_on_random_vectors():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.integers(-3, 4, size=30).astype(float)  # small integers: many ties
        span = rng.random(30) < 0.3
        span[0], span[1] = True, False
        pos, neg = -c[span], -c[~span]
        expected = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
        assert m.token_auroc(c, span) == pytest.approx(expected)


def test_pointing_game_minimum_inside_outside_and_ties():
    # segment rewards [0.3, -0.8, 0.1]: the lowest (-0.8) is segment 1, which holds the defect
    assert m.pointing_game([0.3, -0.8, 0.1], [False, True, False]) == 1.0
    # the lowest (-0.9) is segment 0, the defect is in segment 1
    assert m.pointing_game([-0.9, -0.2, 0.4], [False, True, False]) == 0.0
    # segments 0, 2 and 3 tie for the lowest (-0.5); 0 and 3 overlap the defect: 2 / 3
    assert m.pointing_game([-0.5, 0.1, -0.5, -0.5], [True, False, False, True]) == pytest.approx(2 / 3)
    # no segment holds a gold token (span cut away by truncation): undefined
    assert math.isnan(m.pointing_game([0.1, -0.2], [False, False]))


def test_unit_overlaps_from_segment_ends():
    # segments: tokens 0-2, 3-5, 6-8 (the last one ends on the EOS, index 8, outside the 8 scored tokens)
    span = np.zeros(8, dtype=bool)
    span[[5, 6]] = True
    assert m.unit_overlaps([2, 5, 8], span).tolist() == [False, True, True]
    span[:] = False
    span[3] = True
    assert m.unit_overlaps([2, 5, 8], span).tolist() == [False, True, False]
    # one unit per token (per-token credit)
    assert m.unit_overlaps(np.arange(8), span).tolist() == [i == 3 for i in range(8)]


def test_mass_in_span():
    # negative parts max(0, -c) = [0, 1, 3, 0]: 3 of the 4 units of negative credit are on token 2
    assert m.mass_in_span([0.5, -1.0, -3.0, 2.0], [False, False, True, False]) == pytest.approx(0.75)
    assert math.isnan(m.mass_in_span([0.5, 0.0, 2.0], [False, True, False]))  # no negative credit


def test_tokens_overlapping_a_character_span():
    offsets = [(0, 4), (4, 8), (8, 8), (8, 12)]  # the third token is zero-width, at character 8
    assert m.tokens_overlapping(offsets, 5, 8).tolist() == [False, True, False, False]
    assert m.tokens_overlapping(offsets, 8, 10).tolist() == [False, False, True, True]
    assert m.tokens_overlapping(offsets, 3, 5).tolist() == [True, True, False, False]


def test_bootstrap_interval_is_seeded_and_skips_undefined_values():
    values = [1.0, 0.0, 1.0, 1.0, float("nan")]
    a, b = m.bootstrap_interval(values, seed=3), m.bootstrap_interval(values, seed=3)
    assert a == b
    assert a["mean"] == 0.75 and a["n"] == 4 and a["undefined"] == 1
    assert 0.0 <= a["low"] <= a["mean"] <= a["high"] <= 1.0
    constant = m.bootstrap_interval([0.4] * 7, seed=0)
    assert constant["low"] == pytest.approx(0.4) and constant["high"] == pytest.approx(0.4)
    empty = m.bootstrap_interval([float("nan")] * 3, seed=0)
    assert math.isnan(empty["mean"]) and empty["n"] == 0 and empty["undefined"] == 3


def test_bootstrap_interval_width_matches_the_normal_approximation():
    # 400 fair coin flips: the 95% interval of the mean is about +-1.96 * 0.5 / sqrt(400) = +-0.049
    values = np.random.default_rng(1).integers(0, 2, size=400).astype(float)
    ci = m.bootstrap_interval(values, seed=0)
    assert 0.04 < (ci["high"] - ci["low"]) / 2 < 0.058
    assert ci["low"] < ci["mean"] < ci["high"]
