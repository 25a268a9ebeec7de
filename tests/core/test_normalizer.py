"""normalize() with hand-computed numbers (METHOD §4)."""

import math

import numpy as np
import pytest
import torch

from segtool.core.normalizer import Normaliser, bin_stats, normalize


def test_location_normaliser_golden():
    # Mean(p) = 0.5 log p + 1, Std(p) = -0.2 log p + 0.5, floor 0.3.
    norm = Normaliser("location", w_mu=0.5, b_mu=1.0, w_sigma=-0.2, b_sigma=0.5, floor=0.3)
    # K = 2: segments at p = 1/2 and 1. Segment 0: mean = 1 - 0.5 ln 2 = 0.6534264, std = 0.5 + 0.2 ln 2 = 0.6386294.
    r = torch.tensor([2.0, 3.0])
    out = normalize(r, torch.tensor([0, 1]), torch.tensor([2, 2]), norm)
    assert abs(out[0].item() - (2.0 - (1 - 0.5 * math.log(2))) / (0.5 + 0.2 * math.log(2))) < 1e-6
    assert abs(out[1].item() - (3.0 - 1.0) / 0.5) < 1e-6  # p = 1: log p = 0


def test_floor_applies_where_the_fitted_std_drops_below_it():
    # Std(p) = 1.0 log p + 0.5 < 0 for small p: at p = 1/10, 0.5 - 2.302585 = -1.80 -> floor 0.25.
    norm = Normaliser("location", w_mu=0.0, b_mu=0.0, w_sigma=1.0, b_sigma=0.5, floor=0.25)
    out = normalize(torch.tensor([1.0]), torch.tensor([0]), torch.tensor([10]), norm)
    assert abs(out.item() - 1.0 / 0.25) < 1e-6


@pytest.mark.parametrize("kind", ["global", "last"])
def test_global_and_last_are_one_affine_map_for_every_location(kind):
    norm = Normaliser(kind, mean=1.5, std=2.0)
    out = normalize(torch.tensor([1.5, 3.5, -0.5]), torch.tensor([0, 3, 9]), torch.tensor([1, 4, 10]), norm)
    assert out.tolist() == [0.0, 1.0, -1.0]


def test_none_is_identity():
    r = torch.tensor([0.3, -2.0])
    assert torch.equal(normalize(r, torch.tensor([0, 1]), torch.tensor([2, 2]), Normaliser("none")), r)


def test_bin_stats_golden():
    # p 0.3333 and 0.33334 fall into bin 0.333; 1.0 into bin 1.0.
    stats = bin_stats(np.array([1 / 3, 0.33334, 1.0]), np.array([1.0, 3.0, 5.0]))
    assert stats["p"].tolist() == [0.333, 1.0]
    assert stats["mean"].tolist() == [2.0, 5.0] and stats["std"].tolist() == [1.0, 0.0]
    assert stats["count"].tolist() == [2, 1]


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown normaliser kind"):
        Normaliser("median")
