"""MT-Bench single-answer grading (METHOD §8): the judge's 1-10 rating and the per-turn averages."""

from __future__ import annotations

import re

RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(judgment: str) -> float:
    """The rating in [[x]] (else [x]); -1 when the judge gave none."""
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    return float(match.group(1)) if match else -1.0


def summarise(rows) -> dict:
    """rows: (turn, score). Rows scored -1 are dropped; turn 1, turn 2 and the mean over all rows."""
    kept = [(t, s) for t, s in rows if s != -1]

    def mean(xs):
        return sum(xs) / len(xs) if xs else float("nan")

    return {"turn_1": mean([s for t, s in kept if t == 1]), "turn_2": mean([s for t, s in kept if t == 2]),
            "overall": mean([s for _, s in kept]), "rated": len(kept), "unrated": len(rows) - len(kept)}
