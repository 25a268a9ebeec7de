"""GSM8K accuracy (METHOD §8): the final number after "####" in the reference against the last
number in the model's answer."""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def reference_answer(solution: str) -> float:
    return float(solution.split("####")[-1].strip().replace(",", ""))


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def accuracy(answers, solutions) -> float:
    hits = [last_number(a) == reference_answer(s) for a, s in zip(answers, solutions, strict=True)]
    return sum(hits) / len(hits)
