"""segtool.credit.sentences: sentence spans and the beginning / middle / end buckets."""

from __future__ import annotations

import pytest

from segtool.credit.sentences import is_finished, normalise, sentence_position, slot_position, split_sentences


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


def test_spans_are_exact_and_trimmed():
    text = "  Lily was happy.  She ran home!\nThe end. "
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == ["Lily was happy.", "She ran home!", "The end."]
    assert all(text[s.start:s.end] == s.text for s in sentences)


def test_speech_followed_by_lowercase_stays_one_sentence():
    assert texts('"Hi!" said Tom. "Let\'s go," Lily said. They went.') == [
        '"Hi!" said Tom.', '"Let\'s go," Lily said.', "They went."]


def test_abbreviations_decimals_and_list_markers_do_not_split():
    text = "Mr. Brown paid 2.50 dollars, e.g. for tea.\n1. Sarah Jessica Parker - a star.\n2. Meryl Streep."
    assert texts(text) == ["Mr. Brown paid 2.50 dollars, e.g. for tea.", "1. Sarah Jessica Parker - a star.",
                           "2. Meryl Streep."]


def test_line_breaks_split_and_a_letterless_last_line_is_its_own_sentence():
    assert texts("She makes 9 * 2 = $18 a day\n#### 18") == ["She makes 9 * 2 = $18 a day", "#### 18"]


def test_words_and_finished():
    first, second = split_sentences("The dog ran to the park. It was")
    assert (first.words, second.words) == (6, 2)
    assert is_finished(first.text) and not is_finished(second.text)
    assert is_finished('"Go home!"') and is_finished("Wait\u2026")


def test_normalise_ignores_case_and_punctuation():
    assert normalise("Lily was  HAPPY!") == normalise("lily was happy.") == "lily was happy"


@pytest.mark.parametrize(("count", "expected"), [
    (1, ["middle"]),
    (2, ["beginning", "end"]),
    (3, ["beginning", "middle", "end"]),
    (6, ["beginning", "beginning", "middle", "middle", "end", "end"]),
])
def test_sentence_positions_by_centre_in_thirds(count, expected):
    # sentence i of n sits at (i + 1/2) / n: e.g. n = 6 -> 1/12, 3/12 | 5/12, 7/12 | 9/12, 11/12
    assert [sentence_position(i, count) for i in range(count)] == expected


@pytest.mark.parametrize(("count", "expected"), [
    (1, ["beginning", "end"]),
    (3, ["beginning", "middle", "middle", "end"]),  # slots at 0, 1/3, 2/3, 1: the thirds' edges are middle
    (4, ["beginning", "beginning", "middle", "end", "end"]),
])
def test_slot_positions_in_thirds(count, expected):
    assert [slot_position(k, count) for k in range(count + 1)] == expected
