"""AdamW and its learning-rate schedule (linear warm-up, then cosine decay to a floor), built from
one OptimConfig (a stage's `optim` table, or PPO's `actor` / `critic`)."""

from __future__ import annotations

import torch

from segtool.config.schema import OptimConfig
from segtool.core.schedule import warmup_cosine


def build_optimiser(model, settings: OptimConfig, total_steps: int, fused: bool | None = None):
    """(AdamW over ``model``'s parameters, LambdaLR: warm-up then cosine to min_lr_ratio * lr over
    ``total_steps``). ``fused`` None: torch's fused AdamW kernel wherever it has one (CPU, CUDA)."""
    if fused is None:
        # one kernel over all parameters instead of ~10 ops per tensor: ~20x faster on a 2-core CPU (135M params)
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    kernel = {"fused": True} if fused else {}
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(settings.adam_beta1, settings.adam_beta2),
                            weight_decay=settings.weight_decay, **kernel)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, settings.warmup_ratio, settings.min_lr_ratio))
    return opt, sched
