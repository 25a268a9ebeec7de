"""Optimiser steppers: one model's optimiser and schedule, driven the same way on one process and
under DeepSpeed.

A training step is ``backward(loss, share)`` for each micro-batch, then ``step()``. ``share`` is the
micro-batch's weight in the step's loss over all ranks (e.g. its share of the step's tokens), so the
step's gradient does not depend on how the batch is split into micro-batches and processes.
"""

from __future__ import annotations

import contextlib

import torch

from segtool import distributed


class LocalStepper:
    """One process: accumulate weighted micro-batch gradients, then clip, step and schedule."""

    def __init__(self, model, opt, sched, grad_clip: float):
        self.model, self.opt, self.sched, self.clip = model, opt, sched, grad_clip

    def backward(self, loss, share: float = 1.0) -> None:
        (loss * share).backward()

    def step(self) -> float:
        """Clip (grad_clip 0 = off), step the optimiser and the schedule; the gradient norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip if self.clip > 0 else float("inf"))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])

    def full_weights(self):
        return contextlib.nullcontext()


def deepspeed_config(global_batch: int, micro_batch: int, grad_clip: float, zero_stage: int,
                     bf16: bool | None = None) -> dict:
    """DeepSpeed config: global batch = micro-batch x accumulation steps x processes; ``bf16`` None
    leaves DeepSpeed's bf16 setting out (autocast, if any, is the stage's)."""
    config = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": global_batch // (micro_batch * distributed.world()),
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": zero_stage},
    }
    if bf16 is not None:
        config["bf16"] = {"enabled": bf16}
    return {**config, "steps_per_print": 1 << 30, "wall_clock_breakdown": False}


class DeepSpeedStepper:
    """One model under a DeepSpeed engine, which averages gradients over accumulation steps and ranks
    and steps at the accumulation boundary (``step`` only reports the gradient norm).

    ``mean_losses``: every micro-batch is the same size and passes its plain mean loss, so DeepSpeed's
    averaging is the weighting and ``share`` is ignored; otherwise the loss is weighted by ``share``
    and scaled by accumulation steps x ranks to undo that averaging.
    """

    def __init__(self, model, opt, sched, config: dict, mean_losses: bool = False):
        import deepspeed

        self.scale = config["gradient_accumulation_steps"] * distributed.world()
        self.mean_losses = mean_losses
        self.zero_stage = config["zero_optimization"]["stage"]
        self.engine, self.opt, _, self.sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                                                    config=config)
        self.model = self.engine.module

    def backward(self, loss, share: float = 1.0) -> None:
        self.engine.backward(loss if self.mean_losses else loss * share * self.scale)
        self.engine.step()

    def step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def save(self, folder, client_state: dict | None = None) -> None:
        """The engine's checkpoint (every rank writes its partition) under ``folder``/ds."""
        self.engine.save_checkpoint(str(folder), tag="ds", client_state=client_state or {})

    def load(self, folder) -> dict:
        """Restore weights and optimiser partitions; the client state saved with them."""
        _, client_state = self.engine.load_checkpoint(str(folder), tag="ds")
        return client_state

    def full_weights(self):
        """Every parameter materialised on every rank (ZeRO-3 shards them)."""
        import deepspeed

        if self.zero_stage < 3:
            return contextlib.nullcontext()
        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)
