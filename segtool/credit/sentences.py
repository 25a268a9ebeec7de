"""Sentences with their character spans, and where a place in a response counts as beginning,
middle or end (the positions `segtool credit make` controls).

A sentence ends at a run of ``.``, ``!`` or ``?`` (closing quotes or brackets after it included)
followed by whitespace and a character that is not a lowercase letter (so ``"Hi!" said Tom.`` stays
one sentence), and at every line break. A few abbreviations (``Mr.``, ``e.g.``) do not end one. A
piece without a letter (a list marker such as ``1.``) joins the sentence after it on the same line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

POSITIONS = ("beginning", "middle", "end")
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "e.g", "i.e", "approx"})
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*")
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"\S+")
_FINISHED = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int  # half-open: text[start:end] is the sentence, no surrounding whitespace
    text: str

    @property
    def words(self) -> int:
        return len(_WORD.findall(self.text))


def _pieces(line: str) -> list[tuple[int, int]]:
    """Sentence-sized (start, end) pieces of one line, not yet stripped or merged."""
    cuts, start = [], 0
    for m in _END.finditer(line):
        rest = line[m.end():]
        after = rest.lstrip()
        if not rest or rest == after or not after:  # needs whitespace after, and text after that
            continue
        if after[0].islower():
            continue
        word = line[start:m.start()].rsplit(None, 1)[-1:] or [""]
        if word[0].lower().lstrip("(\"'") in ABBREVIATIONS:
            continue
        cuts.append((start, m.end()))
        start = m.end()
    cuts.append((start, len(line)))
    return cuts


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of ``text`` in order, each with its exact span."""
    out: list[Sentence] = []
    for line in re.finditer(r"[^\n]+", text):
        pending = None  # start of a letterless piece waiting for the next one
        for a, b in _pieces(line.group()):
            piece = line.group()[a:b]
            lead = len(piece) - len(piece.lstrip())
            start, end = line.start() + a + lead, line.start() + a + len(piece.rstrip())
            if start >= end:
                continue
            if pending is not None:
                start, pending = pending, None
            if not _LETTER.search(text[start:end]):
                pending = start
                continue
            out.append(Sentence(start, end, text[start:end]))
        if pending is not None:  # a letterless tail (e.g. "#### 18"): a sentence of its own
            end = line.start() + len(line.group().rstrip())
            out.append(Sentence(pending, end, text[pending:end]))
    return out


def is_finished(sentence: str) -> bool:
    """True when the sentence ends in sentence-final punctuation (closing quotes allowed)."""
    return bool(_FINISHED.search(sentence.rstrip()))


def normalise(sentence: str) -> str:
    """Lowercase words without punctuation: the form in which two sentences count as the same."""
    return " ".join(re.findall(r"[^\W_]+(?:'[^\W_]+)?", sentence.lower()))


def _bucket(where: Fraction) -> str:
    if where < Fraction(1, 3):
        return "beginning"
    return "end" if where > Fraction(2, 3) else "middle"


def sentence_position(index: int, count: int) -> str:
    """Position of sentence ``index`` of ``count``: its centre (index + 1/2) / count, in thirds."""
    return _bucket(Fraction(2 * index + 1, 2 * count))


def slot_position(slot: int, count: int) -> str:
    """Position of an insertion before sentence ``slot`` (``slot == count``: after the last one),
    at slot / count, in thirds."""
    return _bucket(Fraction(slot, count))
