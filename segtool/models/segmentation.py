"""Segmenting responses as the segment stage does: prompt and response tokens of each preference
pair, per-token entropies of pi_SFT, and the boundaries of a batch as a segment table (the stage
writes these tables; reward-model scoring rebuilds them for new text)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from segtool.artifacts.tables import SEGMENTS, SEGMENTS_ADAPTIVE
from segtool.config.schema import Config
from segtool.console import STDERR
from segtool.core.batching import length_sorted_batches
from segtool.core.boundaries import FlatLayout, boundary_mask, mask_to_ends
from segtool.errors import InputError
from segtool.models.entropy import response_entropy, split_causal_lm
from segtool.models.packing import packing_width, plan_if_padded

SIDES = ("chosen", "rejected")


@dataclass
class Sequence:
    row_id: int
    side: str
    prompt: list[int]
    response: list[int]


def encode_pairs(pairs, encoder) -> list[Sequence]:
    seqs = []
    for pair in pairs:
        prompt = encoder.encode_prompt(pair.prompt)
        for side in SIDES:
            response = encoder.encode_response(getattr(pair, side), len(prompt))
            if len(response) < 2:
                raise InputError(f"row {pair.row_id}: field '{side}' has no tokens", "give a non-empty response")
            seqs.append(Sequence(pair.row_id, side, prompt, response))
    return seqs


def pair_texts(pairs) -> list[str]:
    """The response texts of ``pairs`` in ``encode_pairs``'s order."""
    return [getattr(pair, side) for pair in pairs for side in SIDES]


def compute_entropies(model, seqs: list[Sequence], cfg: Config, device: str, advance=None,
                      pack_width: int = 0) -> list[np.ndarray]:
    """Response-position entropies for every sequence: one backbone pass per length-sorted batch,
    packed into rows of ``pack_width`` tokens when it is > 0 (see ``entropy_pack_width``)."""
    out: list[np.ndarray] = [None] * len(seqs)
    lengths = [len(s.prompt) + len(s.response) for s in seqs]
    for batch in length_sorted_batches(lengths, cfg.segment.batch_tokens, packed=pack_width > 0):
        width = max(lengths[i] for i in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        attn = torch.zeros_like(ids)
        resp = torch.zeros((len(batch), width), dtype=torch.bool)
        for r, i in enumerate(batch):
            s = seqs[i]
            ids[r, : lengths[i]] = torch.tensor(s.prompt + s.response)
            attn[r, : lengths[i]] = 1
            resp[r, len(s.prompt) : lengths[i]] = True
        plan = plan_if_padded(ids, attn.sum(1), pack_width, 0)
        plan = plan.to(device) if plan is not None else None
        flat = response_entropy(
            model, ids.to(device), attn.to(device), resp.to(device), cfg.segment.chunk_size, plan
        ).cpu().numpy()  # one host copy per batch
        offset = 0
        for i in batch:
            n = len(seqs[i].response)
            out[i] = flat[offset : offset + n]
            offset += n
        if advance is not None:
            advance(len(batch))
    return out


def shard_table(seqs: list[Sequence], entropies: list[np.ndarray], cfg: Config, table_punct, adaptive=None,
                sentence_ends=None):
    """Boundaries for a whole shard in one vectorised pass, as an Arrow table.

    adaptive: one ``adaptive_rewards.TokenScores`` per sequence (strategy adaptive only);
    sentence_ends: flat bool marks of ``models.sat.sentence_end_marks`` (strategy sat only).
    """
    lengths = np.array([len(s.response) for s in seqs], dtype=np.int64)
    layout = FlatLayout.from_lengths(lengths)
    token_ids = np.concatenate([np.asarray(s.response, dtype=np.int64) for s in seqs])
    entropy = np.concatenate(entropies).astype(np.float32)
    mask = boundary_mask(
        cfg.segment.strategy,
        layout,
        entropy=entropy,
        token_ids=token_ids,
        c_ent=cfg.segment.c_ent,
        n=cfg.segment.n,
        punct_table=table_punct,
        states=np.concatenate([a.state for a in adaptive]) if adaptive is not None else None,
        sentence_ends=sentence_ends,
        eos_in_last_segment=cfg.segment.eos_in_last_segment,
    )
    ends, counts = mask_to_ends(mask, layout)

    def lists(values, counts_):
        offsets = np.concatenate([[0], np.cumsum(counts_)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))

    prompt_lens = np.array([len(s.prompt) for s in seqs])
    columns = {
        "row_id": pa.array([s.row_id for s in seqs], pa.int64()),
        "side": pa.array([s.side for s in seqs], pa.string()),
        "prompt_token_ids": lists(np.concatenate([np.asarray(s.prompt, np.int32) for s in seqs]), prompt_lens),
        "response_token_ids": lists(token_ids.astype(np.int32), lengths),
        "entropy": lists(entropy, lengths),
        "segment_ends": lists(ends, counts),
    }
    if adaptive is None:
        return pa.Table.from_pydict(columns, schema=SEGMENTS)
    flips = [np.flatnonzero(a.state[1:] != a.state[:-1]).astype(np.int32) + 1 for a in adaptive]
    columns["token_reward"] = lists(np.concatenate([a.reward for a in adaptive]), lengths)
    columns["baseline"] = lists(np.concatenate([a.baseline for a in adaptive]), lengths)
    columns["state"] = lists(np.concatenate([np.where(a.state, 1, -1).astype(np.int8) for a in adaptive]), lengths)
    columns["band"] = lists(np.concatenate([a.band for a in adaptive]), lengths)
    columns["pivots"] = lists(np.concatenate(flips), np.array([len(f) for f in flips]))
    return pa.Table.from_pydict(columns, schema=SEGMENTS_ADAPTIVE)


def entropy_pack_width(model, cfg: Config, device) -> int:
    """Tokens per packed row of pi_SFT's entropy passes under segment.packing (0: padded; a note
    says why when the probe turned packing off)."""

    width, note = packing_width(cfg.segment.packing, cfg.segment.pack_width, {"pi_SFT": split_causal_lm(model)[0]},
                                model.config.vocab_size, device, "segment.packing")
    if note:
        STDERR.print(f"[yellow]note:[/] {note}", highlight=False)
    return width
