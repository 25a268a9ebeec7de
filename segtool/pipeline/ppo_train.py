"""PPO's update step (METHOD §5 step 7): clipped policy and value losses over mini-batches, on one
process or data-parallel under DeepSpeed (ZeRO 0-2).

Both steppers (segtool.training.steppers) give the same update: the loss of every micro-batch is
weighted by its share of the mini-batch's tokens (over all ranks), so a mini-batch's gradient is its token-mean gradient however
it is split into micro-batches and processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segtool import distributed
from segtool.core.batching import micro_batches
from segtool.core.ppo import policy_loss, value_clip, value_loss
from segtool.errors import ConfigError
from segtool.models.policy import Packed, logprobs, logprobs_with_entropy, pack, state_values, to_aligned
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


def mini_batches(prompt_ids, responses, c, rng_seed, epoch: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """One epoch's update schedule over this process's share of a rollout batch: (rows of each
    mini-batch, its micro-batches), mini-batch order seeded from (rng_seed, epoch, rank)."""
    size, local_batch = len(responses), c.train_batch // distributed.world()
    lengths = np.array([len(r) + len(p) for r, p in zip(responses, prompt_ids)])
    perm = np.random.default_rng([*rng_seed, epoch, distributed.rank()]).permutation(size)
    return [(idx, micro_batches(idx, lengths[idx], c.micro_batch))
            for idx in (perm[s : s + local_batch] for s in range(0, size, local_batch))]


def has_dropout(model) -> bool:
    """Would a training-mode forward differ from an eval-mode one (active dropout anywhere)?"""
    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None) or getattr(getattr(model, "module", None), "config", None)
    knobs = vars(config) if config is not None else {}
    return any(k.endswith(("dropout", "pdrop")) and isinstance(v, float) and v > 0 for k, v in knobs.items())


def first_forward_mode(mode: str, policy, critic) -> bool:
    """Should the first micro-batch's training forward also give its old log-probs and values
    (ppo.first_forward: auto = where exact, on = error where not, off)?"""
    if mode == "off":
        return False
    dropout = [name for name, m in (("policy", policy), ("critic", critic)) if has_dropout(m)]
    if dropout and mode == "on":
        raise ConfigError(f"ppo.first_forward = \"on\" needs models without dropout, and the {' and '.join(dropout)} "
                          "has active dropout (its training forward differs from the rollout's)",
                          'set ppo.first_forward = "auto" or "off"')
    return not dropout


@dataclass
class FirstForward:
    """The training forward of the first micro-batch of an iteration's first update, run right after
    sampling: no update has happened yet, so its log-probs and values *are* the old ones, and the
    rollout takes them (detached) instead of a separate no-grad pass; the update then backpropagates
    through the kept graph."""

    rows: np.ndarray  # rollout rows, in micro-batch order
    batch: Packed  # on the device
    logp: torch.Tensor  # flat [N] float32, with its graph
    values: torch.Tensor  # flat [N], with its graph
    entropy: torch.Tensor  # flat [N] float32, no graph: the policy entropy at sampling


def first_forward(setup, c, rng_seed, autocast, prompt_ids, responses) -> FirstForward:
    """Run the training forward of epoch 0's first micro-batch (training mode, as train_on would)."""
    policy, critic = setup.policy, setup.critic
    rows = mini_batches(prompt_ids, responses, c, rng_seed, 0)[0][1][0]
    batch = pack([prompt_ids[i] for i in rows], [responses[i] for i in rows], setup.scorer.pad_id,
                 setup.scorer.pack_width).to(setup.device)
    policy.train()
    critic.train()
    try:
        with autocast():
            logp, entropy = logprobs_with_entropy(policy, batch, TRAIN_LOGIT_CHUNK)
            values = state_values(critic, batch)
    finally:
        policy.eval()
        critic.eval()
    return FirstForward(rows, batch, logp, values, entropy)


def _forward(policy, critic, batch, autocast):
    with autocast():
        return logprobs(policy, batch, TRAIN_LOGIT_CHUNK), state_values(critic, batch)


def train_on(rollout, setup, steppers, c, rng_seed, autocast, first: FirstForward | None = None) -> dict:
    """ppo_epochs passes of clipped policy/value updates over this process's share of the rollout
    batch; each optimiser step takes train_batch samples over all processes. ``first``: epoch 0's
    first micro-batch, already forwarded (collect's first_forward)."""
    policy, critic, device = setup.policy, setup.critic, setup.device
    policy.train()
    critic.train()
    v_clip = value_clip(c)
    policy_mask = rollout.policy_mask if rollout.policy_mask is not None else rollout.mask
    sums = torch.zeros(5, dtype=torch.float64)  # policy loss, value loss, clip fraction, approx KL (token sums), tokens
    steps = 0
    for epoch in range(c.ppo_epochs):
        for idx, micro in mini_batches(rollout.prompt_ids, rollout.responses, c, rng_seed, epoch):
            rows = torch.from_numpy(idx)
            batch_tokens = float(sum_over_ranks(rollout.mask[rows].sum().double()))
            policy_tokens = float(sum_over_ranks(policy_mask[rows].sum().double()))
            for mb in micro:
                if first is not None:  # epoch 0's first micro-batch: its forward ran during the rollout
                    if not np.array_equal(mb, first.rows):
                        raise AssertionError("ppo: the first micro-batch differs from the one forwarded at rollout")
                    on_device, logp, values = first.batch, first.logp, first.values
                    first = None
                else:
                    on_device = pack([rollout.prompt_ids[i] for i in mb], [rollout.responses[i] for i in mb],
                                     setup.scorer.pad_id, setup.scorer.pack_width).to(device)
                    logp, values = _forward(policy, critic, on_device, autocast)
                logp, values = to_aligned(logp, on_device), to_aligned(values, on_device)
                R = on_device.aligned.shape[1]
                take = torch.from_numpy(mb)
                m = rollout.mask[take, :R].to(device)
                old_logp = rollout.logp[take, :R].to(device)
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
