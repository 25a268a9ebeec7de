"""Arena-Hard v0.1 scoring (METHOD §8): verdict parsing, weighted battles, Bradley-Terry scores by
logistic regression anchored on the baseline, and a seeded bootstrap for the 95% interval.

Two games per question: game 1 shows the baseline as A, game 2 the model as A. Strong verdicts
(A>>B, B>>A) count three times, ties once as half a win for each side.
"""

from __future__ import annotations

import math
import re

import numpy as np

VERDICT = re.compile(r"\[\[([AB<>=]+)\]\]")
STRONG_WEIGHT = 3
SCALE, BASE, INIT = 400.0, 10.0, 1000.0


def parse_verdict(judgment: str) -> str | None:
    """The one verdict in a judge's text ("A>>B", "A>B", "A=B", "B>A", "B>>A"), or None when absent
    or contradictory (several different verdicts)."""
    found = {m for m in VERDICT.findall(judgment) if m}
    return found.pop() if len(found) == 1 else None


def battles(verdicts_game1, verdicts_game2) -> list[str]:
    """Outcomes from the baseline's side ("baseline", "model", "tie"), strong verdicts repeated.

    game 1: A = baseline, B = model; game 2: A = model, B = baseline. Unparsed verdicts (None) are skipped.
    """
    out = []
    for verdict, baseline_is_a in [(v, True) for v in verdicts_game1] + [(v, False) for v in verdicts_game2]:
        if verdict is None:
            continue
        if verdict == "A=B":
            out.append("tie")
            continue
        a_wins = verdict in ("A>B", "A>>B")
        if verdict not in ("A>B", "A>>B", "B>A", "B>>A"):
            continue
        winner = "baseline" if a_wins == baseline_is_a else "model"
        out += [winner] * (STRONG_WEIGHT if ">>" in verdict else 1)
    return out


def bt_ratings(outcomes: list[str]) -> tuple[float, float]:
    """(model, baseline) ratings: 400 x logistic-regression coefficients + 1000, anchored so the
    baseline is exactly 1000. Each battle is counted twice; a tie as one win and one loss."""
    from sklearn.linear_model import LogisticRegression

    n = len(outcomes)
    X = np.zeros((2 * n, 2))
    X[:, 0], X[:, 1] = math.log(BASE), -math.log(BASE)  # column 0: baseline as "model_a", column 1: model
    y = np.zeros(2 * n)
    for i, o in enumerate(outcomes):
        if o == "baseline":
            y[i] = y[n + i] = 1.0
        elif o == "tie":
            y[i] = 1.0  # first copy a baseline win, second copy a model win
    if y.min() == y.max():  # all one way: the MLE is at infinity
        sign = 1.0 if y[0] == 1 else -1.0
        return INIT - sign * math.inf, INIT
    coef = LogisticRegression(fit_intercept=False, tol=1e-8, **_unpenalised()).fit(X, y).coef_[0]
    elo = SCALE * coef + INIT
    elo += INIT - elo[0]
    return float(elo[1]), float(elo[0])


def _unpenalised() -> dict:
    """No regularisation: C = inf from scikit-learn 1.8 on (penalty=None is deprecated there)."""
    import sklearn

    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return {"C": math.inf} if (major, minor) >= (1, 8) else {"penalty": None}


def win_rate(model_rating: float, baseline_rating: float) -> float:
    """Expected win rate (x100) of the model against the baseline under the fitted ratings."""
    return 100.0 / (1.0 + BASE ** ((baseline_rating - model_rating) / SCALE))


def score(outcomes: list[str], rounds: int = 100, seed: int = 42) -> dict:
    """Arena-Hard score (win rate vs the baseline) with the bootstrap 95% interval."""
    model, baseline = bt_ratings(outcomes)
    rs = np.random.RandomState(seed)
    samples = []
    for _ in range(rounds):
        pick = rs.choice(len(outcomes), size=len(outcomes), replace=True)
        samples.append(win_rate(*bt_ratings([outcomes[i] for i in pick])))
    lower, upper = np.percentile(samples, [2.5, 97.5])
    return {"score": win_rate(model, baseline), "lower": float(lower), "upper": float(upper),
            "battles": len(outcomes), "rounds": rounds, "seed": seed}
