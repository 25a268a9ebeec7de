"""Which characters of a text each of its tokens covers.

A fast tokenizer's offset mapping is right as long as every character survives tokenization. Some
tokenizers drop characters they cannot encode (TinyStories-656K's byte fallback has no byte tokens
for ``=`` or ``*``), and then the mapping of every later token is shifted. So the mapping is used
only when decoding the tokens gives the text back; otherwise each token's own text (decoded after
a fixed anchor token, so leading spaces survive) is aligned to the text character by character, in
order, and a character no token produced belongs to no token.
"""

from __future__ import annotations

import bisect

LOOKAHEAD = 8  # characters of the text a decoded character may skip (the dropped ones before it)


def token_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids of ``tokenizer(text)`` without special tokens, [start, end) in ``text`` of each id)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if tokenizer.decode(enc.input_ids, clean_up_tokenization_spaces=False).strip() == text.strip():
            return enc.input_ids, [tuple(o) for o in enc.offset_mapping]
        ids = enc.input_ids
    else:
        ids = tokenizer(text, add_special_tokens=False).input_ids
    return ids, aligned_offsets(tokenizer, ids, text)


def aligned_offsets(tokenizer, ids: list[int], text: str) -> list[tuple[int, int]]:
    anchor = tokenizer("a", add_special_tokens=False).input_ids
    base = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    pieces = tokenizer.batch_decode([anchor + [i] for i in ids], clean_up_tokenization_spaces=False)
    surfaces = [p[len(base):] if p.startswith(base) else "" for p in pieces]
    decoded = "".join(surfaces)
    position = _align(decoded, text)
    offsets: list[tuple[int, int] | None] = []
    start = 0
    for surface in surfaces:
        hits = [p for p in position[start:start + len(surface)] if p >= 0]
        offsets.append((hits[0], hits[-1] + 1) if hits else None)
        start += len(surface)
    # a token none of whose characters is in the text (a replacement character, an unknown token) gets
    # the empty range where it stands
    end = 0
    for i, span in enumerate(offsets):
        if span is None:
            offsets[i] = (end, end)
        end = offsets[i][1]
    return offsets


def _align(decoded: str, text: str) -> list[int]:
    """The character of ``text`` each character of ``decoded`` is (-1: none), matching in order and
    skipping at most LOOKAHEAD text characters at a time: the decoded text is the text with some
    characters dropped (or replaced by ones the text does not have there)."""
    position, j = [-1] * len(decoded), 0
    for i, ch in enumerate(decoded):
        k = text.find(ch, j, j + LOOKAHEAD + 1)
        if k >= 0:
            position[i], j = k, k + 1
    return position


def sentence_char_ends(text: str, sentences: list[str]) -> list[int]:
    """Where each sentence of ``text`` ends (exclusive character index, its trailing whitespace left
    out), for every sentence but the one that ends the text: the EOS policy closes that one.

    A sentence splitter returns the sentences in order. SaT keeps the whitespace after a sentence on
    it and, splitting at the input's newlines, drops those newlines, so each sentence is found in
    the text in turn; only whitespace may lie between two. ValueError when a sentence is not the
    next text or text is left over.
    """
    ends, pos = [], 0
    for sentence in sentences:
        core = sentence.strip()
        if not core:
            continue
        start = text.find(core, pos)
        if start < 0 or text[pos:start].strip():
            raise ValueError(f"sentence {core[:40]!r} is not the text after character {pos}")
        pos = start + len(core)
        ends.append(pos)
    if text[pos:].strip():
        raise ValueError(f"the sentences stop at character {pos} of {len(text)}")
    return [end for end in ends if text[end:].strip()]


def token_ending_at(offsets: list[tuple[int, int]], end: int) -> int:
    """Index of the token holding character ``end - 1``: the last token that starts before ``end``
    (a token spanning the boundary holds it; of the tokens of one multi-byte character, the last;
    a leading-space token of the next word starts at ``end`` or later). -1 when no token does."""
    return bisect.bisect_left([start for start, _ in offsets], end) - 1
