"""Arena-Hard, MT-Bench and GSM8K metrics on synthetic judgments with known answers."""

import math

import pytest

from segtool.eval import arena_metrics as arena
from segtool.eval import gsm8k_metrics as gsm8k
from segtool.eval import mtbench_metrics as mt


def test_arena_verdict_parsing():
    assert arena.parse_verdict("... so my final verdict is [[B>A]].") == "B>A"
    assert arena.parse_verdict("[[A>>B]] and again [[A>>B]]") == "A>>B"  # repeated, same: fine
    assert arena.parse_verdict("[[A>B]] no wait [[B>A]]") is None  # contradictory
    assert arena.parse_verdict("no verdict here") is None


def test_arena_weighting_and_sides():
    # game 1 (A = baseline): A>>B -> baseline x3; B>A -> model. game 2 (A = model): A>B -> model; A=B -> tie.
    out = arena.battles(["A>>B", "B>A", None], ["A>B", "A=B"])
    assert sorted(out) == sorted(["baseline"] * 3 + ["model", "model", "tie"])


def test_bradley_terry_recovers_a_known_win_rate():
    # 3 model wins, 1 baseline win, no ties, each counted twice: MLE win rate 3/4 -> 75.
    model, baseline = arena.bt_ratings(["model", "model", "model", "baseline"])
    assert baseline == 1000.0
    assert model == pytest.approx(1000 + 400 * math.log10(3), abs=1e-3)  # 10^(d/400) = 3
    assert arena.win_rate(model, baseline) == pytest.approx(75.0, abs=1e-3)
    # A tie is half a win for each side: 1 win, 1 loss, 2 ties -> 50.
    assert arena.win_rate(*arena.bt_ratings(["model", "baseline", "tie", "tie"])) == pytest.approx(50.0, abs=1e-4)


def test_bootstrap_is_stable_for_a_fixed_seed_and_brackets_the_score():
    outcomes = ["model"] * 60 + ["baseline"] * 30 + ["tie"] * 10
    a = arena.score(outcomes, rounds=50, seed=42)
    b = arena.score(outcomes, rounds=50, seed=42)
    assert a == b
    assert a["score"] == pytest.approx(65.0, abs=1e-3)  # (60 + 10/2) / 100
    assert a["lower"] < a["score"] < a["upper"] and a["upper"] - a["lower"] < 25
    assert arena.score(outcomes, rounds=50, seed=7) != a


def test_mtbench_rating_extraction_and_averages():
    assert mt.parse_rating("Rating: [[8.5]]") == 8.5
    assert mt.parse_rating("I give it [7]") == 7.0  # fallback pattern
    assert mt.parse_rating("no rating at all") == -1.0
    rows = [(1, 8.0), (1, 6.0), (2, 5.0), (2, -1.0), (1, -1.0)]
    s = mt.summarise(rows)
    assert (s["turn_1"], s["turn_2"], s["overall"], s["rated"], s["unrated"]) == (7.0, 5.0, 19 / 3, 3, 2)


def test_gsm8k_final_numbers():
    solution = "She has 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 1,018"
    assert gsm8k.reference_answer(solution) == 1018.0
    assert gsm8k.last_number("So the answer is 1,018 dollars.") == 1018.0
    assert gsm8k.last_number("no digits") is None
    assert gsm8k.accuracy(["The total is 18.", "It is 17", "none"], ["#### 18", "#### 18", "#### 3"]) == 1 / 3
