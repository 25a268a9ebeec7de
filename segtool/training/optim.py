"""AdamW and its learning-rate schedule (linear warm-up, then cosine decay to a floor), built from
one set of optimiser settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class OptimSettings(Protocol):
    """The optimiser knobs a training stage gives ``build_optimiser`` (and the stepper's clip)."""

    lr: float
    min_lr_ratio: float
    warmup_ratio: float
    adam_beta1: float
    adam_beta2: float
    weight_decay: float
    grad_clip: float


@dataclass(frozen=True)
class FlatOptimSettings:
    """OptimSettings gathered from a stage section that keeps its optimiser knobs as plain fields."""

    lr: float
    min_lr_ratio: float
    warmup_ratio: float
    adam_beta1: float
    adam_beta2: float
    weight_decay: float
    grad_clip: float


def flat_optim_settings(c, *, lr: float | None = None, betas: tuple[float, float] | None = None,
                        weight_decay: float | None = None) -> FlatOptimSettings:
    """``c``'s optimiser fields; ``lr``, ``betas`` and ``weight_decay`` stand in for fields ``c`` lacks
    (or names differently)."""
    beta1, beta2 = betas if betas is not None else (c.adam_beta1, c.adam_beta2)
    return FlatOptimSettings(lr=c.lr if lr is None else lr, min_lr_ratio=c.min_lr_ratio, warmup_ratio=c.warmup_ratio,
                             adam_beta1=beta1, adam_beta2=beta2,
                             weight_decay=c.weight_decay if weight_decay is None else weight_decay,
                             grad_clip=c.grad_clip)


def build_optimiser(model, settings: OptimSettings, total_steps: int, fused: bool | None = None):
    """(AdamW over ``model``'s parameters, LambdaLR: warm-up then cosine to min_lr_ratio * lr over
    ``total_steps``). ``fused`` is passed to AdamW only when given (None keeps torch's own choice)."""
    import torch

    from segtool.core.schedule import warmup_cosine

    kernel = {} if fused is None else {"fused": fused}
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(settings.adam_beta1, settings.adam_beta2),
                            weight_decay=settings.weight_decay, **kernel)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, settings.warmup_ratio, settings.min_lr_ratio))
    return opt, sched
