"""PPO's update step (METHOD §5 step 7): clipped policy and value losses over mini-batches, on one
process or data-parallel under DeepSpeed (ZeRO 0-2).

Both steppers (segtool.training.steppers) give the same update: the loss of every micro-batch is
weighted by its share of the mini-batch's tokens (over all ranks), so a mini-batch's gradient is its token-mean gradient however
it is split into micro-batches and processes.
"""

from __future__ import annotations

import numpy as np
import torch

from segtool import distributed
from segtool.core.batching import micro_batches
from segtool.core.ppo import policy_loss, value_clip, value_loss
from segtool.errors import ConfigError
from segtool.models.policy import logprobs, pack, state_values, to_aligned
from segtool.training.optim import build_optimiser
from segtool.training.steppers import DeepSpeedStepper, LocalStepper, deepspeed_config

TRAIN_LOGIT_CHUNK = 512  # LM-head positions per chunk in the policy's training forward pass


def make_optimisers(setup, c, steps_total: int, parallel: bool) -> list:
    """[actor stepper, critic stepper]; under DeepSpeed the engines' modules replace setup.policy and
    setup.critic."""
    models = (setup.policy, setup.critic)
    settings = (c.actor, c.critic)
    built = [build_optimiser(model, s, steps_total) for model, s in zip(models, settings)]
    if not parallel:
        return [LocalStepper(m, opt, sched, s.grad_clip) for m, (opt, sched), s in zip(models, built, settings)]
    world = distributed.world()
    if c.rollout_batch % world or c.train_batch % (c.micro_batch * world):
        raise ConfigError(
            f"under {world} processes ppo.rollout_batch ({c.rollout_batch}) must divide by {world} and train_batch "
            f"({c.train_batch}) by micro_batch x processes ({c.micro_batch * world})",
            "pick batch sizes that split evenly over the processes")
    steppers = [DeepSpeedStepper(m, opt, sched, deepspeed_config(c.train_batch, c.micro_batch, s.grad_clip, c.zero_stage))
                for m, (opt, sched), s in zip(models, built, settings)]
    setup.policy, setup.critic = steppers[0].model, steppers[1].model
    return steppers


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_initialized():
        t = t.clone()
        torch.distributed.all_reduce(t)
    return t


def train_on(rollout, setup, steppers, c, rng_seed, autocast) -> dict:
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
            for mb in micro_batches(idx, lengths[idx], c.micro_batch):
                batch = pack([rollout.prompt_ids[i] for i in mb], [rollout.responses[i] for i in mb], setup.scorer.pad_id,
                             setup.scorer.pack_width)
                on_device = batch.to(device)
                R = batch.aligned.shape[1]
                take = torch.from_numpy(mb)
                m = rollout.mask[take, :R].to(device)
                old_logp = rollout.logp[take, :R].to(device)
                with autocast():
                    logp = to_aligned(logprobs(policy, on_device, TRAIN_LOGIT_CHUNK), on_device)
                    values = to_aligned(state_values(critic, on_device), on_device)
                pm = policy_mask[take, :R].to(device)
                pg, clip_frac = policy_loss(logp, old_logp, rollout.advantages[take, :R].to(device), pm, c.clip)
                vl = value_loss(values, rollout.values[take, :R].to(device), rollout.returns[take, :R].to(device), m, v_clip)
                n_tok = float(m.sum())
                # token-means over the whole mini-batch, all ranks (the policy's over its masked tokens)
                steppers[0].backward(pg, float(pm.sum()) / max(policy_tokens, 1.0))
                steppers[1].backward(vl, n_tok / batch_tokens)
                with torch.no_grad():
                    approx_kl = ((old_logp - logp) * m).sum() / m.sum()
                sums += torch.tensor([float(pg.detach()), float(vl.detach()), float(clip_frac), float(approx_kl), 1.0],
                                     dtype=torch.float64) * n_tok
            for o in steppers:
                o.step()
            steps += 1
    policy.eval()
    critic.eval()
    sums = sum_over_ranks(sums)
    tokens = max(float(sums[4]), 1.0)
    return {"policy_loss": float(sums[0]) / tokens, "value_loss": float(sums[1]) / tokens,
            "clip_frac": float(sums[2]) / tokens, "approx_kl": float(sums[3]) / tokens, "optimizer_steps": steps}
