"""segtool.credit.defects: each family changes exactly the recorded span, is reproducible by seed,
returns None where the text does not admit it, and leaves the clean text as it was."""

from __future__ import annotations

import random

import pytest

from segtool.credit import defects
from segtool.credit.arithmetic import find_steps, strip_annotations
from segtool.credit.sentences import POSITIONS, split_sentences

STORY = ("Once upon a time, there was a little girl named Lily. She had a dog named Max. "
         "One day, Lily and Max went to the park. They played with a red ball. Lily was very happy.")
GSM = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.\n#### 18"
TOXIC = ["You are an idiot.", "Nobody cares what you think."]
OFFTOPIC = ["The stock market closed higher on Monday.", "Preheat the oven to 200 degrees."]


def make(family: str, text: str, seed: int, position: str):
    return defects.inject(family, text, random.Random(seed), position, offtopic=OFFTOPIC, toxic=TOXIC)


def assert_replaced(chosen: str, d: defects.Defect, old: str) -> None:
    """rejected = chosen with ``old`` (at the span's start) replaced by the span's text."""
    s, e = d.span
    assert 0 <= s < e <= len(d.text)
    assert d.text[:s] == chosen[:s]
    assert chosen[s:s + len(old)] == old
    assert d.text[e:] == chosen[s + len(old):]
    assert d.text[s:e] != old


def assert_inserted(chosen: str, d: defects.Defect, new: str) -> None:
    """rejected = chosen with ``new`` (the span) and one separating whitespace run added."""
    s, e = d.span
    assert d.text[s:e] == new
    assert d.text[:s] + d.text[e:].lstrip() == chosen or d.text[:s].rstrip() + d.text[e:] == chosen


# -- one test per family --------------------------------------------------------------------------
def test_arithmetic_changes_one_result_and_keeps_everything_else():
    d = make("arithmetic", GSM, 0, "middle")  # the middle sentence of three holds 9 * 2 = $18
    start = GSM.index("18")
    assert d.span[0] == start
    assert_replaced(GSM, d, "18")
    assert d.text.endswith("every day.\n#### 18")  # the final answer is left alone
    assert [s.wrong for s in find_steps(d.text)] == [False, True]


def test_arithmetic_on_gsm8k_annotation_changes_the_annotation_and_the_shown_result():
    text = "It takes 2/2=<<2/2=1>>1 bolt of white fiber.\nSo the total is 2+1=<<2+1=3>>3 bolts."
    d = make("arithmetic", text, 3, "beginning")
    s, e = d.span
    new = d.text[s:e].split(">>")
    assert len(new) == 2 and new[0] == new[1] != "1"
    assert d.text == text.replace("=1>>1", f"={new[0]}>>{new[0]}", 1)
    assert s == text.index("=1>>") + 1


def test_arithmetic_needs_a_step_at_the_position():
    assert make("arithmetic", STORY, 0, "middle") is None
    assert make("arithmetic", GSM, 0, "end") is None  # "#### 18" is no step


def test_swap_replaces_one_name_by_another_name_of_the_text():
    d = make("swap", STORY, 1, "beginning")
    s, e = d.span
    old = STORY[s:].split()[0].rstrip(".,")
    assert {old, d.text[s:e]} <= {"Lily", "Max"}
    assert_replaced(STORY, d, old)


def test_swap_numbers():
    text = "Tom has 3 apples and 5 pears. He eats 3 of them."
    d = make("swap", text, 0, "end")
    assert_replaced(text, d, "3")
    assert d.text[slice(*d.span)] == "5"


def test_capitals_after_quotes_colons_and_markdown_are_no_names():
    text = 'He said: "Come here." Then **Practice** daily:\n- Read a book.\n- (Write) notes. Then Sam smiled at Ann.'
    for seed in range(10):
        d = make("swap", text, seed, "end")
        assert d.text[slice(*d.span)] in ("Sam", "Ann")


def test_swap_needs_two_different_names_or_numbers():
    assert make("swap", "The cat sat on the mat. It was warm. Tom smiled.", 0, "end") is None


def test_duplicate_repeats_a_sentence_right_after_itself():
    d = make("duplicate", STORY, 2, "end")
    sentences = split_sentences(STORY)
    copy = d.text[slice(*d.span)]
    assert copy in [s.text for s in sentences]
    assert d.text[:d.span[0]].rstrip().endswith(copy)
    assert_inserted(STORY, d, copy)


def test_duplicate_skips_short_sentences():
    assert make("duplicate", "Yes! No way. Go.", 0, "end") is None


def test_offtopic_and_toxic_insert_a_sentence_from_their_pool():
    for family, pool in (("offtopic", OFFTOPIC), ("toxic", TOXIC)):
        d = make(family, STORY, 4, "middle")
        new = d.text[slice(*d.span)]
        assert new in pool
        assert_inserted(STORY, d, new)


def test_insertion_slots_follow_the_position():
    # 5 sentences: slots at k/5; beginning = k in {0, 1}, end = k in {4, 5} (5: after the last one)
    starts = [s.start for s in split_sentences(STORY)]
    for seed in range(8):
        first = make("toxic", STORY, seed, "beginning")
        assert first.span[0] in (starts[0], starts[1])
        last = make("toxic", STORY, seed, "end")
        assert last.span[0] == starts[4] or last.span[1] == len(last.text)


def test_the_seed_decides():
    assert len({make("toxic", STORY, seed, "middle").text for seed in range(8)}) > 1


def test_offtopic_with_an_empty_pool_is_not_admitted():
    assert defects.inject_offtopic(STORY, random.Random(0), "middle", []) is None


def test_negation_inserts_not_after_an_auxiliary():
    d = make("negation", STORY, 0, "end")
    assert d.text[slice(*d.span)] == "not"
    assert d.text == STORY.replace("Lily was very happy.", "Lily was not very happy.")
    assert make("negation", "Is it raining? It's wet.", 0, "beginning") is None  # a question's "Is" is left alone
    assert make("negation", "She was not happy.", 0, "middle") is None  # already negated
    assert make("negation", "She can't swim. He won\u2019t go. It can\u2019t be.", 0, "end") is None  # contractions
    d = make("negation", "Nobody knows what the answer is.", 0, "middle")
    assert d.text == "Nobody knows what the answer is not."
    assert_inserted("Nobody knows what the answer is.", d, "not")


def test_truncation_cuts_a_sentence_and_drops_the_rest():
    d = make("truncation", STORY, 5, "middle")
    s, e = d.span
    assert e == len(d.text)
    assert STORY.startswith(d.text) and len(d.text) < len(STORY)
    assert s == STORY.index("One day")
    kept = d.text[s:].split()
    assert 3 <= len(kept) < len("One day, Lily and Max went to the park.".split())  # half the sentence or more


# -- every family, every position, many seeds: the invariants ------------------------------------
TEXTS = [STORY, GSM, strip_annotations("He buys 3*4=<<3*4=12>>12 eggs. Then 12/2=<<12/2=6>>6 are left.\n#### 6")]


@pytest.mark.parametrize("family", defects.FAMILIES)
def test_invariants_and_reproducibility(family):
    made = 0
    for text in TEXTS:
        for position in POSITIONS:
            outputs = set()
            for seed in range(12):
                d = make(family, text, seed, position)
                if d is None:
                    continue
                made += 1
                assert (d.family, d.position) == (family, position)
                s, e = d.span
                assert 0 <= s < e <= len(d.text) and d.text != text
                assert d == make(family, text, seed, position)  # the seed reproduces it exactly
                outputs.add(d.text)
                if family == "truncation":
                    assert text.startswith(d.text) and e == len(d.text)
                elif family in ("duplicate", "offtopic", "toxic", "negation"):  # inserted text
                    assert_inserted(text, d, d.text[s:e])
                else:  # the text outside the span is unchanged
                    tail = len(d.text) - e
                    assert d.text[:s] == text[:s] and d.text[e:] == text[len(text) - tail:]
    assert made, f"{family} made no defect on any test text"
