"""Arena-Hard v0.1 scoring (METHOD §8) as arena-hard-auto's show_result.py computes it: verdict
parsing, weighted battles, Bradley-Terry ratings by logistic regression anchored on the baseline
(rating 1000), and a seeded bootstrap for the 95% interval.

Two games per question: game 1 shows the baseline as A, game 2 the model as A. Strong verdicts
(A>>B, B>>A) count three times, ties once (half a win for each side); an unparsed game counts not
at all. Battles are kept in the official order (per judgment row: game 1's copies, then game 2's), so
the bootstrap, which resamples battles with numpy's RandomState(42) exactly as pandas'
``sample(frac=1, replace=True)`` does under ``np.random.seed(42)``, draws the same samples. The score
is the expected win rate against the baseline under the fitted ratings; the interval is the 2.5/97.5
percentiles of the bootstrap *ratings*, turned into win rates.
"""

from __future__ import annotations

import math
import re

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

VERDICT = re.compile(r"\[\[([AB<>=]+)\]\]")
STRONG_WEIGHT = 3
SCALE, BASE, INIT = 400.0, 10.0, 1000.0
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")


def verdict_and_retry(judgment: str) -> tuple[str | None, bool]:
    """(verdict, ask again?) as arena-hard-auto's get_score: no verdict -> (None, True); one distinct
    verdict -> (it, False); several different ones -> (None, False)."""
    found = {m for m in VERDICT.findall(judgment) if m}
    if not found:
        return None, True
    return (found.pop().strip("\n"), False) if len(found) == 1 else (None, False)


def parse_verdict(judgment: str) -> str | None:
    """The one verdict in a judge's text ("A>>B", "A>B", "A=B", "B>A", "B>>A"), or None when absent
    or contradictory (several different verdicts)."""
    return verdict_and_retry(judgment)[0]


def _game(verdict: str | None, baseline_is_a: bool) -> list[str]:
    """Outcomes of one game from the baseline's side ("baseline", "model", "tie"), strong ones x3."""
    if verdict == "A=B":
        return ["tie"]
    if verdict not in VERDICTS:
        return []
    winner = "baseline" if verdict.startswith("A") == baseline_is_a else "model"
    return [winner] * (STRONG_WEIGHT if ">>" in verdict else 1)


def question_outcomes(verdict_game1: str | None, verdict_game2: str | None) -> list[str]:
    """One question's outcomes in the official order: game 1 (A = baseline), then game 2 (A = model)."""
    return _game(verdict_game1, True) + _game(verdict_game2, False)


def battles(verdicts_game1, verdicts_game2) -> list[str]:
    """Outcomes of all game-1 verdicts then all game-2 verdicts (None = unparsed, skipped)."""
    return [o for v in verdicts_game1 for o in _game(v, True)] + [o for v in verdicts_game2 for o in _game(v, False)]


def unpenalised() -> dict:
    """No regularisation: C = inf from scikit-learn 1.8 on (penalty=None is deprecated there)."""
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return {"C": math.inf} if (major, minor) >= (1, 8) else {"penalty": None}


def mle_ratings(games: list[tuple[str, str, str]], baseline: str) -> dict[str, float]:
    """Bradley-Terry ratings of every model from battles (model_a, model_b, winner in {"model_a",
    "model_b", "tie"}): 400 x logistic-regression coefficients + 1000, the baseline anchored at 1000.
    Every battle is counted twice, a tie once as an A win and once as a B win. A model that won
    (lost) every battle it played has no finite MLE: it is rated +inf (-inf)."""
    models = list(dict.fromkeys([a for a, _, _ in games] + [b for _, b, _ in games]))
    wins = {m: [0, 0] for m in models}  # [won or tied, lost or tied]
    for a, b, w in games:
        wins[a][0] += w != "model_b"
        wins[a][1] += w != "model_a"
        wins[b][0] += w != "model_a"
        wins[b][1] += w != "model_b"
    fixed = {m: (math.inf if wins[m][1] == 0 else -math.inf) for m in models
             if m != baseline and (wins[m][0] == 0 or wins[m][1] == 0)}
    kept = [(a, b, w) for a, b, w in games if a not in fixed and b not in fixed]
    ratings = dict(fixed)
    index = {m: i for i, m in enumerate(m for m in models if m not in fixed)}
    if kept and len(index) > 1:
        n = len(kept)
        X = np.zeros((2 * n, len(index)))
        y = np.zeros(2 * n)
        for i, (a, b, w) in enumerate(kept):
            X[[i, n + i], index[a]] = math.log(BASE)
            X[[i, n + i], index[b]] = -math.log(BASE)
            y[i] = y[n + i] = float(w == "model_a")
            if w == "tie":
                y[i] = 1.0  # first copy an A win, second copy a B win
        coef = LogisticRegression(fit_intercept=False, tol=1e-8, **unpenalised()).fit(X, y).coef_[0]
        elo = SCALE * coef + INIT
        if baseline in index:
            elo += INIT - elo[index[baseline]]
        ratings.update({m: float(elo[i]) for m, i in index.items()})
    elif index:
        ratings.update({m: INIT for m in index})
    return ratings


def win_rate(model_rating: float, baseline_rating: float) -> float:
    """Expected win rate (x100) of the model against the baseline under the fitted ratings."""
    if math.isinf(model_rating):
        return 100.0 if model_rating > 0 else 0.0
    return 100.0 / (1.0 + BASE ** ((baseline_rating - model_rating) / SCALE))


def bt_ratings(outcomes: list[str]) -> tuple[float, float]:
    """(model, baseline) ratings from one model's outcomes against the baseline."""
    ratings = mle_ratings(_as_games(outcomes), "baseline")
    return ratings["model"], ratings["baseline"]


def _as_games(outcomes: list[str]) -> list[tuple[str, str, str]]:
    winner = {"baseline": "model_a", "model": "model_b", "tie": "tie"}
    return [("baseline", "model", winner[o]) for o in outcomes]


def leaderboard(games: list[tuple[str, str, str]], baseline: str, rounds: int = 100, seed: int = 42) -> dict[str, dict]:
    """Per model: score (win rate x100 vs the baseline), lower and upper (95% bootstrap interval)."""
    ratings = mle_ratings(games, baseline)
    rs = np.random.RandomState(seed)
    samples = []
    for _ in range(rounds):
        pick = rs.choice(len(games), size=len(games), replace=True)
        samples.append(mle_ratings([games[i] for i in pick], baseline))
    out = {}
    for model, rating in ratings.items():
        if model == baseline:
            continue
        boot = np.array([s.get(model, np.nan) for s in samples], dtype=np.float64)
        # A resample where the model won (lost) everything rates it +-inf; an unpenalised fit, as the
        # official one, ends far out instead. Clamp to +-10,000 (win rate 0 or 100 to 25 digits) so
        # percentiles interpolate instead of turning into inf - inf = NaN.
        boot = np.clip(boot, INIT - 1e4, INIT + 1e4)
        with np.errstate(invalid="ignore"):  # rounds without this model are NaN and skipped
            lower, upper = np.nanpercentile(boot, [2.5, 97.5]) if not np.isnan(boot).all() else (np.nan, np.nan)
        base = ratings.get(baseline, INIT)
        out[model] = {"score": win_rate(rating, base), "lower": win_rate(float(lower), base), "upper": win_rate(float(upper), base),
                      "rating": rating, "battles": sum(model in (a, b) for a, b, _ in games)}
    return out


def score(outcomes: list[str], rounds: int = 100, seed: int = 42) -> dict:
    """Arena-Hard score of one model (win rate vs the baseline) with the bootstrap 95% interval."""
    row = leaderboard(_as_games(outcomes), "baseline", rounds, seed)["model"]
    return {"score": row["score"], "lower": row["lower"], "upper": row["upper"],
            "battles": len(outcomes), "rounds": rounds, "seed": seed}
