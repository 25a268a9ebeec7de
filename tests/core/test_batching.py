import numpy as np

from segtool.core.batching import length_sorted_batches, micro_batches, pair_micro_batches


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


def test_micro_batches_longest_first_ties_keep_their_order():
    # indices 7, 3, 5, 9 with lengths 2, 5, 5, 1: 3 and 5 (length 5, in that order), then 7, then 9
    assert [b.tolist() for b in micro_batches(np.array([7, 3, 5, 9]), [2, 5, 5, 1], 3)] == [[3, 5, 7], [9]]


def test_pair_micro_batches_group_by_the_longer_side():
    class Side:
        def __init__(self, length):
            self.length = length

    pairs = [(Side(4), Side(1)), (Side(2), Side(6)), (Side(3), Side(3))]  # longer sides 4, 6, 3
    assert [b.tolist() for b in pair_micro_batches(pairs, np.array([0, 1, 2]), 2)] == [[1, 0], [2]]


def test_packed_batches_fill_the_budget_with_real_tokens():
    from segtool.core.batching import length_sorted_batches

    lengths = [10, 3, 7, 4, 12]
    padded = length_sorted_batches(lengths, 24)
    packed = length_sorted_batches(lengths, 24, packed=True)
    assert [b.tolist() for b in padded] == [[4, 0], [2, 3, 1]]  # 2 x 12 and 3 x 7 padded tokens
    assert [b.tolist() for b in packed] == [[4, 0], [2, 3, 1]]  # 12 + 10 = 22; 7 + 4 + 3 = 14
    assert [b.tolist() for b in length_sorted_batches(lengths, 21, packed=True)] == [[4], [0, 2, 3], [1]]
    assert [b.tolist() for b in length_sorted_batches([30, 2], 8, packed=True)] == [[0], [1]]  # too long: alone
