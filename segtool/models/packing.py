"""Packed backbone passes: several (prompt + response) sequences share one row, so no compute goes
to padding.

A right-padded batch [B, W] is laid out as rows of at most ``width`` tokens (first-fit decreasing;
a longer sequence gets a row of its own). Each sequence keeps its own position ids 0..L-1 and no
attention mask is passed: transformers then reads the position-id resets as sequence boundaries and
builds a block-diagonal causal mask (varlen kernels with flash attention). The final hidden states
are gathered back into the padded [B, W, H] layout, so every caller reads them as before; padding
positions hold zeros.

With prompts of mixed lengths most of a padded batch is padding (median prompt 57 tokens, longest
205, in the HH-RLHF prompts the benchmarks use), and the backbone's cost is per token. A batch with
little padding stays padded (``plan_if_padded``): per-sequence attention would cost more than it saves.

Not every architecture honours position-id packing, so ``supports_packing`` checks it once per model
with a small probe against the padded pass.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from segtool.errors import ConfigError
from segtool.models.varlen import enable_varlen, uses_varlen


@dataclass
class PackPlan:
    input_ids: torch.Tensor  # [rows, C] the packed tokens (pad id in each row's tail)
    position_ids: torch.Tensor  # [rows, C] 0..L-1 per sequence; a row's tail restarts at 0
    gather: torch.Tensor  # [B * W] flat packed position of each padded position (rows * C = a zero row)
    shape: tuple[int, int]  # (B, W) of the padded batch
    spans: list[list[tuple[int, int]]]  # per row, (start, length) of each sequence: for models.varlen

    @property
    def span_table(self) -> torch.Tensor:
        """int64 [sequences, 3]: (row, start, length) of each sequence, on the CPU (models.varlen reads it there)."""
        return torch.tensor([(r, start, n) for r, row in enumerate(self.spans) for start, n in row], dtype=torch.long)

    def to(self, device) -> PackPlan:
        return PackPlan(self.input_ids.to(device), self.position_ids.to(device), self.gather.to(device), self.shape,
                        self.spans)

    @property
    def tokens(self) -> int:
        return self.input_ids.numel()


def bins(lengths: list[int], width: int) -> list[list[int]]:
    """Sequence indices per row: the fewest rows of at most max(width, longest) tokens that the
    longest-first greedy (each sequence to the emptiest row) fills, so rows come out balanced and
    the packed batch, padded to its fullest row, wastes little."""
    if not lengths:
        return []
    cap = max(width, max(lengths))
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = -(-sum(lengths) // cap)
    while True:
        heap = [(0, r) for r in range(n)]
        rows: list[list[int]] = [[] for _ in range(n)]
        for i in order:
            total, r = heapq.heappop(heap)
            rows[r].append(i)
            heapq.heappush(heap, (total + lengths[i], r))
        if max(total for total, _ in heap) <= cap:
            return [row for row in rows if row]
        n += 1  # n = len(lengths) always fits: one sequence per row


def plan_packing(input_ids: torch.Tensor, lengths: torch.Tensor, width: int, pad_id: int) -> PackPlan:
    """The packed layout of a right-padded batch ``input_ids`` [B, W] whose rows hold ``lengths`` tokens."""
    B, W = input_ids.shape
    lens = [int(n) for n in lengths]
    rows = bins(lens, width)
    C = max(sum(lens[i] for i in row) for row in rows)
    ids = torch.full((len(rows), C), pad_id, dtype=input_ids.dtype)
    pos = torch.zeros((len(rows), C), dtype=torch.long)
    gather = torch.full((B * W,), len(rows) * C, dtype=torch.long)
    spans = []
    for r, row in enumerate(rows):
        offset, row_spans = 0, []
        for i in row:
            n = lens[i]
            ids[r, offset : offset + n] = input_ids[i, :n]
            pos[r, offset : offset + n] = torch.arange(n)
            gather[i * W : i * W + n] = r * C + offset + torch.arange(n)
            row_spans.append((offset, n))
            offset += n
        pos[r, offset:] = torch.arange(C - offset)
        spans.append(row_spans)
    return PackPlan(ids, pos, gather, (B, W), spans)


# Packing adds one attention call per sequence and pays for it only with the padding it removes. SmolLM2
# segmentation on a 2-core Intel Xeon: at 2x256 (4.5% padding) packed ran 7% slower than padded, at 4x512
# (15% padding) 2% faster; train-rm batches (37% padding) 1.4x faster.
MIN_PADDING = 0.10


def plan_if_padded(input_ids: torch.Tensor, lengths: torch.Tensor, width: int, pad_id: int) -> PackPlan | None:
    """The packed layout of a right-padded batch when packing is on (``width`` > 0) and at least
    MIN_PADDING of the batch's positions are padding; None (run it padded) otherwise."""
    if width <= 0 or int(lengths.sum()) > (1 - MIN_PADDING) * input_ids.numel():
        return None
    return plan_packing(input_ids, lengths, width, pad_id)


def backbone_hidden(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    plan: PackPlan | None = None) -> torch.Tensor:
    """Final hidden states [B, W, H] of a right-padded batch: one padded pass, or one packed pass
    when ``plan`` is given (same values up to floating-point rounding; zeros at padding)."""
    if plan is None:
        out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    extra = {"segtool_spans": plan.span_table} if uses_varlen(backbone) else {}
    out = backbone(input_ids=plan.input_ids, position_ids=plan.position_ids, use_cache=False, **extra)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    flat = hidden.reshape(-1, hidden.shape[-1])
    flat = torch.cat([flat, flat.new_zeros(1, flat.shape[1])])
    return flat[plan.gather].view(*plan.shape, -1)


def packing_error(backbone, vocab_size: int, device) -> float:
    """Relative difference between packed and padded hidden states of two short random sequences
    packed into one row, in the model's own dtype (no autocast)."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 5])
    ids = torch.randint(0, vocab_size, (2, 7), generator=gen).to(device)
    attn = (torch.arange(7)[None, :] < lengths[:, None]).long().to(device)
    plan = plan_packing(ids.cpu(), lengths, width=12, pad_id=0).to(device)  # both sequences in one row
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), torch.autocast(torch.device(device).type, enabled=False):
            padded = backbone_hidden(backbone, ids, attn)[attn.bool()].float()
            packed = backbone_hidden(backbone, ids, attn, plan)[attn.bool()].float()
    finally:
        backbone.train(was_training)
    return float((packed - padded).norm() / padded.norm().clamp_min(1e-12))


def supports_packing(backbone, vocab_size: int, device) -> bool:
    """Does this backbone give the same hidden states packed as padded? Architectures whose attention
    ignores position-id resets let the second sequence see the first and fail by a wide margin;
    the tolerance only absorbs rounding (larger in 16-bit weights)."""
    dtype = next(backbone.parameters()).dtype
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2  # bf16 SmolLM2: 0.006-0.015; broken: 0.37
    return packing_error(backbone, vocab_size, device) < tolerance


def packing_width(mode: str, width: int, backbones: dict, vocab_size: int, device, knob: str) -> tuple[int, str]:
    """``width`` when packing is on (``mode`` auto or on) and every backbone passes the probe; 0
    (padded batches) otherwise, with the reason. ``mode`` on makes a failed probe an error naming
    ``knob``. Each backbone is switched to per-sequence attention on packed rows (SDPA models) first,
    so the probe checks what will run."""
    if mode == "off":
        return 0, ""
    for name, backbone in backbones.items():
        enable_varlen(backbone)
        if not supports_packing(backbone, vocab_size, device):
            why = (f"the {name} ({type(backbone).__name__}) gives different hidden states when sequences are packed "
                   "by position ids")
            if mode == "on":
                raise ConfigError(why, f'set {knob} = "off" (padded batches) for this architecture')
            return 0, f"packing off: {why}; using padded batches"
    return width, ""
