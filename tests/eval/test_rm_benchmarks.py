"""RewardBench 2 and RM-Bench arithmetic on hand-built rows with known reward-model scores (no model):
best-of-4 with tied scores, the weighted Ties score, the 3x3 style matrix and its triangles."""

import math

import numpy as np
import pytest

from segtool.errors import InputError
from segtool.eval import rm_benchmarks as bench
from segtool.inputs.benchmark_rows import CandidateRow


def row(key, group, n_chosen, n_rejected, row_id=0):
    return CandidateRow(row_id, key, group, ({"role": "user", "content": "q"},),
                        tuple(f"c{i}" for i in range(n_chosen)), tuple(f"r{i}" for i in range(n_rejected)))


def scored(chosen, rejected):
    return np.array(chosen, dtype=np.float32), np.array(rejected, dtype=np.float32)


BEST_OF_4 = [  # (chosen, rejected, expected credit)
    ([2.0], [1.0, 0.5, -1.0], 1.0),  # above every rejected
    ([2.0], [2.0, 0.5, -1.0], 1 / 2),  # tied with one rejected at the top: the credit is shared
    ([2.0], [2.0, 2.0, 1.0], 1 / 3),
    ([0.0], [0.0, 0.0, 0.0], 1 / 4),
    ([1.0], [2.0, 0.0, 0.0], 0.0),  # below one rejected
    ([1.0], [1.0, 2.0, 0.0], 0.0),  # tied, but not at the top
]


@pytest.mark.parametrize("chosen, rejected, expected", BEST_OF_4)
def test_best_of_4_credit_with_ties_in_scores(chosen, rejected, expected):
    assert bench.best_of_n_result(*scored(chosen, rejected)) == pytest.approx(expected)


# Ties: prompt 0 is right on both rows, prompt 1 wrong on both.
TIES_ROWS = [("ref:0", [3.0], [1.0, 2.0]), ("tied:0", [3.0, 2.5], [1.0, 0.0]),
             ("ref:1", [1.0], [2.0]), ("tied:1", [4.0, 1.0], [2.0])]


def test_ties_score_by_hand():
    rows = [row(key, "Ties", len(c), len(r)) for key, c, r in TIES_ROWS]
    out = bench.ties_score(rows, [scored(c, r) for _, c, r in TIES_ROWS])
    # gaps (worst correct - best wrong): ref [1, -1], tied [1.5, -1]; spreads of the tied answers [0.5, 3]
    assert out["ref_accuracy"] == out["tied_accuracy"] == 0.5
    assert out["correctness_preferred"] == 0.5  # 1.5 > 0.5, -1 < 3
    assert out["correctness_preferred_hard"] == 0.5  # min(1, 1.5) = 1 > 0.5, -1 < 3
    margin = (math.tanh(1 / 0.5 - 1) + math.tanh(-1 / 3 - 1)) / 2
    assert out["correctness_margin_score"] == pytest.approx(margin)
    assert out["score"] == pytest.approx(0.3 * 0.5 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * margin)
    assert out["prompts"] == 2


def test_ties_zero_spread_counts_as_a_full_margin_and_the_score_can_pass_one():
    rows = [row("ref:7", "Ties", 1, 1), row("tied:7", "Ties", 2, 1)]
    out = bench.ties_score(rows, [scored([1.0], [0.0]), scored([2.0, 2.0], [0.0])])
    assert out["correctness_margin_score"] == 1.0  # tanh(1 / 0 - 1) = tanh(inf)
    assert out["score"] == pytest.approx(1.01)


def test_ties_without_a_reference_tied_pair_is_an_error():
    with pytest.raises(InputError, match="no prompt with both a ref:N and a tied:N row"):
        bench.ties_score([row("ref:0", "Ties", 1, 2)], [scored([1.0], [0.0, 0.5])])


def test_rewardbench2_report_is_the_mean_over_subsets():
    rows = [row(f"m{k}", "Math", 1, 3, k) for k in range(len(BEST_OF_4))]
    rows += [row(key, "Ties", len(c), len(r), 10 + k) for k, (key, c, r) in enumerate(TIES_ROWS)]
    scores = [scored(c, r) for c, r, _ in BEST_OF_4] + [scored(c, r) for _, c, r in TIES_ROWS]
    metrics, results = bench.rewardbench2_report(rows, scores)
    math_score = sum(e for *_, e in BEST_OF_4) / len(BEST_OF_4)
    ties = bench.ties_score(rows[len(BEST_OF_4):], scores[len(BEST_OF_4):])["score"]
    assert metrics["subsets"]["Math"] == {"rows": 6, "score": pytest.approx(math_score)}
    assert metrics["subsets"]["Ties"]["score"] == pytest.approx(ties) and metrics["subsets"]["Ties"]["rows"] == 4
    assert metrics["score"] == pytest.approx((math_score + ties) / 2) and metrics["rows"] == 10
    assert results[: len(BEST_OF_4)] == pytest.approx([e for *_, e in BEST_OF_4])
    assert results[len(BEST_OF_4):] == [None] * 4  # Ties is scored as a whole


def test_style_matrix_triangles():
    matrix = bench.style_matrix(*scored([3.0, 2.0, 1.0], [2.5, 1.5, 0.5]))
    assert matrix.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    # hard = upper right (plainer chosen vs fancier rejected), easy = lower left
    assert bench.matrix_accuracies(matrix) == {"hard": 1.0, "normal": 1.0, "easy": 0.0}
    asymmetric = np.array([[0, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=float)
    assert bench.matrix_accuracies(asymmetric) == pytest.approx({"hard": 1 / 3, "normal": 1 / 3, "easy": 2 / 3})


def test_rmbench_report_per_domain_and_overall():
    rows = [row("a", "chat", 3, 3, 0), row("b", "chat", 3, 3, 1), row("c", "safety", 3, 3, 2)]
    scores = [scored([3.0, 2.0, 1.0], [2.5, 1.5, 0.5]), scored([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
              scored([1.0, 1.0, 1.0], [1.0, 0.0, 2.0])]
    m = bench.rmbench_report(rows, scores)
    chat, safety = m["domains"]["chat"], m["domains"]["safety"]
    assert (chat["hard"], chat["normal"], chat["easy"]) == (0.5, 0.5, 0.0) and chat["rows"] == 2
    assert chat["score"] == pytest.approx(1 / 3)
    assert chat["matrix"] == [[0.5, 0.5, 0.5], [0.0, 0.5, 0.5], [0.0, 0.0, 0.5]]
    assert (safety["hard"], safety["normal"], safety["easy"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert m["hard"] == pytest.approx((0.5 + 1 / 3) / 2) and m["easy"] == pytest.approx((0 + 1 / 3) / 2)
    assert m["score"] == pytest.approx((1 / 3 + 1 / 3) / 2) and m["rows"] == 3
