"""Segment boundaries over response positions (METHOD §2), vectorised over a whole batch.

Responses are handled as one flat array of positions plus per-row lengths (each response includes
its EOS as the last position, n - 1). A strategy marks the positions that END a segment; the EOS
policy then fixes the last segment:

* default (released code): the last segment ends at n - 2, the token before EOS, and EOS is never a
  reward position (a boundary found on EOS is moved to n - 2);
* ``eos_in_last_segment``: the last segment ends at EOS itself (n - 1).

Entropy rule: position j ends a segment iff H_j > c_ent, H_j being the entropy of the distribution
that predicts y_{j+1}. The first response token always opens segment 0, and prompt tokens never
appear here at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .modes import STRATEGIES

# Characters after which the rule-based sentence splitter (`punct`) cuts: the paper's sentence
# baseline splits after . ! ? \n ; ... , : } and their full-width equivalents.
PUNCT_CHARS = frozenset(".!?\n;…,:}。！？；，：､、")


def punct_table(tokenizer) -> np.ndarray:
    """[V] bool: token t ends with a sentence/clause splitting character (the `punct` strategy)."""
    size = max(len(tokenizer), (tokenizer.vocab_size or 0))
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    text = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
    return np.array([t.rstrip(" \t")[-1:] in PUNCT_CHARS if t.strip(" \t") else False for t in text], dtype=bool)


@dataclass(frozen=True)
class FlatLayout:
    """Where each flat position sits: its row and its index inside the row's response."""

    lengths: np.ndarray  # [B] int64, response length including EOS
    row: np.ndarray  # [N] row of each flat position
    pos: np.ndarray  # [N] index inside its response
    last: np.ndarray  # [N] index of its row's EOS (length - 1)

    @classmethod
    def from_lengths(cls, lengths: np.ndarray) -> FlatLayout:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size and lengths.min() < 2:
            raise ValueError("every response needs at least one token before its EOS")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        row = np.repeat(np.arange(lengths.size), lengths)
        pos = np.arange(int(lengths.sum()), dtype=np.int64) - starts[row]
        return cls(lengths=lengths, row=row, pos=pos, last=(lengths - 1)[row])


def apply_eos_policy(is_end: np.ndarray, layout: FlatLayout, eos_in_last_segment: bool) -> np.ndarray:
    """Close the last segment at n - 2 (default) or at EOS, and drop any other boundary on EOS."""
    final = layout.last if eos_in_last_segment else layout.last - 1
    return (is_end & (layout.pos < final)) | (layout.pos == final)


def boundary_mask(
    strategy: str,
    layout: FlatLayout,
    *,
    entropy: np.ndarray | None = None,
    token_ids: np.ndarray | None = None,
    c_ent: float = 2.0,
    n: int = 5,
    punct_table: np.ndarray | None = None,
    states: np.ndarray | None = None,
    sentence_ends: np.ndarray | None = None,
    eos_in_last_segment: bool = False,
) -> np.ndarray:
    """Flat bool mask: True where a position ends a segment.

    entropy: [N] float (needed by ``entropy``); token_ids: [N] int and punct_table: [V] bool
    (needed by ``punct``: punct_table[t] is True when token t ends with a splitting character);
    states: [N] Schmitt-trigger states (needed by ``adaptive``, METHOD §7: a segment is a maximal
    run of one state, so j ends a segment where the state of j + 1 differs); sentence_ends: [N] bool
    (needed by ``sat``: True on the token that ends a sentence of a sentence segmenter, mapped from
    the text by ``models.sat``).
    """
    if entropy is not None and len(entropy) != layout.pos.size:
        raise ValueError(f"{len(entropy)} entropies for {layout.pos.size} response positions")
    if token_ids is not None and len(token_ids) != layout.pos.size:
        raise ValueError(f"{len(token_ids)} token ids for {layout.pos.size} response positions")
    if strategy == "bandit":
        # Classical bandit: one segment, read at EOS (the released code's c_ent = 1000).
        return layout.pos == layout.last
    if strategy == "entropy":
        if entropy is None:
            raise ValueError("strategy 'entropy' needs entropies")
        is_end = np.asarray(entropy) > c_ent
    elif strategy == "token":
        is_end = np.ones(layout.pos.shape, dtype=bool)
    elif strategy == "ngram":
        if n < 1:
            raise ValueError(f"ngram needs n >= 1, got {n}")
        is_end = (layout.pos + 1) % n == 0
    elif strategy == "punct":
        if token_ids is None or punct_table is None:
            raise ValueError("strategy 'punct' needs token ids and a punctuation table")
        is_end = punct_table[np.asarray(token_ids)]
    elif strategy == "sat":
        if sentence_ends is None or len(sentence_ends) != layout.pos.size:
            raise ValueError("strategy 'sat' needs one sentence-end flag per response position")
        is_end = np.asarray(sentence_ends, dtype=bool)
    elif strategy == "adaptive":
        if states is None or len(states) != layout.pos.size:
            raise ValueError("strategy 'adaptive' needs one state per response position")
        states = np.asarray(states)
        is_end = np.zeros(layout.pos.shape, dtype=bool)
        is_end[:-1] = states[:-1] != states[1:]  # across rows this lands on a row's EOS: the EOS policy fixes it
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return apply_eos_policy(is_end, layout, eos_in_last_segment)


def mask_to_ends(is_end: np.ndarray, layout: FlatLayout) -> tuple[np.ndarray, np.ndarray]:
    """Segment ends as (in-row indices of all rows concatenated [S] int32, per-row counts [B])."""
    flat = np.flatnonzero(is_end)
    counts = np.bincount(layout.row[flat], minlength=layout.lengths.size)
    return layout.pos[flat].astype(np.int32), counts


def entropy_segment_ends(
    entropy: np.ndarray, lengths: np.ndarray, c_ent: float, eos_in_last_segment: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Shortcut for the paper's rule: (ends_flat int32, counts) from flat entropies and lengths."""
    layout = FlatLayout.from_lengths(lengths)
    mask = boundary_mask(
        "entropy", layout, entropy=entropy, c_ent=c_ent, eos_in_last_segment=eos_in_last_segment
    )
    return mask_to_ends(mask, layout)


def segment_lengths(ends: np.ndarray) -> np.ndarray:
    """Token lengths of the segments of one response, from its sorted end indices."""
    ends = np.asarray(ends, dtype=np.int64)
    return np.diff(np.concatenate([[-1], ends]))


def segment_lengths_flat(ends: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Token length of every segment of every row, from flat ends and per-row counts."""
    ends = np.asarray(ends, dtype=np.int64)
    prev = np.empty_like(ends)
    prev[1:] = ends[:-1]
    first = np.cumsum(counts) - counts
    prev[first[counts > 0]] = -1
    return ends - prev
