"""PPO's update step (METHOD §5 step 7): clipped policy and value losses over mini-batches, on one
process or data-parallel under DeepSpeed (ZeRO 0-2).

Both backends give the same update: the loss of every micro-batch is weighted by its share of the
mini-batch's tokens (over all ranks), so a mini-batch's gradient is its token-mean gradient however
it is split into micro-batches and processes.
"""

from __future__ import annotations

import numpy as np
import torch

from segtool import distributed
from segtool.config.modes import REWARD_MODES
from segtool.core.ppo import policy_loss, value_loss
from segtool.errors import ConfigError
from segtool.models.policy import logprobs, pack, state_values, to_aligned


def value_clip(c) -> float:
    """The paper's value clip: 0.25 with dense rewards, 0.2 with bandit rewards (unless set)."""
    if c.value_clip:
        return c.value_clip
    return REWARD_MODES[c.reward_mode].value_clip


def micro_batches(lengths: np.ndarray, idx: np.ndarray, size: int) -> list[np.ndarray]:
    """Length-grouped micro-batches (little padding)."""
    ordered = idx[np.argsort(-lengths[idx], kind="stable")]
    return [ordered[k : k + size] for k in range(0, len(ordered), size)]


class LocalOptimiser:
    """One model's optimiser and schedule in a single process."""

    def __init__(self, model, opt, sched, grad_clip: float):
        self.model, self.opt, self.sched, self.clip = model, opt, sched, grad_clip

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def micro_step(self) -> None:  # DeepSpeed steps per micro-batch; here the step is explicit
        pass

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip if self.clip > 0 else float("inf"))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])


class DeepSpeedOptimiser:
    """One model under a DeepSpeed engine: it averages gradients over accumulation steps and ranks
    and steps at the accumulation boundary, so the loss is pre-scaled by gas x world."""

    def __init__(self, model, opt, sched, c, world: int, grad_clip: float):
        import deepspeed

        gas = c.train_batch // (c.micro_batch * world)
        config = {"train_batch_size": c.train_batch, "train_micro_batch_size_per_gpu": c.micro_batch,
                  "gradient_accumulation_steps": gas, "gradient_clipping": grad_clip,
                  "zero_optimization": {"stage": c.zero_stage}, "steps_per_print": 1 << 30, "wall_clock_breakdown": False}
        self.scale = gas * world
        self.engine, self.opt, _, self.sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config=config)
        self.model = self.engine.module

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss * self.scale)

    def micro_step(self) -> None:
        self.engine.step()

    def step(self) -> None:  # done by micro_step at the accumulation boundary
        pass

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def save(self, folder) -> None:
        self.engine.save_checkpoint(str(folder), tag="ds")

    def load(self, folder) -> None:
        self.engine.load_checkpoint(str(folder), tag="ds")


def make_optimisers(setup, c, steps_total: int, parallel: bool):
    from segtool.core.schedule import warmup_cosine

    pairs = []
    for model, optim in ((setup.policy, c.actor), (setup.critic, c.critic)):
        # fused: one kernel over all parameters instead of ~10 ops per tensor (CPU and CUDA)
        fused = torch.device(setup.device).type in ("cpu", "cuda")
        opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=(optim.adam_beta1, optim.adam_beta2),
                                weight_decay=optim.weight_decay, fused=fused)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s, optim=optim: warmup_cosine(s, steps_total, optim.warmup_ratio, optim.min_lr_ratio))
        pairs.append((model, opt, sched, optim.grad_clip))
    if not parallel:
        return [LocalOptimiser(m, o, s, clip) for m, o, s, clip in pairs]
    world = distributed.world()
    if c.rollout_batch % world or c.train_batch % (c.micro_batch * world):
        raise ConfigError(
            f"under {world} processes ppo.rollout_batch ({c.rollout_batch}) must divide by {world} and train_batch "
            f"({c.train_batch}) by micro_batch x processes ({c.micro_batch * world})",
            "pick batch sizes that split evenly over the processes")
    optimisers = [DeepSpeedOptimiser(m, o, s, c, world, clip) for m, o, s, clip in pairs]
    setup.policy, setup.critic = optimisers[0].model, optimisers[1].model
    return optimisers


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_initialized():
        t = t.clone()
        torch.distributed.all_reduce(t)
    return t


def train_on(rollout, setup, optimisers, c, rng_seed, autocast) -> dict:
    """ppo_epochs passes of clipped policy/value updates over this process's share of the rollout
    batch; each optimiser step takes train_batch samples over all processes."""
    policy, critic, device = setup.policy, setup.critic, setup.device
    policy.train()
    critic.train()
    v_clip = value_clip(c)
    local_batch = c.train_batch // distributed.world()
    lengths = np.array([len(r) + len(p) for r, p in zip(rollout.responses, rollout.prompt_ids)])
    policy_mask = rollout.policy_mask if rollout.policy_mask is not None else rollout.mask
    sums = torch.zeros(5, dtype=torch.float64)  # policy loss, value loss, clip fraction, approx KL (token sums), tokens
    steps = 0
    for epoch in range(c.ppo_epochs):
        perm = np.random.default_rng([*rng_seed, epoch, distributed.rank()]).permutation(rollout.size)
        for s in range(0, rollout.size, local_batch):
            idx = perm[s : s + local_batch]
            rows = torch.from_numpy(idx)
            batch_tokens = float(sum_over_ranks(rollout.mask[rows].sum().double()))
            policy_tokens = float(sum_over_ranks(policy_mask[rows].sum().double()))
            for mb in micro_batches(lengths, idx, c.micro_batch):
                batch = pack([rollout.prompt_ids[i] for i in mb], [rollout.responses[i] for i in mb], setup.scorer.pad_id,
                             setup.scorer.pack_width)
                on_device = batch.to(device)
                R = batch.aligned.shape[1]
                take = torch.from_numpy(mb)
                m = rollout.mask[take, :R].to(device)
                old_logp = rollout.logp[take, :R].to(device)
                with autocast():
                    logp = to_aligned(logprobs(policy, on_device, 512), on_device)
                    values = to_aligned(state_values(critic, on_device), on_device)
                pm = policy_mask[take, :R].to(device)
                pg, clip_frac = policy_loss(logp, old_logp, rollout.advantages[take, :R].to(device), pm, c.clip)
                vl = value_loss(values, rollout.values[take, :R].to(device), rollout.returns[take, :R].to(device), m, v_clip)
                n_tok = float(m.sum())
                # token-means over the whole mini-batch, all ranks (the policy's over its masked tokens)
                optimisers[0].backward(pg * (float(pm.sum()) / max(policy_tokens, 1.0)))
                optimisers[1].backward(vl * (n_tok / batch_tokens))
                for o in optimisers:
                    o.micro_step()
                with torch.no_grad():
                    approx_kl = ((old_logp - logp) * m).sum() / m.sum()
                sums += torch.tensor([float(pg.detach()), float(vl.detach()), float(clip_frac), float(approx_kl), 1.0],
                                     dtype=torch.float64) * n_tok
            for o in optimisers:
                o.step()
            steps += 1
    policy.eval()
    critic.eval()
    sums = sum_over_ranks(sums)
    tokens = max(float(sums[4]), 1.0)
    return {"policy_loss": float(sums[0]) / tokens, "value_loss": float(sums[1]) / tokens,
            "clip_frac": float(sums[2]) / tokens, "approx_kl": float(sums[3]) / tokens, "optimizer_steps": steps}
