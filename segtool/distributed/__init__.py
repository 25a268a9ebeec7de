"""Data-parallel training when launched by `deepspeed` or `torchrun` (DeepSpeed ZeRO 0-3).

The same command trains single-process by default; under a launcher (RANK/WORLD_SIZE/LOCAL_RANK in
the environment) it initialises torch.distributed through DeepSpeed (NCCL on GPUs, gloo on CPU);
segtool.training.steppers builds the DeepSpeed config. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import os


def launched() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def local_device(device: str) -> str:
    """Each rank's own GPU under a launcher."""
    if launched() and device.startswith("cuda"):
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


# torch is imported per call: the run-directory commands (`segtool status`) load this module and no torch.


def init(device: str) -> None:
    import deepspeed
    import torch

    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device.startswith("cuda") else "gloo")


def barrier() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_sum(values: list[float]) -> list[float]:
    import torch

    if not torch.distributed.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def shutdown() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
