"""`segtool ppo`: PPO with dense segment rewards (METHOD §5), the bandit baseline and the hybrids.

Per iteration: a rollout batch of prompts -> samples, rewards, advantages (ppo_rollout.collect),
written to ``rollouts/iter-NNNNNN.parquet`` for auditing; then ``ppo_epochs`` passes of clipped
policy and value updates over mini-batches. A checkpoint (policy in Hugging Face layout, critic,
optimisers, metrics) every ``checkpoint_every`` iterations makes --resume continue from the latest
complete iteration with results identical to an uninterrupted run: sampling is seeded from
(seed, iteration), mini-batch order from (seed, iteration, epoch).

Outputs: ``policy/`` (a transformers causal-LM folder with the tokenizer), ``critic.safetensors``,
``metrics.parquet`` (one row per iteration), ``eval.json`` (held-out reward before and after).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from segtool import distributed
from segtool.artifacts.files import atomic_path, atomic_write_json
from segtool.artifacts.manifest import RunDir
from segtool.config.loader import identity_view
from segtool.config.schema import Config, NormalizerConfig
from segtool.console import STDERR
from segtool.core.boundaries import punct_table
from segtool.core.ppo import AdaptiveKL
from segtool.core.schedule import iteration_prompts
from segtool.credit.sources import gold_scorer
from segtool.errors import ArtifactError, ConfigError
from segtool.inputs.formatting import Encoder
from segtool.inputs.prompts import read_prompts
from segtool.models.compiling import compile_for_training
from segtool.models.entropy import split_causal_lm
from segtool.models.generators import make_generator
from segtool.models.loading import DTYPES, load_causal_lm, load_tokenizer, pad_id_of, pick_device, resolve_model_source
from segtool.models.packing import packing_width
from segtool.models.precision import compute_dtype, make_autocast
from segtool.models.reward import METADATA, build_from_causal_lm, load_reward_model
from segtool.pipeline import dpo, fit_normalizer, ppo_train, train_rm
from segtool.pipeline.adaptive_rewards import Source, TokenScorer
from segtool.pipeline.common import StageResult, total_iterations
from segtool.pipeline.policy_eval import HeldOut, gold_rewards, split_heldout
from segtool.pipeline.ppo_rollout import DPOReward, Scorer, collect, reward_spec
from segtool.pipeline.ppo_view import LiveView, MetricLogger
from segtool.pipeline.runner import run_stage
from segtool.pipeline.segment import data_identity
from segtool.pipeline.stage import Context, Outcome, Plan, Stage
from segtool.training import checkpoints
from segtool.training.loading import load_trainable

STAGE = "ppo"
SCHEMA_VERSION = 1
DEEPSPEED_FOLDERS = ("policy_ds", "critic_ds")  # the actor's and the critic's engine checkpoints


def prompts_path(cfg: Config) -> str:
    return cfg.ppo.prompts or cfg.data.path


def _check(cfg: Config) -> None:
    """Cross-section knobs RTO leaves unused (ppo's own are checked by its schema rules)."""
    c, default = cfg.ppo, NormalizerConfig.kind
    if c.reward_source == "dpo" and not c.dpo_rm_weight and cfg.normalizer.kind != default:
        raise ConfigError(f"normalizer.kind = {cfg.normalizer.kind!r} normalises the reward model's rewards, which "
                          "ppo.reward_source = dpo with dpo_rm_weight = 0 does not add",
                          f"drop normalizer.kind (default {default!r}), or set ppo.dpo_rm_weight > 0")


def plan(cfg: Config) -> Plan:
    _check(cfg)
    parents = [train_rm.plan(cfg).art_id, fit_normalizer.plan(cfg).art_id]
    if cfg.ppo.reward_source == "dpo":
        parents.append(dpo.plan(cfg).art_id)
    prompts_cfg = dataclasses.replace(cfg.data, path=prompts_path(cfg))
    ident = {**identity_view(cfg, ("ppo",)), "seed": cfg.run.seed,
             "prompts": data_identity(dataclasses.replace(cfg, data=prompts_cfg)),
             "prompt_rows": {"max_rows": cfg.data.max_rows, "name": cfg.data.name, "split": cfg.data.split}}
    ident["ppo"].pop("prompts", None)  # enters by content hash above, not by path
    return Plan.of(STAGE, ident, parents, SCHEMA_VERSION)


@dataclass(frozen=True)
class Prompts:
    rows: list  # as read
    ids: list[list[int]]  # each row's prompt token ids
    train_idx: np.ndarray
    eval_idx: np.ndarray  # held out: never trained on
    skipped: int  # invalid rows skipped


def load_prompts(cfg: Config, encoder) -> Prompts:
    rows, skipped = read_prompts(prompts_path(cfg), name=cfg.data.name, split=cfg.data.split,
                                 max_rows=cfg.data.max_rows, skip_invalid=cfg.data.skip_invalid)
    ids = [encoder.encode_prompt(r.messages) for r in rows]
    train_idx, eval_idx = split_heldout(len(rows), cfg.ppo.eval_prompts, cfg.run.seed, "ppo.eval_prompts")
    return Prompts(rows, ids, train_idx, eval_idx, skipped)


# -- setup --------------------------------------------------------------------------------------


@dataclass
class Setup:
    scorer: object
    policy: object
    critic: object
    tokenizer: object
    encoder: object
    rm_folder: object
    meta: dict
    device: str
    note: str = ""  # why packing or compilation is off under "auto" (printed by the stage)


def load_setup(cfg: Config, rundir: RunDir, rm_record: dict, device: str | None = None) -> Setup:
    c = cfg.ppo
    folder = rundir.path_of(rm_record, "model")
    meta = json.loads((folder / METADATA).read_text())
    source = resolve_model_source(cfg.model)
    if source.fingerprint() != meta["sft_model"]:
        raise ConfigError("model.path is not the pi_SFT the reward model was trained from",
                          "PPO's reference model and its entropy segments must be that model: fix model.path")
    prompt_len = min(meta["max_prompt_len"], c.max_prompt_len)
    if prompt_len + c.sampling.max_new_tokens > meta["max_len"]:
        raise ConfigError(
            f"prompts of up to {prompt_len} tokens + ppo.sampling.max_new_tokens ({c.sampling.max_new_tokens}) exceed "
            f"the reward model's max_len ({meta['max_len']})", "lower ppo.sampling.max_new_tokens or ppo.max_prompt_len")
    spec = reward_spec(c.reward_mode, c.c_ent, meta)
    normaliser = fit_normalizer.load_normaliser(rundir, rm_record["id"], fit_normalizer.segmentation_of(meta))
    device = device or pick_device(cfg.model.device)
    tokenizer = load_tokenizer(source, cfg.model)
    encoder = Encoder.create(tokenizer, meta["max_len"], prompt_len, "auto" if meta["template"] == "chat" else "plain")
    pad_id = pad_id_of(tokenizer)
    ref = load_causal_lm(source, cfg.model, device)
    rm, _ = load_reward_model(folder, getattr(torch, DTYPES[cfg.model.dtype]), device)
    policy = load_trainable(source, cfg.model, device)
    if c.critic_init == "rm":
        critic, _ = load_reward_model(folder, torch.float32, device)
        critic.scorer = None
    else:
        critic = build_from_causal_lm(policy, pad_id, attention=False, seed=cfg.run.seed + 1)
    needs_punct = "punct" in (spec.rm_strategy, spec.ppo_strategy)
    backbones = {"reference": split_causal_lm(ref)[0], "reward model": rm.backbone, "policy": split_causal_lm(policy)[0],
                 "critic": critic.backbone}
    dpo_reward = None
    if c.reward_source == "dpo":  # RTO: the DPO policy, sharing PPO's pi_SFT as its reference
        token_scorer = TokenScorer(cfg, dpo_source(cfg, rundir), device, source.fingerprint(), ref=ref)
        dpo_reward = DPOReward(token_scorer, c.dpo_reward_scale, c.dpo_reward_clip, c.dpo_rm_weight)
        backbones["DPO policy"] = split_causal_lm(token_scorer.policy)[0]
    pack_width, note = packing_width(c.packing, c.pack_width, backbones, ref.config.vocab_size, device, "ppo.packing")
    compile_note = compile_for_training({"policy": policy, "critic": critic.backbone}, c.compile, device, "ppo.compile")
    note = "; ".join(n for n in (note, compile_note) if n)
    scorer = Scorer(ref, rm, normaliser, spec, punct_table(tokenizer) if needs_punct else None, pad_id,
                    encoder.eos_id, cfg.segment.chunk_size, c.interpolation, pack_width, dpo_reward)
    return Setup(scorer, policy, critic, tokenizer, encoder, folder, meta, device, note)


# -- metrics ------------------------------------------------------------------------------------


def rollout_metrics(r) -> dict:
    """Rollout statistics over all ranks' shares (sums are all-reduced, then divided)."""
    m = r.mask
    n = m.sum(dim=1)
    kept = r.policy_mask if r.policy_mask is not None else m
    sums = distributed.all_sum([float(r.seq_reward.sum()), float(r.score.sum()), float(r.kl.sum()), float(n.sum()),
                    float((r.entropy * m).sum()), float(r.truncated.float().sum()), float((r.advantages * m).pow(2).sum()),
                    float(r.size), float(kept.sum())])
    reward, score, kl, tokens, entropy, truncated, adv_sq, rows, in_loss = sums
    return {"reward": reward / rows, "norm_reward": score / rows, "kl": kl / rows, "length": tokens / rows,
            "entropy": entropy / tokens, "truncated": truncated / rows, "advantage_std": (adv_sq / tokens) ** 0.5,
            "masked_fraction": 1.0 - in_loss / tokens,
            "new_tokens": int(tokens)}


# -- artifacts ----------------------------------------------------------------------------------


def rollout_table(r, tokenizer, iteration: int, prompt_rows: list[int]):
    n = [len(x) for x in r.responses]

    def rows(t):  # [B, R] -> list of per-row float lists
        return [t[i, : n[i]].tolist() for i in range(r.size)]

    f32 = pa.list_(pa.float32())
    return pa.table({
        "iteration": pa.array([iteration] * r.size, pa.int32()),
        "prompt_row_id": pa.array(prompt_rows, pa.int64()),
        "prompt": tokenizer.batch_decode(r.prompt_ids),
        "response": tokenizer.batch_decode(r.responses),
        "prompt_token_ids": pa.array(r.prompt_ids, pa.list_(pa.int32())),
        "response_token_ids": pa.array(r.responses, pa.list_(pa.int32())),
        "truncated": pa.array(r.truncated.tolist(), pa.bool_()),
        "segment_ends": pa.array([e.tolist() for e in r.seg_ends], pa.list_(pa.int32())),
        "segment_reward_raw": pa.array([x.tolist() for x in r.seg_raw], f32),
        "segment_reward_norm": pa.array([x.tolist() for x in r.seg_norm], f32),
        "sequence_reward": pa.array(r.seq_reward.tolist(), pa.float32()),
        "token_score": pa.array(rows(r.score), f32),
        "kl": pa.array(rows(r.kl), f32),
        "logp": pa.array(rows(r.logp), f32),
        "ref_logp": pa.array(rows(r.ref_logp), f32),
        "entropy": pa.array(rows(r.entropy), f32),  # the policy's, at sampling: what ppo.forking_ratio ranks
        "value": pa.array(rows(r.values), f32),
        "advantage": pa.array(rows(r.advantages), f32),
        "return": pa.array(rows(r.returns), f32),
        "in_policy_loss": pa.array([[bool(v) for v in row] for row in rows(r.policy_mask if r.policy_mask is not None else r.mask)],
                                   pa.list_(pa.bool_())),
    })


def save_checkpoint(rundir: RunDir, art_id: str, iteration: int, setup: Setup, steppers, state: dict) -> None:
    """checkpoint-<iteration>/: policy (HF layout), critic, optimiser/scheduler state and metrics.
    Under DeepSpeed every rank saves its optimiser partition (policy_ds/, critic_ds/)."""
    def write(folder) -> None:
        if distributed.launched():
            for o, sub in zip(steppers, DEEPSPEED_FOLDERS):
                o.save(folder / sub)
        if distributed.is_main():
            checkpoints.save_policy(setup.policy, setup.tokenizer, folder / "policy")
            checkpoints.save_weights(setup.critic, folder / "critic.safetensors")
            local = {} if distributed.launched() else {"optimizers": [o.state_dict() for o in steppers]}
            with atomic_path(folder / checkpoints.STATE) as tmp:
                torch.save({"iteration": iteration, **local, **state}, tmp)

    checkpoints.save_folder(rundir, art_id, iteration, write)


def load_checkpoint(rundir: RunDir, record: dict, setup: Setup, steppers) -> dict | None:
    folder = checkpoints.latest_checkpoint(rundir, record)
    if folder is None:
        return None
    state = torch.load(folder / checkpoints.STATE, weights_only=False)
    if distributed.launched():  # the engines restore weights and optimiser partitions
        for o, sub in zip(steppers, DEEPSPEED_FOLDERS):
            o.load(folder / sub)
        return state
    result = setup.policy.load_state_dict(load_file(str(folder / "policy" / "model.safetensors")), strict=False)
    tied = {"lm_head.weight"} if getattr(setup.policy.config, "tie_word_embeddings", False) else set()
    if result.unexpected_keys or set(result.missing_keys) - tied:  # save_pretrained drops only tied copies
        raise ArtifactError(f"{folder / 'policy'} does not match the policy model "
                            f"(missing {sorted(set(result.missing_keys) - tied)}, unexpected {result.unexpected_keys})",
                            "start over with --force")
    setup.critic.load_state_dict(load_file(str(folder / "critic.safetensors")))
    for o, st in zip(steppers, state["optimizers"]):
        o.load_state_dict(st)
    return state


# -- the stage ----------------------------------------------------------------------------------


def compute(ctx: Context) -> Outcome:
    cfg, c, rundir = ctx.cfg, ctx.cfg.ppo, ctx.rundir
    rm_record = rundir.require_head("train-rm")
    rundir.require_head("fit-normalizer")
    setup = load_setup(cfg, rundir, rm_record, ctx.device)
    if setup.note and ctx.main and not ctx.quiet:
        STDERR.print(f"[yellow]{setup.note}[/]")
    prompts = load_prompts(cfg, setup.encoder)
    total = total_iterations(c, "ppo", len(prompts.train_idx))
    autocast = make_autocast(c.bf16, setup.device, "ppo.bf16")
    torch.manual_seed(cfg.run.seed)
    reuse_first = ppo_train.first_forward_mode(c.first_forward, setup.policy, setup.critic)  # before any artifact
    steppers = ppo_train.make_optimisers(setup, c, total * c.ppo_epochs * (c.rollout_batch // c.train_batch), distributed.launched())
    kl_ctl = AdaptiveKL(c.kl_coef, c.kl_target, c.kl_horizon) if c.adaptive_kl else None
    inputs = {"model": rm_record["inputs"]["model"], "reward_model": rm_record["id"],
              "prompts": ctx.plan.identity_config["prompts"], "train_prompts": int(len(prompts.train_idx)),
              "eval_prompts": int(len(prompts.eval_idx)), "skipped_prompt_rows": prompts.skipped}
    if c.reward_source == "dpo":
        inputs["dpo_policy"] = ctx.parents["dpo"].artifact_id
    record = ctx.begin(inputs, layout={"iterations": total, "world_size": distributed.world()}, staged=("policy",),
                       folders=("rollouts",))
    gold = gold_reward(c, setup.tokenizer)

    start, metrics, before = 0, [], None
    state = load_checkpoint(rundir, record, setup, steppers) if ctx.resuming else None
    if state is not None:
        start, metrics, before = state["iteration"], state["metrics"], state["eval_before"]
        if kl_ctl is not None:
            kl_ctl.beta = state["beta"]
        if ctx.main:
            STDERR.print(f"resuming {STAGE} after iteration {start} of {total}")
    # built once, from the policy as resumed; _iterate pushes every update into it
    generator = make_generator(c.generator, setup.policy, max_model_len=setup.encoder.max_prompt_len + c.sampling.max_new_tokens,
                               max_batch=c.generate_batch, seed=cfg.run.seed, knob="ppo.generator",
                               dtype=compute_dtype(autocast, next(setup.policy.parameters()).dtype))
    # rank 0 only: no collectives inside
    held_out = HeldOut(setup.scorer, [prompts.ids[i] for i in prompts.eval_idx], c, cfg.run.seed, setup.device, autocast,
                       gold, generator)
    try:
        if ctx.main:
            _drop_rollouts_after(rundir, ctx.plan.art_id, start)
            if before is None:
                before = held_out(setup.policy)  # the policy is still pi_SFT here
        ctx.sync()

        _iterate(ctx, setup, steppers, prompts, autocast, kl_ctl, gold, range(start, total), metrics, before, generator,
                 reuse_first)
        final = _finish(ctx, setup, metrics, before, held_out(setup.policy), prompts, total) if ctx.main else None
    finally:
        generator.close()
    return Outcome({"iterations": total, "episodes": total * c.rollout_batch}, final)


def parents_for(cfg: Config):
    """The reward model and its normaliser; with ppo.reward_source = dpo also the DPO policy of this
    config (RTO's token rewards), trained first when missing."""
    _check(cfg)  # before anything is trained for nothing
    yield "train-rm", cfg
    yield "fit-normalizer", cfg
    if cfg.ppo.reward_source == "dpo":
        yield "dpo", cfg


def dpo_source(cfg: Config, rundir: RunDir) -> Source:
    """The DPO policy of this config (``segtool dpo`` with the same settings), for RTO's token rewards."""
    art_id = dpo.plan(cfg).art_id
    record = rundir.get(art_id)
    if record is None or record["status"] != "complete":
        raise ArtifactError(f"ppo.reward_source = dpo needs the DPO policy of this config, and {rundir.root} has no "
                            f"complete dpo artifact {art_id[:12]}",
                            "run `segtool dpo` with the same settings there first (`segtool ppo` and `segtool run` do)")
    return Source("dpo", rundir.path_of(record, "policy"), (art_id,), "")


DEFINITION = Stage(STAGE, plan, compute, parents_for=parents_for, data_parallel=True)


def run(cfg: Config, *, resume: bool = False, force: bool = False, quiet: bool = False) -> StageResult:
    """PPO, running the earlier stages first when missing: train-rm (data-parallel under a launcher),
    then the normaliser on rank 0."""
    return run_stage(DEFINITION, cfg, resume=resume, force=force, quiet=quiet)


def gold_reward(c, tokenizer):
    """responses -> their programmatic gold reward (ppo.gold = defects), or None."""
    if c.gold != "defects":
        return None

    scorer = gold_scorer()
    return lambda responses: gold_rewards(scorer, tokenizer, responses)


def _iterate(ctx: Context, setup: Setup, steppers, prompts: Prompts, autocast, kl_ctl, gold, iterations: range,
             metrics: list, before, generator, reuse_first: bool) -> None:
    """Rollouts and updates of each iteration, its metrics, and a checkpoint every ppo.checkpoint_every;
    ``reuse_first``: each iteration's first micro-batch forwards once (ppo.first_forward)."""
    cfg, c, art_id, total = ctx.cfg, ctx.cfg.ppo, ctx.plan.art_id, iterations.stop
    logger = MetricLogger(c.log_to if ctx.main else "none", ctx.rundir.path_of(ctx.record, "logs"), art_id[:12], ctx.config)
    reduce = ppo_train.sum_over_ranks if distributed.launched() else None
    rewards = c.reward_mode if c.reward_source == "rm" else "dpo token rewards"
    with LiveView(ctx.quiet, total, f"ppo ({rewards}) {art_id[:12]}") as view:
        view.update(metrics)
        for it in iterations:
            t0 = time.perf_counter()
            picked = iteration_prompts(prompts.train_idx, it, c.rollout_batch, cfg.run.seed)[distributed.rank() :: distributed.world()]
            beta = kl_ctl.beta if kl_ctl is not None else c.kl_coef
            first = partial(ppo_train.first_forward, setup, c, (cfg.run.seed, it), autocast) if reuse_first else None
            rollout = collect(setup.policy, setup.critic, setup.scorer, [prompts.ids[i] for i in picked], cfg,
                              cfg.run.seed, it, setup.device, autocast, beta, reduce, generator, first)
            _write_rollouts(ctx.rundir, art_id, ctx.record, rollout, setup.tokenizer, it + 1,
                            [prompts.rows[i].row_id for i in picked])
            t1 = time.perf_counter()
            trained = ppo_train.train_on(rollout, setup, steppers, c, (cfg.run.seed, it), autocast, rollout.first_forward)
            rollout.first_forward = None  # its graph is spent
            generator.load(setup.policy)  # the next rollout samples from the updated weights
            t2 = time.perf_counter()
            m = {"iteration": it + 1, "episodes": (it + 1) * c.rollout_batch, **rollout_metrics(rollout), **trained,
                 "beta": beta, "lr_actor": steppers[0].lr()}
            if gold is not None:  # this rank's share of the rollouts (rank 0's in a data-parallel run)
                m["gold"] = float(np.mean(gold(rollout.responses)))
            if kl_ctl is not None:
                kl_ctl.update(m["kl"], c.rollout_batch)
            sec = rollout.seconds  # this rank's (rank 0's in the report)
            m.update(t_generate=sec["generate"], t_first_forward=sec["first_forward"], t_policy=sec["policy"],
                     t_score=sec["score"], t_reference=sec["reference"], t_reward=sec["reward"], t_critic=sec["critic"],
                     t_train=t2 - t1, seconds=t2 - t0)
            m["tokens_per_s"] = m["new_tokens"] / sec["generate"]
            m["episodes_per_s"] = c.rollout_batch / m["seconds"]
            metrics.append(m)
            logger.log(m)
            view.update(metrics)
            if (it + 1) % c.checkpoint_every == 0 and it + 1 < total:
                save_checkpoint(ctx.rundir, art_id, it + 1, setup, steppers,
                                {"metrics": metrics, "eval_before": before, "beta": beta if kl_ctl is None else kl_ctl.beta})
    logger.close()


def _drop_rollouts_after(rundir: RunDir, art_id: str, iteration: int) -> None:
    """Forget, then delete, the rollouts of iterations after ``iteration`` (a resumed run redoes them)."""
    record = rundir.get(art_id)
    names = [f for f in record["files"] if f.startswith("rollouts/") and int(f[-14:-8]) > iteration]
    rundir.remove_files(art_id, names)
    for f in names:
        rundir.path_of(record, f).unlink(missing_ok=True)


def _write_rollouts(rundir, art_id, record, rollout, tokenizer, iteration: int, prompt_rows: list[int]) -> None:
    """Rank 0 writes every rank's share of the iteration's rollouts as one Parquet file."""
    table = rollout_table(rollout, tokenizer, iteration, prompt_rows)
    if distributed.launched():
        parts = [None] * distributed.world()
        torch.distributed.all_gather_object(parts, table)
        table = pa.concat_tables(parts)
    if not distributed.is_main():
        return
    name = f"rollouts/iter-{iteration:06d}.parquet"
    path = rundir.path_of(record, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    rundir.add_file(art_id, name)


def _before_after(before: dict, after: dict) -> dict:
    """Held-out figures before and after training (none with ppo.eval_prompts = 0)."""
    if not before or not after:
        return {}
    return {"reward_before": round(before["reward"], 4), "reward_after": round(after["reward"], 4),
            "norm_reward_before": round(before["norm_reward"], 4), "norm_reward_after": round(after["norm_reward"], 4),
            "length_before": round(before["length"], 2), "length_after": round(after["length"], 2),
            "kl_after": round(after["kl"], 4),
            **({"gold_before": round(before["gold"], 4), "gold_after": round(after["gold"], 4)} if "gold" in before else {})}


def _finish(ctx: Context, setup: Setup, metrics: list, before: dict, after: dict, prompts: Prompts, total: int) -> dict:
    """Write the final policy, critic, metrics and evaluation (rank 0); the run's final figures."""
    rundir, art_id, record, c = ctx.rundir, ctx.plan.art_id, ctx.record, ctx.cfg.ppo
    checkpoints.write_policy(rundir, art_id, setup.policy, setup.tokenizer)
    checkpoints.save_weights(setup.critic, rundir.path_of(record, "critic.safetensors"))
    with atomic_path(rundir.path_of(record, "metrics.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(metrics), tmp)
    atomic_write_json(rundir.path_of(record, "eval.json"),
                      {"before": before, "after": after, "prompts": [int(prompts.rows[i].row_id) for i in prompts.eval_idx]})
    for name in ("critic.safetensors", "metrics.parquet", "eval.json"):
        rundir.add_file(art_id, name)
    checkpoints.drop_checkpoints(rundir, art_id)  # the final policy supersedes them
    train_seconds = sum(m["seconds"] for m in metrics)
    return {
        "iterations": total, "episodes": total * c.rollout_batch, "reward_mode": c.reward_mode,
        "reward_source": c.reward_source,
        **_before_after(before, after), "eval_prompts": len(prompts.eval_idx), "mask": c.mask,
        "forking_ratio": c.forking_ratio,
        "masked_fraction": round(sum(m["masked_fraction"] for m in metrics) / max(len(metrics), 1), 4),
        "episodes_per_s": round(c.rollout_batch * len(metrics) / max(train_seconds, 1e-9), 3),
        "tokens_per_s": round(sum(m["new_tokens"] for m in metrics) / max(sum(m["t_generate"] for m in metrics), 1e-9), 1),
        "time_split_s": {k: round(sum(m[f"t_{k}"] for m in metrics), 2)
                         for k in ("generate", "first_forward", "policy", "reference", "reward", "critic", "train")},
    }
