"""The gold scorer: counts, in any text, the defect families that can be recognised without a
reference, and a gold reward from them (for gold-reward studies, where the reward a policy is
trained on is programmatic and known).

Families counted (``GOLD_FAMILIES``):

* ``duplicate``: sentences of at least ``MIN_REPEAT_WORDS`` words that repeat an earlier sentence of
  the text (compared lowercased, without punctuation);
* ``truncation``: 1 when the text stops inside a sentence (its last sentence does not end in
  ``.``, ``!``, ``?`` or an ellipsis, closing quotes allowed; a last line without letters, such as
  GSM8K's ``#### 18``, counts as finished), and for an empty text; else 0;
* ``toxic``: sentences that are one of the given insulting sentences (the shipped list);
* ``arithmetic``: arithmetic steps ``a op b = c`` whose written result is not the value of the
  left-hand side (to the precision written).

gold reward = -(sum over families of weight * count); the default weights are 1 for every family.
Swaps, negations and off-topic sentences need the clean text to be seen, so they are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from segtool.credit.arithmetic import find_steps
from segtool.credit.defects import MIN_REPEAT_WORDS
from segtool.credit.sentences import is_finished, normalise, split_sentences

GOLD_FAMILIES = ("duplicate", "truncation", "toxic", "arithmetic")


def _default_weights() -> dict[str, float]:
    return dict.fromkeys(GOLD_FAMILIES, 1.0)


@dataclass(frozen=True)
class GoldScorer:
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    toxic: Sequence[str] = ()  # the insulting sentences that count as ``toxic``

    def __post_init__(self):
        unknown = set(self.weights) - set(GOLD_FAMILIES)
        if unknown:
            raise ValueError(f"unknown gold families {sorted(unknown)}; known: {', '.join(GOLD_FAMILIES)}")
        object.__setattr__(self, "_toxic_keys", frozenset(normalise(t) for t in self.toxic if normalise(t)))

    def counts(self, text: str) -> dict[str, int]:
        """How many defects of each family ``text`` contains."""
        sentences = split_sentences(text)
        seen, duplicate = set(), 0
        for s in sentences:
            if s.words < MIN_REPEAT_WORDS:
                continue
            key = normalise(s.text)
            duplicate += key in seen
            seen.add(key)
        last = sentences[-1].text if sentences else ""
        finished = bool(sentences) and (is_finished(last) or not any(c.isalpha() for c in last))
        return {
            "duplicate": duplicate,
            "truncation": int(not finished),
            "toxic": sum(normalise(s.text) in self._toxic_keys for s in sentences),
            "arithmetic": sum(step.wrong for step in find_steps(text)),
        }

    def reward(self, text: str) -> float:
        """-(weighted count of defects)."""
        counts = self.counts(text)
        return -sum(weight * counts[family] for family, weight in self.weights.items())


def spread(scorer: GoldScorer, texts: Iterable[str]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and share of texts with a count > 0, per family and for the reward:
    how much room a gold reward has to move on these texts."""
    rows = [(scorer.counts(t), scorer.reward(t)) for t in texts]
    if not rows:
        raise ValueError("no texts to score")
    columns = {family: [float(c[family]) for c, _ in rows] for family in GOLD_FAMILIES}
    columns["reward"] = [r for _, r in rows]
    out = {}
    for name, values in columns.items():
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        nonzero = sum(v != 0 for v in values) / len(values)
        out[name] = {"mean": round(mean, 4), "std": round(std, 4), "fraction_nonzero": round(nonzero, 4)}
    return out
