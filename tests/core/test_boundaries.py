"""Golden boundary tests (METHOD §2) from hand-written entropy vectors.

Response of n = 6 tokens, positions 0..5, position 5 is EOS.
H = [0.5, 2.5, 1.0, 3.0, 2.2, 4.0]; with c_ent = 2.0 the positions with H_j > c_ent are 1, 3, 4, 5.
"""

import numpy as np
import pytest

from segtool.core.boundaries import (
    FlatLayout,
    boundary_mask,
    entropy_segment_ends,
    mask_to_ends,
    segment_lengths,
    segment_lengths_flat,
)

H = np.array([0.5, 2.5, 1.0, 3.0, 2.2, 4.0], dtype=np.float32)


def ends_for(strategy, entropy=H, lengths=(6,), **kw):
    layout = FlatLayout.from_lengths(np.array(lengths))
    ends, counts = mask_to_ends(boundary_mask(strategy, layout, entropy=entropy, **kw), layout)
    return ends.tolist(), counts.tolist()


def test_entropy_rule_default_eos_policy():
    # Boundaries at 1 and 3 (H > 2). Position 4 is n-2, the forced last end; the boundary found on
    # EOS (5) is moved to n-2, where one already is. Segments: [0,1] [2,3] [4]; EOS in none.
    assert ends_for("entropy", c_ent=2.0) == ([1, 3, 4], [3])


def test_entropy_rule_eos_in_last_segment():
    # Same boundaries, but the last segment closes on EOS itself: [0,1] [2,3] [4] [5].
    assert ends_for("entropy", c_ent=2.0, eos_in_last_segment=True) == ([1, 3, 4, 5], [4])


def test_boundary_only_on_eos_is_moved_before_it():
    h = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 9.0], dtype=np.float32)
    assert ends_for("entropy", entropy=h, c_ent=2.0) == ([4], [1])


def test_equal_to_cutoff_is_not_a_boundary():
    # Strictly greater: H_j = c_ent does not end a segment.
    h = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0], dtype=np.float32)
    assert ends_for("entropy", entropy=h, c_ent=2.0) == ([4], [1])


def test_c_ent_zero_gives_one_segment_per_token():
    # Every H_j > 0, so every position before EOS ends a segment: the token-level RM.
    assert ends_for("entropy", c_ent=0.0) == ([0, 1, 2, 3, 4], [5])
    assert ends_for("token") == ([0, 1, 2, 3, 4], [5])
    assert ends_for("token", eos_in_last_segment=True) == ([0, 1, 2, 3, 4, 5], [6])


def test_huge_cutoff_gives_one_segment():
    assert ends_for("entropy", c_ent=1000.0) == ([4], [1])
    assert ends_for("entropy", c_ent=1000.0, eos_in_last_segment=True) == ([5], [1])


def test_bandit_is_one_segment_ending_on_eos_under_either_policy():
    assert ends_for("bandit") == ([5], [1])
    assert ends_for("bandit", eos_in_last_segment=True) == ([5], [1])


def test_ngram():
    # n = 2: (j + 1) % 2 == 0 -> 1, 3, 5; 5 is EOS -> dropped, and n-2 = 4 closes the last one.
    assert ends_for("ngram", n=2) == ([1, 3, 4], [3])
    assert ends_for("ngram", n=2, eos_in_last_segment=True) == ([1, 3, 5], [3])
    assert ends_for("ngram", n=5) == ([4], [1])
    assert ends_for("ngram", n=20) == ([4], [1])


def test_punct_uses_the_token_table():
    # Vocabulary of 10; tokens 7 ('.') and 8 (',') end segments.
    table = np.zeros(10, dtype=bool)
    table[[7, 8]] = True
    tokens = np.array([3, 7, 4, 8, 5, 2])  # "a . b , c <eos>"
    assert ends_for("punct", token_ids=tokens, punct_table=table) == ([1, 3, 4], [3])


def test_sat_reads_the_sentence_end_marks_under_the_eos_policy():
    # Sentences end at 1 and 3; a mark on EOS (5) is moved to n-2 by default and kept with EOS in the last segment.
    marks = np.array([False, True, False, True, False, True])
    assert ends_for("sat", sentence_ends=marks) == ([1, 3, 4], [3])
    assert ends_for("sat", sentence_ends=marks, eos_in_last_segment=True) == ([1, 3, 5], [3])
    two_rows = np.array([False, True, False, False, False, False, True, False, False])  # n = 6, then n = 3
    assert ends_for("sat", entropy=None, lengths=(6, 3), sentence_ends=two_rows) == ([1, 4, 0, 1], [2, 2])
    with pytest.raises(ValueError, match="one sentence-end flag per response position"):
        ends_for("sat", sentence_ends=marks[:5])
    with pytest.raises(ValueError, match="one sentence-end flag per response position"):
        ends_for("sat")


def test_two_rows_at_once_match_one_by_one():
    h2 = np.array([5.0, 0.1, 7.0], dtype=np.float32)  # n = 3: boundary at 0; last end n-2 = 1
    both = np.concatenate([H, h2])
    ends, counts = entropy_segment_ends(both, np.array([6, 3]), c_ent=2.0)
    assert ends.tolist() == [1, 3, 4, 0, 1]
    assert counts.tolist() == [3, 2]
    assert ends.dtype == np.int32


def test_shortest_response_has_one_segment():
    # n = 2 (one token + EOS): the only segment is [0] by default, [0] [1] or [0,1] with EOS.
    assert entropy_segment_ends(np.array([9.0, 9.0]), np.array([2]), 2.0)[0].tolist() == [0]
    assert entropy_segment_ends(np.array([9.0, 9.0]), np.array([2]), 2.0, True)[0].tolist() == [0, 1]
    assert entropy_segment_ends(np.array([0.0, 0.0]), np.array([2]), 2.0, True)[0].tolist() == [1]


def test_length_one_response_is_rejected():
    with pytest.raises(ValueError, match="at least one token before its EOS"):
        FlatLayout.from_lengths(np.array([3, 1]))


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy"):
        ends_for("sentence")


def test_segment_lengths():
    assert segment_lengths([1, 3, 4]).tolist() == [2, 2, 1]
    assert segment_lengths_flat(np.array([1, 3, 4, 0, 1]), np.array([3, 2])).tolist() == [2, 2, 1, 1, 1]
    # A row with zero segments (impossible from boundary_mask, but the helper must not misalign).
    assert segment_lengths_flat(np.array([2, 5]), np.array([1, 0, 1])).tolist() == [3, 6]


def test_mismatched_lengths_are_clear_errors():
    layout = FlatLayout.from_lengths(np.array([3, 2]))
    with pytest.raises(ValueError, match="4 entropies for 5 response positions"):
        boundary_mask("entropy", layout, entropy=np.zeros(4))
    with pytest.raises(ValueError, match="6 token ids for 5 response positions"):
        boundary_mask("punct", layout, token_ids=np.zeros(6, dtype=int), punct_table=np.zeros(3, dtype=bool))
