import numpy as np
import pytest

from segtool.core.splits import fraction_split, heldout_split


def test_fraction_split_is_seeded_disjoint_and_keeps_one_on_each_side():
    train, held = fraction_split(10, 0.2, seed=4)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(10))
    assert len(held) == 2 and list(train) == sorted(train) and list(held) == sorted(held)
    assert np.array_equal(fraction_split(10, 0.2, seed=4)[1], held)
    assert len(fraction_split(3, 0.0, seed=0)[1]) == 1 and len(fraction_split(3, 1.0, seed=0)[0]) == 1
    with pytest.raises(ValueError):
        fraction_split(1, 0.5, seed=0)


def test_heldout_split_refuses_to_hold_out_everything():
    train, held = heldout_split(12, 3, seed=1)
    assert len(train) == 9 and len(held) == 3 and not set(train) & set(held)
    with pytest.raises(ValueError):
        heldout_split(3, 3, seed=1)
