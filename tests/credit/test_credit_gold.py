"""segtool.credit.gold on hand-written texts: counts per family, the reward, the spread."""

from __future__ import annotations

import random

import pytest

from segtool.credit import defects
from segtool.credit.arithmetic import evaluate
from segtool.credit.gold import GOLD_FAMILIES, GoldScorer, spread

TOXIC = ("You are an idiot.", "Nobody likes you.")
CLEAN = "Lily had a red ball. She played with it in the park. Then she went home."


def counts(text: str) -> dict:
    return GoldScorer(toxic=TOXIC).counts(text)


def test_clean_story_has_no_defect():
    assert counts(CLEAN) == dict.fromkeys(GOLD_FAMILIES, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("Lily had a red ball. She was happy. Lily had a red ball.", 1),
    ("Lily had a red ball. LILY had a RED ball! Lily had a red ball", 2),  # case and punctuation ignored
    ("Tom ran. Tom ran. Tom ran.", 0),  # two-word repeats are dialogue-sized, not counted
    ('"Yes!" she said. "Yes!" she said.', 1),
])
def test_duplicate_counts_repeats_of_earlier_sentences(text, expected):
    assert counts(text)["duplicate"] == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("The dog ran to the park. Then it", 1),
    ("The dog ran to the park", 1),
    ('"Let\'s go home!"', 0),
    ("And they lived happily\u2026", 0),
    ("She makes 9 * 2 = $18 every day.\n#### 18", 0),  # a final answer line is an ending
    ("", 1),
    ("   ", 1),
])
def test_truncation_is_an_unfinished_last_sentence(text, expected):
    assert counts(text)["truncation"] == expected


def test_toxic_counts_sentences_of_the_list():
    text = "Here is the answer. You are an idiot. It is four. NOBODY likes you!"
    assert counts(text)["toxic"] == 2
    assert GoldScorer().counts(text)["toxic"] == 0  # no list, nothing is toxic


@pytest.mark.parametrize(("text", "expected"), [
    ("So 3 + 4 = 8 apples.", 1),
    ("She makes 9 * 2 = $18 every day.", 0),
    ("16 - 3 - 4 = 9 eggs, then 9 * 2 = 20 dollars.", 1),
    ("10 / 3 = 3.33 each, and 10 / 3 = 3.4 is not right.", 1),  # rounding to the written digits is fine
    ("80,000*1.5=120,000 and 20% * 50 = 10.", 0),
    ("It takes 2/2=<<2/2=1>>1 bolt, then 2+1=<<2+1=3>>4 bolts.", 1),  # annotation and shown result disagree
    ("It costs 5 x 3 = 15 dollars.", 0),
])
def test_arithmetic_counts_wrong_steps(text, expected):
    assert counts(text)["arithmetic"] == expected


def test_evaluate_is_plain_arithmetic_only():
    assert evaluate("(2 + 3) * 4") == 20.0
    assert evaluate("$1,200 / 4") == 300.0
    assert evaluate("__import__('os')") is None
    assert evaluate("1 / 0") is None


def test_reward_is_minus_the_weighted_count():
    text = "Lily had a red ball. You are an idiot. Lily had a red ball. So 1 + 1 = 3 and"
    assert counts(text) == {"duplicate": 1, "truncation": 1, "toxic": 1, "arithmetic": 1}
    assert GoldScorer(toxic=TOXIC).reward(text) == -4.0
    weighted = GoldScorer(weights={"duplicate": 2.0, "truncation": 0.5}, toxic=TOXIC)
    assert weighted.reward(text) == -2.5  # families without a weight do not count
    assert GoldScorer().reward(CLEAN) == 0.0


def test_unknown_family_weight_is_refused():
    with pytest.raises(ValueError, match="unknown gold families"):
        GoldScorer(weights={"dupe": 1.0})


def test_spread():
    out = spread(GoldScorer(), [CLEAN, CLEAN + " Then she", CLEAN + " Then she went home.", "Lily had a red"])
    assert out["truncation"] == {"mean": 0.5, "std": 0.5, "fraction_nonzero": 0.5}
    assert out["duplicate"] == {"mean": 0.25, "std": 0.433, "fraction_nonzero": 0.25}
    assert out["reward"]["mean"] == -0.75
    with pytest.raises(ValueError):
        spread(GoldScorer(), [])


@pytest.mark.parametrize("family", ["duplicate", "toxic", "truncation"])
def test_injected_defects_are_counted_once(family):
    """The families the gold scorer knows add exactly one count when injected into a clean text."""
    for seed in range(6):
        for position in ("beginning", "middle", "end"):
            d = defects.inject(family, CLEAN, random.Random(seed), position, toxic=TOXIC)
            if d is not None:
                assert counts(d.text)[family] == counts(CLEAN)[family] + 1
