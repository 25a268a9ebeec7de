"""Segment rewards from per-position values, their aggregation, and the Bradley-Terry loss (METHOD §3).

A batch's segments are handled flat: ``ends`` holds the absolute position (into the padded
sequence) of every segment's last token and ``rows`` the batch row it belongs to, rows in order and
segments in order within a row (as produced from a segment artifact).
"""

from __future__ import annotations

import torch

from .modes import AGGREGATIONS, READOUTS


def previous_positions(ends: torch.Tensor, rows: torch.Tensor, prompt_last: torch.Tensor) -> torch.Tensor:
    """Position of the token before each segment: the previous segment's end, or the last prompt
    token for a row's first segment. ends, rows: [S]; prompt_last: [B]. Returns [S]."""
    prev = torch.roll(ends, 1)
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    return torch.where(first, prompt_last[rows], prev)


def segment_rewards(
    values: torch.Tensor, ends: torch.Tensor, rows: torch.Tensor, readout: str = "end", prompt_last: torch.Tensor | None = None
) -> torch.Tensor:
    """r_t per segment from values v [B, T].

    end (paper): r_t = v[end_t].
    differential (sentence-level RM, arXiv 2503.04793): r_t = v[end_t] - v[start_t - 1], where
    start_t - 1 is the previous segment's end, or the last prompt token for t = 0.
    """
    r = values[rows, ends]
    if readout == "end":
        return r
    if readout == "differential":
        if prompt_last is None:
            raise ValueError("the differential read-out needs the last prompt position of every row")
        return r - values[rows, previous_positions(ends, rows, prompt_last)]
    raise ValueError(f"unknown read-out {readout!r}; choose one of {', '.join(READOUTS)}")


def aggregate(
    r: torch.Tensor,
    rows: torch.Tensor,
    num_rows: int,
    how: str = "avg",
    scores: torch.Tensor | None = None,
    last_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """e(x, y) = f({r_t}) per row: [S] -> [B].

    avg (paper default): (1/T) sum_t r_t; sum; min; last (classical bandit: v at EOS, given as
    ``last_values`` [B]); attention: sum_t alpha_t r_t with alpha = softmax over the row's segments
    of ``scores`` [S] (learned scores of the segments' end hidden states).
    """
    if how == "last":
        if last_values is None:
            raise ValueError("aggregation 'last' needs the value at each row's EOS")
        return last_values
    zeros = torch.zeros(num_rows, dtype=r.dtype, device=r.device)
    if how == "sum":
        return zeros.index_add(0, rows, r)
    if how == "avg":
        counts = torch.bincount(rows, minlength=num_rows).clamp(min=1).to(r.dtype)
        return zeros.index_add(0, rows, r) / counts
    if how == "min":
        return zeros.scatter_reduce(0, rows, r, reduce="amin", include_self=False)
    if how == "attention":
        if scores is None:
            raise ValueError("aggregation 'attention' needs a score per segment")
        top = torch.full((num_rows,), float("-inf"), dtype=scores.dtype, device=scores.device)
        top = top.scatter_reduce(0, rows, scores, reduce="amax", include_self=True)
        w = torch.exp(scores - top[rows])  # softmax within each row, stabilised by the row's max
        norm = torch.zeros(num_rows, dtype=w.dtype, device=w.device).index_add(0, rows, w)
        return zeros.index_add(0, rows, (w / norm[rows]) * r)
    raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")


def bradley_terry(e_chosen: torch.Tensor, e_rejected: torch.Tensor, margin: float | torch.Tensor = 0.0):
    """-log sigma(e_w - e_l - margin), averaged, in float32 whatever the model dtype.

    Returns (loss, accuracy, mean margin e_w - e_l), the last two detached.
    """
    diff = e_chosen.float() - e_rejected.float()
    loss = -torch.nn.functional.logsigmoid(diff - margin).mean()
    return loss, (diff > 0).float().mean().detach(), diff.mean().detach()
