"""AlpacaEval 2.0 metrics computed as the official tool does (METHOD §8): win rate, its standard
error, counts, discrete win rate, and the length-controlled win rate (a GLM fitted with sklearn).

Preferences are in [1, 2]: the probability-weighted judge preference for the model (output_2) over
the baseline (output_1), 1.5 (or the legacy 0) a draw.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

DATA = Path(__file__).resolve().parents[2] / "data" / "alpaca_eval"
GAMED_WEIGHT_LAMBDA = 0.2  # total weight of the two gamed baselines' rows (0.1 each) in the LC fit
CS = np.logspace(-4, 4, 10)  # the regularisation grid searched by cross-validation
LIBLINEAR_SEED = 123  # alpaca_eval's random_state


def win_rate_stats(preferences) -> dict:
    """win_rate, standard_error (both x100), n_wins, n_wins_base, n_draws, n_total, discrete_win_rate."""
    pref = np.asarray(preferences, dtype=np.float64)
    n_draws = int(np.sum((pref == 1.5) | (pref == 0)))
    x = np.where(pref == 0, 1.5, pref) - 1  # in [0, 1]
    discrete = np.where(pref == 1.5, 0, np.round(pref))  # exact draws stay draws, the rest round to 1 or 2
    d = np.where(discrete == 0, 0.5, discrete - 1)
    return {
        "win_rate": float(x.mean() * 100),
        "standard_error": float(x.std(ddof=1) / np.sqrt(len(x)) * 100),
        "n_wins": int(np.sum(x > 0.5)),
        "n_wins_base": int(np.sum(x < 0.5)),
        "n_draws": n_draws,
        "n_total": int(len(x)),
        "discrete_win_rate": float(d.mean() * 100),
    }


def _design(std_delta_len, difficulty, not_gamed) -> np.ndarray:
    """Columns: tanh(std_delta_len), instruction difficulty, not-gamed flag (no intercept)."""
    return np.column_stack([np.tanh(std_delta_len), difficulty, not_gamed.astype(np.float64)])


def _soft_label_rows(X, p, w):
    """Each row twice: label 1 weighted p * w, label 0 weighted (1 - p) * w (soft labels for sklearn)."""
    X2 = np.vstack([X, X])
    y2 = np.concatenate([np.ones(len(X)), np.zeros(len(X))])
    return X2, y2, np.concatenate([p * w, (1 - p) * w])


def _weighted_logloss(p_true, q, w) -> float:
    q = np.clip(q, 1e-15, 1 - 1e-15)
    return float(-np.mean(w * (p_true * np.log(q) + (1 - p_true) * np.log(1 - q))))


def _fit(X, y, sw, C, rng: np.random.RandomState):
    """L1 logistic regression by liblinear, whose coordinate order is seeded by one draw from ``rng``."""
    model = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=rng)
    return model.fit(X, y, sample_weight=sw)


class LCRows(NamedTuple):
    """The GLM's training rows, each twice (soft labels), and the rows it predicts for."""

    X: np.ndarray  # design rows: the gamed baselines', then the model's, then all of them again
    y: np.ndarray  # 1 for the first copy, 0 for the second
    sample_weight: np.ndarray  # p * w for label 1, (1 - p) * w for label 0
    groups: np.ndarray  # one group per original row, so a row's two copies share a fold
    p: np.ndarray  # P(model wins) of each row, for the cross-validation log loss
    w: np.ndarray  # the row's weight (1 for the model, 0.1 for a gamed baseline), same
    X_eval: np.ndarray  # the model's rows with no length difference


def lc_rows(preferences, len_baseline, len_model, difficulty, gamed) -> LCRows:
    """``gamed``: dict of arrays preference (in [0, 1]), std_delta_len, instruction_difficulty."""
    pref = np.asarray(preferences, dtype=np.float64)
    p_model = np.where(pref == 0, 1.5, pref) - 1
    delta = np.asarray(len_baseline, dtype=np.float64) - np.asarray(len_model, dtype=np.float64)
    std_delta = delta / delta.std(ddof=1)
    difficulty = np.asarray(difficulty, dtype=np.float64)
    X = np.vstack([_design(np.asarray(gamed["std_delta_len"]), np.asarray(gamed["instruction_difficulty"]),
                           np.zeros(len(gamed["preference"]), dtype=bool)),
                   _design(std_delta, difficulty, np.ones(len(pref), dtype=bool))])
    p = np.concatenate([np.asarray(gamed["preference"], dtype=np.float64), p_model])
    w = np.concatenate([np.full(len(gamed["preference"]), GAMED_WEIGHT_LAMBDA / 2), np.ones(len(pref))])
    keep = ~np.isnan(p)
    X, p, w = X[keep], p[keep], w[keep]
    X2, y2, sw2 = _soft_label_rows(X, p, w)
    groups = np.concatenate([np.arange(len(X)), np.arange(len(X))])
    X_eval = _design(np.zeros(len(pref)), difficulty, np.ones(len(pref), dtype=bool))
    return LCRows(X2, y2, sw2, groups, np.concatenate([p, p]), np.concatenate([w, w]), X_eval)


def length_controlled_win_rate(preferences, len_baseline, len_model, difficulty, gamed, n_splits: int = 5) -> tuple[float, dict]:
    """LC win rate (x100) and the fitted weights.

    GLM: P(model wins) = sigma(w_len tanh(d_len / std) + w_instr difficulty + w_ng not_gamed), fitted
    without intercept on the model's rows (weight 1) and the two gamed baselines' rows (weight 0.1
    each), soft labels, L1 (liblinear), C chosen by GroupKFold over rows; predicted with d_len = 0.
    ``gamed``: dict of arrays preference (in [0, 1]), std_delta_len, instruction_difficulty.
    """
    r = lc_rows(preferences, len_baseline, len_model, difficulty, gamed)
    # Seeded as alpaca_eval's LogisticRegressionCV(random_state=123) seeds liblinear: each fold starts a
    # fresh generator, and its fits take one seed each from it in the order of CS; the refit on the best C
    # starts another. One seed for every fit instead lets near-tied Cs swap and moves LC.
    scores = np.zeros(len(CS))
    for train, test in GroupKFold(n_splits=n_splits).split(r.X, r.y, r.groups):
        rng = np.random.RandomState(LIBLINEAR_SEED)
        for i, C in enumerate(CS):
            q = _fit(r.X[train], r.y[train], r.sample_weight[train], C, rng).predict_proba(r.X[test])[:, 1]
            scores[i] -= _weighted_logloss(r.p[test], q, r.w[test])
    best = CS[int(np.argmax(scores))]
    model = _fit(r.X, r.y, r.sample_weight, best, np.random.RandomState(LIBLINEAR_SEED))
    q = model.predict_proba(r.X_eval)[:, 1]
    weights = dict(zip(("length", "instruction_difficulty", "not_gamed"), model.coef_[0].tolist()))
    return float(q.mean() * 100), {**weights, "C": float(best)}


def load_lc_inputs(folder: Path = DATA) -> tuple[np.ndarray, dict]:
    """(instruction difficulty per AlpacaEval instruction, the gamed baselines' rows) shipped in data/."""
    with open(folder / "instruction_difficulty.csv") as fh:
        difficulty = np.array([float(r["instruction_difficulty"]) for r in csv.DictReader(fh)])
    with open(folder / "df_gamed.csv") as fh:
        rows = list(csv.DictReader(fh))
    gamed = {k: np.array([float(r[k]) for r in rows]) for k in ("preference", "std_delta_len", "instruction_difficulty")}
    return difficulty, gamed


def leaderboard_metrics(preferences, len_baseline, len_model, difficulty, *, length_controlled: bool = True) -> dict:
    """The leaderboard row: win rate, SE, counts, discrete win rate, average length (characters of
    the model's outputs) and, with ``length_controlled``, the LC win rate and its GLM weights.

    NaN preferences (the judge named neither output) are dropped from the win rate, as alpaca_eval
    does, and counted in ``n_unparsed``. LC needs the official baseline (its GLM inputs describe
    gpt4_1106_preview) and at least two outputs of different length differences.
    """
    pref = np.asarray(preferences, dtype=np.float64)
    valid = ~np.isnan(pref)
    if not valid.any():
        raise ValueError("no preference could be read from the judge")
    out = {**win_rate_stats(pref[valid]), "n_unparsed": int((~valid).sum()),
           "avg_length": int(np.mean([float(n) for n in len_model]))}
    delta = np.asarray(len_baseline, dtype=np.float64) - np.asarray(len_model, dtype=np.float64)
    if length_controlled and len(delta) > 1 and delta.std(ddof=1) > 0:
        _, gamed = load_lc_inputs()
        lc, weights = length_controlled_win_rate(pref, len_baseline, len_model, difficulty, gamed)
        out.update(length_controlled_winrate=lc, lc_weights=weights)
    else:
        out.update(length_controlled_winrate=None, lc_weights=None)
        if length_controlled:
            out["lc_note"] = "not computed: needs two or more outputs whose length differences vary"
    return out


def read_annotations(path: str | Path) -> list[dict]:
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def metrics_from_annotations(path: str | Path) -> dict:
    """All AlpacaEval 2.0 leaderboard metrics from an alpaca_eval annotations.json(.gz) file,
    rows in the order of the 805 AlpacaEval instructions (as alpaca_eval writes them)."""
    rows = read_annotations(path)
    difficulty, _ = load_lc_inputs()
    pref = [np.nan if r["preference"] is None else r["preference"] for r in rows]
    return leaderboard_metrics(pref, [len(r["output_1"]) for r in rows], [len(r["output_2"]) for r in rows],
                               difficulty[: len(rows)])
