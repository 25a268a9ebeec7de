"""The defect families of the credit-assignment benchmark: each injects exactly one defect into a
clean response and records the half-open character span of the defective text in the result.

Every function takes the clean text, a ``random.Random`` (the only source of randomness, so a
seed reproduces the defect) and the position to place it at (``beginning``, ``middle``, ``end``:
see ``sentences.sentence_position`` / ``slot_position``). It returns None when the text does not
admit the family at that position (no number, too few sentences, ...). The input is never
modified: the rejected response is a new string.

* ``arithmetic``: the result of one arithmetic step becomes wrong (``9 * 2 = 18`` -> ``9 * 2 = 20``);
  everything else, later steps included, is kept. Span: the changed result (for a GSM8K
  annotation ``<<9*2=18>>18``, from the annotation's result to the shown one).
* ``swap``: one occurrence of a number or a name is replaced by another number / name of the same
  text. Names are capitalised words that appear at least once inside a sentence. Span: the new word.
* ``duplicate``: a sentence of at least ``MIN_REPEAT_WORDS`` words is repeated right after itself.
  Span: the copy.
* ``offtopic``: a sentence taken from another response (``pool``) is inserted between sentences.
* ``toxic``: an insulting sentence from the shipped list is inserted between sentences.
* ``negation``: ``not`` is inserted after an auxiliary verb (``was`` -> ``was not``). Span: ``not``.
* ``truncation``: the response stops inside a sentence with letters, after at least half of its
  words and before its last one (never after sentence-final punctuation); what followed is gone.
  Span: from the start of the cut sentence to the end of the rejected text.

Inserted sentences (duplicate, offtopic, toxic) get the whitespace that separates the neighbouring
sentences; the span covers the sentence, not that whitespace.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from segtool.credit.arithmetic import find_steps, number
from segtool.credit.sentences import Sentence, is_finished, normalise, sentence_position, slot_position, split_sentences

FAMILIES = ("arithmetic", "swap", "duplicate", "offtopic", "toxic", "negation", "truncation")
MIN_REPEAT_WORDS = 3  # shorter repeats ("Yes!") are ordinary dialogue, not a defect
AUXILIARIES = re.compile(r"\b(?:is|are|was|were|am|can|could|will|would|should|must|may|might|shall)\b")
NEGATED = re.compile(r"\s*(?:not|never)\b|['\u2019]")  # already negated, or a contraction (can't, can’t)
NUMBER = re.compile(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?(?![\w]|[.,]\d)")
NAME = re.compile(r"\b[A-Z][a-z]+\b")
OPENERS = "\"'\u201c\u2018(:-\u2014*#`[\u2022"  # a capital after these starts speech, a clause or a list item
_WORD_END = re.compile(r"\S+")
_PICK_TRIES = 50  # random draws from a pool before giving up on finding a sentence new to the text


@dataclass(frozen=True)
class Defect:
    family: str
    position: str
    text: str  # the rejected response
    span: tuple[int, int]  # [start, end) in ``text``, never empty


def _replace(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _sentence_at(sentences: list[Sentence], offset: int) -> int:
    return max((i for i, s in enumerate(sentences) if s.start <= offset), default=0)


# -- arithmetic -----------------------------------------------------------------------------------
def _format_like(value: float, decimals: int, template: str) -> str:
    """``value`` written like ``template`` (same decimals, thousands commas if it had them)."""
    return f"{value:,.{decimals}f}" if "," in template else f"{value:.{decimals}f}"


def inject_arithmetic(text: str, rng: random.Random, position: str) -> Defect | None:
    sentences = split_sentences(text)
    steps = [s for s in find_steps(text) if not s.wrong
             and sentence_position(_sentence_at(sentences, s.start), len(sentences)) == position]
    if not steps:
        return None
    step = rng.choice(steps)
    written = step.written[0]
    unit = 10.0 ** -step.decimals
    wrong = sorted({round(written + sign * d * unit, step.decimals) for d in (1, 2, 3, 5, 10) for sign in (1, -1)})
    wrong = [w for w in wrong if w >= 0 and w != written
             and (step.value is None or abs(w - step.value) > step.tolerance)]
    if not wrong:
        return None
    value = rng.choice(wrong)
    out, shift = text, 0
    first = step.results[0][0]
    for a, b in step.results:
        new = _format_like(value, step.decimals, text[a:b])
        out = _replace(out, a + shift, b + shift, new)
        shift += len(new) - (b - a)
    return Defect("arithmetic", position, out, (first, step.results[-1][1] + shift))


# -- swap -----------------------------------------------------------------------------------------
def _mid_sentence(text: str, sentence: Sentence, start: int) -> bool:
    before = text[sentence.start:start].rstrip()
    return bool(before) and before[-1] not in OPENERS and before[-1] not in ".!?"


def _swap_candidates(text: str, sentences: list[Sentence]) -> list[tuple[int, int, str, list[str]]]:
    """(start, end, kind key, alternatives) of every number and name occurrence that has an alternative."""
    occurrences = []  # (start, end, text, key)
    for m in NUMBER.finditer(text):
        s = sentences[_sentence_at(sentences, m.start())]
        if m.start() == s.start and text[m.end():m.end() + 1] in (".", ")"):
            continue  # a list marker, not a quantity
        occurrences.append((m.start(), m.end(), m.group(), ("number", number(m.group()))))
    names = {m.group() for m in NAME.finditer(text)
             if _mid_sentence(text, sentences[_sentence_at(sentences, m.start())], m.start())}
    occurrences += [(m.start(), m.end(), m.group(), ("name", m.group()))
                    for m in NAME.finditer(text) if m.group() in names]
    out = []
    for start, end, word, key in occurrences:
        alternatives = sorted({w for _, _, w, k in occurrences if k[0] == key[0] and k != key})
        if alternatives:
            out.append((start, end, word, alternatives))
    return sorted(out)


def inject_swap(text: str, rng: random.Random, position: str) -> Defect | None:
    sentences = split_sentences(text)
    candidates = [c for c in _swap_candidates(text, sentences)
                  if sentence_position(_sentence_at(sentences, c[0]), len(sentences)) == position]
    if not candidates:
        return None
    start, end, _, alternatives = rng.choice(candidates)
    new = rng.choice(alternatives)
    return Defect("swap", position, _replace(text, start, end, new), (start, start + len(new)))


# -- inserted sentences ---------------------------------------------------------------------------
def _separator(text: str, sentences: list[Sentence], slot: int) -> str:
    n = len(sentences)
    if n == 1:
        return " "
    k = min(max(slot, 1), n - 1)  # the gap before sentence k: the nearest one to the slot
    return text[sentences[k - 1].end:sentences[k].start]


def insert_sentence(text: str, sentences: list[Sentence], slot: int, new: str) -> tuple[str, tuple[int, int]]:
    """``new`` placed before sentence ``slot`` (after the last one when slot == len(sentences))."""
    sep = _separator(text, sentences, slot)
    if slot < len(sentences):
        at = sentences[slot].start
        return text[:at] + new + sep + text[at:], (at, at + len(new))
    at = sentences[-1].end
    return text[:at] + sep + new + text[at:], (at + len(sep), at + len(sep) + len(new))


def _slots(sentences: list[Sentence], position: str, first: int = 0) -> list[int]:
    n = len(sentences)
    return [k for k in range(first, n + 1) if slot_position(k, n) == position] if n else []


def inject_duplicate(text: str, rng: random.Random, position: str) -> Defect | None:
    sentences = split_sentences(text)
    slots = [k for k in _slots(sentences, position, first=1) if sentences[k - 1].words >= MIN_REPEAT_WORDS]
    if not slots:
        return None
    slot = rng.choice(slots)
    out, span = insert_sentence(text, sentences, slot, sentences[slot - 1].text)
    return Defect("duplicate", position, out, span)


def _draw_new(rng: random.Random, pool: Sequence[str], sentences: list[Sentence]) -> str | None:
    """A sentence of ``pool`` that the text does not already contain (None after a few misses)."""
    present = {normalise(s.text) for s in sentences}
    for _ in range(_PICK_TRIES if pool else 0):
        candidate = rng.choice(pool).strip()
        if candidate and normalise(candidate) not in present:
            return candidate
    return None


def _inject_from(family: str, text: str, rng: random.Random, position: str, pool: Sequence[str]) -> Defect | None:
    sentences = split_sentences(text)
    slots = _slots(sentences, position)
    if not slots:
        return None
    slot = rng.choice(slots)
    new = _draw_new(rng, pool, sentences)
    if new is None:
        return None
    out, span = insert_sentence(text, sentences, slot, new)
    return Defect(family, position, out, span)


def inject_offtopic(text: str, rng: random.Random, position: str, pool: Sequence[str]) -> Defect | None:
    """``pool``: sentences of other responses of the same source."""
    return _inject_from("offtopic", text, rng, position, pool)


def inject_toxic(text: str, rng: random.Random, position: str, pool: Sequence[str]) -> Defect | None:
    """``pool``: the insulting sentences (data/credit/toxic_sentences.txt)."""
    return _inject_from("toxic", text, rng, position, pool)


# -- negation and truncation ----------------------------------------------------------------------
def inject_negation(text: str, rng: random.Random, position: str) -> Defect | None:
    sentences = split_sentences(text)
    places = []
    for i, s in enumerate(sentences):
        if sentence_position(i, len(sentences)) != position:
            continue
        for m in AUXILIARIES.finditer(text, s.start, s.end):
            if m.start() > s.start and not NEGATED.match(text, m.end()):  # a sentence-initial one asks a question
                places.append(m.end())
    if not places:
        return None
    at = rng.choice(places)
    return Defect("negation", position, text[:at] + " not" + text[at:], (at + 1, at + 4))


def inject_truncation(text: str, rng: random.Random, position: str) -> Defect | None:
    sentences = split_sentences(text)
    cuts = {}
    for i, s in enumerate(sentences):
        if sentence_position(i, len(sentences)) != position or not any(c.isalpha() for c in s.text):
            continue
        words = [m.end() for m in _WORD_END.finditer(s.text)]
        ends = words[max(len(words) // 2, 1) - 1:-1]  # keeps half the sentence or more, cuts at least one word
        ends = [e for e in ends if not is_finished(s.text[:e])]
        if ends:
            cuts[i] = ends
    if not cuts:
        return None
    i = rng.choice(sorted(cuts))
    start = sentences[i].start
    out = text[:start + rng.choice(cuts[i])]
    return Defect("truncation", position, out, (start, len(out)))


def inject(family: str, text: str, rng: random.Random, position: str, *, offtopic: Sequence[str] = (),
           toxic: Sequence[str] = ()) -> Defect | None:
    """Dispatch to the family's function (``offtopic``/``toxic``: the pools those families draw from)."""
    if family == "offtopic":
        return inject_offtopic(text, rng, position, offtopic)
    if family == "toxic":
        return inject_toxic(text, rng, position, toxic)
    return INJECTORS[family](text, rng, position)


INJECTORS = {"arithmetic": inject_arithmetic, "swap": inject_swap, "duplicate": inject_duplicate,
             "negation": inject_negation, "truncation": inject_truncation}
