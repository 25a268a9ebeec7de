"""AlpacaEval 2.0 metrics from stored annotations reproduce the published leaderboard rows."""

import csv
from pathlib import Path

import numpy as np
import pytest

from segtool.eval.alpaca_metrics import (
    length_controlled_win_rate,
    load_lc_inputs,
    metrics_from_annotations,
    win_rate_stats,
)

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "alpaca_eval" / "annotations"
EXPECTED = {r["name"]: r for r in csv.DictReader(open(ANNOTATIONS / "expected_metrics.csv"))}


@pytest.mark.parametrize("model", ["alpaca-7b", "gpt-3.5-turbo-1106"])
def test_published_leaderboard_rows_are_reproduced(model):
    got = metrics_from_annotations(ANNOTATIONS / f"{model}.weighted_alpaca_eval_gpt4_turbo.annotations.json.gz")
    want = EXPECTED[model]
    for key in ("win_rate", "standard_error", "discrete_win_rate", "length_controlled_winrate"):
        assert got[key] == pytest.approx(float(want[key]), abs=1e-9), key  # far inside the required 3 decimals
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length"):
        assert got[key] == int(want[key]), key


def test_win_rate_stats_by_hand():
    # (2, 1, 1.5, 0 -> draw): x = (1, 0, .5, .5): WR 50; discrete the same; 1 win, 1 base win, 2 draws.
    s = win_rate_stats([2.0, 1.0, 1.5, 0.0])
    assert (s["win_rate"], s["discrete_win_rate"], s["n_wins"], s["n_wins_base"], s["n_draws"]) == (50.0, 50.0, 1, 1, 2)
    assert s["standard_error"] == pytest.approx(np.std([1, 0, 0.5, 0.5], ddof=1) / 2 * 100)


def test_length_control_discounts_a_pure_length_advantage():
    """A model that is longer on 80% of instructions and wins exactly there: raw win rate ~74%; the GLM
    gives length a negative weight (the feature is baseline minus model length) and LC falls well below."""
    difficulty, gamed = load_lc_inputs()
    rng = np.random.default_rng(0)
    n = len(difficulty)
    len_base = rng.integers(500, 1500, n)
    longer = rng.random(n) < 0.8
    len_model = np.where(longer, len_base + rng.integers(200, 1500, n), len_base - rng.integers(100, 400, n))
    pref = np.where(longer, 1.9, 1.1)
    raw = win_rate_stats(pref)["win_rate"]
    lc, w = length_controlled_win_rate(pref, len_base, len_model, difficulty, gamed)
    assert 70 < raw < 78
    assert w["length"] < 0 and lc < raw - 10
