"""Arena-Hard-Auto v2.0 scoring (METHOD §8) as arena-hard-auto's gen_judgment.py and show_result.py do it.

Verdicts: the judge's text is upper-cased and each configured pattern (``[[X]]``, then ``[X]``) is
tried in turn; the last match of the first pattern that matches is the label. A question counts only
when both of its games have a label the score table knows; otherwise both games are dropped.

Battles, from the model's side: game 2 (A = model) gives the label's score, game 1 (A = baseline)
one minus it; wins 1, ties 0.5, losses 0, and a strong verdict (>>, <<) counts three times.

Scores per category are Bradley-Terry win rates against the baseline from a logistic regression
without intercept or penalty (ties as half a win and half a loss), over ``rounds`` bootstrap
resamples of the battles drawn with numpy's RandomState(seed). Without style control the score is
the mean of the resampled win rates (for one model against its baseline the fitted win rate is the
share of points won, which is what show_result.py averages); with style control the standardised
style covariates of ``arena_style`` join the regression and the score is the median. The interval
is the 5th-95th percentile of the resampled win rates, as show_result.py reports it.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.linear_model import LogisticRegression

from segtool.eval.arena_metrics import unpenalised
from segtool.eval.arena_style import FEATURES, battle_covariates, standardise

STRONG_WEIGHT = 3
# label -> the score of assistant A (1 win, 0.5 tie, 0 loss); strong labels count STRONG_WEIGHT times
LABEL_SCORES = {"A>B": (1.0, 1), "A>>B": (1.0, STRONG_WEIGHT), "A=B": (0.5, 1), "A<<B": (0.0, STRONG_WEIGHT),
                "A<B": (0.0, 1), "B>A": (0.0, 1), "B>>A": (0.0, STRONG_WEIGHT), "B=A": (0.5, 1),
                "B<<A": (1.0, STRONG_WEIGHT), "B<A": (1.0, 1)}
INTERVAL = (5.0, 95.0)


def parse_verdict(judgment: str, patterns: list[str]) -> str | None:
    """The judge's label: the last match of the first pattern with a non-empty match, or None."""
    text = judgment.upper()
    for pattern in patterns:
        found = [m for m in re.findall(pattern, text) if m]
        if found:
            return found[-1].strip("\n")
    return None


def question_scores(label_game1: str | None, label_game2: str | None) -> list[float] | None:
    """The model's battle outcomes for one question (game 2's, then game 1's), or None when either
    game has no usable label."""
    if label_game1 not in LABEL_SCORES or label_game2 not in LABEL_SCORES:
        return None
    s2, n2 = LABEL_SCORES[label_game2]  # A = the model
    s1, n1 = LABEL_SCORES[label_game1]  # A = the baseline
    return [s2] * n2 + [1.0 - s1] * n1


def fit_win_rate(outcomes: np.ndarray, covariates: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(win rate, covariate coefficients) of the logistic regression P(model wins) = sigma(b + c . x).

    Outcomes all 1 (all 0) have no finite fit: the win rate is 1 (0) and the coefficients 0."""

    k = 0 if covariates is None else covariates.shape[1]
    if (outcomes == outcomes[0]).all() and outcomes[0] in (0.0, 1.0):
        return float(outcomes[0]), np.zeros(k)
    x = np.ones((len(outcomes), 1)) if covariates is None else np.hstack([np.ones((len(outcomes), 1)), covariates])
    # a tie (0.5) is split into a win and a loss of half weight each, which has the same likelihood
    wins, losses = outcomes > 0, outcomes < 1
    rows = np.vstack([x[wins], x[losses]])
    y = np.concatenate([np.ones(wins.sum()), np.zeros(losses.sum())])
    weight = np.concatenate([np.where(outcomes[wins] == 1, 1.0, 0.5), np.where(outcomes[losses] == 0, 1.0, 0.5)])
    fit = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=1000, **unpenalised()).fit(rows, y, sample_weight=weight)
    coef = fit.coef_[0]
    return float(1.0 / (1.0 + np.exp(-coef[0]))), coef[1:]


def category_scores(outcomes: list[float], model_style: np.ndarray, baseline_style: np.ndarray, *,
                    rounds: int = 100, seed: int = 42) -> dict:
    """Scores (x100) with and without style control, their intervals and the style coefficients (median
    over the resamples; None for a feature left out as constant). ``model_style`` / ``baseline_style``:
    one (token length, headers, lists, bold) row per battle."""
    y = np.asarray(outcomes, dtype=np.float64)
    if not len(y):
        raise ValueError("no battles to score")
    z, kept = standardise(battle_covariates(model_style, baseline_style))
    picks = np.random.RandomState(seed).randint(0, len(y), size=(rounds, len(y)))
    plain, styled, coefs = [], [], []
    for pick in picks:
        plain.append(fit_win_rate(y[pick])[0])
        rate, c = fit_win_rate(y[pick], z[pick])
        styled.append(rate)
        coefs.append(c)
    plain, styled = 100 * np.array(plain), 100 * np.array(styled)
    median_coef = np.median(np.array(coefs), axis=0) if kept else np.array([])
    named = dict(zip(kept, (float(c) for c in median_coef)))
    return {"score": float(plain.mean()), "lower": float(np.percentile(plain, INTERVAL[0])),
            "upper": float(np.percentile(plain, INTERVAL[1])),
            "score_style": float(np.median(styled)), "lower_style": float(np.percentile(styled, INTERVAL[0])),
            "upper_style": float(np.percentile(styled, INTERVAL[1])),
            "style_coefficients": {name: named.get(name) for name in FEATURES},
            "battles": int(len(y)), "rounds": rounds, "seed": seed}


def report(records: list[dict], styles: dict[str, tuple], skipped: dict[str, str], *, rounds: int = 100,
           seed: int = 42) -> dict:
    """Per category (show_result.py scores each on its own): scores with and without style control.
    ``styles``: uid -> (model's, baseline's) (token length, headers, lists, bold); ``skipped``: category
    -> why it was not judged."""
    by_category: dict[str, list[dict]] = {}
    for r in records:
        by_category.setdefault(r["category"], []).append(r)
    categories = {}
    for category, rows in by_category.items():
        outcomes, model_rows, base_rows, unusable = [], [], [], 0
        for r in rows:
            scores = question_scores(r["games"][0]["score"], r["games"][1]["score"])
            if scores is None:
                unusable += 1
                continue
            model_feat, base_feat = styles[r["uid"]]
            outcomes += scores
            model_rows += [model_feat] * len(scores)
            base_rows += [base_feat] * len(scores)
        entry = {"baseline": rows[0]["baseline"], "questions": len(rows), "unusable_questions": unusable}
        if outcomes:
            entry.update(category_scores(outcomes, np.array(model_rows), np.array(base_rows), rounds=rounds, seed=seed))
        categories[category] = entry
    return {"categories": categories, "scored_categories": [c for c, e in categories.items() if "score" in e],
            "skipped_categories": dict(skipped)}


HEADLINE = "hard_prompt"  # the official leaderboard: hard prompts, style control


def headline(board: dict) -> dict:
    """score / lower / upper of the official configuration (hard_prompt with style control), or {} when
    that category was not scored."""
    entry = board["categories"].get(HEADLINE, {})
    if "score_style" not in entry:
        return {}
    return {"score": entry["score_style"], "lower": entry["lower_style"], "upper": entry["upper_style"],
            "headline": f"{HEADLINE}, style control"}
