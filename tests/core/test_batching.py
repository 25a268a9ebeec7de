import numpy as np

from segtool.core.batching import length_sorted_batches


def test_longest_first_under_budget():
    # Sorted: idx1 (10), idx3 (8), idx0 (5), idx2 (3). Budget 20: 20 // 10 = 2 rows, then 20 // 5 = 4.
    batches = length_sorted_batches([5, 10, 3, 8], 20)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2]]


def test_over_budget_sequence_gets_its_own_batch():
    assert [b.tolist() for b in length_sorted_batches([50, 4], 16)] == [[0], [1]]


def test_every_index_exactly_once():
    lengths = np.random.default_rng(0).integers(1, 300, size=257)
    flat = np.concatenate(length_sorted_batches(lengths, 1024))
    assert sorted(flat.tolist()) == list(range(257))
    for b in length_sorted_batches(lengths, 1024):
        assert len(b) == 1 or len(b) * lengths[b].max() <= 1024
