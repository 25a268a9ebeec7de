"""Reward-model batches, shared by training and scoring: a response as token arrays with its segment
ends, right-padded batches of them, length-grouped micro-batches of pairs, and e(x, y) of a batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segtool.core.rewards import aggregate, segment_rewards
from segtool.models.packing import plan_if_padded


@dataclass(frozen=True)
class Example:
    prompt: np.ndarray
    response: np.ndarray
    ends: np.ndarray  # segment ends, indices into the response

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)


def pairs_from_segments(table) -> tuple[np.ndarray, list[tuple[Example, Example]]]:
    """(row ids, [(chosen, rejected)]) from a segment table sorted by (row_id, side)."""
    cols = {c: table[c].to_pylist() for c in ("row_id", "side", "prompt_token_ids", "response_token_ids", "segment_ends")}
    by_row: dict[int, dict[str, Example]] = {}
    for i, row in enumerate(cols["row_id"]):
        by_row.setdefault(row, {})[cols["side"][i]] = Example(
            np.asarray(cols["prompt_token_ids"][i]), np.asarray(cols["response_token_ids"][i]), np.asarray(cols["segment_ends"][i])
        )
    rows = np.array(sorted(by_row))
    return rows, [(by_row[r]["chosen"], by_row[r]["rejected"]) for r in rows]


def collate(examples: list[Example], pad_id: int, pack_width: int = 0):
    """Right-padded batch plus flat segment positions: ends [S] absolute, rows [S]. With
    ``pack_width`` > 0 the backbone runs the sequences packed into rows of up to that many tokens
    (``plan``; models.packing) and every read-out stays in the padded layout.
    ``computed`` counts the token positions the backbone runs (padded or packed)."""
    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    ends, rows = [], []
    for r, e in enumerate(examples):
        ids[r, : e.length] = torch.from_numpy(np.concatenate([e.prompt, e.response]).astype(np.int64))
        mask[r, : e.length] = 1
        ends.append(len(e.prompt) + e.ends)
        rows.append(np.full(len(e.ends), r))
    plan = plan_if_padded(ids, mask.sum(1), pack_width, pad_id)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "ends": torch.from_numpy(np.concatenate(ends).astype(np.int64)),
        "rows": torch.from_numpy(np.concatenate(rows).astype(np.int64)),
        "prompt_last": torch.tensor([len(e.prompt) - 1 for e in examples]),
        "eos": torch.tensor([e.length - 1 for e in examples]),
        "tokens": int(mask.sum()),
        "plan": plan,
        "computed": plan.tokens if plan is not None else ids.numel(),
    }


def forward_batch(rm, batch, device):
    """(values [B, W] float32, hidden [B, W, H]) of ``rm`` on a collated batch, packed when it has a plan."""
    plan = batch["plan"].to(device) if batch["plan"] is not None else None
    return rm(batch["input_ids"].to(device), batch["attention_mask"].to(device), plan)


def sequence_scores(rm, batch, readout: str, aggregation: str, device, outputs=None):
    """e(x, y) for every sequence of a collated batch: [B] float32.

    outputs: the (values, hidden) of ``rm`` on this batch when the caller already ran it.
    """
    ends, rows = batch["ends"].to(device), batch["rows"].to(device)
    if outputs is None:
        outputs = forward_batch(rm, batch, device)
    values, hidden = outputs
    r = segment_rewards(values, ends, rows, readout, batch["prompt_last"].to(device))
    scores = rm.segment_scores(hidden[rows, ends]) if aggregation == "attention" else None
    last = values[torch.arange(len(values), device=device), batch["eos"].to(device)] if aggregation == "last" else None
    return aggregate(r, rows, len(values), aggregation, scores=scores, last_values=last)
