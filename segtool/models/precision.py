"""bf16 autocast for training and scoring passes: the ``bf16 = auto | true | false`` knob of a stage."""

from __future__ import annotations

import contextlib

import torch

from segtool.errors import ConfigError


def no_autocast():
    return contextlib.nullcontext()


def make_autocast(bf16: str, device: str, knob: str):
    """A zero-argument factory of the autocast context for ``device``: bf16 when ``bf16`` is "true",
    or "auto" and the device supports it; ``knob`` names the setting in the error for "true"."""
    if bf16 == "false":
        return no_autocast
    kind = "cuda" if device.startswith("cuda") else "cpu"
    supported = torch.cuda.is_bf16_supported() if kind == "cuda" else True
    if bf16 == "true" and not supported:
        raise ConfigError(f"{knob} = true but this GPU has no bf16", f'use {knob} = "false" or "auto"')
    if not supported:
        return no_autocast
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)
