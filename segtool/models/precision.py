"""bf16 autocast for the reward model's forward passes, as train_rm.bf16 asks ("auto": where supported)."""

from __future__ import annotations

import contextlib

from segtool.errors import ConfigError


def make_autocast(cfg_rm, device: str):
    import torch  # lazy: the train-rm stage module imports this one, and planning a stage loads no torch

    if cfg_rm.bf16 == "false":
        return no_autocast
    kind = "cuda" if device.startswith("cuda") else "cpu"
    supported = torch.cuda.is_bf16_supported() if kind == "cuda" else True
    if cfg_rm.bf16 == "true" and not supported:
        raise ConfigError("train_rm.bf16 = true but this GPU has no bf16", 'use train_rm.bf16 = "false" or "auto"')
    if not supported:
        return no_autocast
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


def no_autocast():
    return contextlib.nullcontext()
